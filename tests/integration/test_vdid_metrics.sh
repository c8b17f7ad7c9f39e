#!/usr/bin/env bash
# vdid's Prometheus endpoint (server/metrics.c, docs/metrics.md) with real peers: vdid, real PAM
# (pam_wrapper + pam_matrix), a real viewer (libvncclient) on the stand-in VMM, and Prometheus'
# own text-format parser (python3-prometheus-client). The exposition parses; the logon histogram
# moves with each login, in every phase; a wrong password counts as an auth failure; desktops are
# counted by pool, image version and state and sessions as they are; no user name appears; other
# paths and methods and malformed requests get errors; metrics_listen = off listens nowhere.
# timeout: 120
. "$VDI_SRC/tests/lib.sh"
t_tmpdir
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
FAKE=$VDI_BUILD/tests/tools/vdid_fakevmm
VNC=$VDI_BUILD/tests/tools/vdid_vncclient
export VDI_ADMIN_SOCKET=$T/run/vdid.sock VDI_STATE_DIR=$T/state
t_require_pam_wrapper nss
# Debian's package is for Debian's python3 (another python3 may come first in PATH).
PY=
for p in /usr/bin/python3 python3; do
    "$p" -c 'import prometheus_client' 2>/dev/null && PY=$p && break
done
[ -n "$PY" ] || t_need "python3-prometheus-client is missing (deploy/deps/broker.txt)"
trap 't_kill_matching KILL "$FAKE .*--control $T/"; t_cleanup' EXIT

mkdir -p "$T/pam"
printf 'alice:pw-alice:vdi\n' >"$T/pam/passdb"
printf 'alice:x:3001:3001:alice:/nonexistent:/bin/false\n' >"$T/pam/passwd"
printf 'alice:x:3001:\n' >"$T/pam/group"
printf 'auth required %s passdb=%s\naccount required %s passdb=%s\n' \
    "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" >"$T/pam/vdi"
truncate -s 8M "$T/disk.raw"
echo "not a kernel" >"$T/kernel"
"$VDICTL" image import testdesk "$T/disk.raw" --kernel "$T/kernel" -q >/dev/null || t_fail "import failed"

conf() {
    cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = off
metrics_listen = $1
vmm = $FAKE
memory_budget = 4G
vmm_uid_first = 4400000
vmm_uid_count = 32

[auth]
max_checks_per_addr = 0

[pool lab]
image = testdesk
memory = 64M
users = alice
min_spares = 1
disconnect_timeout = 60
CONF
}
start_vdid() {
    LD_PRELOAD="$libdir/libpam_wrapper.so:$libdir/libnss_wrapper.so" PAM_WRAPPER=1 \
    UID_WRAPPER_DISABLE_DEEPBIND=1 PAM_WRAPPER_DISABLE_DEEPBIND=1 NSS_WRAPPER_DISABLE_DEEPBIND=1 \
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
    PAM_WRAPPER_SERVICE_DIR="$T/pam" NSS_WRAPPER_PASSWD="$T/pam/passwd" \
    NSS_WRAPPER_GROUP="$T/pam/group" t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
    vdid=$!
    t_wait_for 15 test -S "$VDI_ADMIN_SOCKET" || t_fail "vdid did not start: $(tail -5 "$T/vdid.log")"
}
status_field() { "$VDICTL" status --json | sed -n "s/^ *\"$1\": \\([0-9]*\\),*\$/\\1/p"; }

conf 127.0.0.1:0
start_vdid
port=$(status_field rfb_port)
mport=$(status_field metrics_port)
t_check "vdictl status names the metrics port" test -n "$mport" -a "$mport" != 0
ca=$T/state/tls/cert.pem
t_wait_for 20 bash -c '"$0" desktops list --json --state ready | grep -q "\"id\":"' "$VDICTL" || t_fail "no spare became ready"

cat >"$T/q.py" <<'PY'
# q.py PORT EXPR: scrape, parse with Prometheus' own parser, print the value of EXPR: a sample
# name with optional labels, e.g. 'vdi_logon_duration_seconds_count{phase=total}'.
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
port, expr = sys.argv[1], sys.argv[2]
r = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=10)
assert r.status == 200, r.status
assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers["Content-Type"]
text = r.read().decode()
want = {}
name = expr
if "{" in expr:
    name, rest = expr.split("{", 1)
    for kv in rest.rstrip("}").split(","):
        k, v = kv.split("=", 1)
        want[k] = v
