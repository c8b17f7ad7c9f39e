#!/usr/bin/env bash
# `vdictl image patch --network POOL` (server/patch.c, server/net.c; docs/images.md, "A patch
# with a network"), in network namespaces of the test's own: vdid's "host" namespace with a nat
# pool, and an "uplink" namespace with a UDP file server standing in for a package mirror. The
# maintenance VM is vdid's stand-in VMM running testdesk's patch agent, whose `fetch` uses the
# test guest's network stack on the tap vdid hands it, so the host side is real: the tap on the
# pool's bridge, its nftables rules, vdid's dnsmasq and NAT.
#   - a patch with --network gets a lease from the pool's dnsmasq (an address no desktop has),
#     fetches a file through NAT, and the file is in the version it publishes;
#   - its port is gone afterwards: tap, rules, DHCP entry;
#   - a pool without a network and a pool that does not exist are refused;
#   - without --network the maintenance VM has no NIC and the fetch fails.
# timeout: 120
. "$VDI_SRC/tests/lib.sh"
t_require_root
t_tmpdir
command -v ip >/dev/null || t_need "ip (iproute2) is missing"
command -v nft >/dev/null || t_need "nft (nftables) is missing"
[ -x /usr/sbin/dnsmasq ] || t_need "dnsmasq (dnsmasq-base) is missing"
command -v python3 >/dev/null || t_need "python3 is missing"
[ -c /dev/net/tun ] || t_need "/dev/net/tun is missing"
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
FAKE=$VDI_BUILD/tests/tools/vdid_fakevmm
export VDI_ADMIN_SOCKET=$T/run/vdid.sock VDI_STATE_DIR=$T/state
H=vdiph$$ UP=vdipu$$
chmod 755 "$T" # dnsmasq, as nobody, reads its hosts under run_dir

