/* tests/unit/vmm/fake_vm.h: a fake of the VMM core's half of vmm/internal.h, for unit tests of
 * the PCI side without KVM. Include it from exactly one .c per test binary: it defines the
 * functions (guest RAM is a malloc'd buffer, I/O regions a table the test dispatches through,
 * MSIs, irqfds, ioeventfds and I/O-thread fds are recorded). */
#ifndef VDI_TESTS_FAKE_VM_H
#define VDI_TESTS_FAKE_VM_H

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/pci-internal.h"

#define FAKE_MAX_REGIONS 128
#define FAKE_MAX_SLOTS   8
#define FAKE_MAX_FDS     64
#define FAKE_MAX_ROUTES  256

struct vmm_io_region {
    vmm_vm_t *vm;
    enum vmm_io_space space;
    uint64_t base, size;
    vmm_io_fn fn;
    void *opaque;
    bool used;
};

struct fake_fd {
    int fd;
    vmm_fd_fn fn;
    void *opaque;
};

struct fake_ioeventfd {
    int fd;
    uint64_t addr;
    uint32_t len;
};

struct vmm_vm {
    uint8_t *ram;
    uint64_t ram_size;
    struct vmm_io_region regions[FAKE_MAX_REGIONS];
    struct {
        void *hva;
        uint64_t size;
        bool dirty_log, mapped;
        uint64_t gpa;
        uint64_t *dirty; /* set by tests */
    } slots[FAKE_MAX_SLOTS];
    int nslots;
    struct fake_fd fds[FAKE_MAX_FDS];
    int nfds;
    struct fake_ioeventfd ioev[FAKE_MAX_FDS];
    int nioev;
    struct {
        bool used;
        uint64_t addr;
        uint32_t data;
        int irqfd;
    } routes[FAKE_MAX_ROUTES];
    unsigned msi_sent;
    uint64_t last_msi_addr;
    uint32_t last_msi_data;
    bool irq_level[24];
    bool fail_route_add;
    int stops;
    /* Events posted with vmm__vm_event(): how many, and the last one. */
    int nevents;
    enum vmm_event last_event;
    char last_reason[200];
};

static inline vmm_vm_t *fake_vm_new(uint64_t ram_size)
{
    vmm_vm_t *vm = calloc(1, sizeof(*vm));
    vm->ram = calloc(1, ram_size);
    vm->ram_size = ram_size;
    return vm;
}

static inline void fake_vm_free(vmm_vm_t *vm)
{
    for (int i = 0; i < vm->nslots; i++)
        free(vm->slots[i].dirty);
    free(vm->ram);
    free(vm);
}

int vmm__io_add(vmm_vm_t *vm, enum vmm_io_space space, uint64_t base, uint64_t size, vmm_io_fn fn,
                void *opaque, vmm_io_region_t **out)
{
    for (int i = 0; i < FAKE_MAX_REGIONS; i++) {
        struct vmm_io_region *r = &vm->regions[i];
        if (r->used && r->space == space && base < r->base + r->size && r->base < base + size)
            return -EEXIST;
    }
    for (int i = 0; i < FAKE_MAX_REGIONS; i++) {
        struct vmm_io_region *r = &vm->regions[i];
        if (!r->used) {
            *r = (struct vmm_io_region){vm, space, base, size, fn, opaque, true};
            *out = r;
            return 0;
        }
    }
    return -ENOSPC;
}

int vmm__io_move(vmm_io_region_t *r, uint64_t new_base)
{
    vmm_vm_t *vm = r->vm;
    for (int i = 0; i < FAKE_MAX_REGIONS; i++) {
        struct vmm_io_region *o = &vm->regions[i];
        if (o != r && o->used && o->space == r->space && new_base < o->base + o->size &&
            o->base < new_base + r->size)
            return -EEXIST;
    }
    r->base = new_base;
    return 0;
}

void vmm__io_del(vmm_io_region_t *r)
{
    if (r)
        r->used = false;
}

/* Dispatch an access like the core would; returns false if nothing claims the address. */
static inline bool fake_io(vmm_vm_t *vm, enum vmm_io_space space, uint64_t addr, void *data,
                           uint32_t len, bool is_write)
{
    for (int i = 0; i < FAKE_MAX_REGIONS; i++) {
        struct vmm_io_region *r = &vm->regions[i];
        if (r->used && r->space == space && addr >= r->base && addr + len <= r->base + r->size) {
            r->fn(r->opaque, addr - r->base, data, len, is_write);
            return true;
        }
    }
    if (!is_write)
        memset(data, 0xff, len);
    return false;
}

