#!/usr/bin/env bash
# The whole product on KVM: vdid with the real vdi-vmm booting testdesk from the image catalogue,
# real PAM (pam_wrapper + pam_matrix), a real viewer (libvncclient over VeNCrypt X509Plain).
# A user logs in, types, and the guest gets the keys (its serial log) and draws them (the KEYS
# line of its screen changes); a second login lands on the same desktop (same VMM, same disk,
# the keys still on screen); another user gets another desktop without them; recycling a floating
# desktop shuts its guest down and deletes its overlay; kill -9 of a VMM marks the desktop failed
# and the next login works; a vdid restart re-attaches to the running VMMs (no duplicates) and
# they are still reachable; a desktop that became ready while vdid was down is ready after the
# restart (its `status` reply), not killed at ready_timeout.
# timeout: 200
. "$VDI_SRC/tests/lib.sh"
t_require_kvm
t_tmpdir
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
VMM=$VDI_BIN/vdi-vmm
VNC=$VDI_BUILD/tests/tools/vdid_vncclient
ELF=$VDI_SRC/build/testdesk/testdesk.elf
DISK=$VDI_SRC/build/testdesk/system.qcow2
export VDI_ADMIN_SOCKET=$T/run/vdid.sock
[ -f "$ELF" ] && [ -f "$DISK" ] || t_fail "build/testdesk/testdesk.elf or system.qcow2 missing (make testdesk)"

t_require_pam_wrapper nss
kill_vmms() {
    t_kill_matching KILL "$VMM .*--control $T/"
}
trap 'kill_vmms; t_cleanup' EXIT

mkdir -p "$T/pam"
for u in alice:3001 bob:3002; do
    n=${u%%:*} id=${u##*:}
    echo "$n:pw-$n:vdi" >>"$T/pam/passdb"
    echo "$n:x:$id:$id:$n:/nonexistent:/bin/false" >>"$T/pam/passwd"
    echo "$n:x:$id:" >>"$T/pam/group"
done
printf 'auth required %s passdb=%s\naccount required %s passdb=%s\n' \
    "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" >"$T/pam/vdi"
"$VDICTL" image import testdesk "$DISK" --kernel "$ELF" --state "$T/state" -q >/dev/null ||
    t_fail "cannot import testdesk into the catalogue"

cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = 127.0.0.1:0
vmm = $VMM
ready_timeout = 30
shutdown_timeout = 2

[pool lab]
image = testdesk
memory = 128M
framebuffer = 640x480
users = alice, bob
disconnect_timeout = 1h
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
    ca=$T/state/tls/cert.pem
}
# testdesk's KEYS line at 640x480: row 32 + (480 - 32) / 2 + 16 = 272
KEYS_ROWS="268 24"
login() {
    local u=$1; shift
    out=$(VDI_TEST_PASSWORD=pw-$u "$VNC" "127.0.0.1:$port" "$u" --ca "$ca" --timeout 30000 --region $KEYS_ROWS "$@" 2>>"$T/vnc.log"); rc=$?
}
val() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$out"; }
dfield() { "$VDICTL" desktops show "$1" --json | sed -n "s/^ *\"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p"; }
field_is() { test "$(dfield "$1" "$2")" = "$3"; }
owner_desktop() {
    "$VDICTL" desktops list --json | awk -v u="$1" '/"id":/ {gsub(/[^0-9]/,"",$2); id=$2} /"owner":/ && $2 == "\"" u "\"," {print id}'
}

start_vdid
login alice --type "hello"
t_check "alice logs in to a testdesk desktop (first frame)" test "$rc" = 0
t_check "at the pool's framebuffer size" grep -q "width=640 height=480" <<<"$out"
t_check "her typing changed the KEYS line" test "$(val region)" != "$(val region_before)"
shown=$(val region)
da=$(owner_desktop alice)
t_check "the guest got the keys h e l l o" bash -c 'grep "INPUT key code=.* down=1" "$1" | grep -o "code=[0-9]*" | tr "\n" " " | grep -q "code=35 code=18 code=38 code=38 code=24"' _ "$T/state/desktops/$da/vmm.log"
pid_a=$(dfield "$da" vmm_pid)
disk_a=$(dfield "$da" overlay)
t_check "her disk is an overlay in the state dir" test -f "$disk_a"
t_check "on the image's version 1, which records her desktop as a user" test -e "$T/state/images/testdesk/v1/refs/desktop-$da"

