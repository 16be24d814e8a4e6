#!/usr/bin/env bash
# restart-dovecot.sh DIR — stop Dovecot (clients see their connections drop),
# start it again with the same config and mail, wait for the IMAP greetings.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
ms_load "$1"
ms_stop_dovecot
ms_start_dovecot
