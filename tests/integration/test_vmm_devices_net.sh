#!/usr/bin/env bash
# virtio-net on a tap device, on real KVM, inside a network namespace of our own: the guest
# (vmm/testguest/hostile.c, "net" mode) sends Ethernet frames that a packet socket on the tap
# receives, and a frame sent into the tap reaches the guest (with the virtio-net header the
# device must fill in). A tap that cannot be opened is bad input.
# timeout: 120
. "$VDI_SRC/tests/lib.sh"
t_require_kvm
t_require_root
t_tmpdir
command -v ip >/dev/null || t_need "ip (iproute2) is missing"
command -v unshare >/dev/null || t_need "unshare (util-linux) is missing"
command -v python3 >/dev/null || t_need "python3 is missing"
guest=$VDI_SRC/build/vmm-testguest/hostile.elf
t_check "test guest is built" test -f "$guest"

cat >"$T/peer.py" <<'PY'
# peer.py IFACE SECONDS: wait for the guest's frame on IFACE, then answer with ours.
import socket, sys, time
iface, secs = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.bind((iface, 0x88b5))
s.settimeout(0.1)
frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + b"VDI-NET-HOST"
frame += b"\0" * (60 - len(frame))
end, got = time.time() + secs, False
while time.time() < end:
    try:
        data = s.recv(2048)
        if b"VDI-NET-GUEST" in data and not got:
            got = True
            print("peer: got the guest's frame from %s" % data[6:12].hex(":"), flush=True)
    except socket.timeout:
        pass
    if got:
        s.send(frame)
print("peer: %s" % ("answered" if got else "nothing from the guest"), flush=True)
sys.exit(0 if got else 1)
PY

secs=$((40 * VDI_TEST_TIMEOUT_MULT))
cat >"$T/inside.sh" <<INSIDE
set -u
ip link set lo up
ip tuntap add dev vdit0 mode tap
ip link set vdit0 up
"$VDI_BIN/vdi-vmm" --kernel "$guest" --mem 64 --cmdline net --net tap=vdit0 \
    --serial-log "$T/serial.log" 2>"$T/vmm.err" &
vmm=\$!
python3 "$T/peer.py" vdit0 $secs >"$T/peer.log" 2>&1 &
peer=\$!
wait \$vmm
echo "vmm exit \$?" >"$T/vmm.status"
kill \$peer 2>/dev/null
wait \$peer 2>/dev/null
exit 0
INSIDE
timeout $((secs + 20)) unshare -n bash "$T/inside.sh"
t_check "the VMM exited 0 after the guest's power-off" grep -q "^vmm exit 0$" "$T/vmm.status"
t_check "the tap side got the guest's frame" grep -q "got the guest's frame from 52:54:00" "$T/peer.log"
t_check "the guest sent and received through virtio-net" grep -q "^NET tx=ok rx=ok$" "$T/serial.log"
t_check "no guest errors" bash -c "! grep -q 'guest error' '$T/vmm.err'"
t_expect_exit 2 "a tap that cannot be opened is bad input" \
    unshare -n "$VDI_BIN/vdi-vmm" --kernel "$guest" --mem 64 --net tap=this/is/bad 2>/dev/null
t_done
