/* Unit tests for vmm/pci.c and vmm/msix.c: config mechanism #1, config space, BAR sizing and
 * reprogramming, capability lists, the MSI-X table and pending bits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tests/unit/vmm/fake_vm.h"

struct dummy {
    struct vmm_pci_dev pci;
    struct vmm_msix msix;
    uint32_t reg[64];
    unsigned mapped_calls;
    bool destroyed;
};

static void dummy_mmio(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct dummy *d = opaque;
    if (off / 4 >= 64 || len != 4)
        return;
    if (is_write)
        memcpy(&d->reg[off / 4], data, 4);
    else
        memcpy(data, &d->reg[off / 4], 4);
}

static void dummy_bar_mapped(struct vmm_pci_dev *dev, unsigned bar, uint64_t gpa, bool mapped)
{
    (void)bar;
    (void)gpa;
    (void)mapped;
    vdi_container_of(dev, struct dummy, pci)->mapped_calls++;
}

static void dummy_destroy(struct vmm_pci_dev *dev)
{
    struct dummy *d = vdi_container_of(dev, struct dummy, pci);
    vmm__msix_destroy(&d->msix);
    d->destroyed = true;
}

static const struct vmm_pci_dev_ops dummy_ops = {
    .name = "dummy",
    .bar_mapped = dummy_bar_mapped,
    .destroy = dummy_destroy,
};

struct ctx {
    vmm_vm_t *vm;
    struct dummy d;
};

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    c->vm = fake_vm_new(1 << 20);
    assert_int_equal(vmm__pci_bus_create(c->vm), 0);
    vmm__pci_dev_init(&c->d.pci, &dummy_ops, c->vm, 0xabcd, 0x1234, 0x020000, 7, 0x1af4, 0x42);
    assert_int_equal(vmm__msix_init(&c->d.msix, c->vm, 4), 0);
    assert_int_equal(
        vmm__pci_bar_init(&c->d.pci, 0, VMM_PCI_BAR_MEM32, false, 0x1000, dummy_mmio, &c->d, -1),
        0);
    assert_int_equal(vmm__pci_bar_init(&c->d.pci, 1, VMM_PCI_BAR_MEM32, false, VMM_MSIX_BAR_SIZE,
                                       vmm__msix_mmio, &c->d.msix, -1),
                     0);
    assert_int_equal(
        vmm__pci_bar_init(&c->d.pci, 2, VMM_PCI_BAR_MEM64, true, 0x10000, dummy_mmio, &c->d, -1),
        0);
    uint8_t body[6] = {1, 2, 3, 4, 5, 6};
    assert_int_not_equal(vmm__pci_cap_add(&c->d.pci, 0x09, body, 8, NULL), 0);
    assert_int_equal(vmm__pci_msix_cap_add(&c->d.pci, &c->d.msix, 1), 0);
    assert_int_equal(vmm__pci_register(c->vm, &c->d.pci), 0);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    vmm__pci_teardown(c->vm);
    assert_true(c->d.destroyed);
    /* Teardown gave back the ports and every region. */
    for (int i = 0; i < FAKE_MAX_REGIONS; i++)
        assert_false(c->vm->regions[i].used);
    fake_vm_free(c->vm);
    free(c);
    return 0;
}

static void test_host_bridge_and_absent_slots(void **state)
{
    struct ctx *c = *state;
    assert_int_equal(cfg_read(c->vm, 0, 0, 4), 0x00081b36);
    assert_int_equal(cfg_read(c->vm, 0, 0x0a, 2), 0x0600);
    assert_int_equal(cfg_read(c->vm, 5, 0, 4), 0xffffffff);
    assert_int_equal(cfg_read(c->vm, 5, 0, 2), 0xffff);
    /* Function 1 of a present device and bus 1 are absent too. */
    uint32_t a = 0x80000000u | 1 << 11 | 1 << 8, v;
    fake_io(c->vm, VMM_IO_PIO, 0xcf8, &a, 4, true);
    fake_io(c->vm, VMM_IO_PIO, 0xcfc, &v, 4, false);
    assert_int_equal(v, 0xffffffff);
    a = 0x80000000u | 1 << 16;
    fake_io(c->vm, VMM_IO_PIO, 0xcf8, &a, 4, true);
    fake_io(c->vm, VMM_IO_PIO, 0xcfc, &v, 4, false);
    assert_int_equal(v, 0xffffffff);
    /* The latch reads back (Linux's mechanism #1 probe), and with bit 31 clear nothing answers. */
    a = 0x80000000u;
    fake_io(c->vm, VMM_IO_PIO, 0xcf8, &a, 4, true);
    fake_io(c->vm, VMM_IO_PIO, 0xcf8, &v, 4, false);
    assert_int_equal(v, 0x80000000u);
    a = 0;
    fake_io(c->vm, VMM_IO_PIO, 0xcf8, &a, 4, true);
    fake_io(c->vm, VMM_IO_PIO, 0xcfc, &v, 4, false);
    assert_int_equal(v, 0xffffffff);
}

