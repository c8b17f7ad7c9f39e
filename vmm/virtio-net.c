/* vmm/virtio-net.c: virtio network device (virtio 1.2 §5.1) on a Linux tap interface.
 *
 * The tap is opened with IFF_VNET_HDR and a 12-byte header, and with every offload off
 * (TUNSETOFFLOAD 0). We offer no offload features either, so the only header allowed on either
 * side is the plain one (virtio 1.2 §5.1.6.2: flags 0, gso_type NONE). The guest's header is
 * never handed to the tap: on TX it is read once, and the tap gets a header of our own, all
 * zeroes; a frame whose header asks for checksum or segmentation offload (flags or gso_type set:
 * something the driver may not do without the feature) is dropped and counted, with a
 * rate-limited warning, as the other fields (hdr_len, gso_size, csum_start, csum_offset) would
 * otherwise steer the host kernel's handling of the frame. On RX the tap's header is read into
 * our own buffer and the guest gets a plain one (num_buffers 1, nothing else), so nothing it did
 * not negotiate (DATA_VALID, NEEDS_CSUM, GSO) reaches it; a frame that would need an offload is
 * dropped and counted (with offloads off the kernel should never send one).
 *
 * Transmit runs when the guest kicks the TX queue; receive runs when the tap is readable, both on
 * the I/O thread. A frame that arrives while the guest has posted no receive buffer is dropped,
 * as a NIC with a full ring drops it.
 */
#define VDI_LOG_TAG "vmm"
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vmm/pci-internal.h"

#define VIRTIO_ID_NET        1
#define VIRTIO_NET_F_MAC     5
#define VIRTIO_NET_F_STATUS  16
#define VIRTIO_NET_S_LINK_UP 1
#define NET_HDR_LEN          12
#define NET_HDR_F_NEEDS_CSUM 1
#define NET_GSO_NONE         0
#define RXQ                  0
#define TXQ                  1
#define BATCH                64

struct vnet {
    struct vmm_virtio_dev vd;
    int tap;
    bool tap_polled;
    uint8_t config[8]; /* mac[6], status */
    uint8_t scratch[65536 + NET_HDR_LEN];
    struct vmm_virtq_req req;
    struct iovec iov[VMM_VIRTQ_MAX_SEGS + 1]; /* our header + a chain's buffers past the guest's */
    uint64_t tx_bad_hdr, rx_bad_hdr;          /* frames dropped for an offload header */
};

/* virtio 1.2 §5.1.6: struct virtio_net_hdr, as VERSION_1 lays it out (little-endian). */
struct net_hdr {
    uint8_t flags, gso_type;
    uint16_t hdr_len, gso_size, csum_start, csum_offset, num_buffers;
} __attribute__((packed));
_Static_assert(sizeof(struct net_hdr) == NET_HDR_LEN, "virtio_net_hdr with num_buffers");

/* iov[0] = @hdr, then @src's @n buffers from byte NET_HDR_LEN on. Returns the count. */
static int iov_after_hdr(struct iovec *iov, struct net_hdr *hdr, const struct iovec *src,
                         unsigned n)
{
    size_t skip = NET_HDR_LEN;
    int k = 1;
    iov[0].iov_base = hdr;
    iov[0].iov_len = NET_HDR_LEN;
    for (unsigned i = 0; i < n; i++) {
        if (src[i].iov_len <= skip) {
            skip -= src[i].iov_len;
            continue;
        }
        iov[k].iov_base = (uint8_t *)src[i].iov_base + skip;
        iov[k].iov_len = src[i].iov_len - skip;
        skip = 0;
        k++;
    }
    return k;
}

static struct vnet *vnet_of(struct vmm_virtio_dev *vd)
{
    return vdi_container_of(vd, struct vnet, vd);
}

static void net_cfg_read(struct vmm_virtio_dev *vd, uint32_t off, void *data, uint32_t len)
{
    memcpy(data, vnet_of(vd)->config + off, len);
}

