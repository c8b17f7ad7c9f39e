/* vmm/virtio-blk.c: virtio block device (virtio 1.2 §5.2) over a disk image of golden-images/
 * (img.h: raw files, host block devices and qcow2 images alike, locked as the library locks them).
 *
 * Requests are served on the I/O thread when the guest kicks the queue, synchronously, one after
 * the other: an image call blocks that thread only. Each request is bounds-checked against the
 * disk size before the library sees it, and whatever the library returns (-errno,
 * VDI_EBADIMAGE) reaches the guest as IOERR; nothing the disk does stops the VMM. A read-only
 * disk offers VIRTIO_BLK_F_RO and fails writes, discards and write-zeroes with IOERR whatever the
 * guest does (the image is open read-only too). FLUSH is offered and goes to img_flush()
 * (fdatasync for raw files, the ordered metadata flush for qcow2). A writable disk offers DISCARD
 * (img_discard(): a punched hole, or freed qcow2 clusters) and WRITE_ZEROES (real zeroes
 * written, since a discard may leave partial clusters alone).
 */
#define VDI_LOG_TAG "vmm"
#include <stdlib.h>
#include <string.h>

#include "vmm/pci-internal.h"

#define VIRTIO_ID_BLOCK           2
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK           0
#define VIRTIO_BLK_S_IOERR        1
#define VIRTIO_BLK_S_UNSUPP       2

#define SECTOR                    512
#define SEG_MAX                   (VMM_VIRTQ_MAX_SEGS - 2)
#define MAX_DISCARD_SECTORS       (1u << 22) /* 2 GiB per segment */
#define MAX_DISCARD_SEG           16

struct vblk {
    struct vmm_virtio_dev vd;
    img_disk_t *disk; /* owned */
    uint64_t size;    /* bytes */
    bool read_only;
    uint8_t config[60];
    char serial[20];
    uint8_t *zeroes; /* 1 MiB of zeroes that WRITE_ZEROES writes from */
};

static struct vblk *vblk_of(struct vmm_virtio_dev *vd)
{
    return vdi_container_of(vd, struct vblk, vd);
}

static void blk_cfg_read(struct vmm_virtio_dev *vd, uint32_t off, void *data, uint32_t len)
{
    struct vblk *b = vblk_of(vd);
    memcpy(data, b->config + off, len);
}

/* Data buffers: everything after the 16-byte header and before the status byte. */
static int do_rw(struct vblk *b, const struct vmm_virtq_req *req, uint64_t sector, bool write,
                 uint32_t *written)
{
    uint64_t off = sector * SECTOR;
    uint64_t len = write ? req->out_len - 16 : req->in_len - 1;
    if (sector > UINT64_MAX / SECTOR || len % SECTOR != 0 || off > b->size || len > b->size - off)
        return VIRTIO_BLK_S_IOERR;
    if (write) {
        size_t skip = 16; /* header bytes at the start of the readable buffers */
        for (unsigned k = 0; k < req->nout; k++) {
            size_t seg = req->out[k].iov_len;
            if (skip >= seg) {
                skip -= seg;
                continue;
            }
            const uint8_t *p = (const uint8_t *)req->out[k].iov_base + skip;
            size_t n = seg - skip;
            skip = 0;
            if (img_pwrite(b->disk, p, n, off) < 0)
                return VIRTIO_BLK_S_IOERR;
            off += n;
        }
    } else {
        uint64_t left = len;
        for (unsigned k = 0; k < req->nin && left > 0; k++) {
            size_t n = VDI_MIN(req->in[k].iov_len, left);
            if (img_pread(b->disk, req->in[k].iov_base, n, off) < 0)
                return VIRTIO_BLK_S_IOERR;
            off += n;
            left -= n;
            *written += n;
        }
    }
    return VIRTIO_BLK_S_OK;
}

static int do_discard(struct vblk *b, const struct vmm_virtq_req *req, bool zeroes)
{
    uint64_t nseg = (req->out_len - 16) / 16;
    if (nseg == 0 || nseg > MAX_DISCARD_SEG || (req->out_len - 16) % 16)
        return VIRTIO_BLK_S_IOERR;
    for (uint64_t i = 0; i < nseg; i++) {
        uint8_t seg[16];
        uint64_t sector;
        uint32_t num, flags;
        vmm__virtq_req_read(req, 16 + 16 * i, seg, 16);
        memcpy(&sector, seg, 8);
        memcpy(&num, seg + 8, 4);
        memcpy(&flags, seg + 12, 4);
        if (num > MAX_DISCARD_SECTORS || sector > b->size / SECTOR ||
            num > b->size / SECTOR - sector)
            return VIRTIO_BLK_S_IOERR;
        uint64_t off = sector * SECTOR, len = (uint64_t)num * SECTOR;
        if (!zeroes) {
            if (img_discard(b->disk, off, len) < 0)
                return VIRTIO_BLK_S_IOERR;
            continue;
        }
        /* Write zeroes: img_discard() leaves partial qcow2 clusters as they are, so it cannot
         * promise zeroes; write real ones. */
        while (len > 0) {
            size_t n = VDI_MIN(len, (uint64_t)1 << 20);
            if (img_pwrite(b->disk, b->zeroes, n, off) < 0)
                return VIRTIO_BLK_S_IOERR;
            off += n;
            len -= n;
        }
    }
    return VIRTIO_BLK_S_OK;
}

