/* Unit tests for vmm/virtio-pci.c and the virtio devices (blk, rng, input), driven the way a
 * guest driver drives them: config space, the modern capabilities, the common config, rings in
 * (fake) guest RAM, notifications through ioeventfds and the I/O thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>

#include "display/dpy.h"
#include "golden-images/img.h"
#include "tests/unit/vmm/fake_vm.h"

#define RAM        (4u << 20)
#define QSZ        16
#define F_NEXT     1
#define F_WRITE    2
#define F_INDIRECT 4

/* A tiny virtio driver over the fake. */
struct drv {
    vmm_vm_t *vm;
    unsigned slot;
    uint64_t bar4, msix_bar;
    uint64_t ring[2]; /* gpa of each queue's rings: desc, avail at +0x100, used at +0x200 */
    uint16_t avail_idx[2], used_seen[2];
    uint64_t features;
};

static uint8_t c8(struct drv *d, unsigned off)
{
    uint8_t v;
    fake_io(d->vm, VMM_IO_MMIO, d->bar4 + off, &v, 1, false);
    return v;
}

static uint16_t c16(struct drv *d, unsigned off)
{
    uint16_t v;
    fake_io(d->vm, VMM_IO_MMIO, d->bar4 + off, &v, 2, false);
    return v;
}

static uint32_t c32(struct drv *d, unsigned off)
{
    uint32_t v;
    fake_io(d->vm, VMM_IO_MMIO, d->bar4 + off, &v, 4, false);
    return v;
}

static void w8(struct drv *d, unsigned off, uint8_t v)
{
    fake_io(d->vm, VMM_IO_MMIO, d->bar4 + off, &v, 1, true);
}

static void w16(struct drv *d, unsigned off, uint16_t v)
{
    fake_io(d->vm, VMM_IO_MMIO, d->bar4 + off, &v, 2, true);
}

static void w32(struct drv *d, unsigned off, uint32_t v)
{
    fake_io(d->vm, VMM_IO_MMIO, d->bar4 + off, &v, 4, true);
}

static void w64(struct drv *d, unsigned off, uint64_t v)
{
    w32(d, off, (uint32_t)v);
    w32(d, off + 4, (uint32_t)(v >> 32));
}

/* Find the device's virtio capability of @type; returns its config offset. */
static unsigned find_vcap(struct drv *d, unsigned type)
{
    unsigned p = cfg_read(d->vm, d->slot, 0x34, 1), n = 0;
    while (p && n++ < 48) {
        if (cfg_read(d->vm, d->slot, p, 1) == 0x09 && cfg_read(d->vm, d->slot, p + 3, 1) == type)
            return p;
        p = cfg_read(d->vm, d->slot, p + 1, 1);
    }
    return 0;
}

static void drv_attach(struct drv *d, vmm_vm_t *vm, unsigned slot)
{
    memset(d, 0, sizeof(*d));
    d->vm = vm;
    d->slot = slot;
    assert_int_equal(cfg_read(vm, slot, 0, 2), 0x1af4);
    cfg_write(vm, slot, 0x04, 2, 0x0006);
    d->bar4 = (cfg_read(vm, slot, 0x20, 4) & ~0xfu) | (uint64_t)cfg_read(vm, slot, 0x24, 4) << 32;
    d->msix_bar = cfg_read(vm, slot, 0x14, 4) & ~0xfu;
    /* The capabilities point where we expect. */
    unsigned common = find_vcap(d, 1), notify = find_vcap(d, 2);
    assert_int_not_equal(common, 0);
    assert_int_equal(cfg_read(vm, slot, common + 4, 1), 4); /* BAR4 */
    assert_int_equal(cfg_read(vm, slot, common + 8, 4), 0);
    assert_int_equal(cfg_read(vm, slot, notify + 8, 4), 0x3000);
    assert_int_equal(cfg_read(vm, slot, notify + 16, 4), 4); /* notify_off_multiplier */
    assert_int_not_equal(find_vcap(d, 3), 0);
    assert_int_not_equal(find_vcap(d, 4), 0);
    assert_int_not_equal(find_vcap(d, 5), 0);
}

/* Reset, negotiate @want (plus VERSION_1 and INDIRECT_DESC), set up @nq queues. Returns the
 * status read back after FEATURES_OK. */