static void test_header(void **state)
{
    struct ctx *c = *state;
    assert_int_equal(c->d.pci.slot, 1);
    assert_int_equal(cfg_read(c->vm, 1, 0, 4), 0x1234abcd);
    assert_int_equal(cfg_read(c->vm, 1, 8, 4), 0x02000007);
    assert_int_equal(cfg_read(c->vm, 1, 0x2c, 4), 0x00421af4);
    assert_int_equal(cfg_read(c->vm, 1, 0x3d, 1), 1);
    /* Read-only fields stay put. */
    cfg_write(c->vm, 1, 0, 4, 0xffffffff);
    assert_int_equal(cfg_read(c->vm, 1, 0, 4), 0x1234abcd);
    cfg_write(c->vm, 1, 0x3c, 1, 0x0b);
    assert_int_equal(cfg_read(c->vm, 1, 0x3c, 1), 0x0b);
    /* Unaligned sub-dword reads through 0xcfd..0xcff */
    assert_int_equal(cfg_read(c->vm, 1, 0x01, 1), 0xab);
    assert_int_equal(cfg_read(c->vm, 1, 0x02, 2), 0x1234);
}

static void test_capability_list(void **state)
{
    struct ctx *c = *state;
    assert_true(cfg_read(c->vm, 1, 0x06, 2) & 0x10);
    unsigned p = cfg_read(c->vm, 1, 0x34, 1), n = 0;
    bool saw_msix = false, saw_vendor = false;
    while (p && n++ < 48) {
        unsigned id = cfg_read(c->vm, 1, p, 1);
        saw_msix |= id == 0x11;
        saw_vendor |= id == 0x09;
        if (id == 0x11) {
            assert_int_equal(cfg_read(c->vm, 1, p + 2, 2) & 0x7ff, 3); /* 4 vectors */
            assert_int_equal(cfg_read(c->vm, 1, p + 4, 4), 1);         /* BAR1, offset 0 */
            assert_int_equal(cfg_read(c->vm, 1, p + 8, 4), 0x801);
        }
        if (id == 0x09)
            assert_int_equal(cfg_read(c->vm, 1, p + 2, 1), 1);
        p = cfg_read(c->vm, 1, p + 1, 1);
    }
    assert_true(saw_msix);
    assert_true(saw_vendor);
}

static void test_bar_sizing(void **state)
{
    struct ctx *c = *state;
    uint32_t bar0 = cfg_read(c->vm, 1, 0x10, 4);
    assert_int_equal(bar0 & 0xfff, 0);
    assert_true(bar0 >= VMM_PCI_MMIO_BASE && bar0 < VMM_PCI_MMIO_END);
    cfg_write(c->vm, 1, 0x10, 4, 0xffffffff);
    assert_int_equal(cfg_read(c->vm, 1, 0x10, 4), 0xfffff000);
    /* 64-bit prefetchable BAR2/3: flags 0xc, size 64 KiB */
    uint32_t lo = cfg_read(c->vm, 1, 0x18, 4);
    assert_int_equal(lo & 0xf, 0xc);
    cfg_write(c->vm, 1, 0x18, 4, 0xffffffff);
    cfg_write(c->vm, 1, 0x1c, 4, 0xffffffff);
    assert_int_equal(cfg_read(c->vm, 1, 0x18, 4), 0xffff000c);
    assert_int_equal(cfg_read(c->vm, 1, 0x1c, 4), 0xffffffff);
    /* Unused BARs and the ROM BAR size to zero. */
    cfg_write(c->vm, 1, 0x24, 4, 0xffffffff);
    assert_int_equal(cfg_read(c->vm, 1, 0x24, 4), 0);
    cfg_write(c->vm, 1, 0x30, 4, 0xffffffff);
    assert_int_equal(cfg_read(c->vm, 1, 0x30, 4), 0);
    /* Sizing with decoding off maps nothing. */
    assert_null(fake_region_at(c->vm, VMM_IO_MMIO, 0xfffff000));
}

