#!/usr/bin/env bash
# tests/slow/test_debian_desktop.sh: the debian-desktop image (golden-images/recipes/debian-desktop)
# under QEMU's software emulation (TCG, no KVM): part of `make check-slow`, not of `make test`.
#
#   1. desktop: boot it with an empty data disk and QEMU's VNC server; a real VNC client
#      (tests/tools/vncprobe, libvncclient) must see the X session: the root window in the colour
#      the session's openbox autostart sets and a screen of several colours (the xterm on it). The
#      data disk must have been formatted and mounted as /home (serial console, then the disk's
#      own contents, read with debugfs after an ACPI power-off).
#   2. patch: a bundle (ustar, GNU tar) with a tiny .deb and a `run` that installs it with dpkg -i,
#      read-only as the last disk of a maintenance boot on a fresh overlay of the image, as vdid
#      attaches it: the serial console must end in a line `PATCH EXIT 0` and the VM power off.
#      A second bundle whose run exits 3 must end in `PATCH EXIT 3` and a power-off.
#   3. patched: boot the patched overlay with the data disk of step 1: the package's boot unit
#      prints its marker with `dpkg-query -W` of the package, and the data disk is mounted again,
#      not formatted again.
#
# Environment: VDI_SRC (the source tree), VDI_BUILD (build/default: vncprobe), DEBIAN_DESKTOP
# (the built image, default build/debian-desktop), SLOW_SMP (2), SLOW_MEM (1536 MiB),
# SLOW_BOOT_S (a boot's deadline, 1200 s). Progress goes to stdout; the serial logs and the
# screenshot stay in the work directory when the test fails (its path is printed).
# timeout: 5400
set -euo pipefail

