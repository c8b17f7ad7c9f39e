#!/usr/bin/env bash
# Per-pool bandwidth caps (server/net-tc.c): two nat pools on one vdid, one with `bandwidth = 4M`
# and one without. Each desktop (the stand-in VMM with the test guest's stack) floods the uplink
# with 1000-byte datagrams for 3 s, and then counts what a flood from the host gets to it in 3 s.
# Down: what the capped desktop receives stays near 4 Mbit/s; the uncapped one gets far more.
# Up: the capped desktop's shaper passes about 4 Mbit/s of its flood (tc's own count; the uplink's
# socket, swamped by the uncapped flood, sees less), while the uncapped desktop gets more through
# than the cap allows (so each measurement could have failed). Ending a capped desktop removes
# its ifb device.
# timeout: 120
. "$VDI_SRC/tests/lib.sh"
t_require_root
t_tmpdir
chmod 755 "$T"
command -v ip >/dev/null || t_need "ip (iproute2) is missing"
command -v tc >/dev/null || t_need "tc (iproute2) is missing"
command -v nft >/dev/null || t_need "nft (nftables) is missing"
[ -x /usr/sbin/dnsmasq ] || t_need "dnsmasq (dnsmasq-base) is missing"
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
FAKE=$VDI_BUILD/tests/tools/vdid_fakevmm
export VDI_ADMIN_SOCKET=$T/run/vdid.sock
H=vdich$$ UP=vdicu$$
kill_vmms() {
    t_kill_matching KILL "$FAKE .*--control $T/"
    t_kill_matching TERM "dnsmasq --keep-in-foreground --conf-file=/dev/null --pid-file=$T/"
}
trap 'kill_vmms; ip netns del "$H" 2>/dev/null; ip netns del "$UP" 2>/dev/null; t_cleanup' EXIT
ip netns add "$H" && ip netns add "$UP" || t_fail "cannot make namespaces"
ip -n "$H" link set lo up
ip -n "$UP" link set lo up
ip -n "$H" link add up0 type veth peer name up1 netns "$UP"
ip -n "$H" addr add 10.99.0.1/24 dev up0
ip -n "$H" link set up0 up
ip -n "$UP" addr add 10.99.0.2/24 dev up1
ip -n "$UP" link set up1 up
cat >"$T/count.py" <<'PY'
# count.py PORT OUT: count bytes per sender (the desktop's own address in the payload, "FROM A");
# write "A BYTES" lines to OUT every 0.2 s
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(0.2)
got = {}
while True:
    try:
        data, addr = s.recvfrom(4096)
        w = data.split(b" ", 2)
        who = w[1].decode() if len(w) > 2 and w[0] == b"FROM" else addr[0]
        got[who] = got.get(who, 0) + len(data)
    except socket.timeout:
        pass
    with open(sys.argv[2] + ".tmp", "w") as f:
        for k, v in got.items():
            f.write("%s %d\n" % (k, v))
    import os
    os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
t_bg ip netns exec "$UP" python3 "$T/count.py" 9998 "$T/up.count"

t_import_fake_image
cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = off
vmm = $FAKE
memory_budget = 1G
vmm_uid_first = 4400000
vmm_uid_count = 8
vmm_memory_overhead = 16M
vmm_env = FAKEVMM_NET
nat_uplink = up0

[pool capped]
image = testdesk
memory = 32M
min_spares = 1
max_desktops = 1
network = nat
bandwidth = 4M

