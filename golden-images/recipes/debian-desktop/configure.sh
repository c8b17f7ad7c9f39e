#!/bin/sh
# Runs inside the new root file system (chroot) after the packages and the overlay are in.
set -eu

echo debian-desktop >/etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian-desktop\n' >/etc/hosts
# Whole-disk ext4: the root is the first virtio disk itself.
printf '/dev/vda\t/\text4\trw,errors=remount-ro\t0\t1\n' >/etc/fstab

# The desktop user: logged in automatically on tty1, no password (locked), so it cannot log in
# any other way. /etc/skel (from the overlay) holds the session files.
useradd -m -s /bin/bash -G video,audio,input,users desktop
passwd -l desktop >/dev/null
passwd -l root >/dev/null

chmod 0755 /usr/local/sbin/vdi-patch-agent /usr/local/sbin/vdi-data-disk
systemctl enable vdi-patch-agent.service vdi-data-disk.service

