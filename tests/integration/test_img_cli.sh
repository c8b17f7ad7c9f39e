#!/usr/bin/env bash
# `vdictl image`: the catalogue (import, list, show, clone, refs, publish, set-current, remove,
# verify) and the file tools (create, info, check, convert, commit, rebase), checked with qemu-img.
# timeout: 120
. "$VDI_SRC/tests/lib.sh"
command -v qemu-img >/dev/null || t_need "qemu-img is not installed (apt install qemu-utils)"
command -v script >/dev/null || t_need "script is not installed (apt install bsdutils): the progress bar needs a terminal"
V="$VDI_BIN/vdictl"
t_tmpdir
cd "$T"
export VDI_STATE_DIR=$T/state VDI_LOG_LEVEL=err
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

python3 -c "
import os
with open('disk.raw','wb') as f:
    for i in range(24*256):
        f.write((b'%08d' % i) * 512 if i % 5 else bytes(4096))
"
head -c 9000 /dev/urandom > kernel.bin

# --- file tools
t_check "create qcow2" "$V" image create -q t.qcow2 1G
t_check "qemu-img accepts it" qemu-img check -q t.qcow2
got=$("$V" image info --json t.qcow2 | json "d['format'], d['virtual_size'], d['cluster_size']")
t_check "info --json: size and format" test "$got" = "qcow2 1073741824 65536"
out=$("$V" image info t.qcow2)
t_check "info (human) names the size" grep -q "virtual size:  1.0 GiB" <<<"$out"
t_check "convert raw -> qcow2 (4 KiB clusters)" "$V" image convert -q -c 4K disk.raw d.qcow2
t_check "converted image equals the source" qemu-img compare -q disk.raw d.qcow2
t_check "converted image checks clean (qemu-img)" qemu-img check -q d.qcow2
t_check "check (ours): clean, exit 0" "$V" image check d.qcow2
"$V" image create -q -b d.qcow2 ov.qcow2
qemu-io -c "write -P 0x42 100k 300k" ov.qcow2 >/dev/null
t_check "convert a chain -> raw" "$V" image convert -q -O raw ov.qcow2 flat.raw
t_check "flattened chain equals qemu's view" qemu-img compare -q ov.qcow2 flat.raw
# the progress bar: on a terminal only
out=$(script -qc "'$V' image convert disk.raw pb.qcow2" /dev/null | tr '\r' '\n')
t_check "convert draws a progress bar on a terminal" grep -q "convert \[#*\] 100%" <<<"$out"
"$V" image convert disk.raw pb2.qcow2 2>pb.err
t_check "no progress bar when stderr is not a terminal" test ! -s pb.err
# commit: the overlay's data lands in the backing file
cp d.qcow2 d0.qcow2
t_check "commit" "$V" image commit -q ov.qcow2
t_check "after commit the backing file shows the overlay's data" qemu-img compare -q d.qcow2 flat.raw
t_check "committed backing file checks clean" qemu-img check -q d.qcow2
# safe rebase onto another base keeps what the image shows; unsafe just rewrites the header
qemu-img convert -O qcow2 disk.raw other.qcow2
qemu-io -c "write -P 0x17 0 1M" other.qcow2 >/dev/null
"$V" image create -q -b d0.qcow2 rb.qcow2
qemu-io -c "write -P 0x99 2M 64k" rb.qcow2 >/dev/null
qemu-img convert -O raw rb.qcow2 rb-before.raw
t_check "safe rebase" "$V" image rebase -q -b other.qcow2 rb.qcow2
t_check "safe rebase: image unchanged" qemu-img compare -q rb.qcow2 rb-before.raw
t_check "safe rebase: qemu-img sees the new backing" \
    bash -c "qemu-img info rb.qcow2 | grep -q 'backing file: other.qcow2'"
t_check "safe rebase: check clean" qemu-img check -q rb.qcow2
t_check "rebase to no backing" "$V" image rebase -q -b '' rb.qcow2
t_check "no backing: image still unchanged" qemu-img compare -q rb.qcow2 rb-before.raw
# check finds leaks and repairs them
qemu-img create -q -f qcow2 lk.qcow2 16M
qemu-io -c "write 0 1M" lk.qcow2 >/dev/null
python3 - <<'PY'
import struct
f = open('lk.qcow2', 'r+b')
f.seek(2 * 65536); blk = bytearray(f.read(65536))
n = struct.unpack('>H', blk[2*40:2*40+2])[0]
blk[2*40:2*40+2] = struct.pack('>H', 1)   # cluster 40 leaked: counted, never referenced
f.seek(2 * 65536); f.write(blk); f.truncate(41 * 65536); f.close()
PY
"$V" image check lk.qcow2 >/dev/null; rc=$?
t_check "check reports a leak (exit 3)" test $rc = 3
t_check "check -r repairs it" "$V" image check -r lk.qcow2
t_check "repaired: qemu-img check clean" qemu-img check -q lk.qcow2

# --- catalogue
t_check "import (flattens, with boot files)" "$V" image import -q demo ov.qcow2 --kernel kernel.bin \
    --cmdline "console=ttyS0" --notes "first version"
t_check "list shows it" bash -c "'$V' image list | grep -qE '^demo +1 +1$'"
m=$("$V" image show --json demo)
t_check "manifest: version, sha256 of the disk and kernel" bash -c "python3 -c \"
import json,hashlib,sys
m=json.loads(sys.argv[1]); d='$VDI_STATE_DIR/images/demo/v1/'
assert m['version']==1 and m['parent'] is None and m['current']
for f in ('disk.qcow2','kernel','cmdline'):
    assert m['files'][f]['sha256']==hashlib.sha256(open(d+f,'rb').read()).hexdigest(), f
