#!/usr/bin/env bash
# golden-images/testdesk/measure.sh [ELF]: testdesk's size and the number of instructions it runs
# in ring 0 from its PVH entry to READY (it powers off right after READY).
#
# How: QEMU TCG with one instruction per translation block (-singlestep) and execution tracing
# (-d exec,nochain) logs every instruction executed, with the TB flags whose low two bits are the
# CPL. We count the lines from the first one at the PVH entry (0x100000, so the firmware is left
# out) on, and those with CPL 0 among them, per vCPU. The guest boots with QEMU's devices
# (bochs-display, virtio keyboard/tablet/blk/rng) and 2 vCPUs. Takes a minute or two.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
elf=${1:-$here/../../build/testdesk/testdesk.elf}
[ -f "$elf" ] || { echo "measure: $elf missing (make testdesk)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
truncate -s 1M "$tmp/disk.img"

file=$(stat -c %s "$elf")
load=$(readelf -lW "$elf" | awk '$1 == "LOAD" { f += strtonum($5); m += strtonum($6) } END { print f, m }')
echo "testdesk.elf: $file bytes on disk; loaded: ${load% *} bytes from the file, ${load#* } bytes of memory (with .bss)"

# count CMDLINE: run the guest under the tracer; prints "TOTAL RING0 BSP".
count() {
    qemu-system-x86_64 -accel tcg -singlestep -d exec,nochain -D /dev/stderr -smp 2 -m 128 \
        -nodefaults -display none -no-reboot -kernel "$elf" -append "$1" \
        -device bochs-display -device virtio-keyboard-pci -device virtio-tablet-pci \
        -drive if=none,id=d0,file="$tmp/disk.img",format=raw -device virtio-blk-pci,drive=d0 \
        -device virtio-rng-pci -serial file:"$tmp/serial.log" 2>&1 >/dev/null |
        awk '/^Trace/ {
                split($4, f, "/"); pc = strtonum("0x" f[2]); fl = strtonum("0x" f[3])
                if (!started && pc == 0x100000) started = 1
                if (!started) next
                total++
                if (and(fl, 3) == 0) { r0++; if ($2 == "0:") bsp++ }
             }
             END { print total + 0, r0 + 0, bsp + 0 }'
    grep -qa "TESTDESK READY" "$tmp/serial.log" || { echo "measure: no READY line" >&2; exit 1; }
}
read -r total r0 bsp < <(count "testdesk.run=poweroff")
echo "instructions from the PVH entry to power-off after READY: $total; in ring 0: $r0 (boot CPU $bsp, other CPUs $((r0 - bsp)))"
read -r total2 r02 bsp2 < <(count "testdesk.run=sleep:2000;poweroff")
echo "idle desktop: $(((r02 - r0) / 2)) ring-0 instructions per second (4 wake-ups a second for the clock)"
