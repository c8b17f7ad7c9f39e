#!/usr/bin/env bash
# tests/run-tests.sh SUITE...: runs each test suite (a unit-test binary, an integration program or
# script) as its own process with a timeout, prints one line per suite and, last, the summary line
# "N passed, N failed[, N skipped]". Exit status 1 if any suite failed.
#
# A suite passes with exit 0, is skipped with exit 77 (its reason: the last output line that starts
# with "SKIP: "), and fails otherwise. Output goes to $VDI_BUILD/test-logs/<suite>.log; a failing
# suite's log tail is shown. A script may set its timeout with a line "# timeout: SECONDS".
set -u
build=${VDI_BUILD:-$PWD/build/default}
mult=${VDI_TEST_TIMEOUT_MULT:-1}
logs=$build/test-logs
mkdir -p "$logs"
pass=0 fail=0 skip=0
failed=()
for suite in "$@"; do
    rel=${suite#"$build"/}
    rel=${rel#"${VDI_SRC:-$PWD}"/}
    name=${rel#*tests/}
    name=${name%.sh}
    log=$logs/${name//\//_}.log
    limit=300
    if [[ $suite == *.sh ]]; then
        t=$(sed -n 's/^# timeout: *\([0-9]\+\).*/\1/p' "$suite" | head -n1)
        [ -n "$t" ] && limit=$t
        cmd=(bash "$suite")
    else
        cmd=("$suite")
    fi
    limit=$((limit * mult))
    start=$EPOCHREALTIME
    # timeout runs the suite in a process group of its own and, when the time is up, signals the
    # whole group, so what the suite started goes too (except daemons that made groups of their
    # own, which the suites stop themselves).
    timeout --kill-after=10 "$limit" "${cmd[@]}" </dev/null >"$log" 2>&1
    rc=$?
    secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    cases=$(grep -E '^\[  PASSED  \] [0-9]+ test' "$log" | tail -n1 | sed -E 's/.* ([0-9]+) test.*/\1/')
    detail="${secs}s${cases:+, $cases cases}"
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1))
        printf 'PASS  %-44s (%s)\n' "$name" "$detail"
    elif [ $rc -eq 77 ]; then
        skip=$((skip + 1))
        reason=$(grep '^SKIP: ' "$log" | tail -n1 | sed 's/^SKIP: //')
        printf 'SKIP  %-44s %s\n' "$name" "${reason:-no reason given}"
    else
        fail=$((fail + 1))
        failed+=("$name")
        why="exit $rc"
        [ $rc -eq 124 ] || [ $rc -eq 137 ] && why="timed out after ${limit}s"
        printf 'FAIL  %-44s (%s, %s; log: %s)\n' "$name" "$detail" "$why" "$log"
        tail -n 25 "$log" | sed 's/^/      | /'
    fi
done
summary="$pass passed, $fail failed"
[ $skip -gt 0 ] && summary="$summary, $skip skipped"
echo "$summary"
[ $fail -eq 0 ]