static uint8_t drv_init(struct drv *d, uint64_t want, unsigned nq, bool msix)
{
    w8(d, 0x14, 0);
    assert_int_equal(c8(d, 0x14), 0);
    w8(d, 0x14, 1);
    w8(d, 0x14, 3);
    w32(d, 0x00, 0);
    d->features = c32(d, 0x04);
    w32(d, 0x00, 1);
    d->features |= (uint64_t)c32(d, 0x04) << 32;
    want |= 1ull << 32 | 1ull << 28;
    w32(d, 0x08, 0);
    w32(d, 0x0c, (uint32_t)want);
    w32(d, 0x08, 1);
    w32(d, 0x0c, (uint32_t)(want >> 32));
    w8(d, 0x14, 0x0b);
    uint8_t st = c8(d, 0x14);
    if (!(st & 0x08))
        return st;
    if (msix) {
        unsigned cap = 0, p = cfg_read(d->vm, d->slot, 0x34, 1);
        while (p && !cap) {
            if (cfg_read(d->vm, d->slot, p, 1) == 0x11)
                cap = p;
            p = cfg_read(d->vm, d->slot, p + 1, 1);
        }
        cfg_write(d->vm, d->slot, cap + 2, 2, 0x8000);
        for (unsigned v = 0; v < 3; v++) {
            uint32_t e[4] = {0xfee00000, 0, 0x40 + v, 0};
            for (unsigned k = 0; k < 4; k++)
                fake_io(d->vm, VMM_IO_MMIO, d->msix_bar + 16 * v + 4 * k, &e[k], 4, true);
        }
        w16(d, 0x10, 0);
    }
    assert_int_equal(c16(d, 0x12), nq);
    for (unsigned q = 0; q < nq; q++) {
        d->ring[q] = 0x10000 + 0x4000 * (d->slot - 1) + 0x1000 * q;
        w16(d, 0x16, (uint16_t)q);
        assert_int_equal(c16(d, 0x18), VMM_VIRTQ_MAX_SIZE);
        assert_int_equal(c16(d, 0x1e), q);
        w16(d, 0x18, QSZ);
        w64(d, 0x20, d->ring[q]);
        w64(d, 0x28, d->ring[q] + 0x100);
        w64(d, 0x30, d->ring[q] + 0x200);
        if (msix)
            w16(d, 0x1a, (uint16_t)(q + 1));
        w16(d, 0x1c, 1);
        assert_int_equal(c16(d, 0x1c), 1);
    }
    w8(d, 0x14, 0x0f);
    return c8(d, 0x14);
}

static void set_desc(struct drv *d, unsigned q, unsigned i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
    uint8_t *p = d->vm->ram + d->ring[q] + 16 * i;
    memcpy(p, &addr, 8);
    memcpy(p + 8, &len, 4);
    memcpy(p + 12, &flags, 2);
    memcpy(p + 14, &next, 2);
}

/* Offer @head on queue @q and kick it with a 16-bit write (the ioeventfd path). */
static void submit(struct drv *d, unsigned q, uint16_t head)
{
    uint8_t *avail = d->vm->ram + d->ring[q] + 0x100;
    memcpy(avail + 4 + 2 * (d->avail_idx[q] % QSZ), &head, 2);
    d->avail_idx[q]++;
    memcpy(avail + 2, &d->avail_idx[q], 2);
    uint16_t qi = (uint16_t)q;
    fake_mmio_write(d->vm, d->bar4 + 0x3000 + 4 * q, &qi, 2);
    fake_iothread_run(d->vm);
}

static uint16_t used_idx(struct drv *d, unsigned q)
{
    uint16_t v;
    memcpy(&v, d->vm->ram + d->ring[q] + 0x200 + 2, 2);
    return v;
}

static uint32_t used_len(struct drv *d, unsigned q, unsigned n)
{
    uint32_t v;
    memcpy(&v, d->vm->ram + d->ring[q] + 0x200 + 4 + 8 * (n % QSZ) + 4, 4);
    return v;
}

/* ---- virtio-blk --------------------------------------------------------------------------- */
struct blkctx {
    vmm_vm_t *vm;
    char path[64];
    int fd;
    struct drv d;
};