static void test_bar_decoding_and_move(void **state)
{
    struct ctx *c = *state;
    uint32_t bar0 = cfg_read(c->vm, 1, 0x10, 4), v = 0x5a5a;
    assert_null(fake_region_at(c->vm, VMM_IO_MMIO, bar0));
    cfg_write(c->vm, 1, 0x04, 2, 0x0006); /* memory + bus master */
    assert_non_null(fake_region_at(c->vm, VMM_IO_MMIO, bar0));
    fake_io(c->vm, VMM_IO_MMIO, bar0 + 8, &v, 4, true);
    assert_int_equal(c->d.reg[2], 0x5a5a);

    /* The guest moves BAR0 while decoding is on. */
    cfg_write(c->vm, 1, 0x10, 4, 0xd0000000);
    assert_null(fake_region_at(c->vm, VMM_IO_MMIO, bar0));
    assert_non_null(fake_region_at(c->vm, VMM_IO_MMIO, 0xd0000000));
    v = 0;
    fake_io(c->vm, VMM_IO_MMIO, 0xd0000008, &v, 4, false);
    assert_int_equal(v, 0x5a5a);

    /* Onto another BAR: refused by the core, left unmapped, no crash; moving away recovers. */
    uint32_t bar1 = cfg_read(c->vm, 1, 0x14, 4);
    cfg_write(c->vm, 1, 0x10, 4, bar1);
    assert_int_equal(fake_region_at(c->vm, VMM_IO_MMIO, bar1)->fn, vmm__msix_mmio);
    cfg_write(c->vm, 1, 0x10, 4, 0xd1000000);
    assert_non_null(fake_region_at(c->vm, VMM_IO_MMIO, 0xd1000000));

    /* 64-bit BAR above 4 GiB */
    cfg_write(c->vm, 1, 0x18, 4, 0x00000000);
    cfg_write(c->vm, 1, 0x1c, 4, 0x1);
    assert_non_null(fake_region_at(c->vm, VMM_IO_MMIO, 0x100000000ull));

    /* Decoding off: everything goes. */
    unsigned calls = c->d.mapped_calls;
    cfg_write(c->vm, 1, 0x04, 2, 0x0000);
    assert_null(fake_region_at(c->vm, VMM_IO_MMIO, 0xd1000000));
    assert_null(fake_region_at(c->vm, VMM_IO_MMIO, 0x100000000ull));
    assert_true(c->d.mapped_calls > calls);
}

static void test_msix_table_and_pba(void **state)
{
    struct ctx *c = *state;
    uint32_t bar1 = cfg_read(c->vm, 1, 0x14, 4) & ~0xfu;
    unsigned cap = c->d.pci.msix_cap;
    uint32_t v;

    cfg_write(c->vm, 1, 0x04, 2, 0x0006);
    /* Power-on: vectors masked. */
    fake_io(c->vm, VMM_IO_MMIO, bar1 + 12, &v, 4, false);
    assert_int_equal(v, 1);
    /* Program vector 2 while MSI-X is off; raise it: pending, nothing sent. */
    v = 0xfee00000;
    fake_io(c->vm, VMM_IO_MMIO, bar1 + 32, &v, 4, true);
    v = 0;
    fake_io(c->vm, VMM_IO_MMIO, bar1 + 36, &v, 4, true);
    v = 0x4041;
    fake_io(c->vm, VMM_IO_MMIO, bar1 + 40, &v, 4, true);
    vmm__msix_notify(&c->d.msix, 2);
    uint64_t pba = 0;
    fake_io(c->vm, VMM_IO_MMIO, bar1 + VMM_MSIX_PBA_OFFSET, &pba, 8, false);
    assert_int_equal(pba, 4);
    /* Enable MSI-X: vector 2 still masked. */
    cfg_write(c->vm, 1, cap + 2, 2, 0x8000);
    assert_true(vmm__msix_enabled(&c->d.msix));
    assert_int_equal(c->vm->msi_sent, 0);
    /* Unmask: the pending interrupt goes out through the irqfd route. */
    v = 0;
    fake_io(c->vm, VMM_IO_MMIO, bar1 + 44, &v, 4, true);
    assert_true(c->d.msix.routed[2]);
    uint32_t gsi = c->d.msix.gsi[2];
    assert_int_equal(c->vm->routes[gsi].addr, 0xfee00000);
    assert_int_equal(c->vm->routes[gsi].data, 0x4041);
    assert_int_equal(fake_irqfd_count(c->vm, gsi), 1);
    fake_io(c->vm, VMM_IO_MMIO, bar1 + VMM_MSIX_PBA_OFFSET, &pba, 8, false);
    assert_int_equal(pba, 0);
    vmm__msix_notify(&c->d.msix, 2);
    assert_int_equal(fake_irqfd_count(c->vm, gsi), 1);
    /* The guest retargets the vector: the route follows. */
    v = 0x4052;
    fake_io(c->vm, VMM_IO_MMIO, bar1 + 40, &v, 4, true);
    assert_int_equal(c->vm->routes[gsi].data, 0x4052);
    /* Function mask holds interrupts back; clearing it delivers them. */
    cfg_write(c->vm, 1, cap + 2, 2, 0xc000);
    vmm__msix_notify(&c->d.msix, 2);
    assert_int_equal(fake_irqfd_count(c->vm, gsi), 0);
    cfg_write(c->vm, 1, cap + 2, 2, 0x8000);
    assert_int_equal(fake_irqfd_count(c->vm, gsi), 1);
    /* Writes to the PBA and out-of-range vectors are ignored; odd accesses do not crash. */
    pba = ~0ull;
    fake_io(c->vm, VMM_IO_MMIO, bar1 + VMM_MSIX_PBA_OFFSET, &pba, 8, true);
    fake_io(c->vm, VMM_IO_MMIO, bar1 + VMM_MSIX_PBA_OFFSET, &pba, 8, false);
    assert_int_equal(pba, 0);
    vmm__msix_notify(&c->d.msix, 4);
    vmm__msix_notify(&c->d.msix, VMM_MSIX_NO_VECTOR);
    uint8_t b = 0xff;
    fake_io(c->vm, VMM_IO_MMIO, bar1 + 1, &b, 1, true);
    fake_io(c->vm, VMM_IO_MMIO, bar1 + 0x7f0, &v, 4, true);
    /* Only the mask bit of Vector Control is writable. */
    v = 0xfffffffe;
    fake_io(c->vm, VMM_IO_MMIO, bar1 + 44, &v, 4, true);
    fake_io(c->vm, VMM_IO_MMIO, bar1 + 44, &v, 4, false);
    assert_int_equal(v, 0);
}

