#!/usr/bin/env bash
# A guest that misprograms every PCI device (vmm/testguest/hostile.c: rings outside RAM,
# descriptor loops, bad indirect tables, index jumps, garbage MSI-X vectors, all-ones over the
# virtio and MSI-X BARs, BARs moved onto each other, onto RAM and the LAPIC, absurd display modes,
# all-ones over config space) does not take vdi-vmm down: virtio devices report
# DEVICE_NEEDS_RESET, work again after a reset, and the guest's power-off still ends the VMM
# with status 0. Then two floods: a guest that toggles a BAR's decoding 64K times keeps the VMM's
# resident memory flat (it used to grow by one I/O region per toggle), and a guest that writes
# 4 MiB of terminal escape sequences to COM1 leaves a serial log (and its one rotated file, or
# stdout) under --serial-log-max, with no escape byte in it.
# timeout: 180
. "$VDI_SRC/tests/lib.sh"
t_require_kvm
t_tmpdir

guest=$VDI_SRC/build/vmm-testguest/hostile.elf
t_check "hostile guest is built" test -f "$guest"
truncate -s 8M "$T/disk.img"
printf 'precious' | dd of="$T/disk.img" bs=1 seek=4096 conv=notrunc status=none

run() {
    timeout $((60 * VDI_TEST_TIMEOUT_MULT)) "$VDI_BIN/vdi-vmm" --kernel "$guest" --mem 64 \
        --vcpus "$1" --disk "$T/disk.img" --serial-log "$T/serial$1.log" 2>"$T/vmm$1.err"
}
for cpus in 1 2; do
    t_expect_exit 0 "VMM survives the hostile guest and exits 0 on its power-off ($cpus vCPU)" \
        run "$cpus"
    t_check "guest finished its abuse ($cpus vCPU)" grep -q "^HOSTILE DONE$" "$T/serial$cpus.log"
    if grep -q "HOSTILE FAIL" "$T/serial$cpus.log"; then
        grep "HOSTILE FAIL" "$T/serial$cpus.log"
        t_fail "a device check failed in the guest ($cpus vCPU)"
    fi
    t_check "every virtio abuse was noticed ($cpus vCPU)" \
        test "$(grep -c 'sets NEEDS_RESET' "$T/serial$cpus.log")" -ge 10
    t_check "the VMM logged the guest errors" grep -q "device needs reset" "$T/vmm$cpus.err"
    t_check "no crash was reported" bash -c "! grep -qi 'crashed' '$T/vmm$cpus.err'"
    t_check "guest-triggered logs are rate-limited" \
        test "$(wc -l <"$T/vmm$cpus.err")" -lt 200
done
t_check "the disk was not written" bash -c \
    "[ \"\$(dd if='$T/disk.img' bs=1 skip=4096 count=8 status=none)\" = precious ]"

# BAR toggling: the VMM's RSS after round 1 and after round 8 of 8.
"$VDI_BIN/vdi-vmm" --kernel "$guest" --mem 64 --cmdline bars --serial-log "$T/bars.log" \
    2>"$T/bars.err" &
pid=$!
_t_pids+=("$pid")
wait_line() { # PATTERN: wait until the bars guest printed it (false if the VMM died first)
    local i
    for ((i = 0; i < 1200 * VDI_TEST_TIMEOUT_MULT; i++)); do
        grep -q "$1" "$T/bars.log" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }
t_check "the guest toggles BAR decoding (round 1)" wait_line "^BARS round 1$"
rss1=$(rss_kb)
t_check "the guest toggled BAR decoding 64K times" wait_line "^BARS DONE$"
rss8=$(rss_kb)
t_log "VmRSS after round 1: $rss1 kB; after round 8: $rss8 kB"
t_check "the VMM's RSS stays flat while the guest toggles BARs (+$((rss8 - rss1)) kB)" \
    test $((rss8 - rss1)) -lt 2048
t_check "the device works after the toggling" \
    grep -q "^HOSTILE ok device works after BAR toggling" "$T/bars.log"
kill "$pid"
wait "$pid" 2>/dev/null

# A COM1 flood into a --serial-log file: rotated once at the cap, escapes neutralised.
flood() {
    timeout $((60 * VDI_TEST_TIMEOUT_MULT)) "$VDI_BIN/vdi-vmm" --kernel "$guest" --mem 64 \
        --cmdline flood "$@"
}
t_expect_exit 0 "the VMM takes a 4 MiB COM1 flood and exits 0 on the guest's power-off" \
    flood --serial-log "$T/flood.log" --serial-log-max 128K 2>"$T/flood.err"
size() { stat -c %s "$1"; }
t_check "the serial log is under its cap ($(size "$T/flood.log") bytes)" \
    test "$(size "$T/flood.log")" -le 131072
t_check "the log was rotated, FILE.1 is under the cap too, and there is no FILE.2" \
    test -f "$T/flood.log.1" -a "$(size "$T/flood.log.1")" -le 131072 -a ! -e "$T/flood.log.2"
no_escapes() { ! LC_ALL=C grep -q "[$(printf '\001-\010\013-\037\177')]" "$@"; }
t_check "no escape or other control byte reached the logs" no_escapes "$T/flood.log" "$T/flood.log.1"
t_check "the escapes are there as text" \
    grep -qF '\x1b[2J\x1b]0;owned\x07' "$T/flood.log" "$T/flood.log.1"
t_check "the dropped output is reported" grep -q "serial output suppressed: " "$T/flood.log"

# The same on stdout, opened for appending as vdid opens vmm.log: capped, not rotated.
t_expect_exit 0 "the VMM takes the flood on stdout" \
    flood --serial-log-max 64K >>"$T/stdout.log" 2>"$T/flood2.err"
t_check "stdout holds at most the cap and its notices ($(size "$T/stdout.log") bytes)" \
    test "$(size "$T/stdout.log")" -le $((65536 + 512))
t_check "stdout says the cap was reached" grep -q "serial log reached its cap" "$T/stdout.log"
t_check "no escape or other control byte reached stdout" no_escapes "$T/stdout.log"
t_done
