#!/usr/bin/env bash
# start.sh DIR — build a private Dovecot (IMAP + LMTP) + Postfix (SMTP) stack
# under DIR, on 127.0.0.1 only, start it, wait until every listener greets,
# and write DIR/env for the tests to source.
#
# Environment (all optional):
#   MAILSTACK_PORT_OFFSET  added to every default port (default 0)
#   IMAP_PORT (10143) IMAPS_PORT (10993) SMTP_PORT (10025)
#   SMTPS_PORT (10465) SUBMISSION_PORT (10587)
#   MAILSTACK_USERS        extra local parts (space-separated) @example.test
#   MAILSTACK_READY_TIMEOUT seconds to wait for the greetings (default 30)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
t_start=$(date +%s.%N)

DIR=$(ms_abspath "$1"); DIR=${DIR%/}
case "$DIR" in
    *[[:space:]]* | *'"'* | *"'"* | *'$'* | *'\'* | *'#'*)
        ms_err "DIR must not contain spaces or shell/config metacharacters: $DIR"; exit 2 ;;
esac
# Dovecot's unix sockets live under DIR/run; sun_path is at most 107 bytes.
if [ ${#DIR} -gt 70 ]; then
    ms_err "DIR path too long (${#DIR} > 70 chars) for Dovecot's unix sockets: $DIR"; exit 2
fi
for tool in dovecot postfix openssl; do
    command -v "$tool" >/dev/null || { ms_err "$tool not installed (run tests/mailstack/install.sh)"; exit 1; }
done

OFF=${MAILSTACK_PORT_OFFSET:-0}
IMAP_PORT=${IMAP_PORT:-$((10143 + OFF))}
IMAPS_PORT=${IMAPS_PORT:-$((10993 + OFF))}
SMTP_PORT=${SMTP_PORT:-$((10025 + OFF))}
SMTPS_PORT=${SMTPS_PORT:-$((10465 + OFF))}
SUBMISSION_PORT=${SUBMISSION_PORT:-$((10587 + OFF))}

mkdir -p "$DIR"
chmod 755 "$DIR"

# Refuse to start over a running stack in the same DIR.
if [ -f "$DIR/env" ]; then
    ( ms_load "$DIR" >/dev/null 2>&1
      { ms_pid_alive "$(ms_dovecot_pid)" || ms_pid_alive "$(ms_postfix_pid)"; } ) \
      && { ms_err "a stack is already running in $DIR (run stop.sh $DIR first)"; exit 1; }
fi

# The mail uid (65534) and the postfix user must be able to reach DIR.
p=$DIR
while [ "$p" != / ] && [ -n "$p" ]; do
    p=$(dirname "$p")
    mode=$(stat -c %a "$p")
    if [ $(( 8#$mode & 1 )) -eq 0 ]; then
        ms_err "$p is not traversable by other users (mode $mode); uid 65534 and postfix need it (chmod o+x, or use a DIR under /tmp)"
        exit 1
    fi
done

DOMAIN=example.test
PASSWORD=secret
RUN=$DIR/run                  # Dovecot base_dir (lmtp + auth-postfix sockets)
STATE=$DIR/state              # Dovecot state_dir
MAIL=$DIR/mail                # homes: DIR/mail/<user@example.test>/Maildir
PFCONF=$DIR/postfix           # Postfix config_directory (main.cf, master.cf)
PFQUEUE=$DIR/postfix-queue    # Postfix queue_directory
PFDATA=$DIR/postfix-data      # Postfix data_directory (owned by postfix)
INSTANCE=mailstack-$(printf '%s' "$DIR" | cksum | cut -d' ' -f1)

mkdir -p "$RUN" "$STATE" "$MAIL" "$PFCONF" "$PFQUEUE" "$PFDATA"
chmod 755 "$RUN" "$STATE" "$MAIL" "$PFCONF" "$PFQUEUE"
chown 65534:65534 "$MAIL"
chown postfix:postfix "$PFDATA"
chmod 700 "$PFDATA"
# Postfix's queue tree, as its postfix-files would make it. Made here so that
# "postfix start" can skip postfix-script's 1-2 s of integrity checks
# (quick-start, see lib.sh).
for q in active bounce corrupt defer deferred flush hold incoming private saved trace; do
    install -d -m 700 -o postfix -g postfix "$PFQUEUE/$q"
done
install -d -m 730 -o postfix -g postdrop "$PFQUEUE/maildrop"
install -d -m 710 -o postfix -g postdrop "$PFQUEUE/public"
install -d -m 755 -o root -g root "$PFQUEUE/pid"
: > "$DIR/dovecot.log"; : > "$DIR/postfix.log"
: > "$DIR/dovecot.stdout"; : > "$DIR/postfix.stdout"

# ---------------------------------------------------------------- TLS ------
# A private CA plus a server certificate it signs. A CA:TRUE certificate
# served directly as the server cert is rejected by rustls/webpki
# (CaUsedAsEndEntity), so the server cert is a proper leaf (CA:FALSE) with
# subjectAltName IP:127.0.0.1 and DNS:localhost. Clients trust ca.pem
# (CA_CERT); cert.pem holds leaf + CA and also works as a trust bundle.
cat > "$DIR/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = mailstack test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_dn]
CN = localhost
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
(
    cd "$DIR"
    umask 077
    openssl req -x509 -config openssl.cnf -extensions v3_ca \
        -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout ca.key -out ca.pem -days 3650 -subj "/CN=mailstack test CA" 2>/dev/null
    openssl req -new -config openssl.cnf \
        -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout key.pem -out server.csr -subj "/CN=localhost" 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key \
        -set_serial "0x$(openssl rand -hex 8)" -days 3650 \
        -extfile openssl.cnf -extensions v3_leaf -out leaf.pem 2>/dev/null
    cat leaf.pem ca.pem > cert.pem
    rm -f server.csr
    chmod 644 ca.pem leaf.pem cert.pem
)

# -------------------------------------------------------------- users ------
USERS="intake staff others"
for i in $(seq 1 20); do USERS="$USERS unit$i"; done
for u in ${MAILSTACK_USERS:-}; do
    if [[ ! $u =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]]; then
        ms_err "MAILSTACK_USERS: invalid local part '$u'"; exit 2
    fi
    case " $USERS " in *" $u "*) ;; *) USERS="$USERS $u" ;; esac
done
: > "$DIR/users"; : > "$DIR/vmailbox"
for u in $USERS; do
    addr=$u@$DOMAIN
    printf '%s:{PLAIN}%s:65534:65534::%s/%s::\n' "$addr" "$PASSWORD" "$MAIL" "$addr" >> "$DIR/users"
    printf '%s x\n' "$addr" >> "$DIR/vmailbox"
done
chmod 644 "$DIR/users" "$DIR/vmailbox"

# ------------------------------------------------------------ dovecot ------
cat > "$DIR/dovecot.conf" <<EOF
# Generated by tests/mailstack/start.sh — a private Dovecot for tests.
instance_name = $INSTANCE
base_dir = $RUN
state_dir = $STATE
log_path = $DIR/dovecot.log
info_log_path = $DIR/dovecot.log
debug_log_path = $DIR/dovecot.log

protocols = imap lmtp
listen = 127.0.0.1
shutdown_clients = yes

ssl = yes
ssl_cert = <$DIR/cert.pem
ssl_key = <$DIR/key.pem
ssl_min_protocol = TLSv1.2

disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_verbose = yes
auth_cache_size = 0

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu $DIR/users
}
userdb {
  driver = passwd-file
  args = username_format=%Lu $DIR/users
}

mail_location = maildir:~/Maildir
first_valid_uid = 1000
mail_max_userip_connections = 200

namespace inbox {
  inbox = yes
  mailbox Processed {
    auto = subscribe
  }
  mailbox Sent {
    auto = subscribe
    special_use = \\Sent
  }
  mailbox Trash {
    special_use = \\Trash
  }
}

# IDLE: push new mail fast; inotify normally wakes IDLE at once, the check
# interval is the fallback. "* OK Still here" every 30 s.
imap_idle_notify_interval = 30 secs
mailbox_idle_check_interval = 1 secs

protocol lmtp {
  postmaster_address = postmaster@$DOMAIN
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
# No auth penalty: a failed login must not slow later logins from 127.0.0.1.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
EOF

# ------------------------------------------------------------ postfix ------
cat > "$PFCONF/main.cf" <<EOF
# Generated by tests/mailstack/start.sh — a private Postfix for tests.
compatibility_level = 3.6
queue_directory = $PFQUEUE
data_directory = $PFDATA
maillog_file = $DIR/postfix.log
maillog_file_prefixes = $DIR
syslog_name = postfix-$INSTANCE

myhostname = mail.$DOMAIN
mydomain = $DOMAIN
myorigin = \$mydomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8

alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:5.1.1 no local delivery in mailstack
relayhost =
default_transport = error:5.7.1 mailstack delivers only to @$DOMAIN
biff = no
append_dot_mydomain = no
readme_directory = no

virtual_mailbox_domains = $DOMAIN
virtual_mailbox_maps = texthash:$DIR/vmailbox
virtual_transport = lmtp:unix:$RUN/lmtp

# Relay nowhere: only @$DOMAIN recipients are accepted, from anyone.
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, permit_sasl_authenticated, reject

smtpd_sasl_type = dovecot
smtpd_sasl_path = $RUN/auth-postfix
smtpd_sasl_auth_enable = yes
smtpd_sasl_security_options = noanonymous
smtpd_tls_auth_only = no

smtpd_tls_security_level = may
smtpd_tls_cert_file = $DIR/cert.pem
smtpd_tls_key_file = $DIR/key.pem
smtpd_tls_loglevel = 0
smtpd_tls_received_header = yes

smtpd_banner = \$myhostname ESMTP mailstack
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 200
smtpd_client_connection_count_limit = 0
in_flow_delay = 0
message_size_limit = 52428800

# Fast delivery, and fast retries when Dovecot/LMTP is down.
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 5s
transport_retry_time = 2s
delay_warning_time = 0
maximal_queue_lifetime = 1d
bounce_queue_lifetime = 1d
lmtp_connect_timeout = 5s
EOF

cat > "$PFCONF/master.cf" <<EOF
# Generated by tests/mailstack/start.sh. Loopback listeners only, no chroot.
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
127.0.0.1:$SMTPS_PORT inet n - n - - smtpd
  -o syslog_name=postfix-$INSTANCE/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
127.0.0.1:$SUBMISSION_PORT inet n - n - - smtpd
  -o syslog_name=postfix-$INSTANCE/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

# Postfix re-reads a config or texthash file in a 300 ms loop until its
# mtime is a second or two old (a guard against half-written files): that
# cost >1 s per start. Back-date the files we just wrote.
touch -d '1 minute ago' "$PFCONF/main.cf" "$PFCONF/master.cf" "$DIR/vmailbox"

# --------------------------------------------------------------- env -------
cat > "$DIR/env" <<EOF
MAILSTACK_DIR=$DIR
MAILSTACK_HOST=127.0.0.1
MAILSTACK_DOMAIN=$DOMAIN
MAILSTACK_PASSWORD=$PASSWORD
MAILSTACK_INTAKE_USER=intake@$DOMAIN
MAILSTACK_USERS_FILE=$DIR/users
IMAP_HOST=127.0.0.1
IMAP_PORT=$IMAP_PORT
IMAPS_PORT=$IMAPS_PORT
SMTP_HOST=127.0.0.1
SMTP_PORT=$SMTP_PORT
SMTPS_PORT=$SMTPS_PORT
SUBMISSION_PORT=$SUBMISSION_PORT
CA_CERT=$DIR/ca.pem
TLS_SERVER_NAME=localhost
MAILDIR_ROOT=$MAIL
DOVECOT_CONF=$DIR/dovecot.conf
DOVECOT_BASE_DIR=$RUN
DOVECOT_LOG=$DIR/dovecot.log
POSTFIX_CONFIG_DIR=$PFCONF
POSTFIX_QUEUE_DIR=$PFQUEUE
POSTFIX_LOG=$DIR/postfix.log
EOF
chmod 644 "$DIR/env"

ms_load "$DIR"
# Launch both, then wait for both: their start-ups overlap.
fail() {
    ms_err "$1"
    ms_stop_postfix >/dev/null 2>&1 || true
    ms_stop_dovecot >/dev/null 2>&1 || true
    exit 1
}
ms_start_dovecot --no-wait || fail "dovecot did not start"
ms_start_postfix --no-wait || fail "postfix did not start"
ms_wait_dovecot || fail "dovecot not ready"
ms_wait_postfix || fail "postfix not ready"
t_end=$(date +%s.%N)
ms_log "ready in $(awk -v a="$t_start" -v b="$t_end" 'BEGIN{printf "%.2f", b-a}')s: IMAP $IMAP_PORT, IMAPS $IMAPS_PORT, SMTP $SMTP_PORT, SMTPS $SMTPS_PORT, submission $SUBMISSION_PORT; env in $DIR/env"
