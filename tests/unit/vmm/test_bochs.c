/* Unit tests for vmm/dev-bochs.c: the EDID block, the DISPI and QEMU extended registers, the
 * framebuffer BAR as a memory slot, and struct dpy_fb_source (mode and dirty pages). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "display/dpy.h"
#include "tests/unit/vmm/fake_vm.h"

static void check_edid(uint32_t w, uint32_t h)
{
    uint8_t e[128];
    unsigned sum = 0;
    vmm__edid_build(e, w, h);
    for (unsigned i = 0; i < 128; i++)
        sum += e[i];
    assert_int_equal(sum % 256, 0);
    static const uint8_t hdr[8] = {0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0};
    assert_memory_equal(e, hdr, 8);
    assert_int_equal(e[18], 1);
    assert_int_equal(e[19], 4);
    /* The first detailed timing is the preferred mode. */
    const uint8_t *d = e + 54;
    uint32_t hact = d[2] | (d[4] >> 4) << 8, vact = d[5] | (d[7] >> 4) << 8;
    uint32_t hbl = d[3] | (d[4] & 0xf) << 8, vbl = d[6] | (d[7] & 0xf) << 8;
    uint32_t clock = (d[0] | d[1] << 8) * 10000u;
    assert_int_equal(hact, w);
    assert_int_equal(vact, h);
    assert_true(clock > 0);
    /* ~60 Hz refresh */
    double hz = (double)clock / ((hact + hbl) * (double)(vact + vbl));
    assert_true(hz > 59.0 && hz < 61.0);
    /* The range limits cover the preferred pixel clock. */
    assert_int_equal(e[75], 0xfd);
    assert_true(e[72 + 9] * 10000000u >= clock);
    /* A monitor name descriptor */
    assert_int_equal(e[93], 0xfc);
    assert_int_equal(e[126], 0);
}

/* Whether the standard timings of @e list @w x @h. */
static bool has_std(const uint8_t *e, unsigned w, unsigned h)
{
    static const unsigned num[4] = {10, 3, 4, 9}, den[4] = {16, 4, 5, 16};
    for (unsigned i = 0; i < 8; i++) {
        const uint8_t *t = e + 38 + 2 * i;
        if (t[0] == 1 && t[1] == 1)
            continue;
        unsigned tw = (t[0] + 31u) * 8, th = tw * num[t[1] >> 6] / den[t[1] >> 6];
        assert_int_equal(t[1] & 0x3f, 0); /* 60 Hz */
        if (tw == w && th == h)
            return true;
    }
    return false;
}

static void test_edid(void **state)
{
    (void)state;
    uint8_t e[128];
    vmm__edid_build(e, 1920, 1080);
    assert_true(has_std(e, 1280, 720));
    assert_true(has_std(e, 1600, 900));
    assert_false(has_std(e, 1920, 1200)); /* larger than the preferred mode */
    assert_false(has_std(e, 1920, 1080)); /* that one is the detailed timing */
    vmm__edid_build(e, 1024, 768);
    assert_false(has_std(e, 1280, 720));
    check_edid(1280, 800);
    check_edid(1920, 1080);
    check_edid(3840, 2160);
    check_edid(1024, 768);
    check_edid(320, 200);
}

static void test_bad_sizes(void **state)
{
    (void)state;
    vmm_vm_t *vm = fake_vm_new(1 << 20);
    struct vmm_bochs *b;
    assert_int_equal(vmm__pci_bus_create(vm), 0);
    assert_int_equal(vmm__bochs_create(vm, 3841, 2160, &b), -EINVAL);
    assert_int_equal(vmm__bochs_create(vm, 1280, 4000, &b), -EINVAL);
    assert_int_equal(vmm__bochs_create(vm, 0, 0, &b), -EINVAL);
    vmm__pci_teardown(vm);
    fake_vm_free(vm);
}

struct ctx {
    vmm_vm_t *vm;
    const struct dpy_fb_source *src;
    void *fb;
    uint64_t mmio, fbaddr;
};

