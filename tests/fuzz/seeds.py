#!/usr/bin/env python3
"""tests/fuzz/seeds.py OUTDIR: write seed inputs for the fuzz targets whose inputs are binary
(qcow2 images, kernels, guest programs for the PCI side), one folder per target under OUTDIR.
tests/fuzz/run.sh calls it before each run, so the seeds are made, never committed; the text
seeds live in tests/fuzz/corpus/. Needs qemu-img for the qcow2 seeds (skipped without it)."""
import gzip
import os
import shutil
import struct
import subprocess
import sys
import tempfile

out = sys.argv[1] if len(sys.argv) > 1 else "build/fuzz/seeds"


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- qcow2: small images qemu-img writes (512-byte clusters keep them small) -------------------
def qcow2_seeds():
    if not shutil.which("qemu-img"):
        return
    with tempfile.TemporaryDirectory() as t:
        def make(name, *args, write=None):
            p = os.path.join(t, name)
            opts, size = list(args[:-1]), args[-1]
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *opts, p, size], check=True)
            if write:
                subprocess.run(["qemu-io", "-c", write, p], check=True, stdout=subprocess.DEVNULL)
            with open(p, "rb") as f:
                put("fuzz_qcow2", name, f.read())

        make("empty", "-o", "cluster_size=512", "64K")
        make("data", "-o", "cluster_size=512", "64K", write="write -P 0x5a 0 4K")
        make("compat", "-o", "cluster_size=512,compat=0.10", "32K")
        make("lazy", "-o", "cluster_size=512,lazy_refcounts=on", "32K", write="write -P 1 512 1K")
        base = os.path.join(t, "base.raw")
        with open(base, "wb") as f:
            f.truncate(32768)
        make("backing", "-o", "cluster_size=512", "-b", "base.raw", "-F", "raw", "32K")


# ---- kernels: a minimal PVH ELF, a bzImage header around a gzip payload ------------------------
def elf_pvh():
    entry = 0x100000
    note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", entry)
    code = b"\xf4" * 16  # hlt
    ehdr_size, phdr_size = 64, 56
    note_off = ehdr_size + 2 * phdr_size
    code_off = note_off + len(note)
    ehdr = (b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
            + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, entry, ehdr_size, 0, 0, ehdr_size,
                          phdr_size, 2, 0, 0, 0))
    load = struct.pack("<IIQQQQQQ", 1, 5, code_off, entry, entry, len(code), len(code), 16)
    pnote = struct.pack("<IIQQQQQQ", 4, 4, note_off, 0, 0, len(note), len(note), 4)
    return ehdr + load + pnote + note + code


def bzimage(payload):
    setup_sects = 1
    setup = bytearray(512 * (setup_sects + 1))
    setup[0x1f1] = setup_sects
    struct.pack_into("<H", setup, 0x1fe, 0xAA55)
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x020F)  # boot protocol 2.15
    setup[0x211] = 0x01  # loadflags: LOADED_HIGH
    struct.pack_into("<I", setup, 0x248, 0)  # payload_offset (relative to the protected part)
    struct.pack_into("<I", setup, 0x24c, len(payload))  # payload_length
    return bytes(setup) + payload


def kernel_seeds():
    elf = elf_pvh()
    put("fuzz_vmm_kernel", "pvh.elf", elf)
    put("fuzz_vmm_kernel", "bzimage_gzip", bzimage(gzip.compress(elf)))
    put("fuzz_vmm_kernel", "bzimage_raw", bzimage(elf))


# ---- the PCI side: guest programs (tests/fuzz/fuzz_virtio_pci.c's op format) -------------------
def op_cfg_write(slot, reg, width_idx, val):
    return bytes([0, slot, reg, width_idx]) + struct.pack("<I", val & 0xffffffff)


def op_cfg_read(slot, reg):
    return bytes([1, slot, reg])


def op_mmio(write, region, off, val, width_idx):
    return bytes([2 if write else 3, region]) + struct.pack("<HQ", off, val) + bytes([width_idx])


def op_ram(off, val):
    return bytes([4]) + struct.pack("<I", off)[:3] + struct.pack("<Q", val)


def pci_seeds():
    sweep = b"".join(op_cfg_read(s, r) for s in range(8) for r in range(0, 64, 4))
    put("fuzz_virtio_pci", "cfg_sweep", sweep)
    # Size and move a BAR, toggle decoding, as a driver probing and a hostile guest would.
    bars = b""
    for slot in range(1, 6):
        bars += op_cfg_write(slot, 0x10, 2, 0xffffffff) + op_cfg_read(slot, 0x10)
        bars += op_cfg_write(slot, 0x10, 2, 0xc0100000 + slot * 0x100000)
        bars += op_cfg_write(slot, 0x04, 1, 0) + op_cfg_write(slot, 0x04, 1, 6)
    put("fuzz_virtio_pci", "bars", bars)
    # virtio 1.x common config: reset, ACK|DRIVER, features, queue 0 at RAM 0x1000, DRIVER_OK,
    # a descriptor in RAM, then a notify and an I/O-thread turn.
    dev = b""
    for off, val, w in [(0x14, 0, 0), (0x14, 3, 0), (0x08, 0, 2), (0x0c, 1, 2), (0x14, 11, 0),
                        (0x16, 0, 1), (0x20, 0x1000, 2), (0x24, 0, 2), (0x28, 0x1100, 2),
                        (0x30, 0x1200, 2), (0x1c, 1, 1), (0x14, 15, 0)]:
        dev += op_mmio(True, 0, off, val, w)
    dev += op_ram(0x1000, 0x2000) + op_ram(0x1008, (1 << 32) | 16) + op_ram(0x1100, 1 << 16)
    dev += op_mmio(True, 0, 0x3000, 0, 1) + bytes([5]) + bytes([7])
    put("fuzz_virtio_pci", "queue_setup", dev)
    put("fuzz_virtio_pci", "input", bytes([6, 0]) + struct.pack("<II", 30, 1)
        + bytes([6, 1]) + struct.pack("<II", 100, 200) + bytes([6, 2]) + struct.pack("<II", 1, 0))


