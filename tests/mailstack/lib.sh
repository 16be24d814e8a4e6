# shellcheck shell=bash
# Shared helpers for the mailstack scripts. Sourced, not run.
#
#   ms_load DIR            read DIR/env (ports, paths) into the shell
#   ms_start_dovecot [--no-wait]  start Dovecot, wait for the IMAP greetings
#   ms_wait_dovecot        wait for the IMAP greetings and the LMTP socket
#   ms_stop_dovecot        stop Dovecot by its pid file, wait for ports closed
#   ms_start_postfix [--no-wait]  start Postfix, wait for the SMTP greetings
#   ms_wait_postfix        wait for the SMTP greetings
#   ms_stop_postfix        stop Postfix by its pid file, wait for ports closed

MS_SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MS_READY_TIMEOUT=${MAILSTACK_READY_TIMEOUT:-30}
MS_STOP_TIMEOUT=${MAILSTACK_STOP_TIMEOUT:-20}

ms_log() { echo "mailstack: $*"; }
ms_err() { echo "mailstack: ERROR: $*" >&2; }

# Absolute path of DIR (which need not exist yet).
ms_abspath() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$(pwd)" "$1" ;;
    esac
}

ms_load() {
    local dir
    dir=$(ms_abspath "${1:?usage: $0 DIR}")
    dir=${dir%/}
    if [ ! -f "$dir/env" ]; then
        ms_err "$dir/env not found (was start.sh run on this DIR?)"
        return 1
    fi
    # shellcheck disable=SC1091
    set -a; . "$dir/env"; set +a
}