total = None
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in want.items()):
            total = (total or 0) + s.value
print("none" if total is None else ("%g" % total))
PY
q() { "$PY" "$T/q.py" "$mport" "$1"; }
export -f q # for the checks that run in bash -c
export T mport PY
t_check "the exposition parses with Prometheus' parser" bash -c 'q vdi_uptime_seconds >/dev/null'
t_check "no logon yet: the total histogram is empty" test "$(q 'vdi_logon_duration_seconds_count{phase=total}')" = 0
t_check "one ready spare of pool lab on version 1" test "$(q 'vdi_desktops{pool=lab,image_version=1,state=ready}')" = 1

VDI_TEST_PASSWORD=pw-alice "$VNC" "127.0.0.1:$port" alice --ca "$ca" --hold 300 >>"$T/vnc.log" 2>&1 || t_fail "login 1 failed: $(tail -3 "$T/vnc.log")"
t_check "the logon histogram moves with a login" t_wait_for 5 bash -c '[ "$(q "vdi_logon_duration_seconds_count{phase=total}")" = 1 ]'
for ph in auth desktop display; do
    t_check "... in its $ph phase" test "$(q "vdi_logon_duration_seconds_count{phase=$ph}")" = 1
done
t_check "the +Inf bucket holds it" test "$(q 'vdi_logon_duration_seconds_bucket{phase=total,le=+Inf}')" = 1
t_check "vdi_logons_total counts it" test "$(q vdi_logons_total)" = 1
t_check "its session is counted while it lasts, or has ended" bash -c 'v=$(q vdi_sessions); [ "$v" = 0 ] || [ "$v" = 1 ]'
VDI_TEST_PASSWORD=pw-alice "$VNC" "127.0.0.1:$port" alice --ca "$ca" --hold 300 >>"$T/vnc.log" 2>&1 || t_fail "login 2 failed"
t_check "and again with the next login" t_wait_for 5 bash -c '[ "$(q "vdi_logon_duration_seconds_count{phase=total}")" = 2 ]'
t_check "the sum of the total phase is at least that of the desktop phase" "$PY" - "$mport" <<'PY'
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
t = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1]).read().decode()
s = {x.labels["phase"]: x.value for f in text_string_to_metric_families(t) for x in f.samples if x.name == "vdi_logon_duration_seconds_sum"}
sys.exit(0 if s["total"] >= s["desktop"] and s["total"] >= s["auth"] else 1)
PY
before=$(q vdi_auth_failures_total)
VDI_TEST_PASSWORD=wrong "$VNC" "127.0.0.1:$port" alice --ca "$ca" >>"$T/vnc.log" 2>&1
t_check "a wrong password counts as an auth failure" t_wait_for 5 bash -c '[ "$(q vdi_auth_failures_total)" = "$(('"$before"' + 1))" ]'
t_check "the memory budget is reported in bytes" test "$(q vdi_memory_budget_bytes)" = 4.29497e+09
curl -s "http://127.0.0.1:$mport/metrics" >"$T/scrape.txt"
t_check "no user name appears in the figures" bash -c '! grep -q alice "$1"' _ "$T/scrape.txt"
t_check "another path: 404" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$mport/")" = 404
t_check "another method: 405" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$mport/metrics")" = 405
t_check "a malformed request: 400" bash -c 'printf "NOT HTTP\r\n\r\n" | timeout 5 python3 -c "
import socket,sys; s=socket.create_connection((\"127.0.0.1\", int(sys.argv[1]))); s.sendall(sys.stdin.buffer.read()); print(s.recv(100).decode().split(\"\r\n\")[0])" "$mport" | grep -q " 400 "'
t_check "vdid still answers after all that" bash -c 'q vdi_uptime_seconds >/dev/null'

kill -TERM "$vdid"
t_wait_for 10 bash -c '! kill -0 "$1" 2>/dev/null' _ "$vdid" || t_fail "vdid did not stop"
conf off
start_vdid
t_check "metrics_listen = off: no metrics port" test "$(status_field metrics_port)" = 0
t_check "and the log says so" grep -q "metrics endpoint off (metrics_listen = off)" "$T/vdid.log"
t_done
