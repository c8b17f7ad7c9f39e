#!/usr/bin/env bash
# bench/images/run.sh: golden-image figures, ours against qemu-img in the same run, same files.
#  - clone creation (an overlay on a 1 GiB and a 64 GiB golden image): median of 50, through the
#    library (img_create) and as a process (`vdictl image create -b`), against `qemu-img create -b`;
#  - 4 KiB random (strided: step 7919 x 4 KiB, modulo the size) read and write, and 1 MiB
#    sequential read and write, one request at a time, through our library (imgbench) against
#    `qemu-img bench -d 1 -t writeback` with the same pattern on the same files; median of 3.
# Prints each figure, the reference and the ratio (>1: we are faster).
set -euo pipefail
: "${VDI_BUILD:?run through make bench}" "${VDI_BIN:?}"
B=$VDI_BUILD/bench/images/imgbench
V=$VDI_BIN/vdictl
command -v qemu-img >/dev/null || { echo "bench/images: qemu-img missing (apt install qemu-utils)"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/var/tmp}/vdi-bench-img.XXXXXX")
trap 'rm -rf "$T"' EXIT
export VDI_LOG_LEVEL=err

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }

echo "bench/images: $(nproc) CPUs, $(qemu-img --version | head -1)"
echo
echo "Clone creation (median of 50)        ours (lib)  ours (vdictl)  qemu-img create  ratio (vdictl vs qemu-img)"
for size in 1G 64G; do
    "$V" image create -q "$T/golden-$size.qcow2" $size
    qemu-io -c "write -P 0x5a 0 64M" "$T/golden-$size.qcow2" >/dev/null
    lib=$("$B" clone "$T/golden-$size.qcow2" 50 "$T")
    ours=$(for i in $(seq 50); do
        s=$(date +%s%N); "$V" image create -q -b "$T/golden-$size.qcow2" "$T/c.qcow2"; e=$(date +%s%N)
        rm -f "$T/c.qcow2"; echo "scale=3; ($e - $s) / 1000000" | bc; done | median)
    ref=$(for i in $(seq 50); do
        s=$(date +%s%N); qemu-img create -q -f qcow2 -b "$T/golden-$size.qcow2" -F qcow2 "$T/c.qcow2"; e=$(date +%s%N)
        rm -f "$T/c.qcow2"; echo "scale=3; ($e - $s) / 1000000" | bc; done | median)
    printf "  golden %-4s                        %7s ms  %10s ms  %12s ms  %s\n" "$size" "$lib" "$ours" "$ref" "$(ratio "$ref" "$ours")"
done

# qemu-img bench prints "Run completed in X seconds."
qb() { qemu-img bench -d 1 -t writeback -f qcow2 "$@" | sed -n 's/^Run completed in \([0-9.]*\) seconds./\1/p'; }
run3() { for i in 1 2 3; do "$@"; done | median; }

SIZE=$((1 << 30))
echo
echo "I/O on a 1 GiB qcow2 (64 KiB clusters)  ours        qemu-img bench  ratio"
# sequential 1 MiB writes into an empty image (allocating), then reads of what was written
w_ours=$(for i in 1 2 3; do rm -f "$T/a.qcow2"; "$V" image create -q "$T/a.qcow2" 1G
    "$B" io "$T/a.qcow2" write 1048576 1024 1048576; done | median)
w_ref=$(for i in 1 2 3; do rm -f "$T/b.qcow2"; "$V" image create -q "$T/b.qcow2" 1G
    qb -w -c 1024 -s 1M -S 1M "$T/b.qcow2"; done | median)
r_ours=$(run3 "$B" io "$T/a.qcow2" read 1048576 1024 1048576)
r_ref=$(run3 qb -c 1024 -s 1M -S 1M "$T/a.qcow2")
mbs() { awk -v t="$1" 'BEGIN {printf "%.0f MiB/s", 1024 / t}'; }
printf "  1 MiB sequential write (allocating)  %-11s %-15s %s\n" "$(mbs "$w_ours")" "$(mbs "$w_ref")" "$(ratio "$w_ref" "$w_ours")"
printf "  1 MiB sequential read                %-11s %-15s %s\n" "$(mbs "$r_ours")" "$(mbs "$r_ref")" "$(ratio "$r_ref" "$r_ours")"
STEP=$((4096 * 7919)) N=20000
iops() { awk -v t="$1" -v n=$N 'BEGIN {printf "%.0f IOPS", n / t}'; }
rr_ours=$(run3 "$B" io "$T/a.qcow2" read 4096 $N $STEP)
rr_ref=$(run3 qb -c $N -s 4k -S $STEP "$T/a.qcow2")
rw_ours=$(run3 "$B" io "$T/a.qcow2" write 4096 $N $STEP)
rw_ref=$(run3 qb -w -c $N -s 4k -S $STEP "$T/a.qcow2")
printf "  4 KiB random read                    %-11s %-15s %s\n" "$(iops "$rr_ours")" "$(iops "$rr_ref")" "$(ratio "$rr_ref" "$rr_ours")"
printf "  4 KiB random write (in place)        %-11s %-15s %s\n" "$(iops "$rw_ours")" "$(iops "$rw_ref")" "$(ratio "$rw_ref" "$rw_ours")"
# 4 KiB random writes into a fresh clone: allocation with copy-up from the golden image
cw_ours=$(for i in 1 2 3; do rm -f "$T/c1.qcow2"; "$V" image create -q -b a.qcow2 "$T/c1.qcow2"
    "$B" io "$T/c1.qcow2" write 4096 $N $STEP; done | median)
cw_ref=$(for i in 1 2 3; do rm -f "$T/c2.qcow2"; "$V" image create -q -b a.qcow2 "$T/c2.qcow2"
    qb -w -c $N -s 4k -S $STEP "$T/c2.qcow2"; done | median)
printf "  4 KiB random write to a clone (copy-up) %-8s %-15s %s\n" "$(iops "$cw_ours")" "$(iops "$cw_ref")" "$(ratio "$cw_ref" "$cw_ours")"