static inline struct vmm_io_region *fake_region_at(vmm_vm_t *vm, enum vmm_io_space space,
                                                   uint64_t addr)
{
    for (int i = 0; i < FAKE_MAX_REGIONS; i++) {
        struct vmm_io_region *r = &vm->regions[i];
        if (r->used && r->space == space && addr >= r->base && addr < r->base + r->size)
            return r;
    }
    return NULL;
}

void *vmm__gpa_ptr(vmm_vm_t *vm, uint64_t gpa, uint64_t len)
{
    if (gpa > vm->ram_size || len > vm->ram_size - gpa)
        return NULL;
    return vm->ram + gpa;
}

uint64_t vmm__ram_size(const vmm_vm_t *vm)
{
    return vm->ram_size;
}

int vmm__memslot_add(vmm_vm_t *vm, void *hva, uint64_t size, bool dirty_log, int *slot_out)
{
    if (vm->nslots == FAKE_MAX_SLOTS)
        return -ENOSPC;
    int s = vm->nslots++;
    vm->slots[s].hva = hva;
    vm->slots[s].size = size;
    vm->slots[s].dirty_log = dirty_log;
    vm->slots[s].dirty = calloc((size / 4096 + 63) / 64, 8);
    *slot_out = s;
    return 0;
}

int vmm__memslot_map(vmm_vm_t *vm, int slot, uint64_t gpa)
{
    if (gpa < vm->ram_size)
        return -EEXIST;
    vm->slots[slot].mapped = true;
    vm->slots[slot].gpa = gpa;
    return 0;
}

int vmm__memslot_unmap(vmm_vm_t *vm, int slot)
{
    vm->slots[slot].mapped = false;
    return 0;
}

int vmm__memslot_get_dirty(vmm_vm_t *vm, int slot, uint64_t *bitmap)
{
    size_t words = (vm->slots[slot].size / 4096 + 63) / 64;
    if (!vm->slots[slot].mapped)
        return -ENODEV;
    memcpy(bitmap, vm->slots[slot].dirty, words * 8);
    memset(vm->slots[slot].dirty, 0, words * 8);
    return 0;
}

int vmm__irq_line(vmm_vm_t *vm, uint32_t gsi, bool level)
{
    if (gsi < 24)
        vm->irq_level[gsi] = level;
    return 0;
}

int vmm__msi_send(vmm_vm_t *vm, uint64_t addr, uint32_t data)
{
    vm->msi_sent++;
    vm->last_msi_addr = addr;
    vm->last_msi_data = data;
    return 0;
}

int vmm__msi_route_add(vmm_vm_t *vm, uint64_t addr, uint32_t data, uint32_t *gsi_out)
{
    if (vm->fail_route_add)
        return -ENOSPC;
    for (uint32_t g = 24; g < FAKE_MAX_ROUTES; g++) {
        if (!vm->routes[g].used) {
            vm->routes[g].used = true;
            vm->routes[g].addr = addr;
            vm->routes[g].data = data;
            vm->routes[g].irqfd = -1;
            *gsi_out = g;
            return 0;
        }
    }
    return -ENOSPC;
}

int vmm__msi_route_set(vmm_vm_t *vm, uint32_t gsi, uint64_t addr, uint32_t data)
{
    if (gsi >= FAKE_MAX_ROUTES || !vm->routes[gsi].used)
        return -EINVAL;
    vm->routes[gsi].addr = addr;
    vm->routes[gsi].data = data;
    return 0;
}

void vmm__msi_route_del(vmm_vm_t *vm, uint32_t gsi)
{
    if (gsi < FAKE_MAX_ROUTES)
        vm->routes[gsi].used = false;
}

int vmm__irqfd(vmm_vm_t *vm, int fd, uint32_t gsi, bool assign)
{
    if (gsi >= FAKE_MAX_ROUTES || !vm->routes[gsi].used)
        return -EINVAL;
    vm->routes[gsi].irqfd = assign ? fd : -1;
    return 0;
}