assert m['cmdline']=='console=ttyS0' and m['notes']=='first version'
\" '$m'"
t_check "imported disk equals its source" qemu-img compare -q "$VDI_STATE_DIR/images/demo/v1/disk.qcow2" flat.raw
golden=$VDI_STATE_DIR/images/demo/v1/disk.qcow2
gsum=$(sha256sum <"$golden")
t_check "clone with a holder" "$V" image clone -q demo c1.qcow2 --holder desk-1
t_check "clone is an overlay on v1" bash -c "qemu-img info c1.qcow2 | grep -q 'backing file: $golden'"
t_check "show counts the desktop" bash -c "'$V' image show --json demo | grep -q '\"desktops\": 1'"
qemu-io -c "write -P 0x61 0 2M" c1.qcow2 >/dev/null
"$V" image clone -q demo c2.qcow2
t_check "a second clone does not see the first clone's writes" qemu-img compare -q c2.qcow2 flat.raw
t_check "the golden image is unchanged" test "$(sha256sum <"$golden")" = "$gsum"
"$V" image remove demo 1 2>/dev/null; rc=$?
t_check "a version in use cannot be removed" test $rc = 1
# publish the patched clone as v2 (an overlay on v1), then roll back and forth
t_check "publish a clone as v2" "$V" image publish -q demo c1.qcow2 --notes "patched"
t_check "v2 shows the patch" qemu-img compare -q "$VDI_STATE_DIR/images/demo/v2/disk.qcow2" c1.qcow2
t_check "v2 keeps v1's kernel" cmp -s "$VDI_STATE_DIR/images/demo/v2/kernel" kernel.bin
t_check "v1 is used by a later version" bash -c "'$V' image show --json demo@1 | grep -q '\"later_versions\": 1'"
t_check "v1 is still current" bash -c "'$V' image list | grep -qE '^demo +1 +1,2$'"
t_check "set-current 2" "$V" image set-current -q demo 2
"$V" image clone -q demo c3.qcow2
t_check "a new clone follows the current version" qemu-img compare -q c3.qcow2 c1.qcow2
t_check "rollback: set-current 1" "$V" image set-current -q demo 1
t_check "verify all versions" "$V" image verify demo
chmod u+w "$VDI_STATE_DIR/images/demo/v1/kernel"
printf x >>"$VDI_STATE_DIR/images/demo/v1/kernel"
"$V" image verify demo@1 >/dev/null 2>&1; rc=$?
t_check "verify finds a changed file" test $rc = 1
"$V" image remove demo 2 >/dev/null 2>&1; rc=$?
t_check "v2 (not current, unused) can be removed" test $rc = 0
t_check "after removing v2 only v1 is left" bash -c "'$V' image list | grep -qE '^demo +1 +1$'"
"$V" image import -q ../evil disk.raw 2>/dev/null; rc=$?
t_check "an image name with a slash is refused" test $rc = 1
t_check "nothing was written outside the catalogue" test ! -e "$T/evil"
t_expect_exit 2 "unknown image command" "$V" image frobnicate

# Sizes that are not whole blocks: nothing at the end may be lost, either way, and QEMU reads
# what we write (a qcow2 is rounded up to a whole 512-byte sector, as qemu-img rounds).
for sz in 511 513 4097 65537 1048577 3157000; do
    head -c "$sz" /dev/urandom >odd.raw
    "$V" image convert -q odd.raw odd.qcow2 --force
    t_check "$sz bytes: raw -> qcow2 keeps every byte (qemu-img compare)" \
        qemu-img compare -q -f raw -F qcow2 odd.raw odd.qcow2
    qemu-img convert -O raw odd.qcow2 odd-q.raw
    t_check "$sz bytes: ... as QEMU reads it back" cmp -s -n "$sz" odd.raw odd-q.raw
    "$V" image convert -q -O raw odd.qcow2 odd-back.raw --force
    t_check "$sz bytes: qcow2 -> raw keeps every byte" cmp -s -n "$sz" odd.raw odd-back.raw
    qemu-img convert -f raw -O qcow2 odd.raw odd-qemu.qcow2
    "$V" image convert -q -O raw odd-qemu.qcow2 odd-qemu.raw --force
    t_check "$sz bytes: a qcow2 qemu-img wrote converts to raw whole" cmp -s -n "$sz" odd.raw odd-qemu.raw
    "$V" image convert -q -O raw odd.raw odd-rr.raw --force
    t_check "$sz bytes: raw -> raw is the same file" cmp -s odd.raw odd-rr.raw
done
# An existing destination is refused, saying how to force it; --force overwrites it.
echo keep >exists.qcow2
"$V" image convert -q odd.raw exists.qcow2 2>conv.err
t_check "convert refuses an existing destination (exit 1)" test $? = 1
t_check "... and says how to force it" grep -q "already exists; nothing was written (pass --force" conv.err
t_check "... leaving it as it was" grep -q "^keep$" exists.qcow2
t_check "convert --force overwrites it" "$V" image convert -q --force odd.raw exists.qcow2
t_check "... with the image" qemu-img compare -q -f raw -F qcow2 odd.raw exists.qcow2
t_done
