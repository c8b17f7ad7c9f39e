#!/usr/bin/env bash
# testdesk's guest agent (docs/agent-protocol.md) in a real machine: QEMU (TCG here, KVM where it
# exists) with QEMU's own virtio-serial device and a port named org.vdi.agent.0 on a unix socket,
# the host end played by this test (a peer that is not vdi-vmm's code: vdi-vmm's side has its
# unit tests against a driver). The agent finds its port among several (QEMU numbers named ports
# from 1), says hello when the host end opens, sends heartbeats at testdesk.hb, shows a message
# (UTF-8 text: on serial with escapes, on screen), reports a malformed one, survives a line far
# over its limit, stops on agent-hang (no heartbeat), says hello again on agent-resume and when
# the host end reconnects. A machine without the device fails testdesk.require=agent.
# timeout: 240
. "${VDI_SRC:?}/tests/lib.sh"
ELF=$VDI_SRC/build/testdesk/testdesk.elf
[ -f "$ELF" ] || t_fail "$ELF is missing (make testdesk)"
command -v qemu-system-x86_64 >/dev/null || t_need "qemu-system-x86_64 is missing (deploy/deps/testdesk.txt)"
t_tmpdir
accel=tcg
[ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] && accel=kvm
fast=()
[ -f /usr/share/qemu/qboot.rom ] && fast=(-bios /usr/share/qemu/qboot.rom)
M=$VDI_TEST_TIMEOUT_MULT

t_bg qemu-system-x86_64 -accel "$accel" "${fast[@]}" -smp 1 -m 128 -nodefaults -display none \
    -no-reboot -kernel "$ELF" -append "testdesk.hb=1 testdesk.require=agent" \
    -device virtio-serial-pci,max_ports=4 \
    -chardev socket,id=ag,path="$T/agent.sock",server=on,wait=off \
    -device virtserialport,chardev=ag,name=org.vdi.agent.0,nr=2 \
    -chardev socket,id=other,path="$T/other.sock",server=on,wait=off \
    -device virtserialport,chardev=other,name=org.example.other,nr=1 \
    -chardev socket,id=ser,path="$T/serial.sock",server=on,wait=on -serial chardev:ser
qemu_pid=${_t_pids[-1]}

cat > "$T/host.py" <<'PY'
import base64, os, socket, sys, time
T, M = sys.argv[1], float(sys.argv[2])
checks = 0

def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)

def ok(msg):
    global checks
    checks += 1
    print("ok - " + msg, flush=True)

def connect(path, wait):
    end = time.time() + wait
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.time() > end:
                fail("cannot connect to " + path)
            time.sleep(0.05)

class Lines:
    """Lines from a socket, with a copy of every byte in a log file."""
    def __init__(self, sock, log):
        self.s, self.buf, self.log = sock, b"", open(log, "ab")
    def next(self, timeout):
        end = time.time() + timeout
        while b"\n" not in self.buf:
            left = end - time.time()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                return None
            if not d:
                return None
            self.log.write(d)
            self.log.flush()
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("latin-1")
    def expect(self, prefix, timeout, what):
        end = time.time() + timeout
        while time.time() < end:
            line = self.next(end - time.time())
            if line is None:
                break
            if line.startswith(prefix):
                ok(what)
                return line
        fail(what + ": no line starting %r within %.0f s" % (prefix, timeout))

serial = Lines(connect(T + "/serial.sock", 30 * M), T + "/serial.log")
ready = serial.expect("TESTDESK READY", 60 * M, "testdesk is READY with testdesk.require=agent")
with open(T + "/serial.log", "rb") as f:
    early = f.read().decode("latin-1")
if "TESTDESK FAIL" in early:
    fail("a FAIL line before READY")
if "org.vdi.agent.0 is port 2" not in early:
    fail("the agent did not find its port (2) among the others")
ok("the agent picked port 2, named org.vdi.agent.0, not port 1")

agent = Lines(connect(T + "/agent.sock", 10 * M), T + "/agent.log")
hello = agent.expect("hello ", 20 * M, "the agent says hello when the host end opens")
if hello != "hello v=1 agent=testdesk hb=1 caps=message":
    fail("unexpected hello %r" % hello)
ok("its hello names v, agent, hb and caps")
seqs = []
for _ in range(3):
    line = agent.expect("heartbeat ", 5 * M, "a heartbeat")
    seqs.append(int(line.split("seq=")[1]))
if seqs != sorted(seqs) or len(set(seqs)) != 3:
    fail("heartbeat sequence numbers %r do not increase" % seqs)
ok("heartbeat seq increases: %r" % seqs)

def send(b):
    agent.s.sendall(b)

send(b"hello v=1 host=test-harness\n")
serial.expect("TESTDESK AGENT hello host=test-harness", 10 * M, "the host's hello is seen")
text = "Moving in 5 min: Grüße \\ ok"
send(b"message secs=3 text64=" + base64.b64encode(text.encode()) + b"\n")
line = serial.expect("TESTDESK MESSAGE", 10 * M, "a message is shown")
want = "TESTDESK MESSAGE secs=3 bytes=29 text=Moving in 5 min: Gr\\xc3\\xbc\\xc3\\x9fe \\x5c ok"
if line != want:
    fail("message line %r, wanted %r" % (line, want))
