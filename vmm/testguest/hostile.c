/* vmm/testguest/hostile.c: a tiny PVH guest (32-bit protected mode, no paging) for the PCI
 * device tests of vdi-vmm. Two modes, chosen on the command line:
 *  - (default) misprogram every PCI device vdi-vmm gives it, check the devices still work after
 *    a reset, power off (tests/integration/test_vmm_devices_hostile.sh: the VMM must survive
 *    all of it, report DEVICE_NEEDS_RESET where virtio says so, and exit 0);
 *  - "disk": write a known pattern to sectors 8..15 of every virtio disk, flush, read it back,
 *    print the status of each step ("DISK n ro=.. write=.. flush=.. readback=.."), then power
 *    off, or with "hold" spin so the test can kill the VMM without a clean shutdown; "noflush"
 *    leaves the flush out (tests/integration/test_vmm_devices_disk.sh);
 *  - "net": send Ethernet frames (type 0x88b5, "VDI-NET-GUEST") through virtio-net until a frame
 *    carrying "VDI-NET-HOST" arrives, print "NET tx=.. rx=..", power off
 *    (tests/integration/test_vmm_devices_net.sh answers from the tap's side);
 *  - "bars": turn a virtio device's memory decoding off and on 8 x 8192 times (moving its BAR
 *    away and back every 16th time), printing "BARS round n" after each 8192, check the device
 *    still works, print "BARS DONE" and spin, so the test can compare the VMM's RSS between
 *    round 1 and the end (each toggle used to leak the BARs' I/O regions);
 *  - "flood": write 4 MiB of terminal escape sequences to COM1 as fast as `rep outsb` goes, then
 *    power off (the test checks the serial log's cap, rotation and escaping).
 *
 * It stays in ring 0 for its whole (short) life: on machines without hardware virtualisation
 * that code is emulated, which is fine for a few hundred thousand instructions. Output goes to
 * COM1, one line per check: "HOSTILE ok ..." or "HOSTILE FAIL ...", and "HOSTILE DONE" last.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAM_RINGS 0x00400000u /* rings and buffers live here */

__asm__(".pushsection .note.pvh, \"a\", @note\n"
        ".p2align 2\n"
        ".long 4, 4, 18\n" /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
        ".asciz \"Xen\"\n"
        ".long _start\n"
        ".popsection\n"
        ".text\n"
        ".globl _start\n"
        "_start:\n"
        "  cli\n"
        "  movl $stack_top, %esp\n"
        "  pushl %ebx\n" /* hvm_start_info */
        "  call gmain\n"
        "1: hlt\n"
        "  jmp 1b\n"
        ".bss\n"
        ".p2align 4\n"
        "stack: .skip 16384\n"
        "stack_top:\n"
        ".text\n");

void gmain(const uint32_t *start_info);

static inline void outb(uint16_t p, uint8_t v)
{
    __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(p));
}
static inline void outw(uint16_t p, uint16_t v)
{
    __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(p));
}
static inline void outl(uint16_t p, uint32_t v)
{
    __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(p));
}
static inline uint32_t inl(uint16_t p)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p));
    return v;
}
static inline uint8_t inb(uint16_t p)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p));
    return v;
}

static inline uint8_t r8(uint32_t a)
{
    return *(volatile uint8_t *)(uintptr_t)a;
}
static inline uint16_t r16(uint32_t a)
{
    return *(volatile uint16_t *)(uintptr_t)a;
}
static inline uint32_t r32(uint32_t a)
{
    return *(volatile uint32_t *)(uintptr_t)a;
}
static inline void w8(uint32_t a, uint8_t v)
{
    *(volatile uint8_t *)(uintptr_t)a = v;
}
static inline void w16(uint32_t a, uint16_t v)
{
    *(volatile uint16_t *)(uintptr_t)a = v;
}
static inline void w32(uint32_t a, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)a = v;
}

static void *memset_(void *d, int c, size_t n)
{
    volatile uint8_t *p = d;
    while (n--)
        *p++ = (uint8_t)c;
    return d;
}