static struct blkctx *blk_setup(bool ro, bool msix)
{
    struct blkctx *c = calloc(1, sizeof(*c));
    struct vmm_blk *disk;
    struct vmm_virtio_dev *vd;
    c->vm = fake_vm_new(RAM);
    strcpy(c->path, "/tmp/vdi-test-blk.XXXXXX");
    c->fd = mkstemp(c->path);
    assert_true(c->fd >= 0);
    assert_int_equal(ftruncate(c->fd, 1 << 20), 0);
    assert_int_equal(pwrite(c->fd, "GOLDEN", 6, 4096), 6);
    assert_int_equal(vmm__pci_bus_create(c->vm), 0);
    assert_int_equal(vmm__blk_open(c->path, ro, NULL, &disk), 0);
    assert_int_equal(vmm__virtio_blk_create(c->vm, disk, &vd), 0);
    drv_attach(&c->d, c->vm, 1);
    assert_int_equal(cfg_read(c->vm, 1, 0x02, 2), 0x1042);
    assert_int_equal(drv_init(&c->d, 1ull << 9, 1, msix), 0x0f);
    return c;
}

static void blk_teardown(struct blkctx *c)
{
    vmm__pci_teardown(c->vm);
    assert_int_equal(c->vm->nfds, 0);
    assert_int_equal(c->vm->nioev, 0);
    close(c->fd);
    unlink(c->path);
    fake_vm_free(c->vm);
    free(c);
}

/* Queue a request: header at 0x20000, data at 0x21000 (@len bytes), status at 0x30000. */
static uint8_t blk_req(struct blkctx *c, uint32_t type, uint64_t sector, uint32_t len)
{
    uint8_t hdr[16] = {0};
    memcpy(hdr, &type, 4);
    memcpy(hdr + 8, &sector, 8);
    memcpy(c->vm->ram + 0x20000, hdr, 16);
    c->vm->ram[0x30000] = 0xee;
    bool write = type == 1 || type == 11 || type == 13;
    set_desc(&c->d, 0, 0, 0x20000, 16, F_NEXT, len ? 1 : 2);
    if (len)
        set_desc(&c->d, 0, 1, 0x21000, len, F_NEXT | (write ? 0 : F_WRITE), 2);
    set_desc(&c->d, 0, 2, 0x30000, 1, F_WRITE, 0);
    uint16_t before = used_idx(&c->d, 0);
    submit(&c->d, 0, 0);
    assert_int_equal(used_idx(&c->d, 0), (uint16_t)(before + 1));
    return c->vm->ram[0x30000];
}

static void test_blk_read_write_flush(void **state)
{
    (void)state;
    struct blkctx *c = blk_setup(false, true);
    /* Capacity in the device config */
    uint64_t cap;
    fake_io(c->vm, VMM_IO_MMIO, c->d.bar4 + 0x2000, &cap, 8, false);
    assert_int_equal(cap, 2048);
    assert_false(c->d.features & (1ull << 5)); /* not read-only */

    assert_int_equal(blk_req(c, 0, 8, 512), 0);
    assert_memory_equal(c->vm->ram + 0x21000, "GOLDEN", 6);
    assert_int_equal(used_len(&c->d, 0, 0), 513);
    uint32_t gsi = 0;
    for (unsigned g = 24; g < FAKE_MAX_ROUTES; g++)
        if (c->vm->routes[g].used && c->vm->routes[g].data == 0x41)
            gsi = g;
    assert_int_not_equal(gsi, 0);
    assert_int_equal(fake_irqfd_count(c->vm, gsi), 1); /* the queue's MSI-X vector fired */

    memcpy(c->vm->ram + 0x21000, "written by the guest", 20);
    assert_int_equal(blk_req(c, 1, 16, 1024), 0);
    char buf[20];
    assert_int_equal(pread(c->fd, buf, 20, 16 * 512), 20);
    assert_memory_equal(buf, "written by the guest", 20);
    assert_int_equal(blk_req(c, 4, 0, 0), 0); /* flush */
    /* GET_ID answers a serial */
    assert_int_equal(blk_req(c, 8, 0, 20), 0);
    assert_memory_equal(c->vm->ram + 0x21000, "vdi-disk-", 9);
    /* Out of range and unknown requests fail cleanly. */
    assert_int_equal(blk_req(c, 0, 2047, 1024), 1);
    assert_int_equal(blk_req(c, 1, UINT64_MAX / 256, 512), 1);
    assert_int_equal(blk_req(c, 0, 0, 100), 1); /* not a whole sector */
    assert_int_equal(blk_req(c, 77, 0, 0), 2);
    /* Discard is offered (raw files punch holes) and works */
    assert_true(c->d.features & (1ull << 13));
    blk_teardown(c);
}

