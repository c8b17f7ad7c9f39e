#!/usr/bin/env bash
# Floods before and after login, on loopback only, bounded in count and time
# (tests/integration/flood_client.py is the client): idle connections beyond preauth_max_per_addr
# from one address are closed at once on both listeners while another address (127.0.0.2; all of
# 127/8 is loopback) still gets its TLS handshake and logs in; preauth_max caps all addresses
# together; a logged-in viewer (the stand-in VMM) keeps getting frames while one address opens
# connections as fast as it can; a pipelined burst of wrong logins for a locked-out user gets one
# 429 per connection (then the connection is closed) and a bounded number of audit rows, one of
# them counting the repeats; a user name that is not UTF-8 shows up escaped in `vdictl audit` and
# in the portal's admin API.
# timeout: 180
. "$VDI_SRC/tests/lib.sh"
t_tmpdir
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
FAKE=$VDI_BUILD/tests/tools/vdid_fakevmm
VNC=$VDI_BUILD/tests/tools/vdid_vncclient
FC="python3 $VDI_SRC/tests/integration/flood_client.py"
export VDI_ADMIN_SOCKET=$T/run/vdid.sock

command -v curl >/dev/null || t_need "curl is missing (deploy/deps)"
command -v python3 >/dev/null || t_need "python3 is missing"
t_require_pam_wrapper nss
kill_vmms() {
    t_kill_matching KILL "$FAKE .*--control $T/"
}
trap 'kill_vmms; [ -n "${KEEP:-}" ] && cp -r "$T" "$KEEP"; t_cleanup' EXIT

mkdir -p "$T/pam"
: >"$T/pam/passdb"; : >"$T/pam/passwd"
printf 'vdi:x:2000:root2\n' >"$T/pam/group"
add_user() { # name uid
    echo "$1:pw-$1:vdi" >>"$T/pam/passdb"
    echo "$1:x:$2:$2:$1:/nonexistent:/bin/false" >>"$T/pam/passwd"
    echo "$1:x:$2:" >>"$T/pam/group"
}
add_user alice 3001; add_user bob 3002; add_user carol 3003; add_user root2 3004; add_user mallory 3005
printf 'auth required %s passdb=%s\naccount required %s passdb=%s\n' \
    "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" >"$T/pam/vdi"

t_import_fake_image

# Small caps so that the floods stay small: 8 connections before login per address, 20 in all.
# A user is locked out at the third failure, without backoff; addresses are never locked out
# (every client here is on loopback).
cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = 127.0.0.1:0
vmm = $FAKE
memory_budget = 4G
preauth_max = 20
preauth_max_per_addr = 8
audit_coalesce = 10

[auth]
max_checks_per_addr = 0
user_free_failures = 100
user_lockout_failures = 3
addr_free_failures = 1000
addr_lockout_failures = 100000

[pool lab]
image = testdesk
memory = 64M
max_desktops = 4
framebuffer = 320x240
users = alice, bob, carol
disconnect_timeout = 30
CONF

LD_PRELOAD="$libdir/libpam_wrapper.so:$libdir/libnss_wrapper.so" PAM_WRAPPER=1 \
UID_WRAPPER_DISABLE_DEEPBIND=1 PAM_WRAPPER_DISABLE_DEEPBIND=1 NSS_WRAPPER_DISABLE_DEEPBIND=1 \
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
PAM_WRAPPER_SERVICE_DIR="$T/pam" NSS_WRAPPER_PASSWD="$T/pam/passwd" \
NSS_WRAPPER_GROUP="$T/pam/group" t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
vdid=$!
t_wait_for 15 grep -q 'web portal listening' "$T/vdid.log" || t_fail "vdid did not start: $(tail -5 "$T/vdid.log")"
t_wait_for 15 test -S "$VDI_ADMIN_SOCKET" || t_fail "vdid did not start: $(tail -5 "$T/vdid.log")"
wport=$(sed -n 's/.*web portal listening on .* port \([0-9]*\).*/\1/p' "$T/vdid.log" | tail -n1)
rport=$(sed -n 's/.*RFB gateway listening on .* port \([0-9]*\).*/\1/p' "$T/vdid.log" | tail -n1)
ca=$T/state/tls/cert.pem
B=https://localhost:$wport
c() { curl -sS --cacert "$ca" --connect-to "localhost:$wport:127.0.0.1:$wport" --max-time 20 "$@"; }
web_login() { # web_login USER SRC -> HTTP status; cookie and CSRF token kept for admin calls
    c --interface "$2" -c "$T/jar-$1" -o "$T/login-$1.json" -w '%{http_code}' -H "Origin: $B" \
        -H 'Content-Type: application/json' --data "{\"username\":\"$1\",\"password\":\"pw-$1\"}" "$B/api/login"
}
rfb_login() { # rfb_login USER PASSWORD SRC -> exit status of the client (0 logged in)
    $FC rfb-login 127.0.0.1 "$rport" "$(printf '%s' "$1" | od -An -tx1 | tr -d ' \n')" "$2" --ca "$ca" --src "$3" 2>>"$T/fc.log"
}
status_field() { "$VDICTL" status --json | python3 -c "import json,sys; print(json.load(sys.stdin)['preauth']['$1']['$2'])"; }
nothing_open() { test "$(status_field rfb open)" = 0 && test "$(status_field web open)" = 0; }

