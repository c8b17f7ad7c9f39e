/* vmm/virtio-pci.c: the virtio 1.x modern PCI transport (virtio 1.2 §4.1).
 *
 * Layout, as QEMU's modern virtio-pci (so guests tested against QEMU find the same shape):
 *   BAR1  32-bit memory, 4 KiB: MSI-X table at 0, PBA at 0x800
 *   BAR4  64-bit prefetchable memory, 16 KiB:
 *         0x0000 common config   0x1000 ISR   0x2000 device config   0x3000 notify (4 bytes/queue)
 * plus the VIRTIO_PCI_CAP_PCI_CFG window in config space.
 *
 * Notifications: each queue has an eventfd that KVM signals on a 16-bit write to the queue's
 * notify address (ioeventfd, registered while BAR4 is decoded); a write of another width exits
 * to us and we signal the same eventfd. The I/O thread reads it and runs the device's
 * queue_notify under the device lock. Interrupts go out through MSI-X (irqfd) or, while MSI-X
 * is off, through INTx and the ISR.
 */
#define VDI_LOG_TAG "vmm"
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/pci-internal.h"

#define BAR_MSIX                  1
#define BAR_VIRTIO                4
#define BAR_VIRTIO_SIZE           0x4000
#define OFF_COMMON                0x0000
#define OFF_ISR                   0x1000
#define OFF_DEVICE                0x2000
#define OFF_NOTIFY                0x3000
#define NOTIFY_MULT               4
#define COMMON_SIZE               0x40

#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG    3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG    5

static struct vmm_virtio_dev *vd_of(struct vmm_pci_dev *dev)
{
    return vdi_container_of(dev, struct vmm_virtio_dev, pci);
}

bool vmm__virtio_queue_live(const struct vmm_virtio_dev *vd, unsigned q)
{
    return q < vd->ops->nqueues && vd->q[q].enabled && vd->q[q].vq.started &&
           (vd->status & VIRTIO_STATUS_DRIVER_OK) && !(vd->status & VIRTIO_STATUS_NEEDS_RESET);
}

static void raise_isr(struct vmm_virtio_dev *vd, uint8_t bit, uint16_t vector)
{
    if (vmm__msix_enabled(&vd->msix)) {
        if (vector != VMM_MSIX_NO_VECTOR)
            vmm__msix_notify(&vd->msix, vector);
        return;
    }
    vd->isr |= bit;
    vmm__pci_intx(&vd->pci, true);
}

void vmm__virtio_notify(struct vmm_virtio_dev *vd, unsigned q)
{
    if (q >= vd->ops->nqueues || !vmm__virtq_should_notify(&vd->q[q].vq))
        return;
    raise_isr(vd, 1, vd->q[q].vector);
}

void vmm__virtio_fail(struct vmm_virtio_dev *vd, const char *why)
{
    VDI_LOG_WARN_RL("vm=%s %s (pci slot %u): guest error: %s; device needs reset",
                    vmm__vm_name(vd->pci.vm), vd->ops->name, vd->pci.slot, why);
    if (vd->status & VIRTIO_STATUS_NEEDS_RESET)
        return;
    vd->status |= VIRTIO_STATUS_NEEDS_RESET;
    vd->config_gen++;
    /* §2.1.2: the device notifies the driver of DEVICE_NEEDS_RESET with a config change. */
    if (vd->status & VIRTIO_STATUS_DRIVER_OK)
        raise_isr(vd, 2, vd->config_vector);
}

