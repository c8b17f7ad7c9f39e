/* tests/unit/vmm/test_io.c: the core's port/MMIO dispatch (io.c) and I/O thread (iothread.c)
 * without KVM: overlapping claims refused, moves checked, offsets relative to the region, nothing
 * there reads as all-ones, deleted regions stop answering; a guest toggling and moving a PCI BAR
 * (pci.c over the real io.c) 100,000 times leaves the number of region objects where it was; fd
 * callbacks run on the I/O thread and removal waits for a running callback. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "tests/unit/vmm/bare_vm.h"
#include "vmm/pci-internal.h"

struct hits {
    unsigned n;
    uint64_t last_off;
    uint32_t last_len;
    bool last_write;
    uint8_t fill;
};

static void handler(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct hits *h = opaque;
    h->n++;
    h->last_off = off;
    h->last_len = len;
    h->last_write = is_write;
    if (!is_write)
        memset(data, h->fill, len);
}

static void test_dispatch(void **state)
{
    struct hits a = {.fill = 0x11}, b = {.fill = 0x22};
    vmm_io_region_t *ra, *rb;
    uint8_t buf[8];
    (void)state;
    vmm_vm_t *vm = bare_vm_new();

    assert_int_equal(vmm__io_add(vm, VMM_IO_PIO, 0x3f8, 8, handler, &a, &ra), 0);
    /* Overlaps in the same space are refused; the same range in the other space is fine. */
    assert_int_equal(vmm__io_add(vm, VMM_IO_PIO, 0x3fc, 8, handler, &b, NULL), -EEXIST);
    assert_int_equal(vmm__io_add(vm, VMM_IO_PIO, 0x3f0, 9, handler, &b, NULL), -EEXIST);
    assert_int_equal(vmm__io_add(vm, VMM_IO_PIO, 0x3f8, 0, handler, &b, NULL), -EINVAL);
    assert_int_equal(vmm__io_add(vm, VMM_IO_MMIO, 0x3f8, 8, handler, &b, &rb), 0);

    vmm__io_dispatch(vm, VMM_IO_PIO, 0x3fd, buf, 1, false);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.last_off, 5);
    assert_int_equal(buf[0], 0x11);
    vmm__io_dispatch(vm, VMM_IO_MMIO, 0x3f8, buf, 4, true);
    assert_int_equal(b.n, 1);
    assert_true(b.last_write && b.last_len == 4 && b.last_off == 0);

    /* Nothing there: all-ones, no handler runs. */
    memset(buf, 0, sizeof(buf));
    vmm__io_dispatch(vm, VMM_IO_PIO, 0x1234, buf, 2, false);
    assert_int_equal(buf[0], 0xff);
    assert_int_equal(buf[1], 0xff);
    assert_int_equal(a.n + b.n, 2);

    /* Moves: into another region refused (unchanged), elsewhere accepted. */
    assert_int_equal(vmm__io_add(vm, VMM_IO_MMIO, 0x1000, 0x100, handler, &a, NULL), 0);
    assert_int_equal(vmm__io_move(rb, 0x10f8), -EEXIST);
    vmm__io_dispatch(vm, VMM_IO_MMIO, 0x3f9, buf, 1, false);
    assert_int_equal(b.n, 2);
    assert_int_equal(vmm__io_move(rb, 0x2000), 0);
    vmm__io_dispatch(vm, VMM_IO_MMIO, 0x2003, buf, 1, false);
    assert_int_equal(b.n, 3);
    assert_int_equal(b.last_off, 3);
    vmm__io_dispatch(vm, VMM_IO_MMIO, 0x3f9, buf, 1, false);
    assert_int_equal(b.n, 3);
    assert_int_equal(buf[0], 0xff);

    /* Deleted: gone, and its range can be claimed again. */
    vmm__io_del(ra);
    vmm__io_dispatch(vm, VMM_IO_PIO, 0x3f8, buf, 1, false);
    assert_int_equal(a.n, 1);
    assert_int_equal(vmm__io_add(vm, VMM_IO_PIO, 0x3f8, 8, handler, &b, NULL), 0);
    vmm__vm_destroy(vm);
}

/* ---- A PCI device with two MMIO BARs on the real bus and the real io.c ------------------- */
struct bardev {
    struct vmm_pci_dev pci;
    struct hits hits;
};

static void bardev_destroy(struct vmm_pci_dev *dev)
{
    VDI_UNUSED(dev);
}

static const struct vmm_pci_dev_ops bardev_ops = {
    .name = "test-bars",
    .destroy = bardev_destroy,
};

/* Config access through ports 0xcf8/0xcfc, as a guest does it. */
static void cfg_out(vmm_vm_t *vm, unsigned slot, unsigned reg, uint32_t len, uint32_t v)
{
    uint32_t a = 0x80000000u | slot << 11 | (reg & 0xfc);
    vmm__io_dispatch(vm, VMM_IO_PIO, 0xcf8, &a, 4, true);
    vmm__io_dispatch(vm, VMM_IO_PIO, 0xcfc + (reg & 3), &v, len, true);
}

static uint32_t cfg_in(vmm_vm_t *vm, unsigned slot, unsigned reg)
{
    uint32_t a = 0x80000000u | slot << 11 | (reg & 0xfc), v = 0;
    vmm__io_dispatch(vm, VMM_IO_PIO, 0xcf8, &a, 4, true);
    vmm__io_dispatch(vm, VMM_IO_PIO, 0xcfc, &v, 4, false);
    return v;
}

