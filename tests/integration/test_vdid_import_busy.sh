#!/usr/bin/env bash
# Nothing blocks vdid while `vdictl image import` copies a large image into the image its pool
# uses (issue 12): with the stand-in VMM (tests/tools/vdid_fakevmm.c) and real PAM (pam_wrapper +
# pam_matrix), while the import runs (a) the admin socket answers `vdictl status` within 1 s every
# time, (b) logins through the gateway reach their first frame within 1 s, and their floating
# desktops are recycled on disconnect (a catalogue unref), and (c) an admin recycle of a desktop
# of that image completes without freezing the admin socket. All of it must happen while the
# import is still copying (the image is sized from a measured import speed); the import then
# lands as a new version. On a catalogue whose import holds the image lock for the whole copy,
# the unref of a recycled desktop waits for it on vdid's loop and the checks fail. The import is
# then killed mid-copy: no half version shows, and the next catalogue open removes its leftovers.
# timeout: 240
. "$VDI_SRC/tests/lib.sh"
t_tmpdir
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
FAKE=$VDI_BUILD/tests/tools/vdid_fakevmm
VNC=$VDI_BUILD/tests/tools/vdid_vncclient
export VDI_ADMIN_SOCKET=$T/run/vdid.sock
LIMIT_MS=$((1000 * VDI_TEST_TIMEOUT_MULT))

t_require_pam_wrapper nss

kill_vmms() {
    t_kill_matching KILL "$FAKE .*--control $T/"
}
trap 'kill_vmms; t_cleanup' EXIT
now_ms() { date +%s%3N; }

# ---- a PAM and NSS world of our own
mkdir -p "$T/pam"
: >"$T/pam/passdb"
: >"$T/pam/passwd"
: >"$T/pam/group"
for i in $(seq 1 6); do
    echo "u$i:pw-u$i:vdi" >>"$T/pam/passdb"
    echo "u$i:x:$((4000 + i)):$((4000 + i)):u$i:/nonexistent:/bin/false" >>"$T/pam/passwd"
    echo "u$i:x:$((4000 + i)):" >>"$T/pam/group"
done
printf 'auth required %s passdb=%s\naccount required %s passdb=%s\n' \
    "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" >"$T/pam/vdi"

# ---- the pool's image (v1, small), and a big source for the import
t_import_fake_image
# How fast does an import run here? Size the big one to copy for about 20 s (sparse: it costs no
# disk but its holes are read and checked like data).
truncate -s 1G "$T/calib.raw"
printf 'calibration' | dd of="$T/calib.raw" bs=1M seek=512 conv=notrunc status=none
s=$(now_ms)
"$VDICTL" image import calib "$T/calib.raw" --state "$T/calib" -q >/dev/null || t_fail "calibration import failed"
per_gib=$(($(now_ms) - s + 1))
gib=$(((20000 + per_gib - 1) / per_gib))
[ "$gib" -lt 2 ] && gib=2
[ "$gib" -gt 64 ] && gib=64
rm -rf "$T/calib" "$T/calib.raw"
t_log "an import copies 1 GiB in ${per_gib} ms here: importing a ${gib} GiB image"
truncate -s "${gib}G" "$T/big.raw"
for i in 0 1 2 3; do # some data, spread out
    yes "vdi import data $i" | head -c 4M | dd of="$T/big.raw" bs=1M seek=$((i * gib * 256)) conv=notrunc status=none
done

cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = off
vmm = $FAKE
memory_budget = 4G
shutdown_timeout = 2

[auth]
max_checks_per_addr = 0

[pool lab]
image = testdesk
memory = 64M
min_spares = 2
max_desktops = 12
framebuffer = 336x200
users = u1, u2, u3, u4, u5, u6
disconnect_timeout = 1
CONF
LD_PRELOAD="$libdir/libpam_wrapper.so:$libdir/libnss_wrapper.so" PAM_WRAPPER=1 \
UID_WRAPPER_DISABLE_DEEPBIND=1 PAM_WRAPPER_DISABLE_DEEPBIND=1 NSS_WRAPPER_DISABLE_DEEPBIND=1 \
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
    PAM_WRAPPER_SERVICE_DIR="$T/pam" NSS_WRAPPER_PASSWD="$T/pam/passwd" \
    NSS_WRAPPER_GROUP="$T/pam/group" t_bg "$VDID" -c "$T/vdid.conf" 2>"$T/vdid.log"
vdid=$!
t_wait_for 15 test -S "$VDI_ADMIN_SOCKET" || t_fail "vdid did not start: $(tail -5 "$T/vdid.log")"
port=$("$VDICTL" status --json | sed -n 's/^ *"rfb_port": \([0-9]*\),*$/\1/p')
ca=$T/state/tls/cert.pem
count() { "$VDICTL" desktops list --json 2>/dev/null | grep -c "\"state\": \"$1\"" || true; }
count_at_least() { test "$(count "$1")" -ge "$2"; }
ids() { "$VDICTL" desktops list --json --state "$1" | sed -n 's/^ *"id": \([0-9]*\),$/\1/p'; }
state_of() { "$VDICTL" desktops show "$1" --json | sed -n 's/^ *"state": "\(.*\)",$/\1/p'; }
t_check "two spares become ready" t_wait_for 15 count_at_least ready 2

