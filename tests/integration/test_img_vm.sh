#!/usr/bin/env bash
# In a VM: testdesk (make testdesk: testdesk.elf and the golden system.qcow2 our writer made) is
# imported into a catalogue and boots under vdi-vmm from a clone (a qcow2 overlay on the golden
# version): it verifies the golden data through the clone, writes, flushes and reads back. The
# golden image's sha256 is unchanged afterwards, a second clone does not see the first clone's
# writes, qemu-img finds both clones clean, and a second VMM cannot open a clone that is in use.
# timeout: 120
. "$VDI_SRC/tests/lib.sh"
t_require_kvm
command -v qemu-img >/dev/null || t_need "qemu-img is not installed (apt install qemu-utils)"
ELF=$VDI_SRC/build/testdesk/testdesk.elf
DISK=$VDI_SRC/build/testdesk/system.qcow2
[ -f "$ELF" ] && [ -f "$DISK" ] || t_fail "make testdesk first ($ELF, $DISK)"
t_tmpdir
export VDI_STATE_DIR=$T/state VDI_LOG_LEVEL=warn
V=$VDI_BIN/vdictl
tmo=$((60 * VDI_TEST_TIMEOUT_MULT))

t_check "import testdesk (kernel + golden disk)" "$V" image import -q testdesk "$DISK" --kernel "$ELF"
KERNEL=$VDI_STATE_DIR/images/testdesk/v1/kernel
GOLDEN=$VDI_STATE_DIR/images/testdesk/v1/disk.qcow2
gsum=$(sha256sum <"$GOLDEN")
t_check "clone A" "$V" image clone -q testdesk "$T/a.qcow2" --holder desk-a
t_check "clone B" "$V" image clone -q testdesk "$T/b.qcow2" --holder desk-b

boot() { # boot DISK LOG RUN-COMMANDS
    timeout "$tmo" "$VDI_BIN/vdi-vmm" --kernel "$KERNEL" --mem 64 --display none --no-rng \
        --disk "$1" --serial-log "$2" --cmdline "testdesk.require=blk testdesk.run=$3;poweroff"
}
t_expect_exit 0 "testdesk boots from clone A, writes and powers off" \
    boot "$T/a.qcow2" "$T/a.log" \
    "disk-verify:0:0:8192:0x47;disk-write:0:100:64:0x5a;disk-write:0:9000:8:0x61;flush:0;disk-verify:0:100:64:0x5a"
t_check "A: the golden data reads through the clone" \
    grep -q "TESTDESK OK disk-verify disk=0 sector=0 count=8192 pattern=0x47" "$T/a.log"
t_check "A: the guest's writes read back" \
    grep -q "TESTDESK OK disk-verify disk=0 sector=100 count=64 pattern=0x5a" "$T/a.log"
t_check "A: the flush succeeded" grep -q "TESTDESK OK disk-flush disk=0" "$T/a.log"
t_check "A: no failure reported" bash -c "! grep -q 'TESTDESK FAIL' '$T/a.log'"
t_check "the golden image is unchanged (sha256)" test "$(sha256sum <"$GOLDEN")" = "$gsum"
t_check "clone A is clean (qemu-img check)" qemu-img check -q "$T/a.qcow2"
qemu-img convert -O raw "$T/a.qcow2" "$T/a.raw"
t_check "the guest's data is in clone A" python3 -c "
import struct
d = open('$T/a.raw', 'rb').read()
for s in range(100, 164):
    assert d[s*512:s*512+512] == b'TDSK' + struct.pack('<Q', s) + b'\x5a' * 500, s
assert d[99*512:99*512+4] == b'TDSK' and d[99*512+12] == 0x47
"

t_expect_exit 0 "testdesk boots from clone B" boot "$T/b.qcow2" "$T/b.log" \
    "disk-verify:0:0:8192:0x47;disk-read:0:9000:8"
t_check "B: does not see A's writes (the golden pattern is intact)" \
    grep -q "TESTDESK OK disk-verify disk=0 sector=0 count=8192 pattern=0x47" "$T/b.log"
t_check "B: no failure reported" bash -c "! grep -q 'TESTDESK FAIL' '$T/b.log'"
t_check "the golden image is still unchanged" test "$(sha256sum <"$GOLDEN")" = "$gsum"

# Locks: while a VMM runs on clone A, a second VMM on A fails, and the golden image cannot be
# opened for writing (read locks from the running VMM's backing chain).
t_bg "$VDI_BIN/vdi-vmm" --kernel "$KERNEL" --mem 64 --display none --no-rng --disk "$T/a.qcow2" \
    --serial-log "$T/held.log" --cmdline "testdesk.require=blk"
t_wait_for 30 grep -q "TESTDESK READY" "$T/held.log" || t_fail "held VMM did not start"
timeout "$tmo" "$VDI_BIN/vdi-vmm" --kernel "$KERNEL" --mem 64 --display none --no-rng \
    --disk "$T/a.qcow2" --serial-log "$T/second.log" 2>"$T/second.err"
rc=$?
t_check "a second VMM on the same clone is refused" test $rc != 0
t_check "... and says the image is in use" grep -q "in use by another process" "$T/second.err"
"$V" image commit -q "$T/a.qcow2" 2>"$T/commit.err"; rc=$?
t_check "committing into the golden image while it is in use is refused" test $rc = 1
"$VDI_BUILD/tests/tools/imgio" write "$GOLDEN" 0 512 1 2>"$T/gw.err"; rc=$?
t_check "opening the golden image for writing while a desktop uses it is refused" test $rc = 1
t_check "... because of the running VMM's read lock" grep -q "in use by another process" "$T/gw.err"
t_check "the golden image is unchanged at the end" test "$(sha256sum <"$GOLDEN")" = "$gsum"
t_done
