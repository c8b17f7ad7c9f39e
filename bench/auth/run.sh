#!/usr/bin/env bash
# bench/auth/run.sh: full TLS server handshakes per second on loopback, vdi's TLS layer against
# OpenSSL's own server. Ours: auth_tls_accept() in tests/tools/auth_testserver (OpenSSL through
# memory BIOs on one libuv loop thread). Reference: `openssl s_server` (OpenSSL on its blocking
# socket, one thread). Same certificate (EC P-256), same client (`openssl s_time -new`, a new
# session each time), TLS 1.3 and TLS 1.2. Client and server share the machine's cores, so the
# absolute numbers mean little; the ratio says what our layer costs over bare OpenSSL.
set -euo pipefail
VDI_SRC=${VDI_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
VDI_BUILD=${VDI_BUILD:-$VDI_SRC/build/default}
secs=${VDI_BENCH_SECONDS:-5}
server=$VDI_BUILD/tests/tools/auth_testserver
[ -x "$server" ] || { echo "bench/auth: $server is not built (make bench builds it)"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vdi-bench-auth.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/state"

"$server" --state "$tmp/state" --port 0 --https-port 0 >"$tmp/ours.out" 2>"$tmp/ours.err" &
pids+=($!)
for _ in $(seq 50); do grep -q '^listening' "$tmp/ours.out" && break; sleep 0.1; done
ours_port=$(sed -n 's/^listening .*https=\([0-9]*\).*/\1/p' "$tmp/ours.out")
[ -n "$ours_port" ] || { echo "bench/auth: the test server did not start"; cat "$tmp/ours.err"; exit 1; }
cert=$tmp/state/tls/cert.pem key=$tmp/state/tls/key.pem

ref_port=$((20000 + RANDOM % 20000))
openssl s_server -accept "127.0.0.1:$ref_port" -cert "$cert" -key "$key" -quiet -www \
    </dev/null >"$tmp/ref.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$ref_port") 2>/dev/null && break
    sleep 0.1
done

# rate PORT VERSION-FLAG: full handshakes per wall-clock second.
rate() {
    local t0 t1 n
    t0=$(date +%s%N)
    n=$(openssl s_time -connect "127.0.0.1:$1" -new -time "$secs" "$2" 2>/dev/null |
        sed -n 's/^\([0-9]*\) connections in [0-9]* real seconds.*/\1/p')
    t1=$(date +%s%N)
    awk -v n="${n:-0}" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", n / (ns / 1e9) }'
}

printf '%-34s %12s %12s %8s\n' "TLS handshakes/s (loopback)" "vdi" "s_server" "ratio"
for v in -tls1_3 -tls1_2; do
    ours=$(rate "$ours_port" "$v")
    ref=$(rate "$ref_port" "$v")
    ratio=$(awk -v a="$ours" -v b="$ref" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    printf '%-34s %12s %12s %8s\n' "full handshake ${v#-}" "$ours" "$ref" "$ratio"
done
