#!/usr/bin/env bash
# A full boot of Debian's stock kernel on vdi-vmm to its init: a testdesk-style initramfs whose
# /init (static, built here) prints a line and powers off; the VMM must exit 0. Only where
# /proc/cpuinfo shows vmx or svm: without hardware virtualisation guest ring 0 is emulated and
# Linux cannot boot in useful time (see test_vmm_linux.sh for what is checked there).
# timeout: 300
. "$VDI_SRC/tests/lib.sh"
t_require_kvm
t_have_hw_virt || t_skip "no vmx/svm in /proc/cpuinfo: a full Linux boot needs hardware virtualisation"
t_tmpdir
VMM=$VDI_BIN/vdi-vmm
K=$(ls "$VDI_SRC"/build/cache/linux/root/boot/vmlinuz-* 2>/dev/null | head -n1)
[ -n "$K" ] || t_need "Debian's kernel is not in build/cache (test_vmm_linux.sh fetches it)"

cat >"$T/init.c" <<'C'
#include <stdio.h>
#include <sys/reboot.h>
#include <unistd.h>
int main(void)
{
    printf("VDI INIT OK\n");
    fflush(stdout);
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}
C
gcc -static -O2 -o "$T/init" "$T/init.c" || t_fail "cannot build a static init"

# newc cpio: cpio_entry NAME MODE FILE|"" [RDEVMAJOR RDEVMINOR]
cpio_entry() {
    local name=$1 mode=$2 file=$3 maj=${4:-0} min=${5:-0} size=0
    [ -n "$file" ] && size=$(stat -c %s "$file")
    printf '070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x' \
        $((++ino)) "$mode" 0 0 1 0 "$size" 0 0 "$maj" "$min" $((${#name} + 1)) 0
    printf '%s\0' "$name"
    local pad=$(( (4 - (110 + ${#name} + 1) % 4) % 4 ))
    head -c $pad /dev/zero
    if [ -n "$file" ]; then
        cat "$file"
        head -c $(( (4 - size % 4) % 4 )) /dev/zero
    fi
}
ino=0
{
    cpio_entry dev $((0040755)) ""
    cpio_entry dev/console $((0020600)) "" 5 1
    cpio_entry init $((0100755)) "$T/init"
    cpio_entry TRAILER!!! 0 ""
} | gzip -1 >"$T/initrd.gz"

timeout 240 "$VMM" --kernel "$K" --initrd "$T/initrd.gz" --mem 1024 --vcpus 2 \
    --cmdline "console=ttyS0 panic=-1 rdinit=/init" --serial-log "$T/serial" 2>"$T/err"
rc=$?
t_check "Linux reached our init" grep -q "VDI INIT OK" "$T/serial"
t_check "init's power-off ends the VMM with status 0 (got $rc)" test "$rc" = 0
t_done
