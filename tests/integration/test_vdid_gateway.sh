#!/usr/bin/env bash
# vdid end to end with a stand-in VMM (tests/tools/vdid_fakevmm.c: control socket plus a
# libvncserver display; no guest), real PAM (pam_wrapper + pam_matrix, nss_wrapper for groups)
# and a real viewer (libvncclient over VeNCrypt X509Plain): login, keys typed reach the desktop
# and come back on screen, reconnect (also from a second client, which takes over) lands on the
# same desktop, another user gets another desktop, a wrong password is refused, a user entitled
# to nothing and a login beyond capacity get a clear message and leave nothing behind, 20
# parallel logins get 20 distinct desktops, a floating desktop is recycled on disconnect, and an
# admin disconnect closes the viewer.
# timeout: 180
. "$VDI_SRC/tests/lib.sh"
t_tmpdir
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
FAKE=$VDI_BUILD/tests/tools/vdid_fakevmm
VNC=$VDI_BUILD/tests/tools/vdid_vncclient
export VDI_ADMIN_SOCKET=$T/run/vdid.sock

t_require_pam_wrapper nss

kill_vmms() {
    t_kill_matching KILL "$FAKE .*--control $T/"
}
trap 'kill_vmms; [ -n "${KEEP:-}" ] && cp -r "$T" "$KEEP"; t_cleanup' EXIT

# ---- a PAM and NSS world of our own
mkdir -p "$T/pam"
: >"$T/pam/passdb"
: >"$T/pam/passwd"
printf 'staff:x:2001:carol\n' >"$T/pam/group"
add_user() { # name uid
    echo "$1:pw-$1:vdi" >>"$T/pam/passdb"
    echo "$1:x:$2:$2:$1:/nonexistent:/bin/false" >>"$T/pam/passwd"
    echo "$1:x:$2:" >>"$T/pam/group"
}
add_user alice 3001; add_user bob 3002; add_user carol 3003; add_user mallory 3004
for i in $(seq 1 24); do add_user "u$i" $((4000 + i)); done
printf 'auth required %s passdb=%s\naccount required %s passdb=%s\n' \
    "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" >"$T/pam/vdi"
users="alice bob $(seq -s, 1 24 | sed 's/\([0-9]*\)/u\1/g')"

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
vmm_env = FAKEVMM_FLOOD
vmm = $FAKE
memory_budget = 4G

# every viewer of this test comes from 127.0.0.1: no per-address cap on checks in progress
[auth]
max_checks_per_addr = 0

[pool lab]
image = testdesk
memory = 64M
max_desktops = 24
framebuffer = 336x200
users = $users
disconnect_timeout = 1
[pool office]
image = testdesk
type = dedicated
memory = 64M
max_desktops = 1
groups = staff
idle_timeout = 2
CONF

start_vdid() {
    LD_PRELOAD="$libdir/libpam_wrapper.so:$libdir/libnss_wrapper.so" PAM_WRAPPER=1 \
    UID_WRAPPER_DISABLE_DEEPBIND=1 PAM_WRAPPER_DISABLE_DEEPBIND=1 NSS_WRAPPER_DISABLE_DEEPBIND=1 \
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
    PAM_WRAPPER_SERVICE_DIR="$T/pam" NSS_WRAPPER_PASSWD="$T/pam/passwd" \
    NSS_WRAPPER_GROUP="$T/pam/group" t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
    vdid=$!
    t_wait_for 15 test -S "$VDI_ADMIN_SOCKET" || t_fail "vdid did not start: $(tail -5 "$T/vdid.log")"
    port=$("$VDICTL" status --json | sed -n 's/^ *"rfb_port": \([0-9]*\),*$/\1/p')
    [ -n "$port" ] || t_fail "no gateway port: $("$VDICTL" status --json 2>&1 | head -20)"
    ca=$T/state/tls/cert.pem
}
login() { # login USER [ARGS...]: the viewer's output line; its exit status in $rc
    local u=$1; shift
    out=$(VDI_TEST_PASSWORD=${PW:-pw-$u} "$VNC" "127.0.0.1:$port" "$u" --ca "$ca" "$@" 2>>"$T/vnc.log"); rc=$?
}
live_count() { "$VDICTL" desktops list --json | grep -c '"state"' || true; }
count_is() { test "$(live_count)" = "$1"; }
dfield() { "$VDICTL" desktops show "$1" --json | sed -n "s/^ *\"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p"; }
state_of() { "$VDICTL" desktops show "$1" --json | sed -n 's/^ *"state": "\(.*\)",$/\1/p'; }
state_is() { test "$(state_of "$1")" = "$2"; }
owner_desktop() { # the live desktop of USER
    "$VDICTL" desktops list --json | awk -v u="$1" '/"id":/ {gsub(/[^0-9]/,"",$2); id=$2} /"owner":/ && $2 == "\"" u "\"," {print id}'
}

