#!/usr/bin/env bash
# stop-dovecot.sh DIR — stop only the Dovecot of the stack in DIR (see start.sh).
# start waits for the greetings; stop waits until the ports are closed.
# Idempotent.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
ms_load "$1"
ms_stop_dovecot
