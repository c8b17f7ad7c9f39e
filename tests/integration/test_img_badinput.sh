#!/usr/bin/env bash
# Bad images: truncated files, L1 entries past EOF, overlapping and self-referencing tables,
# refcount overflow, backing-file loops, absurd sizes, a missing backing file. Each must give a
# clear error naming the file and the problem, never a crash, and never a write to the file.
# timeout: 60
. "$VDI_SRC/tests/lib.sh"
command -v qemu-img >/dev/null || t_need "qemu-img is not installed (apt install qemu-utils)"
IO=$VDI_BUILD/tests/tools/imgio
[ -x "$IO" ] || t_fail "$IO is missing (make build-tests)"
t_tmpdir
cd "$T"

# expect_bad FILE PATTERN DESCRIPTION: reading and writing FILE both fail (exit 1, not a signal),
# the log names FILE and matches PATTERN, and FILE is unchanged.
expect_bad() {
    local f=$1 pat=$2 what=$3 before after rc
    before=$(sha256sum "$f")
    for mode in dump write; do
        if [ $mode = dump ]; then "$IO" dump "$f" out.raw >log 2>&1; rc=$?
        else "$IO" write "$f" 0 4096 1 >log 2>&1; rc=$?; fi
        [ $rc = 1 ] || { cat log; t_fail "$what ($mode): exit status $rc, expected 1"; }
        grep -q "image=[^ ]*$(basename "$f")" log || { cat log; t_fail "$what ($mode): the error does not name the file"; }
        grep -qiE "$pat" log || { cat log; t_fail "$what ($mode): the error does not say '$pat'"; }
    done
    after=$(sha256sum "$f")
    t_check "$what: clear error, no crash, no write" test "$before" = "$after"
}

# poke FILE OFFSET FORMAT VALUE: overwrite a big-endian field (FORMAT: Q, L or B).
poke() { python3 -c "
import struct,sys
f=open('$1','r+b'); f.seek($2); f.write(struct.pack('>$3', $4)); f.close()"; }

mk() { qemu-img create -q -f qcow2 -o cluster_size=64k "$1" 16M; qemu-io -c "write -P 0x33 0 128k" "$1" >/dev/null; }

mk good.qcow2
"$IO" dump good.qcow2 out.raw || t_fail "the unmodified image does not read"

cp good.qcow2 t.qcow2; truncate -s 100 t.qcow2
expect_bad t.qcow2 "truncated|past the end" "file truncated inside the header"
cp good.qcow2 t.qcow2; truncate -s 200000 t.qcow2
expect_bad t.qcow2 "past the end" "file truncated before the data (L2 table gone)"
cp good.qcow2 t.qcow2; truncate -s 300000 t.qcow2
expect_bad t.qcow2 "past the end" "file truncated inside the data"

cp good.qcow2 t.qcow2; poke t.qcow2 $((3 * 65536)) Q '0x8000000100000000'
expect_bad t.qcow2 "L1 entry points past the end" "L1 entry past EOF"
cp good.qcow2 t.qcow2; poke t.qcow2 40 Q 65536
expect_bad t.qcow2 "overlap" "L1 table on top of the refcount table"
cp good.qcow2 t.qcow2; poke t.qcow2 $((3 * 65536)) Q '0x8000000000000000 | 3*65536'
expect_bad t.qcow2 "L1 entry points at the header, L1 table" "L1 entry pointing at the L1 table itself"
cp good.qcow2 t.qcow2; poke t.qcow2 $((4 * 65536)) Q '0x8000000000000000 | 4*65536'
expect_bad t.qcow2 "own L2 table" "L2 entry pointing at its own L2 table"
cp good.qcow2 t.qcow2; poke t.qcow2 $((4 * 65536)) Q '0x8000000000000000 | 65536'
expect_bad t.qcow2 "overlaps the header, L1 table or refcount table" "data cluster on the refcount table"
cp good.qcow2 t.qcow2; poke t.qcow2 48 Q 0
expect_bad t.qcow2 "refcount table offset" "refcount table at offset 0"
cp good.qcow2 t.qcow2; poke t.qcow2 24 Q '1 << 62'
expect_bad t.qcow2 "absurd" "virtual size of 4 EiB"
cp good.qcow2 t.qcow2; poke t.qcow2 20 L 30
expect_bad t.qcow2 "cluster size" "cluster size of 1 GiB"
cp good.qcow2 t.qcow2; poke t.qcow2 36 L '0x7fffffff'
expect_bad t.qcow2 "absurd|past the end" "L1 table of 2^31 entries"
cp good.qcow2 t.qcow2; poke t.qcow2 72 Q 16
expect_bad t.qcow2 "unsupported incompatible feature bit 4 \(extended L2" "unknown incompatible feature (named from the feature table)"

# Refcount overflow: 1-bit refcounts, two L2 entries sharing one cluster, marked dirty so an
# open for writing tries to repair: the repair must refuse.
qemu-img create -q -f qcow2 -o cluster_size=64k,refcount_bits=1 r.qcow2 16M
qemu-io -c "write -P 0x33 0 128k" r.qcow2 >/dev/null
python3 - <<'PY'
import struct
f = open('r.qcow2', 'r+b')
f.seek(4 * 65536); e0 = f.read(8)
f.seek(4 * 65536 + 8); f.write(e0)          # L2[1] = L2[0]
f.seek(72); f.write(struct.pack('>Q', 1))   # dirty
f.close()
PY
before=$(sha256sum r.qcow2)
"$IO" write r.qcow2 0 4096 1 >log 2>&1; rc=$?
[ $rc = 1 ] || { cat log; t_fail "refcount overflow: exit status $rc"; }
grep -q "more than a 1-bit refcount holds" log || { cat log; t_fail "refcount overflow: no clear error"; }
t_check "refcount overflow: repair refused, file unchanged" test "$before" = "$(sha256sum r.qcow2)"

# Backing loops: a -> b -> a, and a -> a.
qemu-img create -q -f qcow2 a.qcow2 16M
qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2
qemu-img rebase -q -u -b b.qcow2 -F qcow2 a.qcow2
expect_bad b.qcow2 "loops" "backing loop a -> b -> a"
qemu-img create -q -f qcow2 s.qcow2 16M
qemu-img rebase -q -u -b s.qcow2 -F qcow2 s.qcow2
expect_bad s.qcow2 "loops" "image that is its own backing file"

# A missing backing file.
qemu-img create -q -f qcow2 base.qcow2 16M
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2
rm base.qcow2
expect_bad ov.qcow2 "base.qcow2.*No such file" "missing backing file"

# Garbage that is not qcow2 opens as raw; a file named as qcow2 backing but holding garbage fails.
head -c 70000 /dev/urandom > junk.bin
qemu-img create -q -f qcow2 -u -b junk.bin -F qcow2 j.qcow2 16M
expect_bad j.qcow2 "magic" "backing file declared qcow2 but not qcow2"
t_done
