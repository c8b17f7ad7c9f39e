#!/usr/bin/env bash
# bench/rollout/run.sh: central patching end to end through vdid (server/patch.c, rollout.c).
#   1. A pool of $BENCH_POOL (20) spares: the time from `vdictl image patch` to the whole pool on
#      the new version (the patch, then the rollout: a 10 % canary and 3 waves, each waiting
#      health_window = $BENCH_HEALTH_S (5) s). Reference, in the same run: a second pool of the
#      same size on a copy of the image, moved the way an image push does it (canary_percent =
#      100, one wave, health_window = 0: every desktop at once, no health gating): what the
#      safety costs is the ratio, and its floor is (1 + waves) health windows.
#   2. Login to first frame (libvncclient, VeNCrypt, PAM via pam_wrapper) for $BENCH_LOGINS (15)
#      users one after another, while a rollout runs and, as the reference, while none does.
#      Target (issue 15): no login waits longer during a rollout; the ratio is p95 / p95.
# Desktops are testdesk on vdi-vmm where /dev/kvm exists, else the stand-in VMM
# (tests/tools/vdid_fakevmm: vdid's own work only, the guest's boot is not in the figures); the
# output says which.
set -euo pipefail
src=${VDI_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${VDI_BIN:-$src/build/bin}
build=${VDI_BUILD:-$src/build/default}
pool=${BENCH_POOL:-20}
health=${BENCH_HEALTH_S:-5}
logins=${BENCH_LOGINS:-15}
vnc=$build/tests/tools/vdid_vncclient
fake=$build/tests/tools/vdid_fakevmm
for f in "$vnc" "$fake" "$bin/vdid" "$bin/vdictl"; do
    [ -e "$f" ] || { echo "bench/rollout: $f missing (make build-tests)"; exit 1; }
done
libdir=
for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib; do
    [ -f "$d/libpam_wrapper.so" ] && libdir=$d && break
done
[ -n "$libdir" ] && [ -f "$libdir/libnss_wrapper.so" ] || { echo "bench/rollout: pam_wrapper/nss_wrapper missing"; exit 1; }

T=$(mktemp -d /tmp/vdi-bench-rollout.XXXXXX)
vdid=
cleanup() {
    local p
    [ -n "$vdid" ] && kill "$vdid" 2>/dev/null
    for p in $(pgrep -f "(vdi-vmm|vdid_fakevmm) .*--control $T/" || true); do kill -9 "$p" 2>/dev/null || true; done
    [ -n "${BENCH_KEEP:-}" ] && cp "$T/vdid.log" "$BENCH_KEEP"/
    rm -rf "$T"
}
trap cleanup EXIT
export VDI_ADMIN_SOCKET=$T/run/vdid.sock VDI_STATE_DIR=$T/state
ctl() { "$bin/vdictl" "$@"; }

elf=$src/build/testdesk/testdesk.elf
disk=$src/build/testdesk/system.qcow2
if [ -c /dev/kvm ] && [ -e "$elf" ] && [ -e "$disk" ] && [ -z "${BENCH_FAKE:-}" ]; then
    vmm=$bin/vdi-vmm guest="testdesk on vdi-vmm (KVM)"
    for i in testdesk pushed; do ctl image import $i "$disk" --kernel "$elf" -q >/dev/null; done
else
    vmm=$fake guest="the stand-in VMM (no /dev/kvm here: vdid's own work, no guest boot)"
    truncate -s 8M "$T/disk.raw"
    echo "stand-in kernel" >"$T/kernel"
    for i in testdesk pushed; do ctl image import $i "$T/disk.raw" --kernel "$T/kernel" -q >/dev/null; done
fi

mkdir -p "$T/pam"
users=
for i in $(seq 1 $((2 * logins))); do
    echo "b$i:pw:vdi" >>"$T/pam/passdb"
    echo "b$i:x:$((6000 + i)):$((6000 + i)):b:/nonexistent:/bin/false" >>"$T/pam/passwd"
    echo "b$i:x:$((6000 + i)):" >>"$T/pam/group"
    users="$users${users:+, }b$i"
done
printf 'auth required %s passdb=%s\naccount required %s passdb=%s\n' \
    "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" >"$T/pam/vdi"
cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = off
vmm = $vmm
memory_budget = $(((4 * pool + 8) * 128))M
vmm_uid_first = 4500000
vmm_uid_count = $((6 * pool + 16))
log_level = ${BENCH_LOG_LEVEL:-info}
shutdown_timeout = 1
[auth]
max_checks_per_addr = 0
[pool bench]
image = testdesk
memory = 128M
min_spares = $pool
max_desktops = $((2 * pool + 4))
users = $users
disconnect_timeout = 0
canary_percent = 10
waves = 3
health_window = $health
[pool push]
image = pushed
memory = 128M
min_spares = $pool
max_desktops = $((2 * pool + 4))
users = nobody-logs-in-here
canary_percent = 100
waves = 1
health_window = 0
CONF
LD_PRELOAD="$libdir/libpam_wrapper.so:$libdir/libnss_wrapper.so" PAM_WRAPPER=1 \
    PAM_WRAPPER_SERVICE_DIR="$T/pam" NSS_WRAPPER_PASSWD="$T/pam/passwd" \
    NSS_WRAPPER_GROUP="$T/pam/group" "$bin/vdid" -c "$T/vdid.conf" 2>>"$T/vdid.log" &
vdid=$!
for _ in $(seq 100); do [ -S "$VDI_ADMIN_SOCKET" ] && break; sleep 0.1; done
port=$(ctl status --json | sed -n 's/^ *"rfb_port": \([0-9]*\),*$/\1/p')

now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%d", (b - a) * 1000}'; }
pct() { sort -n "$1" | awk -v p="$2" '{a[NR]=$1} END {r=int((p*NR+99)/100); if (r<1) r=1; print a[r]}'; }
on_version() { # on_version POOL VERSION: the pool's spares are all ready on VERSION, none else
    ctl desktops list --json --pool "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
n = int(sys.argv[2])
ok = sum(1 for x in d if not x["owner"] and x["state"] == "ready" and x["image_version"] == int(sys.argv[1]))
sys.exit(0 if ok >= n and all(x["image_version"] == int(sys.argv[1]) for x in d) else 1)' "$2" "$pool"
}
wait_pool_on() { # wait_pool_on POOL VERSION (10 min at most)
    for _ in $(seq 6000); do
        on_version "$1" "$2" && return 0
        sleep 0.1
    done
    echo "bench/rollout: pool $1 did not reach version $2; see $T/vdid.log" >&2
    tail -5 "$T/vdid.log" >&2
    exit 1
}
rollout_state() { # rollout_state POOL
    ctl image rollouts --pool "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0].get("state","-"))'
}
wait_done() { for _ in $(seq 6000); do [ "$(rollout_state "$1")" = done ] && return 0; sleep 0.1; done; return 1; }
patch() { # patch IMAGE TEXT: publish the image's next version
    printf 'banner %s\n' "$2" >"$T/run.txt"
    ctl image patch "$1" --script "$T/run.txt" >"$T/patch.out" 2>&1 ||
        { echo "bench/rollout: patch failed: $(tail -3 "$T/patch.out")" >&2; exit 1; }
}
one_login() { # one_login USER OUTFILE
    VDI_TEST_PASSWORD=pw "$vnc" "127.0.0.1:$port" "$1" --ca "$T/state/tls/cert.pem" --timeout 20000 |
        sed -n 's/.*first_frame_ms=\([0-9]*\).*/\1/p' >>"$2" || true
}

wait_pool_on bench 1
wait_pool_on push 1

# ---- 1. patch to whole pool: a rollout, and the push (reference)
patch pushed "Pushed v2"
r1=$(now)
wait_done push
wait_pool_on push 2
r2=$(now)
push_ms=$(ms "$r1" "$r2")
t0=$(now)
patch testdesk "Patched v2"
t1=$(now)
wait_done bench
wait_pool_on bench 2
t2=$(now)
patch_ms=$(ms "$t0" "$t1") rollout_ms=$(ms "$t1" "$t2") total_ms=$(ms "$t0" "$t2")

# ---- 2. logins: none running, then during a rollout
: >"$T/quiet"
for i in $(seq 1 "$logins"); do
    one_login "b$i" "$T/quiet"
    sleep 0.3
done
wait_pool_on bench 2
patch testdesk "Patched v3"
: >"$T/busy"
during=0
for i in $(seq $((logins + 1)) $((2 * logins))); do
    st=$(rollout_state bench)
    one_login "b$i" "$T/busy"
    [ "$st" = canary ] || [ "$st" = waves ] && during=$((during + 1))
    sleep 0.3
done
nq=$(wc -l <"$T/quiet") nb=$(wc -l <"$T/busy")
[ "$nq" = "$logins" ] && [ "$nb" = "$logins" ] ||
    { echo "bench/rollout: only $nq/$nb of $logins logins measured; see $T/vdid.log"; exit 1; }

echo "desktops: $guest; pool of $pool spares, canary 10 %, 3 waves, health_window ${health} s"
printf '%-46s %10s %10s %8s\n' "patch to whole pool" "vdi ms" "push ms" "ratio"
printf '%-46s %10s %10s %8s\n' "  image patch (maintenance VM, check, publish)" "$patch_ms" "-" "-"
printf '%-46s %10s %10s %8s\n' "  pool on the new version" "$rollout_ms" "$push_ms" \
    "$(awk -v a="$rollout_ms" -v b="$push_ms" 'BEGIN{printf "%.1f", a/(b?b:1)}')"
printf '%-46s %10s\n' "  floor of the health gating (4 windows)" "$((4 * health * 1000))"
printf '%-46s %10s\n' "  total, patch start to whole pool" "$total_ms"
printf '%-46s %10s %10s %8s\n' "login to first frame ($logins each)" "rollout" "none" "ratio"
for p in 50 95; do
    a=$(pct "$T/busy" $p) b=$(pct "$T/quiet" $p)
    printf '%-46s %10s %10s %8s\n' "  p$p ms" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", a/(b?b:1)}')"
done
a=$(sort -n "$T/busy" | tail -1) b=$(sort -n "$T/quiet" | tail -1)
printf '%-46s %10s %10s %8s\n' "  max ms" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", a/(b?b:1)}')"
echo "($during of the $logins logins ran while the rollout was in its canary or waves)"
echo "target: no login waits longer during a rollout (p95 ratio about 1)"
