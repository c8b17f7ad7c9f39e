#!/usr/bin/env bash
# bench/jail/run.sh: what the VMM jail (server/jail.c: namespaces, a new root, uid change,
# seccomp) adds to a desktop's start. Two figures, each next to its reference from the same run:
#  1. exec of a program through vdi-jail (the same kind of spec vdid uses: /usr, devices, /proc, the
#     program bound read-only) against exec of the same program unconfined, $BENCH_EXECS (50)
#     times each: the jail's own cost, p50/p95;
#  2. through vdid, $BENCH_STARTS (20) desktops started one after the other with the stand-in
#     VMM (ready at once): spawn to ready from vdid's log, jail = yes against jail = no. This one
#     includes vdid's control-socket connect (first try 50 ms after spawn, on a 100 ms tick).
# Needs root (the jail does).
set -euo pipefail
src=${VDI_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${VDI_BIN:-$src/build/bin}
build=${VDI_BUILD:-$src/build/default}
n=${BENCH_STARTS:-20}
fake=$build/tests/tools/vdid_fakevmm
[ -x "$fake" ] || { echo "bench/jail: $fake missing (make build-tests)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench/jail: needs root"; exit 1; }
T=$(mktemp -d /tmp/vdi-bench-jail.XXXXXX)
vdid=
cleanup() {
    [ -n "$vdid" ] && kill "$vdid" 2>/dev/null && wait "$vdid" 2>/dev/null
    for p in $(pgrep -f "vdid_fakevmm .*$T/" || true); do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT
export VDI_ADMIN_SOCKET=$T/run/vdid.sock FAKEVMM_READY_MS=0
truncate -s 1M "$T/disk.raw"
echo "not a kernel" >"$T/kernel"
"$bin/vdictl" image import testdesk "$T/disk.raw" --kernel "$T/kernel" --state "$T/state" -q >/dev/null 2>&1

ready_id() { "$bin/vdictl" desktops list --json --state ready 2>/dev/null | sed -n 's/^ *"id": \([0-9]*\),$/\1/p' | head -n1; }

# run JAIL: start $n desktops in turn; prints one start-to-ready time (ms) per desktop
run() {
    rm -rf "$T/state/vdi.db"* "$T/state/desktops" "$T/run"
    cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = off
vmm = $fake
jail = $1
vmm_env = FAKEVMM_READY_MS
log_level = info
[pool lab]
image = testdesk
memory = 64M
min_spares = 1
CONF
    "$bin/vdid" -c "$T/vdid.conf" 2>"$T/vdid-$1.log" &
    vdid=$!
    local i id
    for i in $(seq 1 "$n"); do
        for _ in $(seq 1 500); do id=$(ready_id); [ -n "$id" ] && break; sleep 0.01; done
        [ -n "$id" ] || { echo "bench/jail: no desktop got ready" >&2; exit 1; }
        "$bin/vdictl" desktops destroy "$id" >/dev/null
        for _ in $(seq 1 500); do [ "$(ready_id)" != "$id" ] && break; sleep 0.01; done
    done
    kill "$vdid"; wait "$vdid" || true; vdid=
    # desktop=N ... vmm pid=P ... started  /  desktop=N ... provisioning -> ready
    awk '
        function ms(t) { split(substr(t, 12, 12), a, ":"); return (a[1] * 3600 + a[2] * 60 + a[3]) * 1000 }
        / vmm pid=[0-9]+ .*started/ { match($0, /desktop=[0-9]+/); d = substr($0, RSTART + 8, RLENGTH - 8); s[d] = ms($1) }
        /provisioning -> ready/ { match($0, /desktop=[0-9]+/); d = substr($0, RSTART + 8, RLENGTH - 8); if (d in s) printf "%.1f\n", ms($1) - s[d] }
    ' "$T/vdid-$1.log" | head -n "$n"
}
# ---- 1: the jail's own cost
mkdir -p "$T/stage" "$T/rw"
python3 - "$bin/vdi-jail" "$T" "${BENCH_EXECS:-50}" <<'PY'
import subprocess, sys, time
vdid, t, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
prog = "/usr/bin/true"
jail = [vdid, "--uid", "4190000", "--gid", "4190000", "--kvm-gid", "0", "--stage",
        t + "/stage", "--seccomp", "kill", "--ro", prog, "--rw", t + "/rw", "--", prog]
def times(cmd):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        out.append((time.perf_counter() - t0) * 1e3)
    out.sort()
    return out[len(out) // 2], out[min(len(out) - 1, int(len(out) * 0.95))]
d, j = times([prog]), times(jail)
print("exec of %s, %d times (ms)           p50      p95" % (prog, n))
print("  unconfined (reference)             %7.2f  %7.2f" % d)
print("  through vdi-jail                   %7.2f  %7.2f" % j)
print("  the jail adds                      %7.2f  %7.2f" % (j[0] - d[0], j[1] - d[1]))
PY

# ---- 2: through vdid
pct() { grep . | sort -n | awk -v p="$1" '{v[NR] = $1} END { i = int((NR - 1) * p / 100) + 1; print v[i] }'; }
ref=$(run no)
jail=$(run yes)
r50=$(pct 50 <<<"$ref") r95=$(pct 95 <<<"$ref") j50=$(pct 50 <<<"$jail") j95=$(pct 95 <<<"$jail")
printf 'spawn to ready, %s desktops each (ms)    p50      p95\n' "$n"
printf '  jail = no  (reference)             %7s  %7s\n' "$r50" "$r95"
printf '  jail = yes                         %7s  %7s\n' "$j50" "$j95"
awk -v a="$j50" -v b="$r50" -v c="$j95" -v d="$r95" 'BEGIN { printf "  difference                         %7.1f  %7.1f\n", a - b, c - d }'
