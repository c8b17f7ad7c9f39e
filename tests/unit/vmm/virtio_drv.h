/* tests/unit/vmm/virtio_drv.h: a tiny virtio 1.x PCI driver over the fake VM of fake_vm.h, for
 * the unit tests of the virtio transport and devices: it finds the modern capabilities, negotiates
 * features, lays rings out in fake guest RAM and kicks queues through the ioeventfd path, as a
 * guest driver would. Include it after <cmocka.h> from exactly one .c per test binary (it
 * includes fake_vm.h, which defines the fake core's functions). */
#ifndef VDI_TESTS_VIRTIO_DRV_H
#define VDI_TESTS_VIRTIO_DRV_H

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
    uint64_t ring[4]; /* gpa of each queue's rings: desc, avail at +0x100, used at +0x200 */
    uint16_t avail_idx[4], used_seen[4];
    uint64_t features;
};

static inline uint8_t c8(struct drv *d, unsigned off)
{
    uint8_t v;
    fake_io(d->vm, VMM_IO_MMIO, d->bar4 + off, &v, 1, false);
    return v;
}

static inline uint16_t c16(struct drv *d, unsigned off)
{
    uint16_t v;
    fake_io(d->vm, VMM_IO_MMIO, d->bar4 + off, &v, 2, false);
    return v;
}

static inline uint32_t c32(struct drv *d, unsigned off)
{
    uint32_t v;
    fake_io(d->vm, VMM_IO_MMIO, d->bar4 + off, &v, 4, false);
    return v;
}

static inline void w8(struct drv *d, unsigned off, uint8_t v)
{
    fake_io(d->vm, VMM_IO_MMIO, d->bar4 + off, &v, 1, true);
}

static inline void w16(struct drv *d, unsigned off, uint16_t v)
{
    fake_io(d->vm, VMM_IO_MMIO, d->bar4 + off, &v, 2, true);
}

static inline void w32(struct drv *d, unsigned off, uint32_t v)
{
    fake_io(d->vm, VMM_IO_MMIO, d->bar4 + off, &v, 4, true);
}

static inline void w64(struct drv *d, unsigned off, uint64_t v)
{
    w32(d, off, (uint32_t)v);
    w32(d, off + 4, (uint32_t)(v >> 32));
}

/* Find the device's virtio capability of @type; returns its config offset. */
static inline unsigned find_vcap(struct drv *d, unsigned type)
{
    unsigned p = cfg_read(d->vm, d->slot, 0x34, 1), n = 0;
    while (p && n++ < 48) {
        if (cfg_read(d->vm, d->slot, p, 1) == 0x09 && cfg_read(d->vm, d->slot, p + 3, 1) == type)
            return p;
        p = cfg_read(d->vm, d->slot, p + 1, 1);
    }
    return 0;
}

static inline void drv_attach(struct drv *d, vmm_vm_t *vm, unsigned slot)
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

/* The 64 feature bits the device offers, read through device_feature_select as a driver does. */
static inline uint64_t drv_offered(struct drv *d)
{
    w32(d, 0x00, 0);
    uint64_t f = c32(d, 0x04);
    w32(d, 0x00, 1);
    return f | (uint64_t)c32(d, 0x04) << 32;
}

/* Reset, negotiate @want (plus VERSION_1 and INDIRECT_DESC), set up @nq queues. Returns the
 * status read back after FEATURES_OK. */
