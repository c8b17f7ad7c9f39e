/* golden-images/testdesk/virtio.c: the virtio-pci 1.x transport (virtio 1.2 §4.1) with MSI-X,
 * feature negotiation (§3.1.1), and split virtqueues (§2.7), as a driver does it. */
#include "golden-images/testdesk/desk.h"

/* Common configuration structure (§4.1.4.3). */
#define CC_DFSELECT   0x00
#define CC_DF         0x04
#define CC_GFSELECT   0x08
#define CC_GF         0x0c
#define CC_MSIX       0x10
#define CC_NUMQ       0x12
#define CC_STATUS     0x14
#define CC_QSELECT    0x16
#define CC_QSIZE      0x18
#define CC_QMSIX      0x1a
#define CC_QENABLE    0x1c
#define CC_QNOTIFY    0x1e
#define CC_QDESC      0x20
#define CC_QDRIVER    0x28
#define CC_QDEVICE    0x30

#define S_ACK         1
#define S_DRIVER      2
#define S_DRIVER_OK   4
#define S_FEATURES_OK 8
#define S_FAILED      128

#define NO_VECTOR     0xffff
#define VEC_BASE      0x30 /* IDT vectors for MSI-X entries: 0x30.. */

static unsigned next_vector = VEC_BASE;

unsigned td_virtio_type(const struct td_pci_dev *d)
{
    if (d->vendor != 0x1af4 || d->device < 0x1000 || d->device > 0x107f)
        return 0;
    if (d->device >= 0x1040)
        return d->device - 0x1040;
    return d->subsys; /* transitional: the subsystem ID names the type */
}

static bool bar_addr(const struct td_pci_dev *d, unsigned cap, uint64_t *out, uint32_t *len)
{
    uint8_t bar = td_pci_rd8(d, cap + 4);
    uint32_t off = td_pci_rd32(d, cap + 8);
    *len = td_pci_rd32(d, cap + 12);
    if (bar > 5 || d->bar_io[bar] || !d->bar[bar] || (uint64_t)off + *len > d->bar_size[bar])
        return false;
    *out = d->bar[bar] + off;
    return td_map(*out, *len ? *len : 1);
}

uint64_t td_virtio_devcfg(const struct td_pci_dev *d)
{
    uint32_t len;
    uint64_t a;
    for (unsigned c = td_pci_cap(d, 0x09, 0); c; c = td_pci_cap(d, 0x09, c))
        if (td_pci_rd8(d, c + 3) == 4 && bar_addr(d, c, &a, &len))
            return a;
    return 0;
}

static int fail(struct td_virtio *v, const char *why)
{
    if (v->common)
        wr8(v->common + CC_STATUS, rd8(v->common + CC_STATUS) | S_FAILED);
    td_printf("TESTDESK FAIL %s %02x:%02x.%x %s\n", v->name, v->pci->bus, v->pci->dev, v->pci->fn,
              why);
    return -1;
}

/* Find the virtio vendor capabilities (§4.1.4) and the MSI-X table. */
static int find_structures(struct td_virtio *v)
{
    const struct td_pci_dev *d = v->pci;
    uint32_t len;
    for (unsigned c = td_pci_cap(d, 0x09, 0); c; c = td_pci_cap(d, 0x09, c)) {
        uint8_t type = td_pci_rd8(d, c + 3);
        uint64_t a;
        if (type < 1 || type > 4 || !bar_addr(d, c, &a, &len))
            continue;
        if (type == 1 && !v->common && len >= 0x38)
            v->common = a;
        else if (type == 2 && !v->notify) {
            v->notify = a;
            v->notify_mult = td_pci_rd32(d, c + 16);
        } else if (type == 3 && !v->isr)
            v->isr = a;
        else if (type == 4 && !v->devcfg)
            v->devcfg = a;
    }
    if (!v->common || !v->notify)
        return fail(v, "no virtio 1.x common/notify capability (legacy-only device)");
    unsigned mc = td_pci_cap(d, 0x11, 0);
    if (!mc)
        return fail(v, "no MSI-X capability");
    uint32_t tbl = td_pci_rd32(d, mc + 4);
    uint8_t bir = tbl & 7;
    /* Fewer vectors than queues (QEMU gives virtio-serial max_ports + 1): the last ones share. */
    v->msix_entries = (td_pci_rd16(d, mc + 2) & 0x7ff) + 1;
    if (v->msix_entries > v->nvq)
        v->msix_entries = v->nvq;
    if (bir > 5 || !d->bar[bir] || !td_map(d->bar[bir] + (tbl & ~7u), 16 * v->msix_entries))
        return fail(v, "MSI-X table not reachable");
    v->msix_table = d->bar[bir] + (tbl & ~7u);
    td_pci_wr16(d, mc + 2, td_pci_rd16(d, mc + 2) | 0x8000); /* MSI-X enable */
    return 0;
}

