#!/usr/bin/env bash
# A guest that misprograms every PCI device (vmm/testguest/hostile.c: rings outside RAM,
# descriptor loops, bad indirect tables, index jumps, garbage MSI-X vectors, all-ones over the
# virtio and MSI-X BARs, BARs moved onto each other, onto RAM and the LAPIC, absurd display modes,
# all-ones over config space) does not take vdi-vmm down: virtio devices report
# DEVICE_NEEDS_RESET, work again after a reset, and the guest's power-off still ends the VMM
# with status 0.
# timeout: 120
. "$VDI_SRC/tests/lib.sh"
t_require_kvm
t_tmpdir

guest=$VDI_SRC/build/vmm-testguest/hostile.elf
t_check "hostile guest is built" test -f "$guest"
truncate -s 8M "$T/disk.img"
printf 'precious' | dd of="$T/disk.img" bs=1 seek=4096 conv=notrunc status=none

run() {
    timeout $((60 * VDI_TEST_TIMEOUT_MULT)) "$VDI_BIN/vdi-vmm" --kernel "$guest" --mem 64 \
        --vcpus "$1" --disk "$T/disk.img" --serial-log "$T/serial$1.log" 2>"$T/vmm$1.err"
}
for cpus in 1 2; do
    t_expect_exit 0 "VMM survives the hostile guest and exits 0 on its power-off ($cpus vCPU)" \
        run "$cpus"
    t_check "guest finished its abuse ($cpus vCPU)" grep -q "^HOSTILE DONE$" "$T/serial$cpus.log"
    if grep -q "HOSTILE FAIL" "$T/serial$cpus.log"; then
        grep "HOSTILE FAIL" "$T/serial$cpus.log"
        t_fail "a device check failed in the guest ($cpus vCPU)"
    fi
    t_check "every virtio abuse was noticed ($cpus vCPU)" \
        test "$(grep -c 'sets NEEDS_RESET' "$T/serial$cpus.log")" -ge 10
    t_check "the VMM logged the guest errors" grep -q "device needs reset" "$T/vmm$cpus.err"
    t_check "no crash was reported" bash -c "! grep -qi 'crashed' '$T/vmm$cpus.err'"
    t_check "guest-triggered logs are rate-limited" \
        test "$(wc -l <"$T/vmm$cpus.err")" -lt 200
done
t_check "the disk was not written" bash -c \
    "[ \"\$(dd if='$T/disk.img' bs=1 skip=4096 count=8 status=none)\" = precious ]"
t_done
