#!/usr/bin/env bash
# Backing files are image content: a crafted qcow2 must not pull host files into a golden image or
# a desktop. Images whose backing file is an absolute host path, a device, a FIFO, a directory, a
# ../ path or a symlink out of the image's directory are refused by `vdictl image import` (always),
# `vdictl image convert` (the regular files outside only pass with --allow-backing-outside; devices
# never) and `vdi-vmm --backing-root` (before any KVM set-up, so this runs without /dev/kvm), each
# with a message naming the image and the backing path. Chains that stay inside still work.
# timeout: 90
. "$VDI_SRC/tests/lib.sh"
command -v qemu-img >/dev/null || t_need "qemu-img is not installed (apt install qemu-utils)"
V=$VDI_BIN/vdictl
VMM=$VDI_BIN/vdi-vmm
t_tmpdir
cd "$T"
export VDI_STATE_DIR=$T/state

mkdir -p img/sub outside
head -c 1048576 /dev/urandom >outside/secret.raw # stands for /etc/shadow
head -c 1048576 /dev/urandom >img/base.raw
echo junk >kernel.bin # vdi-vmm checks disks before it reads the kernel

# mk NAME BACKING [FMT]: img/NAME, a qcow2 overlay naming BACKING (unchecked, as an attacker would).
mk() { qemu-img create -q -f qcow2 -u -b "$2" -F "${3:-raw}" "img/$1" 1M; }

# refused WHAT PATTERN CMD...: CMD exits 1 or 2 (no signal, no hang), its output names the image
# file and matches PATTERN, and no output file is left behind.
refused() {
    local what=$1 pat=$2 rc; shift 2
    rm -f out.qcow2
    timeout 20 "$@" >log 2>&1; rc=$?
    { [ $rc = 1 ] || [ $rc = 2 ]; } || { cat log; t_fail "$what: exit status $rc, expected 1 or 2"; }
    grep -qE -- "$pat" log || { cat log; t_fail "$what: the message does not say '$pat'"; }
    t_check "$what: refused ($(grep -m1 -E -- "$pat" log | sed 's/^.* img: //'))" test ! -e out.qcow2
}

# import_refused CASE PATTERN FILE: import refuses it and the catalogue gets no image.
import_refused() {
    refused "$1: import" "$2" "$V" image import -q "bad-$1" "$3"
    t_check "$1: import left no image in the catalogue" test ! -e "state/images/bad-$1"
}

# vmm_refused CASE PATTERN FILE [ARGS...]: vdi-vmm refuses the disk with exit status 2.
vmm_refused() {
    local what=$1 pat=$2 f=$3 rc; shift 3
    timeout 20 "$VMM" --kernel kernel.bin "$@" --disk "$f" >log 2>&1; rc=$?
    [ $rc = 2 ] || { cat log; t_fail "$what: vdi-vmm exit status $rc, expected 2 (bad input)"; }
    grep -q -- "--disk $f" log || { cat log; t_fail "$what: vdi-vmm does not name the disk"; }
    grep -qE -- "$pat" log || { cat log; t_fail "$what: vdi-vmm does not say '$pat'"; }
    t_check "$what: vdi-vmm refuses the disk" true
}

# A regular file outside the image's directory, by absolute path: /etc/passwd itself and ours.
mk passwd.qcow2 /etc/passwd
import_refused passwd "image=img/passwd.qcow2 backing file /etc/passwd resolves to /etc/passwd, outside $T/img: refused" img/passwd.qcow2
refused "passwd: convert" "backing file /etc/passwd .*outside" "$V" image convert -q img/passwd.qcow2 out.qcow2
t_check "passwd: the convert refusal names the way around it" grep -q -- "--allow-backing-outside" log
vmm_refused "passwd" "backing file /etc/passwd resolves to /etc/passwd, outside $T/img: refused" \
    img/passwd.qcow2 --backing-root img

mk abs.qcow2 "$T/outside/secret.raw"
import_refused abs "image=img/abs.qcow2 backing file $T/outside/secret.raw .*outside $T/img" img/abs.qcow2
refused "abs: convert" "backing file $T/outside/secret.raw .*outside" "$V" image convert -q img/abs.qcow2 out.qcow2
t_check "abs: convert --allow-backing-outside follows it" \
    "$V" image convert -q --allow-backing-outside img/abs.qcow2 out.qcow2
t_check "abs: ... and copies what it shows" qemu-img compare -q out.qcow2 outside/secret.raw
vmm_refused "abs" "outside --backing-root img" img/abs.qcow2 --backing-root img