start_vdid
t_check "gateway port known" test -n "$port"
t_check "TLS certificate made" test -f "$ca"

# ---- login, keys
login alice --type "hello" --hold 200
t_check "alice logs in and gets a first frame" test "$rc" = 0
t_check "her desktop is the pool's framebuffer size" grep -q "width=336 height=200" <<<"$out"
t_check "the keys she typed show on her desktop ($out)" grep -q "keys=hello" <<<"$out"
da=$(owner_desktop alice)
t_check "alice owns a desktop" test -n "$da"
t_check "it is disconnected after she left" t_wait_for 5 state_is "$da" disconnected

# ---- reconnect: same desktop (its screen still holds her keys)
login alice --type "!" --hold 100
t_check "alice reconnects" test "$rc" = 0
t_check "to the same desktop (earlier keys still on screen)" grep -q "keys=hello!" <<<"$out"
t_check "same desktop id" test "$(owner_desktop alice)" = "$da"

# ---- a second client takes over a live session
VDI_TEST_PASSWORD=pw-alice "$VNC" "127.0.0.1:$port" alice --ca "$ca" --hold 3000 >"$T/first.out" 2>>"$T/vnc.log" &
first=$!
t_wait_for 10 state_is "$da" in-use || t_fail "first client did not get in"
login alice --hold 100
t_check "a second client of alice gets in" test "$rc" = 0
t_check "the first client was disconnected" bash -c '"$1" sessions list --all | grep -q "reconnected from"' _ "$VDICTL"
wait "$first"
t_check "still one desktop for alice" test "$(owner_desktop alice | wc -l)" = 1

# ---- another user, another desktop; the first stays hers
login bob --type "xyz" --hold 100
t_check "bob logs in" test "$rc" = 0
t_check "bob sees only his own keys" grep -q "keys=xyz" <<<"$out"
db=$(owner_desktop bob)
t_check "bob has a different desktop" bash -c 'test -n "$1" && test "$1" != "$2"' _ "$db" "$da"

# ---- refusals
PW=wrong login alice
t_check "a wrong password is refused" test "$rc" = 3
t_check "and audited" bash -c '"$1" audit tail -n 50 | grep -q "auth.failed .*user=alice"' _ "$VDICTL"
login mallory
t_check "a user entitled to no pool is refused (rc=$rc $out)" test "$rc" = 4
t_check "with a clear message" grep -q "name=user mallory is not entitled to any desktop pool" <<<"$out"
t_check "nothing was made for mallory" bash -c '! "$1" desktops list --all --json | grep -q "\"owner\": \"mallory\""' _ "$VDICTL"

# ---- dedicated pool: carol (group staff) gets the only desktop; it survives her leaving
login carol --type "c" --hold 100
t_check "carol (group staff) logs in to the dedicated pool" test "$rc" = 0
dc=$(owner_desktop carol)
t_check "her desktop is disconnected, not recycled, after she leaves" t_wait_for 5 state_is "$dc" disconnected
sleep 1.5
t_check "still there after the disconnect timeout" state_is "$dc" disconnected

# ---- idle timeout (2 s in the office pool): a viewer that sends nothing is disconnected
start=$(date +%s)
login carol --hold 8000
t_check "an idle viewer is disconnected before it would have left" test $(( $(date +%s) - start )) -lt 7
t_check "its session ended for being idle" bash -c '"$1" sessions list --all | grep -q "idle timeout"' _ "$VDICTL"
# ... and so is one that keeps asking for the screen (every viewer does) but sends no input:
# update requests are not a person at the keyboard
idle_before=$("$VDICTL" sessions list --all | grep -c "idle timeout")
start=$(date +%s)
login carol --watch 8000
t_check "a viewer that only requests updates is disconnected at its idle timeout" \
    test $(( $(date +%s) - start )) -lt 7
t_check "it got frames until then" grep -q "frames=[1-9]" <<<"$out"
t_check "its session ended for being idle too" \
    test "$("$VDICTL" sessions list --all | grep -c "idle timeout")" -gt "$idle_before"
t_check "the user was warned on the desktop first, through its guest agent" \
    grep -q "^TESTDESK MESSAGE secs=1 bytes=[0-9]* text=No input for a while: this session closes in 1 s unless you use it" \
    "$T/state/desktops/$(owner_desktop carol)/vmm.log"

