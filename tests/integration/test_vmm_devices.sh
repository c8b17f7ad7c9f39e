#!/usr/bin/env bash
# testdesk on vdi-vmm's PCI devices (the same guest and checks test_testdesk_devices.sh runs on
# QEMU's): with 1 and 2 vCPUs it finds the bochs display (EDID mode), the virtio keyboard and
# tablet, three disks (raw, read-only raw, qcow2) and the rng, passes its self-checks, writes,
# verifies and flushes disk patterns that the host then finds in the files, verifies a pattern the
# host wrote, reads random bytes, sees the read-only disk as such, and powers off (exit 0).
# timeout: 120
. "$VDI_SRC/tests/lib.sh"
t_require_kvm
t_tmpdir
command -v qemu-img >/dev/null || t_need "qemu-img is missing (deploy/deps)"
command -v python3 >/dev/null || t_need "python3 is missing (deploy/deps)"
ELF=$VDI_SRC/build/testdesk/testdesk.elf
t_check "testdesk is built" test -f "$ELF"

# pattern.py FILE SECTOR COUNT PAT [write]: testdesk's sector pattern ("TDSK", le64 sector, 500
# bytes of PAT); checks FILE holds it (exit 1 if not) or writes it.
cat >"$T/pattern.py" <<'PY'
import struct, sys
path, sector, count, pat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4], 0)
want = b"".join(b"TDSK" + struct.pack("<Q", s) + bytes([pat]) * 500
                for s in range(sector, sector + count))
with open(path, "r+b" if len(sys.argv) > 5 else "rb") as f:
    f.seek(sector * 512)
    if len(sys.argv) > 5:
        f.write(want)
        sys.exit(0)
    sys.exit(0 if f.read(len(want)) == want else 1)
PY
pat() { python3 "$T/pattern.py" "$@"; }

run='disk-write:0:100:16:0x5a;disk-verify:0:100:16:0x5a;flush:0'
run+=';disk-verify:0:200:4:0x33;disk-write:2:64:8:0xc3;flush:2;disk-verify:2:64:8:0xc3'
run+=';disk-read:1:0:1;rng:64;poweroff'
for cpus in 1 2; do
    truncate -s 4M "$T/rw$cpus.img"
    pat "$T/rw$cpus.img" 200 4 0x33 write
    head -c 1M /dev/urandom >"$T/ro$cpus.img"
    ro_sum=$(sha256sum <"$T/ro$cpus.img")
    qemu-img create -q -f qcow2 "$T/q$cpus.qcow2" 8M
    t_expect_exit 0 "testdesk runs its checks and powers off ($cpus vCPU)" \
        timeout $((60 * VDI_TEST_TIMEOUT_MULT)) "$VDI_BIN/vdi-vmm" --kernel "$ELF" --mem 128 \
        --vcpus "$cpus" --fb 1280x800 \
        --disk "$T/rw$cpus.img" --disk "$T/ro$cpus.img,ro" --disk "$T/q$cpus.qcow2" \
        --cmdline "testdesk.require=fb,kbd,tablet,blk,rng testdesk.run=$run" \
        --serial-log "$T/serial$cpus.log" 2>"$T/vmm$cpus.err"
    log=$T/serial$cpus.log
    t_check "READY with $cpus CPUs, the EDID mode and three disks" \
        grep -q "^TESTDESK READY cpus=$cpus fb=1280x800 disks=3" "$log"
    if grep -q "TESTDESK FAIL" "$log"; then
        grep "TESTDESK FAIL" "$log"
        t_fail "testdesk reported a failure ($cpus vCPU)"
    fi
    t_check "display found" grep -q "^testdesk: display 1280x800 (EDID preferred mode)" "$log"
    t_check "keyboard found" grep -q '^testdesk: keyboard "vdi virtio keyboard"' "$log"
    t_check "tablet found with absolute axes" \
        grep -q '^testdesk: tablet "vdi virtio tablet" x=0..32767 y=0..32767' "$log"
    t_check "disks found, the second read-only" bash -c \
        "grep -q '^testdesk: disk0 sectors=8192 ro=0 flush=1' '$log' &&
         grep -q '^testdesk: disk1 sectors=2048 ro=1 flush=1' '$log' &&
         grep -q '^testdesk: disk2 sectors=16384 ro=0 flush=1' '$log'"
    for ok in "disk-write disk=0 sector=100 count=16 pattern=0x5a" \
        "disk-verify disk=0 sector=100 count=16 pattern=0x5a" "disk-flush disk=0" \
        "disk-verify disk=0 sector=200 count=4 pattern=0x33" \
        "disk-write disk=2 sector=64 count=8 pattern=0xc3" "disk-flush disk=2" \
        "disk-verify disk=2 sector=64 count=8 pattern=0xc3" "disk-read disk=1 sector=0 count=1" \
        "rng bytes=64"; do
        t_check "guest: $ok" grep -q "^TESTDESK OK $ok" "$log"
    done
    t_check "the guest's pattern is in the raw file" pat "$T/rw$cpus.img" 100 16 0x5a
    qemu-img convert -O raw "$T/q$cpus.qcow2" "$T/q$cpus.raw"
    t_check "the guest's pattern is in the qcow2 image" pat "$T/q$cpus.raw" 64 8 0xc3
    t_check "qemu-img finds the qcow2 image clean" qemu-img check -q "$T/q$cpus.qcow2"
    t_check "the read-only file is unchanged" test "$(sha256sum <"$T/ro$cpus.img")" = "$ro_sum"
    t_check "no guest errors logged by the devices" bash -c "! grep -q 'guest error' '$T/vmm$cpus.err'"
done
t_done
