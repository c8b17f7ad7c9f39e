/* vmm/virtq.c: split virtqueues (virtio 1.2 §2.7) walked defensively.
 *
 * Everything in a ring is guest memory the guest may change under us at any time, from another
 * vCPU. So each descriptor is copied once into a local before it is looked at; each buffer is
 * resolved with vmm__gpa_ptr(), which refuses anything not wholly inside guest RAM; each walk is
 * bounded by the size of the table it is in (a loop runs out of steps), by VMM_VIRTQ_MAX_SEGS
 * overall, and an indirect table may not nest. A broken ring is reported as VDI_EGUEST; the
 * transport then marks the device DEVICE_NEEDS_RESET.
 */
#define VDI_LOG_TAG "vmm"
#include <string.h>

#include "vmm/pci-internal.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "virtq.c reads the rings as little-endian host values"
#endif

#define VIRTQ_DESC_F_NEXT          1
#define VIRTQ_DESC_F_WRITE         2
#define VIRTQ_DESC_F_INDIRECT      4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

static uint64_t avail_bytes(uint16_t size)
{
    return 6 + 2ull * size;
}

static uint64_t used_bytes(uint16_t size)
{
    return 6 + 8ull * size;
}

int vmm__virtq_start(struct vmm_virtq *q)
{
    uint16_t n = q->size;

    q->started = false;
    if (n == 0 || n > VMM_VIRTQ_MAX_SIZE || (n & (n - 1)) != 0)
        return VDI_EGUEST;
    /* §2.7: descriptor table 16-byte, driver area 2-byte, device area 4-byte aligned. */
    if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
        return VDI_EGUEST;
    q->desc = vmm__gpa_ptr(q->vm, q->desc_gpa, 16ull * n);
    q->avail = vmm__gpa_ptr(q->vm, q->avail_gpa, avail_bytes(n));
    q->used = vmm__gpa_ptr(q->vm, q->used_gpa, used_bytes(n));
    if (!q->desc || !q->avail || !q->used) {
        q->desc = q->avail = q->used = NULL;
        return VDI_EGUEST;
    }
    q->last_avail = 0;
    q->used_idx = 0;
    q->started = true;
    return 0;
}

void vmm__virtq_stop(struct vmm_virtq *q)
{
    q->started = false;
    q->desc = q->avail = q->used = NULL;
    q->last_avail = 0;
    q->used_idx = 0;
}

