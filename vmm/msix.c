/* vmm/msix.c: an MSI-X table and pending-bit array (PCI Local Bus 3.0 §6.8.2).
 *
 * Each vector owns an eventfd. When the guest first makes a vector live (MSI-X enabled, function
 * and vector unmasked) the vector gets a KVM MSI route and the eventfd becomes its irqfd, so a
 * device on the I/O thread interrupts the guest with one write(2), without a vCPU exit. Masking
 * is done here, not in KVM: vmm__msix_notify() on a masked vector sets its pending bit instead of
 * writing the eventfd, and unmasking delivers what is pending. If KVM refuses a route, the vector
 * falls back to KVM_SIGNAL_MSI.
 */
#define VDI_LOG_TAG "vmm"
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/pci-internal.h"

int vmm__msix_init(struct vmm_msix *m, vmm_vm_t *vm, unsigned nvec)
{
    if (nvec == 0 || nvec > VMM_MSIX_MAX_VECTORS)
        return -EINVAL;
    memset(m, 0, sizeof(*m));
    m->vm = vm;
    m->nvec = nvec;
    pthread_mutex_init(&m->lock, NULL);
    for (unsigned v = 0; v < VMM_MSIX_MAX_VECTORS; v++)
        m->efd[v] = -1;
    for (unsigned v = 0; v < nvec; v++) {
        m->table[v].ctrl = 1;
        m->efd[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (m->efd[v] < 0) {
            int err = -errno;
            vmm__msix_destroy(m);
            return err;
        }
    }
    return 0;
}

void vmm__msix_destroy(struct vmm_msix *m)
{
    for (unsigned v = 0; v < m->nvec; v++) {
        if (m->routed[v]) {
            vmm__irqfd(m->vm, m->efd[v], m->gsi[v], false);
            vmm__msi_route_del(m->vm, m->gsi[v]);
            m->routed[v] = false;
        }
        if (m->efd[v] >= 0)
            close(m->efd[v]);
        m->efd[v] = -1;
    }
    pthread_mutex_destroy(&m->lock);
    m->nvec = 0;
}

static uint64_t entry_addr(const struct vmm_msix_entry *e)
{
    return (uint64_t)e->addr_hi << 32 | e->addr_lo;
}

static bool vector_live(const struct vmm_msix *m, unsigned v)
{
    return m->enabled && !m->fmask && !(m->table[v].ctrl & 1);
}

/* Lock held. */
static void fire(struct vmm_msix *m, unsigned v)
{
    const struct vmm_msix_entry *e = &m->table[v];
    if (m->routed[v]) {
        uint64_t one = 1;
        if (write(m->efd[v], &one, sizeof(one)) == (ssize_t)sizeof(one))
            return;
    }
    int err = vmm__msi_send(m->vm, entry_addr(e), e->data);
    if (err < 0)
        VDI_LOG_WARN_RL("vm=%s msi-x delivery failed vector=%u addr=0x%" PRIx64 ": %s",
                        vmm__vm_name(m->vm), v, entry_addr(e), vdi_strerror(err));
}

/* Bring vector @v's KVM route in line with its table entry and deliver what is pending if it
 * is live now. Lock held. */
static void sync_vector(struct vmm_msix *m, unsigned v)
{
    const struct vmm_msix_entry *e = &m->table[v];
    if (!vector_live(m, v))
        return;
    if (!m->routed[v]) {
        uint32_t gsi;
        int err = vmm__msi_route_add(m->vm, entry_addr(e), e->data, &gsi);
        if (err == 0) {
            err = vmm__irqfd(m->vm, m->efd[v], gsi, true);
            if (err == 0) {
                m->gsi[v] = gsi;
                m->routed[v] = true;
                m->live[v] = *e;
            } else {
                vmm__msi_route_del(m->vm, gsi);
            }
        }
        if (err < 0)
            VDI_LOG_WARN_RL("vm=%s msi-x vector=%u has no irqfd route (%s); using direct "
                            "delivery",
                            vmm__vm_name(m->vm), v, vdi_strerror(err));
    } else if (m->live[v].addr_lo != e->addr_lo || m->live[v].addr_hi != e->addr_hi ||
               m->live[v].data != e->data) {
        int err = vmm__msi_route_set(m->vm, m->gsi[v], entry_addr(e), e->data);
        if (err < 0) {
            /* Stale route: stop using the irqfd for this vector. */
            vmm__irqfd(m->vm, m->efd[v], m->gsi[v], false);
            vmm__msi_route_del(m->vm, m->gsi[v]);
            m->routed[v] = false;
        } else {
            m->live[v] = *e;
        }
    }
    if (m->pba & (1ull << v)) {
        m->pba &= ~(1ull << v);
        fire(m, v);
    }
}

void vmm__msix_control(struct vmm_msix *m, bool enable, bool fmask)
{
    pthread_mutex_lock(&m->lock);
    m->enabled = enable;
    m->fmask = fmask;
    for (unsigned v = 0; v < m->nvec; v++)
        sync_vector(m, v);
    pthread_mutex_unlock(&m->lock);
}

void vmm__msix_notify(struct vmm_msix *m, unsigned vector)
{
    if (vector >= m->nvec)
        return;
    pthread_mutex_lock(&m->lock);
    if (vector_live(m, vector))
        fire(m, vector);
    else
        m->pba |= 1ull << vector;
    pthread_mutex_unlock(&m->lock);
}

void vmm__msix_reset(struct vmm_msix *m)
{
    pthread_mutex_lock(&m->lock);
    m->enabled = m->fmask = false;
    m->pba = 0;
    for (unsigned v = 0; v < m->nvec; v++) {
        memset(&m->table[v], 0, sizeof(m->table[v]));
        m->table[v].ctrl = 1;
    }
    pthread_mutex_unlock(&m->lock);
}

static uint32_t *entry_word(struct vmm_msix_entry *e, unsigned w)
{
    switch (w) {
    case 0:
        return &e->addr_lo;
    case 1:
        return &e->addr_hi;
    case 2:
        return &e->data;
    default:
        return &e->ctrl;
    }
}

/* One aligned dword of the table or PBA. Lock held. */
static uint32_t read_dword(struct vmm_msix *m, uint64_t off)
{
    if (off < (uint64_t)m->nvec * 16)
        return *entry_word(&m->table[off / 16], (off % 16) / 4);
    if (off >= VMM_MSIX_PBA_OFFSET && off < VMM_MSIX_PBA_OFFSET + 8)
        return (uint32_t)(m->pba >> (off == VMM_MSIX_PBA_OFFSET ? 0 : 32));
    return 0;
}

static void write_dword(struct vmm_msix *m, uint64_t off, uint32_t val)
{
    if (off >= (uint64_t)m->nvec * 16)
        return; /* the PBA and the space after the table are read-only */
    unsigned v = off / 16, w = (off % 16) / 4;
    if (w == 3)
        val &= 1; /* only the mask bit of Vector Control is writable */
    *entry_word(&m->table[v], w) = val;
    sync_vector(m, v);
}

void vmm__msix_mmio(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct vmm_msix *m = opaque;

    /* §6.8.2: software uses aligned dword or qword accesses; anything else is ignored. */
    if ((len != 4 && len != 8) || (off & (len - 1))) {
        if (!is_write)
            memset(data, 0, len);
        VDI_LOG_WARN_RL("vm=%s msi-x unaligned access off=0x%" PRIx64 " len=%u",
                        vmm__vm_name(m->vm), off, len);
        return;
    }
    pthread_mutex_lock(&m->lock);
    for (uint32_t k = 0; k < len; k += 4) {
        uint32_t w;
        if (is_write) {
            memcpy(&w, (uint8_t *)data + k, 4);
            write_dword(m, off + k, w);
        } else {
            w = read_dword(m, off + k);
            memcpy((uint8_t *)data + k, &w, 4);
        }
    }
    pthread_mutex_unlock(&m->lock);
}

bool vmm__msix_enabled(struct vmm_msix *m)
{
    pthread_mutex_lock(&m->lock);
    bool on = m->enabled;
    pthread_mutex_unlock(&m->lock);
    return on;
}
