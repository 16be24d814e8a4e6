#!/usr/bin/env bash
# selftest.sh — start a mailstack in a temp dir, exercise it end to end with
# python3's standard library (selftest.py), stop it. Exits non-zero on any
# failure. Set MAILSTACK_KEEP=1 to keep the temp dir (it is kept on failure).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

command -v python3 >/dev/null || { echo "FAIL: python3 not found"; exit 1; }
"$HERE/install.sh" || { echo "FAIL: install"; exit 1; }

DIR=$(mktemp -d /tmp/mailstack.XXXXXX)
t0=$(date +%s.%N)
rc=0
cleanup() {
    "$HERE/stop.sh" "$DIR" >/dev/null 2>&1 || "$HERE/stop.sh" "$DIR"
    if [ $rc -eq 0 ] && [ -z "${MAILSTACK_KEEP:-}" ]; then
        rm -rf "$DIR"
    else
        echo "selftest: logs and config kept in $DIR"
    fi
}
trap cleanup EXIT
trap 'rc=130; exit 130' INT TERM

if "$HERE/start.sh" "$DIR"; then
    echo "PASS: start.sh (both servers greeting)"
else
    echo "FAIL: start.sh"
    rc=1; exit 1
fi

python3 "$HERE/selftest.py" "$DIR" || rc=1

. "$DIR/env"
if "$HERE/stop.sh" "$DIR"; then
    open=""
    for p in "$IMAP_PORT" "$IMAPS_PORT" "$SMTP_PORT" "$SMTPS_PORT" "$SUBMISSION_PORT"; do
        timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null && open="$open $p"
    done
    if [ -z "$open" ]; then echo "PASS: stop.sh (all ports closed)"; else echo "FAIL: stop.sh, still open:$open"; rc=1; fi
else
    echo "FAIL: stop.sh"; rc=1
fi
if "$HERE/stop.sh" "$DIR" >/dev/null; then echo "PASS: stop.sh again (idempotent)"; else echo "FAIL: stop.sh again"; rc=1; fi

t1=$(date +%s.%N)
total=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
if [ $rc -eq 0 ]; then
    echo "selftest: ALL PASSED in ${total}s"
else
    echo "selftest: FAILED (${total}s)"
    for f in dovecot.log postfix.log; do echo "----- $f (tail) -----"; tail -n 40 "$DIR/$f"; done
fi
exit $rc