static void test_msix_without_routes(void **state)
{
    struct ctx *c = *state;
    uint32_t bar1 = cfg_read(c->vm, 1, 0x14, 4) & ~0xfu, v;
    c->vm->fail_route_add = true;
    cfg_write(c->vm, 1, 0x04, 2, 0x0006);
    cfg_write(c->vm, 1, c->d.pci.msix_cap + 2, 2, 0x8000);
    v = 0xfee01000;
    fake_io(c->vm, VMM_IO_MMIO, bar1, &v, 4, true);
    v = 0x31;
    fake_io(c->vm, VMM_IO_MMIO, bar1 + 8, &v, 4, true);
    v = 0;
    fake_io(c->vm, VMM_IO_MMIO, bar1 + 12, &v, 4, true);
    vmm__msix_notify(&c->d.msix, 0);
    assert_int_equal(c->vm->msi_sent, 1);
    assert_int_equal(c->vm->last_msi_addr, 0xfee01000);
    assert_int_equal(c->vm->last_msi_data, 0x31);
}

static void test_intx(void **state)
{
    struct ctx *c = *state;
    unsigned gsi = cfg_read(c->vm, 1, 0x3c, 1);
    assert_true(gsi >= 16 && gsi < 24);
    vmm__pci_intx(&c->d.pci, true);
    assert_true(c->vm->irq_level[gsi]);
    vmm__pci_intx(&c->d.pci, false);
    assert_false(c->vm->irq_level[gsi]);
    /* INTx Disable in Command keeps the line low. */
    cfg_write(c->vm, 1, 0x04, 2, 0x0400);
    vmm__pci_intx(&c->d.pci, true);
    assert_false(c->vm->irq_level[gsi]);
}

static void test_garbage_port_accesses(void **state)
{
    struct ctx *c = *state;
    uint8_t b[4] = {1, 2, 3, 4};
    uint32_t a = cfg_addr(1, 0xfc);
    /* Byte writes to 0xcf8..0xcfb (mechanism #2 probes), and a dword at 0xcfd running off the
     * end of config space. */
    for (unsigned p = 0; p < 4; p++)
        fake_io(c->vm, VMM_IO_PIO, 0xcf8 + p, b, 1, true);
    fake_io(c->vm, VMM_IO_PIO, 0xcf8, &a, 4, true);
    fake_io(c->vm, VMM_IO_PIO, 0xcfd, b, 2, true);
    fake_io(c->vm, VMM_IO_PIO, 0xcfe, b, 2, false);
    assert_int_equal(cfg_read(c->vm, 1, 0, 4), 0x1234abcd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_host_bridge_and_absent_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capability_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bar_decoding_and_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msix_table_and_pba, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msix_without_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_intx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_port_accesses, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
