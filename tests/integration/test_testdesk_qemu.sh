#!/usr/bin/env bash
# testdesk boots under QEMU (the reference machine): PVH entry, long mode, ring 3, ACPI tables,
# two vCPUs brought up with INIT/SIPI, commands from the command line, ACPI S5 power-off and
# i8042 reboot, under SeaBIOS and qboot. Under KVM (skipped without /dev/kvm, failed under VDI_REQUIRE_KVM=1) and TCG.
# timeout: 120
. "${VDI_SRC:?}/tests/lib.sh"
ELF=$VDI_SRC/build/testdesk/testdesk.elf
[ -f "$ELF" ] || t_fail "$ELF is missing (make testdesk)"
command -v qemu-system-x86_64 >/dev/null || t_need "qemu-system-x86_64 is missing (deploy/deps/testdesk.txt)"
t_tmpdir

# boot ACCEL NAME CMDLINE [FIRMWARE...]: run QEMU until the guest stops it; serial in
# $T/NAME.log, status in $rc.
boot() {
    local accel=$1 name=$2 append=$3
    shift 3
    timeout $((40 * VDI_TEST_TIMEOUT_MULT)) qemu-system-x86_64 -accel "$accel" "$@" -smp 2 -m 128 \
        -nodefaults -display none -no-reboot -kernel "$ELF" -append "$append" \
        -chardev file,id=ser,path="$T/$name.log" -serial chardev:ser
    rc=$?
}
has() { grep -qa -- "$2" "$T/$1.log"; }

# SeaBIOS (QEMU's default) for the first boot; qboot, much faster under nested KVM, for the others.
fast=()
[ -f /usr/share/qemu/qboot.rom ] && fast=(-bios /usr/share/qemu/qboot.rom)

run_variant() {
    local accel=$1
    boot "$accel" "$accel-off" "quiet testdesk.run=echo:hello;poweroff"
    t_check "$accel: QEMU exits 0 after the guest's ACPI power-off (status $rc)" [ "$rc" = 0 ]
    t_check "$accel: READY with 2 CPUs and no devices" has "$accel-off" "TESTDESK READY cpus=2 fb=none disks=0"
    t_check "$accel: command from testdesk.run answered" has "$accel-off" "TESTDESK OK echo hello"
    t_check "$accel: memory map read from hvm_start_info" has "$accel-off" "type=1"
    t_check "$accel: ACPI \\_S5 found" has "$accel-off" "s5=yes"
    t_check "$accel: powered off, not halted" has "$accel-off" "powering off"
    ! has "$accel-off" "TESTDESK FAIL" || t_fail "$accel: a FAIL line: $(grep -a 'TESTDESK FAIL' "$T/$accel-off.log")"

    boot "$accel" "$accel-reboot" "testdesk.run=reboot" "${fast[@]}"
    t_check "$accel: i8042 reset ends QEMU under -no-reboot (status $rc)" [ "$rc" = 0 ]
    t_check "$accel: reboot announced" has "$accel-reboot" "testdesk: rebooting"
    ! has "$accel-reboot" "TESTDESK FAIL" || t_fail "$accel: reboot did not reset the machine"

    boot "$accel" "$accel-bad" "testdesk.bogus=1 testdesk.run=frobnicate;poweroff" "${fast[@]}"
    t_check "$accel: an unknown option is reported" has "$accel-bad" "TESTDESK FAIL option testdesk.bogus=1"
    t_check "$accel: an unknown command is reported" has "$accel-bad" 'TESTDESK FAIL command unknown command "frobnicate"'
}

run_variant tcg
if [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    run_variant kvm
else
    t_require_kvm   # skips, or fails under VDI_REQUIRE_KVM=1
fi
t_done
