#!/usr/bin/env bash
# testdesk drives QEMU's devices (the reference for ours): bochs-display (EDID mode, colour bars
# and pointer marker checked in a QMP screendump, animation), virtio-keyboard and virtio-tablet
# (QMP input-send-event echoed on serial), virtio-blk (patterns written by the guest checked in the
# host file, and the other way round), virtio-rng, 2 vCPUs, commands on the serial console, and a
# device that fails virtio 1.x negotiation reported as such. KVM (with qboot, a fast firmware that
# leaves BAR assignment to the guest) when /dev/kvm works, and TCG (with SeaBIOS) always.
# timeout: 180
. "${VDI_SRC:?}/tests/lib.sh"
ELF=$VDI_SRC/build/testdesk/testdesk.elf
[ -f "$ELF" ] || t_fail "$ELF is missing (make testdesk)"
command -v qemu-system-x86_64 >/dev/null || t_need "qemu-system-x86_64 is missing (deploy/deps/testdesk.txt)"
command -v python3 >/dev/null || t_need "python3 is missing (deploy/deps/testdesk.txt)"
t_tmpdir

cat >"$T/drive.py" <<'PY'
# drive.py DIR ACCEL FIRMWARE...: boot testdesk in QEMU with every device, talk to it over QMP and
# the serial console, print "ok N - what" per check, exit 1 at the first failed check.
import json, os, socket, struct, subprocess, sys, time

d, accel, fw = sys.argv[1], sys.argv[2], sys.argv[3:]
elf = os.environ["ELF"]
mult = int(os.environ.get("VDI_TEST_TIMEOUT_MULT", "1"))
disk = os.path.join(d, accel + "-disk.img")
n = 0

def ok(what, cond, info=""):
    global n
    n += 1
    if not cond:
        print("FAIL: %s: %s %s" % (accel, what, info))
        print("--- serial ---\n" + log.decode(errors="replace")[-3000:])
        sys.exit(1)
    print("ok %d - %s: %s" % (n, accel, what))

def pattern(sector, pat):
    return b"TDSK" + struct.pack("<Q", sector) + bytes([pat]) * 500

