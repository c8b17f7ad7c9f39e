/* tests/unit/vmm/test_virtio.c: vmm/virtio-pci.c (through a virtio-blk device; virtio-blk itself
 * is test_virtio_blk.c) and the rng and input devices, driven the way a guest driver drives them:
 * config space, the modern capabilities, the common config, rings in (fake) guest RAM,
 * notifications through ioeventfds and the I/O thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>

#include "display/dpy.h"
#include "tests/unit/vmm/virtio_drv.h"

/* ---- the transport, through a virtio-blk device ------------------------------------------- */
/* The device sits on a 1 MiB raw file holding "GOLDEN" at byte 4096 (sector 8). */
static char disk_path[64];

static struct blkctx *blk_setup(bool msix)
{
    strcpy(disk_path, "/tmp/vdi-test-virtio.XXXXXX");
    int fd = mkstemp(disk_path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    assert_int_equal(pwrite(fd, "GOLDEN", 6, 4096), 6);
    close(fd);
    return blk_attach(disk_path, false, msix);
}

static void blk_teardown(struct blkctx *c)
{
    blk_detach(c);
    unlink(disk_path);
}

static void test_blk_hostile_chain_needs_reset(void **state)
{
    (void)state;
    struct blkctx *c = blk_setup(true);
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
    struct blkctx *c = blk_setup(false);
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
    struct blkctx *c = blk_setup(true);
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

static void test_pci_cfg_window(void **state)
{
    (void)state;
    struct blkctx *c = blk_setup(false);
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

/* ---- offered features -------------------------------------------------------------------- */
/* Transport bits every device offers: INDIRECT_DESC (28), VERSION_1 (32), RING_RESET (40). */
#define TRANSPORT_FEATURES (1ull << 28 | 1ull << 32 | 1ull << 40)

static void test_offered_features(void **state)
{
    (void)state;
    vmm_vm_t *vm = fake_vm_new(RAM);
    struct vmm_virtio_dev *vd;
    struct drv kbd, tab, rng;
    struct vmm_config cfg = {.input = true};
    assert_int_equal(vmm__pci_setup(vm, &cfg), 0);
    assert_int_equal(vmm__virtio_rng_create(vm, &vd), 0);
    drv_attach(&kbd, vm, 1);
    drv_attach(&tab, vm, 2);
    drv_attach(&rng, vm, 3);
    /* Keyboard and tablet differ in their config space only; neither has feature bits. */
    assert_int_equal(drv_offered(&kbd), TRANSPORT_FEATURES);
    assert_int_equal(drv_offered(&tab), TRANSPORT_FEATURES);
    assert_int_equal(drv_offered(&rng), TRANSPORT_FEATURES);
    /* A driver may take any subset, and nothing more. */
    assert_int_equal(drv_init(&kbd, 1ull << 40, 2, false), 0x0f);
    assert_int_equal(drv_init(&rng, 1ull << 0, 1, false) & 0x08, 0);
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
        cmocka_unit_test(test_blk_hostile_chain_needs_reset),
        cmocka_unit_test(test_blk_bad_rings_and_features),
        cmocka_unit_test(test_blk_queue_reset_and_bar_move),
        cmocka_unit_test(test_pci_cfg_window),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_offered_features),
        cmocka_unit_test(test_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