static void test_blk_read_only(void **state)
{
    (void)state;
    struct blkctx *c = blk_setup(true, false);
    assert_true(c->d.features & (1ull << 5));
    memcpy(c->vm->ram + 0x21000, "EVIL", 4);
    assert_int_equal(blk_req(c, 1, 8, 512), 1); /* IOERR */
    char buf[6];
    assert_int_equal(pread(c->fd, buf, 6, 4096), 6);
    assert_memory_equal(buf, "GOLDEN", 6);
    /* Discard and write-zeroes are refused too. */
    assert_int_equal(blk_req(c, 11, 0, 0), 1);
    assert_int_equal(blk_req(c, 13, 0, 0), 1);
    /* Reads work, and without MSI-X the interrupt is INTx + ISR. */
    assert_int_equal(blk_req(c, 0, 8, 512), 0);
    unsigned line = cfg_read(c->vm, 1, 0x3c, 1);
    assert_true(c->vm->irq_level[line]);
    assert_int_equal(c8(&c->d, 0x1000) & 1, 1);
    assert_false(c->vm->irq_level[line]);
    assert_int_equal(c8(&c->d, 0x1000), 0);
    blk_teardown(c);
}

static void test_blk_hostile_chain_needs_reset(void **state)
{
    (void)state;
    struct blkctx *c = blk_setup(false, true);
    /* A descriptor pointing past the end of RAM */
    set_desc(&c->d, 0, 0, RAM - 8, 16, F_NEXT, 1);
    set_desc(&c->d, 0, 1, 0x30000, 1, F_WRITE, 0);
    submit(&c->d, 0, 0);
    assert_int_equal(used_idx(&c->d, 0), 0);
    assert_true(c8(&c->d, 0x14) & 0x40);
    /* The device stays quiet until reset, then works again. */
    assert_int_equal(drv_init(&c->d, 1ull << 9, 1, true), 0x0f);
    memset(c->d.avail_idx, 0, sizeof(c->d.avail_idx));
    memset(c->vm->ram + c->d.ring[0], 0, 0x1000);
    assert_int_equal(blk_req(c, 0, 8, 512), 0);
    assert_memory_equal(c->vm->ram + 0x21000, "GOLDEN", 6);

    /* A descriptor loop */
    set_desc(&c->d, 0, 0, 0x20000, 16, F_NEXT, 1);
    set_desc(&c->d, 0, 1, 0x21000, 16, F_NEXT, 0);
    submit(&c->d, 0, 0);
    assert_true(c8(&c->d, 0x14) & 0x40);

    /* A request without a status byte */
    assert_int_equal(drv_init(&c->d, 1ull << 9, 1, true), 0x0f);
    memset(c->d.avail_idx, 0, sizeof(c->d.avail_idx));
    memset(c->vm->ram + c->d.ring[0], 0, 0x1000);
    set_desc(&c->d, 0, 0, 0x20000, 16, 0, 0);
    submit(&c->d, 0, 0);
    assert_true(c8(&c->d, 0x14) & 0x40);
    blk_teardown(c);
}