static void tx(struct vnet *n)
{
    struct vmm_virtio_dev *vd = &n->vd;
    bool any = false;
    int r;
    while (vmm__virtio_queue_live(vd, TXQ) && (r = vmm__virtq_pop(&vd->q[TXQ].vq, &n->req)) != 0) {
        if (r < 0) {
            vmm__virtio_fail(vd, "virtio-net: malformed TX chain");
            break;
        }
        if (n->req.out_len > NET_HDR_LEN && n->req.out_len <= sizeof(n->scratch)) {
            struct net_hdr guest, plain = {0};
            /* One copy: the guest may rewrite its header while we look at it. */
            vmm__virtq_req_read(&n->req, 0, &guest, sizeof(guest));
            if (guest.flags != 0 || guest.gso_type != NET_GSO_NONE) {
                n->tx_bad_hdr++;
                VDI_LOG_WARN_RL(
                    "vm=%s virtio-net: TX frame dropped: its header asks for an "
                    "offload that was not negotiated (flags=0x%x gso_type=%u; %" PRIu64 " so far)",
                    vmm__vm_name(vd->pci.vm), guest.flags, guest.gso_type, n->tx_bad_hdr);
            } else {
                int cnt = iov_after_hdr(n->iov, &plain, n->req.out, n->req.nout);
                if (writev(n->tap, n->iov, cnt) < 0)
                    VDI_LOG_WARN_RL("vm=%s virtio-net: tap write: %s", vmm__vm_name(vd->pci.vm),
                                    vdi_strerror(-errno));
            }
        }
        vmm__virtq_push(&vd->q[TXQ].vq, n->req.head, 0);
        any = true;
    }
    if (any)
        vmm__virtio_notify(vd, TXQ);
}

static void net_queue_notify(struct vmm_virtio_dev *vd, unsigned qi)
{
    if (qi == TXQ)
        tx(vnet_of(vd));
    /* RX kicks need nothing: frames are taken when the tap has them. */
}

static void on_tap(void *opaque)
{
    struct vnet *n = opaque;
    struct vmm_virtio_dev *vd = &n->vd;
    bool any = false;

    pthread_mutex_lock(&vd->lock);
    for (unsigned i = 0; i < BATCH; i++) {
        int r = 0;
        if (vmm__virtio_queue_live(vd, RXQ))
            r = vmm__virtq_pop(&vd->q[RXQ].vq, &n->req);
        if (r < 0) {
            vmm__virtio_fail(vd, "virtio-net: malformed RX chain");
            r = 0;
        }
        if (r == 0 || n->req.in_len < NET_HDR_LEN) {
            /* No buffer: drop one frame (the tap is level-triggered on the I/O thread). */
            if (r == 1)
                vmm__virtq_push(&vd->q[RXQ].vq, n->req.head, 0);
            if (read(n->tap, n->scratch, sizeof(n->scratch)) < 0)
                break;
            continue;
        }
        struct net_hdr tap_hdr = {0};
        int cnt = iov_after_hdr(n->iov, &tap_hdr, n->req.in, n->req.nin);
        ssize_t got = readv(n->tap, n->iov, cnt);
        if (got < NET_HDR_LEN || tap_hdr.gso_type != NET_GSO_NONE ||
            (tap_hdr.flags & NET_HDR_F_NEEDS_CSUM)) {
            /* Nothing to read after all, or a frame the guest could not take as it is: give
             * the buffer back unused (what the frame left in it is the guest's own problem). */
            vd->q[RXQ].vq.last_avail--;
            if (got < 0)
                break;
            n->rx_bad_hdr++;
            VDI_LOG_WARN_RL("vm=%s virtio-net: RX frame dropped: the tap sent an offload header "
                            "(flags=0x%x gso_type=%u; %" PRIu64 " so far)",
                            vmm__vm_name(vd->pci.vm), tap_hdr.flags, tap_hdr.gso_type,
                            n->rx_bad_hdr);
            continue;
        }
        /* The guest negotiated no offload: a plain header, DATA_VALID and the rest cleared. */
        struct net_hdr plain = {.num_buffers = 1};
        vmm__virtq_req_write(&n->req, 0, &plain, sizeof(plain));
        vmm__virtq_push(&vd->q[RXQ].vq, n->req.head, (uint32_t)got);
        any = true;
    }
    if (any)
        vmm__virtio_notify(vd, RXQ);
    pthread_mutex_unlock(&vd->lock);
}

