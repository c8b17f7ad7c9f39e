#!/usr/bin/env bash
# bench/run.sh: run every benchmark bench/<name>/run.sh in turn (or only those named in
# $VDI_BENCH, space-separated). Each prints its own figures next to the reference's and the ratio.
# Benchmarks are not tests: they measure, they do not pass or fail on speed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shopt -s nullglob
ran=0
for b in "$here"/*/run.sh; do
    name=$(basename "$(dirname "$b")")
    if [ -n "${VDI_BENCH:-}" ] && ! grep -qw "$name" <<<"$VDI_BENCH"; then continue; fi
    echo "=== bench/$name"
    bash "$b"
    ran=$((ran + 1))
done
[ $ran -gt 0 ] || echo "bench: no benchmarks selected"
