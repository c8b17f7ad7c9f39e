#!/usr/bin/env bash
# bench/vmm/run.sh [RUNS]: vdi-vmm against QEMU (Debian's qemu-system-x86_64, -accel kvm) on the
# same testdesk ELF with the same memory and vCPUs, in the same run. QEMU uses its leanest
# machine that boots the guest, microvm (ACPI on, no devices beyond the serial port); vdi-vmm runs
# with no PCI devices either (--fb none --no-rng). For each, median of RUNS (default 10):
#   - start-up: from exec to the guest's first line on the serial port;
#   - overhead: the process's peak RSS (VmHWM) once the guest is READY, minus the guest memory it
#     touched (the resident part of the guest-RAM mapping in /proc/PID/smaps).
# Prints both, the ratios, and the targets (start-up <= 1/5 of QEMU's, overhead <= 1/4).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${1:-10}
MEM=128
VMM=${VDI_BIN:-$top/build/bin}/vdi-vmm
ELF=$top/build/testdesk/testdesk.elf
QEMU=$(command -v qemu-system-x86_64) || { echo "bench/vmm: qemu-system-x86_64 is missing"; exit 1; }
[ -x "$VMM" ] && [ -f "$ELF" ] || { echo "bench/vmm: build first (make all testdesk)"; exit 1; }
[ -w /dev/kvm ] || { echo "bench/vmm: /dev/kvm is not usable"; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

ours=("$VMM" --kernel "$ELF" --mem "$MEM" --vcpus 1 --fb none --no-rng --log-level err)
theirs=("$QEMU" -accel kvm -M microvm,acpi=on -smp 1 -m "$MEM" -nodefaults -nographic
        -serial stdio -no-reboot -kernel "$ELF")

# one_run CMD...: prints "STARTUP_US OVERHEAD_KIB" for one boot to READY.
one_run() {
    rm -f "$T/f" && mkfifo "$T/f"
    local start=$EPOCHREALTIME line first pid hwm guest
    "$@" >"$T/f" 2>/dev/null </dev/null &
    pid=$!
    exec 3<"$T/f"
    IFS= read -r -u 3 line
    first=$EPOCHREALTIME
    while IFS= read -r -t 30 -u 3 line; do
        [[ $line == *"TESTDESK READY"* ]] && break
    done
    sleep 0.3
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
    # The guest-RAM mapping: the one anonymous mapping at least MEM MiB long.
    guest=$(awk -v want=$((MEM * 1024 * 1024)) '
        /^[0-9a-f]+-[0-9a-f]+ / { split($1, a, "-"); size = strtonum("0x" a[2]) - strtonum("0x" a[1]); big = size >= want }
        /^Rss:/ && big { rss += $2; big = 0 }
        END { print rss + 0 }' "/proc/$pid/smaps")
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    exec 3<&-
    awk -v a="$start" -v b="$first" -v h="$hwm" -v g="$guest" \
        'BEGIN { printf "%d %d\n", (b - a) * 1000000, h - g }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

: >"$T/ours" && : >"$T/theirs"
for i in $(seq "$RUNS"); do
    one_run "${ours[@]}" >>"$T/ours"
    one_run "${theirs[@]}" -append "" >>"$T/theirs"
done
os=$(cut -d' ' -f1 "$T/ours" | median); oo=$(cut -d' ' -f2 "$T/ours" | median)
qs=$(cut -d' ' -f1 "$T/theirs" | median); qo=$(cut -d' ' -f2 "$T/theirs" | median)
echo "bench/vmm: testdesk to READY, ${MEM} MiB, 1 vCPU, median of $RUNS runs"
echo "  QEMU: ${theirs[*]}"
printf '  %-34s %12s %12s %8s %s\n' "" "vdi-vmm" "QEMU" "ratio" "target"
printf '  %-34s %9.1f ms %9.1f ms %8.3f %s\n' "exec -> first serial line" \
    "$(awk -v x="$os" 'BEGIN{print x/1000}')" "$(awk -v x="$qs" 'BEGIN{print x/1000}')" \
    "$(awk -v a="$os" -v b="$qs" 'BEGIN{print a/b}')" "<= 0.200"
printf '  %-34s %9d KiB %8d KiB %8.3f %s\n' "peak RSS - guest memory touched" "$oo" "$qo" \
    "$(awk -v a="$oo" -v b="$qo" 'BEGIN{print a/b}')" "<= 0.250"