login alice
t_check "alice logs in again" test "$rc" = 0
t_check "to the same desktop" test "$(owner_desktop alice)" = "$da"
t_check "same VMM process" field_is "$da" vmm_pid "$pid_a"
t_check "same disk" field_is "$da" overlay "$disk_a"
t_check "her keys are still on the screen ($(val region_before) vs $shown)" test "$(val region_before)" = "$shown"

login bob
t_check "bob logs in" test "$rc" = 0
db=$(owner_desktop bob)
t_check "to another desktop" bash -c 'test -n "$1" && test "$1" != "$2"' _ "$db" "$da"
t_check "which does not show alice's keys" test "$(val region_before)" != "$shown"

# ---- restart vdid with both desktops running, one of them with a viewer attached
VDI_TEST_PASSWORD=pw-bob "$VNC" "127.0.0.1:$port" bob --ca "$ca" --hold 20000 >"$T/held.out" 2>>"$T/vnc.log" &
held=$!
t_wait_for 20 grep -q first_frame "$T/held.out" || t_fail "bob's held viewer did not get in"
kill -TERM "$vdid"; wait "$vdid"
wait "$held"
t_check "the VMMs outlive vdid" kill -0 "$pid_a"
start_vdid
t_check "bob's session record says why it ended" bash -c '"$1" sessions list --all | grep -q "the server is shutting down"' _ "$VDICTL"
t_check "both desktops are still listed" bash -c 'test "$("$1" desktops list --json | grep -c "\"state\": \"disconnected\"")" = 2' _ "$VDICTL"
login alice
t_check "alice reaches her desktop after the restart" test "$rc" = 0
t_check "the same VMM (no duplicate)" field_is "$da" vmm_pid "$pid_a"
t_check "her keys are still there" test "$(val region_before)" = "$shown"
t_check "exactly two VMMs run" test "$(pgrep -f "$VMM .*--control $T/" | wc -l)" = 2

# ---- floating recycle: the guest is shut down, the overlay deleted, the image reference dropped
"$VDICTL" desktops recycle "$db" >/dev/null
t_check "bob's recycled desktop ends gone" t_wait_for 30 field_is "$db" state gone
t_check "its VM was stopped by the VMM at vdid's request" bash -c '"$1" audit tail -n 100 | grep -q "desktop=$2.*to=gone reason=guest stopped"' _ "$VDICTL" "$db"
t_check "its overlay is deleted" test ! -e "$T/state/desktops/$db"
t_check "its image reference is dropped (off the loop, soon after)" t_wait_for 5 test ! -e "$T/state/images/testdesk/v1/refs/desktop-$db"

# ---- kill -9 of a VMM
kill -9 "$pid_a"
t_check "alice's desktop is marked failed" t_wait_for 10 field_is "$da" state failed
t_check "with the reason" bash -c '"$1" desktops show "$2" | grep -q "reason: *vmm exited (status unknown"' _ "$VDICTL" "$da"
login alice
t_check "alice's next login works" test "$rc" = 0
t_check "on a fresh desktop" bash -c 'test -n "$1" && test "$1" != "$2"' _ "$(owner_desktop alice)" "$da"
kill -TERM "$vdid"; wait "$vdid"
kill_vmms

# ---- vdid stops while a desktop is provisioning; the real VMM gets ready while vdid is down and
# says so in its `status` reply after the restart (before, vdid killed it at ready_timeout)
sed -i 's/^ready_timeout = 30/ready_timeout = 3/; s/^\[pool lab\]/[pool lab]\nmin_spares = 1/' "$T/vdid.conf"
field() { dfield "$@"; }
. "$VDI_SRC/tests/integration/restart_provisioning.sh"
restart_while_provisioning "$VMM"
t_done
