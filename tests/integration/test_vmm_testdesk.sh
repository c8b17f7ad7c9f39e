#!/usr/bin/env bash
# testdesk (golden-images/testdesk) boots on vdi-vmm with 1 and with 2 vCPUs to READY, reports the
# CPUs it found, passes its self-checks (no TESTDESK FAIL), powers off through ACPI S5: status 0.
# Console input (--serial-in) reaches its command line from a file, stdin and a FIFO.
# timeout: 120
. "$VDI_SRC/tests/lib.sh"
t_require_kvm
t_tmpdir
VMM=$VDI_BIN/vdi-vmm
ELF=$VDI_SRC/build/testdesk/testdesk.elf
[ -f "$ELF" ] || t_fail "$ELF is missing (make testdesk)"

for n in 1 2; do
    timeout 60 "$VMM" --kernel "$ELF" --mem 128 --vcpus $n --cmdline "testdesk.run=poweroff" \
        --serial-log "$T/td$n.serial" 2>"$T/td$n.err"
    rc=$?
    t_check "$n vCPU(s): testdesk powers off with status 0 (got $rc)" test "$rc" = 0
    t_check "$n vCPU(s): testdesk reaches READY with cpus=$n" grep -q "^TESTDESK READY cpus=$n " "$T/td$n.serial"
    t_check "$n vCPU(s): no self-check failed" bash -c "! grep -q 'TESTDESK FAIL' '$T/td$n.serial'"
    t_check "$n vCPU(s): testdesk found our ACPI S5" grep -q "s5=yes" "$T/td$n.serial"
done
printf 'echo from-a-file\npoweroff\n' >"$T/cmds"
timeout 60 "$VMM" --kernel "$ELF" --mem 128 --fb none --serial-in "$T/cmds" --serial-log "$T/file.serial" 2>/dev/null
rc=$?
t_check "serial input from a file: the guest ran our commands (got $rc)" test "$rc" = 0
t_check "serial input from a file: the echo came back" grep -q "TESTDESK OK echo from-a-file" "$T/file.serial"

printf 'echo from-stdin\npoweroff\n' | timeout 60 "$VMM" --kernel "$ELF" --mem 128 --fb none --serial-in - \
    --serial-log "$T/stdin.serial" 2>/dev/null
rc=$?
t_check "serial input from stdin (got $rc)" test "$rc" = 0
t_check "serial input from stdin: the echo came back" grep -q "TESTDESK OK echo from-stdin" "$T/stdin.serial"

mkfifo "$T/fifo"
t_bg timeout 60 "$VMM" --kernel "$ELF" --mem 128 --fb none --serial-in "$T/fifo" --serial-log "$T/fifo.serial" 2>"$T/fifo.err"
pid=$!
t_wait_for 30 grep -qs "TESTDESK READY" "$T/fifo.serial" || t_fail "no READY with a FIFO for input"
echo "echo through-a-fifo" >"$T/fifo"
t_check "serial input from a FIFO: the echo came back" t_wait_for 20 grep -q "TESTDESK OK echo through-a-fifo" "$T/fifo.serial"
echo "poweroff" >"$T/fifo"
wait $pid
rc=$?
t_check "serial input from a FIFO: poweroff typed on the console (got $rc)" test "$rc" = 0
t_done
