#!/usr/bin/env bash
# bench/display/run.sh: the display under load, against QEMU in the same run.
#
# testdesk animates the bottom ANIM% of its screen (every pixel changes every frame, 30 frames/s)
# at each mode; one vncprobe (libvncclient) client per run asks for the same encodings from
# vdi-vmm and from QEMU (-device bochs-display -vnc unix:...) for SECS seconds and counts the
# updates and bytes it receives. The VMM's CPU time comes from /proc/PID/task/*/stat, in total and
# without the vCPU threads (the guest's own drawing costs the same on both). Then the guest idles
# with one client connected and we take the VMM's CPU %.
#
#   BENCH_SECS=20 BENCH_ANIM=25 BENCH_MODES="1280x800 1920x1080" \
#   BENCH_ENCODINGS="tight:6 zrle" bench/display/run.sh
set -euo pipefail
VDI_SRC=${VDI_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
VDI_BIN=${VDI_BIN:-$VDI_SRC/build/bin}
VDI_BUILD=${VDI_BUILD:-$VDI_SRC/build/default}
SECS=${BENCH_SECS:-20}
ANIM=${BENCH_ANIM:-25}
MODES=${BENCH_MODES:-1280x800 1920x1080}
ENCODINGS=${BENCH_ENCODINGS:-tight:6 zrle}
IDLE_SECS=${BENCH_IDLE_SECS:-10}
ELF=${VDI_TESTDESK_ELF:-$VDI_SRC/build/testdesk/testdesk.elf}
PROBE=$VDI_BUILD/tests/tools/vncprobe
QEMU=${QEMU:-qemu-system-x86_64}
HZ=$(getconf CLK_TCK)

for f in "$VDI_BIN/vdi-vmm" "$PROBE" "$ELF"; do
    [ -e "$f" ] || { echo "bench/display: $f missing (make all build-tests)"; exit 1; }
done
[ -w /dev/kvm ] || { echo "bench/display: skipped: /dev/kvm not usable"; exit 0; }
command -v "$QEMU" >/dev/null || { echo "bench/display: skipped: $QEMU not installed"; exit 0; }

T=$(mktemp -d "${TMPDIR:-/tmp}/vdi-bench-display.XXXXXX")
VM_PID=
cleanup() {
    [ -n "$VM_PID" ] && kill "$VM_PID" 2>/dev/null && wait "$VM_PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

# ticks PID all|display: user+system clock ticks of the process's threads (display: all but the
# vCPU threads, "vcpuN" in vdi-vmm, "CPU N/KVM" in QEMU).
ticks() {
    local pid=$1 which=$2 sum=0 t comm s
    for t in /proc/"$pid"/task/*; do
        comm=$(cat "$t/comm" 2>/dev/null) || continue
        if [ "$which" = display ] && [[ $comm =~ ^vcpu[0-9]+$|^CPU\ [0-9]+/KVM$ ]]; then continue; fi
        s=$(cat "$t/stat" 2>/dev/null) || continue
        s=${s##*) }
        read -r -a f <<<"$s"
        sum=$((sum + f[11] + f[12]))
    done
    echo "$sum"
}

# start_vm ours|qemu W H ANIM: boots testdesk, waits for READY; sets VM_PID and SOCK.
start_vm() {
    local kind=$1 w=$2 h=$3 anim=$4
    SOCK=$T/$kind.sock
    rm -f "$SOCK" "$T/serial"
    if [ "$kind" = ours ]; then
        "$VDI_BIN/vdi-vmm" --kernel "$ELF" --mem 128 --fb "${w}x$h" --display "$SOCK" \
            --cmdline "testdesk.anim=$anim" --serial-log "$T/serial" 2>"$T/vm.err" &
    else
        "$QEMU" -accel kvm -m 128 -smp 1 -nodefaults -no-user-config -display none \
            -name testdesk,debug-threads=on \
            -serial "file:$T/serial" -kernel "$ELF" -append "testdesk.anim=$anim" \
            -device "bochs-display,xres=$w,yres=$h" -device virtio-keyboard-pci \
            -device virtio-tablet-pci -vnc "unix:$SOCK" 2>"$T/vm.err" &
    fi
    VM_PID=$!
    for _ in $(seq 300); do
        grep -q "TESTDESK READY" "$T/serial" 2>/dev/null && [ -S "$SOCK" ] && return 0
        sleep 0.1
    done
    echo "bench/display: $kind did not boot testdesk: $(tail -3 "$T/vm.err" "$T/serial" 2>/dev/null)"
    exit 1
}

stop_vm() {
    kill "$VM_PID" 2>/dev/null || true
    wait "$VM_PID" 2>/dev/null || true
    VM_PID=
}

# measure KIND W H ENC: prints "fps bytes_per_frame cpu_all_per_frame cpu_display_per_frame"
measure() {
    local kind=$1 w=$2 h=$3 enc=$4 q=()
    [[ $enc == *:* ]] && q=(-q "${enc#*:}")
    start_vm "$kind" "$w" "$h" "$ANIM"
    "$PROBE" -T 60 -s "$SOCK" -e "${enc%%:*}" "${q[@]}" frames 5 print bench "$SECS" >"$T/probe" &
    local ppid=$!
    while ! grep -q '^size' "$T/probe" 2>/dev/null; do
        kill -0 $ppid 2>/dev/null || { echo "bench/display: the client failed"; exit 1; }
        sleep 0.05
    done
    local a0 d0 a1 d1
    a0=$(ticks "$VM_PID" all)
    d0=$(ticks "$VM_PID" display)
    wait $ppid
    a1=$(ticks "$VM_PID" all)
    d1=$(ticks "$VM_PID" display)
    stop_vm
    local line frames bytes secs
    line=$(grep '^frames=' "$T/probe")
    frames=$(sed 's/.*frames=\([0-9]*\).*/\1/' <<<"$line")
    bytes=$(sed 's/.*bytes=\([0-9]*\).*/\1/' <<<"$line")
    secs=$(sed 's/.*secs=\([0-9.]*\).*/\1/' <<<"$line")
    awk -v f="$frames" -v b="$bytes" -v s="$secs" -v a=$((a1 - a0)) -v d=$((d1 - d0)) -v hz="$HZ" \
        'BEGIN { if (f < 1) f = 1; printf "%.1f %.0f %.5f %.5f\n", f / s, b / f, a / hz / f, d / hz / f }'
}

idle() {
    local kind=$1
    start_vm "$kind" 1280 800 0
    "$PROBE" -T 60 -s "$SOCK" -e tight -q 6 frames 1 print sleep $((IDLE_SECS * 1000 + 2000)) >"$T/probe" &
    local ppid=$!
    while ! grep -q '^size' "$T/probe" 2>/dev/null; do sleep 0.05; done
    sleep 1
    local a0 a1
    a0=$(ticks "$VM_PID" all)
    sleep "$IDLE_SECS"
    a1=$(ticks "$VM_PID" all)
    wait $ppid || true
    stop_vm
    awk -v a=$((a1 - a0)) -v hz="$HZ" -v s="$IDLE_SECS" 'BEGIN { printf "%.2f\n", a / hz / s * 100 }'
}

echo "bench/display: testdesk anim=$ANIM% at 30 frames/s, $SECS s per run, one libvncclient client"
printf '%-10s %-8s | %-37s | %-37s | %s\n' "" "" "vdi-vmm" "QEMU $("$QEMU" --version | head -1 | awk '{print $4}')" "ratio (ours vs QEMU)"
printf '%-10s %-8s | %6s %9s %10s %9s | %6s %9s %10s %9s | %s\n' mode encoding fps B/frame \
    cpu-s/fr disp-s/fr fps B/frame cpu-s/fr disp-s/fr "frames/CPU-s (all, display), bytes/frame"
for mode in $MODES; do
    w=${mode%x*}
    h=${mode#*x}
    for enc in $ENCODINGS; do
        read -r of ob oa od <<<"$(measure ours "$w" "$h" "$enc")"
        read -r qf qb qa qd <<<"$(measure qemu "$w" "$h" "$enc")"
        ratio=$(awk -v oa="$oa" -v od="$od" -v qa="$qa" -v qd="$qd" -v ob="$ob" -v qb="$qb" \
            'BEGIN { printf "%.2fx, %.2fx, %.2fx", (oa > 0 ? qa / oa : 0), (od > 0 ? qd / od : 0), (qb > 0 ? ob / qb : 0) }')
        printf '%-10s %-8s | %6s %9s %10s %9s | %6s %9s %10s %9s | %s\n' "$mode" "$enc" "$of" "$ob" \
            "$oa" "$od" "$qf" "$qb" "$qa" "$qd" "$ratio"
    done
done
oi=$(idle ours)
qi=$(idle qemu)
echo "idle (1280x800, guest idle, one client, ${IDLE_SECS} s): vdi-vmm ${oi}% of one core, QEMU ${qi}%"
