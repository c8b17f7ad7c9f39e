#!/usr/bin/env bash
# Desktop networks on a running vdid (server/net*.c, docs/network.md), in network namespaces of
# the test's own: vdid's "host" namespace, an "uplink" namespace behind a veth standing in for the
# outside world, and an "org" namespace standing in for an organisation's LAN with its own DHCP.
# The desktops are vdid's stand-in VMM with the test guest's network stack on the tap vdid hands
# it (FAKEVMM_NET: golden-images/testdesk/netstack.c), jailed as every VMM is, so the host side
# is real: bridges, taps, port isolation, nftables, NAT and dnsmasq.
#   - nat pools: each desktop gets its DHCP lease from vdid's dnsmasq and reaches the uplink; two
#     desktops of an isolated pool cannot ping each other, those of an `isolate = no` pool can;
#     frames with a forged source MAC or address get nothing through; vdid's listener and other
#     host services are not reachable from desktops (DNS on the gateway is);
#   - a bridge: pool: the organisation's DHCP serves the desktop, the LAN is reachable, the host
#     is not, forged frames go nowhere;
#   - --check-config and start name a missing bridge or uplink;
#   - after a vdid restart every desktop keeps its network (ping from the host, rules, dnsmasq);
#   - deleting the pools leaves no tap, bridge, nftables table or dnsmasq behind.
# timeout: 240
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
export VDI_ADMIN_SOCKET=$T/run/vdid.sock
H=vdinh$$ UP=vdinu$$ ORG=vdino$$
chmod 755 "$T" # dnsmasq, as nobody, reads its hosts under run_dir

