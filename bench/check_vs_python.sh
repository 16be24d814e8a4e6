#!/bin/sh
# Per-submission time of `studio-intake check --format json` (release, every mail of a set in
# one invocation) against bench/python_pipeline.py on the same mails. Median of RUNS runs.
# Usage: bench/check_vs_python.sh [RUNS]   (CARGO_TARGET_DIR decides where the binaries are)
set -eu
RUNS=${1:-5}
T=${CARGO_TARGET_DIR:-target}/release
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
"$T/bench-core" 0 --write "$DIR" >/dev/null
for set in office camera; do
    n=$(ls "$DIR"/$set-*.eml | wc -l)
    times=""
    for _ in $(seq "$RUNS"); do
        s=$(date +%s.%N)
        "$T/studio-intake" check --format json "$DIR"/$set-*.eml >/dev/null || true
        e=$(date +%s.%N)
        times="$times $(echo "($e - $s) * 1000 / $n" | bc -l)"
    done
    med=$(echo $times | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '%s set (%s mails): check %.2f ms per submission (median of %s runs)\n' "$set" "$n" "$med" "$RUNS"
    python3 "$(dirname "$0")/python_pipeline.py" --rounds 3 "$DIR"/$set-*.eml
done