static uint16_t dispi_r(struct ctx *c, unsigned idx)
{
    uint16_t v;
    fake_io(c->vm, VMM_IO_MMIO, c->mmio + 0x500 + 2 * idx, &v, 2, false);
    return v;
}

static void dispi_w(struct ctx *c, unsigned idx, uint16_t v)
{
    fake_io(c->vm, VMM_IO_MMIO, c->mmio + 0x500 + 2 * idx, &v, 2, true);
}

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    struct vmm_config cfg = {.fb_width = 1280, .fb_height = 800};
    c->vm = fake_vm_new(1 << 20);
    assert_int_equal(vmm__pci_setup(c->vm, &cfg), 0);
    c->src = vmm__pci_fb_source(c->vm, &c->fb);
    assert_non_null(c->src);
    assert_int_equal(cfg_read(c->vm, 1, 0, 4), 0x11111234);
    assert_int_equal(cfg_read(c->vm, 1, 0x0a, 2), 0x0380);
    cfg_write(c->vm, 1, 0x04, 2, 0x0002);
    c->fbaddr = cfg_read(c->vm, 1, 0x10, 4);
    assert_int_equal(c->fbaddr & 0xf, 0x8); /* 32-bit prefetchable */
    c->fbaddr &= ~0xfull;
    c->mmio = cfg_read(c->vm, 1, 0x18, 4) & ~0xfu;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    vmm__pci_teardown(c->vm);
    fake_vm_free(c->vm);
    free(c);
    return 0;
}

static void test_registers(void **state)
{
    struct ctx *c = *state;
    /* Framebuffer BAR: sizing, and the KVM slot follows the BAR. */
    assert_true(c->vm->slots[0].mapped);
    assert_true(c->vm->slots[0].dirty_log);
    assert_int_equal(c->vm->slots[0].gpa, c->fbaddr);
    cfg_write(c->vm, 1, 0x10, 4, 0xffffffff);
    uint32_t sz = ~(cfg_read(c->vm, 1, 0x10, 4) & ~0xfu) + 1;
    assert_int_equal(sz, 16u << 20);
    /* Sized with decoding on (Linux turns it off first; a guest may not): the slot follows. */
    assert_int_equal(c->vm->slots[0].gpa, 0xff000000);
    cfg_write(c->vm, 1, 0x10, 4, (uint32_t)c->fbaddr);
    assert_int_equal(c->vm->slots[0].gpa, c->fbaddr);
    cfg_write(c->vm, 1, 0x04, 2, 0);
    assert_false(c->vm->slots[0].mapped);
    cfg_write(c->vm, 1, 0x04, 2, 2);
    assert_true(c->vm->slots[0].mapped);

    /* EDID at BAR2 offset 0 (Linux's bochs driver checks the first two bytes). */
    uint8_t e[128];
    for (unsigned i = 0; i < 128; i++)
        fake_io(c->vm, VMM_IO_MMIO, c->mmio + i, &e[i], 1, false);
    assert_int_equal(e[0], 0);
    assert_int_equal(e[1], 0xff);
    assert_int_equal(e[56] | (e[58] >> 4) << 8, 1280);
    uint32_t q;
    fake_io(c->vm, VMM_IO_MMIO, c->mmio + 0x600, &q, 4, false);
    assert_int_equal(q, 8);
    fake_io(c->vm, VMM_IO_MMIO, c->mmio + 0x604, &q, 4, false);
    assert_int_equal(q, 0x1e1e1e1e);

    assert_int_equal(dispi_r(c, 0) & 0xfff0, 0xb0c0);
    assert_int_equal(dispi_r(c, 0xa), 256); /* 16 MiB in 64 KiB units */
    dispi_w(c, 0, 0x1234);                  /* the id is read-only here */
    assert_int_equal(dispi_r(c, 0), 0xb0c5);
    /* Out-of-range register indices and odd widths do not crash. */
    uint64_t junk = ~0ull;
    fake_io(c->vm, VMM_IO_MMIO, c->mmio + 0x516, &junk, 8, true);
    fake_io(c->vm, VMM_IO_MMIO, c->mmio + 0x501, &junk, 1, true);
    fake_io(c->vm, VMM_IO_MMIO, c->mmio + 0xff8, &junk, 8, false);
    assert_int_equal(junk, 0);
}