kill_vmms() {
    t_kill_matching KILL "$FAKE .*--control $T/"
    t_kill_matching TERM "dnsmasq .*$T/"
}
cleanup() {
    if [ -n "${VDI_TEST_DEBUG:-}" ]; then
        tail -n 30 "$T"/vdid*.log "$T"/state/desktops/*/vmm.log "$T"/*.log >&2 2>/dev/null
        pgrep -af dnsmasq >&2; ls -la "$T/run/net" >&2
        ip netns exec "$UP" ss -ltnu >&2
        ip netns exec "$UP" nstat -az TcpOutRsts TcpExtListenDrops TcpExtListenOverflows TcpActiveOpens TcpPassiveOpens TcpInSegs TcpAttemptFails TcpExtTCPSynRetrans TcpInErrs TcpExtTCPChallengeACK TcpExtSyncookiesSent >&2
        ip netns exec "$H" nft list ruleset >&2
    fi
    kill_vmms
    ip netns del "$H" 2>/dev/null
    ip netns del "$UP" 2>/dev/null
    ip netns del "$ORG" 2>/dev/null
    t_cleanup
}
trap cleanup EXIT
inh() { ip netns exec "$H" "$@"; }
# vdid enters the host namespace with nsenter, not `ip netns exec`, which mounts a sysfs of its
# own and so hides /sys/fs/cgroup (the jail needs it).
vdid_in() { nsenter --net="/run/netns/$H" "$@"; }

# ---- the namespaces ------------------------------------------------------------------------
ip netns add "$H" && ip netns add "$UP" && ip netns add "$ORG" || t_fail "cannot make namespaces"
inh ip link set lo up
ip -n "$UP" link set lo up
ip -n "$ORG" link set lo up
inh ip link add up0 type veth peer name up1 netns "$UP"
inh ip addr add 10.99.0.1/24 dev up0
inh ip link set up0 up
ip -n "$UP" addr add 10.99.0.2/24 dev up1
ip -n "$UP" link set up1 up
# The organisation's LAN: a bridge on the host with the host's own address on it, and a DHCP
# server and a peer in the org namespace.
inh ip link add br-org type bridge
inh ip addr add 10.98.0.1/24 dev br-org
inh ip link set br-org up
inh ip link add org0 type veth peer name org1 netns "$ORG"
inh ip link set org0 master br-org
inh ip link set org0 up
ip -n "$ORG" addr add 10.98.0.2/24 dev org1
ip -n "$ORG" link set org1 up

# Listeners: the uplink's and the org's UDP sinks (they log what arrives) and TCP services, and a
# host service that desktops must not reach.
cat >"$T/sink.py" <<'PY'
import socket, sys, threading
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", int(sys.argv[1])))
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", int(sys.argv[2])))
tcp.listen(64)
def accept():
    while True:
        c, _ = tcp.accept()
        c.close()
threading.Thread(target=accept, daemon=True).start()
with open(sys.argv[3], "a") as log:
    while True:
        data, addr = udp.recvfrom(2048)
        log.write("%s %s\n" % (addr[0], data.decode(errors="replace")))
        log.flush()
PY
t_bg ip netns exec "$UP" python3 "$T/sink.py" 9999 8080 "$T/uplink.log"
t_bg ip netns exec "$ORG" python3 "$T/sink.py" 9999 8080 "$T/org.log"
t_bg ip netns exec "$H" python3 "$T/sink.py" 7776 7777 "$T/hostsvc.log"
listening() { ip netns exec "$1" ss -ltn | grep -q ":$2 "; }
t_check "the uplink's service listens" t_wait_for 10 listening "$UP" 8080
t_check "the org's service listens" t_wait_for 10 listening "$ORG" 8080
t_check "the host's other service listens" t_wait_for 10 listening "$H" 7777
# The organisation's DHCP (a dnsmasq of the test's own, in the org namespace).
t_bg ip netns exec "$ORG" /usr/sbin/dnsmasq --keep-in-foreground --conf-file=/dev/null \
    --pid-file="$T/org-dnsmasq.pid" --interface=org1 --bind-interfaces --port=0 \
    --dhcp-range=10.98.0.100,10.98.0.150,255.255.255.0,10m --dhcp-leasefile="$T/org.leases" \
    --user=nobody --group=nogroup --log-facility="$T/org-dnsmasq.log"

# ---- vdid ------------------------------------------------------------------------------------
t_import_fake_image
conf() { # conf POOLS...: the config with these pool sections
    cat <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 0.0.0.0:5900
web_listen = off
vmm = $FAKE
memory_budget = 2G
vmm_uid_first = 4200000
vmm_uid_count = 32
vmm_memory_overhead = 16M
vmm_env = FAKEVMM_NET
nat_uplink = up0
CONF
    for p in "$@"; do
        case $p in
        iso) printf '\n[pool iso]\nimage = testdesk\nmemory = 32M\nmin_spares = 2\nmax_desktops = 4\nnetwork = nat\n' ;;
        open) printf '\n[pool open]\nimage = testdesk\nmemory = 32M\nmin_spares = 2\nmax_desktops = 4\nnetwork = nat\nisolate = no\n' ;;
        org) printf '\n[pool org]\nimage = testdesk\nmemory = 32M\nmin_spares = 1\nmax_desktops = 2\nnetwork = bridge:br-org\n' ;;
        plain) printf '\n[pool plain]\nimage = testdesk\nmemory = 32M\nmin_spares = 1\n' ;;
        bad-bridge) printf '\n[pool bad]\nimage = testdesk\nnetwork = bridge:nosuchbr\n' ;;
        not-bridge) printf '\n[pool bad]\nimage = testdesk\nnetwork = bridge:up0\n' ;;
        esac
    done
}

# ---- the host is checked first
conf bad-bridge >"$T/bad1.conf"
vdid_in "$VDID" --check-config -c "$T/bad1.conf" >"$T/check1.out" 2>&1
t_check "--check-config fails on a bridge that does not exist" test $? = 1
t_check "... and names it" grep -q "network = bridge:nosuchbr: no such interface on this host" "$T/check1.out"
conf not-bridge >"$T/bad2.conf"
vdid_in "$VDID" --check-config -c "$T/bad2.conf" >"$T/check2.out" 2>&1
t_check "--check-config fails on an interface that is not a bridge" grep -q "bridge:up0: that interface is not a bridge" "$T/check2.out"
conf iso | sed 's/^nat_uplink = up0$/nat_uplink = nosuch0/' >"$T/bad3.conf"
vdid_in "$VDID" --check-config -c "$T/bad3.conf" >"$T/check3.out" 2>&1
t_check "--check-config fails on an uplink that does not exist" grep -q "nat_uplink = nosuch0: no such interface" "$T/check3.out"
timeout 20 nsenter --net="/run/netns/$H" "$VDID" -c "$T/bad1.conf" >"$T/start-bad.log" 2>&1
rc=$?
t_check "vdid does not start with a missing bridge (exit status $rc)" test $rc != 0 -a $rc != 124
t_check "... and says why" grep -q "bridge:nosuchbr: no such interface" "$T/start-bad.log"

# The guest's script: lease, gateway, outside, TCP to the outside (open), vdid's RFB port, a host
# service (both filtered) and DNS on the gateway (open); legit and forged datagrams to the
# outside; then, once every desktop has its address, which neighbours answer a ping.
export FAKEVMM_NET="dhcp; ping gw; ping 10.99.0.2; tcp 10.99.0.2 8080; tcp gw 5900; tcp gw 7777; \
tcp gw 53; udp 10.99.0.2 9999 LEGIT; spoof-mac 10.99.0.2 9999 SPOOFMAC; \
spoof-ip 10.99.0.2 9999 SPOOFIP 192.0.2.77; ping 10.98.0.2; tcp 10.98.0.1 5900; \
udp 10.98.0.2 9999 LEGIT; spoof-mac 10.98.0.2 9999 SPOOFMAC; spoof-ip 10.98.0.2 9999 SPOOFIP 10.98.0.77; \
sleep 2500; scan 2-12"
conf iso open org >"$T/vdid.conf"
vdid_in "$VDID" --check-config -c "$T/vdid.conf" >/dev/null 2>&1
t_check "--check-config accepts nat and bridge pools on this host" test $? = 0

count() { "$VDICTL" desktops list --json 2>/dev/null | grep -c "\"state\": \"$1\"" || true; }
count_is() { test "$(count "$1")" = "$2"; }
field() {
    "$VDICTL" desktops show "$1" --json 2>/dev/null | sed -n "s/^ *\"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p"
}
ids_of() { "$VDICTL" desktops list --json | tr -d '\n ' | grep -o '"id":[0-9]*,"pool":"'"$1"'"' | sed 's/"id":\([0-9]*\),.*/\1/'; }
log_of() { echo "$T/state/desktops/$1/vmm.log"; }
done_all() {
    local d
    for d in $(ids_of iso) $(ids_of open) $(ids_of org); do grep -q "fakevmm-net: script done" "$(log_of "$d")" 2>/dev/null || return 1; done
}
says() { grep -q "fakevmm-net: $2" "$(log_of "$1")"; }

t_bg nsenter --net="/run/netns/$H" "$VDID" -c "$T/vdid.conf" 2>"$T/vdid.log"
vdid=$!
t_check "five desktops with networks become ready" t_wait_for 20 count_is ready 5
t_check "their guests finish their scripts" t_wait_for 60 done_all
set -- $(ids_of iso)
i1=$1 i2=$2
set -- $(ids_of open)
o1=$1 o2=$2
org1=$(ids_of org)
t_log "desktops: iso $i1 $i2, open $o1 $o2, org $org1"

# ---- nat pools
for d in $i1 $i2 $o1 $o2; do
    ip=$(field "$d" ip) mac=$(field "$d" mac)
    t_check "desktop $d: vdid shows its MAC ($mac) and address ($ip)" test -n "$ip" -a -n "$mac"
    t_check "desktop $d: DHCP gave it that address" says "$d" "lease $ip gw "
    t_check "desktop $d: its MAC is locally administered" test "${mac:0:9}" = "02:76:64:"
    t_check "desktop $d: pings its gateway" says "$d" "ping gw ok"
    t_check "desktop $d: reaches the outside (ping)" says "$d" "ping 10.99.0.2 ok"
    t_check "desktop $d: reaches the outside (TCP)" says "$d" "tcp 10.99.0.2 8080 open "
    t_check "desktop $d: vdid's RFB listener is not reachable" says "$d" "tcp gw 5900 filtered "
    t_check "desktop $d: another host service is not reachable" says "$d" "tcp gw 7777 filtered "
    t_check "desktop $d: DNS on the gateway is" says "$d" "tcp gw 53 open "
done
t_check "an isolated pool's desktops cannot ping each other" says "$i1" "scan answered: none"
t_check "... either way" says "$i2" "scan answered: none"
t_check "with isolate = no they can" says "$o1" "scan answered: $(field "$o2" ip)$"
t_check "... either way" says "$o2" "scan answered: $(field "$o1" ip)$"
t_check "the uplink got the desktops' legit datagrams (masqueraded)" \
    test "$(grep -c '^10.99.0.1 LEGIT$' "$T/uplink.log")" -ge 4
t_check "no datagram with a forged source MAC got through" bash -c "! grep -q SPOOFMAC '$T/uplink.log'"
t_check "no datagram with a forged source address got through" bash -c "! grep -q SPOOFIP '$T/uplink.log'"
t_check "the host service saw nothing from desktops" test ! -s "$T/hostsvc.log"
br_iso=$(inh ip -o link show type bridge | sed -n 's/^[0-9]*: \(vdn[0-9a-f]*\):.*/\1/p' | head -1)
t_check "vdid made a bridge per nat pool" test "$(inh ip -o link show type bridge | grep -c ': vdn')" = 2
t_check "each desktop's tap is an isolated port of its pool's bridge" \
    test "$(inh bridge -d link show | grep -c 'isolated on')" -ge 2

pools=$("$VDICTL" pools list --json 2>/dev/null | tr -d '\n ')
t_check "the admin view shows each pool's network" \
    bash -c "grep -q '\"network\":\"nat10.213.[0-9]*.0/24\"' <<<'$pools' && grep -q '\"network\":\"bridge:br-org\"' <<<'$pools' && grep -q 'nat10.213.[0-9]*.0/24(notisolated)' <<<'$pools'"

# ---- the bridge pool
ip=$(field "$org1" ip) mac=$(field "$org1" mac)
t_check "org desktop: a MAC, and no address of vdid's" test -n "$mac" -a -z "$ip"
t_check "org desktop: the organisation's DHCP served it" says "$org1" "lease 10.98.0.1[0-5][0-9] gw "
t_check "org desktop: reaches the LAN" says "$org1" "ping 10.98.0.2 ok"
t_check "org desktop: the host's own address is not reachable" says "$org1" "tcp 10.98.0.1 5900 filtered "
t_check "org desktop: its legit datagram arrived" grep -q "^10.98.0.1[0-5][0-9] LEGIT$" "$T/org.log"
t_check "org desktop: forged MAC and address got nothing through" bash -c "! grep -q SPOOF '$T/org.log'"
t_check "the org DHCP leased only to the org desktop's MAC" grep -q " $mac " "$T/org.leases"

# ---- a vdid restart keeps every desktop's network
table=$(inh nft list tables | sed -n 's/^table bridge \(vdi_[0-9a-f]*\)$/\1/p')
t_check "vdid's nftables tables exist ($table)" test -n "$table"
dns_pid1=$(cat "$T/run/net/iso.pid" 2>/dev/null)
kill -TERM "$vdid"
wait "$vdid" 2>/dev/null
t_bg nsenter --net="/run/netns/$H" "$VDID" -c "$T/vdid.conf" 2>"$T/vdid2.log"
vdid=$!
t_check "after a restart the five desktops are ready again" t_wait_for 20 count_is ready 5
cat >"$T/echo.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
for _ in range(3):
    s.sendto(b"are you there", (sys.argv[1], 7))
    try:
        if s.recvfrom(2048)[0] == b"are you there":
            sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
PY
for d in $i1 $i2 $o1 $o2; do
    t_check "desktop $d still answers (UDP echo) from the host" inh python3 "$T/echo.py" "$(field "$d" ip)"
done
t_check "... and the org desktop still holds its port" test "$(inh ip -o link show master br-org | grep -c ': vdt')" = 1
t_check "the rules hold every port again" test "$(inh nft list set bridge "$table" mac_ok | grep -o 'vdt' | wc -l)" = 5
dns_pid2=$(cat "$T/run/net/iso.pid" 2>/dev/null)
t_check "a new dnsmasq serves the pool (the old one was stopped)" \
    test -n "$dns_pid2" -a "$dns_pid2" != "$dns_pid1" -a -d "/proc/$dns_pid2" -a ! -d "/proc/$dns_pid1"

# ---- a desktop that ends takes its port with it
"$VDICTL" desktops destroy "$i1" >/dev/null 2>&1
gone() { test "$(field "$i1" state)" = gone; }
t_check "a destroyed desktop goes" t_wait_for 15 gone
tap1=$(inh ip -o link show | grep -c ": vdt")
t_check "its tap is gone (4 left, and a new spare's)" t_wait_for 10 bash -c "test \$(ip netns exec $H nft list set bridge $table mac_ok | grep -o vdt | wc -l) = \$(ip netns exec $H ip -o link show | grep -c ': vdt')"

# ---- deleting the pools removes everything vdid made
conf plain >"$T/vdid.conf"
kill -TERM "$vdid"
wait "$vdid" 2>/dev/null
t_bg nsenter --net="/run/netns/$H" "$VDID" -c "$T/vdid.conf" 2>"$T/vdid3.log"
vdid=$!
no_taps() { test "$(inh ip -o link show | grep -c ': vdt')" = 0; }
t_check "no tap is left once the pools' desktops ended" t_wait_for 30 no_taps
t_check "their desktops are kept failed (disks kept), saying why" \
    t_wait_for 10 count_is failed 5
t_check "... why" grep -q "pool=iso is no longer in the configuration" "$T/vdid3.log"
t_check "no bridge of vdid's is left" test "$(inh ip -o link show type bridge | grep -c ': vdn')" = 0
t_check "no nftables table of vdid's is left" bash -c "! ip netns exec $H nft list tables | grep -q vdi_"
no_dnsmasq() { ! pgrep -f "dnsmasq --keep-in-foreground --conf-file=/dev/null --pid-file=$T/run/net/" >/dev/null; }
t_check "no dnsmasq of vdid's is left" no_dnsmasq
t_check "nor its run directory" test ! -e "$T/run/net"
t_check "the admin's bridge is still there" inh ip link show br-org
t_check "the plain pool's desktop runs without a network" t_wait_for 15 count_is ready 1
kill -TERM "$vdid"
wait "$vdid" 2>/dev/null
t_done
