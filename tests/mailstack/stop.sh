#!/usr/bin/env bash
# stop.sh DIR — stop the stack started by start.sh DIR (Postfix, then Dovecot)
# by their pid files, and wait until all its ports are closed. Idempotent:
# stopping a stopped (or never started) stack succeeds.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$(ms_abspath "$1"); DIR=${DIR%/}
if [ ! -f "$DIR/env" ]; then
    ms_log "nothing to stop in $DIR (no env file)"
    exit 0
fi
ms_load "$DIR"
rc=0
ms_stop_postfix || rc=1
ms_stop_dovecot || rc=1
[ $rc -eq 0 ] && ms_log "stopped ($DIR)"
exit $rc