static void kick(struct vmm_virtio_queue *q)
{
    uint64_t one = 1;
    if (write(q->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        VDI_LOG_WARN_RL("virtio kick eventfd: %s", vdi_strerror(-errno));
}

static void queue_reset(struct vmm_virtio_queue *q)
{
    q->enabled = false;
    vmm__virtq_stop(&q->vq);
    q->vq.size = q->size_max;
    q->vq.desc_gpa = q->vq.avail_gpa = q->vq.used_gpa = 0;
    q->vector = VMM_MSIX_NO_VECTOR;
}

static void device_reset(struct vmm_virtio_dev *vd)
{
    for (unsigned i = 0; i < vd->ops->nqueues; i++) {
        queue_reset(&vd->q[i]);
        vd->q[i].reset_done = false;
    }
    if (vd->ops->reset)
        vd->ops->reset(vd);
    vd->status = 0;
    vd->dfsel = vd->gfsel = 0;
    vd->driver_features = 0;
    vd->queue_sel = 0;
    vd->config_vector = VMM_MSIX_NO_VECTOR;
    vd->isr = 0;
    vmm__pci_intx(&vd->pci, false);
}

/* ---- Common configuration (§4.1.4.3) ------------------------------------------------------ */
static void common_snapshot(struct vmm_virtio_dev *vd, uint8_t *c)
{
    struct vmm_virtio_queue *q = vd->queue_sel < vd->ops->nqueues ? &vd->q[vd->queue_sel] : NULL;
    uint32_t w;
    uint16_t h;
    uint64_t d;

    memset(c, 0, COMMON_SIZE);
    memcpy(c + 0x00, &vd->dfsel, 4);
    w = vd->dfsel < 2 ? (uint32_t)(vd->features >> (32 * vd->dfsel)) : 0;
    memcpy(c + 0x04, &w, 4);
    memcpy(c + 0x08, &vd->gfsel, 4);
    w = vd->gfsel < 2 ? (uint32_t)(vd->driver_features >> (32 * vd->gfsel)) : 0;
    memcpy(c + 0x0c, &w, 4);
    memcpy(c + 0x10, &vd->config_vector, 2);
    h = vd->ops->nqueues;
    memcpy(c + 0x12, &h, 2);
    c[0x14] = vd->status;
    c[0x15] = vd->config_gen;
    memcpy(c + 0x16, &vd->queue_sel, 2);
    if (!q)
        return;
    memcpy(c + 0x18, &q->vq.size, 2);
    memcpy(c + 0x1a, &q->vector, 2);
    h = q->enabled;
    memcpy(c + 0x1c, &h, 2);
    memcpy(c + 0x1e, &vd->queue_sel, 2); /* queue_notify_off: queue index */
    d = q->vq.desc_gpa;
    memcpy(c + 0x20, &d, 8);
    d = q->vq.avail_gpa;
    memcpy(c + 0x28, &d, 8);
    d = q->vq.used_gpa;
    memcpy(c + 0x30, &d, 8);
    h = q->reset_done;
    memcpy(c + 0x3a, &h, 2);
}

static void set_status(struct vmm_virtio_dev *vd, uint8_t val)
{
    if (val == 0) {
        device_reset(vd);
        return;
    }
    uint8_t old = vd->status;
    if ((val & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
        /* §3.1.1: accept the features only if they are a subset of ours and modern. */
        bool ok = !(vd->driver_features & ~vd->features) && vmm__virtio_has(vd, VIRTIO_F_VERSION_1);
        if (!ok) {
            VDI_LOG_WARN_RL(
                "vm=%s %s: driver features 0x%" PRIx64 " refused (offered 0x%" PRIx64 ")",
                vmm__vm_name(vd->pci.vm), vd->ops->name, vd->driver_features, vd->features);
            val &= ~VIRTIO_STATUS_FEATURES_OK;
        }
    }
    if ((val & VIRTIO_STATUS_DRIVER_OK) && !(val & VIRTIO_STATUS_FEATURES_OK)) {
        /* DRIVER_OK without a successful negotiation: the device will not run. */
        val &= ~VIRTIO_STATUS_DRIVER_OK;
    }
    vd->status = val | (old & VIRTIO_STATUS_NEEDS_RESET);
    if ((val & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
        /* Buffers may already be waiting: look at every enabled queue once. */
        for (unsigned i = 0; i < vd->ops->nqueues; i++)
            if (vd->q[i].enabled)
                kick(&vd->q[i]);
    }
}

static void queue_enable(struct vmm_virtio_dev *vd, struct vmm_virtio_queue *q)
{
    if (q->enabled)
        return;
    if (!(vd->status & VIRTIO_STATUS_FEATURES_OK)) {
        vmm__virtio_fail(vd, "queue enabled before FEATURES_OK");
        return;
    }
    q->vq.vm = vd->pci.vm;
    q->vq.indirect = vmm__virtio_has(vd, VIRTIO_F_INDIRECT_DESC);
    if (q->vq.size > q->size_max || vmm__virtq_start(&q->vq) < 0) {
        vmm__virtio_fail(vd, "queue size or ring address invalid");
        return;
    }
    q->enabled = true;
    q->reset_done = false;
    if (vd->status & VIRTIO_STATUS_DRIVER_OK)
        kick(q);
}

static void set_addr_half(uint64_t *a, unsigned half, uint32_t v)
{
    if (half)
        *a = (*a & 0xffffffffull) | (uint64_t)v << 32;
    else
        *a = (*a & ~0xffffffffull) | v;
}

static void common_write(struct vmm_virtio_dev *vd, uint64_t off, const void *data, uint32_t len)
{
    struct vmm_virtio_queue *q = vd->queue_sel < vd->ops->nqueues ? &vd->q[vd->queue_sel] : NULL;
    uint64_t v = 0;
    memcpy(&v, data, len);

    /* §4.1.3.1: fields are written at their natural width (64-bit ones also as two halves). */
    switch (off | (uint64_t)len << 8) {
    case 0x00 | 4 << 8:
        vd->dfsel = (uint32_t)v;
        return;
    case 0x08 | 4 << 8:
        vd->gfsel = (uint32_t)v;
        return;
    case 0x0c | 4 << 8:
        if (vd->gfsel < 2 && !(vd->status & VIRTIO_STATUS_FEATURES_OK))
            set_addr_half(&vd->driver_features, vd->gfsel, (uint32_t)v);
        return;
    case 0x10 | 2 << 8:
        vd->config_vector = v < vd->msix.nvec ? (uint16_t)v : VMM_MSIX_NO_VECTOR;
        return;
    case 0x14 | 1 << 8:
        set_status(vd, (uint8_t)v);
        return;
    case 0x16 | 2 << 8:
        vd->queue_sel = (uint16_t)v;
        return;
    case 0x18 | 2 << 8:
        if (q && !q->enabled)
            q->vq.size = (uint16_t)v; /* checked when the queue is enabled */
        return;
    case 0x1a | 2 << 8:
        if (q)
            q->vector = v < vd->msix.nvec ? (uint16_t)v : VMM_MSIX_NO_VECTOR;
        return;
    case 0x1c | 2 << 8:
        if (q && v == 1)
            queue_enable(vd, q);
        return;
    case 0x3a | 2 << 8:
        if (q && v == 1 && vmm__virtio_has(vd, VIRTIO_F_RING_RESET)) {
            queue_reset(q);
            q->reset_done = true;
        }
        return;
    default:
        break;
    }
    if (off >= 0x20 && off < 0x38 && q && (len == 4 || len == 8) && !(off & (len - 1))) {
        if (q->enabled)
            return; /* §4.1.4.3.2: addresses are fixed while the queue is enabled */
        uint64_t *a = off < 0x28   ? &q->vq.desc_gpa
                      : off < 0x30 ? &q->vq.avail_gpa
                                   : &q->vq.used_gpa;
        if (len == 8)
            *a = v;
        else
            set_addr_half(a, (off & 4) != 0, (uint32_t)v);
        return;
    }
    VDI_LOG_WARN_RL("vm=%s %s: ignored common config write off=0x%" PRIx64 " len=%u",
                    vmm__vm_name(vd->pci.vm), vd->ops->name, off, len);
}

/* ---- BAR4 --------------------------------------------------------------------------------- */
static void virtio_bar_io(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct vmm_virtio_dev *vd = opaque;

    if (off >= OFF_NOTIFY) {
        /* A notify write of a width KVM's ioeventfd did not match (or no ioeventfd). */
        uint64_t qi = (off - OFF_NOTIFY) / NOTIFY_MULT;
        if (!is_write) {
            memset(data, 0, len);
            return;
        }
        if (qi < vd->ops->nqueues)
            kick(&vd->q[qi]);
        return;
    }
    pthread_mutex_lock(&vd->lock);
    if (off < OFF_ISR) {
        if (is_write) {
            if (off + len <= COMMON_SIZE)
                common_write(vd, off, data, len);
        } else {
            uint8_t c[COMMON_SIZE + 8];
            common_snapshot(vd, c);
            memset(c + COMMON_SIZE, 0, 8);
            if (off < COMMON_SIZE)
                memcpy(data, c + off, len);
            else
                memset(data, 0, len);
        }
    } else if (off < OFF_DEVICE) {
        if (!is_write) {
            memset(data, 0, len);
            if (off == OFF_ISR) {
                /* §4.1.4.5: reading the ISR clears it and deasserts INTx. */
                *(uint8_t *)data = vd->isr;
                vd->isr = 0;
                vmm__pci_intx(&vd->pci, false);
            }
        }
    } else {
        uint64_t o = off - OFF_DEVICE;
        if (o + len > vd->ops->cfg_size) {
            if (!is_write)
                memset(data, 0, len);
        } else if (is_write) {
            if (vd->ops->cfg_write)
                vd->ops->cfg_write(vd, (uint32_t)o, data, len);
        } else {
            vd->ops->cfg_read(vd, (uint32_t)o, data, len);
        }
    }
    pthread_mutex_unlock(&vd->lock);
}

/* ---- PCI hooks ---------------------------------------------------------------------------- */
static void set_ioeventfds(struct vmm_virtio_dev *vd, uint64_t gpa, bool on)
{
    for (unsigned i = 0; i < vd->ops->nqueues; i++) {
        struct vmm_virtio_queue *q = &vd->q[i];
        if (on && !q->ioeventfd_on) {
            q->notify_gpa = gpa + OFF_NOTIFY + NOTIFY_MULT * i;
            if (vmm__ioeventfd(vd->pci.vm, q->kick_fd, VMM_IO_MMIO, q->notify_gpa, 2, true) == 0)
                q->ioeventfd_on = true;
        } else if (!on && q->ioeventfd_on) {
            vmm__ioeventfd(vd->pci.vm, q->kick_fd, VMM_IO_MMIO, q->notify_gpa, 2, false);
            q->ioeventfd_on = false;
        }
    }
}

static void vp_bar_mapped(struct vmm_pci_dev *dev, unsigned bar, uint64_t gpa, bool mapped)
{
    struct vmm_virtio_dev *vd = vd_of(dev);
    if (bar != BAR_VIRTIO)
        return;
    pthread_mutex_lock(&vd->lock);
    set_ioeventfds(vd, gpa, mapped);
    pthread_mutex_unlock(&vd->lock);
}

/* VIRTIO_PCI_CAP_PCI_CFG (§4.1.4.9): a window onto the BARs through config space. */
static bool pcicfg_window(struct vmm_virtio_dev *vd, uint64_t *off, uint32_t *len)
{
    const uint8_t *c = vd->pci.cfg + vd->pcicfg_cap;
    uint32_t o, l;
    memcpy(&o, c + 8, 4);
    memcpy(&l, c + 12, 4);
    if (c[4] != BAR_VIRTIO || (l != 1 && l != 2 && l != 4) || (o & (l - 1)) ||
        (uint64_t)o + l > BAR_VIRTIO_SIZE)
        return false;
    *off = o;
    *len = l;
    return true;
}

static void vp_cfg_written(struct vmm_pci_dev *dev, uint32_t off, uint32_t len)
{
    struct vmm_virtio_dev *vd = vd_of(dev);
    uint32_t data_off = vd->pcicfg_cap + 16;
    uint64_t o;
    uint32_t l;
    if (off + len <= data_off || off >= data_off + 4 || !pcicfg_window(vd, &o, &l))
        return;
    virtio_bar_io(vd, o, dev->cfg + data_off, l, true);
}

static void vp_cfg_read(struct vmm_pci_dev *dev, uint32_t off, uint32_t len)
{
    struct vmm_virtio_dev *vd = vd_of(dev);
    uint32_t data_off = vd->pcicfg_cap + 16;
    uint64_t o;
    uint32_t l;
    if (off + len <= data_off || off >= data_off + 4 || !pcicfg_window(vd, &o, &l))
        return;
    memset(dev->cfg + data_off, 0, 4);
    virtio_bar_io(vd, o, dev->cfg + data_off, l, false);
}

static void vp_destroy(struct vmm_pci_dev *dev)
{
    struct vmm_virtio_dev *vd = vd_of(dev);
    vmm__virtio_pci_fini(vd);
    vd->ops->destroy(vd);
}

static const struct vmm_pci_dev_ops virtio_pci_ops = {
    .name = "virtio-pci",
    .bar_mapped = vp_bar_mapped,
    .cfg_written = vp_cfg_written,
    .cfg_read = vp_cfg_read,
    .destroy = vp_destroy,
};

static void on_kick(void *opaque)
{
    struct vmm_virtio_queue *q = opaque;
    struct vmm_virtio_dev *vd = q->vd;
    uint64_t n;
    if (read(q->kick_fd, &n, sizeof(n)) < 0)
        return;
    pthread_mutex_lock(&vd->lock);
    if (vmm__virtio_queue_live(vd, q->idx))
        vd->ops->queue_notify(vd, q->idx);
    pthread_mutex_unlock(&vd->lock);
}

static uint8_t add_vcap(struct vmm_pci_dev *dev, uint8_t type, uint32_t off, uint32_t len,
                        uint8_t caplen, uint32_t extra, const uint8_t *wmask)
{
    uint8_t body[18] = {0};
    body[0] = caplen;
    body[1] = type;
    body[2] = type == VIRTIO_PCI_CAP_PCI_CFG ? 0 : BAR_VIRTIO;
    memcpy(body + 6, &off, 4);
    memcpy(body + 10, &len, 4);
    if (caplen > 16)
        memcpy(body + 14, &extra, 4);
    return vmm__pci_cap_add(dev, 0x09, body, caplen, wmask);
}

int vmm__virtio_pci_init(struct vmm_virtio_dev *vd, const struct vmm_virtio_ops *ops,
                         uint64_t features, vmm_vm_t *vm)
{
    unsigned nq = ops->nqueues;
    int err;

    VDI_ASSERT(nq > 0 && nq <= VMM_VIRTIO_MAX_QUEUES);
    VDI_ASSERT(ops->cfg_size <= 0x1000);
    vd->ops = ops;
    vd->features = features | 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_INDIRECT_DESC |
                   1ull << VIRTIO_F_RING_RESET;
    vd->config_vector = VMM_MSIX_NO_VECTOR;
    pthread_mutex_init(&vd->lock, NULL);
    for (unsigned i = 0; i < VMM_VIRTIO_MAX_QUEUES; i++)
        vd->q[i].kick_fd = -1;
    for (unsigned i = 0; i < nq; i++) {
        struct vmm_virtio_queue *q = &vd->q[i];
        q->vd = vd;
        q->idx = i;
        q->size_max = VMM_VIRTQ_MAX_SIZE;
        queue_reset(q);
        q->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (q->kick_fd < 0) {
            err = -errno;
            goto err_fds;
        }
    }
    err = vmm__msix_init(&vd->msix, vm, nq + 1);
    if (err < 0)
        goto err_fds;

    /* Non-transitional ids: 0x1040 + type, subsystem id >= 0x40 (§4.1.2.1). */
    vmm__pci_dev_init(&vd->pci, &virtio_pci_ops, vm, 0x1af4, 0x1040 + ops->device_id,
                      ops->class_code, 1, 0x1af4, 0x1100);
    if ((err = vmm__pci_bar_init(&vd->pci, BAR_MSIX, VMM_PCI_BAR_MEM32, false, VMM_MSIX_BAR_SIZE,
                                 vmm__msix_mmio, &vd->msix, -1)) < 0 ||
        (err = vmm__pci_bar_init(&vd->pci, BAR_VIRTIO, VMM_PCI_BAR_MEM64, true, BAR_VIRTIO_SIZE,
                                 virtio_bar_io, vd, -1)) < 0)
        goto err_msix;
    uint8_t pcicfg_wmask[18] = {0};
    pcicfg_wmask[2] = 0xff;             /* bar */
    memset(pcicfg_wmask + 6, 0xff, 12); /* offset, length, data */
    if (vmm__pci_msix_cap_add(&vd->pci, &vd->msix, BAR_MSIX) < 0 ||
        !add_vcap(&vd->pci, VIRTIO_PCI_CAP_COMMON_CFG, OFF_COMMON, COMMON_SIZE, 16, 0, NULL) ||
        !add_vcap(&vd->pci, VIRTIO_PCI_CAP_ISR_CFG, OFF_ISR, 1, 16, 0, NULL) ||
        !add_vcap(&vd->pci, VIRTIO_PCI_CAP_DEVICE_CFG, OFF_DEVICE,
                  ops->cfg_size ? ops->cfg_size : 4, 16, 0, NULL) ||
        !add_vcap(&vd->pci, VIRTIO_PCI_CAP_NOTIFY_CFG, OFF_NOTIFY, NOTIFY_MULT * nq, 20,
                  NOTIFY_MULT, NULL) ||
        !(vd->pcicfg_cap = add_vcap(&vd->pci, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 20, 0, pcicfg_wmask))) {
        err = -ENOSPC;
        goto err_msix;
    }
    for (unsigned i = 0; i < nq; i++) {
        err = vmm__iothread_add_fd(vm, vd->q[i].kick_fd, on_kick, &vd->q[i]);
        if (err < 0) {
            while (i-- > 0)
                vmm__iothread_del_fd(vm, vd->q[i].kick_fd);
            goto err_msix;
        }
    }
    err = vmm__pci_register(vm, &vd->pci);
    if (err < 0)
        goto err_iothread;
    return 0;
err_iothread:
    for (unsigned i = 0; i < nq; i++)
        vmm__iothread_del_fd(vm, vd->q[i].kick_fd);
err_msix:
    vmm__msix_destroy(&vd->msix);
err_fds:
    for (unsigned i = 0; i < nq; i++)
        if (vd->q[i].kick_fd >= 0)
            close(vd->q[i].kick_fd);
    pthread_mutex_destroy(&vd->lock);
    return err;
}

void vmm__virtio_pci_fini(struct vmm_virtio_dev *vd)
{
    for (unsigned i = 0; i < vd->ops->nqueues; i++)
        vmm__iothread_del_fd(vd->pci.vm, vd->q[i].kick_fd);
    set_ioeventfds(vd, 0, false);
    vmm__msix_destroy(&vd->msix);
    for (unsigned i = 0; i < vd->ops->nqueues; i++) {
        close(vd->q[i].kick_fd);
        vd->q[i].kick_fd = -1;
    }
    pthread_mutex_destroy(&vd->lock);
}