static void putc_(char c)
{
    while (!(inb(0x3fd) & 0x20))
        ;
    outb(0x3f8, (uint8_t)c);
}

static void puts_(const char *s)
{
    while (*s)
        putc_(*s++);
}

static void puthex(uint32_t v)
{
    static const char hex[] = "0123456789abcdef";
    puts_("0x");
    for (int i = 28; i >= 0; i -= 4)
        putc_(hex[(v >> i) & 0xf]);
}

static unsigned fails;

static void check(bool ok, const char *what, uint32_t val)
{
    puts_(ok ? "HOSTILE ok " : "HOSTILE FAIL ");
    puts_(what);
    puts_(" ");
    puthex(val);
    puts_("\n");
    fails += !ok;
}

/* ---- PCI ---------------------------------------------------------------------------------- */
static uint32_t cfg_rd(unsigned slot, unsigned off)
{
    outl(0xcf8, 0x80000000u | slot << 11 | (off & 0xfc));
    return inl(0xcfc) >> (8 * (off & 3));
}

static void cfg_wr(unsigned slot, unsigned off, uint32_t v)
{
    outl(0xcf8, 0x80000000u | slot << 11 | (off & 0xfc));
    outl(0xcfc, v);
}

static void cfg_wr16(unsigned slot, unsigned off, uint16_t v)
{
    uint32_t old = cfg_rd(slot, off & ~3u);
    unsigned sh = 8 * (off & 2);
    cfg_wr(slot, off & ~3u, (old & ~(0xffffu << sh)) | (uint32_t)v << sh);
}

struct vdev {
    unsigned slot;
    uint16_t id;
    uint32_t bar4, bar1;
    unsigned msix_cap;
};

static unsigned find_cap(unsigned slot, unsigned id)
{
    unsigned p = cfg_rd(slot, 0x34) & 0xff;
    for (int g = 0; p && g < 48; g++) {
        if ((cfg_rd(slot, p) & 0xff) == id)
            return p;
        p = cfg_rd(slot, p + 1) & 0xff;
    }
    return 0;
}

/* ---- virtio ------------------------------------------------------------------------------- */
#define COMMON(d, o) ((d)->bar4 + (o))
#define STATUS       0x14
#define NOTIFY       0x3000

static void vreset(struct vdev *d)
{
    w8(COMMON(d, STATUS), 0);
}

static uint8_t negotiate(struct vdev *d)
{
    vreset(d);
    w8(COMMON(d, STATUS), 1);
    w8(COMMON(d, STATUS), 3);
    w32(COMMON(d, 0x08), 0);
    w32(COMMON(d, 0x0c), 0);
    w32(COMMON(d, 0x08), 1);
    w32(COMMON(d, 0x0c), 1); /* VERSION_1 */
    w8(COMMON(d, STATUS), 0x0b);
    return r8(COMMON(d, STATUS));
}

static void queue(struct vdev *d, unsigned q, uint32_t desc, uint32_t avail, uint32_t used)
{
    w16(COMMON(d, 0x16), (uint16_t)q);
    w16(COMMON(d, 0x18), 16);
    w32(COMMON(d, 0x20), desc);
    w32(COMMON(d, 0x24), 0);
    w32(COMMON(d, 0x28), avail);
    w32(COMMON(d, 0x2c), 0);
    w32(COMMON(d, 0x30), used);
    w32(COMMON(d, 0x34), 0);
    w16(COMMON(d, 0x1c), 1);
}

static void set_desc(uint32_t table, unsigned i, uint32_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    uint32_t p = table + 16 * i;
    w32(p, addr);
    w32(p + 4, 0);
    w32(p + 8, len);
    w16(p + 12, flags);
    w16(p + 14, next);
}

#define DESC  (RAM_RINGS)
#define AVAIL (RAM_RINGS + 0x1000)
#define USED  (RAM_RINGS + 0x2000)
#define BUF   (RAM_RINGS + 0x10000)

static void offer(struct vdev *d, uint16_t idx, uint16_t head)
{
    w16(AVAIL + 4 + 2 * ((idx - 1) % 16), head);
    w16(AVAIL + 2, idx);
    w16(d->bar4 + NOTIFY, 0); /* queue 0 */
}

