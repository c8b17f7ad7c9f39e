#!/usr/bin/env bash
# testdesk (golden-images/testdesk) boots on vdi-vmm with 1 and with 2 vCPUs to READY, reports the
# CPUs it found, passes its self-checks (no TESTDESK FAIL), powers off through ACPI S5: status 0.
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
t_done