static void test_blk_bad_rings_and_features(void **state)
{
    (void)state;
    struct blkctx *c = blk_setup(false, false);
    /* A feature we never offered: FEATURES_OK does not stick. */
    assert_int_equal(drv_init(&c->d, 1ull << 50, 1, false) & 0x08, 0);
    /* Without VERSION_1 (legacy driver): refused. */
    w8(&c->d, 0x14, 0);
    w8(&c->d, 0x14, 3);
    w32(&c->d, 0x08, 1);
    w32(&c->d, 0x0c, 0);
    w8(&c->d, 0x14, 0x0b);
    assert_int_equal(c8(&c->d, 0x14) & 0x08, 0);
    /* DRIVER_OK without FEATURES_OK does not start the device. */
    w8(&c->d, 0x14, 0x07);
    assert_int_equal(c8(&c->d, 0x14) & 0x04, 0);
    /* A ring outside RAM: the queue does not enable, the device needs reset. */
    w8(&c->d, 0x14, 0);
    w8(&c->d, 0x14, 3);
    w32(&c->d, 0x08, 1);
    w32(&c->d, 0x0c, 1);
    w8(&c->d, 0x14, 0x0b);
    w16(&c->d, 0x16, 0);
    w64(&c->d, 0x20, RAM - 16);
    w16(&c->d, 0x1c, 1);
    assert_int_equal(c16(&c->d, 0x1c), 0);
    assert_true(c8(&c->d, 0x14) & 0x40);
    /* Bad queue sizes and a non-existent queue selected */
    w8(&c->d, 0x14, 0);
    w8(&c->d, 0x14, 3);
    w8(&c->d, 0x14, 0x0b);
    w16(&c->d, 0x16, 0);
    w16(&c->d, 0x18, 1000);
    w64(&c->d, 0x20, 0x10000);
    w64(&c->d, 0x28, 0x10100);
    w64(&c->d, 0x30, 0x10200);
    w16(&c->d, 0x1c, 1);
    assert_int_equal(c16(&c->d, 0x1c), 0);
    w16(&c->d, 0x16, 9);
    assert_int_equal(c16(&c->d, 0x18), 0);
    w16(&c->d, 0x1c, 1);
    w64(&c->d, 0x20, 0x1234);
    /* Odd-width accesses all over the BAR do not crash. */
    for (unsigned off = 0; off < 0x4000; off += 7) {
        uint8_t b[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        fake_io(c->vm, VMM_IO_MMIO, c->d.bar4 + off, b, 1 + off % 4, off % 3 == 0);
    }
    fake_iothread_run(c->vm);
    blk_teardown(c);
}

static void test_blk_queue_reset_and_bar_move(void **state)
{
    (void)state;
    struct blkctx *c = blk_setup(false, true);
    /* Moving BAR4 moves the notify ioeventfds with it. */
    uint64_t old = c->d.bar4;
    cfg_write(c->vm, 1, 0x20, 4, 0xe0000000);
    cfg_write(c->vm, 1, 0x24, 4, 0);
    c->d.bar4 = 0xe0000000;
    assert_int_equal(c->vm->nioev, 1);
    assert_int_equal(c->vm->ioev[0].addr, 0xe0003000);
    assert_null(fake_region_at(c->vm, VMM_IO_MMIO, old));
    assert_int_equal(blk_req(c, 0, 8, 512), 0);
    /* A 32-bit notify write (not matched by the ioeventfd) also works. */
    set_desc(&c->d, 0, 0, 0x20000, 16, F_NEXT, 2);
    set_desc(&c->d, 0, 2, 0x30000, 1, F_WRITE, 0);
    memset(c->vm->ram + 0x20000, 0, 16);
    c->vm->ram[0x20000] = 4; /* flush */
    uint8_t *avail = c->vm->ram + c->d.ring[0] + 0x100;
    memcpy(avail + 4 + 2 * (c->d.avail_idx[0] % QSZ), &(uint16_t){0}, 2);
    c->d.avail_idx[0]++;
    memcpy(avail + 2, &c->d.avail_idx[0], 2);
    uint32_t q0 = 0;
    fake_mmio_write(c->vm, c->d.bar4 + 0x3000, &q0, 4);
    fake_iothread_run(c->vm);
    assert_int_equal(used_idx(&c->d, 0), c->d.avail_idx[0]);
    /* Queue reset (VIRTIO_F_RING_RESET): reads 1 until re-enabled. */
    assert_true(c->d.features & (1ull << 40));
    w8(&c->d, 0x14, 0);
    c->d.avail_idx[0] = 0;
    memset(c->vm->ram + c->d.ring[0], 0, 0x1000);
    w8(&c->d, 0x14, 3);
    w32(&c->d, 0x08, 1);
    w32(&c->d, 0x0c, 1 | 1 << 8);
    w8(&c->d, 0x14, 0x0b);
    w16(&c->d, 0x16, 0);
    w16(&c->d, 0x18, QSZ);
    w64(&c->d, 0x20, c->d.ring[0]);
    w64(&c->d, 0x28, c->d.ring[0] + 0x100);
    w64(&c->d, 0x30, c->d.ring[0] + 0x200);
    w16(&c->d, 0x1c, 1);
    w8(&c->d, 0x14, 0x0f);
    w16(&c->d, 0x3a, 1);
    assert_int_equal(c16(&c->d, 0x3a), 1);
    assert_int_equal(c16(&c->d, 0x1c), 0);
    w64(&c->d, 0x20, c->d.ring[0]);
    w64(&c->d, 0x28, c->d.ring[0] + 0x100);
    w64(&c->d, 0x30, c->d.ring[0] + 0x200);
    w16(&c->d, 0x18, QSZ);
    w16(&c->d, 0x1c, 1);
    assert_int_equal(c16(&c->d, 0x3a), 0);
    assert_int_equal(blk_req(c, 0, 8, 512), 0);
    blk_teardown(c);
}

/* DISCARD and WRITE_ZEROES carry 16-byte segments (sector, num_sectors, flags) as data. */
static uint8_t blk_segments(struct blkctx *c, uint32_t type, const uint64_t *sector,
                            const uint32_t *num, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uint8_t *seg = c->vm->ram + 0x21000 + 16 * i;
        memset(seg, 0, 16);
        memcpy(seg, &sector[i], 8);
        memcpy(seg + 8, &num[i], 4);
    }
    return blk_req(c, type, 0, 16 * n);
}

