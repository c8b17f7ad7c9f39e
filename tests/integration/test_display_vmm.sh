#!/usr/bin/env bash
# vdi-vmm end to end with testdesk as the guest, probed by vncprobe (libvncclient): the colour
# bars arrive over the unix socket (Raw, Tight+JPEG, ZRLE), `ready` reaches the control socket,
# typed text shows up in the guest's key line (pixels) and serial log (Linux key codes), the
# pointer marker follows the pointer, clicks and the wheel arrive as events; two clients at once,
# one dropping mid-update, a bad client dropped while the guest and the other client go on; an
# animating guest streams over --display-tcp, bound to loopback.
# timeout: 180
. "$VDI_SRC/tests/lib.sh"
t_require_kvm
t_tmpdir
VMM=$VDI_BIN/vdi-vmm
PROBE=$VDI_BUILD/tests/tools/vncprobe
CTL=$VDI_BUILD/tests/tools/vmm-ctl
ELF=${VDI_TESTDESK_ELF:-$VDI_SRC/build/testdesk/testdesk.elf}
[ -f "$ELF" ] || t_fail "$ELF missing (make build-tests builds it)"
W=800
H=600
S=$T/display.sock
probe() { timeout 60 "$PROBE" -T 20 -s "$S" "$@"; }

t_bg "$VMM" --kernel "$ELF" --mem 128 --fb ${W}x$H --display "$S" --display-hz 60 \
    --control "$T/ctl" --serial-log "$T/serial" 2>"$T/vmm.err"
VMM_PID=$!
t_wait_for 20 test -S "$T/ctl" || t_fail "no control socket (vmm.err: $(tail -3 "$T/vmm.err"))"
"$CTL" -w ready -t 60 "$T/ctl" >"$T/events" 2>&1 &
EV_PID=$!
t_wait_for 60 grep -q "TESTDESK READY" "$T/serial" || t_fail "testdesk did not get READY: $(tail -5 "$T/serial")"
t_check "testdesk runs at the preferred mode" grep -q "TESTDESK READY cpus=1 fb=${W}x$H" "$T/serial"
t_check "the display socket is mode 0600" test "$(stat -c %a "$S")" = 600
wait $EV_PID
t_check "the control socket announced ready" grep -q '"event":"ready"' "$T/events"

# Colour bars: rows 32 .. 32+(H-32)/2, bar i over columns [i*W/8, (i+1)*W/8).
bars=()
cols=(ffffff ffff00 00ffff 00ff00 ff00ff ff0000 0000ff 000000)
for i in 0 1 2 3 4 5 6 7; do bars+=(pixel $((i * W / 8 + W / 16)) 150 "${cols[$i]}"); done
t_check "Raw: colour bars" probe -e raw "${bars[@]}"
t_check "ZRLE: colour bars" probe -e zrle "${bars[@]}"
tol=()
for i in 0 1 2 3 4 5 6 7; do tol+=(pixel $((i * W / 8 + W / 16)) 150 "${cols[$i]}" 24); done
t_check "Tight+JPEG: colour bars" probe -e tight -q 6 "${tol[@]}"

# Keys: the key line is at y = bars_end + 16 with "KEYS: " first; 12x18 cells from x = 8.
KY=$((32 + (H - 32) / 2 + 16))
out=$(probe -e raw type "hello" cells $((8 + 6 * 12)) $KY 12 18 6 ffffff 5) || t_fail "typing: $out"
echo "# $out"
read -r _ h e l1 l2 o rest <<<"$out"
t_check "typed text: five glyphs appear, the sixth cell stays empty" test "$rest" = "-"
t_check "typed text: the two l are the same glyph" test "$l1" = "$l2"
t_check "typed text: h, e, l, o are four different glyphs" \
    test "$(printf '%s\n' "$h" "$e" "$l1" "$o" | sort -u | wc -l)" = 4
t_wait_for 10 grep -q "INPUT key code=24 down=0" "$T/serial"
grep "INPUT key code=[0-9]* down=1" "$T/serial" | sed 's/.*code=\([0-9]*\).*/\1/' | tr '\n' ' ' >"$T/keys"
t_check "serial: key codes h e l l o = 35 18 38 38 24 (got $(cat "$T/keys"))" grep -q "35 18 38 38 24" "$T/keys"
probe type "A!" sleep 300 >/dev/null
shift_then() { grep -A1 "INPUT key code=42 down=1" "$T/serial" | grep -q "INPUT key code=$1 down=1"; }
t_check "serial: Shift+a for A (42 then 30)" shift_then 30
t_check "serial: Shift+1 for ! (42 then 2)" shift_then 2
probe -e raw xkey 0x1e 0x61 sleep 300 >/dev/null
t_check "QEMU extended key event: XT 0x1e is KEY_A (30)" \
    test "$(grep -c 'INPUT key code=30 down=1' "$T/serial")" -ge 2