static uint16_t load16(const void *p)
{
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

static void read_desc(const void *table, uint32_t i, struct virtq_desc *d)
{
    /* One copy; the guest may rewrite the entry while we look at it. */
    const volatile uint8_t *src = (const volatile uint8_t *)table + 16ull * i;
    uint8_t tmp[16];
    for (unsigned k = 0; k < 16; k++)
        tmp[k] = src[k];
    memcpy(&d->addr, tmp, 8);
    memcpy(&d->len, tmp + 8, 4);
    memcpy(&d->flags, tmp + 12, 2);
    memcpy(&d->next, tmp + 14, 2);
}

int vmm__virtq_pop(struct vmm_virtq *q, struct vmm_virtq_req *req)
{
    const uint8_t *avail = q->avail;
    uint16_t avail_idx, pending, head;

    if (!q->started)
        return 0;
    avail_idx = load16(avail + 2);
    pending = (uint16_t)(avail_idx - q->last_avail);
    if (pending == 0)
        return 0;
    if (pending > q->size)
        return VDI_EGUEST; /* §2.7.13.3: idx moved by more than the ring holds */
    head = load16(avail + 4 + 2u * (q->last_avail % q->size));
    if (head >= q->size)
        return VDI_EGUEST;

    req->head = head;
    req->nout = req->nin = 0;
    req->out_len = req->in_len = 0;

    const void *table = q->desc;
    uint32_t table_n = q->size;
    uint32_t steps = 0; /* descriptors visited in the current table: bounds loops */
    bool indirect = false;
    uint32_t i = head;
    for (;;) {
        struct virtq_desc d;
        if (++steps > table_n)
            return VDI_EGUEST; /* a loop, or a chain longer than its table */
        read_desc(table, i, &d);
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            /* §2.7.5.3: only when negotiated, never inside an indirect table, never together
             * with NEXT; the table is a whole number of descriptors. */
            if (!q->indirect || indirect || (d.flags & VIRTQ_DESC_F_NEXT))
                return VDI_EGUEST;
            if (d.len == 0 || d.len % 16 != 0 || d.len / 16 > VMM_VIRTQ_MAX_SEGS)
                return VDI_EGUEST;
            table = vmm__gpa_ptr(q->vm, d.addr, d.len);
            if (!table)
                return VDI_EGUEST;
            table_n = d.len / 16;
            steps = 0;
            indirect = true;
            i = 0;
            continue;
        }
        if (d.len != 0) {
            void *p = vmm__gpa_ptr(q->vm, d.addr, d.len);
            if (!p)
                return VDI_EGUEST;
            if (req->nout + req->nin >= VMM_VIRTQ_MAX_SEGS)
                return VDI_EGUEST;
            if (d.flags & VIRTQ_DESC_F_WRITE) {
                req->in[req->nin].iov_base = p;
                req->in[req->nin].iov_len = d.len;
                req->nin++;
                req->in_len += d.len;
            } else {
                /* §2.7.4.2: device-readable buffers come before device-writable ones. */
                if (req->nin != 0)
                    return VDI_EGUEST;
                req->out[req->nout].iov_base = p;
                req->out[req->nout].iov_len = d.len;
                req->nout++;
                req->out_len += d.len;
            }
        }
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            break;
        i = d.next;
        if (i >= table_n)
            return VDI_EGUEST;
    }
    q->last_avail++;
    return 1;
}

void vmm__virtq_push(struct vmm_virtq *q, uint16_t head, uint32_t len)
{
    uint8_t *used = q->used;
    uint8_t *elem;
    uint32_t id = head;

    if (!q->started)
        return;
    elem = used + 4 + 8u * (q->used_idx % q->size);
    memcpy(elem, &id, 4);
    memcpy(elem + 4, &len, 4);
    q->used_idx++;
    /* The element must be visible before the index that publishes it (release), and the index
     * before we read the guest's interrupt-suppression flag in vmm__virtq_should_notify
     * (store-load: sequentially consistent, a locked instruction on x86). */
    __atomic_store_n((uint16_t *)(used + 2), q->used_idx, __ATOMIC_SEQ_CST);
}

bool vmm__virtq_should_notify(struct vmm_virtq *q)
{
    if (!q->started)
        return false;
    return !(__atomic_load_n((const uint16_t *)q->avail, __ATOMIC_SEQ_CST) &
             VIRTQ_AVAIL_F_NO_INTERRUPT);
}

size_t vmm__virtq_req_read(const struct vmm_virtq_req *req, size_t off, void *dst, size_t len)
{
    size_t done = 0;
    for (unsigned k = 0; k < req->nout && done < len; k++) {
        size_t seg = req->out[k].iov_len;
        if (off >= seg) {
            off -= seg;
            continue;
        }
        size_t n = VDI_MIN(seg - off, len - done);
        memcpy((uint8_t *)dst + done, (uint8_t *)req->out[k].iov_base + off, n);
        done += n;
        off = 0;
    }
    return done;
}

size_t vmm__virtq_req_write(const struct vmm_virtq_req *req, size_t off, const void *src,
                            size_t len)
{
    size_t done = 0;
    for (unsigned k = 0; k < req->nin && done < len; k++) {
        size_t seg = req->in[k].iov_len;
        if (off >= seg) {
            off -= seg;
            continue;
        }
        size_t n = VDI_MIN(seg - off, len - done);
        memcpy((uint8_t *)req->in[k].iov_base + off, (const uint8_t *)src + done, n);
        done += n;
        off = 0;
    }
    return done;
}
