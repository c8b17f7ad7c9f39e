#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS [TARGET...]]: build every libFuzzer target tests/fuzz/fuzz_*.c (or
# only the TARGETs named, e.g. fuzz_qcow2) with clang and run each for SECONDS (default 30),
# starting from its seeds: the text seeds in tests/fuzz/corpus/<name>/ and the binary ones
# tests/fuzz/seeds.py makes, plus what earlier runs found (build/fuzz/corpus/<name>/). Each run's
# executions go to build/fuzz/summary.tsv (target, seconds, runs, result), for docs/fuzzing.md.
#
# A target names what it links in two header lines:
#   // fuzz-srcs: auth/rfbsec.c common/*.c      (sources, globs allowed, relative to the top)
#   // fuzz-libs: -lssl -lcrypto                (extra link flags)
# Crashes land in build/fuzz/artifacts/<name>/; the run fails if any target finds one.
set -euo pipefail
secs=${1:-30}
shift || true
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
out=build/fuzz
mkdir -p "$out"
cflags=(-std=gnu11 -g -O1 -I. -D_GNU_SOURCE -DVDI_FUZZING -pthread
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
shopt -s nullglob
targets=(tests/fuzz/fuzz_*.c)
if [ $# -gt 0 ]; then
    targets=()
    for n in "$@"; do
        [ -f "tests/fuzz/$n.c" ] || { echo "fuzz: no target tests/fuzz/$n.c" >&2; exit 2; }
        targets+=("tests/fuzz/$n.c")
    done
fi
python3 tests/fuzz/seeds.py "$out/seeds"
: >"$out/summary.tsv"
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz: no targets under tests/fuzz/"
    exit 0
fi
failed=0
for t in "${targets[@]}"; do
    name=$(basename "$t" .c)
    # shellcheck disable=SC2207
    srcs=($(sed -n 's|^// fuzz-srcs: *||p' "$t" | head -n1))
    expanded=()
    for s in "${srcs[@]}"; do for f in $s; do expanded+=("$f"); done; done
    libs=$(sed -n 's|^// fuzz-libs: *||p' "$t" | head -n1)
    echo "fuzz: building $name"
    # shellcheck disable=SC2086
    clang "${cflags[@]}" -o "$out/$name" "$t" "${expanded[@]}" $libs
    corpus=$out/corpus/$name
    mkdir -p "$corpus" "$out/artifacts/$name"
    seeds=tests/fuzz/corpus/$name
    [ -d "$seeds" ] && cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
    [ -d "$out/seeds/$name" ] && cp -n "$out/seeds/$name"/* "$corpus"/ 2>/dev/null || true
    echo "fuzz: running $name for ${secs}s"
    if ! "$out/$name" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/$name/" "$corpus" >"$out/$name.log" 2>&1; then
        echo "fuzz: $name FAILED; see $out/$name.log and $out/artifacts/$name/"
        tail -n 30 "$out/$name.log"
        failed=1
        printf '%s\t%s\t%s\tFAILED\n' "$name" "$secs" "-" >>"$out/summary.tsv"
    else
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$name.log" | grep -o '[0-9]*$')
        echo "fuzz: $name ok ($runs runs)"
        printf '%s\t%s\t%s\tclean\n' "$name" "$secs" "$runs" >>"$out/summary.tsv"
    fi
done
exit $failed