static void net_destroy(struct vmm_virtio_dev *vd)
{
    struct vnet *n = vnet_of(vd);
    if (n->tap_polled)
        vmm__iothread_del_fd(vd->pci.vm, n->tap);
    close(n->tap);
    free(n);
}

static const struct vmm_virtio_ops net_ops = {
    .name = "virtio-net",
    .device_id = VIRTIO_ID_NET,
    .class_code = 0x020000,
    .nqueues = 2,
    .cfg_size = 8,
    .cfg_read = net_cfg_read,
    .queue_notify = net_queue_notify,
    .destroy = net_destroy,
};

static int tap_open(const char *name)
{
    struct ifreq ifr;
    int hdr = NET_HDR_LEN;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (strlen(name) >= IFNAMSIZ) {
        close(fd);
        return -ENAMETOOLONG;
    }
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    memcpy(ifr.ifr_name, name, strlen(name));
    /* Offloads off: the kernel then sends us only plain frames (checksummed, unsegmented). */
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
        ioctl(fd, TUNSETOFFLOAD, 0ul) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

int vmm__tap_adopt(int fd)
{
    struct ifreq ifr;
    int hdr = NET_HDR_LEN, fl;
    memset(&ifr, 0, sizeof(ifr));
    if (ioctl(fd, TUNGETIFF, &ifr) < 0)
        return errno == EBADF ? -EBADF : -ENOTTY;
    if (!(ifr.ifr_flags & IFF_TAP) || !(ifr.ifr_flags & IFF_VNET_HDR) ||
        !(ifr.ifr_flags & IFF_NO_PI))
        return -ENOTTY; /* a tun, or a tap without the header we read and write */
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 || ioctl(fd, TUNSETOFFLOAD, 0ul) < 0 ||
        (fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

int vmm__virtio_net_create_fd(vmm_vm_t *vm, int fd, const uint8_t *mac, struct vmm_virtio_dev **out)
{
    struct vnet *n;
    int err;
    uint16_t status = VIRTIO_NET_S_LINK_UP;

    n = vdi_xcalloc(1, sizeof(*n));
    n->tap = fd;
    if (mac) {
        memcpy(n->config, mac, 6); /* vdid's: stable for a dedicated desktop, known to DHCP */
    } else {
        /* 52:54:00 (as QEMU) plus three random bytes. */
        n->config[0] = 0x52;
        n->config[1] = 0x54;
        n->config[2] = 0x00;
        if (getrandom(n->config + 3, 3, 0) != 3)
            memset(n->config + 3, 0x12, 3);
    }
    memcpy(n->config + 6, &status, 2);
    err = vmm__virtio_pci_init(&n->vd, &net_ops,
                               1ull << VIRTIO_NET_F_MAC | 1ull << VIRTIO_NET_F_STATUS, vm);
    if (err < 0)
        goto err_free;
    err = vmm__iothread_add_fd(vm, fd, on_tap, n);
    if (err < 0) {
        /* Registered on the bus already: the bus tears it down with the VM. */
        return err;
    }
    n->tap_polled = true;
    *out = &n->vd;
    return 0;
err_free:
    close(fd);
    free(n);
    return err;
}

int vmm__virtio_net_create(vmm_vm_t *vm, const char *tap, const uint8_t *mac,
                           struct vmm_virtio_dev **out)
{
    int fd = tap_open(tap);
    if (fd < 0)
        return fd;
    return vmm__virtio_net_create_fd(vm, fd, mac, out);
}
