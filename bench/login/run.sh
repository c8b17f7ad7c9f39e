#!/usr/bin/env bash
# bench/login/run.sh: login-to-first-frame through vdid, from the viewer's TCP connect to its
# first FramebufferUpdate (tests/tools/vdid_vncclient: libvncclient, VeNCrypt X509Plain, PAM via
# pam_wrapper + pam_matrix), p50/p95 over $BENCH_LOGINS (30) logins of different users:
#   spare: the pool keeps a ready spare (min_spares = 2), so a login finds a booted desktop;
#   cold:  no spares: each login clones the image (O(1) overlay) and boots testdesk.
# Reference, measured in the same run: the same viewer straight to a running vdi-vmm's display
# (RFB security None on TCP: no TLS, no PAM, no broker), the floor a gateway can approach.
# Targets (issue 8): p95 with a spare < 150 ms; cold p95 < 1 s.
set -euo pipefail
src=${VDI_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${VDI_BIN:-$src/build/bin}
build=${VDI_BUILD:-$src/build/default}
n=${BENCH_LOGINS:-30}
vnc=$build/tests/tools/vdid_vncclient
elf=$src/build/testdesk/testdesk.elf
disk=$src/build/testdesk/system.qcow2
for f in "$vnc" "$elf" "$disk" "$bin/vdid" "$bin/vdi-vmm"; do
    [ -e "$f" ] || { echo "bench/login: $f missing (make build-tests testdesk)"; exit 1; }
done
[ -c /dev/kvm ] || { echo "bench/login: /dev/kvm missing"; exit 1; }
libdir=
for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib; do
    [ -f "$d/libpam_wrapper.so" ] && libdir=$d && break
done
[ -n "$libdir" ] && [ -f "$libdir/libnss_wrapper.so" ] || { echo "bench/login: pam_wrapper/nss_wrapper missing"; exit 1; }

T=$(mktemp -d /tmp/vdi-bench-login.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in $(pgrep -f "vdi-vmm .*$T/" || true); do kill -9 "$p" 2>/dev/null || true; done
    [ -n "${BENCH_KEEP:-}" ] && cp "$T/vdid.log" "$T/spare.raw" "$T/cold.raw" "$BENCH_KEEP"/
    rm -rf "$T"
}
trap cleanup EXIT
export VDI_ADMIN_SOCKET=$T/run/vdid.sock

mkdir -p "$T/pam"
users=
for i in $(seq 1 "$n"); do
    echo "b$i:pw:vdi" >>"$T/pam/passdb"
    echo "b$i:x:$((6000 + i)):$((6000 + i)):b:/nonexistent:/bin/false" >>"$T/pam/passwd"
    echo "b$i:x:$((6000 + i)):" >>"$T/pam/group"
    users="$users${users:+, }b$i"
done
printf 'auth required %s passdb=%s\naccount required %s passdb=%s\n' \
    "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" >"$T/pam/vdi"
"$bin/vdictl" image import testdesk "$disk" --kernel "$elf" --state "$T/state" -q >/dev/null

# pct FILE P: the P-th percentile (nearest rank) of the numbers in FILE
pct() { sort -n "$1" | awk -v p="$2" '{a[NR]=$1} END {r=int((p*NR+99)/100); if (r<1) r=1; print a[r]}'; }

run_vdid() { # run_vdid MIN_SPARES
    rm -rf "$T/run"
    cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
vmm = $bin/vdi-vmm
log_level = ${BENCH_LOG_LEVEL:-warn}
shutdown_timeout = 1
[auth]
max_checks_per_addr = 0
[pool bench]
image = testdesk
memory = 128M
framebuffer = 1024x768
min_spares = $1
max_desktops = 40
users = $users
disconnect_timeout = 0
CONF
    LD_PRELOAD="$libdir/libpam_wrapper.so:$libdir/libnss_wrapper.so" PAM_WRAPPER=1 \
        PAM_WRAPPER_SERVICE_DIR="$T/pam" NSS_WRAPPER_PASSWD="$T/pam/passwd" \
        NSS_WRAPPER_GROUP="$T/pam/group" "$bin/vdid" -c "$T/vdid.conf" 2>>"$T/vdid.log" &
    vdid=$!
    pids+=("$vdid")
    for _ in $(seq 100); do [ -S "$VDI_ADMIN_SOCKET" ] && break; sleep 0.1; done
    port=$("$bin/vdictl" status --json | sed -n 's/^ *"rfb_port": \([0-9]*\),*$/\1/p')
}
stop_vdid() {
    local id
    for id in $("$bin/vdictl" desktops list --json | sed -n 's/^ *"id": \([0-9]*\),$/\1/p'); do
        "$bin/vdictl" desktops destroy "$id" >/dev/null 2>&1 || true
    done
    sleep 0.5
    kill "$vdid"; wait "$vdid" 2>/dev/null || true
}
ready_spares() { "$bin/vdictl" desktops list --json --state ready | grep -c '"owner": ""' || true; }
one_login() { # one_login USER OUTFILE
    VDI_TEST_PASSWORD=pw "$vnc" "127.0.0.1:$port" "$1" --ca "$T/state/tls/cert.pem" --timeout 20000 |
        tee -a "$2.raw" | sed -n 's/.*first_frame_ms=\([0-9]*\).*/\1/p' >>"$2" || true
}

# ---- with a spare
run_vdid 2
: >"$T/spare"
for i in $(seq 1 "$n"); do
    # both spares ready: no boot competing for the CPU with this login
    for _ in $(seq 200); do [ "$(ready_spares)" -ge 2 ] && break; sleep 0.05; done
    one_login "b$i" "$T/spare"
done
stop_vdid

# ---- cold
run_vdid 0
: >"$T/cold"
for i in $(seq 1 "$n"); do
    one_login "b$i" "$T/cold"
    sleep 0.2 # let the recycled desktop go
done
stop_vdid

# ---- reference: straight to a running VMM's display
rport=$((20000 + RANDOM % 20000))
"$bin/vdi-vmm" --kernel "$elf" --mem 128M --fb 1024x768 --serial-log /dev/null \
    --display-tcp "127.0.0.1:$rport" --control "$T/ref.ctl" >"$T/ref.log" 2>&1 &
pids+=($!)
sleep 1
: >"$T/ref"
for i in $(seq 1 "$n"); do
    "$vnc" "127.0.0.1:$rport" x --timeout 20000 | sed -n 's/.*first_frame_ms=\([0-9]*\).*/\1/p' >>"$T/ref"
done

got_s=$(wc -l <"$T/spare") got_c=$(wc -l <"$T/cold") got_r=$(wc -l <"$T/ref")
[ "$got_s" = "$n" ] && [ "$got_c" = "$n" ] && [ "$got_r" = "$n" ] ||
    { echo "bench/login: only $got_s/$got_c/$got_r of $n logins measured; see $T/vdid.log"; tail "$T/vdid.log"; exit 1; }
rp50=$(pct "$T/ref" 50) rp95=$(pct "$T/ref" 95)
printf '%-28s %8s %8s   %s\n' "login to first frame ($n)" "p50 ms" "p95 ms" "vs direct display (p50, p95)"
for k in spare cold; do
    p50=$(pct "$T/$k" 50) p95=$(pct "$T/$k" 95)
    printf '%-28s %8s %8s   %sx, %sx\n' "vdid, $k" "$p50" "$p95" \
        "$(awk -v a="$p50" -v b="$rp50" 'BEGIN{printf "%.1f", a/(b?b:1)}')" \
        "$(awk -v a="$p95" -v b="$rp95" 'BEGIN{printf "%.1f", a/(b?b:1)}')"
done
printf '%-28s %8s %8s\n' "direct display (reference)" "$rp50" "$rp95"
echo "targets: spare p95 < 150 ms, cold p95 < 1000 ms"