def fnv1a(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xffffffff
    return h

# A 4 MiB raw disk; sectors 200..203 hold a pattern the guest must verify.
with open(disk, "wb") as f:
    f.truncate(4 << 20)
    f.seek(200 * 512)
    for s in range(200, 204):
        f.write(pattern(s, 0x33))

qmp_path, ser_path = os.path.join(d, accel + "-qmp.sock"), os.path.join(d, accel + "-ser.sock")
cmd = ["qemu-system-x86_64", "-accel", accel] + fw + [
    "-smp", "2", "-m", "128", "-nodefaults", "-display", "none", "-no-reboot",
    "-kernel", elf, "-append",
    "testdesk.require=fb,kbd,tablet,blk,rng "
    "testdesk.run=disk-write:0:100:16:0x5a;disk-verify:0:100:16:0x5a;flush:0;rng:64",
    "-device", "bochs-display", "-device", "virtio-keyboard-pci", "-device", "virtio-tablet-pci",
    "-drive", "if=none,id=d0,format=raw,file=" + disk, "-device", "virtio-blk-pci,drive=d0",
    "-device", "virtio-rng-pci",
    "-qmp", "unix:%s,server=on,wait=off" % qmp_path,
    "-chardev", "socket,id=ser,path=%s,server=on,wait=off" % ser_path, "-serial", "chardev:ser"]
qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
log = b""

def connect(path):
    end = time.time() + 10 * mult
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            return s
        except OSError:
            if time.time() > end or qemu.poll() is not None:
                raise
            time.sleep(0.05)

ser = connect(ser_path)
ser.settimeout(0.1)

def pump():
    global log
    try:
        b = ser.recv(65536)
        if b:
            log += b
    except socket.timeout:
        pass

def wait_for(text, secs=20):
    end = time.time() + secs * mult
    while text.encode() not in log:
        if time.time() > end or qemu.poll() is not None:
            return False
        pump()
    return True

def send(line):
    ser.sendall(line.encode() + b"\r")

qmp = connect(qmp_path)
qf = qmp.makefile("rwb")
def qmp_cmd(name, **args):
    qf.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
    qf.flush()
    while True:
        r = json.loads(qf.readline())
        if "return" in r or "error" in r:
            return r
json.loads(qf.readline())  # greeting
qmp_cmd("qmp_capabilities")

ok("READY with 2 CPUs, the EDID mode and one disk",
   wait_for("TESTDESK READY cpus=2 fb=1280x800 disks=1"))
ok("no device check failed", b"TESTDESK FAIL" not in log)
ok("disk-write from the command line", wait_for("TESTDESK OK disk-write disk=0 sector=100 count=16 pattern=0x5a"))
ok("disk-verify of it", wait_for("TESTDESK OK disk-verify disk=0 sector=100 count=16 pattern=0x5a"))
ok("flush", wait_for("TESTDESK OK disk-flush disk=0"))
ok("rng", wait_for("TESTDESK OK rng bytes=64 head="))
with open(disk, "rb") as f:
    f.seek(100 * 512)
    data = f.read(16 * 512)
ok("the guest's pattern is in the host file", data == b"".join(pattern(s, 0x5a) for s in range(100, 116)))

send("disk-verify 0 200 4 0x33")
ok("the host's pattern verifies in the guest", wait_for("TESTDESK OK disk-verify disk=0 sector=200 count=4 pattern=0x33"))
send("disk-verify 0 200 4 0x34")
ok("a wrong pattern is a FAIL", wait_for("TESTDESK FAIL disk-verify disk=0 sector=200 count=4 pattern=0x34 mismatch at sector 200"))
send("disk-read 0 200 4")
want = "TESTDESK OK disk-read disk=0 sector=200 count=4 fnv1a=0x%08x" % fnv1a(b"".join(pattern(s, 0x33) for s in range(200, 204)))
ok("disk-read hash matches the host's", wait_for(want), want)
send("disk-write 0 8190 4 1")
ok("a write past the end is refused", wait_for("TESTDESK FAIL disk-write disk=0 sector=8190 count=4 pattern=0x01 out of range"))

def ev(*events):
    r = qmp_cmd("input-send-event", events=list(events))
    ok("QMP input-send-event accepted", "return" in r, r)
key = lambda q, down: {"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": q}}}
btn = lambda b, down: {"type": "btn", "data": {"down": down, "button": b}}
ab = lambda axis, v: {"type": "abs", "data": {"axis": axis, "value": v}}

ev(key("a", True))
ev(key("a", False))
ok("key a down echoed", wait_for("INPUT key code=30 down=1"))
ok("key a up echoed", wait_for("INPUT key code=30 down=0"))
ev(ab("x", 16384), ab("y", 8192))
# 16384 of 0..32767 -> (1280-1)*16384/32767 = 639; 8192 -> (800-1)*8192/32767 = 199
ok("tablet move mapped to framebuffer pixels", wait_for("INPUT abs x=639 y=199"))
ev(btn("left", True))
ev(btn("left", False))
ok("left button echoed", wait_for("INPUT btn code=272 down=1") and wait_for("INPUT btn code=272 down=0"))
ev(btn("wheel-up", True))
ev(btn("wheel-up", False))
ok("wheel echoed", wait_for("INPUT wheel v=1 h=0"))
send("echo sync")
ok("serial console command", wait_for("TESTDESK OK echo sync"))

def shot(name):
    path = os.path.join(d, accel + "-" + name + ".ppm")
    r = qmp_cmd("screendump", filename=path)
    ok("QMP screendump " + name, "return" in r, r)
    with open(path, "rb") as f:
        raw = f.read()
    parts = raw.split(b"\n", 3)
    w, h = map(int, parts[1].split())
    return w, h, parts[3]