src=${VDI_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${VDI_BUILD:-$src/build/default}
img=${DEBIAN_DESKTOP:-$src/build/debian-desktop}
vncprobe=$build/tests/tools/vncprobe
smp=${SLOW_SMP:-2}
mem=${SLOW_MEM:-1536}
boot_s=${SLOW_BOOT_S:-1200}
bg=2e5c8a # the session's root window (overlay/etc/skel/.config/openbox/autostart)

t0=$SECONDS
say() { printf '[%4ds] %s\n' "$((SECONDS - t0))" "$*"; }
fail() {
    say "FAIL: $*"
    keep=1
    exit 1
}

for f in disk.qcow2 vmlinuz initrd.img cmdline; do
    [ -f "$img/$f" ] || fail "$img/$f is missing: build the image first (make debian-desktop)"
done
[ -x "$vncprobe" ] || fail "$vncprobe is missing (make $build/tests/tools/vncprobe)"
for tool in qemu-system-x86_64 qemu-img dpkg-deb tar debugfs python3; do
    command -v "$tool" >/dev/null || fail "$tool is missing"
done

work=$(mktemp -d /tmp/vdi-slow-debian.XXXXXX)
keep=0
qpid=
cleanup() {
    if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
        kill "$qpid" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
    fi
    if [ "$keep" = 1 ]; then
        echo "work directory kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
say "image $img ($(cat "$img/kernel-version" 2>/dev/null || echo '?')), work $work, TCG smp=$smp mem=${mem}M"

# qemu_start NAME SYSDISK [EXTRA_DRIVE_ARGS...]: boot the image's kernel on SYSDISK (virtio, vda)
# and the disks after it, serial console to NAME.serial, VNC and monitor on unix sockets.
qemu_start() {
    local name=$1 sys=$2
    shift 2
    rm -f "$work/$name.vnc" "$work/$name.mon"
    qemu-system-x86_64 -machine pc,accel=tcg -cpu max -smp "$smp" -m "$mem" \
        -nodefaults -no-user-config -display none -no-reboot \
        -kernel "$img/vmlinuz" -initrd "$img/initrd.img" -append "$(cat "$img/cmdline")" \
        -device bochs-display,xres=1024,yres=768 \
        -device virtio-keyboard-pci -device virtio-tablet-pci \
        -drive "file=$sys,if=none,id=sys,format=qcow2" -device virtio-blk-pci,drive=sys \
        "$@" \
        -serial "file:$work/$name.serial" \
        -vnc "unix:$work/$name.vnc" -monitor "unix:$work/$name.mon,server,nowait" \
        >"$work/$name.qemu.log" 2>&1 &
    qpid=$!
    say "$name: qemu pid $qpid"
}

# wait_serial NAME REGEX SECONDS: wait for a line matching REGEX (grep -E) on NAME's serial.
wait_serial() {
    local name=$1 re=$2 limit=$3 start=$SECONDS
    while ! grep -qaE "$re" "$work/$name.serial" 2>/dev/null; do
        if ! kill -0 "$qpid" 2>/dev/null; then
            tail -n 30 "$work/$name.serial" | sed 's/^/      | /'
            fail "$name: qemu exited before /$re/ on the serial console"
        fi
        if [ $((SECONDS - start)) -ge "$limit" ]; then
            tail -n 30 "$work/$name.serial" | sed 's/^/      | /'
            fail "$name: no /$re/ on the serial console within $limit s"
        fi
        sleep 2
    done
}

# wait_exit SECONDS: wait for qemu to exit by itself; its status in $qrc.
wait_exit() {
    local limit=$1 start=$SECONDS
    while kill -0 "$qpid" 2>/dev/null; do
        [ $((SECONDS - start)) -lt "$limit" ] || return 1
        sleep 2
    done
    qrc=0
    wait "$qpid" || qrc=$?
    qpid=
}

# powerdown NAME: the ACPI power button (what vdid's shutdown sends), then wait for the power-off.
powerdown() {
    python3 - "$work/$1.mon" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"system_powerdown\n")
time.sleep(1)
s.close()
EOF
    wait_exit 300 || fail "$1: no power-off within 300 s of the ACPI power button"
    say "$1: powered off (qemu exit $qrc)"
}

# ---- 1. the desktop over VNC, the data disk as /home ------------------------------------------
qemu-img create -q -f qcow2 -b "$img/disk.qcow2" -F qcow2 "$work/desk.qcow2"
qemu-img create -q -f qcow2 "$work/data.qcow2" 1G
qemu_start desk "$work/desk.qcow2" \
    -drive "file=$work/data.qcow2,if=none,id=data,format=qcow2" -device virtio-blk-pci,drive=data
say "desk: waiting for the X session over VNC (root window #$bg), up to $boot_s s"
start=$SECONDS
until "$vncprobe" -s "$work/desk.vnc" -T 5 pixel 5 700 "$bg" 8 >/dev/null 2>&1; do
    kill -0 "$qpid" 2>/dev/null || fail "desk: qemu exited (serial: $work/desk.serial)"
    if [ $((SECONDS - start)) -ge "$boot_s" ]; then
        "$vncprobe" -s "$work/desk.vnc" -T 10 dump "$work/desk-timeout.ppm" >/dev/null 2>&1 || true
        tail -n 30 "$work/desk.serial" | sed 's/^/      | /'
        fail "desk: the X session did not show within $boot_s s (screen: $work/desk-timeout.ppm)"
    fi
    sleep 10
done
say "desk: the session's root window is on the screen after $((SECONDS - start)) s"
# Let the xterm map, then take the screenshot a VNC client sees.
"$vncprobe" -s "$work/desk.vnc" -T 120 sleep 15000 dump "$work/desk.ppm" print ||
    fail "desk: vncprobe could not take a screenshot"
python3 - "$work/desk.ppm" "$bg" <<'EOF' || fail "desk: the screenshot is not a desktop"
import sys
data = open(sys.argv[1], "rb").read()
# binary PPM: P6\n W H\n 255\n pixels
parts = data.split(maxsplit=4)
w, h = int(parts[1]), int(parts[2])
pix = parts[4][: w * h * 3]
counts = {}
for i in range(0, len(pix), 3):
    c = pix[i : i + 3]
    counts[c] = counts.get(c, 0) + 1
bg = bytes.fromhex(sys.argv[2])
near = lambda c, ref: all(abs(a - b) <= 8 for a, b in zip(c, ref))
n_bg = sum(n for c, n in counts.items() if near(c, bg))
n_white = sum(n for c, n in counts.items() if min(c) >= 0xf0)  # xterm's background
n_dark = sum(n for c, n in counts.items() if max(c) <= 0x20)   # its text, openbox's frame
print(f"screenshot {w}x{h}: {len(counts)} colours, root {n_bg} px, light {n_white} px, dark {n_dark} px")
ok = len(counts) >= 3 and n_bg >= w * h // 4 and n_white >= 20000 and n_dark >= 100
sys.exit(0 if ok else 1)
EOF
grep -qa 'vdi-data-disk: /dev/vdb is empty: formatting it ext4' "$work/desk.serial" ||
    fail "desk: the empty data disk was not formatted (serial: $work/desk.serial)"
grep -qa 'vdi-data-disk: /dev/vdb mounted on /home' "$work/desk.serial" ||
    fail "desk: the data disk was not mounted on /home"
say "desk: the data disk was formatted and mounted on /home"
powerdown desk
qemu-img convert -f qcow2 -O raw "$work/data.qcow2" "$work/data.raw"
debugfs -R 'ls -l /desktop' "$work/data.raw" 2>/dev/null | tee "$work/data.ls" | grep -q xsession-errors ||
    fail "desk: the data disk holds no /desktop/.xsession-errors (the session's home was not on it)"
rm -f "$work/data.raw"
say "desk: the session's home (/home/desktop/.xsession-errors) is on the data disk"

# ---- 2. a patch that installs a .deb, as vdid runs it -----------------------------------------
pkg=$work/pkg
mkdir -p "$pkg/DEBIAN" "$pkg/usr/lib/vdi-slowtest" "$pkg/lib/systemd/system"
cat >"$pkg/DEBIAN/control" <<'EOF'
Package: vdi-slowtest
Version: 1.0-1
Architecture: all
Maintainer: vdi tests <root@localhost>
Description: vdi slow test marker
 Prints a marker on the serial console at boot.
EOF
cat >"$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
[ "$1" = configure ] && systemctl enable vdi-slowtest.service
exit 0
EOF
chmod 0755 "$pkg/DEBIAN/postinst"
cat >"$pkg/usr/lib/vdi-slowtest/marker" <<'EOF'
#!/bin/sh
printf 'VDI-SLOWTEST-MARKER %s\n' "$(dpkg-query -W -f='${Package} ${Version} ${Status}' vdi-slowtest)" >/dev/ttyS0
EOF
chmod 0755 "$pkg/usr/lib/vdi-slowtest/marker"
cat >"$pkg/lib/systemd/system/vdi-slowtest.service" <<'EOF'
[Unit]
Description=vdi slow test marker
[Service]
Type=oneshot
ExecStart=/usr/lib/vdi-slowtest/marker
[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$work/bundle"
dpkg-deb --root-owner-group -b "$pkg" "$work/bundle/vdi-slowtest_1.0-1_all.deb" >/dev/null
cat >"$work/bundle/run" <<'EOF'
#!/bin/sh
set -e
echo "run: installing $(ls *.deb)"
dpkg -i ./*.deb
dpkg-query -W vdi-slowtest
EOF
chmod 0755 "$work/bundle/run"
tar --format=ustar -C "$work/bundle" -cf "$work/bundle.tar" run vdi-slowtest_1.0-1_all.deb
qemu-img create -q -f qcow2 -b "$img/disk.qcow2" -F qcow2 "$work/patched.qcow2"
qemu_start patch "$work/patched.qcow2" \
    -drive "file=$work/bundle.tar,if=none,id=bundle,format=raw,readonly=on" \
    -device virtio-blk-pci,drive=bundle
say "patch: waiting for PATCH EXIT and the power-off, up to $boot_s s"
start=$SECONDS
wait_exit "$boot_s" || {
    tail -n 30 "$work/patch.serial" | sed 's/^/      | /'
    fail "patch: the maintenance VM did not power off within $boot_s s"
}
say "patch: qemu exited $qrc after $((SECONDS - start)) s"
sed -n '/vdi-patch-agent: bundle/,$p' "$work/patch.serial" | sed 's/^/      | /'
[ "$qrc" = 0 ] || fail "patch: qemu exit status $qrc"
# vdid's rule (server/patch.c): a line that is exactly "PATCH EXIT N" (no \r after N).
exits=$(grep -aE '^PATCH EXIT [0-9]+$' "$work/patch.serial" || true)
[ "$exits" = "PATCH EXIT 0" ] || fail "patch: expected one line 'PATCH EXIT 0', got: '${exits}'"
grep -qa 'Setting up vdi-slowtest (1.0-1)' "$work/patch.serial" ||
    fail "patch: dpkg did not set the package up"
say "patch: PATCH EXIT 0 and a power-off"

# A failing patch: its exit status is the one vdid sees, and the VM still powers off.
mkdir -p "$work/bundle-fail"
printf '#!/bin/sh\necho "run: failing on purpose"\nexit 3\n' >"$work/bundle-fail/run"
chmod 0755 "$work/bundle-fail/run"
tar --format=ustar -C "$work/bundle-fail" -cf "$work/bundle-fail.tar" run
qemu-img create -q -f qcow2 -b "$img/disk.qcow2" -F qcow2 "$work/failed.qcow2"
qemu_start patchfail "$work/failed.qcow2" \
    -drive "file=$work/bundle-fail.tar,if=none,id=bundle,format=raw,readonly=on" \
    -device virtio-blk-pci,drive=bundle
start=$SECONDS
wait_exit "$boot_s" || fail "patchfail: the maintenance VM did not power off within $boot_s s"
exits=$(grep -aE '^PATCH EXIT [0-9]+$' "$work/patchfail.serial" || true)
[ "$qrc" = 0 ] && [ "$exits" = "PATCH EXIT 3" ] ||
    fail "patchfail: expected 'PATCH EXIT 3' and a power-off, got '${exits}' (qemu exit $qrc)"
say "patchfail: a run exiting 3 gave PATCH EXIT 3 and a power-off after $((SECONDS - start)) s"

# ---- 3. the patched image boots with the package, the data disk is kept -----------------------
qemu_start patched "$work/patched.qcow2" \
    -drive "file=$work/data.qcow2,if=none,id=data,format=qcow2" -device virtio-blk-pci,drive=data
say "patched: waiting for the package's marker, up to $boot_s s"
start=$SECONDS
wait_serial patched '^VDI-SLOWTEST-MARKER vdi-slowtest 1.0-1 install ok installed' "$boot_s"
say "patched: $(grep -a '^VDI-SLOWTEST-MARKER' "$work/patched.serial" | tr -d '\r') after $((SECONDS - start)) s"
wait_serial patched 'vdi-data-disk: /dev/vdb mounted on /home' 300
! grep -qa 'vdi-data-disk: /dev/vdb is empty' "$work/patched.serial" ||
    fail "patched: the data disk was formatted again"
grep -qa 'vdi-patch-agent' "$work/patched.serial" &&
    fail "patched: the patch agent ran without a bundle disk"
say "patched: the data disk was mounted again, not formatted; no patch agent output"
powerdown patched
say "PASS: debian-desktop boots to its X session over VNC, takes a .deb patch, keeps /home"