# ---- the import starts copying
t_bg "$VDICTL" image import testdesk "$T/big.raw" --state "$T/state" -q >"$T/import.out" 2>&1
imp=$!
imp_t0=$(now_ms)
copying() { compgen -G "$T/state/images/testdesk/.tmp-*" >/dev/null; }
t_check "the import is copying" t_wait_for 10 copying

# status_ok: `vdictl status` answers within LIMIT_MS (a frozen loop is cut off at 5 s)
worst_status=0
n_status=0
status_ok() {
    local s d
    s=$(now_ms)
    timeout 5 "$VDICTL" status >/dev/null 2>&1 || { echo "# vdictl status: no answer"; return 1; }
    d=$(($(now_ms) - s))
    n_status=$((n_status + 1))
    [ "$d" -gt "$worst_status" ] && worst_status=$d
    [ "$d" -le "$LIMIT_MS" ] || { echo "# vdictl status took ${d} ms"; return 1; }
}
# status_ok_for SECONDS: status answers in time, every 0.2 s, for that long
status_ok_for() {
    local end=$(($(now_ms) + $1 * 1000))
    while [ "$(now_ms)" -lt "$end" ]; do
        status_ok || return 1
        sleep 0.2
    done
}
# login_ok USER: a login through the gateway reaches its first frame within LIMIT_MS
worst_login=0
login_ok() {
    local out ms
    out=$(VDI_TEST_PASSWORD=pw-$1 timeout 10 "$VNC" "127.0.0.1:$port" "$1" --ca "$ca" --hold 100 2>>"$T/vnc.log") ||
        { echo "# login of $1 failed: $out"; return 1; }
    ms=$(sed -n 's/.*first_frame_ms=\([0-9]*\).*/\1/p' <<<"$out")
    [ -n "$ms" ] || { echo "# login of $1: no first frame ($out)"; return 1; }
    [ "$ms" -gt "$worst_login" ] && worst_login=$ms
    [ "$ms" -le "$LIMIT_MS" ] || { echo "# login of $1 took ${ms} ms to its first frame"; return 1; }
}

# (a) and (b): the admin socket and logins, while the copy runs; each login's desktop is
# recycled 1 s after its viewer leaves (floating pool), which drops its image reference.
t_check "status answers within ${LIMIT_MS} ms" status_ok
for u in u1 u2 u3; do
    t_check "$u logs in within ${LIMIT_MS} ms during the import" login_ok "$u"
    t_check "status still answers within ${LIMIT_MS} ms" status_ok
done
t_check "status answers in time while the logins' desktops are recycled" status_ok_for 2
recycled() { "$VDICTL" audit tail -n 200 | grep -c "from=recycling to=gone" || true; }
t_check "the logins' desktops were recycled meanwhile" test "$(recycled)" -ge 1

# (c): an admin recycle of a desktop of the image being imported
d=$(ids ready | head -n1)
t_check "a ready desktop to recycle" test -n "$d"
s=$(now_ms)
t_check "recycle answers" timeout 5 "$VDICTL" desktops recycle "$d" >/dev/null
t_check "recycle answered within ${LIMIT_MS} ms" test $(($(now_ms) - s)) -le "$LIMIT_MS"
froze=0
gone_or_frozen() { status_ok || { froze=1; return 0; }; test "$(state_of "$d")" = gone; }
t_check "the recycled desktop ends gone" t_wait_for 10 gone_or_frozen
t_check "status answered in time throughout" test "$froze" = 0
t_check "it is really gone" test "$(state_of "$d")" = gone
t_check "status keeps answering in time" status_ok_for 1
t_check "a login after the recycle works as quickly" login_ok u4

t_log "worst status ${worst_status} ms over ${n_status} calls, worst login ${worst_login} ms"
t_check "all of that happened while the import was still copying (it ran $(($(now_ms) - imp_t0)) ms so far)" \
    kill -0 "$imp"

# The import is killed mid-copy: no half version shows, and the next catalogue open (any
# `vdictl image` command) removes what it left; then a small import lands next to vdid.
kill -9 "$imp"
wait "$imp" 2>/dev/null
t_check "a killed import leaves no version" test ! -e "$T/state/images/testdesk/v2"
t_check "only its temporary directory" copying
out=$("$VDICTL" image list --state "$T/state")
t_check "the catalogue lists version 1 only ($out)" grep -q "^testdesk  *1  *1$" <<<"$out"
t_check "and that open removed the leftovers" bash -c '! compgen -G "$1/state/images/testdesk/.tmp-*"' _ "$T"
t_check "an import next to a running vdid lands as version 2" \
    "$VDICTL" image import testdesk "$T/disk.raw" --kernel "$T/kernel" --state "$T/state" -q
t_check "as version 2" "$VDICTL" image show testdesk@2 --state "$T/state"
t_check "vdid is alive and answers" status_ok
kill -TERM "$vdid"
wait "$vdid"
t_check "vdid stops cleanly" test $? = 0
kill_vmms
t_done
