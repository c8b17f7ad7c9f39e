#!/usr/bin/env bash
# Debian 12's stock kernel on vdi-vmm, as far as it gets on a machine without hardware
# virtualisation (guest ring 0 is emulated): booted from its bzImage (payload decompressed on the
# host) and, by PVH, from the vmlinux our decompressor extracted, it must print our command line
# and an e820 map matching the one we built on the serial port within 150 s. When the emulator
# gives up later in the boot, the VM must stop cleanly with a `crashed` event (exit 4); if it is
# still running after a while, we quit it (exit 5). The kernel comes from Debian's archive
# (apt-get download) into build/cache/, never into the repository.
# timeout: 600
. "$VDI_SRC/tests/lib.sh"
t_require_kvm
t_tmpdir
VMM=$VDI_BIN/vdi-vmm
CTL=$VDI_BUILD/tests/tools/vmm-ctl
CACHE=$VDI_SRC/build/cache
CRASH_WAIT=${VDI_VMM_LINUX_CRASH_WAIT:-90}

debian_kernel() { # sets K to the bzImage, fetching it once
    K=$(ls "$CACHE"/linux/root/boot/vmlinuz-* 2>/dev/null | head -n1)
    [ -n "$K" ] && return 0
    local pkg
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
    [ -n "$pkg" ] || return 1
    mkdir -p "$CACHE/linux" && (cd "$CACHE/linux" && timeout 300 apt-get download "$pkg" >/dev/null 2>&1) || return 1
    dpkg-deb -x "$CACHE"/linux/"$pkg"_*.deb "$CACHE/linux/root" || return 1
    K=$(ls "$CACHE"/linux/root/boot/vmlinuz-* 2>/dev/null | head -n1)
    [ -n "$K" ]
}
debian_kernel || t_need "cannot get Debian's linux-image-amd64 (apt-get download failed: no archive access?)"
t_log "kernel: $K"
export VDI_VMM_CACHE_DIR=$CACHE/vmlinux

# boot NAME KERNEL MARK [ARGS...]: run until the serial log shows the command line and the e820
# map (150 s), then until a crash (CRASH_WAIT s) or a quit.
boot() {
    local name=$1 kernel=$2 mark=$3; shift 3
    local serial=$T/$name.serial sock=$T/$name.sock
    t_bg "$VMM" --kernel "$kernel" --mem 512 --control "$sock" --serial-log "$serial" \
        --cmdline "earlyprintk=serial,ttyS0,115200 vdi.mark=$mark" "$@"
    local pid=$!
    t_wait_for 10 test -S "$sock" || t_fail "$name: no control socket"
    "$CTL" -w crashed -t $((150 + CRASH_WAIT)) "$sock" >"$T/$name.events" 2>/dev/null &
    local ev=$!
    t_check "$name: Linux prints our command line within 150 s" \
        t_wait_for 150 grep -q "Command line: earlyprintk=serial,ttyS0,115200 vdi.mark=$mark" "$serial"
    t_check "$name: Linux prints the e820 map" t_wait_for 20 grep -q "BIOS-e820: \[mem 0x0000000000100000-0x000000001fffffff\] usable" "$serial"
    t_check "$name: low memory is usable up to the EBDA" grep -q "BIOS-e820: \[mem 0x0000000000000000-0x000000000009fbff\] usable" "$serial"
    t_check "$name: the EBDA and firmware area are reserved" grep -qE "BIOS-e820: \[mem 0x000000000009fc00-0x00000000000(9ffff|fffff)\] reserved" "$serial"
    t_check "$name: no other usable RAM than ours" test "$(grep -c 'BIOS-e820:.*usable' "$serial")" = 2
    local waited=0
    while kill -0 "$pid" 2>/dev/null && [ $waited -lt $((CRASH_WAIT * 10)) ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        t_log "$name: still running after ${CRASH_WAIT}s more; quitting"
        "$CTL" "$sock" '{"cmd":"quit"}' >/dev/null
        wait "$pid"
        local rc=$?
        t_check "$name: quit stops it with status 5 (got $rc)" test "$rc" = 5
        kill "$ev" 2>/dev/null
    else
        wait "$pid"
        local rc=$?
        wait "$ev"
        t_log "$name: $(grep crashed "$T/$name.events")"
        t_check "$name: the emulator gave up: status 4 (got $rc)" test "$rc" = 4
        t_check "$name: a crashed event names the cause" grep -qE '"event":"crashed","reason":"[a-zA-Z]' "$T/$name.events"
    fi
}

boot bzimage "$K" bz1
V=$(ls -t "$VDI_VMM_CACHE_DIR"/vmlinux-*.elf 2>/dev/null | head -n1)
t_check "the decompressed vmlinux is cached" test -s "$V"
t_check "it is an ELF with a PVH note" bash -c "readelf -n '$V' | grep -q 'Xen.*0x00000012\|Xen.*PHYS32_ENTRY\|Unknown note type: (0x00000012)'"
# A second start finds the decompressed kernel in the cache.
t_bg "$VMM" --log-level debug --kernel "$K" --mem 512 --serial-log "$T/cached.serial" \
    --control "$T/cached.sock" 2>"$T/cached.err"
p=$!
t_check "the second start uses the cached vmlinux" t_wait_for 30 grep -q "decompressed kernel from the cache" "$T/cached.err"
t_wait_for 10 test -S "$T/cached.sock" && "$CTL" "$T/cached.sock" '{"cmd":"quit"}' >/dev/null
wait $p
boot pvh "$V" pvh1

# The classic path starts (the kernel's own decompressor runs, emulated, far too slowly to finish
# here) and stops cleanly.
t_bg "$VMM" --kernel "$K" --guest-decompress --mem 512 --control "$T/gd.sock" --serial-log "$T/gd.serial"
p=$!
t_wait_for 10 test -S "$T/gd.sock" || t_fail "guest-decompress: no control socket"
sleep 3
t_check "guest-decompress: still running after 3 s" kill -0 $p
"$CTL" "$T/gd.sock" '{"cmd":"quit"}' >/dev/null
wait $p
rc=$?
t_check "guest-decompress: quit exits 5 (got $rc)" test "$rc" = 5
t_done