[pool free]
image = testdesk
memory = 32M
min_spares = 1
max_desktops = 1
network = nat
CONF
# Up for 3 s, then a pause, then down for 3 s (the host floods from 4.5 s on).
export FAKEVMM_NET="dhcp; ping gw; sleep 500; flood 10.99.0.2 9998 3000; sleep 1000; count 3000"
count_ready() { test "$("$VDICTL" desktops list --json 2>/dev/null | grep -c '"state": "ready"')" = 2; }
field() {
    "$VDICTL" desktops show "$1" --json 2>/dev/null | sed -n "s/^ *\"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p"
}
id_of() { "$VDICTL" desktops list --json | tr -d '\n ' | grep -o '"id":[0-9]*,"pool":"'"$1"'"' | sed 's/"id":\([0-9]*\),.*/\1/'; }
t_bg nsenter --net="/run/netns/$H" "$VDID" -c "$T/vdid.conf" 2>"$T/vdid.log"
vdid=$!
t_check "two desktops become ready" t_wait_for 20 count_ready
cap=$(id_of capped) free=$(id_of free)
leased() { grep -q "fakevmm-net: lease" "$T/state/desktops/$cap/vmm.log" && grep -q "fakevmm-net: lease" "$T/state/desktops/$free/vmm.log"; }
t_check "both have their addresses" t_wait_for 15 leased
capip=$(field "$cap" ip) freeip=$(field "$free" ip)
tap=$(ip -n "$H" -o link show 2>/dev/null | sed -n 's/^[0-9]*: \(vdq[0-9a-z]*\)[:@].*/\1/p' | head -1)
t_check "the capped desktop has an ifb device ($tap)" test -n "$tap"
t_check "... with a token bucket" bash -c "ip netns exec $H tc qdisc show dev $tap | grep -q 'tbf.*rate 4Mbit'"
cat >"$T/flood.py" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end, payload = time.time() + float(sys.argv[2]), b"y" * 1000
while time.time() < end:
    for ip in sys.argv[3:]:
        try:
            s.sendto(payload, (ip, 9))
        except OSError:
            pass
PY
sleep 4.5
ip netns exec "$H" python3 "$T/flood.py" 10.99.0.2 3.5 "$capip" "$freeip"
done_both() { grep -q "count rx" "$T/state/desktops/$cap/vmm.log" && grep -q "count rx" "$T/state/desktops/$free/vmm.log"; }
t_check "both floods are done" t_wait_for 15 done_both
sleep 0.5
up_of() { awk -v a="$1" '$1 == a {print $2}' "$T/up.count"; }
cap_sent=$(sed -n 's/.*flood 10.99.0.2 9998 sent \([0-9]*\).*/\1/p' "$T/state/desktops/$cap/vmm.log")
cap_up=$(up_of "$capip") free_up=$(up_of "$freeip")
cap_down=$(sed -n 's/.*count rx \([0-9]*\) frames.*/\1/p' "$T/state/desktops/$cap/vmm.log")
free_down=$(sed -n 's/.*count rx \([0-9]*\) frames.*/\1/p' "$T/state/desktops/$free/vmm.log")
t_log "up: the uplink got ${cap_up:-0} bytes from the capped desktop (it sent $cap_sent datagrams), ${free_up:-0} from the free one"
t_log "down: capped got $cap_down, free got $free_down frames in 3 s"
# 4 Mbit/s for 3 s is 1.5 MB: about 1450 frames of 1042 bytes on the wire, plus a 20 ms burst.
t_check "down: the capped desktop got at most ~4 Mbit/s (${cap_down} frames in 3 s)" test "$cap_down" -le 1800
t_check "down: ... and not nothing" test "$cap_down" -ge 500
t_check "down: the uncapped desktop got far more" test "$free_down" -ge $((cap_down * 3))
t_check "up: the capped desktop tried to send far more than its cap" test "$cap_sent" -ge 3000
# What the shaper let through (the uplink's own socket also drops under the uncapped flood, so
# its count is a lower bound): about the cap, no more.
shaped=$(ip netns exec "$H" tc -s qdisc show dev "$tap" | sed -n 's/^ *Sent \([0-9]*\) bytes.*/\1/p' | head -1)
t_log "up: the capped desktop's shaper passed $shaped bytes"
t_check "up: its shaper passed at most ~4 Mbit/s (${shaped} bytes in 3 s)" test "${shaped:-0}" -le 1800000
t_check "up: ... and not nothing" test "${shaped:-0}" -ge 500000
t_check "up: no more than that reached the uplink (${cap_up:-0} bytes)" test "${cap_up:-0}" -le "$shaped"
t_check "up: the uncapped desktop got more through than the cap allows" test "${free_up:-0}" -ge 1800000
gone_ifb() { ! ip -n "$H" -o link show 2>/dev/null | grep -q ": $tap[:@]"; }
"$VDICTL" desktops destroy "$cap" >/dev/null 2>&1
t_check "destroying the capped desktop removes its ifb device" t_wait_for 15 gone_ifb
kill -TERM "$vdid"
wait "$vdid" 2>/dev/null
t_done
