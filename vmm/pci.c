/* vmm/pci.c: the PCI bus of vdi-vmm: a host bridge on bus 0, configuration mechanism #1 at
 * ports 0xcf8/0xcfc, type-0 config space with BAR sizing and guest reprogramming, capability
 * lists, INTx, and the fixed list of devices a VM gets (vmm__pci_setup).
 *
 * Config space is a 256-byte image per device plus a mask of the bits the guest may write; BAR
 * sizing then falls out of the mask (the address bits below the BAR's size are read-only). After
 * each write the BARs' decoding is brought in line with the Command register and the BAR values:
 * MMIO BARs become vmm__io regions, RAM-backed BARs (the framebuffer) KVM memory slots. A BAR
 * the core refuses to place (overlap) stays unmapped until the guest moves it somewhere else.
 *
 * Locks: bus->lock serialises config access (the 0xcf8 latch is one per machine, as on real
 * hardware) and BAR decoding; under it a device's own lock may be taken. bus->intx_lock guards
 * the INTx line levels and is taken last.
 */
#define VDI_LOG_TAG "vmm"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "display/dpy.h"
#include "vmm/pci-internal.h"

#define PCI_COMMAND              0x04
#define PCI_COMMAND_MEMORY       0x2
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS               0x06
#define PCI_STATUS_CAP_LIST      0x10
#define PCI_BAR0                 0x10
#define PCI_CAP_PTR              0x34
#define PCI_INT_LINE             0x3c
#define PCI_INT_PIN              0x3d
#define PCI_CAP_ID_MSIX          0x11

