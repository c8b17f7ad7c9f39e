/* vmm/virtio-rng.c: virtio entropy device (virtio 1.2 §5.4): fills the writable buffers the
 * guest posts from the host's getrandom(2), on the I/O thread, at most MAX_PER_REQUEST bytes a
 * request (§5.4.6: the device may return fewer bytes than asked), so a guest posting all its RAM
 * cannot keep the I/O thread busy for long. */
#define VDI_LOG_TAG "vmm"
#include <stdlib.h>
#include <sys/random.h>

#include "vmm/pci-internal.h"

#define VIRTIO_ID_RNG   4
#define MAX_PER_REQUEST 65536

struct vrng {
    struct vmm_virtio_dev vd;
};

static void rng_cfg_read(struct vmm_virtio_dev *vd, uint32_t off, void *data, uint32_t len)
{
    VDI_UNUSED(vd);
    VDI_UNUSED(off);
    VDI_UNUSED(data);
    VDI_UNUSED(len); /* no device config: never called (cfg_size 0) */
}

static void rng_queue_notify(struct vmm_virtio_dev *vd, unsigned qi)
{
    struct vmm_virtq *q = &vd->q[qi].vq;
    struct vmm_virtq_req *req = malloc(sizeof(*req));
    bool any = false;
    int r;

    if (!req)
        return;
    while (vmm__virtio_queue_live(vd, qi) && (r = vmm__virtq_pop(q, req)) != 0) {
        uint32_t done = 0;
        if (r < 0) {
            vmm__virtio_fail(vd, "virtio-rng: malformed descriptor chain");
            break;
        }
        for (unsigned k = 0; k < req->nin && done < MAX_PER_REQUEST; k++) {
            uint8_t *p = req->in[k].iov_base;
            size_t left = VDI_MIN(req->in[k].iov_len, (size_t)(MAX_PER_REQUEST - done));
            while (left > 0) {
                ssize_t n = getrandom(p, left, 0);
                if (n <= 0)
                    break;
                p += n;
                left -= (size_t)n;
                done += (uint32_t)n;
            }
        }
        vmm__virtq_push(q, req->head, done);
        any = true;
    }
    if (any)
        vmm__virtio_notify(vd, qi);
    free(req);
}

static void rng_destroy(struct vmm_virtio_dev *vd)
{
    free(vdi_container_of(vd, struct vrng, vd));
}

static const struct vmm_virtio_ops rng_ops = {
    .name = "virtio-rng",
    .device_id = VIRTIO_ID_RNG,
    .class_code = 0x00ff00,
    .nqueues = 1,
    .cfg_size = 0,
    .cfg_read = rng_cfg_read,
    .queue_notify = rng_queue_notify,
    .destroy = rng_destroy,
};

int vmm__virtio_rng_create(vmm_vm_t *vm, struct vmm_virtio_dev **out)
{
    struct vrng *r = vdi_xcalloc(1, sizeof(*r));
    int err = vmm__virtio_pci_init(&r->vd, &rng_ops, 0, vm);
    if (err < 0) {
        free(r);
        return err;
    }
    *out = &r->vd;
    return 0;
}