# A relative name that climbs out with ../ (from a subdirectory, past the image's directory).
qemu-img create -q -f qcow2 -u -b ../../outside/secret.raw -F raw img/sub/dots.qcow2 1M
import_refused dots "backing file img/sub/../../outside/secret.raw resolves to $T/outside/secret.raw, outside $T/img/sub" img/sub/dots.qcow2
refused "dots: convert" "resolves to $T/outside/secret.raw, outside" "$V" image convert -q img/sub/dots.qcow2 out.qcow2
t_check "dots: convert --allow-backing-outside follows it" \
    "$V" image convert -q --allow-backing-outside img/sub/dots.qcow2 out.qcow2
vmm_refused "dots" "outside --backing-root" img/sub/dots.qcow2 --backing-root img

# A symlink inside the directory that points out of it.
ln -s ../outside/secret.raw img/link.raw
mk link.qcow2 link.raw
import_refused link "backing file img/link.raw resolves to $T/outside/secret.raw, outside" img/link.qcow2
refused "link: convert" "backing file img/link.raw resolves to .*outside" "$V" image convert -q img/link.qcow2 out.qcow2
t_check "link: convert --allow-backing-outside follows it" \
    "$V" image convert -q --allow-backing-outside img/link.qcow2 out.qcow2
vmm_refused "link" "outside --backing-root" img/link.qcow2 --backing-root img

# Devices, a FIFO and a directory: refused everywhere, with or without the flag or a root.
mk zero.qcow2 /dev/zero
mk null.qcow2 /dev/null
mkfifo img/fifo
mk fifo.qcow2 fifo
mk dir.qcow2 sub
for c in "zero|/dev/zero|a character device" "null|/dev/null|a character device" \
    "fifo|img/fifo|a FIFO" "dir|img/sub|a directory"; do
    IFS='|' read -r name b kind <<<"$c"
    pat="image=img/$name.qcow2 backing file $b is $kind, not a regular file: refused"
    import_refused "$name" "$pat" "img/$name.qcow2"
    refused "$name: convert" "$pat" "$V" image convert -q "img/$name.qcow2" out.qcow2
    refused "$name: convert --allow-backing-outside" "$pat" \
        "$V" image convert -q --allow-backing-outside "img/$name.qcow2" out.qcow2
    vmm_refused "$name" "$pat" "img/$name.qcow2"
done
refused "info on a FIFO does not hang" "neither a regular file nor a block device" "$V" image info img/fifo
if [ -b /dev/loop0 ]; then
    mk blk.qcow2 /dev/loop0
    refused "block device: convert --allow-backing-outside" "backing file /dev/loop0 is a block device" \
        "$V" image convert -q --allow-backing-outside img/blk.qcow2 out.qcow2
fi

# `vdictl image create` and `rebase` refuse to name such a backing file in the first place.
refused "create -b /dev/zero" "backing file /dev/zero is a character device" \
    "$V" image create -q -b /dev/zero -F raw out.qcow2
cp img/passwd.qcow2 rb.qcow2
refused "rebase -b /dev/zero" "backing file /dev/zero is a character device" \
    "$V" image rebase -q -u -b /dev/zero -F raw rb.qcow2

# Chains that stay inside the directory still work (a symlink inside pointing inside, too).
mk good.qcow2 base.raw
ln -s base.raw img/inlink.raw
mk inlink.qcow2 inlink.raw
qemu-img create -q -f qcow2 -u -b ../base.raw -F raw img/sub/up.qcow2 1M
t_check "inside: convert follows a backing file in the directory" \
    "$V" image convert -q img/good.qcow2 out.qcow2
t_check "inside: ... and copies it" qemu-img compare -q out.qcow2 img/base.raw
t_check "inside: convert follows a symlink that stays inside" \
    "$V" image convert -q -O raw img/inlink.qcow2 out.raw
t_check "inside: ... and copies it" cmp -s out.raw img/base.raw
t_check "inside: import takes a chain inside the directory" "$V" image import -q good img/good.qcow2
t_check "inside: the imported disk shows the chain" \
    qemu-img compare -q state/images/good/v1/disk.qcow2 img/base.raw
t_check "inside: vdi-vmm --backing-root DIR accepts ../ that stays under DIR" bash -c \
    "timeout 20 '$VMM' --kernel kernel.bin --backing-root img --disk img/sub/up.qcow2 >log 2>&1;
     ! grep -qE 'refused|--disk' log"
t_check "inside: vdi-vmm accepts a desktop-style clone on the catalogue" bash -c \
    "'$V' image clone good desk.qcow2 && timeout 20 '$VMM' --kernel kernel.bin \
     --backing-root state/images --disk desk.qcow2 >log 2>&1; ! grep -qE 'refused|--disk' log"
t_check "vdictl image --help documents --allow-backing-outside" \
    bash -c "'$V' image --help | grep -q -- --allow-backing-outside"
t_done
