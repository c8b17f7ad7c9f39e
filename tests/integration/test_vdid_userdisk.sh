#!/usr/bin/env bash
# Users' files survive (pool key user_disk): each user of a dedicated pool gets a persistent data
# disk, STATE/users/NAME/data.qcow2, attached as their desktop's second disk. With vdid, real PAM
# (pam_wrapper + pam_matrix), a real viewer (libvncclient) and the stand-in VMM, which counts its
# boots on that disk as testdesk does (testdesk.data=1): the count goes on across a move to a new
# image version (made by `image patch`) and a rollback; each user has a disk of their own; the
# disk is never open in two VMMs at once; a floating pool with user_disk and spares is refused.
# timeout: 150
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
: >"$T/pam/passdb"; : >"$T/pam/passwd"; : >"$T/pam/group"
for u in alice:3001 bob:3002; do
    n=${u%%:*} id=${u#*:}
    echo "$n:pw-$n:vdi" >>"$T/pam/passdb"
    echo "$n:x:$id:$id:$n:/nonexistent:/bin/false" >>"$T/pam/passwd"
    echo "$n:x:$id:" >>"$T/pam/group"
done
printf 'auth required %s passdb=%s\naccount required %s passdb=%s\n' \
    "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" >"$T/pam/vdi"

truncate -s 8M "$T/disk.raw"
echo "not a kernel" >"$T/kernel"
"$VDICTL" image import testdesk "$T/disk.raw" --kernel "$T/kernel" --cmdline "testdesk.data=1" -q >/dev/null ||
    t_fail "import failed"

# A floating pool with a data disk cannot keep spares.
printf '[vdid]\nstate_dir = %s/x\n[pool f]\nimage = testdesk\nuser_disk = yes\nmin_spares = 1\n' "$T" >"$T/bad.conf"
out=$("$VDID" --check-config -c "$T/bad.conf" 2>&1)
t_check "user_disk with min_spares is refused, saying why" grep -q "min_spares needs user_disk = no" <<<"$out"

cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = off
vmm = $FAKE
memory_budget = 2G
vmm_uid_first = 4300000
vmm_uid_count = 16

[auth]
max_checks_per_addr = 0

[pool office]
image = testdesk
type = dedicated
memory = 64M
users = alice, bob
user_disk_size = 64M
CONF
# (The DEEPBIND switches and the ASan option matter only in sanitizer builds.)
LD_PRELOAD="$libdir/libpam_wrapper.so:$libdir/libnss_wrapper.so" PAM_WRAPPER=1 \
UID_WRAPPER_DISABLE_DEEPBIND=1 PAM_WRAPPER_DISABLE_DEEPBIND=1 NSS_WRAPPER_DISABLE_DEEPBIND=1 \
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
PAM_WRAPPER_SERVICE_DIR="$T/pam" NSS_WRAPPER_PASSWD="$T/pam/passwd" \
NSS_WRAPPER_GROUP="$T/pam/group" t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
t_wait_for 15 test -S "$VDI_ADMIN_SOCKET" || t_fail "vdid did not start: $(tail -5 "$T/vdid.log")"
port=$("$VDICTL" status --json | sed -n 's/^ *"rfb_port": \([0-9]*\),*$/\1/p')
ca=$T/state/tls/cert.pem
login() { VDI_TEST_PASSWORD=pw-$1 "$VNC" "127.0.0.1:$port" "$1" --ca "$ca" --hold 100 >>"$T/vnc.log" 2>&1; }
own() { "$VDICTL" desktops list --json | awk -v u="$1" '/"id":/ {gsub(/[^0-9]/,"",$2); id=$2} /"owner":/ && $2 == "\"" u "\"," {print id}'; }
boots() { # USER: the last boot count the user's desktop printed
    local d; d=$(own "$1")
    sed -n 's/^TESTDESK DATA disk=1 boots=\([0-9]*\)$/\1/p' "$T/state/desktops/$d/vmm.log" 2>/dev/null | tail -1
}
boots_is() { test "$(boots "$1")" = "$2"; }
# fresh USER: throw the user's desktop away (the system disk; the data disk stays) and log in again
fresh() {
    local d; d=$(own "$1")
    "$VDICTL" desktops destroy "$d" >/dev/null || t_fail "destroy $d failed"
    t_wait_for 10 bash -c '[ -z "$("$0" desktops list --json | grep "\"id\": $1,")" ]' "$VDICTL" "$d" ||
        t_fail "desktop $d did not go"
    login "$1" || t_fail "login $1 failed: $(tail -3 "$T/vnc.log")"
}

login alice || t_fail "alice's first login failed: $(tail -3 "$T/vnc.log")"
t_check "alice's data disk is made" test -f "$T/state/users/alice/data.qcow2"
t_check "her desktop sees it and counts its first boot" t_wait_for 5 boots_is alice 1
t_check "the disk is a sound qcow2 of the pool's size" bash -c 'qemu-img info -U "$1" | grep -q "virtual size: 64 MiB"' _ "$T/state/users/alice/data.qcow2"
t_check "vdid logs it" grep -q "with data disk $T/state/users/alice/data.qcow2 (new)" "$T/vdid.log"
login bob || t_fail "bob's login failed"
t_check "bob has a disk of his own" t_wait_for 5 boots_is bob 1
t_check "alice's count is hers alone" boots_is alice 1

# The data disk is never open in two VMMs: a second writer is refused by its lock.
out=$("$FAKE" --control "$T/x.sock" --disk "$T/state/users/alice/data.qcow2" 2>&1); rc=$?
t_check "a second VMM cannot open alice's disk while her desktop runs (exit $rc)" test "$rc" = 2
t_check "it says the disk is in use" grep -qi "in use\|resource temporarily unavailable" <<<"$out"

# A move to a new version: the system disk is new, the data disk the same.
printf 'banner Patched v2\n' >"$T/v2.run"
"$VDICTL" image patch testdesk --script "$T/v2.run" >/dev/null 2>&1 || t_fail "patch failed"
# A dedicated desktop moves at its next start (rollout.c): her VMM dies, the desktop keeps its
# disk (failed), and her next login starts it again, on a new system disk of version 2.
d=$(own alice)
kill -9 "$("$VDICTL" desktops show "$d" --json | sed -n 's/^ *"vmm_pid": \([0-9]*\),*$/\1/p')"
t_wait_for 10 bash -c '"$0" desktops show "$1" --json | grep -q "\"state\": \"failed\""' "$VDICTL" "$d" ||
    t_fail "alice's desktop did not fail"
login alice || t_fail "alice's login after the failure failed: $(tail -3 "$T/vnc.log")"
t_check "her desktop is started again (the same desktop)" test "$(own alice)" = "$d"
t_check "vdid says it moves to version 2 at this start" grep -q "desktop=$d moves from version 1 to 2 of image testdesk at this start" "$T/vdid.log"
t_check "alice's desktop is on version 2" t_wait_for 5 \
    bash -c '"$0" desktops show "$1" --json | grep -q "\"image_version\": 2"' "$VDICTL" "$(own alice)"
t_check "it no longer holds a reference on version 1" test ! -e "$T/state/images/testdesk/v1/refs/desktop-$d"
t_check "it shows the patch" t_wait_for 5 bash -c 'grep -q "TESTDESK BANNER Patched v2" "$0"' "$T/state/desktops/$(own alice)/vmm.log"
t_check "and her data disk's count goes on: 2" t_wait_for 5 boots_is alice 2
t_check "and the new system disk is a clone of version 2" \
    bash -c 'qemu-img info -U "$1" | grep -q "backing file: .*testdesk/v2/disk.qcow2"' _ "$T/state/desktops/$(own alice)/disk.qcow2"

# A rollback: back to version 1, the data disk still hers.
"$VDICTL" image set-current testdesk 1 >/dev/null || t_fail "set-current failed"
# vdid reads the current version every 2 s: the pool's rollout turns back (rollout.c).
t_check "the pool's rollout turns back to version 1" t_wait_for 10 \
    bash -c '"$0" image rollouts | grep -q "v1>v2 *rolling-back"' "$VDICTL"
fresh alice
t_check "after the rollback her desktop is on version 1" t_wait_for 5 \
    bash -c '"$0" desktops show "$1" --json | grep -q "\"image_version\": 1"' "$VDICTL" "$(own alice)"
t_check "and her count goes on: 3" t_wait_for 5 boots_is alice 3
t_check "bob's disk was not touched" test "$(boots bob)" = 1
for u in alice bob; do
    d=$(own $u)
    "$VDICTL" desktops destroy "$d" >/dev/null
    t_wait_for 10 bash -c '[ -z "$("$0" desktops list --json | grep "\"id\": $1,")" ]' "$VDICTL" "$d"
done
t_check "destroying the desktops keeps the data disks" \
    test -f "$T/state/users/alice/data.qcow2" -a -f "$T/state/users/bob/data.qcow2"
t_check "which pass qemu-img check" bash -c 'qemu-img check -q "$1" && qemu-img check -q "$2"' _ \
    "$T/state/users/alice/data.qcow2" "$T/state/users/bob/data.qcow2"
t_done