/* Wait (polling the device, which exits to the VMM each time) for @cond to hold. */
static bool wait_status_bit(struct vdev *d, uint8_t bit)
{
    for (int i = 0; i < 200000; i++)
        if (r8(COMMON(d, STATUS)) & bit)
            return true;
    return false;
}

static bool wait_used(uint16_t want)
{
    for (int i = 0; i < 2000000; i++)
        if (r16(USED + 2) == want)
            return true;
    return false;
}

static void clear_rings(void)
{
    memset_((void *)(uintptr_t)RAM_RINGS, 0, 0x3000);
}

/* A working request on queue 0, after a proper reset: rng fills a buffer, blk reads sector 0. */
static bool works(struct vdev *d)
{
    clear_rings();
    if (!(negotiate(d) & 0x08))
        return false;
    queue(d, 0, DESC, AVAIL, USED);
    w8(COMMON(d, STATUS), 0x0f);
    if (d->id == 0x1044) {
        set_desc(DESC, 0, BUF, 64, 2, 0);
    } else {
        w32(BUF, 0); /* T_IN */
        w32(BUF + 4, 0);
        w32(BUF + 8, 0);
        w32(BUF + 12, 0);
        w8(BUF + 0x1000, 0xee);
        set_desc(DESC, 0, BUF, 16, 1, 1);
        set_desc(DESC, 1, BUF + 0x200, 512, 3, 2);
        set_desc(DESC, 2, BUF + 0x1000, 1, 2, 0);
    }
    offer(d, 1, 0);
    if (!wait_used(1))
        return false;
    return d->id == 0x1044 || r8(BUF + 0x1000) == 0;
}

static bool has_word(const char *s, const char *w)
{
    for (; *s; s++) {
        const char *a = s, *b = w;
        while (*b && *a == *b)
            a++, b++;
        if (!*b && (*a == 0 || *a == ' '))
            return true;
    }
    return false;
}

static void putdec(uint32_t v)
{
    char b[12];
    int n = 0;
    do
        b[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n)
        putc_(b[--n]);
}

/* One virtio-blk request on a prepared queue: header, @len data bytes at BUF + 0x200, status.
 * Returns the status byte, or 0xff on timeout. */
static uint8_t blk_request(struct vdev *d, uint16_t *idx, uint32_t type, uint32_t sector,
                           uint32_t len)
{
    w32(BUF, type);
    w32(BUF + 4, 0);
    w32(BUF + 8, sector);
    w32(BUF + 12, 0);
    w8(BUF + 0x3000, 0xff);
    set_desc(DESC, 0, BUF, 16, 1, len ? 1 : 2);
    set_desc(DESC, 1, BUF + 0x1000, len, 1 | (type == 0 ? 2 : 0), 2);
    set_desc(DESC, 2, BUF + 0x3000, 1, 2, 0);
    ++*idx;
    offer(d, *idx, 0);
    if (!wait_used(*idx))
        return 0xff;
    return r8(BUF + 0x3000);
}

static void disk_test(struct vdev *d, unsigned n, bool flush)
{
    static const char pat[] = "VDI-GUEST-WROTE-DISK";
    uint16_t idx = 0;
    clear_rings();
    vreset(d);
    w8(COMMON(d, STATUS), 3);
    w32(COMMON(d, 0x00), 0);
    uint32_t feat = r32(COMMON(d, 0x04));
    w32(COMMON(d, 0x08), 0);
    w32(COMMON(d, 0x0c), feat & (1u << 9 | 1u << 5)); /* FLUSH, RO */
    w32(COMMON(d, 0x08), 1);
    w32(COMMON(d, 0x0c), 1);
    w8(COMMON(d, STATUS), 0x0b);
    queue(d, 0, DESC, AVAIL, USED);
    w8(COMMON(d, STATUS), 0x0f);
    for (uint32_t i = 0; i < 4096; i++)
        w8(BUF + 0x1000 + i, i % 32 < 20 ? (uint8_t)pat[i % 32] : (uint8_t)('0' + n));
    uint8_t ws = blk_request(d, &idx, 1, 8, 4096);
    uint8_t fs = flush ? blk_request(d, &idx, 4, 0, 0) : 0xfe;
    for (uint32_t i = 0; i < 4096; i++)
        w8(BUF + 0x1000 + i, 0);
    uint8_t rs = blk_request(d, &idx, 0, 8, 4096);
    bool same = rs == 0;
    for (uint32_t i = 0; i < 4096 && same; i++)
        same = r8(BUF + 0x1000 + i) == (i % 32 < 20 ? (uint8_t)pat[i % 32] : (uint8_t)('0' + n));
    puts_("DISK ");
    putdec(n);
    puts_(" ro=");
    putdec((feat >> 5) & 1);
    puts_(" flushf=");
    putdec((feat >> 9) & 1);
    puts_(" write=");
    putdec(ws);
    puts_(" flush=");
    putdec(fs);
    puts_(" read=");
    putdec(rs);
    puts_(same ? " readback=same\n" : " readback=different\n");
}