static void test_blk_discard_write_zeroes(void **state)
{
    (void)state;
    struct blkctx *c = blk_setup(false, false);
    char buf[512];
    memset(c->vm->ram + 0x21000, 'x', 4096);
    assert_int_equal(blk_req(c, 1, 64, 4096), 0);
    /* Write zeroes over sectors 65..66: the rest of the written range stays. */
    assert_int_equal(blk_segments(c, 13, (uint64_t[]){65}, (uint32_t[]){2}, 1), 0);
    assert_int_equal(pread(c->fd, buf, 512, 65 * 512), 512);
    for (unsigned i = 0; i < 512; i++)
        assert_int_equal(buf[i], 0);
    assert_int_equal(pread(c->fd, buf, 512, 64 * 512), 512);
    assert_int_equal(buf[0], 'x');
    assert_int_equal(pread(c->fd, buf, 512, 67 * 512), 512);
    assert_int_equal(buf[511], 'x');
    /* Discard is accepted (advisory), past the end or with a bad layout it is an error. */
    assert_int_equal(blk_segments(c, 11, (uint64_t[]){0, 128}, (uint32_t[]){128, 8}, 2), 0);
    assert_int_equal(blk_segments(c, 11, (uint64_t[]){2040}, (uint32_t[]){16}, 1), 1);
    assert_int_equal(blk_segments(c, 13, (uint64_t[]){UINT64_MAX / 512}, (uint32_t[]){1}, 1), 1);
    assert_int_equal(blk_req(c, 11, 0, 20), 1);
    blk_teardown(c);
}

static void test_raw_backend(void **state)
{
    (void)state;
    char path[] = "/tmp/vdi-test-raw.XXXXXX";
    int fd = mkstemp(path);
    struct vmm_blk *b;
    char buf[8];
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 65536), 0);
    assert_int_equal(vmm__blk_open_raw(path, false, &b), 0);
    assert_int_equal(b->size, 65536);
    assert_int_equal(b->ops->pwrite(b, "rawdata!", 8, 4096), 0);
    assert_int_equal(b->ops->flush(b), 0);
    assert_int_equal(pread(fd, buf, 8, 4096), 8);
    assert_memory_equal(buf, "rawdata!", 8);
    assert_int_equal(b->ops->pread(b, buf, 8, 4096), 0);
    assert_memory_equal(buf, "rawdata!", 8);
    assert_int_equal(b->ops->discard(b, 0, 8192), 0);
    assert_int_equal(b->ops->pread(b, buf, 8, 4096), 0);
    assert_int_equal(buf[0], 0);
    b->ops->close(b);
    /* Read-only: opened O_RDONLY, and the ops refuse writes. */
    assert_int_equal(vmm__blk_open_raw(path, true, &b), 0);
    assert_int_equal(b->ops->pwrite(b, "x", 1, 0), -EROFS);
    assert_int_equal(b->ops->discard(b, 0, 4096), -EROFS);
    b->ops->close(b);
    /* Not a file or block device; missing file. */
    assert_int_equal(vmm__blk_open_raw("/dev/null", false, &b), -EINVAL);
    assert_int_equal(vmm__blk_open("/nonexistent/disk.img", false, NULL, &b), -ENOENT);
    close(fd);
    unlink(path);
}

/* The image back-end applies the backing root to the chain it opens (vdi-vmm --backing-root). */
static void test_blk_backing_root(void **state)
{
    (void)state;
    char raw[] = "/tmp/vdi-test-backing.XXXXXX", root[] = "/tmp/vdi-test-root.XXXXXX", ov[64];
    struct vmm_blk *b;
    int fd = mkstemp(raw);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 65536), 0);
    close(fd);
    assert_non_null(mkdtemp(root));
    snprintf(ov, sizeof(ov), "%s/ov.qcow2", root);
    struct img_create_opts co = {.backing = raw, .backing_fmt = "raw"};
    assert_int_equal(img_create(ov, &co), 0);
    assert_int_equal(vmm__blk_open(ov, true, root, &b), -EPERM);
    assert_int_equal(vmm__blk_open(ov, true, "/tmp", &b), 0);
    assert_int_equal(b->size, 65536);
    b->ops->close(b);
    assert_int_equal(vmm__blk_open(ov, true, NULL, &b), 0);
    b->ops->close(b);
    unlink(ov);
    rmdir(root);
    unlink(raw);
}