# ---- the PCI side on the real core (tests/fuzz/fuzz_pci_core.c's op format) -------------------
def core_seeds():
    def addr(slot, reg):
        return bytes([0 | (2 << 6)]) + bytes(8) + struct.pack("<H", (slot << 11) | reg)

    def data(val, write=True, width=2):
        return bytes([1 | (4 if write else 0) | (width << 6)]) + struct.pack("<Q", val) + bytes([0])

    def mmio(gpa, val=0, write=False, width=2):
        return (bytes([2 | (4 if write else 0) | (width << 6)]) + struct.pack("<Q", val)
                + struct.pack("<I", gpa - 0xc0000000))

    prog = b""
    for slot in range(1, 5):
        base = 0xc0000000 + slot * 0x100000
        prog += addr(slot, 0x10) + data(0xffffffff) + data(0, write=False)
        prog += addr(slot, 0x10) + data(base) + addr(slot, 0x04) + data(6, width=1)
        prog += mmio(base) + mmio(base + 0x14, 3, True, 0) + addr(slot, 0x04) + data(0, width=1)
    put("fuzz_pci_core", "bars", prog)


# ---- netstack: frames a network sends the test guest (DHCP answers, ARP, ping, UDP, TCP) --------
def net_seeds():
    mac = bytes([0x02, 0x76, 0x64, 1, 2, 3])
    peer = bytes([0x02, 0, 0, 0, 0, 9])
    me, gw, out = bytes([10, 213, 14, 2]), bytes([10, 213, 14, 1]), bytes([10, 99, 0, 2])

    def csum(b):
        if len(b) % 2:
            b += b"\0"
        s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        while s >> 16:
            s = (s & 0xffff) + (s >> 16)
        return struct.pack("!H", ~s & 0xffff)

    def ip(proto, src, dst, payload):
        h = struct.pack("!BBHHHBB", 0x45, 0, 20 + len(payload), 1, 0, 64, proto) + b"\0\0" + src + dst
        return h[:10] + csum(h) + h[12:] + payload

    def eth(dst, payload, typ=0x0800):
        return dst + peer + struct.pack("!H", typ) + payload

    def udp(sport, dport, payload):
        return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload

    def dhcp(typ, xid):
        m = bytearray(240)
        m[0] = 2
        m[1], m[2] = 1, 6
        m[4:8] = struct.pack("!I", xid)
        m[16:20] = me
        m[28:34] = mac
        m[236:240] = struct.pack("!I", 0x63825363)
        opts = bytes([53, 1, typ, 54, 4]) + gw + bytes([1, 4, 255, 255, 255, 0, 3, 4]) + gw
        opts += bytes([6, 4]) + gw + bytes([51, 4, 0, 0, 2, 88, 255])
        return bytes(m) + opts

    def rec(frame):
        return struct.pack("!H", len(frame)) + frame

    xid = struct.unpack("!I", mac[2:6])[0] ^ 0x5644490A
    bc = b"\xff" * 6
    put("fuzz_netstack", "dhcp", b"\0" + rec(eth(bc, ip(17, gw, b"\xff" * 4, udp(67, 68, dhcp(2, xid)))))
        + rec(eth(bc, ip(17, gw, b"\xff" * 4, udp(67, 68, dhcp(5, xid))))))
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + peer + gw + b"\0" * 6 + me
    icmp = b"\x08\0\0\0\x12\x34\0\x01hello"
    icmp = icmp[:2] + csum(icmp) + icmp[4:]
    synack = struct.pack("!HHIIBBHHH", 8080, 40001, 1, 2, 0x50, 0x12, 1024, 0, 0)
    put("fuzz_netstack", "bound", b"\1" + rec(eth(bc, arp, 0x0806)) + rec(eth(mac, ip(1, gw, me, icmp)))
        + rec(eth(mac, ip(17, out, me, udp(5555, 7, b"echo me")))) + rec(eth(mac, ip(6, out, me, synack))))


# ---- tdpatch: a bundle disk (a ustar archive made by Python's tarfile, as GNU tar would) ----------
def tdpatch_seeds():
    import io
    import tarfile
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in (("./run", b"echo x\ncopy notes n\n"), ("./notes", b"shipped notes\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    put("fuzz_tdpatch", "bundle", b"\1" + bio.getvalue()[:4096])
    put("fuzz_tdpatch", "script-copy", b"\2" + bio.getvalue()[:4096])


qcow2_seeds()
tdpatch_seeds()
net_seeds()
kernel_seeds()
pci_seeds()
core_seeds()