/* ---- virtio-net --------------------------------------------------------------------------- */
#define NRX    (RAM_RINGS + 0x20000) /* RX rings: desc, avail +0x1000, used +0x2000 */
#define NTX    (RAM_RINGS + 0x30000)
#define NRXBUF (RAM_RINGS + 0x40000) /* 8 x 2 KiB */
#define NTXBUF (RAM_RINGS + 0x50000)

static void net_test(struct vdev *d)
{
    static const char payload[] = "VDI-NET-GUEST";
    bool tx_ok = false, rx_ok = false;
    uint16_t tx_idx = 0, rx_seen = 0;

    memset_((void *)(uintptr_t)NRX, 0, 0x40000);
    negotiate(d);
    queue(d, 0, NRX, NRX + 0x1000, NRX + 0x2000);
    queue(d, 1, NTX, NTX + 0x1000, NTX + 0x2000);
    w8(COMMON(d, STATUS), 0x0f);
    for (unsigned i = 0; i < 8; i++) {
        set_desc(NRX, i, NRXBUF + 2048 * i, 2048, 2, 0);
        w16(NRX + 0x1000 + 4 + 2 * i, (uint16_t)i);
    }
    w16(NRX + 0x1000 + 2, 8);
    w16(d->bar4 + NOTIFY, 0);

    /* The frame: virtio-net header (12 bytes, all zero), broadcast, our MAC, type 0x88b5. */
    uint32_t f = NTXBUF;
    memset_((void *)(uintptr_t)f, 0, 12 + 60);
    for (unsigned i = 0; i < 6; i++) {
        w8(f + 12 + i, 0xff);
        w8(f + 12 + 6 + i, r8(d->bar4 + 0x2000 + i));
    }
    w8(f + 12 + 12, 0x88);
    w8(f + 12 + 13, 0xb5);
    for (unsigned i = 0; i < sizeof(payload) - 1; i++)
        w8(f + 12 + 14 + i, (uint8_t)payload[i]);
    set_desc(NTX, 0, f, 12 + 60, 0, 0);

    for (int round = 0; round < 400 && !rx_ok; round++) {
        tx_idx++;
        w16(NTX + 0x1000 + 4 + 2 * ((tx_idx - 1) % 16), 0);
        w16(NTX + 0x1000 + 2, tx_idx);
        w16(d->bar4 + NOTIFY + 4, 1);
        for (int i = 0; i < 200000 && r16(NTX + 0x2000 + 2) != tx_idx; i++)
            ;
        tx_ok |= r16(NTX + 0x2000 + 2) == tx_idx;
        for (int i = 0; i < 20000 && !rx_ok; i++) {
            uint16_t used = r16(NRX + 0x2000 + 2);
            while (rx_seen != used && !rx_ok) {
                uint32_t id = r32(NRX + 0x2000 + 4 + 8 * (rx_seen % 16));
                uint32_t len = r32(NRX + 0x2000 + 8 + 8 * (rx_seen % 16));
                uint32_t b = NRXBUF + 2048 * (id % 8);
                static const char want[] = "VDI-NET-HOST";
                bool match = len >= 12 + 14 + sizeof(want) - 1 && r16(b + 10) == 1;
                for (unsigned k = 0; match && k < sizeof(want) - 1; k++)
                    match = r8(b + 12 + 14 + k) == (uint8_t)want[k];
                rx_ok |= match;
                rx_seen++;
            }
        }
    }
    puts_("NET tx=");
    puts_(tx_ok ? "ok" : "fail");
    puts_(" rx=");
    puts_(rx_ok ? "ok\n" : "fail\n");
}

