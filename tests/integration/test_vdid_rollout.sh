#!/usr/bin/env bash
# Rollouts (server/rollout.c): a pool follows its image's current version by a canary share
# first, then waves, each waiting for the desktops before it to pass their health window; a busy
# desktop moves only at its user's logout (logoff = wait); a version whose canary fails its
# health check is rolled back by itself (the image's current version goes back, the pool's
# desktops with it) with nothing lost. With vdid, real PAM (pam_wrapper + pam_matrix), a real
# viewer (libvncclient) and the stand-in VMM, which boots the data area testdesk would (its
# banner, and a `crash` file that makes it crash after it became ready); logoff = force moves a
# busy desktop after logoff_grace, with a warning in the audit log and on the desktop (the guest
# agent's message); a version whose guest agent stops sending heartbeats fails its health check
# and is rolled back too.
# timeout: 240
. "$VDI_SRC/tests/lib.sh"
t_tmpdir
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
FAKE=$VDI_BUILD/tests/tools/vdid_fakevmm
VNC=$VDI_BUILD/tests/tools/vdid_vncclient
export VDI_ADMIN_SOCKET=$T/run/vdid.sock VDI_STATE_DIR=$T/state
t_require_pam_wrapper nss
trap 't_kill_matching KILL "$FAKE .*--control $T/"; t_cleanup' EXIT

mkdir -p "$T/pam"
printf 'alice:pw-alice:vdi\ncarol:pw-carol:vdi\n' >"$T/pam/passdb"
printf 'alice:x:3001:3001:alice:/nonexistent:/bin/false\ncarol:x:3003:3003:carol:/nonexistent:/bin/false\n' >"$T/pam/passwd"
printf 'alice:x:3001:\ncarol:x:3003:\n' >"$T/pam/group"
printf 'auth required %s passdb=%s\naccount required %s passdb=%s\n' \
    "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" >"$T/pam/vdi"

truncate -s 8M "$T/disk.raw"
echo "not a kernel" >"$T/kernel"
# testdesk.hb=1: the guest agent's heartbeat every second (the stand-in reads it as testdesk does)
"$VDICTL" image import testdesk "$T/disk.raw" --kernel "$T/kernel" --cmdline "testdesk.hb=1" -q \
    >/dev/null || t_fail "import failed"

out=$(printf '[vdid]\nstate_dir = %s/x\n[pool p]\nimage = t\nlogoff = later\n' "$T" >"$T/bad.conf"
    "$VDID" --check-config -c "$T/bad.conf" 2>&1)
t_check "a bad logoff value is refused, saying what it may be" grep -q "logoff: 'later' is not wait or force" <<<"$out"

cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = off
vmm = $FAKE
memory_budget = 4G
vmm_uid_first = 4400000
vmm_uid_count = 32
log_level = debug

[auth]
max_checks_per_addr = 0

[pool lab]
image = testdesk
memory = 64M
users = alice
min_spares = 4
disconnect_timeout = 1
canary_percent = 20
waves = 2
health_window = 2
max_unhealthy = 0

# carol's files are on her desktop's system disk: it never moves
[pool keep]
image = testdesk
type = dedicated
user_disk = no
memory = 64M
users = carol
CONF
start_vdid() {
    # (The DEEPBIND switches and the ASan option matter only in sanitizer builds.)
    LD_PRELOAD="$libdir/libpam_wrapper.so:$libdir/libnss_wrapper.so" PAM_WRAPPER=1 \
    UID_WRAPPER_DISABLE_DEEPBIND=1 PAM_WRAPPER_DISABLE_DEEPBIND=1 NSS_WRAPPER_DISABLE_DEEPBIND=1 \
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
    PAM_WRAPPER_SERVICE_DIR="$T/pam" NSS_WRAPPER_PASSWD="$T/pam/passwd" \
    NSS_WRAPPER_GROUP="$T/pam/group" t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
    vdid=$!
    t_wait_for 15 test -S "$VDI_ADMIN_SOCKET" || t_fail "vdid did not start: $(tail -5 "$T/vdid.log")"
}
start_vdid
port=$("$VDICTL" status --json | sed -n 's/^ *"rfb_port": \([0-9]*\),*$/\1/p')
ca=$T/state/tls/cert.pem
# per-version counts of the pool's desktops that are not being recycled: "1:4 2:1"
versions() {
    "$VDICTL" image rollouts --json | python3 -c '
import json, sys
p = json.load(sys.stdin)[0]
print(" ".join("%s:%d" % (k, v) for k, v in sorted(p["desktops"].items())))'
}
rstate() { "$VDICTL" image rollouts --json | python3 -c 'import json,sys; p=json.load(sys.stdin)[0]; print(p.get("state","-"), p.get("from",0), p.get("to",0))'; }
current() { "$VDICTL" image list --json | python3 -c 'import json,sys; print([i["current"] for i in json.load(sys.stdin) if i["name"]=="testdesk"][0])'; }
export VDICTL
export -f versions rstate current # for the checks below that run in bash -c
ready_n() { test "$("$VDICTL" desktops list --json --state ready | grep -c '"id":')" -ge "$1"; }
t_check "four spares on version 1 are ready" t_wait_for 20 ready_n 4
t_check "no rollout while the pool is on the current version" test "$(rstate)" = "- 0 0"