# Pointer: the marker (orange, 9x9, black border) sits with its corner at the pointer.
t_check "pointer: the marker follows to (200,400)" probe -e raw ptr 200 400 0 pixel 204 404 ff8000
t_check "serial: the tablet position is (200,400)" grep -q "INPUT abs x=200 y=400" "$T/serial"
t_check "pointer: the marker moves to (600,450) and leaves (200,400)" \
    probe -e zrle ptr 600 450 0 pixel 604 454 ff8000 pixel 204 404 404040
t_check "serial: the tablet position is (600,450)" grep -q "INPUT abs x=600 y=450" "$T/serial"
t_check "pointer: the far corner maps to the last pixel" probe ptr $((W - 1)) $((H - 1)) 0 sleep 300
t_check "serial: the far corner is (W-1,H-1)" grep -q "INPUT abs x=$((W - 1)) y=$((H - 1))" "$T/serial"
probe ptr 600 450 1 ptr 600 450 0 ptr 600 450 4 ptr 600 450 0 ptr 600 450 2 ptr 600 450 0 \
    ptr 600 450 8 ptr 600 450 0 ptr 600 450 16 ptr 600 450 0 sleep 300 >/dev/null
t_check "clicks: left (BTN_LEFT 272)" grep -q "INPUT btn code=272 down=1" "$T/serial"
t_check "clicks: right (BTN_RIGHT 273)" grep -q "INPUT btn code=273 down=1" "$T/serial"
t_check "clicks: middle (BTN_MIDDLE 274)" grep -q "INPUT btn code=274 down=1" "$T/serial"
t_check "clicks: released" grep -q "INPUT btn code=272 down=0" "$T/serial"
t_check "wheel: up" grep -q "INPUT wheel v=1 h=0" "$T/serial"
t_check "wheel: down" grep -q "INPUT wheel v=-1 h=0" "$T/serial"

# Two clients, one dropping mid-update, one sending garbage; the guest and the other go on.
probe -e tight -q 5 ptr 100 500 0 pixel 104 504 ff8000 pixel 304 504 ff8000 >"$T/watch" 2>&1 &
WATCH=$!
sleep 0.5
t_check "a client drops in the middle of a raw update" probe -e raw drop
t_check "a client sending garbage is dropped" probe sleep 100 raw fe00ff00deadbeef closed
t_check "a second client moves the pointer" probe ptr 300 500 0 pixel 304 504 ff8000
wait $WATCH
t_check "the first client saw both marker positions meanwhile" test $? = 0
t_check "the VMM is still running" kill -0 $VMM_PID

out=$(probe -e raw print)
t_check "the client sees ${W}x$H" grep -q "size ${W}x$H" <<<"$out"

"$CTL" "$T/ctl" '{"cmd":"quit"}' >/dev/null
wait $VMM_PID
t_check "the display socket is removed on exit" test ! -e "$S"

# An animating guest over --display-tcp only: a steady stream of updates (Tight+JPEG).
for _ in 1 2 3 4 5; do # a free port: try a few random ones
    PORT=$(shuf -i 20000-60000 -n 1)
    t_bg "$VMM" --kernel "$ELF" --mem 128 --fb 640x480 --display-tcp "$PORT" \
        --cmdline "testdesk.anim=30" --serial-log "$T/serial2" 2>"$T/vmm2.err"
    VMM2=$!
    t_wait_for 60 grep -qs "TESTDESK READY\|Address already in use" "$T/serial2" "$T/vmm2.err"
    grep -q "Address already in use" "$T/vmm2.err" || break
    wait $VMM2
done
grep -q "TESTDESK READY" "$T/serial2" || t_fail "testdesk (anim) did not get READY: $(tail -3 "$T/vmm2.err")"
out=$(timeout 60 "$PROBE" -T 20 -t "127.0.0.1:$PORT" -e tight -q 6 frames 2 bench 2) ||
    t_fail "TCP client: $out"
echo "# $out"
frames=$(sed -n 's/^frames=\([0-9]*\).*/\1/p' <<<"$out")
t_check "TCP (--display-tcp): the animation streams at least 10 updates/s (got $frames in 2 s)" \
    test "${frames:-0}" -ge 20
listening() { awk -v p="$(printf ':%04X' "$PORT")" '$4 == "0A" && index($2, p) { print $2 }' /proc/net/tcp /proc/net/tcp6; }
t_check "the TCP listener is bound to 127.0.0.1 only (got $(listening))" test "$(listening)" = "0100007F$(printf ':%04X' "$PORT")"
kill $VMM2
t_done
