#!/usr/bin/env bash
# vdid's supervisor with a stand-in VMM (tests/tools/vdid_fakevmm.c: the control socket protocol,
# no guest): spares kept at the pool minimum within the memory budget, each VMM in its own
# process group, kill -9 of a VMM marks its desktop failed (reason in the audit log) and a spare
# replaces it, recycle and destroy, a ready timeout, a stuck VMM killed after the shutdown
# timeout, and a vdid restart that re-attaches to the running VMMs without starting new ones.
# timeout: 120
. "$VDI_SRC/tests/lib.sh"
t_tmpdir
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
FAKE=$VDI_BUILD/tests/tools/vdid_fakevmm
export VDI_ADMIN_SOCKET=$T/run/vdid.sock

kill_vmms() { # every stand-in VMM of this test (they run in their own sessions)
    t_kill_matching KILL "$FAKE .*--control $T/"
}
trap 'kill_vmms; t_cleanup' EXIT

# The pool's image: a catalogue entry (the stand-in VMM boots nothing).
make_image() {
    t_import_fake_image
}
make_image
cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = 127.0.0.1:0
vmm_env = FAKEVMM_NEVER_READY, FAKEVMM_IGNORE_SHUTDOWN, FAKEVMM_READY_MS
vmm = $FAKE
memory_budget = 400M
ready_timeout = 2
shutdown_timeout = 1

[pool lab]
image = testdesk
memory = 128M
min_spares = 2
users = alice

# a pool whose image does not exist: its spare fails, and is not retried in a loop
[pool ghost]
image = nosuch
memory = 16M
min_spares = 1
CONF

# count STATE: desktops in that state
count() { "$VDICTL" desktops list --json 2>/dev/null | grep -c "\"state\": \"$1\"" || true; }
field() { # field ID KEY: a desktop's field (numbers and simple strings)
    "$VDICTL" desktops show "$1" --json 2>/dev/null | sed -n "s/^ *\"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p"
}
ids() { "$VDICTL" desktops list --json --state "$1" | sed -n 's/^ *"id": \([0-9]*\),$/\1/p'; }
nvmm() { pgrep -f "$FAKE .*--control $T/" | wc -l; }
count_is() { test "$(count "$1")" = "$2"; }
field_is() { test "$(field "$1" "$2")" = "$3"; }

t_bg "$VDID" -c "$T/vdid.conf" 2>"$T/vdid.log"
vdid=$!
t_check "two spares become ready" t_wait_for 15 count_is ready 2
t_check "two VMMs run" test "$(nvmm)" = 2
set -- $(ids ready)
d1=$1 d2=$2
p1=$(field "$d1" vmm_pid)
t_check "a VMM leads its own process group" test "$(ps -o pgid= -p "$p1" | tr -d ' ')" = "$p1"
t_check "a VMM is in its own session" test "$(ps -o sid= -p "$p1" | tr -d ' ')" = "$p1"
t_check "its control socket is in the run dir" test -S "$T/run/vm/$d1/control.sock"
t_check "its log is in the state dir" test -f "$T/state/desktops/$d1/vmm.log"
out=$("$VDICTL" status --json)
t_check "status counts the memory in use" grep -q "\"used\": $((256 << 20))" <<<"$out"

ghost_failed() { "$VDICTL" desktops list --pool ghost --state failed --json | grep -c '"id"' || true; }
t_check "the ghost pool's spare failed" t_wait_for 10 test "$(ghost_failed)" -ge 1
t_check "saying why" bash -c '"$1" desktops list --pool ghost --state failed | grep -q "cannot clone image nosuch: no such image"' _ "$VDICTL"
sleep 3
t_check "and was not retried at once" test "$(ghost_failed)" = 1
t_check "the log says when it retries" grep -q "pool=ghost: a spare failed to start.*next try in 30 s" "$T/vdid.log"
gid=$("$VDICTL" desktops list --pool ghost --state failed --json | sed -n 's/^ *"id": \([0-9]*\),$/\1/p')
t_check "nothing of it is left on disk" test ! -e "$T/state/desktops/$gid"

# ---- kill -9 of a VMM
kill -9 "$p1"
t_check "the killed VMM's desktop is failed" t_wait_for 10 field_is "$d1" state failed
t_check "with the signal as the reason" bash -c '"$1" desktops show "$2" | grep -q "reason: *vmm killed by signal 9"' _ "$VDICTL" "$d1"
t_check "the audit log has it" bash -c '"$1" audit tail -n 50 | grep -q "vmm.failed .*desktop=$2.*signal 9"' _ "$VDICTL" "$d1"
t_check "its run dir is gone" test ! -e "$T/run/vm/$d1"
t_check "a new spare replaces it" t_wait_for 15 count_is ready 2