/* ---- BAR toggling and serial flood ---------------------------------------------------------- */
static void bars_test(struct vdev *d)
{
    uint32_t bar4 = cfg_rd(d->slot, 0x20);
    for (uint32_t round = 1; round <= 8; round++) {
        for (unsigned i = 0; i < 8192; i++) {
            cfg_wr(d->slot, 0x04, 0x0); /* decoding off (Status is read-only here) */
            cfg_wr(d->slot, 0x04, 0x6);
            if ((i & 15) == 0) {
                cfg_wr(d->slot, 0x20, 0xd0000000u | (bar4 & 0xf));
                cfg_wr(d->slot, 0x20, bar4);
            }
        }
        puts_("BARS round ");
        putdec(round);
        puts_("\n");
    }
    check(works(d), "device works after BAR toggling", d->id);
}

static uint8_t flood_page[4096];

static void flood_test(void)
{
    static const char line[] = "FLOOD \x1b[2J\x1b]0;owned\x07\x1b[31mred\x9b"
                               "6n\r\x00\x01 ...............................\n";
    for (unsigned i = 0; i < sizeof(flood_page); i++)
        flood_page[i] = (uint8_t)line[i % (sizeof(line) - 1)];
    for (unsigned k = 0; k < 1024; k++) {
        const uint8_t *p = flood_page;
        uint32_t n = sizeof(flood_page);
        __asm__ volatile("cld; rep outsb" : "+S"(p), "+c"(n) : "d"((uint16_t)0x3f8) : "memory");
    }
}

static void abuse_virtio(struct vdev *d)
{
    /* 1. A ring outside guest RAM. */
    negotiate(d);
    w16(COMMON(d, 0x16), 0);
    w16(COMMON(d, 0x18), 16);
    w32(COMMON(d, 0x20), 0xfffff000);
    w32(COMMON(d, 0x24), 0x7);
    w16(COMMON(d, 0x1c), 1);
    check(r8(COMMON(d, STATUS)) & 0x40, "ring outside RAM sets NEEDS_RESET", d->id);

    /* 2. A descriptor loop. */
    clear_rings();
    negotiate(d);
    queue(d, 0, DESC, AVAIL, USED);
    w8(COMMON(d, STATUS), 0x0f);
    set_desc(DESC, 0, BUF, 16, 1, 1);
    set_desc(DESC, 1, BUF, 16, 1, 0);
    offer(d, 1, 0);
    check(wait_status_bit(d, 0x40), "descriptor loop sets NEEDS_RESET", d->id);

    /* 3. Buffers outside RAM, a huge indirect table, an avail index jump. */
    clear_rings();
    negotiate(d);
    queue(d, 0, DESC, AVAIL, USED);
    w8(COMMON(d, STATUS), 0x0f);
    set_desc(DESC, 0, 0xf0000000, 0x10000000, 2, 0);
    offer(d, 1, 0);
    check(wait_status_bit(d, 0x40), "buffer outside RAM sets NEEDS_RESET", d->id);
    clear_rings();
    negotiate(d);
    queue(d, 0, DESC, AVAIL, USED);
    w8(COMMON(d, STATUS), 0x0f);
    set_desc(DESC, 0, BUF, 0xfffffff0, 4, 0);
    offer(d, 1, 0);
    check(wait_status_bit(d, 0x40), "bad indirect table sets NEEDS_RESET", d->id);
    clear_rings();
    negotiate(d);
    queue(d, 0, DESC, AVAIL, USED);
    w8(COMMON(d, STATUS), 0x0f);
    offer(d, 4000, 0);
    check(wait_status_bit(d, 0x40), "avail index jump sets NEEDS_RESET", d->id);

    /* 4. MSI-X entries pointing nowhere, unmasked, then interrupts raised. */
    if (d->msix_cap) {
        cfg_wr16(d->slot, d->msix_cap + 2, 0x8000);
        for (unsigned v = 0; v < 3; v++) {
            w32(d->bar1 + 16 * v, 0x12345678);
            w32(d->bar1 + 16 * v + 4, 0xdeadbeef);
            w32(d->bar1 + 16 * v + 8, 0xffffffff);
            w32(d->bar1 + 16 * v + 12, 0);
        }
        w16(COMMON(d, 0x10), 0);
        w16(COMMON(d, 0x16), 0);
        w16(COMMON(d, 0x1a), 1);
        bool ok = works(d); /* raises the queue's (garbage) vector */
        check(ok, "request with garbage MSI-X vectors completes", d->id);
        for (unsigned v = 0; v < 3; v++)
            w32(d->bar1 + 16 * v + 12, 1);
        cfg_wr16(d->slot, d->msix_cap + 2, 0);
    }

    /* 5. Every dword of the virtio BAR written with all ones, every byte read. */
    for (uint32_t o = 0; o < 0x4000; o += 4)
        w32(d->bar4 + o, 0xffffffff);
    for (uint32_t o = 0; o < 0x4000; o += 61)
        (void)r8(d->bar4 + o);
    for (uint32_t o = 0; o < 0x1000; o += 4)
        w32(d->bar1 + o, 0xffffffff);

    /* After all that, a reset brings the device back. */
    check(works(d), "device works after reset", d->id);
}