static void test_pci_cfg_window(void **state)
{
    (void)state;
    struct blkctx *c = blk_setup(false, false);
    struct drv *d = &c->d;
    unsigned cap = find_vcap(d, 5);
    /* Read device_status (common config 0x14) through config space. */
    cfg_write(c->vm, 1, cap + 4, 1, 4);
    cfg_write(c->vm, 1, cap + 8, 4, 0x14);
    cfg_write(c->vm, 1, cap + 12, 4, 1);
    assert_int_equal(cfg_read(c->vm, 1, cap + 16, 1), 0x0f);
    /* Nonsense windows read nothing and do not crash. */
    cfg_write(c->vm, 1, cap + 8, 4, 0xfffffffe);
    cfg_write(c->vm, 1, cap + 12, 4, 4);
    (void)cfg_read(c->vm, 1, cap + 16, 4);
    cfg_write(c->vm, 1, cap + 16, 4, 0);
    blk_teardown(c);
}

/* ---- virtio-rng --------------------------------------------------------------------------- */
static void test_rng(void **state)
{
    (void)state;
    vmm_vm_t *vm = fake_vm_new(RAM);
    struct vmm_virtio_dev *vd;
    struct drv d;
    assert_int_equal(vmm__pci_bus_create(vm), 0);
    assert_int_equal(vmm__virtio_rng_create(vm, &vd), 0);
    drv_attach(&d, vm, 1);
    assert_int_equal(cfg_read(vm, 1, 0x02, 2), 0x1044);
    assert_int_equal(drv_init(&d, 0, 1, true), 0x0f);
    set_desc(&d, 0, 0, 0x40000, 4096, F_WRITE, 0);
    submit(&d, 0, 0);
    assert_int_equal(used_idx(&d, 0), 1);
    assert_int_equal(used_len(&d, 0, 0), 4096);
    unsigned zero = 0;
    for (unsigned i = 0; i < 4096; i++)
        zero += vm->ram[0x40000 + i] == 0;
    assert_true(zero < 100);
    /* A huge request gets at most 64 KiB. */
    set_desc(&d, 0, 1, 0x100000, 0x200000, F_WRITE, 0);
    submit(&d, 0, 1);
    assert_int_equal(used_idx(&d, 0), 2);
    assert_int_equal(used_len(&d, 0, 1), 65536);
    vmm__pci_teardown(vm);
    fake_vm_free(vm);
}

/* ---- virtio-input ------------------------------------------------------------------------- */
static void input_cfg(struct drv *d, uint8_t sel, uint8_t sub, uint8_t *size, uint8_t *u)
{
    w8(d, 0x2000, sel);
    w8(d, 0x2001, sub);
    *size = c8(d, 0x2002);
    for (unsigned i = 0; i < 128; i++)
        u[i] = c8(d, 0x2008 + i);
}