# ---- one address beyond its cap: the excess is closed at once, on both listeners
$FC idle 127.0.0.1 "$rport" 12 --hold 6 >"$T/idle-rfb.out" &
idle_rfb=$!
$FC idle 127.0.0.1 "$wport" 12 --hold 6 >"$T/idle-web.out" &
idle_web=$!
t_wait_for 10 test -s "$T/idle-rfb.out" || t_fail "the idle client (RFB) said nothing"
t_wait_for 10 test -s "$T/idle-web.out" || t_fail "the idle client (web) said nothing"
t_check "RFB: 8 idle connections from 127.0.0.1 held, 4 closed at once ($(cat "$T/idle-rfb.out"))" \
    grep -qx 'held=8 closed=4' "$T/idle-rfb.out"
t_check "web: 8 idle connections from 127.0.0.1 held, 4 closed at once ($(cat "$T/idle-web.out"))" \
    grep -qx 'held=8 closed=4' "$T/idle-web.out"
t_check "another address still logs in over RFB" rfb_login bob pw-bob 127.0.0.2
t_check "and over the web portal" test "$(web_login carol 127.0.0.2)" = 200
t_check "the refusals are counted (RFB)" test "$(status_field rfb refused_per_addr)" -ge 4
t_check "the refusals are counted (web)" test "$(status_field web refused_per_addr)" -ge 4
t_check "and logged" grep -q 'listener=rfb peer=127.0.0.1 refused before TLS' "$T/vdid.log"

# ---- all addresses together: 8 + 8 + 4 = 20 held, the 21st is closed whatever its address
wait "$idle_rfb" "$idle_web"
t_wait_for 15 nothing_open || t_fail "RFB connections still held before login"
$FC idle 127.0.0.1 "$rport" 8 --src 127.0.0.3 --hold 3 >"$T/idle3.out" &
i3=$!
$FC idle 127.0.0.1 "$rport" 8 --src 127.0.0.4 --hold 3 >"$T/idle4.out" &
i4=$!
$FC idle 127.0.0.1 "$rport" 4 --src 127.0.0.6 --hold 3 >"$T/idle6.out" &
i6=$!
t_wait_for 10 bash -c 'test -s "$1" && test -s "$2" && test -s "$3"' _ "$T/idle3.out" "$T/idle4.out" "$T/idle6.out" ||
    t_fail "the idle clients said nothing"
$FC idle 127.0.0.1 "$rport" 2 --src 127.0.0.5 >"$T/idle5.out"
t_check "up to preauth_max the others are held ($(cat "$T/idle3.out" "$T/idle4.out" "$T/idle6.out" | tr '\n' ' '))" \
    bash -c 'grep -qx "held=8 closed=0" "$1" && grep -qx "held=8 closed=0" "$2" && grep -qx "held=4 closed=0" "$3"' \
    _ "$T/idle3.out" "$T/idle4.out" "$T/idle6.out"
t_check "beyond it a new address is closed at once too ($(cat "$T/idle5.out"))" grep -qx 'held=0 closed=2' "$T/idle5.out"
t_check "counted as refused in all" test "$(status_field rfb refused_total)" -ge 2
wait "$i3" "$i4" "$i6"
t_check "once they are gone nothing is held" t_wait_for 10 nothing_open

# ---- a viewer watches its screen while one address opens connections as fast as it can, on
# both listeners
VDI_TEST_PASSWORD=pw-alice "$VNC" "127.0.0.1:$rport" alice --ca "$ca" --watch 5000 --timeout 20000 \
    >"$T/viewer.out" 2>>"$T/vnc.log" &
