#!/usr/bin/env bash
# testdesk's patch agent in a real machine (QEMU; TCG here, KVM too where it exists): a ustar
# bundle on a read-only second disk is run against the data area of the system disk, the agent
# prints its output and "PATCH EXIT N" and powers off; the next boot of that disk shows the
# banner and the files. A failing and a malformed script give their exit codes and leave the
# area as it was; a disk without a bundle is an ordinary boot. A patch that writes a `crash`
# file makes a broken version: its next boot announces the crash and, the given time after
# READY, triple-faults (QEMU with -no-reboot then exits on its own); a maintenance VM of that
# version still runs patches, and a `crash` file that is not a number is reported and ignored.
# `fetch` takes a file from a server on the network (QEMU's user network, whose gateway is the
# host's loopback), says when the server has no such file, and when the machine has no NIC.
# timeout: 180
. "${VDI_SRC:?}/tests/lib.sh"
ELF=$VDI_SRC/build/testdesk/testdesk.elf
SYS=$VDI_SRC/build/testdesk/system.qcow2
[ -f "$ELF" ] || t_fail "$ELF is missing (make testdesk)"
[ -f "$SYS" ] || t_fail "$SYS is missing (make testdesk)"
command -v qemu-system-x86_64 >/dev/null || t_need "qemu-system-x86_64 is missing (deploy/deps/testdesk.txt)"
command -v qemu-img >/dev/null || t_need "qemu-img is missing"
t_tmpdir
accel=tcg
[ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] && accel=kvm
fast=()
[ -f /usr/share/qemu/qboot.rom ] && fast=(-bios /usr/share/qemu/qboot.rom)

# boot NAME DISK [BUNDLE]: run QEMU until the guest powers off; serial in $T/NAME.log. A NIC
# on QEMU's user network when $NIC is set.
NIC=
boot() {
    local name=$1 disk=$2 bundle=${3:-}
    local drives=(-drive "if=none,id=d0,format=qcow2,file=$disk" -device virtio-blk-pci,drive=d0)
    [ -n "$NIC" ] && drives+=(-netdev user,id=n0 -device virtio-net-pci,netdev=n0)
    [ -n "$bundle" ] && drives+=(-drive "if=none,id=d1,format=raw,readonly=on,file=$bundle"
        -device virtio-blk-pci,drive=d1)
    timeout $((60 * VDI_TEST_TIMEOUT_MULT)) qemu-system-x86_64 -accel "$accel" "${fast[@]}" -smp 1 \
        -m 128 -nodefaults -display none -no-reboot -kernel "$ELF" \
        -append "testdesk.run=poweroff" "${drives[@]}" \
        -chardev file,id=ser,path="$T/$name.log" -serial chardev:ser
    rc=$?
}
has() { grep -qa -- "$2" "$T/$1.log"; }

# bundle NAME: $T/NAME/ as a ustar archive $T/NAME.tar (GNU tar, as an admin would make one).
bundle() { tar --format=ustar -C "$T/$1" -cf "$T/$1.tar" . || t_fail "tar failed"; }

qemu-img create -q -f qcow2 -F qcow2 -b "$SYS" "$T/v2.qcow2" || t_fail "qemu-img create failed"

mkdir -p "$T/good"
cat > "$T/good/run" <<'S'
#!testdesk-patch
# a patch in testdesk's own bundle format
echo applying patch 7
banner Patched by test 7
write motd hello from the patch
copy notes.txt notes
S
printf 'release notes, shipped in the bundle\n' > "$T/good/notes.txt"
bundle good
boot patch "$T/v2.qcow2" "$T/good.tar"
t_check "the maintenance VM powers off by itself (status $rc)" [ "$rc" = 0 ]
t_check "the agent finds the bundle on the read-only disk" has patch "patch agent: bundle on disk1"
t_check "the script's own output reaches serial" has patch "^applying patch 7"
t_check "the banner change is reported" has patch 'patch: banner set to "Patched by test 7"'
t_check "a bundle member is copied" has patch "patch: copied notes.txt to notes (37 bytes)"
t_check "PATCH EXIT 0" has patch "^PATCH EXIT 0"
t_check "the golden disk is untouched (overlay written)" qemu-img check -q "$T/v2.qcow2"

boot after "$T/v2.qcow2"
t_check "the patched disk boots normally" has after "TESTDESK READY"
t_check "the banner shows at the next boot" has after "TESTDESK BANNER Patched by test 7"
t_check "the written file is there" has after "testdesk: file motd size=20"
t_check "the copied file is there" has after "testdesk: file notes size=37"
! has after "PATCH EXIT" || t_fail "an ordinary boot ran the agent"
boot base "$SYS"
! has base "TESTDESK BANNER" || t_fail "the base image shows a banner: the patch reached it"

