#!/usr/bin/env bash
# golden-images/recipes/debian-desktop/build.sh OUT: build a Debian 12 (bookworm) desktop image
# from Debian packages into the directory OUT: disk.qcow2 (one whole-disk ext4 root file system,
# root=/dev/vda, no partition table), vmlinuz, initrd.img and cmdline. docs/images.md, "The
# debian-desktop recipe", says what is in it.
#
# Needs root (mmdebstrap's root mode; nothing is mounted on the host except what mmdebstrap mounts
# inside its own chroot for the package scripts), mmdebstrap, e2fsprogs and qemu-img. The root
# file system is made without mounting it: mmdebstrap writes a directory, `mkfs.ext4 -d` turns it
# into the image. Downloaded .debs are kept in OUT/debs, so a rebuild fetches only what changed.
#
#   MIRROR      the Debian mirror (default: the host's apt sources, else deb.debian.org)
#   DISK_SIZE   the size of the root disk (default 4G; the qcow2 holds only what is used)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT}
DISK_SIZE=${DISK_SIZE:-4G}
CMDLINE="root=/dev/vda rw console=tty0 console=ttyS0 quiet"

log() { printf 'debian-desktop: %s\n' "$*"; }
die() { printf 'debian-desktop: %s\n' "$*" >&2; exit 1; }

# Cached: nothing to do while every output is newer than every recipe file (FORCE=1 rebuilds).
if [ "${FORCE:-0}" != 1 ] && [ -f "$out/disk.qcow2" ] && [ -f "$out/vmlinuz" ] &&
    [ -f "$out/initrd.img" ] && [ -f "$out/cmdline" ] &&
    [ -z "$(find "$here" -newer "$out/disk.qcow2" -print -quit)" ]; then
    log "$out is up to date (FORCE=1 rebuilds)"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap in root mode); run it as root or with sudo"
for tool in mmdebstrap mkfs.ext4 qemu-img; do
    command -v "$tool" >/dev/null || die "$tool is missing (make deps installs it)"
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
rootfs=$out/rootfs.tmp
rm -rf "$rootfs" "$out"/disk.raw.tmp "$out"/*.new
mkdir -p "$out/debs"
trap 'rm -rf "$rootfs" "$out/disk.raw.tmp"' EXIT

pkgs=$(sed -e 's/#.*//' "$here/packages.txt" | tr -s ' \n' ',' | sed -e 's/^,//' -e 's/,$//')
mirror=()
[ -n "${MIRROR:-}" ] && mirror=("deb $MIRROR bookworm main")

log "mmdebstrap bookworm into $rootfs (packages: $here/packages.txt)"
start=$SECONDS
mmdebstrap --mode=root --variant=apt --include="$pkgs" \
    --aptopt='APT::Install-Recommends "false"' \
    --skip=essential/unlink \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives/" "$1/usr/share/initramfs-tools/modules.d"' \
    --setup-hook='printf "%s\n" virtio_pci virtio_blk ext4 >"$1/usr/share/initramfs-tools/modules.d/vdi"' \
    --setup-hook="sync-in '$out/debs' /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives '$out/debs'" \
    --customize-hook="sync-in '$here/overlay' /" \
    --customize-hook="copy-in '$here/configure.sh' /tmp" \
    --customize-hook='chroot "$1" /bin/sh /tmp/configure.sh && rm "$1/tmp/configure.sh"' \
    bookworm "$rootfs" "${mirror[@]}"
log "mmdebstrap took $((SECONDS - start)) s"

# The kernel and initramfs the VMM boots directly (no boot loader in the image).
kver=$(basename "$(ls -d "$rootfs"/lib/modules/* | sort -V | tail -n1)")
cp "$rootfs/boot/vmlinuz-$kver" "$out/vmlinuz.new"
cp "$rootfs/boot/initrd.img-$kver" "$out/initrd.img.new"
printf '%s\n' "$CMDLINE" >"$out/cmdline.new"

log "mkfs.ext4 -d: a $DISK_SIZE whole-disk ext4 root file system"
mkfs.ext4 -q -F -L debian-root -d "$rootfs" "$out/disk.raw.tmp" "$DISK_SIZE"
qemu-img convert -f raw -O qcow2 "$out/disk.raw.tmp" "$out/disk.qcow2.new"
for f in disk.qcow2 vmlinuz initrd.img cmdline; do
    mv -f "$out/$f.new" "$out/$f"
done
printf '%s\n' "$kver" >"$out/kernel-version"
log "done in $((SECONDS - start)) s: $out/{disk.qcow2,vmlinuz,initrd.img,cmdline} (kernel $kver)"