# ---- a dedicated desktop whose VMM dies is started again on its own disk at the next login
pc=$(dfield "$dc" vmm_pid)
disk_c=$(dfield "$dc" overlay)
kill -9 "$pc"
t_check "carol's dedicated desktop is failed after kill -9" t_wait_for 10 state_is "$dc" failed
t_check "its disk is kept" test -f "$disk_c"
login carol --hold 100
t_check "carol logs in again" test "$rc" = 0
t_check "to the same desktop, started again" bash -c 'test "$1" = "$2"' _ "$(owner_desktop carol)" "$dc"
t_check "on the same disk" test "$(dfield "$dc" overlay)" = "$disk_c"
t_check "by a new VMM" test "$(dfield "$dc" vmm_pid)" != "$pc"
t_check "the restart is audited" bash -c '"$1" audit tail -n 100 | grep -q "desktop=$2.*from=failed to=provisioning"' _ "$VDICTL" "$dc"

# ---- floating: recycled after disconnect_timeout (1 s), its files deleted
t_check "bob's floating desktop is recycled after the disconnect timeout" t_wait_for 10 state_is "$db" gone
t_check "its files are deleted" test ! -e "$T/state/desktops/$db"

# ---- 20 parallel logins: 20 distinct desktops; the 21st is beyond capacity
kill -TERM "$vdid"; wait "$vdid"; kill_vmms
rm -rf "$T/state" "$T/run"
make_image
sed -i 's/^max_desktops = 24/max_desktops = 20/' "$T/vdid.conf"
start_vdid
pids=()
for i in $(seq 1 20); do
    VDI_TEST_PASSWORD=pw-u$i "$VNC" "127.0.0.1:$port" "u$i" --ca "$ca" --hold 6000 --timeout 40000 \
        >"$T/p$i.out" 2>>"$T/vnc.log" &
    pids+=($!)
done
all_in() {
    local n
    n=$(cat "$T"/p*.out | grep -c "first_frame_ms=[0-9]")
    echo "$n" >"$T/all_in.last"
    test "$n" = 20
}
t_wait_for 40 all_in || t_fail "20 parallel logins: only $(cat "$T/all_in.last") got a first frame"
t_check "20 parallel logins all get a first frame" all_in
t_check "20 desktops in use" test "$("$VDICTL" desktops list --state in-use --json | grep -c '"owner": "u[0-9]*"')" = 20
t_check "one per user" test "$("$VDICTL" desktops list --json | grep -o '"owner": "u[0-9]*"' | sort -u | wc -l)" = 20
login u21
t_check "a login beyond capacity is refused (rc=$rc $out)" test "$rc" = 4
t_check "with a clear message" grep -q "name=no desktop available: the server is at capacity" <<<"$out"
t_check "and leaves nothing behind" test "$("$VDICTL" desktops list --all --json | grep -c '"id"')" = 20
t_check "the refusal is audited" bash -c '"$1" audit tail -n 200 | grep -q "login.refused .*user=u21"' _ "$VDICTL"
for p in "${pids[@]}"; do wait "$p"; done

# ---- an admin disconnect closes the viewer
VDI_TEST_PASSWORD=pw-u1 "$VNC" "127.0.0.1:$port" u1 --ca "$ca" --hold 20000 >"$T/held.out" 2>>"$T/vnc.log" &
held=$!
t_wait_for 10 grep -q first_frame "$T/held.out" || t_fail "u1 did not get back in"
sid=$("$VDICTL" sessions list --json | sed -n 's/^ *"id": \([0-9]*\),$/\1/p' | tail -n1)
t_check "sessions disconnect answers" "$VDICTL" sessions disconnect "$sid"
start=$(date +%s)
wait "$held"
t_check "the viewer was closed at once" test $(( $(date +%s) - start )) -lt 10
t_check "the session record says why" bash -c '"$1" sessions list --all | grep -q "disconnected by the admin"' _ "$VDICTL"

# ---- a slow client: the desktop's display sends as fast as it can (FAKEVMM_FLOOD) and the viewer
# reads nothing for 4 s: vdid must hold back, not buffer
kill -TERM "$vdid"; wait "$vdid"; kill_vmms
export FAKEVMM_FLOOD=1
start_vdid
unset FAKEVMM_FLOOD
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$vdid/status"; }
rss0=$(rss)
VDI_TEST_PASSWORD=pw-u2 "$VNC" "127.0.0.1:$port" u2 --ca "$ca" --stall 4000 --timeout 20000 >"$T/slow.out" 2>>"$T/vnc.log" &
slow=$!
t_wait_for 15 grep -q stalled "$T/slow.out" || t_fail "the slow client did not get in: $(cat "$T/slow.out")"
sleep 2
rss1=$(rss)
t_check "vdid answers while a viewer stalls" "$VDICTL" status >/dev/null
t_check "vdid holds back instead of buffering (RSS $rss0 -> $rss1 KiB)" test $((rss1 - rss0)) -lt 16384
wait "$slow"
kill -TERM "$vdid"; wait "$vdid"
t_done