def px(img, x, y):
    w, h, p = img
    i = 3 * (y * w + x)
    return tuple(p[i:i + 3])

img = shot("desktop")
ok("screendump is 1280x800", img[:2] == (1280, 800), img[:2])
bars = [(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0), (255, 0, 255), (255, 0, 0),
        (0, 0, 255), (0, 0, 0)]
y = 32 + (800 - 32) // 4
got = [px(img, i * 160 + 80, y) for i in range(8)]
ok("the eight colour bars", got == bars, got)
ok("the title bar", px(img, 640, 2) == (0x20, 0x30, 0x60), px(img, 640, 2))
ok("the pointer marker where the tablet put it", px(img, 639 + 4, 199 + 4) == (0xff, 0x80, 0x00), px(img, 643, 203))
ok("the key line shows the key", any(px(img, x, yy) == (255, 255, 255) for x in range(8, 200) for yy in range(432, 450)))

send("anim 50")
ok("anim accepted", wait_for("TESTDESK OK anim percent=50"))
time.sleep(0.3)
a1 = shot("anim1")
time.sleep(0.3)
a2 = shot("anim2")
ok("animation: the bottom half changes between frames", px(a1, 100, 700) != px(a2, 100, 700) or px(a1, 900, 780) != px(a2, 900, 780))
ok("animation: the colour bars stay", [px(a2, i * 160 + 80, y) for i in range(8)] == bars)
send("idle")
ok("idle accepted", wait_for("TESTDESK OK idle"))
time.sleep(0.3)
i1 = shot("idle")
ok("idle: the desktop is back", px(i1, 100, 780) == (0x40, 0x40, 0x40), px(i1, 100, 780))

send("poweroff")
try:
    rc = qemu.wait(20 * mult)
except subprocess.TimeoutExpired:
    qemu.kill()
    rc = "timeout"
ok("ACPI power-off ends QEMU with status 0", rc == 0, rc)
print("%s: %d checks passed" % (accel, n))
PY

export ELF
if [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    fw=()
    qboot=/usr/share/qemu/qboot.rom
    [ -f "$qboot" ] && fw=(-bios "$qboot") # else SeaBIOS: slower under nested KVM, same checks
    python3 "$T/drive.py" "$T" kvm "${fw[@]}" || t_fail "kvm variant"
else
    kvm_missing=1
fi
python3 "$T/drive.py" "$T" tcg || t_fail "tcg variant"

# A device that offers no virtio 1.x interface (legacy only) is rejected and reported.
timeout $((30 * VDI_TEST_TIMEOUT_MULT)) qemu-system-x86_64 -accel tcg -m 128 -nodefaults -display none \
    -no-reboot -kernel "$ELF" -append "testdesk.require=rng,blk testdesk.run=rng;poweroff" \
    -device virtio-rng-pci,disable-modern=on,disable-legacy=off \
    -chardev file,id=ser,path="$T/legacy.log" -serial chardev:ser
t_check "a legacy-only virtio device is rejected as failing negotiation" \
    grep -qa "TESTDESK FAIL virtio-rng 00:0[0-9].0 no virtio 1.x common/notify capability" "$T/legacy.log"
t_check "a required device that is missing is a FAIL" grep -qa "TESTDESK FAIL require rng missing" "$T/legacy.log"
t_check "so is a required disk" grep -qa "TESTDESK FAIL require blk missing" "$T/legacy.log"
t_check "READY still comes, with what is there" grep -qa "TESTDESK READY cpus=1 fb=none disks=0" "$T/legacy.log"
t_check "rng without a device answers FAIL" grep -qa "TESTDESK FAIL rng no virtio-rng device" "$T/legacy.log"

[ "${kvm_missing:-0}" = 1 ] && t_require_kvm
t_done
