#!/usr/bin/env bash
# vdi-vmm's control socket (docs/vmm-control.md): status, pause/resume (the guest's progress
# stops and continues), shutdown with a deadline, quit, events to several clients at once, and
# malformed requests answered with an error object, never a crash.
# timeout: 120
. "$VDI_SRC/tests/lib.sh"
t_require_kvm
t_tmpdir
VMM=$VDI_BIN/vdi-vmm
CTL=$VDI_BUILD/tests/tools/vmm-ctl

as --32 -o "$T/p.o" "$VDI_SRC/tests/integration/test_vmm_payload.S" || t_fail "cannot assemble the payload"
printf 'SECTIONS { . = 0x100000; .text : { *(.text) } .data : { *(.data) } .note : { *(.note.pvh) } }\n' >"$T/p.ld"
ld -m elf_i386 -T "$T/p.ld" -o "$T/payload.elf" "$T/p.o" 2>/dev/null || t_fail "cannot link the payload"
P=$T/payload.elf
ticks() { grep -c "PAYLOAD tick" "$T/loop.serial"; }

# A guest that prints ticks forever.
t_bg "$VMM" --kernel "$P" --mem 64 --vcpus 2 --cmdline loop --control "$T/c1" \
    --serial-log "$T/loop.serial" 2>"$T/loop.err"
pid=$!
t_wait_for 20 test -S "$T/c1" || t_fail "no control socket"
t_wait_for 20 bash -c "[ \$(grep -c 'PAYLOAD tick' '$T/loop.serial') -ge 3 ]" || t_fail "the guest does not tick"

t_check "the control socket is owner-only (0600)" test "$(stat -c %a "$T/c1")" = 600
out=$("$CTL" "$T/c1" '{"cmd":"status","id":7}')
t_check "status answers ok" grep -q '"ok":true' <<<"$out"
t_check "status says running" grep -q '"state":"running"' <<<"$out"
t_check "status counts 2 vCPUs" grep -q '"vcpus":2' <<<"$out"
t_check "status reports 64 MiB" grep -q '"memory_mib":64' <<<"$out"
t_check "status reports the RSS" grep -qE '"rss_kib":[1-9][0-9]*' <<<"$out"
t_check "status reports the uptime" grep -qE '"uptime_ms":[0-9]+' <<<"$out"
t_check "the reply echoes the id" grep -q '"id":7' <<<"$out"

out=$("$CTL" "$T/c1" '{"cmd":"pause"}' '{"cmd":"status"}')
t_check "pause answers ok" grep -q '"ok":true' <<<"$(head -n1 <<<"$out")"
t_check "status says paused" grep -q '"state":"paused"' <<<"$out"
a=$(ticks); sleep 1; b=$(ticks)
t_check "a paused guest makes no progress ($a -> $b ticks)" test "$a" = "$b"
"$CTL" "$T/c1" '{"cmd":"resume"}' | grep -q '"ok":true' || t_fail "resume failed"
t_check "a resumed guest makes progress again" t_wait_for 10 bash -c "[ \$(grep -c 'PAYLOAD tick' '$T/loop.serial') -gt $b ]"

# Malformed requests: an error object each, and the server stays up.
out=$("$CTL" "$T/c1" 'this is not json' '[1,2,3]' '{"cmd":42}' '{"cmd":"frobnicate"}' '{"cmd":"status"')
t_check "five malformed requests get five error objects" test "$(grep -c '"ok":false' <<<"$out")" = 5
t_check "the error names the unknown command" grep -q 'unknown command' <<<"$out"
t_check "the error names malformed JSON" grep -q 'malformed JSON' <<<"$out"
head -c 100000 /dev/zero | tr '\0' 'x' >"$T/long"
out=$("$CTL" "$T/c1" "$(cat "$T/long")" 2>&1)
t_check "an over-long line gets an error" grep -q 'line too long' <<<"$out"
t_check "the server still answers after all that" bash -c "'$CTL' '$T/c1' '{\"cmd\":\"status\"}' | grep -q '\"state\":\"running\"'"

# Several clients: two wait for the shutdown event while a third quits.
"$CTL" -w shutdown -t 20 "$T/c1" >"$T/w1" &
w1=$!
"$CTL" -w shutdown -t 20 "$T/c1" '{"cmd":"status"}' >"$T/w2" &
w2=$!
sleep 0.5
"$CTL" "$T/c1" '{"cmd":"quit"}' | grep -q '"ok":true' || t_fail "quit failed"
wait $pid
rc=$?
t_check "quit exits 5 (got $rc)" test "$rc" = 5
wait $w1 && wait $w2 || t_fail "a waiting client missed the shutdown event"
t_check "client 1 got the shutdown event" grep -q '"event":"shutdown"' "$T/w1"
t_check "client 2 got its reply and the event" bash -c "grep -q '\"state\"' '$T/w2' && grep -q '\"event\":\"shutdown\"' '$T/w2'"
t_check "the socket is removed at exit" test ! -e "$T/c1"

# shutdown with a deadline: this guest ignores the power button (interrupts off), so the VMM
# stops it when the deadline passes.
t_bg "$VMM" --kernel "$P" --mem 64 --cmdline halt --control "$T/c2" --serial-log "$T/halt.serial" 2>"$T/halt.err"
pid=$!
t_wait_for 20 test -S "$T/c2" || t_fail "no control socket"
start=$(date +%s%N)
out=$("$CTL" -w shutdown "$T/c2" '{"cmd":"shutdown","timeout_ms":1000}')
wait $pid
rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
t_check "shutdown answers ok" grep -q '"ok":true' <<<"$out"
t_check "the guest had not enabled the power button" grep -q '"guest_notified":false' <<<"$out"
t_check "the shutdown event names the deadline" grep -q 'deadline' <<<"$out"
t_check "stopped after the deadline, not before (${ms} ms)" test "$ms" -ge 900 -a "$ms" -lt 10000
t_check "a shutdown by deadline exits 5 (got $rc)" test "$rc" = 5

# shutdown with a guest that listens to the power button: it powers off (status 0).
t_bg "$VMM" --kernel "$P" --mem 64 --cmdline button --control "$T/c4" --serial-log "$T/button.serial" 2>"$T/button.err"
pid=$!
t_wait_for 20 grep -qs "PAYLOAD button armed" "$T/button.serial" || t_fail "the guest did not arm the power button"
out=$("$CTL" -w shutdown "$T/c4" '{"cmd":"shutdown","timeout_ms":20000}')
wait $pid
rc=$?
t_check "the guest was notified" grep -q '"guest_notified":true' <<<"$out"
t_check "the guest saw the power button" grep -q "PAYLOAD button pressed" "$T/button.serial"
t_check "the shutdown event says the guest powered off" grep -q '"event":"shutdown","reason":"guest powered off' <<<"$out"
t_check "a graceful shutdown exits 0 (got $rc)" test "$rc" = 0

# SIGTERM is a quit.
t_bg "$VMM" --kernel "$P" --mem 64 --cmdline halt --control "$T/c3" --serial-log "$T/x.serial" 2>/dev/null
pid=$!
t_wait_for 20 test -S "$T/c3" || t_fail "no control socket"
kill -TERM $pid
wait $pid
rc=$?
t_check "SIGTERM stops the VMM with status 5 (got $rc)" test "$rc" = 5
t_done