static void msix_set(struct td_virtio *v, unsigned entry, unsigned vector)
{
    uint64_t e = v->msix_table + 16 * entry;
    wr32(e + 0, 0xfee00000u | td_lapic_id() << 12);
    wr32(e + 4, 0);
    wr32(e + 8, vector);
    wr32(e + 12, 0); /* unmasked */
}

static int queue_setup(struct td_virtio *v, unsigned i, uint16_t qsize)
{
    struct td_vq *q = &v->vq[i];
    uint64_t c = v->common;
    wr16(c + CC_QSELECT, (uint16_t)i);
    uint16_t max = rd16(c + CC_QSIZE);
    if (!max)
        return fail(v, "queue missing");
    uint16_t n = max < qsize ? max : qsize;
    /* A power of two no larger than the device's maximum (split rings need one). */
    while (n & (n - 1))
        n &= (uint16_t)(n - 1);
    q->index = (uint16_t)i;
    q->size = n;
    q->desc = td_alloc(16ULL * n, 16);
    q->avail = td_alloc(6 + 2ULL * n, 2);
    q->used = td_alloc(6 + 8ULL * n, 4);
    if (!q->desc || !q->avail || !q->used)
        return fail(v, "out of memory for queues");
    wr16(c + CC_QSIZE, n);
    uint16_t entry = (uint16_t)(i < v->msix_entries ? i : v->msix_entries - 1);
    if (entry == i)
        msix_set(v, entry, next_vector++);
    wr16(c + CC_QMSIX, entry);
    if (rd16(c + CC_QMSIX) != entry)
        return fail(v, "MSI-X vector for a queue refused");
    wr64(c + CC_QDESC, (uint64_t)(uintptr_t)q->desc);
    wr64(c + CC_QDRIVER, (uint64_t)(uintptr_t)q->avail);
    wr64(c + CC_QDEVICE, (uint64_t)(uintptr_t)q->used);
    q->notify = v->notify + (uint64_t)rd16(c + CC_QNOTIFY) * v->notify_mult;
    if (!td_map(q->notify, 2))
        return fail(v, "notify address not reachable");
    wr16(c + CC_QENABLE, 1);
    return 0;
}

