#!/usr/bin/env bash
# The three programs answer --help and --version, and refuse bad usage with exit status 2.
# timeout: 30
. "$VDI_SRC/tests/lib.sh"

for prog in vdid vdi-vmm vdictl; do
    bin=$VDI_BIN/$prog
    t_check "$prog exists" test -x "$bin"
    out=$("$bin" --help) || t_fail "$prog --help exited non-zero"
    t_check "$prog --help prints usage" grep -q "^Usage: $prog" <<<"$out"
    out=$("$bin" --version) || t_fail "$prog --version exited non-zero"
    t_check "$prog --version names itself" grep -qE "^$prog [0-9]+\.[0-9]+\.[0-9]+" <<<"$out"
    t_expect_exit 2 "$prog rejects an unknown option" "$bin" --no-such-option 2>/dev/null
done
t_expect_exit 2 "vdictl rejects an unknown command" "$VDI_BIN/vdictl" frobnicate 2>/dev/null
t_expect_exit 2 "vdid rejects a bad log level" "$VDI_BIN/vdid" --log-level=loud 2>/dev/null
t_done