mkdir -p "$T/fail"
printf 'banner should not matter\nexit 3\nbanner never reached\n' > "$T/fail/run"
bundle fail
qemu-img create -q -f qcow2 -F qcow2 -b "$SYS" "$T/v3.qcow2"
boot fail "$T/v3.qcow2" "$T/fail.tar"
t_check "exit 3 is PATCH EXIT 3" has fail "^PATCH EXIT 3"
! has fail "never reached" || t_fail "the script went on after exit"

mkdir -p "$T/bad"
printf 'write motd ok\nfrobnicate now\n' > "$T/bad/run"
bundle bad
boot bad "$T/v3.qcow2" "$T/bad.tar"
t_check "an unknown command names its line" has bad "patch: line 2: unknown command frobnicate"
t_check "and exits 127" has bad "^PATCH EXIT 127"

# testdesk.data=1: a data disk counts the boots it has seen (the user's data survives versions).
qemu-img create -q -f qcow2 "$T/data.qcow2" 16M
databoot() { # NAME: boot v3 with the data disk
    timeout $((60 * VDI_TEST_TIMEOUT_MULT)) qemu-system-x86_64 -accel "$accel" "${fast[@]}" -smp 1 \
        -m 128 -nodefaults -display none -no-reboot -kernel "$ELF" \
        -append "testdesk.data=1 testdesk.run=poweroff" \
        -drive "if=none,id=d0,format=qcow2,file=$T/v3.qcow2" -device virtio-blk-pci,drive=d0 \
        -drive "if=none,id=d1,format=qcow2,file=$T/data.qcow2" -device virtio-blk-pci,drive=d1 \
        -chardev file,id=ser,path="$T/$1.log" -serial chardev:ser
}
databoot data1
t_check "a new data disk: first boot" has data1 "TESTDESK DATA disk=1 boots=1"
databoot data2
t_check "the count is on the disk: second boot" has data2 "TESTDESK DATA disk=1 boots=2"
t_check "qemu-img finds the data disk sound" qemu-img check -q "$T/data.qcow2"

# A broken version on purpose: a patch writes `crash` (1500 ms, spaces around it).
mkdir -p "$T/crash"
printf '#!testdesk-patch\nbanner broken on purpose\nwrite crash  1500  \n' > "$T/crash/run"
bundle crash
qemu-img create -q -f qcow2 -F qcow2 -b "$SYS" "$T/v4.qcow2"
boot crashpatch "$T/v4.qcow2" "$T/crash.tar"
t_check "the crash patch is applied (status $rc)" has crashpatch "^PATCH EXIT 0"
! has crashpatch "TESTDESK CRASH" || t_fail "the version being patched already crashed"

# crashboot NAME DISK RUN: boot with 2 CPUs and testdesk.run=RUN until QEMU exits (-no-reboot
# turns the reset after a triple fault into an exit); TCG logs "Triple fault" in $T/NAME.qlog.
crashboot() {
    local dbg=()
    [ "$accel" = tcg ] && dbg=(-d cpu_reset -D "$T/$1.qlog")
    timeout $((60 * VDI_TEST_TIMEOUT_MULT)) qemu-system-x86_64 -accel "$accel" "${fast[@]}" -smp 2 \
        -m 128 -nodefaults -display none -no-reboot -kernel "$ELF" "${dbg[@]}" \
        -append "testdesk.run=$3" \
        -drive "if=none,id=d0,format=qcow2,file=$2" -device virtio-blk-pci,drive=d0 \
        -chardev file,id=ser,path="$T/$1.log" -serial chardev:ser
    rc=$?
}
# line NAME PATTERN: the number of the first serial line matching PATTERN (empty when none).
line() { grep -na -m1 -- "$2" "$T/$1.log" | cut -d: -f1; }
# in_order NAME PATTERN...: each PATTERN is on a later line than the one before.
in_order() {
    local name=$1 prev=0 n
    shift
    for p in "$@"; do
        n=$(line "$name" "$p")
        [ -n "$n" ] && [ "$n" -gt "$prev" ] || return 1
        prev=$n
    done
}
# last_is NAME TEXT: the last line that is not blank is TEXT.
last_is() { [ "$(grep -av '^[[:space:]]*$' "$T/$1.log" | tail -n1 | tr -d '\r')" = "$2" ]; }
# Without the crash the guest would echo "late" and power off 20 s after READY.
crashboot broken "$T/v4.qcow2" "sleep:500;echo:early;sleep:20000;echo:late;poweroff"
t_check "QEMU exits by itself after the crash (status $rc)" [ "$rc" = 0 ]
t_check "the boot announces the crash" has broken "^TESTDESK CRASH in 1500 ms"
t_check "announced at boot, carried out after READY and not at once" \
    in_order broken "^TESTDESK CRASH in" "^TESTDESK READY" "^TESTDESK OK echo early" \
    "^TESTDESK CRASH now"
