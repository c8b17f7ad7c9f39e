#!/usr/bin/env bash
# virtio-blk on real KVM with a real guest (vmm/testguest/hostile.c in "disk" mode): data the
# guest writes is in the host file afterwards (raw and qcow2, checked with dd and qemu-img), a
# read-only disk refuses writes and stays byte-for-byte unchanged, and a guest flush reaches the
# file: the VMM syncs the image after the guest's write (strace), the data survives SIGKILL, and
# without a guest flush no sync happens.
# timeout: 180
. "$VDI_SRC/tests/lib.sh"
t_require_kvm
t_tmpdir
command -v qemu-img >/dev/null || t_need "qemu-img is missing (deploy/deps)"
command -v strace >/dev/null || t_need "strace is missing (deploy/deps)"

guest=$VDI_SRC/build/vmm-testguest/hostile.elf
t_check "test guest is built" test -f "$guest"
tmo=$((60 * VDI_TEST_TIMEOUT_MULT))
pattern() { # the 512 bytes the guest writes to each sector of disk $1
    local i
    for i in $(seq 16); do printf 'VDI-GUEST-WROTE-DISK%s' "$(printf "%012d" 0 | tr 0 "$1")"; done
}
sector8() { dd if="$1" bs=512 skip=8 count=1 status=none; }

# --- 1. write, read-only, readback ---------------------------------------------------------
truncate -s 8M "$T/rw.img"
head -c 8M /dev/urandom >"$T/ro.img"
qemu-img create -q -f qcow2 "$T/rw.qcow2" 16M
ro_sum=$(sha256sum <"$T/ro.img")
t_expect_exit 0 "guest runs its disk checks and powers off" \
    timeout "$tmo" "$VDI_BIN/vdi-vmm" --kernel "$guest" --mem 64 --cmdline disk \
    --disk "$T/rw.img" --disk "$T/ro.img,ro" --disk "$T/rw.qcow2" \
    --serial-log "$T/serial.log" 2>"$T/vmm.err"
t_check "guest saw three disks" grep -q "^DISKS DONE" "$T/serial.log"
t_check "raw disk: write, flush, readback ok" \
    grep -q "^DISK 0 ro=0 flushf=1 write=0 flush=0 read=0 readback=same$" "$T/serial.log"
t_check "read-only disk: offered as RO, write refused (IOERR), reads work" \
    grep -q "^DISK 1 ro=1 flushf=1 write=1 flush=0 read=0 readback=different$" "$T/serial.log"
t_check "qcow2 disk: write, flush, readback ok" \
    grep -q "^DISK 2 ro=0 flushf=1 write=0 flush=0 read=0 readback=same$" "$T/serial.log"
t_check "the guest's data is in the raw file" \
    cmp -s <(sector8 "$T/rw.img") <(pattern 0)
t_check "the read-only file is unchanged" test "$(sha256sum <"$T/ro.img")" = "$ro_sum"
t_check "qemu-img finds the qcow2 image clean" qemu-img check -q "$T/rw.qcow2"
qemu-img convert -O raw "$T/rw.qcow2" "$T/rw.qcow2.raw"
t_check "the guest's data is in the qcow2 image" \
    cmp -s <(sector8 "$T/rw.qcow2.raw") <(pattern 2)

# --- 2. flush reaches the file --------------------------------------------------------------
# Run with the guest holding after its checks, under strace; then kill -9 (no clean close).
held_run() { # $1: extra guest words; $2: disk image
    local name
    name=$(basename "$2")
    t_bg strace -f -qq -e trace=pwrite64,pwritev,fdatasync,fsync -s 24 -o "$T/$name.strace" \
        "$VDI_BIN/vdi-vmm" --kernel "$guest" --mem 64 --cmdline "disk hold $1" \
        --disk "$2" --serial-log "$T/$name.log" 2>"$T/$name.err"
    local pid=$!
    t_wait_for 60 grep -qs "^DISKS DONE" "$T/$name.log" || t_fail "$name: guest did not finish"
    sleep 0.5
    local c
    for c in $(pgrep -P "$pid"); do kill -KILL "$c"; done # the traced vdi-vmm
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}
# Sync calls after the guest's data write (the pwrite carrying its pattern, raw disks).
syncs_after_write() {
    awk '/VDI-GUEST-WROTE/ { seen = 1 } seen && /(fdatasync|fsync)\(/ { n++ } END { print n + 0 }' "$1"
}
truncate -s 8M "$T/flush.img" "$T/noflush.img"
held_run "" "$T/flush.img"
t_check "guest flush: status 0" grep -q "flush=0 read=0 readback=same" "$T/flush.img.log"
t_check "the VMM wrote the guest's data to the file" grep -q "VDI-GUEST-WROTE" "$T/flush.img.strace"
t_check "the guest's flush made the VMM sync the file" \
    test "$(syncs_after_write "$T/flush.img.strace")" -ge 1
held_run noflush "$T/noflush.img"
t_check "guest without flush still reads its data back" \
    grep -q "flush=254 read=0 readback=same" "$T/noflush.img.log"
t_check "the VMM wrote that guest's data too" grep -q "VDI-GUEST-WROTE" "$T/noflush.img.strace"
t_check "no flush from the guest, no sync of the file" \
    test "$(syncs_after_write "$T/noflush.img.strace")" -eq 0

# qcow2: a flushed write survives SIGKILL of the VMM (metadata included).
qemu-img create -q -f qcow2 "$T/killed.qcow2" 16M
held_run "" "$T/killed.qcow2"
qemu-img convert -O raw "$T/killed.qcow2" "$T/killed.raw"
t_check "flushed qcow2 data survives SIGKILL of the VMM" cmp -s <(sector8 "$T/killed.raw") <(pattern 0)
t_done
