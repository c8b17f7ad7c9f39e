#!/usr/bin/env bash
# vdi-vmm boots a tiny PVH payload (test_vmm_payload.S): serial output, the command line and the
# memory map it receives, and the exit status for power-off (0), reboot (3, or a restart with
# --on-reboot=restart), triple fault (4, `crashed`), and unknown ports/MMIO (survives, logs
# rate-limited).
# timeout: 120
. "$VDI_SRC/tests/lib.sh"
t_require_kvm
t_tmpdir
VMM=$VDI_BIN/vdi-vmm
CTL=$VDI_BUILD/tests/tools/vmm-ctl

as --32 -o "$T/p.o" "$VDI_SRC/tests/integration/test_vmm_payload.S" || t_fail "cannot assemble the payload"
printf 'SECTIONS { . = 0x100000; .text : { *(.text) } .data : { *(.data) } .note : { *(.note.pvh) } }\n' >"$T/p.ld"
ld -m elf_i386 -T "$T/p.ld" -o "$T/payload.elf" "$T/p.o" 2>/dev/null || t_fail "cannot link the payload"
P=$T/payload.elf

run() { # run NAME ARGS...: serial log in $T/NAME.serial, stderr in $T/NAME.err, status in $rc
    local name=$1; shift
    timeout 30 "$VMM" --kernel "$P" --serial-log "$T/$name.serial" "$@" 2>"$T/$name.err"
    rc=$?
}

run off --mem 64 --cmdline "poweroff please"
t_check "power-off exits 0 (got $rc)" test "$rc" = 0
t_check "the payload saw our command line" grep -qx "PAYLOAD cmdline=poweroff please" "$T/off.serial"
# --mem 64: low RAM 0-0x9fc00, EBDA, the firmware-table area, RAM from 1 MiB to 64 MiB.
cat >"$T/want.e820" <<'E'
PAYLOAD e820 0000000000000000 000000000009fc00 00000001
PAYLOAD e820 000000000009fc00 0000000000000400 00000002
PAYLOAD e820 00000000000e0000 0000000000020000 00000002
PAYLOAD e820 0000000000100000 0000000003f00000 00000001
E
grep '^PAYLOAD e820' "$T/off.serial" >"$T/got.e820"
t_check "PVH memory map for 64 MiB" cmp -s "$T/want.e820" "$T/got.e820"

run high --mem 4G --cmdline p
t_check "4 GiB guest powers off (got $rc)" test "$rc" = 0
t_check "RAM above 4 GiB is in the map" grep -qx "PAYLOAD e820 0000000100000000 0000000040000000 00000001" "$T/high.serial"
t_check "low RAM stops at the 3 GiB hole" grep -qx "PAYLOAD e820 0000000000100000 00000000bff00000 00000001" "$T/high.serial"

run smp --mem 64 --vcpus 4 --cmdline p
t_check "4 vCPUs: power-off exits 0 (got $rc)" test "$rc" = 0

out=$(timeout 30 "$VMM" --kernel "$P" --mem 64 --cmdline p 2>/dev/null)
t_check "without --serial-log the console goes to stdout" grep -q "PAYLOAD cmdline=p" <<<"$out"

before=$(date -u +%y%m%d%H%M)
run clock --mem 64 --cmdline clock
after=$(date -u +%y%m%d%H%M)
t_check "CMOS clock test powers off (got $rc)" test "$rc" = 0
got=$(sed -n 's/^PAYLOAD rtc \([0-9]*\) .*/\1/p' "$T/clock.serial")
t_check "the CMOS RTC reads the host's UTC time ($got, host $before..$after)" test "$got" = "$before" -o "$got" = "$after"
t_check "the i8042 passes its self-test (0x55)" grep -q "i8042=55" "$T/clock.serial"

run reboot --mem 64 --cmdline reboot
t_check "guest reset exits 3 (got $rc)" test "$rc" = 3

run triple --mem 64 --cmdline triple
t_check "triple fault exits 4 (got $rc)" test "$rc" = 4
t_check "the log names the triple fault" grep -q "crashed: triple fault" "$T/triple.err"

run unknown --mem 64 --cmdline unknown
t_check "unknown ports and MMIO: the guest survives (got $rc)" test "$rc" = 0
t_check "the payload went on after 1000 bad accesses" grep -q "PAYLOAD survived" "$T/unknown.serial"
n=$(grep -c "unknown port\|unassigned mmio" "$T/unknown.err")
t_check "4000 bad accesses log at most 20 lines (got $n)" test "$n" -le 20 -a "$n" -ge 1

# --on-reboot=restart: the payload resets every time; the VMM rebuilds the VM each time until
# we quit through the control socket (exit 5).
t_bg "$VMM" --kernel "$P" --mem 64 --cmdline reboot --on-reboot restart --control "$T/ctl" \
    --serial-log "$T/restart.serial" 2>"$T/restart.err"
pid=$!
t_wait_for 20 test -S "$T/ctl" || t_fail "no control socket"
t_wait_for 20 bash -c "[ \$(grep -c 'PAYLOAD cmdline=reboot' '$T/restart.serial') -ge 3 ]" ||
    t_fail "the guest did not boot three times"
"$CTL" "$T/ctl" '{"cmd":"quit"}' >/dev/null
wait $pid
rc=$?
t_check "restarting VMM quits with status 5 (got $rc)" test "$rc" = 5
t_check "each reboot was logged" grep -q "restarting the virtual machine" "$T/restart.err"
t_done