int td_virtio_init(struct td_virtio *v, const struct td_pci_dev *d, const char *name, uint64_t want,
                   unsigned nvq, uint16_t qsize)
{
    memset(v, 0, sizeof(*v));
    v->pci = d;
    v->name = name;
    v->nvq = nvq;
    if (find_structures(v) < 0)
        return -1;
    uint64_t c = v->common;
    /* §3.1.1: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK (re-read), queues, DRIVER_OK. */
    wr8(c + CC_STATUS, 0);
    for (int i = 0; i < 100000 && rd8(c + CC_STATUS); i++)
        ;
    wr8(c + CC_STATUS, S_ACK);
    wr8(c + CC_STATUS, S_ACK | S_DRIVER);
    wr32(c + CC_DFSELECT, 0);
    uint64_t offered = rd32(c + CC_DF);
    wr32(c + CC_DFSELECT, 1);
    offered |= (uint64_t)rd32(c + CC_DF) << 32;
    if (!(offered & TD_VIRTIO_F_VERSION_1)) {
        char why[96];
        td_snprintf(why, sizeof(why), "feature negotiation: VIRTIO_F_VERSION_1 not offered (0x%lx)",
                    offered);
        return fail(v, why);
    }
    v->features = offered & (want | TD_VIRTIO_F_VERSION_1);
    wr32(c + CC_GFSELECT, 0);
    wr32(c + CC_GF, (uint32_t)v->features);
    wr32(c + CC_GFSELECT, 1);
    wr32(c + CC_GF, (uint32_t)(v->features >> 32));
    wr8(c + CC_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    if (!(rd8(c + CC_STATUS) & S_FEATURES_OK)) {
        char why[96];
        td_snprintf(why, sizeof(why), "feature negotiation: FEATURES_OK refused for 0x%lx",
                    v->features);
        return fail(v, why);
    }
    if (rd16(c + CC_NUMQ) < nvq)
        return fail(v, "too few queues");
    wr16(c + CC_MSIX, NO_VECTOR); /* config changes: not used */
    for (unsigned i = 0; i < nvq; i++)
        if (queue_setup(v, i, qsize) < 0)
            return -1;
    return 0;
}

void td_virtio_driver_ok(struct td_virtio *v)
{
    wr8(v->common + CC_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

bool td_vq_post(struct td_vq *q, const uint64_t *addr, const uint32_t *len, const bool *write,
                unsigned n)
{
    /* Descriptors are used as one free-running ring: chain i starts where chain i-1 ended. The
     * drivers here keep at most size/n chains in flight, so a slot is free when reused. */
    uint16_t in_flight = (uint16_t)(q->avail[1] - q->last_used);
    if ((unsigned)(in_flight + 1) * n > q->size)
        return false;
    uint16_t head = q->next_desc;
    for (unsigned i = 0; i < n; i++) {
        uint16_t d = (uint16_t)((head + i) % q->size);
        q->desc[d].addr = addr[i];
        q->desc[d].len = len[i];
        q->desc[d].flags = (uint16_t)((i + 1 < n ? 1 : 0) | (write[i] ? 2 : 0));
        q->desc[d].next = (uint16_t)((d + 1) % q->size);
    }
    q->next_desc = (uint16_t)((head + n) % q->size);
    uint16_t idx = q->avail[1];
    q->avail[2 + idx % q->size] = head;
    td_barrier(); /* the ring entry before the index (§2.7.13) */
    q->avail[1] = (uint16_t)(idx + 1);
    return true;
}

void td_vq_kick(struct td_vq *q)
{
    td_barrier();
    wr16(q->notify, q->index);
}

bool td_vq_take(struct td_vq *q, uint16_t *head, uint32_t *len)
{
    volatile uint16_t *uidx = (volatile uint16_t *)(q->used + 2);
    if (*uidx == q->last_used)
        return false;
    td_barrier();
    volatile uint32_t *e = (volatile uint32_t *)(q->used + 4 + 8 * (q->last_used % q->size));
    *head = (uint16_t)e[0];
    *len = e[1];
    q->last_used++;
    return true;
}

bool td_vq_wait(struct td_vq *q, uint64_t timeout_us)
{
    uint64_t end = td_now_us() + timeout_us;
    for (;;) {
        uint64_t seen = td_irq_count;
        if (*(volatile uint16_t *)(q->used + 2) != q->last_used)
            return true;
        uint64_t now = td_now_us();
        if (now >= end)
            return false;
        td_timer_arm(end - now < 10000 ? end - now : 10000);
        td_sleep(seen);
    }
}

void td_vq_repost(struct td_vq *q, uint16_t head)
{
    uint16_t idx = q->avail[1];
    q->avail[2 + idx % q->size] = head;
    td_barrier();
    q->avail[1] = (uint16_t)(idx + 1);
}