static void serve(struct vblk *b, struct vmm_virtq_req *req)
{
    uint8_t hdr[16];
    uint32_t type, written = 0;
    uint64_t sector;
    uint8_t status;

    /* §5.2.6: a 16-byte readable header, data, and one writable status byte at the end. */
    if (req->out_len < 16 || req->in_len < 1) {
        vmm__virtio_fail(&b->vd, "virtio-blk request without header or status byte");
        return;
    }
    vmm__virtq_req_read(req, 0, hdr, 16);
    memcpy(&type, hdr, 4);
    memcpy(&sector, hdr + 8, 8);
    switch (type) {
    case VIRTIO_BLK_T_IN:
        status = do_rw(b, req, sector, false, &written);
        break;
    case VIRTIO_BLK_T_OUT:
        status = b->read_only ? VIRTIO_BLK_S_IOERR : do_rw(b, req, sector, true, &written);
        break;
    case VIRTIO_BLK_T_FLUSH:
        status = img_flush(b->disk) < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
        break;
    case VIRTIO_BLK_T_GET_ID: {
        size_t n = VDI_MIN(req->in_len - 1, sizeof(b->serial));
        written = vmm__virtq_req_write(req, 0, b->serial, n);
        status = VIRTIO_BLK_S_OK;
        break;
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        status = b->read_only ? VIRTIO_BLK_S_IOERR
                              : do_discard(b, req, type == VIRTIO_BLK_T_WRITE_ZEROES);
        break;
    default:
        status = VIRTIO_BLK_S_UNSUPP;
        break;
    }
    vmm__virtq_req_write(req, req->in_len - 1, &status, 1);
    vmm__virtq_push(&b->vd.q[0].vq, req->head, written + 1);
}

static void blk_queue_notify(struct vmm_virtio_dev *vd, unsigned qi)
{
    struct vblk *b = vblk_of(vd);
    struct vmm_virtq *q = &vd->q[qi].vq;
    struct vmm_virtq_req *req = malloc(sizeof(*req));
    bool any = false;
    int r;

    if (!req)
        return; /* try again on the next kick */
    while (vmm__virtio_queue_live(vd, qi) && (r = vmm__virtq_pop(q, req)) != 0) {
        if (r < 0) {
            vmm__virtio_fail(vd, "virtio-blk: malformed descriptor chain");
            break;
        }
        serve(b, req);
        any = true;
    }
    if (any)
        vmm__virtio_notify(vd, qi);
    free(req);
}

static void blk_destroy(struct vmm_virtio_dev *vd)
{
    struct vblk *b = vblk_of(vd);
    img_close(b->disk);
    free(b->zeroes);
    free(b);
}

static const struct vmm_virtio_ops blk_ops = {
    .name = "virtio-blk",
    .device_id = VIRTIO_ID_BLOCK,
    .class_code = 0x018000,
    .nqueues = 1,
    .cfg_size = 60,
    .cfg_read = blk_cfg_read,
    .queue_notify = blk_queue_notify,
    .destroy = blk_destroy,
};

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

int vmm__virtio_blk_create(vmm_vm_t *vm, img_disk_t *disk, struct vmm_virtio_dev **out)
{
    static unsigned counter;
    struct vblk *b = vdi_xcalloc(1, sizeof(*b));
    uint64_t features =
        1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH;
    uint64_t sectors = img_size(disk) / SECTOR;
    int err;

    b->disk = disk;
    b->size = img_size(disk);
    b->read_only = img_read_only(disk);
    b->zeroes = vdi_xcalloc(1, 1 << 20);
    snprintf(b->serial, sizeof(b->serial), "vdi-disk-%u", __atomic_fetch_add(&counter, 1, 0));
    /* struct virtio_blk_config (§5.2.4) */
    memcpy(b->config + 0, &sectors, 8);
    put32(b->config + 12, SEG_MAX);
    put32(b->config + 20, SECTOR);
    put32(b->config + 36, MAX_DISCARD_SECTORS);
    put32(b->config + 40, MAX_DISCARD_SEG);
    put32(b->config + 44, 1);
    put32(b->config + 48, MAX_DISCARD_SECTORS);
    put32(b->config + 52, MAX_DISCARD_SEG);
    /* §5.2.3: a read-only disk says so; a writable one takes discards and write-zeroes. */
    if (b->read_only)
        features |= 1ull << VIRTIO_BLK_F_RO;
    else
        features |= 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
    err = vmm__virtio_pci_init(&b->vd, &blk_ops, features, vm);
    if (err < 0) {
        free(b->zeroes);
        free(b);
        return err;
    }
    *out = &b->vd;
    return 0;
}