# alice logs in and stays: her desktop is busy.
VDI_TEST_PASSWORD=pw-alice "$VNC" "127.0.0.1:$port" alice --ca "$ca" --hold 120000 >>"$T/vnc.log" 2>&1 &
vnc=$!
own() { "$VDICTL" desktops list --json | awk -v u="$1" '/"id":/ {gsub(/[^0-9]/,"",$2); id=$2} /"owner":/ && $2 == "\"" u "\"," {print id}'; }
in_use() { "$VDICTL" desktops list --json --state in-use | grep -q '"owner": "alice"'; }
t_check "alice's desktop is in use" t_wait_for 15 in_use
alice=$(own alice)
t_check "the pool is back to four spares besides alice's" t_wait_for 20 ready_n 4
VDI_TEST_PASSWORD=pw-carol "$VNC" "127.0.0.1:$port" carol --ca "$ca" >>"$T/vnc.log" 2>&1 || t_fail "carol's login failed"
carol=$(own carol)
t_check "carol has a dedicated desktop" test -n "$carol"

# ---- a good version rolls out: canary first, then waves, each after the health window
printf 'banner Patched v2\nwrite motd hello\n' >"$T/v2.run"
# Watch the per-version counts while it runs.
nready() { "$VDICTL" desktops list --json --state ready | grep -c '"owner": ""'; }
(while :; do echo "$(date +%s.%N) ready=$(nready) $(versions)"; sleep 0.1; done) >"$T/watch.log" 2>/dev/null &
watch=$!
"$VDICTL" image patch testdesk --script "$T/v2.run" >"$T/patch2.log" 2>&1 || t_fail "patch v2 failed: $(cat "$T/patch2.log")"
t_check "a rollout of version 2 starts" t_wait_for 5 bash -c '[[ "$(rstate)" == canary\ 1\ 2 || "$(rstate)" == waves\ 1\ 2 ]]'
moved_but_alice() { # every desktop but alice's is on version 2
    test "$(versions)" = "1:1 2:4"
}
t_check "every idle desktop moves to version 2" t_wait_for 30 moved_but_alice
kill "$watch" 2>/dev/null
wait "$watch" 2>/dev/null
# The canary: 20 % of five desktops is one; while it proves itself the other idle ones stay.
t_check "first one desktop on version 2, the rest on version 1 (the canary)" grep -q " 1:4 2:1$" "$T/watch.log"
# From vdid's log: when the canary was made, when it was healthy, when a second desktop moved.
gaps=$(python3 - "$T/vdid.log" <<'PY'
import re, sys, datetime
ts = lambda l: datetime.datetime.strptime(l[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
moves, healthy = [], None
for l in open(sys.argv[1]):
    if re.search(r"pool=lab: \d+ new spares? on version 2|moving from version 1 to 2", l):
        moves.append(ts(l))
    if healthy is None and "healthy on version 2" in l:
        healthy = ts(l)
if len(moves) < 2 or healthy is None:
    print("-1 -1")
else:
    print("%d %d" % ((healthy - moves[0]) * 1000, (moves[1] - healthy) * 1000))
PY
)
set -- $gaps
t_check "the canary was healthy no sooner than its health window after it was made (${1} ms)" test "$1" -ge 2000
t_check "no second desktop moved before the canary was healthy (${2} ms after)" test "$2" -ge 0
minready=$(sed -n 's/.* ready=\([0-9]*\) .*/\1/p' "$T/watch.log" | sort -n | head -1)
t_check "a login would always have found a ready spare: never fewer than 4 (${minready})" test "$minready" -ge 4
t_check "new spares came up before old ones went" grep -q "replaced by a spare on the pool's new version" "$T/vdid.log"
audit=$("$VDICTL" audit tail -n 100)
echo "$audit" | grep rollout | sed 's/^/# /'
t_check "audited: the start, then wave 1 once the canary was healthy" \
    bash -c 'grep -q "image.rollout.start .*pool lab image testdesk v1 -> v2" <<<"$1" && grep -q "image.rollout.wave .*wave 1 of 2" <<<"$1"' _ "$audit"
t_check "the canary was healthy before wave 1" \
    bash -c 'h=$(grep -n "healthy on version 2" "$1" | head -1 | cut -d: -f1); w=$(grep -n "image.rollout.wave" "$1" | head -1 | cut -d: -f1); [ -n "$h" ] && [ -n "$w" ] && [ "$h" -lt "$w" ]' _ "$T/vdid.log"
t_check "alice's busy desktop stays on version 1 (logoff = wait)" \
    bash -c '"$0" desktops show "$1" --json | grep -q "\"image_version\": 1"' "$VDICTL" "$alice"
out=$("$VDICTL" image rollouts)
echo "$out" | sed 's/^/# /'
t_check "vdictl image rollouts says one desktop waits for its user's logout" grep -q "1 desktop(s) wait for their user's logout" <<<"$out"
t_check "and the rollout is not done yet" bash -c '[[ "$(rstate)" == waves\ 1\ 2 ]]'
new=$("$VDICTL" desktops list --json --state ready | sed -n 's/^ *"id": \([0-9]*\),$/\1/p' | tail -1)
t_check "a moved desktop boots version 2: its banner and file" t_wait_for 5 \
    bash -c 'grep -q "TESTDESK BANNER Patched v2" "$1" && grep -q "testdesk: file motd" "$1"' _ "$T/state/desktops/$new/vmm.log"
t_check "alice's desktop never saw it" bash -c '! grep -q "TESTDESK BANNER" "$1"' _ "$T/state/desktops/$alice/vmm.log"

# alice logs out: her desktop is recycled, and the rollout is done.
kill "$vnc" 2>/dev/null
wait "$vnc" 2>/dev/null
done_v2() { [[ "$(rstate)" == "done 1 2" ]]; }
t_check "after alice's logout the rollout is done" t_wait_for 20 done_v2
t_check "every desktop of the pool is on version 2" t_wait_for 10 bash -c '[ "$(versions)" = "2:4" ]'
t_check "audited: done" bash -c '"$1" audit tail -n 100 | grep -q "image.rollout.done"' _ "$VDICTL"
keep=$("$VDICTL" image rollouts --pool keep --json)
t_check "the pool keep's rollout is done without moving carol's desktop" \
    python3 -c 'import json,sys; p=json.load(sys.stdin)[0]; assert p["state"]=="done" and p["kept"]==1 and "dedicated, no data disk" in p["reason"], p' <<<"$keep"
t_check "carol's desktop is still on version 1, never recycled" \
    bash -c '"$0" desktops show "$1" --json | grep -q "\"image_version\": 1" && ! grep -q "desktop=$1 .*-> recycling" "$2"' "$VDICTL" "$carol" "$T/vdid.log"

# ---- the rollout goes on across a vdid restart
printf 'banner Patched v3\n' >"$T/v3.run"
"$VDICTL" image patch testdesk --script "$T/v3.run" >"$T/patch3.log" 2>&1 || t_fail "patch v3 failed"
t_check "a rollout of version 3 starts" t_wait_for 5 bash -c '[[ "$(rstate)" == *" 2 3" ]]'
rid=$("$VDICTL" image rollouts --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
kill -TERM "$vdid"
t_wait_for 10 bash -c '! kill -0 "$1" 2>/dev/null' _ "$vdid" || t_fail "vdid did not stop"
start_vdid
t_check "after a restart the same rollout goes on" \
    bash -c '"$0" image rollouts --json | grep -q "\"id\": $1,"' "$VDICTL" "$rid"
t_check "and finishes" t_wait_for 30 bash -c '[[ "$(rstate)" == "done 2 3" ]] && [ "$(versions)" = "3:4" ]'

# ---- a broken version: its canary crashes after it became ready; it is rolled back by itself
printf 'banner Broken v4\nwrite crash 300\n' >"$T/v4.run"
"$VDICTL" image patch testdesk --script "$T/v4.run" >"$T/patch4.log" 2>&1 || t_fail "patch v4 failed"
t_check "version 4 is published and current" test "$(current)" = 4
rolled_back() { [[ "$(rstate)" == "rolled-back 3 4" ]]; }
t_check "the rollout rolls back by itself" t_wait_for 30 rolled_back
t_check "version 3 is current again" test "$(current)" = 3
t_check "every desktop of the pool is on version 3" t_wait_for 15 bash -c '[ "$(versions)" = "3:4" ]'
out=$("$VDICTL" image rollouts)
echo "$out" | sed 's/^/# /'
t_check "vdictl image rollouts says why: the canary crashed" grep -q "1 desktop on version 4 failed (max_unhealthy = 0); last: desktop [0-9]*: .*crash" <<<"$out"
audit=$("$VDICTL" audit tail -n 200)
t_check "audited: the unhealthy desktop and the rollback" \
    bash -c 'grep -q "image.rollout.unhealthy" <<<"$1" && grep -q "image.rollout.rollback" <<<"$1"' _ "$audit"
t_check "only the canary ever ran version 4" \
    bash -c '[ "$(grep -c "image=testdesk version=4 vmm pid" "$1")" = 1 ]' _ "$T/vdid.log"
t_check "the history keeps every rollout" \
    bash -c '[ "$("$0" image rollouts --pool lab --all | grep -c "^  #")" = 3 ]' "$VDICTL"
t_check "version 4 stays out of the pool: it is not retried by itself" \
    bash -c 'sleep 3; [[ "$(rstate)" == "rolled-back 3 4" ]] && [ "$(versions)" = "3:4" ]'

# ---- logoff = force: a busy desktop moves after logoff_grace, warned in the audit log first
kill -TERM "$vdid"
t_wait_for 10 bash -c '! kill -0 "$1" 2>/dev/null' _ "$vdid" || t_fail "vdid did not stop"
sed -i 's/^max_unhealthy = 0$/&\nlogoff = force\nlogoff_grace = 2/' "$T/vdid.conf" # [pool lab]
start_vdid
port=$("$VDICTL" status --json | sed -n 's/^ *"rfb_port": \([0-9]*\),*$/\1/p')
VDI_TEST_PASSWORD=pw-alice "$VNC" "127.0.0.1:$port" alice --ca "$ca" --hold 120000 >>"$T/vnc.log" 2>&1 &
vnc=$!
t_check "alice is back on a desktop" t_wait_for 15 in_use
alice=$(own alice)
printf 'banner Patched v5\n' >"$T/v5.run"
"$VDICTL" image patch testdesk --script "$T/v5.run" >"$T/patch5.log" 2>&1 || t_fail "patch v5 failed"
warned() { "$VDICTL" audit tail -n 50 | grep -q "desktop.logoff-warning.*desktop=$alice"; }
t_check "alice is warned that her desktop moves (logoff = force)" t_wait_for 30 warned
t_check "the warning gives the grace" bash -c '"$0" audit tail -n 50 | grep "desktop.logoff-warning" | grep -q "moves to version 5 of image testdesk in 2s"' "$VDICTL"
t_check "and reaches her desktop through its guest agent, shown for the grace" t_wait_for 5 \
    grep -q "^TESTDESK MESSAGE secs=2 bytes=[0-9]* text=This desktop restarts in 2 s for an update. Save your work now.$" \
    "$T/state/desktops/$alice/vmm.log"
t_check "her viewer is disconnected after the grace" t_wait_for 15 bash -c '! kill -0 "$1" 2>/dev/null' _ "$vnc"
t_check "her desktop was recycled to move" \
    grep -q "desktop=$alice .*-> recycling reason=moving from version 3 to 5 of image testdesk (logoff = force, after logoff_grace)" "$T/vdid.log"
t_check "and the rollout is done: every desktop on version 5" t_wait_for 30 \
    bash -c '[[ "$(rstate)" == "done 3 5" ]] && [ "$(versions)" = "5:4" ]'
some=$("$VDICTL" desktops list --json --state ready | sed -n 's/^ *"id": \([0-9]*\),*$/\1/p' | head -1)
t_check "vdictl desktops show says how the guest agent is" \
    bash -c '"$0" desktops show "$1" | grep -q "^  agent: *testdesk v=1 heartbeat=1s caps=message$"' "$VDICTL" "$some"

# ---- a version whose guest agent stops after it became ready (a hung session): no crash, no
# exit, but no heartbeat either. The canary fails its health check and the rollout rolls back.
kill -TERM "$vdid"
t_wait_for 10 bash -c '! kill -0 "$1" 2>/dev/null' _ "$vdid" || t_fail "vdid did not stop"
sed -i 's/^health_window = 2$/health_window = 10/' "$T/vdid.conf"
start_vdid
printf 'banner Hung v6\nwrite hang 300\n' >"$T/v6.run"
"$VDICTL" image patch testdesk --script "$T/v6.run" >"$T/patch6.log" 2>&1 || t_fail "patch v6 failed"
t_check "version 6 is rolled back by itself" t_wait_for 40 bash -c '[[ "$(rstate)" == "rolled-back 5 6" ]]'
out=$("$VDICTL" image rollouts)
echo "$out" | sed 's/^/# /'
t_check "vdictl image rollouts says why: the canary's guest agent was lost" \
    grep -q "last: desktop [0-9]*: guest agent lost: no heartbeat for 3 s from testdesk (one every 1 s)" <<<"$out"
t_check "vdid logged the lost agent" grep -q "desktop=[0-9]* guest agent lost: no heartbeat" "$T/vdid.log"
t_check "every desktop of the pool is on version 5 again" t_wait_for 15 bash -c '[ "$(versions)" = "5:4" ]'
t_done