static void abuse_bars(struct vdev *a, struct vdev *b)
{
    /* Move a's virtio BAR onto b's, onto guest RAM, onto the LAPIC, size it with decoding on,
     * then put it back. */
    uint32_t orig = cfg_rd(a->slot, 0x20);
    cfg_wr(a->slot, 0x20, b->bar4 | 0xc);
    cfg_wr(a->slot, 0x20, 0x00100000 | 0xc);
    cfg_wr(a->slot, 0x20, 0xfee00000 | 0xc);
    cfg_wr(a->slot, 0x20, 0xffffffff);
    cfg_wr(a->slot, 0x24, 0xffffffff);
    cfg_wr(a->slot, 0x24, 0);
    cfg_wr(a->slot, 0x20, orig);
    cfg_wr16(a->slot, 0x04, 0);
    cfg_wr16(a->slot, 0x04, 0x6);
    check(works(a), "device works after BAR games", a->id);
    check(works(b), "neighbour works after BAR games", b->id);
}

static void abuse_bochs(unsigned slot)
{
    uint32_t fb = cfg_rd(slot, 0x10) & ~0xfu, mmio = cfg_rd(slot, 0x18) & ~0xfu;
    cfg_wr16(slot, 0x04, 0x2);
    /* Absurd modes, odd widths everywhere in the MMIO BAR. */
    uint16_t junk[] = {0xffff, 0, 0x8000, 0x1234};
    for (unsigned j = 0; j < 4; j++)
        for (unsigned r = 0; r < 16; r++)
            w16(mmio + 0x500 + 2 * r, junk[j]);
    for (uint32_t o = 0; o < 0x1000; o += 3)
        w8(mmio + o, 0xff);
    for (uint32_t o = 0; o < 0x1000; o += 4)
        (void)r32(mmio + o);
    /* The framebuffer BAR moved onto RAM (refused), away and back. */
    cfg_wr(slot, 0x10, 0x00000000);
    cfg_wr(slot, 0x10, 0xd8000000);
    cfg_wr(slot, 0x10, fb);
    w32(fb + 4096, 0x00ff8000);
    check(r32(fb + 4096) == 0x00ff8000, "framebuffer works after BAR games", r32(fb + 4096));
    check(r8(mmio) == 0 && r8(mmio + 1) == 0xff, "EDID header still readable", r8(mmio + 1));
    w16(mmio + 0x508, 0); /* disable */
}