ok("its text arrives whole, escaped for serial")
send(b"message secs=3 text64=%%%%\n")
serial.expect("TESTDESK FAIL agent message malformed", 10 * M, "a malformed message is reported")
send(b"x" * 20000 + b"\nmessage secs=1 text64=" + base64.b64encode(b"after the flood") + b"\n")
line = serial.expect("TESTDESK MESSAGE", 10 * M, "a line far over the limit is dropped, the next one counts")
if "text=after the flood" not in line:
    fail("after a long line: %r" % line)

serial.s.sendall(b"agent-hang\r")
serial.expect("TESTDESK OK agent-hang", 10 * M, "agent-hang")
time.sleep(1.5)
while agent.next(0.1) is not None:  # what was on its way
    pass
if agent.next(3.5) is not None:
    fail("a line from a hung agent")
ok("a hung agent sends nothing for 3.5 s")
serial.s.sendall(b"agent-resume\r")
serial.expect("TESTDESK OK agent-resume", 10 * M, "agent-resume")
agent.expect("hello ", 10 * M, "the agent says hello again on resume")
agent.expect("heartbeat ", 5 * M, "heartbeats again")

agent.s.close()
time.sleep(1)
agent = Lines(connect(T + "/agent.sock", 10 * M), T + "/agent.log")
agent.expect("hello ", 20 * M, "the agent says hello again when the host end reconnects")
agent.expect("heartbeat ", 5 * M, "and keeps its heartbeat")

serial.s.sendall(b"poweroff\r")
serial.expect("testdesk: powering off", 10 * M, "poweroff")
print("host: %d checks" % checks)
PY
timeout $((200 * M)) python3 "$T/host.py" "$T" "$M" || t_fail "the host side failed (serial: $(tail -5 "$T/serial.log" 2>/dev/null))"
t_check "QEMU exits after poweroff" t_wait_for 20 bash -c "! kill -0 $qemu_pid 2>/dev/null"

# A version whose data area holds a `hang` file (made by a patch, as an admin's broken patch would
# be): its agent stops that long after READY, and says so.
SYS=$VDI_SRC/build/testdesk/system.qcow2
if [ -f "$SYS" ] && command -v qemu-img >/dev/null; then
    qemu-img create -q -f qcow2 -F qcow2 -b "$SYS" "$T/v2.qcow2" || t_fail "qemu-img create failed"
    mkdir -p "$T/b"
    printf 'write hang 1500\n' > "$T/b/run"
    tar --format=ustar -C "$T/b" -cf "$T/b.tar" . || t_fail "tar failed"
    timeout $((60 * M)) qemu-system-x86_64 -accel "$accel" "${fast[@]}" -smp 1 -m 128 -nodefaults \
        -display none -no-reboot -kernel "$ELF" -append "testdesk.run=poweroff" \
        -drive "if=none,id=d0,format=qcow2,file=$T/v2.qcow2" -device virtio-blk-pci,drive=d0 \
        -drive "if=none,id=d1,format=raw,readonly=on,file=$T/b.tar" -device virtio-blk-pci,drive=d1 \
        -chardev file,id=ser,path="$T/patch.log" -serial chardev:ser
    t_check "the patch writes the hang file" grep -qa "^PATCH EXIT 0" "$T/patch.log"
    timeout $((60 * M)) qemu-system-x86_64 -accel "$accel" "${fast[@]}" -smp 1 -m 128 -nodefaults \
        -display none -no-reboot -kernel "$ELF" \
        -append "testdesk.hb=1 testdesk.run=sleep:3000;poweroff" \
        -drive "if=none,id=d0,format=qcow2,file=$T/v2.qcow2" -device virtio-blk-pci,drive=d0 \
        -device virtio-serial-pci -chardev socket,id=ag,path="$T/hang.sock",server=on,wait=off \
        -device virtserialport,chardev=ag,name=org.vdi.agent.0 \
        -chardev file,id=ser,path="$T/hang.log" -serial chardev:ser
    t_check "the hang request is announced at boot" grep -qa "TESTDESK AGENT hang in 1500 ms" "$T/hang.log"
    t_check "and carried out after READY" grep -qa "TESTDESK AGENT hang now" "$T/hang.log"
else
    t_need "qemu-img or $SYS missing (make testdesk)"
fi

# Without the device, an agent cannot be required.
timeout $((60 * M)) qemu-system-x86_64 -accel "$accel" "${fast[@]}" -smp 1 -m 128 -nodefaults \
    -display none -no-reboot -kernel "$ELF" \
    -append "testdesk.require=agent testdesk.run=poweroff" \
    -chardev file,id=ser,path="$T/none.log" -serial chardev:ser
t_check "no virtio-serial: require agent fails" grep -qa "TESTDESK FAIL require agent missing" "$T/none.log"
t_done