# ---- admin recycle and destroy
p2=$(field "$d2" vmm_pid)
t_check "recycle answers" "$VDICTL" desktops recycle "$d2"
t_check "a recycled desktop ends gone" t_wait_for 10 field_is "$d2" state gone
t_check "its VMM exited" t_wait_for 5 bash -c "! kill -0 $p2 2>/dev/null"
t_check "its disk dir is deleted" test ! -e "$T/state/desktops/$d2"
t_check "recycled then gone are both audited" bash -c '"$1" audit tail -n 100 | grep -q "desktop=$2.*from=ready to=recycling" && "$1" audit tail -n 100 | grep -q "desktop=$2.*from=recycling to=gone"' _ "$VDICTL" "$d2"
t_check "spares back to two" t_wait_for 15 count_is ready 2
set -- $(ids ready)
d3=$1
t_check "destroy answers" "$VDICTL" desktops destroy "$d3"
t_check "a destroyed desktop ends gone" t_wait_for 10 field_is "$d3" state gone
out=$("$VDICTL" desktops recycle "$d3" 2>&1); rc=$?
t_check "recycling a gone desktop is refused" test "$rc" = 1
t_check "with a reason" grep -q "already gone or going" <<<"$out"
t_check "recycling a failed desktop clears it" "$VDICTL" desktops recycle "$d1"
t_check "the failed desktop is gone" field_is "$d1" state gone
t_check "spares back to two again" t_wait_for 15 count_is ready 2

# ---- restart with desktops running: re-attach, no duplicates
before=$(ids ready | tr '\n' ' ')
pids_before=$(pgrep -f "$FAKE .*--control $T/" | sort | tr '\n' ' ')
kill -TERM "$vdid"; wait "$vdid"
t_check "VMMs outlive vdid" test "$(nvmm)" = 2
set -- $before
kill -9 "$(pgrep -f "$FAKE .*--control $T/run/vm/$2/" )"
t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
vdid=$!
t_check "restarted vdid answers" t_wait_for 10 test -S "$VDI_ADMIN_SOCKET"
t_check "the surviving desktop is still ready" t_wait_for 5 field_is "$1" state ready
t_check "its VMM is the same process" bash -c 'grep -qw "$1" <<<"$2"' _ "$(field "$1" vmm_pid)" "$pids_before"
t_check "the one killed while vdid was down is failed" field_is "$2" state failed
t_check "with that reason" bash -c '"$1" desktops show "$2" | grep -q "vmm gone while vdid was down"' _ "$VDICTL" "$2"
t_check "re-attach is audited" bash -c '"$1" audit tail -n 100 | grep -q "vmm.reattach .*desktop=$2"' _ "$VDICTL" "$1"
t_check "one new spare, no duplicates" t_wait_for 15 count_is ready 2
t_check "exactly two VMMs run" test "$(nvmm)" = 2
kill -TERM "$vdid"; wait "$vdid"
kill_vmms

# ---- a VMM that never gets ready, and one that ignores shutdown
sed -i 's/^min_spares = 2/min_spares = 1/' "$T/vdid.conf"
FAKEVMM_NEVER_READY=1 t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
vdid=$!
t_check "a never-ready desktop fails after ready_timeout" t_wait_for 15 bash -c '"$1" desktops list --all | grep -q "failed.*not ready after 2s"' _ "$VDICTL"
kill -TERM "$vdid"; wait "$vdid"
kill_vmms
FAKEVMM_IGNORE_SHUTDOWN=1 t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
vdid=$!
t_check "a spare is ready" t_wait_for 15 count_is ready 1
d=$(ids ready)
p=$(field "$d" vmm_pid)
"$VDICTL" desktops recycle "$d" >/dev/null
t_check "a VMM ignoring shutdown is killed after shutdown_timeout" t_wait_for 15 field_is "$d" state gone
t_check "and is really gone" bash -c "! kill -0 $p 2>/dev/null"
t_check "the log says why ($(grep "desktop=$d" "$T/vdid.log" | tail -3))" grep -q "did not exit within 6s: killing it" "$T/vdid.log"
kill -TERM "$vdid"; wait "$vdid"
kill_vmms

# ---- vdid stops while a desktop is provisioning; the desktop gets ready while vdid is down
. "$VDI_SRC/tests/integration/restart_provisioning.sh"
# A slow guest (ready 1.5 s after its start), so that the VMM is surely caught provisioning.
FAKEVMM_READY_MS=1500 restart_while_provisioning "$FAKE"
t_done