static void test_modes(void **state)
{
    struct ctx *c = *state;
    struct dpy_mode m;
    assert_false(c->src->get_mode(c->fb, &m)); /* nothing enabled yet */
    /* What Linux's bochs driver writes for a mode set. */
    dispi_w(c, 4, 0);
    dispi_w(c, 3, 32);
    dispi_w(c, 1, 1024);
    dispi_w(c, 2, 768);
    dispi_w(c, 5, 0);
    dispi_w(c, 6, 1024);
    dispi_w(c, 7, 768);
    dispi_w(c, 8, 0);
    dispi_w(c, 9, 0);
    dispi_w(c, 4, 0x41);
    assert_true(c->src->get_mode(c->fb, &m));
    assert_int_equal(m.width, 1024);
    assert_int_equal(m.height, 768);
    assert_int_equal(m.stride, 4096);
    uint64_t gen = m.generation;
    uint8_t *base = m.pixels;
    assert_true(c->src->get_mode(c->fb, &m));
    assert_int_equal(m.generation, gen);
    /* Page flip to the second buffer: a new generation, pixels further in. */
    dispi_w(c, 9, 768);
    assert_true(c->src->get_mode(c->fb, &m));
    assert_int_not_equal(m.generation, gen);
    assert_ptr_equal(m.pixels, base + 768 * 4096);
    /* A mode that does not fit the video memory, and 16 bpp, are not scanned out. */
    dispi_w(c, 9, 4000);
    assert_false(c->src->get_mode(c->fb, &m));
    dispi_w(c, 9, 0);
    dispi_w(c, 3, 16);
    assert_false(c->src->get_mode(c->fb, &m));
    dispi_w(c, 3, 32);
    dispi_w(c, 1, 0);
    assert_false(c->src->get_mode(c->fb, &m));
}

static void test_dirty_pages(void **state)
{
    struct ctx *c = *state;
    struct dpy_mode m;
    uint64_t bm[16];
    dispi_w(c, 3, 32);
    dispi_w(c, 1, 1024);
    dispi_w(c, 2, 768);
    dispi_w(c, 6, 1024);
    dispi_w(c, 4, 0x41);
    assert_true(c->src->get_mode(c->fb, &m));
    /* Guest wrote vram pages 3 and 200. */
    c->vm->slots[0].dirty[0] = 1ull << 3;
    c->vm->slots[0].dirty[3] = 1ull << (200 - 192);
    memset(bm, 0, sizeof(bm));
    assert_int_equal(c->src->get_dirty(c->fb, bm, 768), 0);
    assert_int_equal(bm[0], 1ull << 3);
    assert_int_equal(bm[3], 1ull << 8);
    /* Cleared by the read */
    memset(bm, 0, sizeof(bm));
    assert_int_equal(c->src->get_dirty(c->fb, bm, 768), 0);
    assert_int_equal(bm[0] | bm[3], 0);
    /* With the scan-out 768 lines in (page 768 of vram), vram page 770 is framebuffer page 2. */
    dispi_w(c, 9, 768);
    assert_true(c->src->get_mode(c->fb, &m));
    c->vm->slots[0].dirty[770 / 64] = 1ull << (770 % 64);
    memset(bm, 0, sizeof(bm));
    assert_int_equal(c->src->get_dirty(c->fb, bm, 768), 0);
    assert_int_equal(bm[0], 1ull << 2);
    /* BAR disabled: the caller is told to treat everything as dirty. */
    cfg_write(c->vm, 1, 0x04, 2, 0);
    assert_int_equal(c->src->get_dirty(c->fb, bm, 768), -ENODEV);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edid),
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test_setup_teardown(test_registers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dirty_pages, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