t_check "nothing after TESTDESK CRASH now" last_is broken "TESTDESK CRASH now"
! has broken "echo late" || t_fail "the guest went on after the crash time"
! has broken "powering off" || t_fail "the broken version powered off instead of crashing"
! has broken "TESTDESK FAIL exception" || t_fail "a fault was caught instead of a triple fault"
if [ "$accel" = tcg ]; then
    t_check "QEMU saw a triple fault" grep -q "Triple fault" "$T/broken.qlog"
fi

# A maintenance VM of the broken version does not crash; this patch spoils the file instead.
mkdir -p "$T/nocrash"
printf 'sleep 2000\nwrite crash 15 seconds\n' > "$T/nocrash/run"
bundle nocrash
boot fixpatch "$T/v4.qcow2" "$T/nocrash.tar"
t_check "a maintenance VM says it will not crash" has fixpatch "no crash in a maintenance VM"
t_check "and outlives the crash time to finish its patch" has fixpatch "^PATCH EXIT 0"
! has fixpatch "TESTDESK CRASH now" || t_fail "a maintenance VM crashed"
crashboot badcrash "$T/v4.qcow2" "sleep:2000;echo:alive;poweroff"
t_check "a crash file that is not a number is reported" \
    has badcrash "^TESTDESK FAIL crash file ignored: it is not a decimal number"
t_check "and ignored: the guest lives on and powers off" \
    in_order badcrash "^TESTDESK READY" "^TESTDESK OK echo alive" "powering off"
! has badcrash "TESTDESK CRASH" || t_fail "a crash file that is not a number was obeyed"

# fetch: a UDP file server on the host's loopback, which the guest reaches as its gateway.
command -v python3 >/dev/null || t_need "python3 is missing"
cat >"$T/files.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
files = {"pkg": b"package 1.2.3 from the network\n"}
while True:
    data, peer = s.recvfrom(2048)
    name = data.decode(errors="replace").strip()[4:] if data.startswith(b"GET ") else ""
    with open(sys.argv[1] + ".log", "a") as log:
        log.write("asked for %s\n" % name)
    s.sendto(files.get(name, b""), peer)
PY
t_bg python3 "$T/files.py" "$T/files.port"
t_wait_for 10 test -s "$T/files.port" || t_fail "the file server did not start"
port=$(cat "$T/files.port")
mkdir -p "$T/fetch" "$T/fetchmiss"
printf 'fetch gw %s pkg\necho got it\n' "$port" >"$T/fetch/run"
printf 'fetch gw %s missing\necho not reached\n' "$port" >"$T/fetchmiss/run"
bundle fetch
bundle fetchmiss
qemu-img create -q -f qcow2 -F qcow2 -b "$SYS" "$T/v5.qcow2"
NIC=1 boot fetch "$T/v5.qcow2" "$T/fetch.tar"
t_check "the server was asked for pkg" grep -q "asked for pkg" "$T/files.port.log"
t_check "fetch reports the file and its size" has fetch "patch: fetched pkg from gw (31 bytes)"
t_check "and the patch exits 0" has fetch "^PATCH EXIT 0"
boot fetched "$T/v5.qcow2"
t_check "the fetched file is on the disk at the next boot" has fetched "testdesk: file pkg size=31"
NIC=1 boot fetchmiss "$T/v5.qcow2" "$T/fetchmiss.tar"
t_check "a file the server does not have is named" \
    has fetchmiss "patch: line 1: the server has no such file: missing"
t_check "and the patch exits 1" has fetchmiss "^PATCH EXIT 1"
! has fetchmiss "not reached" || t_fail "the script went on after a failed fetch"
boot nonic "$T/v5.qcow2" "$T/fetch.tar"
t_check "without a NIC fetch says so" has nonic "patch: line 1: no network in this machine for fetch of pkg"
t_check "and the patch exits 1" has nonic "^PATCH EXIT 1"

# Not a bundle: random bytes on the read-only disk are not run.
head -c 65536 /dev/urandom > "$T/noise.img"
boot noise "$T/v3.qcow2" "$T/noise.img"
t_check "a disk that is not a bundle: an ordinary boot" has noise "TESTDESK READY"
! has noise "PATCH EXIT" || t_fail "random bytes were taken for a bundle"
t_done
