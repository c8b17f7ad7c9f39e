#!/usr/bin/env bash
# vdi-vmm refuses bad input with one line naming the problem and exit status 2 (never a crash or
# a core dump): missing or corrupt kernels, an initrd too large for memory, absurd --mem or
# --vcpus, a missing disk, bad option values.
# timeout: 60
. "$VDI_SRC/tests/lib.sh"
t_require_kvm
t_tmpdir
VMM=$VDI_BIN/vdi-vmm
as --32 -o "$T/p.o" "$VDI_SRC/tests/integration/test_vmm_payload.S" || t_fail "cannot assemble the payload"
printf 'SECTIONS { . = 0x100000; .text : { *(.text) } .data : { *(.data) } .note : { *(.note.pvh) } }\n' >"$T/p.ld"
ld -m elf_i386 -T "$T/p.ld" -o "$T/payload.elf" "$T/p.o" 2>/dev/null || t_fail "cannot link the payload"
P=$T/payload.elf

# refuse WHAT PATTERN ARGS...: exit 2, exactly one line on stderr, matching PATTERN.
refuse() {
    local what=$1 pat=$2; shift 2
    ( ulimit -c unlimited; cd "$T" && timeout 30 "$VMM" "$@" >/dev/null 2>"$T/err" )
    local rc=$?
    [ "$rc" = 2 ] || t_fail "$what: exit status $rc, expected 2 ($(head -c 300 "$T/err"))"
    [ "$(wc -l <"$T/err")" = 1 ] || t_fail "$what: expected one line, got: $(head -c 500 "$T/err")"
    grep -qE -e "$pat" "$T/err" || t_fail "$what: message does not match '$pat': $(cat "$T/err")"
    _t_checks=$((_t_checks + 1))
    echo "ok $_t_checks - $what: $(cat "$T/err")"
}

refuse "no kernel" "--kernel is required"
refuse "missing kernel" "--kernel $T/nope: No such file" --kernel "$T/nope"
head -c 65536 /dev/urandom >"$T/random"
refuse "random bytes as kernel" "neither a PVH ELF nor a Linux bzImage" --kernel "$T/random"
head -c 100 "$P" >"$T/trunc.elf"
refuse "truncated ELF" "trunc.elf: not a valid x86 ELF file" --kernel "$T/trunc.elf"
refuse "ELF without a PVH note" "without a PVH entry note" --kernel /bin/true
# A bzImage header in front of garbage: the payload does not decompress.
python_free_bzimage() {
    head -c 8192 /dev/zero >"$T/bz"
    printf '\x01' | dd of="$T/bz" bs=1 seek=$((0x1f1)) conv=notrunc 2>/dev/null     # setup_sects
    printf '\x55\xaa' | dd of="$T/bz" bs=1 seek=$((0x1fe)) conv=notrunc 2>/dev/null # boot flag
    printf '\xeb\x66HdrS\x0f\x02' | dd of="$T/bz" bs=1 seek=$((0x200)) conv=notrunc 2>/dev/null
    printf '\x01\x00' | dd of="$T/bz" bs=1 seek=$((0x236)) conv=notrunc 2>/dev/null # XLF_KERNEL_64
    printf '\x00\x01\x00\x00\x00\x10\x00\x00' | dd of="$T/bz" bs=1 seek=$((0x248)) conv=notrunc 2>/dev/null
    head -c 4096 /dev/urandom | dd of="$T/bz" bs=1 seek=$((1024 + 256)) conv=notrunc 2>/dev/null
}
python_free_bzimage
VDI_VMM_CACHE_DIR=$T/cache refuse "bzImage with a corrupt payload" "cannot decompress the bzImage payload" --kernel "$T/bz"
truncate -s 100M "$T/big.img"
refuse "initrd larger than memory" "--initrd .*big.img.*raise --mem" --kernel "$P" --mem 64 --initrd "$T/big.img"
truncate -s 63M "$T/mid.img"
refuse "initrd that does not fit below the limit" "--initrd .*mid.img.*does not fit" --kernel "$P" --mem 64 --initrd "$T/mid.img"
refuse "missing initrd" "--initrd $T/nope" --kernel "$P" --initrd "$T/nope"
refuse "--mem 0" "--mem 0: out of range" --kernel "$P" --mem 0
refuse "--mem absurd" "--mem 99999999999: out of range" --kernel "$P" --mem 99999999999
refuse "--mem not a number" "--mem lots: not a size" --kernel "$P" --mem lots
refuse "--mem more than the host has" "does not fit: this host has" --kernel "$P" --mem 1000G
refuse "--vcpus 0" "--vcpus 0" --kernel "$P" --vcpus 0
refuse "--vcpus 17" "--vcpus 17" --kernel "$P" --vcpus 17
refuse "missing disk" "--disk $T/nodisk: No such file" --kernel "$P" --disk "$T/nodisk"
refuse "bad disk flag" "unknown flag 'rw'" --kernel "$P" --disk "$T/big.img,rw"
refuse "bad --on-reboot" "--on-reboot sometimes" --kernel "$P" --on-reboot sometimes
refuse "bad --net" "--net eth0" --kernel "$P" --net eth0
refuse "cmdline too long" "--cmdline: 5000 bytes" --kernel "$P" --cmdline "$(head -c 5000 /dev/zero | tr '\0' a)"
refuse "serial log in a missing directory" "--serial-log" --kernel "$P" --serial-log "$T/no/such/dir/log"
t_check "no core file was left behind" bash -c "! ls '$T'/core* >/dev/null 2>&1"
t_done