static void test_input(void **state)
{
    (void)state;
    vmm_vm_t *vm = fake_vm_new(RAM);
    struct drv kbd, tab;
    uint8_t size, u[128];
    /* Only the input devices: vmm__pci_setup with nothing else asked for. */
    struct vmm_config cfg = {.input = true};
    assert_int_equal(vmm__pci_setup(vm, &cfg), 0);
    void *ctx, *fbctx;
    assert_null(vmm__pci_fb_source(vm, &fbctx));
    const struct dpy_input_sink *sink = vmm__pci_input_sink(vm, &ctx);
    assert_non_null(sink);

    /* Before a driver is up, events go nowhere (and do not crash). */
    sink->key(ctx, 30, true);

    drv_attach(&kbd, vm, 1);
    drv_attach(&tab, vm, 2);
    assert_int_equal(cfg_read(vm, 1, 0x02, 2), 0x1052);
    input_cfg(&kbd, 1, 0, &size, u);
    assert_int_equal(size, strlen("vdi virtio keyboard"));
    assert_memory_equal(u, "vdi virtio keyboard", size);
    input_cfg(&kbd, 0x11, 1, &size, u); /* EV_KEY bits */
    assert_true(size > 0 && (u[30 / 8] & (1 << (30 % 8))));
    assert_true(u[0x161 / 8] & (1 << (0x161 % 8)));  /* KEY_SELECT */
    assert_false(u[0x110 / 8] & (1 << (0x110 % 8))); /* not BTN_LEFT */
    input_cfg(&tab, 0x11, 3, &size, u);              /* EV_ABS bits: X and Y */
    assert_int_equal(size, 1);
    assert_int_equal(u[0], 3);
    input_cfg(&tab, 0x12, 0, &size, u); /* ABS_X info */
    uint32_t info[2];
    memcpy(info, u, 8);
    assert_int_equal(info[0], 0);
    assert_int_equal(info[1], DPY_ABS_MAX);
    input_cfg(&tab, 0x11, 2, &size, u); /* EV_REL: wheels */
    assert_true(u[1] & 1);              /* REL_WHEEL = 8 */

    assert_int_equal(drv_init(&kbd, 0, 2, true), 0x0f);
    assert_int_equal(drv_init(&tab, 0, 2, true), 0x0f);
    /* Post 8 event buffers on each event queue. */
    for (unsigned i = 0; i < 8; i++) {
        set_desc(&kbd, 0, i, 0x50000 + 8 * i, 8, F_WRITE, 0);
        set_desc(&tab, 0, i, 0x60000 + 8 * i, 8, F_WRITE, 0);
        submit(&kbd, 0, (uint16_t)i);
        submit(&tab, 0, (uint16_t)i);
    }
    sink->key(ctx, 30, true); /* KEY_A */
    assert_int_equal(used_idx(&kbd, 0), 2);
    uint16_t ev[4];
    memcpy(ev, vm->ram + 0x50000, 8);
    assert_int_equal(ev[0], 1);
    assert_int_equal(ev[1], 30);
    assert_int_equal(ev[2], 1);
    memcpy(ev, vm->ram + 0x50008, 8);
    assert_int_equal(ev[0], 0); /* SYN_REPORT */

    sink->pointer(ctx, 100, 40000, 1); /* y clamps to DPY_ABS_MAX; left button down */
    assert_int_equal(used_idx(&tab, 0), 4);
    int32_t val;
    memcpy(ev, vm->ram + 0x60008, 4);
    memcpy(&val, vm->ram + 0x6000c, 4);
    assert_int_equal(ev[0], 3);
    assert_int_equal(ev[1], 1);
    assert_int_equal(val, DPY_ABS_MAX);
    memcpy(ev, vm->ram + 0x60010, 4);
    assert_int_equal(ev[0], 1);
    assert_int_equal(ev[1], 0x110);
    /* Only 4 buffers left: a wheel event (2) fits, the rest waits until the guest posts more. */
    sink->wheel(ctx, -1, 0);
    assert_int_equal(used_idx(&tab, 0), 6);
    sink->pointer(ctx, 5, 5, 0); /* X, Y, BTN_LEFT up, SYN = 4 events; 2 buffers left */
    assert_int_equal(used_idx(&tab, 0), 8);
    for (unsigned i = 0; i < 2; i++) {
        set_desc(&tab, 0, 8 + i, 0x60100 + 8 * i, 8, F_WRITE, 0);
        submit(&tab, 0, (uint16_t)(8 + i));
    }
    assert_int_equal(used_idx(&tab, 0), 10);
    memcpy(ev, vm->ram + 0x60108, 4);
    assert_int_equal(ev[0], 0); /* the group's SYN_REPORT came last */

    /* The status queue (LEDs) is consumed. */
    set_desc(&kbd, 1, 0, 0x58000, 8, 0, 0);
    submit(&kbd, 1, 0);
    assert_int_equal(used_idx(&kbd, 1), 1);
    vmm__pci_teardown(vm);
    fake_vm_free(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blk_read_write_flush),
        cmocka_unit_test(test_blk_read_only),
        cmocka_unit_test(test_blk_hostile_chain_needs_reset),
        cmocka_unit_test(test_blk_bad_rings_and_features),
        cmocka_unit_test(test_blk_queue_reset_and_bar_move),
        cmocka_unit_test(test_blk_discard_write_zeroes),
        cmocka_unit_test(test_raw_backend),
        cmocka_unit_test(test_blk_backing_root),
        cmocka_unit_test(test_pci_cfg_window),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