void gmain(const uint32_t *start_info)
{
    struct vdev v[32];
    unsigned nv = 0;
    int bochs = -1;
    const char *cmdline = "";

    /* hvm_start_info: magic "xEn3", ..., cmdline_paddr at byte 24. */
    if (start_info && start_info[0] == 0x336ec578 && start_info[6])
        cmdline = (const char *)(uintptr_t)start_info[6];
    puts_("HOSTILE start\n");
    for (unsigned s = 0; s < 32; s++) {
        uint32_t id = cfg_rd(s, 0);
        if ((id & 0xffff) == 0xffff)
            continue;
        if (id == 0x11111234)
            bochs = (int)s;
        if ((id & 0xffff) == 0x1af4 && (id >> 16) >= 0x1040) {
            struct vdev *d = &v[nv++];
            d->slot = s;
            d->id = (uint16_t)(id >> 16);
            d->bar4 = cfg_rd(s, 0x20) & ~0xfu;
            d->bar1 = cfg_rd(s, 0x14) & ~0xfu;
            d->msix_cap = find_cap(s, 0x11);
            cfg_wr16(s, 0x04, 0x6);
        }
    }
    check(nv >= 1, "virtio devices found", nv);
    if (has_word(cmdline, "net")) {
        for (unsigned i = 0; i < nv; i++)
            if (v[i].id == 0x1041)
                net_test(&v[i]);
        puts_("NET DONE\n");
        outw(0x604, 5 << 10 | 0x2000);
        for (;;)
            __asm__ volatile("hlt");
    }
    if (has_word(cmdline, "bars")) {
        for (unsigned i = 0; i < nv; i++)
            if (v[i].id == 0x1044) {
                bars_test(&v[i]);
                break;
            }
        puts_("BARS DONE\n");
        for (;;)
            __asm__ volatile("hlt");
    }
    if (has_word(cmdline, "flood")) {
        flood_test();
        puts_("FLOOD DONE\n");
        outw(0x604, 5 << 10 | 0x2000);
        for (;;)
            __asm__ volatile("hlt");
    }
    if (has_word(cmdline, "disk")) {
        unsigned n = 0;
        for (unsigned i = 0; i < nv; i++)
            if (v[i].id == 0x1042)
                disk_test(&v[i], n++, !has_word(cmdline, "noflush"));
        puts_("DISKS DONE\n");
        if (has_word(cmdline, "hold"))
            for (;;)
                __asm__ volatile("hlt");
        outw(0x604, 5 << 10 | 0x2000);
        for (;;)
            __asm__ volatile("hlt");
    }
    for (unsigned i = 0; i < nv; i++)
        if (v[i].id == 0x1042 || v[i].id == 0x1044)
            abuse_virtio(&v[i]);
    struct vdev *blk = NULL, *rng = NULL;
    for (unsigned i = 0; i < nv; i++) {
        if (v[i].id == 0x1042 && !blk)
            blk = &v[i];
        if (v[i].id == 0x1044)
            rng = &v[i];
    }
    if (blk && rng)
        abuse_bars(blk, rng);
    else
        check(false, "a disk and an rng to play BAR games with", nv);
    if (bochs >= 0)
        abuse_bochs((unsigned)bochs);

    /* Config space: all ones into every register of every device (and an absent slot), then
     * odd port accesses. */
    for (unsigned i = 0; i <= nv; i++)
        for (unsigned o = 0; o < 256; o += 4)
            cfg_wr(i < nv ? v[i].slot : 31, o, 0xffffffff);
    if (bochs >= 0)
        for (unsigned o = 0; o < 256; o += 4)
            cfg_wr((unsigned)bochs, o, 0xffffffff);
    outb(0xcfb, 1);
    outw(0xcfe, 0xffff);
    outl(0xcf8, 0x7fffffff);
    (void)inl(0xcfc);

    puts_(fails ? "HOSTILE DONE with failures\n" : "HOSTILE DONE\n");
    outw(0x604, 5 << 10 | 0x2000); /* ACPI S5 */
    for (;;)
        __asm__ volatile("hlt");
}