viewer=$!
_t_pids+=($viewer)
t_wait_for 20 bash -c '"$1" sessions list | grep -q alice' _ "$VDICTL" || t_fail "the viewer did not log in: $(cat "$T/viewer.out")"
$FC flood 127.0.0.1 "$rport" --secs 4 >"$T/flood-rfb.out" &
f1=$!
$FC flood 127.0.0.1 "$wport" --secs 4 >"$T/flood-web.out" &
f2=$!
wait "$f1" "$f2"
t_log "flood: rfb $(cat "$T/flood-rfb.out"), web $(cat "$T/flood-web.out")"
t_check "the flood never held more than the cap" \
    bash -c 'grep -q "held=[0-8]$" "$1" && grep -q "held=[0-8]$" "$2"' _ "$T/flood-rfb.out" "$T/flood-web.out"
wait "$viewer"
t_log "viewer: $(cat "$T/viewer.out")"
frames=$(sed -n 's/.* frames=\([0-9]*\).*/\1/p' "$T/viewer.out")
gap=$(sed -n 's/.* max_gap_ms=\([0-9]*\).*/\1/p' "$T/viewer.out")
t_check "the viewer kept getting frames during the floods ($frames)" test "${frames:-0}" -ge 50
t_check "never waiting long for one (longest gap ${gap:-?} ms)" test "${gap:-99999}" -lt 2000
# What one TLS handshake costs vdid's loop (its only busy thread here): CPU time over 500.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$vdid/stat"; }
hz=$(getconf CLK_TCK)
c0=$(cpu_ticks)
hs=$($FC tls 127.0.0.1 "$wport" --ca "$ca" --count 500)
c1=$(cpu_ticks)
t_log "TLS handshakes on the web listener, one after another: $hs; vdid CPU per handshake (accept to close): $(awk -v d=$((c1 - c0)) -v hz="$hz" 'BEGIN { printf "%.2f ms", d * 1000 / hz / 500 }')"

# ---- a locked-out user's pipelined burst: one 429 per connection, a bounded audit log
for i in 1 2 3; do
    code=$(c -o /dev/null -w '%{http_code}' -H "Origin: $B" -H 'Content-Type: application/json' \
        --data '{"username":"mallory","password":"wrong"}' "$B/api/login")
    [ "$code" = 401 ] || t_fail "wrong login $i: HTTP $code, expected 401"
done
$FC pipeline 127.0.0.1 "$wport" mallory wrong --ca "$ca" --count 200 --conns 10 >"$T/pipeline.out"
t_check "each connection got one answer, a 429, and was closed ($(sort "$T/pipeline.out" | uniq -c | tr '\n' ' '))" \
    test "$(grep -cx 'responses=1 statuses=429' "$T/pipeline.out")" = 10
rows() { "$VDICTL" audit -n 10000 | grep -c "user=mallory" || true; }
t_check "the audit log has a bounded number of rows for it: $("$VDICTL" audit -n 10000 | grep "user=mallory" | cut -c21-)" \
    test "$(rows)" -le 4
t_check "the refusals are counted in one row" \
    t_wait_for 30 bash -c '"$1" audit -n 10000 | grep -q "auth.locked .*user=mallory .*(repeated 10 times in 10 s)"' _ "$VDICTL"

# ---- a user name that is not UTF-8: escaped, not dropped
rfb_login $'\xff\xfe''eve' wrong 127.0.0.2
t_check "the login with a non-UTF-8 user name was refused" test $? = 3
t_check "vdictl audit shows it escaped" \
    bash -c '"$1" audit -n 100 | grep -q "auth.failed .*user=\\\\xff\\\\xfeeve "' _ "$VDICTL"
t_check "the admin logs in to the portal" test "$(web_login root2 127.0.0.1)" = 200
csrf=$(sed -n 's/.*"csrf":"\([^"]*\)".*/\1/p' "$T/login-root2.json")
c -b "$T/jar-root2" -H "Origin: $B" -H 'Content-Type: application/json' -H "X-CSRF-Token: $csrf" \
    --data '{"n":100}' "$B/api/admin/audit.tail" >"$T/admin-audit.json"
t_check "the admin API's JSON has it escaped" \
    python3 -c 'import json,sys; rows=json.load(open(sys.argv[1]))["result"]; sys.exit(not any(r["user"] == "\\xff\\xfeeve" and r.get("escaped") == ["user"] for r in rows))' "$T/admin-audit.json"

kill -TERM "$vdid"; wait "$vdid"
t_done
