#!/usr/bin/env bash
# A `bridge:NAME` pool with `vlan = N` (server/net-link.c): the desktop's tap joins the admin's
# VLAN-filtering bridge carrying VLAN N only, as its PVID and untagged towards the desktop, so the
# bridge tags whatever the desktop sends; and a bridge that does not filter VLANs is refused at
# --check-config. Needs a kernel with bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING); where
# the kernel lacks it the suite reports itself skipped, saying so.
# timeout: 60
. "$VDI_SRC/tests/lib.sh"
t_require_root
t_tmpdir
chmod 755 "$T"
command -v ip >/dev/null || t_need "ip (iproute2) is missing"
command -v bridge >/dev/null || t_need "bridge (iproute2) is missing"
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
FAKE=$VDI_BUILD/tests/tools/vdid_fakevmm
export VDI_ADMIN_SOCKET=$T/run/vdid.sock
H=vdivh$$
kill_vmms() {
    t_kill_matching KILL "$FAKE .*--control $T/"
}
trap 'kill_vmms; ip netns del "$H" 2>/dev/null; t_cleanup' EXIT
ip netns add "$H" || t_fail "cannot make a namespace"
ip -n "$H" link add br-v type bridge || t_fail "cannot make a bridge"
if ! ip -n "$H" link set br-v type bridge vlan_filtering 1 2>"$T/vf.err"; then
    t_skip "this kernel has no bridge VLAN filtering ($(head -c 200 "$T/vf.err"))"
fi
ip -n "$H" link set br-v up

t_import_fake_image
cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = off
vmm = $FAKE
memory_budget = 1G
vmm_uid_first = 4300000
vmm_uid_count = 8
vmm_memory_overhead = 16M

[pool v]
image = testdesk
memory = 32M
min_spares = 1
max_desktops = 1
network = bridge:br-v
vlan = 12
CONF
in_h() { nsenter --net="/run/netns/$H" "$@"; }
in_h "$VDID" --check-config -c "$T/vdid.conf" >/dev/null 2>&1
t_check "--check-config accepts vlan = 12 on a VLAN-filtering bridge" test $? = 0
ip -n "$H" link set br-v type bridge vlan_filtering 0
in_h "$VDID" --check-config -c "$T/vdid.conf" >"$T/check.out" 2>&1
t_check "... and refuses it on a bridge that does not filter VLANs" grep -q "does not filter VLANs" "$T/check.out"
ip -n "$H" link set br-v type bridge vlan_filtering 1

count_ready() { test "$("$VDICTL" desktops list --json 2>/dev/null | grep -c '"state": "ready"')" = 1; }
t_bg in_h "$VDID" -c "$T/vdid.conf" 2>"$T/vdid.log"
vdid=$!
t_check "the desktop becomes ready" t_wait_for 20 count_ready
tap=$(ip -n "$H" -o link show master br-v | sed -n 's/^[0-9]*: \(vdt[0-9a-z]*\)[:@].*/\1/p')
t_check "its tap is a port of the bridge ($tap)" test -n "$tap"
vlans=$(ip netns exec "$H" bridge vlan show dev "$tap")
t_log "$vlans"
t_check "the port carries VLAN 12 as its PVID, untagged" bash -c "grep -Eq '12 .*PVID.*(Egress )?Untagged' <<<'$vlans'"
t_check "and not the default VLAN 1" bash -c "! grep -Eq '(^|[[:space:]])1 ' <<<'$(sed 1d <<<"$vlans")'"
kill -TERM "$vdid"
wait "$vdid" 2>/dev/null
t_done