# "STATE PPID PGRP" of a process (fields after the parenthesised command).
ms_proc_stat() {
    local st
    { read -r st < "/proc/$1/stat"; } 2>/dev/null || return 1
    st=${st##*) }
    set -- $st
    echo "$1 $2 $3"
}

# Process alive and not a zombie (daemons are re-parented to PID 1, which
# may reap them late, so a dead master can linger as a zombie).
ms_pid_alive() {
    local pid=$1 st
    [ -n "$pid" ] || return 1
    st=$(ms_proc_stat "$pid") || return 1
    [ "${st%% *}" != Z ]
}

# Live (non-zombie) members of process group $MS_PGID.
ms_group_pids() {
    local f st
    for f in /proc/[0-9]*/stat; do
        { read -r st < "$f"; } 2>/dev/null || continue
        st=${st##*) }
        set -- $st
        if [ "$3" = "$MS_PGID" ] && [ "$1" != Z ]; then
            f=${f#/proc/}; echo "${f%/stat}"
        fi
    done
}

# ms_stop_daemon NAME MASTERPID
# Both daemons run as their own session/process group (pgid = master pid).
# TERM the whole group at once, then wait (KILL at the deadline) until none
# of it is left. TERM to the master alone is not enough here: a Dovecot
# imap/auth/log child can outlive its master for half a minute, keeping
# client sessions open across a "restart", and the master itself takes ~1 s
# to exit while its children wind down.
ms_stop_daemon() {
    local name=$1 pid=$2 st pgid deadline left
    MS_STOPPED=0
    ms_pid_alive "$pid" || return 0
    st=$(ms_proc_stat "$pid") || return 0
    MS_STOPPED=1
    pgid=${st##* }
    # Only signal the group when it is the daemon's own (never ours).
    if [ "$pgid" != "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + MS_STOP_TIMEOUT))
        while ms_pid_alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
        ms_pid_alive "$pid" && { ms_err "$name (pid $pid) did not stop; KILL"; kill -KILL "$pid" 2>/dev/null || true; }
        return 0
    fi
    MS_PGID=$pgid
    kill -TERM -- "-$pgid" 2>/dev/null || true
    deadline=$((SECONDS + MS_STOP_TIMEOUT))
    while left=$(ms_group_pids) && [ -n "$left" ]; do
        if [ $SECONDS -ge $deadline ]; then
            ms_err "$name processes still running after TERM: $(echo $left); KILL"
            kill -KILL -- "-$pgid" 2>/dev/null || true
            sleep 0.2
            break
        fi
        sleep 0.05
    done
}

ms_pid_from_file() {
    # Postfix pads its pid file with spaces.
    [ -f "$1" ] && tr -dc '0-9' < "$1"
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
ms_port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

ms_wait_ports_closed() {
    local deadline=$((SECONDS + MS_STOP_TIMEOUT)) p
    for p in "$@"; do
        while ms_port_open "$p"; do
            if [ $SECONDS -ge $deadline ]; then
                ms_err "port $p still open after ${MS_STOP_TIMEOUT}s"
                return 1
            fi
            sleep 0.1
        done
    done
}

ms_ports_free_or_fail() {
    local p bad=0
    for p in "$@"; do
        if ms_port_open "$p"; then
            ms_err "127.0.0.1:$p is already in use (a stack left running? run stop.sh on its DIR, or pick other ports with MAILSTACK_PORT_OFFSET)"
            bad=1
        fi
    done
    return $bad
}

# python3 for the readiness probe: Debian's own starts in ~40 ms, a pyenv
# shim takes ~350 ms per call.
ms_python() {
    if [ "${MAILSTACK_PYTHON:-}" = none ]; then return 0  # bash-only probe
    elif [ -n "${MAILSTACK_PYTHON:-}" ]; then echo "$MAILSTACK_PYTHON"
    elif [ -x /usr/bin/python3 ]; then echo /usr/bin/python3
    else command -v python3 || true
    fi
}

# ms_wait_greeting KIND:PORT:TLS ...   (KIND imap|smtp, TLS 0|1)
# Readiness = the protocol greeting ("* OK" / "220"), not an open port.
# TLS ports get a full handshake verified against CA_CERT for 127.0.0.1.
ms_wait_greeting() {
    local py
    py=$(ms_python)
    if [ -n "$py" ]; then
        "$py" - "$CA_CERT" "$MS_READY_TIMEOUT" "$@" <<'PY'
import socket, ssl, sys, time
cafile, timeout = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + timeout
for spec in sys.argv[3:]:
    kind, port, tls = spec.split(":")
    port, tls = int(port), tls == "1"
    want = b"* OK" if kind == "imap" else b"220"
    last = "no attempt"
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=3)
            try:
                if tls:
                    ctx = ssl.create_default_context(cafile=cafile)
                    s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
                line = s.makefile("rb").readline(512)
            finally:
                s.close()
            if line.startswith(want):
                break
            last = "unexpected greeting %r" % line
        except Exception as e:  # refused, reset, TLS not ready yet ...
            last = "%s: %s" % (type(e).__name__, e)
        if time.monotonic() > deadline:
            print("mailstack: ERROR: no %s greeting on 127.0.0.1:%d%s within %ss (last: %s)"
                  % (kind, port, " (TLS)" if tls else "", timeout, last), file=sys.stderr)
            sys.exit(1)
        time.sleep(0.05)
PY
        return $?
    fi
    # Fallback without python3: plain ports only, via bash /dev/tcp.
    local spec kind port tls want line deadline=$((SECONDS + MS_READY_TIMEOUT))
    for spec in "$@"; do
        IFS=: read -r kind port tls <<<"$spec"
        [ "$tls" = 1 ] && continue
        want='\* OK'; [ "$kind" = smtp ] && want='220'
        until line=$(timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && head -n1 <&3" 2>/dev/null) \
                && [[ $line =~ ^$want ]]; do
            if [ $SECONDS -ge $deadline ]; then
                ms_err "no $kind greeting on 127.0.0.1:$port within ${MS_READY_TIMEOUT}s"
                return 1
            fi
            sleep 0.1
        done
    done
}

ms_dump_logs() {
    local f
    for f in "$MAILSTACK_DIR/dovecot.log" "$MAILSTACK_DIR/dovecot.stdout" \
             "$MAILSTACK_DIR/postfix.log" "$MAILSTACK_DIR/postfix.stdout"; do
        if [ -s "$f" ]; then
            echo "----- $f (last 60 lines) -----" >&2
            tail -n 60 "$f" >&2
        fi
    done
}

ms_dovecot_pid() { ms_pid_from_file "$DOVECOT_BASE_DIR/master.pid"; }
ms_postfix_pid() { ms_pid_from_file "$POSTFIX_QUEUE_DIR/pid/master.pid"; }

ms_start_dovecot() {
    local pid
    pid=$(ms_dovecot_pid) || true
    if ms_pid_alive "$pid"; then
        ms_log "dovecot already running (pid $pid)"
    else
        ms_ports_free_or_fail "$IMAP_PORT" "$IMAPS_PORT" || return 1
        # Dovecot keeps the stdio it inherits: never leave it on a pipe.
        if ! dovecot -c "$DOVECOT_CONF" </dev/null >>"$MAILSTACK_DIR/dovecot.stdout" 2>&1; then
            ms_err "dovecot failed to start"
            ms_dump_logs
            return 1
        fi
    fi
    [ "${1:-}" = --no-wait ] || ms_wait_dovecot
}

ms_wait_dovecot() {
    if ! ms_wait_greeting "imap:$IMAP_PORT:0" "imap:$IMAPS_PORT:1"; then
        ms_dump_logs
        return 1
    fi
    # The LMTP and SASL sockets come up with the listeners; make sure.
    local deadline=$((SECONDS + MS_READY_TIMEOUT))
    while [ ! -S "$DOVECOT_BASE_DIR/lmtp" ] || [ ! -S "$DOVECOT_BASE_DIR/auth-postfix" ]; do
        if [ $SECONDS -ge $deadline ]; then
            ms_err "dovecot lmtp/auth-postfix sockets missing"
            ms_dump_logs
            return 1
        fi
        sleep 0.1
    done
}

ms_stop_dovecot() {
    ms_stop_daemon dovecot "$(ms_dovecot_pid)"
    rm -f "$DOVECOT_BASE_DIR/master.pid"
    # Ports held by someone else are not ours to wait for.
    [ "$MS_STOPPED" = 1 ] || return 0
    ms_wait_ports_closed "$IMAP_PORT" "$IMAPS_PORT"
}

ms_start_postfix() {
    local pid
    pid=$(ms_postfix_pid) || true
    if ms_pid_alive "$pid"; then
        ms_log "postfix already running (pid $pid)"
    else
        ms_ports_free_or_fail "$SMTP_PORT" "$SMTPS_PORT" "$SUBMISSION_PORT" || return 1
        # start.sh made the queue tree: skip postfix-script's integrity
        # checks (1-2 s). "master -w" still reports
        # a failed start.
        [ -d "$POSTFIX_QUEUE_DIR/pid" ] && touch "$POSTFIX_QUEUE_DIR/quick-start"
        if ! postfix -c "$POSTFIX_CONFIG_DIR" start </dev/null >>"$MAILSTACK_DIR/postfix.stdout" 2>&1; then
            ms_err "postfix failed to start"
            ms_dump_logs
            return 1
        fi
    fi
    [ "${1:-}" = --no-wait ] || ms_wait_postfix
}

ms_wait_postfix() {
    if ! ms_wait_greeting "smtp:$SMTP_PORT:0" "smtp:$SMTPS_PORT:1" "smtp:$SUBMISSION_PORT:0"; then
        ms_dump_logs
        return 1
    fi
}

ms_stop_postfix() {
    ms_stop_daemon postfix "$(ms_postfix_pid)"
    [ "$MS_STOPPED" = 1 ] || return 0
    ms_wait_ports_closed "$SMTP_PORT" "$SMTPS_PORT" "$SUBMISSION_PORT"
}
