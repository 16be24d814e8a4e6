#!/usr/bin/env bash
# Install Dovecot (IMAP + LMTP), Postfix and OpenSSL from Debian, idempotently.
# - Skips everything when the binaries are already present.
# - Preseeds Postfix with "No configuration" so /etc/postfix is left alone.
# - Never starts the system services (policy-rc.d answers 101 during the install).
# - Waits for the dpkg/apt locks when another apt process is running
#   (up to MAILSTACK_LOCK_WAIT_SECS, default 900), then retries apt itself.
# - MAILSTACK_FORCE_INSTALL=1 runs apt even when the binaries are present.
set -euo pipefail

need_install() {
    for b in /usr/sbin/dovecot /usr/lib/dovecot/imap /usr/lib/dovecot/lmtp /usr/sbin/postfix /usr/bin/openssl; do
        [ -x "$b" ] || return 0
    done
    return 1
}

if ! need_install && [ -z "${MAILSTACK_FORCE_INSTALL:-}" ]; then
    echo "mailstack install: dovecot, postfix and openssl already present; nothing to do"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "mailstack install: must run as root (apt-get install)" >&2
    exit 1
fi

LOCK_WAIT_SECS=${MAILSTACK_LOCK_WAIT_SECS:-900}
LOCKS=${MAILSTACK_APT_LOCKS:-"/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock"}

# True when some process holds one of the apt/dpkg locks (POSIX fcntl locks,
# so flock(1) can't see them; fuser is from psmisc and may be missing).
locks_busy() {
    if command -v python3 >/dev/null 2>&1; then
        python3 - $LOCKS <<'PY'
import fcntl, os, struct, sys
for p in sys.argv[1:]:
    try:
        fd = os.open(p, os.O_RDWR)
    except OSError:
        continue
    try:
        # F_GETLK: ask whether a write lock would be blocked, without taking one.
        req = struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 0, 0)
        res = fcntl.fcntl(fd, fcntl.F_GETLK, req)
        if struct.unpack('hhqqi', res)[0] != fcntl.F_UNLCK:
            sys.exit(0)
    finally:
        os.close(fd)
sys.exit(1)
PY
        return $?
    elif command -v fuser >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        fuser $LOCKS >/dev/null 2>&1
        return $?
    fi
    return 1
}

wait_for_locks() {
    local start=$SECONDS said=0
    while locks_busy; do
        if [ $said -eq 0 ]; then
            echo "mailstack install: another apt/dpkg process holds the lock; waiting (up to ${LOCK_WAIT_SECS}s)"
            said=1
        fi
        if [ $((SECONDS - start)) -ge "$LOCK_WAIT_SECS" ]; then
            echo "mailstack install: timed out waiting for the apt/dpkg lock" >&2
            return 1
        fi
        sleep 3
    done
}

# Run an apt command; on failure (lock lost to a racing process, transient
# mirror error) wait for the locks again and retry, until the deadline.
apt_retry() {
    local start=$SECONDS try=1
    while :; do
        wait_for_locks
        if "$@" -o DPkg::Lock::Timeout=300; then
            return 0
        fi
        if [ $((SECONDS - start)) -ge "$LOCK_WAIT_SECS" ] || [ $try -ge 8 ]; then
            echo "mailstack install: '$*' failed after $try tries" >&2
            return 1
        fi
        try=$((try + 1))
        echo "mailstack install: '$1 $2' failed; retrying in 5s (try $try)"
        sleep 5
    done
}

t0=$SECONDS
export DEBIAN_FRONTEND=noninteractive

# Postfix: do not write /etc/postfix/main.cf; we run our own config dir.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

# Do not let the package scripts start system instances (no systemd here;
# invoke-rc.d would otherwise run the SysV scripts).
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
fi
cleanup() { [ $created_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d; return 0; }
trap cleanup EXIT

apt_retry apt-get update
apt_retry apt-get install -y --no-install-recommends \
    dovecot-imapd dovecot-lmtpd postfix openssl

if need_install; then
    echo "mailstack install: packages installed but binaries still missing" >&2
    exit 1
fi
echo "mailstack install: done in $((SECONDS - t0))s"