cleanup() {
    if [ -n "${VDI_TEST_DEBUG:-}" ]; then
        tail -n 40 "$T"/vdid.log "$T"/state/patches/*/vmm.log >&2 2>/dev/null
        ip netns exec "$H" nft list ruleset >&2
    fi
    # vdid first: it would start VMMs for its spares while they are being stopped.
    [ -n "${vdid:-}" ] && kill -KILL "$vdid" 2>/dev/null && sleep 0.2
    t_kill_matching KILL "$FAKE .*--control $T/"
    t_kill_matching TERM "dnsmasq .*$T/"
    ip netns del "$H" 2>/dev/null
    ip netns del "$UP" 2>/dev/null
    t_cleanup
}
trap cleanup EXIT
inh() { ip netns exec "$H" "$@"; }
# nsenter, not `ip netns exec`, which mounts a sysfs of its own and hides /sys/fs/cgroup.
vdid_in() { nsenter --net="/run/netns/$H" "$@"; }

ip netns add "$H" && ip netns add "$UP" || t_fail "cannot make namespaces"
inh ip link set lo up
ip -n "$UP" link set lo up
inh ip link add up0 type veth peer name up1 netns "$UP"
inh ip addr add 10.99.0.1/24 dev up0
inh ip link set up0 up
ip -n "$UP" addr add 10.99.0.2/24 dev up1
ip -n "$UP" link set up1 up
ip -n "$UP" route add default via 10.99.0.1

# The mirror: answers "GET NAME" with the file's bytes (empty: no such file), logs who asked.
cat >"$T/mirror.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 6969))
files = {"pkg": b"openssl 3.0.15-1~deb12u1 from the mirror\n"}
while True:
    data, peer = s.recvfrom(2048)
    name = data.decode(errors="replace").strip()[4:] if data.startswith(b"GET ") else ""
    with open(sys.argv[1], "a") as log:
        log.write("%s asked for %s\n" % (peer[0], name))
    s.sendto(files.get(name, b""), peer)
PY
t_bg ip netns exec "$UP" python3 "$T/mirror.py" "$T/mirror.log"
t_check "the mirror listens" t_wait_for 10 bash -c 'ip netns exec "$1" ss -lun | grep -q ":6969 "' _ "$UP"

# An image whose disk is big enough for testdesk's data area (4 MiB + 64 KiB).
truncate -s 8M "$T/disk.raw"
echo "not a kernel" >"$T/kernel"
"$VDICTL" image import testdesk "$T/disk.raw" --kernel "$T/kernel" -q >/dev/null || t_fail "import failed"
cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = off
vmm = $FAKE
memory_budget = 2G
vmm_uid_first = 4200000
vmm_uid_count = 16
vmm_memory_overhead = 16M
nat_uplink = up0
log_level = debug

[pool lab]
image = testdesk
memory = 32M
min_spares = 1
network = nat

[pool plain]
image = testdesk
memory = 32M
min_spares = 0
CONF
t_bg nsenter --net="/run/netns/$H" "$VDID" -c "$T/vdid.conf" 2>"$T/vdid.log"
vdid=$!
ids() { "$VDICTL" desktops list --json --state "$1" 2>/dev/null | sed -n 's/^ *"id": \([0-9]*\),$/\1/p'; }
ready_one() { [ -n "$(ids ready)" ]; }
t_check "a spare with a network is ready" t_wait_for 20 ready_one
spare=$(ids ready)
spare_ip=$("$VDICTL" desktops show "$spare" --json | sed -n 's/^ *"ip": "\([^"]*\)",\{0,1\}$/\1/p')
t_log "spare $spare has $spare_ip"
current() { "$VDICTL" image list --json | python3 -c 'import json,sys; print([i["current"] for i in json.load(sys.stdin) if i["name"]=="testdesk"][0])'; }

# ---- refused: a pool without a network, a pool that does not exist
printf 'fetch 10.99.0.2 6969 pkg\n' >"$T/fetch.run"
out=$("$VDICTL" image patch testdesk --script "$T/fetch.run" --network plain 2>&1); rc=$?
t_check "--network on a pool without a network is refused" test "$rc" = 1
t_check "saying why" grep -q "network plain: that pool has no network (network = none)" <<<"$out"
out=$("$VDICTL" image patch testdesk --script "$T/fetch.run" --network nosuch 2>&1)
t_check "--network on a pool that does not exist is refused" grep -q "network nosuch: no such pool" <<<"$out"
t_check "neither started a patch" bash -c '"$1" image patches | grep -q "^no patches"' _ "$VDICTL"

# ---- without --network: no NIC, the fetch fails
out=$("$VDICTL" image patch testdesk --script "$T/fetch.run" 2>&1); rc=$?
echo "$out" | sed 's/^/# /'
t_check "a patch that needs the network fails without --network" test "$rc" = 1
t_check "its agent says there is no network" grep -q "no network in this machine for fetch of pkg" <<<"$out"
t_check "nothing reached the mirror" test ! -s "$T/mirror.log"
t_check "still version 1" test "$(current)" = 1

# ---- with --network lab
printf '#!testdesk-patch\necho updating from the mirror\nfetch 10.99.0.2 6969 pkg\nbanner Patched from the network\n' >"$T/fetch.run"
out=$("$VDICTL" image patch testdesk --script "$T/fetch.run" --network lab 2>&1); rc=$?
echo "$out" | sed 's/^/# /'
t_check "a patch with --network lab is published" test "$rc" = 0
t_check "its agent fetched the file" grep -qF "patch: fetched pkg from 10.99.0.2 (41 bytes)" <<<"$out"
t_check "version 2 is current" test "$(current)" = 2
show=$("$VDICTL" image patches p2)
echo "$show" | head -n 3 | sed 's/^/# /'
mac=$(sed -n 's/.*network lab (\([0-9a-f:]*\) .*/\1/p' <<<"$show" | head -n1)
addr=$(sed -n 's/.*network lab ([0-9a-f:]* \([0-9.]*\)).*/\1/p' <<<"$show" | head -n1)
t_check "vdictl image patches shows its network, MAC ($mac) and address ($addr)" test -n "$mac" -a -n "$addr"
t_check "a MAC from vdi's locally administered range" test "${mac:0:9}" = "02:76:64:"
t_check "an address that is not the spare's" test "$addr" != "$spare_ip"
t_check "the mirror saw the request from the pool's NAT (the uplink address)" grep -q "^10.99.0.1 asked for pkg" "$T/mirror.log"
t_check "vdid's dnsmasq leased that address to that MAC" grep -q "$mac $addr" "$T/state/net/lab.leases"
t_check "the audit names the network" bash -c '"$1" audit tail -n 50 | grep -q "image.patch.start.*on the network of pool lab (tap vdm"' _ "$VDICTL"
port_gone() {
    ! inh ip -o link show | grep -q ": vdm" &&
        ! inh nft list ruleset | grep -q "$mac" &&
        ! ls "$T/run/net/lab.hosts/" | grep -q "^vdm"
}
t_check "its port is gone after: no tap, no rules, no DHCP entry" t_wait_for 10 port_gone
# The pool's rollout replaces the spare by one on version 2, which has the fetched file.
new_ready() { local d; d=$(ids ready); [ -n "$d" ] && [ "$d" != "$spare" ]; }
t_check "the pool moves to version 2" t_wait_for 20 new_ready
new=$(ids ready)
t_check "its desktop has the file the patch fetched" t_wait_for 5 \
    grep -q "testdesk: file pkg size=41" "$T/state/desktops/$new/vmm.log"

t_check "vdid is still running" kill -0 "$vdid"
t_done