static void test_bar_toggling_is_bounded(void **state)
{
    (void)state;
    vmm_vm_t *vm = bare_vm_new();
    struct bardev dev;
    uint8_t buf[4];
    assert_int_equal(vmm__pci_bus_create(vm), 0);
    vmm__pci_dev_init(&dev.pci, &bardev_ops, vm, 0x1234, 0x5678, 0xff0000, 0, 0, 0);
    memset(&dev.hits, 0, sizeof(dev.hits));
    dev.hits.fill = 0x5a;
    assert_int_equal(
        vmm__pci_bar_init(&dev.pci, 0, VMM_PCI_BAR_MEM32, false, 0x1000, handler, &dev.hits, -1),
        0);
    assert_int_equal(
        vmm__pci_bar_init(&dev.pci, 2, VMM_PCI_BAR_MEM64, true, 0x4000, handler, &dev.hits, -1), 0);
    assert_int_equal(vmm__pci_register(vm, &dev.pci), 0);
    const unsigned slot = dev.pci.slot;
    const uint32_t bar0 = cfg_in(vm, slot, 0x10) & ~0xfu, bar2 = cfg_in(vm, slot, 0x18) & ~0xfu;
    const uint32_t away = 0xd0000000u; /* free space in the PCI window */

    cfg_out(vm, slot, 0x04, 2, 0x0002); /* Memory Space on */
    const size_t live = vmm__io_region_count(vm);
    assert_int_equal(live, 2 + 2); /* 0xcf8, 0xcfc, BAR0, BAR2 */

    /* A guest playing with decoding and addresses in a loop: command off/on, BAR0 moved away
     * and back with decoding on, BAR2 moved with decoding off. */
    for (unsigned i = 0; i < 100000; i++) {
        cfg_out(vm, slot, 0x04, 2, 0x0000);
        cfg_out(vm, slot, 0x04, 2, 0x0002);
        cfg_out(vm, slot, 0x10, 4, away);
        cfg_out(vm, slot, 0x10, 4, bar0);
        cfg_out(vm, slot, 0x04, 2, 0x0000);
        cfg_out(vm, slot, 0x18, 4, away + 0x10000);
        cfg_out(vm, slot, 0x18, 4, bar2);
        cfg_out(vm, slot, 0x04, 2, 0x0002);
        if (i % 4096 == 0)
            assert_true(vmm__io_region_count(vm) <= live);
    }
    assert_int_equal(vmm__io_region_count(vm), live);

    /* The BARs still reach the device, at their own addresses only. */
    unsigned before = dev.hits.n;
    vmm__io_dispatch(vm, VMM_IO_MMIO, bar0 + 0x10, buf, 4, false);
    assert_int_equal(dev.hits.n, before + 1);
    assert_int_equal(dev.hits.last_off, 0x10);
    assert_int_equal(buf[0], 0x5a);
    vmm__io_dispatch(vm, VMM_IO_MMIO, bar2 + 0x3ffc, buf, 4, true);
    assert_int_equal(dev.hits.n, before + 2);
    assert_int_equal(dev.hits.last_off, 0x3ffc);
    vmm__io_dispatch(vm, VMM_IO_MMIO, away + 0x10, buf, 4, false);
    assert_int_equal(dev.hits.n, before + 2);
    assert_int_equal(buf[0], 0xff);

    /* Decoding off: nothing answers, and still no region piles up. */
    cfg_out(vm, slot, 0x04, 2, 0x0000);
    vmm__io_dispatch(vm, VMM_IO_MMIO, bar0, buf, 4, false);
    assert_int_equal(dev.hits.n, before + 2);
    assert_int_equal(vmm__io_region_count(vm), 2);
    vmm__pci_teardown(vm);
    assert_int_equal(vmm__io_region_count(vm), 0);
    vmm__vm_destroy(vm);
}

struct fdcb {
    int fd;
    atomic_uint calls;
    atomic_bool in_cb;
    useconds_t sleep_us;
};

static void on_fd(void *opaque)
{
    struct fdcb *c = opaque;
    uint64_t v;
    atomic_store(&c->in_cb, true);
    if (read(c->fd, &v, sizeof(v)) < 0) {
        /* spurious wake-up: fine */
    }
    if (c->sleep_us)
        usleep(c->sleep_us);
    atomic_fetch_add(&c->calls, 1);
    atomic_store(&c->in_cb, false);
}

static void test_iothread(void **state)
{
    struct fdcb c = {0};
    uint64_t one = 1;
    (void)state;
    vmm_vm_t *vm = bare_vm_new();
    assert_int_equal(vmm__iothread_init(vm), 0);
    assert_int_equal(vmm__iothread_start(vm), 0);
    c.fd = eventfd(0, EFD_NONBLOCK);
    assert_int_equal(vmm__iothread_add_fd(vm, c.fd, on_fd, &c), 0);
    assert_int_equal(vmm__iothread_add_fd(vm, c.fd, on_fd, &c), -EEXIST);
    assert_int_equal(write(c.fd, &one, sizeof(one)), 8);
    for (int i = 0; i < 200 && atomic_load(&c.calls) == 0; i++)
        usleep(5000);
    assert_int_equal(atomic_load(&c.calls), 1);

    /* Removal while the callback runs waits for it to finish. */
    c.sleep_us = 100000;
    assert_int_equal(write(c.fd, &one, sizeof(one)), 8);
    for (int i = 0; i < 200 && !atomic_load(&c.in_cb); i++)
        usleep(1000);
    vmm__iothread_del_fd(vm, c.fd);
    assert_false(atomic_load(&c.in_cb));
    assert_int_equal(atomic_load(&c.calls), 2);
    /* Removed: no more callbacks. */
    assert_int_equal(write(c.fd, &one, sizeof(one)), 8);
    usleep(50000);
    assert_int_equal(atomic_load(&c.calls), 2);
    close(c.fd);
    vmm__vm_destroy(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_bar_toggling_is_bounded),
        cmocka_unit_test(test_iothread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
