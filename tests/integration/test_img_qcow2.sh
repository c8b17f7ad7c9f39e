#!/usr/bin/env bash
# qcow2 interop with QEMU's tools, both ways: images qemu-img wrote (cluster sizes 4 KiB..2 MiB,
# zlib and zstd compression, backing chains, zero clusters, refcount widths) read back exactly;
# images we wrote pass `qemu-img check` (no errors, no leaks) and `qemu-img compare` equal to a raw
# reference that received the same writes; a >4 GiB sparse image; crash and repair.
# timeout: 240
. "$VDI_SRC/tests/lib.sh"
command -v qemu-img >/dev/null || t_need "qemu-img is not installed (apt install qemu-utils)"
IO=$VDI_BUILD/tests/tools/imgio
[ -x "$IO" ] || t_fail "$IO is missing (make build-tests)"
t_tmpdir
cd "$T"

# A 40 MiB pattern: numbered 4 KiB blocks, every third block zero, then 8 MiB of random bytes.
python3 - <<'PY'
import os
with open('pat.raw', 'wb') as f:
    for i in range(32 * 1024 * 1024 // 4096):
        f.write((b'%08d' % i) * 512 if i % 3 else bytes(4096))
    f.write(os.urandom(8 << 20))
PY

# --- reading what qemu-img wrote
for cs in 4k 64k 2M; do
    for comp in none zlib zstd; do
        opts=(-o cluster_size=$cs)
        [ $comp != none ] && opts=(-c -o cluster_size=$cs,compression_type=$comp)
        qemu-img convert -f raw -O qcow2 "${opts[@]}" pat.raw in.qcow2
        "$IO" dump in.qcow2 out.raw || t_fail "dump of a qemu-img image (cluster $cs, $comp)"
        t_check "read qemu-img image, cluster $cs, compression $comp" cmp -s out.raw pat.raw
        t_check "our check finds that image clean (cluster $cs, $comp)" "$IO" check in.qcow2
    done
done
qemu-img convert -f raw -O qcow2 -o compat=0.10 pat.raw v2.qcow2
"$IO" dump v2.qcow2 out.raw
t_check "read a version 2 (compat 0.10) image" cmp -s out.raw pat.raw

# A three-deep chain with allocated, zero and discarded clusters in each layer.
qemu-img convert -f raw -O qcow2 pat.raw base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
qemu-io -c "write -P 0x55 1M 3M" -c "write -z 10M 1M" -c "write -P 0x11 39M 2M" mid.qcow2 >/dev/null
qemu-img create -q -f qcow2 -o cluster_size=4k -b mid.qcow2 -F qcow2 top.qcow2
qemu-io -c "write -P 0x66 2M 64k" -c "discard 20M 2M" -c "write -P 0x77 3000 5000" top.qcow2 >/dev/null
qemu-img convert -O raw top.qcow2 chain.raw
"$IO" dump top.qcow2 out.raw
t_check "read a qemu-img backing chain (3 deep, zero and discarded clusters)" cmp -s out.raw chain.raw

# --- writing: our writes against a raw reference, checked by qemu-img
for cs in 12 16 21; do
    "$IO" create w.qcow2 48M $cs
    t_check "new image (cluster 2^$cs) passes qemu-img check" qemu-img check -q w.qcow2
    truncate -s 48M ref.raw
    "$IO" random w.qcow2 ref.raw 400 $cs || t_fail "random writes (cluster 2^$cs)"
    t_check "after random writes/discards (cluster 2^$cs): qemu-img check clean" qemu-img check -q w.qcow2
    t_check "after random writes/discards (cluster 2^$cs): qemu-img compare equal" qemu-img compare -q w.qcow2 ref.raw
    rm -f w.qcow2 ref.raw
done
for comp in zlib zstd; do
    qemu-img convert -f raw -O qcow2 -c -o cluster_size=64k,compression_type=$comp pat.raw w.qcow2
    cp pat.raw ref.raw
    "$IO" random w.qcow2 ref.raw 300 11 || t_fail "writes over compressed clusters ($comp)"
    t_check "writes over $comp-compressed clusters: check clean" qemu-img check -q w.qcow2
    t_check "writes over $comp-compressed clusters: compare equal" qemu-img compare -q w.qcow2 ref.raw
    rm -f w.qcow2 ref.raw
done
for rb in 1 8 64; do
    # 512-byte clusters make the refcount table grow after a few MiB.
    qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=$rb w.qcow2 16M
    truncate -s 16M ref.raw
    "$IO" random w.qcow2 ref.raw 300 $rb 20000 || t_fail "writes with $rb-bit refcounts"
    t_check "$rb-bit refcounts, refcount table growth: check clean" qemu-img check -q w.qcow2
    t_check "$rb-bit refcounts, refcount table growth: compare equal" qemu-img compare -q w.qcow2 ref.raw
    rm -f w.qcow2 ref.raw
done

# Overlay (ours) on the qemu-img chain: copy-up of partial clusters from three layers below.
"$IO" create ov.qcow2 0 16 top.qcow2
cp chain.raw ref.raw
"$IO" random ov.qcow2 ref.raw 400 5 || t_fail "writes to an overlay"
t_check "overlay on a chain: check clean" qemu-img check -q ov.qcow2
t_check "overlay on a chain: compare equal" qemu-img compare -q ov.qcow2 ref.raw
t_check "overlay on a chain: qemu-img sees the chain" \
    bash -c "qemu-img info --backing-chain ov.qcow2 | grep -c '^image:' | grep -qx 4"
t_check "the backing files were not written" qemu-img compare -q top.qcow2 chain.raw

# > 4 GiB, sparse: random writes over 6 GiB (most of them above 4 GiB), and the last byte.
"$IO" create big.qcow2 6G 16
truncate -s 6G big.raw
"$IO" random big.qcow2 big.raw 200 42 100000 || t_fail "random writes to a 6 GiB image"
"$IO" write big.qcow2 $((6 * 1024 * 1024 * 1024 - 4096)) 4096 9
"$IO" write big.qcow2 $((4 * 1024 * 1024 * 1024 - 2048)) 4096 10
python3 - <<'PY'
import os
def pat(n, seed):
    return bytes(((seed * 131 + i * 7 + (i >> 9)) ^ (seed >> 3)) & 255 for i in range(n))
fd = os.open('big.raw', os.O_WRONLY)
os.pwrite(fd, pat(4096, 9), 6 * 2**30 - 4096)
os.pwrite(fd, pat(4096, 10), 4 * 2**30 - 2048)
os.close(fd)
PY
t_check "6 GiB sparse image: check clean" qemu-img check -q big.qcow2
t_check "6 GiB sparse image: compare equal (data above 4 GiB included)" qemu-img compare -q big.qcow2 big.raw
t_check "6 GiB sparse image stays small" test "$(stat -c %s big.qcow2)" -lt $((64 << 20))
rm -f big.qcow2 big.raw

# Crash (exit without close, metadata half flushed) and repair on the next open.
qemu-img convert -f raw -O qcow2 pat.raw golden.qcow2
sum=$(sha256sum golden.qcow2)
for seed in 1 2 3; do
    rm -f c.qcow2
    "$IO" create c.qcow2 0 16 golden.qcow2
    "$IO" crash c.qcow2 300 $seed
    t_check "after a crash (seed $seed): qemu-img check finds no errors" \
        bash -c "qemu-img check c.qcow2 >/dev/null 2>&1; rc=\$?; [ \$rc = 0 ] || [ \$rc = 3 ]"
    "$IO" check c.qcow2 repair >/dev/null 2>&1
    t_check "after a crash (seed $seed): repaired image is clean" qemu-img check -q c.qcow2
done
t_check "the golden image is unchanged" bash -c "[ '$(sha256sum golden.qcow2)' = '$sum' ]"
t_done