/* Interrupts delivered through irqfd @gsi's eventfd since the last call (reads the counter). */
static inline uint64_t fake_irqfd_count(vmm_vm_t *vm, uint32_t gsi)
{
    uint64_t n = 0;
    if (gsi < FAKE_MAX_ROUTES && vm->routes[gsi].irqfd >= 0 &&
        read(vm->routes[gsi].irqfd, &n, 8) != 8)
        n = 0;
    return n;
}

int vmm__ioeventfd(vmm_vm_t *vm, int fd, enum vmm_io_space space, uint64_t addr, uint32_t len,
                   bool assign)
{
    (void)space;
    if (assign) {
        if (vm->nioev == FAKE_MAX_FDS)
            return -ENOSPC;
        vm->ioev[vm->nioev++] = (struct fake_ioeventfd){fd, addr, len};
        return 0;
    }
    for (int i = 0; i < vm->nioev; i++) {
        if (vm->ioev[i].fd == fd && vm->ioev[i].addr == addr) {
            vm->ioev[i] = vm->ioev[--vm->nioev];
            return 0;
        }
    }
    return -ENOENT;
}

/* A guest write to an MMIO address: an ioeventfd of the same length takes it, else the region. */
static inline void fake_mmio_write(vmm_vm_t *vm, uint64_t addr, const void *data, uint32_t len)
{
    for (int i = 0; i < vm->nioev; i++) {
        if (vm->ioev[i].addr == addr && vm->ioev[i].len == len) {
            uint64_t one = 1;
            if (write(vm->ioev[i].fd, &one, 8) != 8)
                abort();
            return;
        }
    }
    uint8_t buf[8];
    memcpy(buf, data, len);
    fake_io(vm, VMM_IO_MMIO, addr, buf, len, true);
}

int vmm__iothread_add_fd(vmm_vm_t *vm, int fd, vmm_fd_fn fn, void *opaque)
{
    if (vm->nfds == FAKE_MAX_FDS)
        return -ENOSPC;
    vm->fds[vm->nfds++] = (struct fake_fd){fd, fn, opaque};
    return 0;
}

void vmm__iothread_del_fd(vmm_vm_t *vm, int fd)
{
    for (int i = 0; i < vm->nfds; i++) {
        if (vm->fds[i].fd == fd) {
            vm->fds[i] = vm->fds[--vm->nfds];
            return;
        }
    }
}

/* Run the callbacks of every readable fd once, as the I/O thread would; returns how many ran. */
static inline int fake_iothread_run(vmm_vm_t *vm)
{
    int ran = 0;
    for (int i = 0; i < vm->nfds; i++) {
        struct pollfd p = {.fd = vm->fds[i].fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
            vm->fds[i].fn(vm->fds[i].opaque);
            ran++;
        }
    }
    return ran;
}

void vmm__vm_request_stop(vmm_vm_t *vm, enum vmm_stop_reason reason, const char *why)
{
    (void)reason;
    (void)why;
    vm->stops++;
}

void vmm__vm_event(vmm_vm_t *vm, enum vmm_event ev, const char *reason)
{
    vm->nevents++;
    vm->last_event = ev;
    snprintf(vm->last_reason, sizeof(vm->last_reason), "%s", reason ? reason : "");
}

const char *vmm__vm_name(const vmm_vm_t *vm)
{
    (void)vm;
    return "test";
}

/* Config-space helpers through ports 0xcf8/0xcfc, as a guest does it. */
static inline uint32_t cfg_addr(unsigned slot, unsigned reg)
{
    return 0x80000000u | slot << 11 | (reg & 0xfc);
}

static inline uint32_t cfg_read(vmm_vm_t *vm, unsigned slot, unsigned reg, unsigned len)
{
    uint32_t a = cfg_addr(slot, reg), v = 0;
    fake_io(vm, VMM_IO_PIO, 0xcf8, &a, 4, true);
    fake_io(vm, VMM_IO_PIO, 0xcfc + (reg & 3), &v, len, false);
    return len == 4 ? v : v & ((1u << (8 * len)) - 1);
}

static inline void cfg_write(vmm_vm_t *vm, unsigned slot, unsigned reg, unsigned len, uint32_t v)
{
    uint32_t a = cfg_addr(slot, reg);
    fake_io(vm, VMM_IO_PIO, 0xcf8, &a, 4, true);
    fake_io(vm, VMM_IO_PIO, 0xcfc + (reg & 3), &v, len, true);
}

#endif /* VDI_TESTS_FAKE_VM_H */
