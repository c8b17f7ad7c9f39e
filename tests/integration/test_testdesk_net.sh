#!/usr/bin/env bash
# testdesk's network (golden-images/testdesk/net.c on netstack.c) on a tap in a network namespace
# of the test's own, with a dnsmasq there as the network's DHCP: the guest gets a lease, pings the
# gateway, sends a datagram the host receives, and answers UDP echo (port 7) from the host. Under
# QEMU's virtio-net with TCG (the reference device, no KVM needed), then under vdi-vmm's own
# virtio-net on KVM (skipped without /dev/kvm, failed under VDI_REQUIRE_KVM=1).
# timeout: 180
. "${VDI_SRC:?}/tests/lib.sh"
t_require_root
ELF=$VDI_SRC/build/testdesk/testdesk.elf
[ -f "$ELF" ] || t_fail "$ELF is missing (make testdesk)"
command -v qemu-system-x86_64 >/dev/null || t_need "qemu-system-x86_64 is missing (deploy/deps/testdesk.txt)"
[ -x /usr/sbin/dnsmasq ] || t_need "dnsmasq (dnsmasq-base) is missing"
command -v ip >/dev/null || t_need "ip (iproute2) is missing"
t_tmpdir
chmod 755 "$T"
N=vditdn$$
trap 'ip netns del "$N" 2>/dev/null; t_cleanup' EXIT
ip netns add "$N" || t_fail "cannot make a namespace"
inn() { ip netns exec "$N" "$@"; }
inn ip link set lo up
inn ip tuntap add dev tdn0 mode tap vnet_hdr
inn ip addr add 10.77.0.1/24 dev tdn0
inn ip link set tdn0 up
t_bg inn /usr/sbin/dnsmasq --keep-in-foreground --conf-file=/dev/null --interface=tdn0 \
    --bind-interfaces --port=0 --dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,10m \
    --dhcp-leasefile="$T/leases" --user=nobody --group=nogroup --pid-file="$T/dnsmasq.pid" \
    --log-facility="$T/dnsmasq.log"
cat >"$T/host.py" <<'PY'
# host.py LOG: wait for the guest's lease line in LOG, receive its datagram on 9999, then check
# its UDP echo service.
import re, socket, sys, time
log, deadline = sys.argv[1], time.time() + 60
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("10.77.0.1", 9999))
sink.settimeout(0.2)
got, ip = False, None
while time.time() < deadline and not (got and ip):
    try:
        data, addr = sink.recvfrom(2048)
        if data == b"HELLO":
            got = True
            print("host: got HELLO from %s" % addr[0], flush=True)
    except socket.timeout:
        pass
    if not ip:
        m = re.search(rb"net lease (\S+) gw", open(log, "rb").read())
        ip = m and m.group(1).decode()
if not ip:
    sys.exit("host: no lease line")
e = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
e.settimeout(1)
for _ in range(5):
    e.sendto(b"echo this", (ip, 7))
    try:
        if e.recvfrom(2048)[0] == b"echo this":
            print("host: %s echoed" % ip, flush=True)
            break
    except socket.timeout:
        pass
PY

# run NAME CMD...: the guest, with the host side beside it; serial in $T/NAME.log
run() {
    local name=$1
    shift
    : >"$T/$name.log"
    inn python3 "$T/host.py" "$T/$name.log" >"$T/$name.host" 2>&1 &
    local host=$!
    timeout $((90 * VDI_TEST_TIMEOUT_MULT)) ip netns exec "$N" "$@"
    rc=$?
    wait "$host"
}
has() { grep -qa -- "$2" "$T/$1"; }
script="testdesk.run=net-ping:gw;net-udp:10.77.0.1:9999:HELLO;sleep:4000;poweroff"
checks() {
    local n=$1
    t_check "$n: the guest powered off (status $rc)" test "$rc" = 0
    t_check "$n: the NIC has the MAC given" has "$n.log" "testdesk: net mac=02:76:64:00:00:05"
    t_check "$n: DHCP gave it an address" has "$n.log" "testdesk: net lease 10.77.0.5[0-9] gw 10.77.0.1"
    t_check "$n: it pinged the gateway" has "$n.log" "TESTDESK OK net-ping 10.77.0.1 answered"
    t_check "$n: the host got its datagram" has "$n.host" "host: got HELLO from 10.77.0.5"
    t_check "$n: it answered the host's UDP echo" has "$n.host" "host: 10.77.0.5[0-9] echoed"
    ! has "$n.log" "TESTDESK FAIL" || t_fail "$n: $(grep -a 'TESTDESK FAIL' "$T/$n.log")"
}

run qemu-tcg qemu-system-x86_64 -accel tcg -m 128 -nodefaults -display none -no-reboot \
    -kernel "$ELF" -append "$script" \
    -netdev tap,id=n0,ifname=tdn0,script=no,downscript=no \
    -device virtio-net-pci,netdev=n0,mac=02:76:64:00:00:05,disable-legacy=on \
    -chardev file,id=ser,path="$T/qemu-tcg.log" -serial chardev:ser
checks qemu-tcg

t_require_kvm
run vdi-vmm "$VDI_BIN/vdi-vmm" --kernel "$ELF" --mem 64 --fb none --cmdline "$script" \
    --net tap=tdn0,mac=02:76:64:00:00:05 --serial-log "$T/vdi-vmm.log"
checks vdi-vmm
t_done