static inline uint8_t drv_init(struct drv *d, uint64_t want, unsigned nq, bool msix)
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
        for (unsigned v = 0; v < 5; v++) {
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

static inline void set_desc(struct drv *d, unsigned q, unsigned i, uint64_t addr, uint32_t len,
                            uint16_t flags, uint16_t next)
{
    uint8_t *p = d->vm->ram + d->ring[q] + 16 * i;
    memcpy(p, &addr, 8);
    memcpy(p + 8, &len, 4);
    memcpy(p + 12, &flags, 2);
    memcpy(p + 14, &next, 2);
}

/* Offer @head on queue @q and kick it with a 16-bit write (the ioeventfd path). */
static inline void submit(struct drv *d, unsigned q, uint16_t head)
{
    uint8_t *avail = d->vm->ram + d->ring[q] + 0x100;
    memcpy(avail + 4 + 2 * (d->avail_idx[q] % QSZ), &head, 2);
    d->avail_idx[q]++;
    memcpy(avail + 2, &d->avail_idx[q], 2);
    uint16_t qi = (uint16_t)q;
    fake_mmio_write(d->vm, d->bar4 + 0x3000 + 4 * q, &qi, 2);
    fake_iothread_run(d->vm);
}

static inline uint16_t used_idx(struct drv *d, unsigned q)
{
    uint16_t v;
    memcpy(&v, d->vm->ram + d->ring[q] + 0x200 + 2, 2);
    return v;
}

static inline uint32_t used_len(struct drv *d, unsigned q, unsigned n)
{
    uint32_t v;
    memcpy(&v, d->vm->ram + d->ring[q] + 0x200 + 4 + 8 * (n % QSZ) + 4, 4);
    return v;
}

/* ---- virtio-blk --------------------------------------------------------------------------- */
#define BLK_T_IN           0
#define BLK_T_OUT          1
#define BLK_T_FLUSH        4
#define BLK_T_GET_ID       8
#define BLK_T_DISCARD      11
#define BLK_T_WRITE_ZEROES 13
#define BLK_S_OK           0
#define BLK_S_IOERR        1
#define BLK_S_UNSUPP       2

/* A fake VM with one virtio-blk device (slot 1) and a driver that negotiated FLUSH. */
struct blkctx {
    vmm_vm_t *vm;
    struct drv d;
};

/* Open the disk image at @path with golden-images/ (read-only with @ro), put it on a new VM's bus
 * and bring the driver up, with MSI-X (@msix) or INTx. */
static inline struct blkctx *blk_attach(const char *path, bool ro, bool msix)
{
    struct blkctx *c = calloc(1, sizeof(*c));
    img_disk_t *disk;
    struct vmm_virtio_dev *vd;
    c->vm = fake_vm_new(RAM);
    assert_int_equal(vmm__pci_bus_create(c->vm), 0);
    assert_int_equal(img_open(path, ro ? IMG_OPEN_RDONLY : 0, &disk), 0);
    assert_int_equal(vmm__virtio_blk_create(c->vm, disk, &vd), 0);
    drv_attach(&c->d, c->vm, 1);
    assert_int_equal(cfg_read(c->vm, 1, 0x02, 2), 0x1042);
    assert_int_equal(drv_init(&c->d, 1ull << 9, 1, msix), 0x0f);
    return c;
}

/* Tear the VM down (the device closes the disk); nothing may be left registered. */
static inline void blk_detach(struct blkctx *c)
{
    vmm__pci_teardown(c->vm);
    assert_int_equal(c->vm->nfds, 0);
    assert_int_equal(c->vm->nioev, 0);
    fake_vm_free(c->vm);
    free(c);
}

/* Queue a request: header at 0x20000, data at 0x21000 (@len bytes), status at 0x30000. Returns
 * the status byte the device wrote. */
static inline uint8_t blk_req(struct blkctx *c, uint32_t type, uint64_t sector, uint32_t len)
{
    uint8_t hdr[16] = {0};
    memcpy(hdr, &type, 4);
    memcpy(hdr + 8, &sector, 8);
    memcpy(c->vm->ram + 0x20000, hdr, 16);
    c->vm->ram[0x30000] = 0xee;
    bool write = type == BLK_T_OUT || type == BLK_T_DISCARD || type == BLK_T_WRITE_ZEROES;
    set_desc(&c->d, 0, 0, 0x20000, 16, F_NEXT, len ? 1 : 2);
    if (len)
        set_desc(&c->d, 0, 1, 0x21000, len, F_NEXT | (write ? 0 : F_WRITE), 2);
    set_desc(&c->d, 0, 2, 0x30000, 1, F_WRITE, 0);
    uint16_t before = used_idx(&c->d, 0);
    submit(&c->d, 0, 0);
    assert_int_equal(used_idx(&c->d, 0), (uint16_t)(before + 1));
    return c->vm->ram[0x30000];
}

/* DISCARD and WRITE_ZEROES carry 16-byte segments (sector, num_sectors, flags) as data. */
static inline uint8_t blk_segments(struct blkctx *c, uint32_t type, const uint64_t *sector,
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

#endif /* VDI_TESTS_VIRTIO_DRV_H */