struct pci_bus {
    vmm_vm_t *vm;
    struct pci_bus *next; /* registry of buses, one per VM */
    pthread_mutex_t lock;
    pthread_mutex_t intx_lock;
    uint32_t cf8;
    struct vmm_pci_dev *dev[VMM_PCI_MAX_DEVS];
    struct vmm_pci_dev bridge;
    vmm_io_region_t *cf8_region, *cfc_region;
    uint64_t mmio_next;
    uint32_t intx_mask[8]; /* per line: slots asserting it */
    /* Devices vmm__pci_setup made, for the display. */
    struct vmm_bochs *bochs;
    struct vmm_input_pair input;
    struct vmm_virtio_dev *agent; /* the guest agent's port, or NULL */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pci_bus *registry;

static struct pci_bus *bus_of(vmm_vm_t *vm)
{
    struct pci_bus *b;
    pthread_mutex_lock(&registry_lock);
    for (b = registry; b && b->vm != vm; b = b->next)
        ;
    pthread_mutex_unlock(&registry_lock);
    return b;
}

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static uint16_t get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

void vmm__pci_dev_init(struct vmm_pci_dev *dev, const struct vmm_pci_dev_ops *ops, vmm_vm_t *vm,
                       uint16_t vendor, uint16_t device, uint32_t class_code, uint8_t revision,
                       uint16_t subsys_vendor, uint16_t subsys_id)
{
    memset(dev, 0, sizeof(*dev));
    dev->ops = ops;
    dev->vm = vm;
    for (unsigned i = 0; i < 6; i++)
        dev->bar[i].memslot = -1;
    put16(dev->cfg + 0x00, vendor);
    put16(dev->cfg + 0x02, device);
    dev->cfg[0x08] = revision;
    dev->cfg[0x09] = class_code & 0xff;
    dev->cfg[0x0a] = (class_code >> 8) & 0xff;
    dev->cfg[0x0b] = (class_code >> 16) & 0xff;
    dev->cfg[0x0e] = 0; /* header type 0, single function */
    put16(dev->cfg + 0x2c, subsys_vendor);
    put16(dev->cfg + 0x2e, subsys_id);
    /* Command: I/O, memory, bus master, parity, SERR, INTx disable. */
    dev->wmask[PCI_COMMAND] = 0x47;
    dev->wmask[PCI_COMMAND + 1] = 0x05;
    dev->wmask[0x0c] = 0xff; /* cache line size */
    dev->wmask[0x0d] = 0xff; /* latency timer */
    dev->wmask[PCI_INT_LINE] = 0xff;
    dev->cap_end = 0x40;
}

int vmm__pci_bar_init(struct vmm_pci_dev *dev, unsigned idx, enum vmm_pci_bar_type type,
                      bool prefetch, uint64_t size, vmm_io_fn fn, void *opaque, int memslot)
{
    if (idx >= 6 || (type == VMM_PCI_BAR_MEM64 && idx >= 5) || type == VMM_PCI_BAR_NONE)
        return -EINVAL;
    if (size < 4096 || (size & (size - 1)) || (type == VMM_PCI_BAR_MEM32 && size > (1ull << 31)))
        return -EINVAL;
    struct vmm_pci_bar *b = &dev->bar[idx];
    b->type = type;
    b->prefetch = prefetch;
    b->size = size;
    b->fn = fn;
    b->opaque = opaque;
    b->memslot = memslot;
    uint32_t flags = (type == VMM_PCI_BAR_MEM64 ? 0x4 : 0) | (prefetch ? 0x8 : 0);
    uint8_t *c = dev->cfg + PCI_BAR0 + 4 * idx;
    put32(c, flags);
    put32(dev->wmask + PCI_BAR0 + 4 * idx, (uint32_t) ~(size - 1) & ~0xfu);
    if (type == VMM_PCI_BAR_MEM64)
        put32(dev->wmask + PCI_BAR0 + 4 * (idx + 1), (uint32_t)(~(size - 1) >> 32));
    return 0;
}

uint8_t vmm__pci_cap_add(struct vmm_pci_dev *dev, uint8_t id, const void *body, uint8_t len,
                         const uint8_t *wmask_body)
{
    uint8_t off = (dev->cap_end + 3) & ~3;
    if (len < 2 || (unsigned)off + len > 256)
        return 0;
    dev->cfg[off] = id;
    dev->cfg[off + 1] = 0;
    if (len > 2)
        memcpy(dev->cfg + off + 2, body, len - 2);
    if (wmask_body && len > 2)
        memcpy(dev->wmask + off + 2, wmask_body, len - 2);
    if (dev->cap_last)
        dev->cfg[dev->cap_last + 1] = off;
    else
        dev->cfg[PCI_CAP_PTR] = off;
    dev->cap_last = off;
    dev->cap_end = off + len;
    put16(dev->cfg + PCI_STATUS, get16(dev->cfg + PCI_STATUS) | PCI_STATUS_CAP_LIST);
    return off;
}

int vmm__pci_msix_cap_add(struct vmm_pci_dev *dev, struct vmm_msix *m, unsigned bar)
{
    uint8_t body[10], wm[10] = {0};
    put16(body, (uint16_t)(m->nvec - 1));
    put32(body + 2, 0 | bar);                   /* table at offset 0 of @bar */
    put32(body + 6, VMM_MSIX_PBA_OFFSET | bar); /* PBA after it */
    wm[1] = 0xc0;                               /* Message Control: enable, function mask */
    uint8_t off = vmm__pci_cap_add(dev, PCI_CAP_ID_MSIX, body, sizeof(body) + 2, wm);
    if (!off)
        return -ENOSPC;
    dev->msix = m;
    dev->msix_cap = off;
    return 0;
}

/* ---- BAR decoding ------------------------------------------------------------------------- */
static uint64_t bar_addr(const struct vmm_pci_dev *dev, unsigned i)
{
    uint64_t a = get32(dev->cfg + PCI_BAR0 + 4 * i) & ~0xfull;
    if (dev->bar[i].type == VMM_PCI_BAR_MEM64)
        a |= (uint64_t)get32(dev->cfg + PCI_BAR0 + 4 * (i + 1)) << 32;
    return a;
}

static void bar_unmap(struct vmm_pci_dev *dev, unsigned i)
{
    struct vmm_pci_bar *b = &dev->bar[i];
    if (!b->mapped)
        return;
    if (b->fn) {
        vmm__io_del(b->region);
        b->region = NULL;
    } else {
        vmm__memslot_unmap(dev->vm, b->memslot);
    }
    b->mapped = false;
    if (dev->ops->bar_mapped)
        dev->ops->bar_mapped(dev, i, b->mapped_at, false);
}

static int bar_map(struct vmm_pci_dev *dev, unsigned i, uint64_t gpa)
{
    struct vmm_pci_bar *b = &dev->bar[i];
    int err;
    if (b->fn)
        err = vmm__io_add(dev->vm, VMM_IO_MMIO, gpa, b->size, b->fn, b->opaque, &b->region);
    else
        err = vmm__memslot_map(dev->vm, b->memslot, gpa);
    if (err < 0)
        return err;
    b->mapped = true;
    b->mapped_at = gpa;
    if (dev->ops->bar_mapped)
        dev->ops->bar_mapped(dev, i, gpa, true);
    return 0;
}

static void update_decoding(struct vmm_pci_dev *dev)
{
    bool mem_on = get16(dev->cfg + PCI_COMMAND) & PCI_COMMAND_MEMORY;
    for (unsigned i = 0; i < 6; i++) {
        struct vmm_pci_bar *b = &dev->bar[i];
        if (b->type == VMM_PCI_BAR_NONE)
            continue;
        uint64_t a = bar_addr(dev, i);
        /* Address 0 means unassigned; a BAR that would wrap the address space is not decoded. */
        bool want = mem_on && a != 0 && a + b->size > a;
        if (!want) {
            bar_unmap(dev, i);
            continue;
        }
        if (b->mapped && b->mapped_at == a)
            continue;
        int err;
        if (b->mapped && b->fn) {
            uint64_t old = b->mapped_at;
            err = vmm__io_move(b->region, a);
            if (err == 0) {
                b->mapped_at = a;
                if (dev->ops->bar_mapped) {
                    dev->ops->bar_mapped(dev, i, old, false);
                    dev->ops->bar_mapped(dev, i, a, true);
                }
                continue;
            }
        } else {
            bar_unmap(dev, i);
            err = bar_map(dev, i, a);
            if (err == 0)
                continue;
        }
        bar_unmap(dev, i);
        VDI_LOG_WARN_RL("vm=%s pci %02x:%02x.0 (%s) BAR%u cannot be placed at 0x%" PRIx64
                        " size 0x%" PRIx64 ": %s; left unmapped",
                        vmm__vm_name(dev->vm), 0, dev->slot, dev->ops->name, i, a, b->size,
                        vdi_strerror(err));
    }
}

/* ---- Config access ------------------------------------------------------------------------ */
static struct vmm_pci_dev *decode(struct pci_bus *bus, uint32_t addr)
{
    unsigned busno = (addr >> 16) & 0xff, slot = (addr >> 11) & 0x1f, fn = (addr >> 8) & 7;
    if (!(addr & 0x80000000u) || busno != 0 || fn != 0)
        return NULL;
    return bus->dev[slot];
}

static bool overlaps(unsigned off, unsigned len, unsigned start, unsigned end)
{
    return off < end && off + len > start;
}

static uint32_t cfg_read_locked(struct pci_bus *bus, uint32_t addr, unsigned off, unsigned len)
{
    struct vmm_pci_dev *dev = decode(bus, addr);
    unsigned reg = (addr & 0xfc) + off;
    uint32_t v = 0;
    if (!dev || reg + len > 256)
        return len == 4 ? 0xffffffffu : (1u << (8 * len)) - 1;
    if (dev->ops->cfg_read)
        dev->ops->cfg_read(dev, reg, len);
    memcpy(&v, dev->cfg + reg, len);
    return v;
}

static void cfg_write_locked(struct pci_bus *bus, uint32_t addr, unsigned off, unsigned len,
                             uint32_t val)
{
    struct vmm_pci_dev *dev = decode(bus, addr);
    unsigned reg = (addr & 0xfc) + off;
    if (!dev || reg + len > 256)
        return;
    for (unsigned k = 0; k < len; k++) {
        uint8_t m = dev->wmask[reg + k], b = (val >> (8 * k)) & 0xff;
        dev->cfg[reg + k] = (dev->cfg[reg + k] & ~m) | (b & m);
    }
    if (overlaps(reg, len, PCI_COMMAND, PCI_COMMAND + 2) || overlaps(reg, len, PCI_BAR0, 0x28))
        update_decoding(dev);
    if (overlaps(reg, len, PCI_COMMAND, PCI_COMMAND + 2)) {
        bool dis = get16(dev->cfg + PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE;
        __atomic_store_n(&dev->intx_disabled, dis, __ATOMIC_RELEASE);
        if (dis)
            vmm__pci_intx(dev, false);
    }
    if (dev->msix_cap && overlaps(reg, len, dev->msix_cap + 2, dev->msix_cap + 4)) {
        uint16_t ctl = get16(dev->cfg + dev->msix_cap + 2);
        vmm__msix_control(dev->msix, ctl & 0x8000, ctl & 0x4000);
    }
    if (dev->ops->cfg_written)
        dev->ops->cfg_written(dev, reg, len);
}

uint32_t vmm__pci_cfg_read(vmm_vm_t *vm, uint32_t addr, unsigned off, unsigned len)
{
    struct pci_bus *bus = bus_of(vm);
    if (!bus || (len != 1 && len != 2 && len != 4) || off + len > 4)
        return 0xffffffffu;
    pthread_mutex_lock(&bus->lock);
    uint32_t v = cfg_read_locked(bus, addr, off, len);
    pthread_mutex_unlock(&bus->lock);
    return v;
}

void vmm__pci_cfg_write(vmm_vm_t *vm, uint32_t addr, unsigned off, unsigned len, uint32_t val)
{
    struct pci_bus *bus = bus_of(vm);
    if (!bus || (len != 1 && len != 2 && len != 4) || off + len > 4)
        return;
    pthread_mutex_lock(&bus->lock);
    cfg_write_locked(bus, addr, off, len, val);
    pthread_mutex_unlock(&bus->lock);
}

/* Port 0xcf8: the address latch; only whole-dword accesses reach it (byte accesses to 0xcfb are
 * how old kernels probe for mechanism #2, which we do not have). */
static void cf8_io(void *opaque, uint64_t offset, void *data, uint32_t len, bool is_write)
{
    struct pci_bus *bus = opaque;
    pthread_mutex_lock(&bus->lock);
    if (offset == 0 && len == 4) {
        if (is_write)
            memcpy(&bus->cf8, data, 4);
        else
            memcpy(data, &bus->cf8, 4);
    } else if (!is_write) {
        memset(data, 0xff, len);
    }
    pthread_mutex_unlock(&bus->lock);
}

static void cfc_io(void *opaque, uint64_t offset, void *data, uint32_t len, bool is_write)
{
    struct pci_bus *bus = opaque;
    if (offset >= 4 || len > 4 || offset + len > 4) {
        if (!is_write)
            memset(data, 0xff, len);
        return;
    }
    pthread_mutex_lock(&bus->lock);
    if (is_write) {
        uint32_t v = 0;
        memcpy(&v, data, len);
        cfg_write_locked(bus, bus->cf8, offset, len, v);
    } else {
        uint32_t v = cfg_read_locked(bus, bus->cf8, offset, len);
        memcpy(data, &v, len);
    }
    pthread_mutex_unlock(&bus->lock);
}

/* ---- INTx --------------------------------------------------------------------------------- */
void vmm__pci_intx(struct vmm_pci_dev *dev, bool level)
{
    struct pci_bus *bus = bus_of(dev->vm);
    if (!bus || dev->intx_gsi < 16 || dev->intx_gsi >= 24)
        return;
    unsigned line = dev->intx_gsi - 16;
    pthread_mutex_lock(&bus->intx_lock);
    bool before = bus->intx_mask[line] != 0;
    if (level && !__atomic_load_n(&dev->intx_disabled, __ATOMIC_ACQUIRE))
        bus->intx_mask[line] |= 1u << dev->slot;
    else
        bus->intx_mask[line] &= ~(1u << dev->slot);
    bool after = bus->intx_mask[line] != 0;
    if (before != after)
        vmm__irq_line(dev->vm, dev->intx_gsi, after);
    pthread_mutex_unlock(&bus->intx_lock);
}

/* ---- The bus ------------------------------------------------------------------------------ */
static void bridge_destroy(struct vmm_pci_dev *dev)
{
    VDI_UNUSED(dev);
}

static const struct vmm_pci_dev_ops bridge_ops = {
    .name = "host-bridge",
    .destroy = bridge_destroy,
};

int vmm__pci_bus_create(vmm_vm_t *vm)
{
    struct pci_bus *bus = vdi_xcalloc(1, sizeof(*bus));
    int err;

    if (bus_of(vm)) {
        free(bus);
        return -EEXIST;
    }
    bus->vm = vm;
    pthread_mutex_init(&bus->lock, NULL);
    pthread_mutex_init(&bus->intx_lock, NULL);
    bus->mmio_next = VMM_PCI_MMIO_BASE;
    /* Red Hat's generic host bridge id: no chipset quirks in guest drivers. */
    vmm__pci_dev_init(&bus->bridge, &bridge_ops, vm, 0x1b36, 0x0008, 0x060000, 0, 0x1af4, 0x1100);
    bus->dev[0] = &bus->bridge;
    err = vmm__io_add(vm, VMM_IO_PIO, 0xcf8, 4, cf8_io, bus, &bus->cf8_region);
    if (err < 0)
        goto err_free;
    err = vmm__io_add(vm, VMM_IO_PIO, 0xcfc, 4, cfc_io, bus, &bus->cfc_region);
    if (err < 0)
        goto err_cf8;
    pthread_mutex_lock(&registry_lock);
    bus->next = registry;
    registry = bus;
    pthread_mutex_unlock(&registry_lock);
    return 0;
err_cf8:
    vmm__io_del(bus->cf8_region);
err_free:
    pthread_mutex_destroy(&bus->lock);
    pthread_mutex_destroy(&bus->intx_lock);
    free(bus);
    return err;
}

int vmm__pci_register(vmm_vm_t *vm, struct vmm_pci_dev *dev)
{
    struct pci_bus *bus = bus_of(vm);
    unsigned slot;
    if (!bus)
        return -ENODEV;
    pthread_mutex_lock(&bus->lock);
    for (slot = 1; slot < VMM_PCI_MAX_DEVS && bus->dev[slot]; slot++)
        ;
    if (slot == VMM_PCI_MAX_DEVS) {
        pthread_mutex_unlock(&bus->lock);
        return -ENOSPC;
    }
    /* Give each BAR an address, as firmware would; decoding stays off until the guest turns on
     * Memory Space in the Command register. */
    uint64_t next = bus->mmio_next;
    for (unsigned i = 0; i < 6; i++) {
        struct vmm_pci_bar *b = &dev->bar[i];
        if (b->type == VMM_PCI_BAR_NONE)
            continue;
        uint64_t a = (next + b->size - 1) & ~(b->size - 1);
        if (a + b->size > VMM_PCI_MMIO_END) {
            pthread_mutex_unlock(&bus->lock);
            return -ENOSPC;
        }
        put32(dev->cfg + PCI_BAR0 + 4 * i, get32(dev->cfg + PCI_BAR0 + 4 * i) | (uint32_t)a);
        next = a + b->size;
    }
    bus->mmio_next = next;
    dev->slot = slot;
    dev->intx_gsi = 16 + (slot & 7);
    dev->cfg[PCI_INT_LINE] = dev->intx_gsi;
    dev->cfg[PCI_INT_PIN] = 1; /* INTA# */
    bus->dev[slot] = dev;
    pthread_mutex_unlock(&bus->lock);
    return 0;
}

void vmm__pci_teardown(vmm_vm_t *vm)
{
    struct pci_bus *bus = bus_of(vm), **pp;
    if (!bus)
        return;
    pthread_mutex_lock(&registry_lock);
    for (pp = &registry; *pp != bus; pp = &(*pp)->next)
        ;
    *pp = bus->next;
    pthread_mutex_unlock(&registry_lock);
    vmm__io_del(bus->cfc_region);
    vmm__io_del(bus->cf8_region);
    for (unsigned s = VMM_PCI_MAX_DEVS; s-- > 1;) {
        struct vmm_pci_dev *dev = bus->dev[s];
        if (!dev)
            continue;
        for (unsigned i = 0; i < 6; i++)
            bar_unmap(dev, i);
        bus->dev[s] = NULL;
        dev->ops->destroy(dev);
    }
    pthread_mutex_destroy(&bus->lock);
    pthread_mutex_destroy(&bus->intx_lock);
    free(bus);
}

/* ---- The machine's devices ---------------------------------------------------------------- */
int vmm__pci_setup(vmm_vm_t *vm, const struct vmm_config *cfg)
{
    struct vmm_virtio_dev *vd;
    struct pci_bus *bus;
    int err = vmm__pci_bus_create(vm);
    if (err < 0) {
        VDI_LOG_ERR("vm=%s cannot create the PCI bus: %s", vmm__vm_name(vm), vdi_strerror(err));
        return err;
    }
    bus = bus_of(vm);
    /* The order is fixed, so a guest sees the same slots on every boot:
     * display, keyboard, tablet, disks in command-line order, rng, network, agent port. */
    if (cfg->fb_width) {
        err = vmm__bochs_create(vm, cfg->fb_width, cfg->fb_height, &bus->bochs);
        if (err < 0) {
            VDI_LOG_ERR("vm=%s display device: %s", vmm__vm_name(vm), vdi_strerror(err));
            if (err == -EINVAL)
                err = VDI_ECONFIG;
            goto err;
        }
    }
    if (cfg->input) {
        err = vmm__virtio_input_create(vm, VMM_INPUT_KEYBOARD, &bus->input.kbd);
        if (err == 0)
            err = vmm__virtio_input_create(vm, VMM_INPUT_TABLET, &bus->input.tablet);
        if (err < 0) {
            VDI_LOG_ERR("vm=%s input devices: %s", vmm__vm_name(vm), vdi_strerror(err));
            goto err;
        }
    }
    for (unsigned i = 0; i < cfg->ndisks && i < VMM_MAX_DISKS; i++) {
        img_disk_t *disk;
        /* A qcow2's backing files must be regular files and, with --backing-root, lie under
         * that directory (the catalogue, when vdid starts us). */
        err = img_open_ex(cfg->disks[i].path,
                          &(struct img_open_opts){cfg->disks[i].read_only ? IMG_OPEN_RDONLY : 0,
                                                  cfg->backing_root},
                          &disk);
        if (err < 0) {
            VDI_LOG_ERR("vm=%s disk %s: %s", vmm__vm_name(vm), cfg->disks[i].path,
                        err == -EAGAIN
                            ? "in use: locked by another user of the image (or named twice)"
                            : vdi_strerror(err));
            err = VDI_ECONFIG; /* the user named a disk we cannot use: bad input */
            goto err;
        }
        err = vmm__virtio_blk_create(vm, disk, &vd);
        if (err < 0) {
            img_close(disk);
            VDI_LOG_ERR("vm=%s disk %s: %s", vmm__vm_name(vm), cfg->disks[i].path,
                        vdi_strerror(err));
            goto err;
        }
    }
    if (cfg->rng) {
        err = vmm__virtio_rng_create(vm, &vd);
        if (err < 0) {
            VDI_LOG_ERR("vm=%s virtio-rng: %s", vmm__vm_name(vm), vdi_strerror(err));
            goto err;
        }
    }
    const uint8_t *mac = cfg->net_has_mac ? cfg->net_mac : NULL;
    if (cfg->net_has_fd) {
        err = vmm__tap_adopt(cfg->net_fd);
        if (err == 0)
            err = vmm__virtio_net_create_fd(vm, cfg->net_fd, mac, &vd);
        else
            close(cfg->net_fd);
        if (err < 0) {
            VDI_LOG_ERR("vm=%s network on the tap at fd %d: %s", vmm__vm_name(vm), cfg->net_fd,
                        err == -ENOTTY ? "not a tap with the virtio-net header (IFF_TAP | "
                                         "IFF_NO_PI | IFF_VNET_HDR)"
                                       : vdi_strerror(err));
            err = VDI_ECONFIG;
            goto err;
        }
    } else if (cfg->net_tap) {
        err = vmm__virtio_net_create(vm, cfg->net_tap, mac, &vd);
        if (err < 0) {
            VDI_LOG_ERR("vm=%s network on tap %s: %s", vmm__vm_name(vm), cfg->net_tap,
                        vdi_strerror(err));
            err = VDI_ECONFIG;
            goto err;
        }
    }
    if (cfg->agent) {
        err = vmm__virtio_console_create(vm, &bus->agent);
        if (err < 0) {
            VDI_LOG_ERR("vm=%s guest agent port (virtio-console): %s", vmm__vm_name(vm),
                        vdi_strerror(err));
            goto err;
        }
    }
    return 0;
err:
    vmm__pci_teardown(vm);
    return err;
}

const struct dpy_fb_source *vmm__pci_fb_source(vmm_vm_t *vm, void **ctx)
{
    struct pci_bus *bus = bus_of(vm);
    if (!bus || !bus->bochs)
        return NULL;
    *ctx = bus->bochs;
    return &vmm__bochs_fb_source;
}

int vmm__vm_agent_message(vmm_vm_t *vm, const char *text, unsigned seconds)
{
    struct pci_bus *bus = bus_of(vm);
    if (!bus || !bus->agent)
        return -ENOTCONN;
    return vmm__virtio_console_message(bus->agent, text, seconds);
}

void vmm__vm_agent_status(vmm_vm_t *vm, struct vmm_agent_status *st)
{
    struct pci_bus *bus = bus_of(vm);
    memset(st, 0, sizeof(*st));
    if (bus && bus->agent)
        vmm__virtio_console_status(bus->agent, st);
}

const struct dpy_input_sink *vmm__pci_input_sink(vmm_vm_t *vm, void **ctx)
{
    struct pci_bus *bus = bus_of(vm);
    if (!bus || (!bus->input.kbd && !bus->input.tablet))
        return NULL;
    *ctx = &bus->input;
    return &vmm__input_sink;
}
