/* vmm/pci-internal.h: what the PCI side of vdi-vmm shares between its files (pci.c, msix.c,
 * virtq.c, virtio-pci.c, the virtio devices, dev-bochs.c). Like internal.h it is private to vmm/
 * (and its unit tests and fuzz targets); it builds only on the functions of internal.h to reach
 * KVM, and on golden-images/img.h for virtio-blk's disks.
 *
 * Layering, bottom up:
 *  - virtq: one split virtqueue in guest memory; walks descriptor chains defensively.
 *  - msix: an MSI-X table and PBA; vectors are KVM MSI routes fed through irqfds.
 *  - pci: the bus, config space, BARs (sizing, decoding, guest reprogramming), capabilities.
 *  - virtio-pci: the virtio 1.x modern transport on a PCI device; devices plug in an ops table.
 */
#ifndef VDI_VMM_PCI_INTERNAL_H
#define VDI_VMM_PCI_INTERNAL_H

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "golden-images/img.h"
#include "vmm/internal.h"

/* ---- Split virtqueues (virtq.c) ----------------------------------------------------------- */
#define VMM_VIRTQ_MAX_SIZE 256 /* the queue size we offer; the guest may pick a smaller one */
#define VMM_VIRTQ_MAX_SEGS 256 /* longest chain we accept, indirect tables included */

struct vmm_virtq {
    vmm_vm_t *vm;
    uint16_t size; /* power of two, 1..VMM_VIRTQ_MAX_SIZE */
    uint64_t desc_gpa, avail_gpa, used_gpa;
    /* Resolved by vmm__virtq_start(): host views of the three rings. */
    void *desc, *avail, *used;
    uint16_t last_avail; /* next avail index we consume */
    uint16_t used_idx;   /* next used index we publish */
    bool indirect;       /* VIRTIO_F_INDIRECT_DESC negotiated */
    bool started;
};

/* One descriptor chain taken off the avail ring. out[] are the device-readable buffers (in
 * chain order), in[] the device-writable ones; every buffer lies wholly inside guest RAM. */
struct vmm_virtq_req {
    uint16_t head;
    unsigned nout, nin;
    uint64_t out_len, in_len; /* byte totals */
    struct iovec out[VMM_VIRTQ_MAX_SEGS];
    struct iovec in[VMM_VIRTQ_MAX_SEGS];
};

/* Validate @q's size and ring addresses (all three rings inside guest RAM, aligned as virtio 1.2
 * §2.7 requires) and resolve them. Returns 0 or VDI_EGUEST. Thread: caller serialises @q. */
int vmm__virtq_start(struct vmm_virtq *q);
void vmm__virtq_stop(struct vmm_virtq *q); /* forget the rings and indices (queue reset) */
/* Take the next available chain. Returns 1 with *req filled, 0 when the ring is empty, or
 * VDI_EGUEST when the guest broke the ring (index jump, descriptor outside RAM or past the table,
 * a loop, a chain too long, a bad indirect table, a readable buffer after a writable one): the
 * device then stops using the queue and reports DEVICE_NEEDS_RESET. Nothing is logged here. */
int vmm__virtq_pop(struct vmm_virtq *q, struct vmm_virtq_req *req);
/* Publish @head as used with @len bytes written into its writable buffers. */
void vmm__virtq_push(struct vmm_virtq *q, uint16_t head, uint32_t len);
/* Whether the guest wants an interrupt now (VIRTQ_AVAIL_F_NO_INTERRUPT clear). */
bool vmm__virtq_should_notify(struct vmm_virtq *q);
/* Copy up to @len bytes from the chain's readable buffers starting at byte @off into @dst, or
 * to its writable ones from @src. Return the bytes copied. */
size_t vmm__virtq_req_read(const struct vmm_virtq_req *req, size_t off, void *dst, size_t len);
size_t vmm__virtq_req_write(const struct vmm_virtq_req *req, size_t off, const void *src,
                            size_t len);

/* ---- MSI-X (msix.c) ----------------------------------------------------------------------- */
#define VMM_MSIX_MAX_VECTORS 64
#define VMM_MSIX_NO_VECTOR   0xffff

struct vmm_msix_entry {
    uint32_t addr_lo, addr_hi, data, ctrl; /* ctrl bit 0: masked */
};

struct vmm_msix {
    vmm_vm_t *vm;
    pthread_mutex_t lock;
    unsigned nvec;
    bool enabled, fmask; /* Message Control bits 15 and 14 */
    struct vmm_msix_entry table[VMM_MSIX_MAX_VECTORS];
    uint64_t pba;                       /* one pending bit per vector */
    int efd[VMM_MSIX_MAX_VECTORS];      /* eventfd feeding the vector's irqfd, or -1 */
    uint32_t gsi[VMM_MSIX_MAX_VECTORS]; /* KVM route of the vector */
    bool routed[VMM_MSIX_MAX_VECTORS];  /* gsi valid, irqfd assigned */
    struct vmm_msix_entry live[VMM_MSIX_MAX_VECTORS]; /* what the route currently says */
};

/* Set up @nvec (1..VMM_MSIX_MAX_VECTORS) vectors, all masked, MSI-X disabled. Routes and irqfds
 * are created when a vector is first unmasked. Returns 0 or -errno. Thread: main. */
int vmm__msix_init(struct vmm_msix *m, vmm_vm_t *vm, unsigned nvec);
void vmm__msix_destroy(struct vmm_msix *m);
/* MMIO access to the table (offset 0) or the PBA (offset VMM_MSIX_PBA_OFFSET) of the BAR that
 * holds them. Thread: vCPU. */
#define VMM_MSIX_PBA_OFFSET 0x800
#define VMM_MSIX_BAR_SIZE   0x1000
void vmm__msix_mmio(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write);
/* The guest wrote Message Control. */
void vmm__msix_control(struct vmm_msix *m, bool enable, bool fmask);
/* Raise @vector: delivered now if enabled and unmasked, else left pending in the PBA until the
 * guest unmasks it. Out-of-range vectors and VMM_MSIX_NO_VECTOR are ignored. Thread: any. */
void vmm__msix_notify(struct vmm_msix *m, unsigned vector);
/* Drop all state to power-on values (device reset). */
void vmm__msix_reset(struct vmm_msix *m);
bool vmm__msix_enabled(struct vmm_msix *m);

/* ---- The PCI bus (pci.c) ------------------------------------------------------------------ */
#define VMM_PCI_MAX_DEVS 32 /* bus 0, one function per slot */

enum vmm_pci_bar_type {
    VMM_PCI_BAR_NONE,
    VMM_PCI_BAR_MEM32,
    VMM_PCI_BAR_MEM64, /* uses the next BAR slot for the high half */
};

struct vmm_pci_bar {
    enum vmm_pci_bar_type type;
    bool prefetch;
    uint64_t size; /* power of two, >= 4 KiB */
    vmm_io_fn fn;  /* MMIO handler, or NULL for a RAM-backed BAR */
    void *opaque;  /* for fn */
    int memslot;   /* RAM-backed BAR: KVM slot from vmm__memslot_add(); else -1 */
    /* Decoding state, owned by pci.c. */
    uint64_t addr; /* guest-programmed base */
    bool mapped;   /* region/slot is live at addr */
    uint64_t mapped_at;
    vmm_io_region_t *region;
};

struct vmm_pci_dev;
struct vmm_pci_dev_ops {
    const char *name;
    /* Optional: a BAR became reachable at @gpa (@mapped) or stopped being reachable. Called with
     * the bus lock held, on a vCPU thread (or main during teardown). */
    void (*bar_mapped)(struct vmm_pci_dev *dev, unsigned bar, uint64_t gpa, bool mapped);
    /* Optional: config bytes [off, off+len) were written (after the write landed in cfg[]). */
    void (*cfg_written)(struct vmm_pci_dev *dev, uint32_t off, uint32_t len);
    /* Optional: a config read is about to be served (to refresh cfg[] bytes). */
    void (*cfg_read)(struct vmm_pci_dev *dev, uint32_t off, uint32_t len);
    /* Required: free everything; the BARs are already unmapped. Thread: main. */
    void (*destroy)(struct vmm_pci_dev *dev);
};

struct vmm_pci_dev {
    const struct vmm_pci_dev_ops *ops;
    vmm_vm_t *vm;
    unsigned slot;
    uint8_t cfg[256];
    uint8_t wmask[256]; /* bits the guest may write */
    uint8_t cap_end;    /* where the next capability goes */
    uint8_t cap_last;   /* offset of the last capability, 0 if none */
    struct vmm_pci_bar bar[6];
    struct vmm_msix *msix; /* optional: the device's MSI-X state */
    uint8_t msix_cap;      /* offset of the MSI-X capability, 0 if none */
    uint8_t intx_gsi;      /* legacy interrupt line */
    bool intx_disabled;    /* Command bit 10, mirrored for vmm__pci_intx (atomic access) */
};

/* Fill the standard type-0 header. Thread: main. */
void vmm__pci_dev_init(struct vmm_pci_dev *dev, const struct vmm_pci_dev_ops *ops, vmm_vm_t *vm,
                       uint16_t vendor, uint16_t device, uint32_t class_code, uint8_t revision,
                       uint16_t subsys_vendor, uint16_t subsys_id);
/* Declare BAR @idx. For MEM64 the BAR @idx+1 is taken too. Returns 0 or -EINVAL. */
int vmm__pci_bar_init(struct vmm_pci_dev *dev, unsigned idx, enum vmm_pci_bar_type type,
                      bool prefetch, uint64_t size, vmm_io_fn fn, void *opaque, int memslot);
/* Append a capability of @len bytes (including the id/next header) to the list; returns its
 * config-space offset, or 0 if config space is full. @wmask_body marks guest-writable bytes of
 * the body after the 2-byte header (NULL: read-only). */
uint8_t vmm__pci_cap_add(struct vmm_pci_dev *dev, uint8_t id, const void *body, uint8_t len,
                         const uint8_t *wmask_body);
/* Add an MSI-X capability whose table and PBA live in BAR @bar (offsets 0 and
 * VMM_MSIX_PBA_OFFSET); @m must already be initialised. */
int vmm__pci_msix_cap_add(struct vmm_pci_dev *dev, struct vmm_msix *m, unsigned bar);
/* Put @dev on the bus at the next free slot, give its BARs addresses in the PCI window (decoding
 * stays off until the guest sets the Command register, as after firmware). Returns 0, -ENOSPC
 * (no slot or no window space). The bus borrows @dev until vmm__pci_teardown(). Thread: main. */
int vmm__pci_register(vmm_vm_t *vm, struct vmm_pci_dev *dev);
/* Assert or deassert the device's INTx line (shared lines are OR-ed). Thread: any. */
void vmm__pci_intx(struct vmm_pci_dev *dev, bool level);

/* Config space access as mechanism #1 does it (for tests and the 0xcfc handler): @addr is the
 * 0xcf8 value with bit 31 set, @off the byte within the dword. Thread: vCPU. */
uint32_t vmm__pci_cfg_read(vmm_vm_t *vm, uint32_t addr, unsigned off, unsigned len);
void vmm__pci_cfg_write(vmm_vm_t *vm, uint32_t addr, unsigned off, unsigned len, uint32_t val);
/* Create only the host bridge and the 0xcf8/0xcfc ports (vmm__pci_setup does this first). */
int vmm__pci_bus_create(vmm_vm_t *vm);

/* ---- virtio-pci modern transport (virtio-pci.c) ------------------------------------------- */
#define VMM_VIRTIO_MAX_QUEUES 8

/* Status bits, virtio 1.2 §2.1 */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER      0x02
#define VIRTIO_STATUS_DRIVER_OK   0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED      0x80
#define VIRTIO_F_INDIRECT_DESC    28
#define VIRTIO_F_VERSION_1        32
#define VIRTIO_F_RING_RESET       40

struct vmm_virtio_dev;
struct vmm_virtio_ops {
    const char *name;
    uint16_t device_id;  /* virtio device type: PCI device id is 0x1040 + this */
    uint32_t class_code; /* PCI class << 8 | prog-if */
    unsigned nqueues;
    uint32_t cfg_size; /* bytes of device-specific config */
    /* Required: read device config at @off (bounds already checked). Device lock held. */
    void (*cfg_read)(struct vmm_virtio_dev *vd, uint32_t off, void *data, uint32_t len);
    /* Optional: write device config. Device lock held. */
    void (*cfg_write)(struct vmm_virtio_dev *vd, uint32_t off, const void *data, uint32_t len);
    /* Required: queue @q was kicked (or became ready with buffers). I/O thread, device lock
     * held, only while DRIVER_OK and not NEEDS_RESET. */
    void (*queue_notify)(struct vmm_virtio_dev *vd, unsigned q);
    /* Optional: the device was reset by the guest; drop in-flight state. Device lock held. */
    void (*reset)(struct vmm_virtio_dev *vd);
    /* Required: free the device (container). Thread: main. */
    void (*destroy)(struct vmm_virtio_dev *vd);
};

struct vmm_virtio_dev;
struct vmm_virtio_queue {
    struct vmm_virtio_dev *vd;
    unsigned idx;
    struct vmm_virtq vq;
    uint16_t size_max;
    uint16_t vector;
    bool enabled;
    bool reset_done;   /* queue_reset reads 1 from a reset until the queue is re-enabled */
    int kick_fd;       /* eventfd: ioeventfd on the notify address, read on the I/O thread */
    bool ioeventfd_on; /* registered with KVM at notify_gpa */
    uint64_t notify_gpa;
};

struct vmm_virtio_dev {
    struct vmm_pci_dev pci; /* first: container_of from the PCI callbacks */
    const struct vmm_virtio_ops *ops;
    pthread_mutex_t lock; /* transport and device state: vCPU threads vs the I/O thread */
    struct vmm_msix msix;
    uint8_t status;
    uint8_t isr;
    uint8_t config_gen;
    uint32_t dfsel, gfsel;
    uint64_t features;        /* offered: the device's bits given at init, plus the transport's */
    uint64_t driver_features; /* as written by the driver */
    uint16_t queue_sel;
    uint16_t config_vector;
    struct vmm_virtio_queue q[VMM_VIRTIO_MAX_QUEUES];
    uint8_t pcicfg_cap; /* offset of the VIRTIO_PCI_CAP_PCI_CFG capability */
};

/* Initialise the transport in @vd (embedded in the device's own struct) and register it on the
 * bus. @features are the device-specific feature bits this instance offers (one ops table serves
 * every variant of a device type: a read-only disk differs from a writable one here, not in its
 * ops); the transport adds VERSION_1, INDIRECT_DESC and RING_RESET. Returns 0 or -errno.
 * Thread: main. */
int vmm__virtio_pci_init(struct vmm_virtio_dev *vd, const struct vmm_virtio_ops *ops,
                         uint64_t features, vmm_vm_t *vm);
/* Undo vmm__virtio_pci_init (the I/O-thread fds, MSI-X, eventfds). */
void vmm__virtio_pci_fini(struct vmm_virtio_dev *vd);
/* Interrupt the guest for used buffers on queue @q (honours VIRTQ_AVAIL_F_NO_INTERRUPT).
 * Device lock held. */
void vmm__virtio_notify(struct vmm_virtio_dev *vd, unsigned q);
/* The guest broke the device: set DEVICE_NEEDS_RESET, stop every queue, raise a config
 * interrupt, log @why (rate-limited). Device lock held. */
void vmm__virtio_fail(struct vmm_virtio_dev *vd, const char *why);
/* Whether queue @q may be used now (DRIVER_OK, enabled, not failed). Device lock held. */
bool vmm__virtio_queue_live(const struct vmm_virtio_dev *vd, unsigned q);
/* The driver negotiated feature @bit. */
static inline bool vmm__virtio_has(const struct vmm_virtio_dev *vd, unsigned bit)
{
    return (vd->driver_features >> bit) & 1;
}

/* ---- Devices ------------------------------------------------------------------------------ */
/* Each creates its device, registers it on the bus and returns an object for teardown. */
struct vmm_virtio_dev;
/* virtio-blk over @disk, an image the caller opened with img_open() (raw or qcow2, read-only or
 * writable: the device offers VIRTIO_BLK_F_RO for a read-only one). On success the device owns
 * @disk and closes it when destroyed; on failure the caller still owns it. */
int vmm__virtio_blk_create(vmm_vm_t *vm, img_disk_t *disk, struct vmm_virtio_dev **out);
int vmm__virtio_rng_create(vmm_vm_t *vm, struct vmm_virtio_dev **out);
/* virtio-net on the tap interface @tap (opened with IFF_VNET_HDR, offloads off), with MAC @mac
 * (NULL: 52:54:00 and three random bytes). */
int vmm__virtio_net_create(vmm_vm_t *vm, const char *tap, const uint8_t *mac,
                           struct vmm_virtio_dev **out);
/* Make @fd, a tap someone else opened (vdid), what the device needs: the 12-byte header, no
 * offloads, non-blocking. 0, -ENOTTY when @fd is not a tap, or -errno. */
int vmm__tap_adopt(int fd);
/* The same on @fd, which carries one frame per read and write behind a 12-byte virtio-net header
 * as such a tap does (tests pass a SOCK_DGRAM socket). Takes ownership of @fd, also on failure. */
int vmm__virtio_net_create_fd(vmm_vm_t *vm, int fd, const uint8_t *mac,
                              struct vmm_virtio_dev **out);
enum vmm_input_kind {
    VMM_INPUT_KEYBOARD,
    VMM_INPUT_TABLET,
};
int vmm__virtio_input_create(vmm_vm_t *vm, enum vmm_input_kind kind, struct vmm_virtio_dev **out);
/* Queue input events (struct virtio_input_event triples); flushed to the guest at once when it
 * has buffers, else kept (bounded) until it posts some. Thread: any. */
void vmm__virtio_input_send(struct vmm_virtio_dev *vd, const uint16_t *type, const uint16_t *code,
                            const int32_t *value, unsigned n);

/* The guest agent's port (virtio-console, one named port; agent.c speaks the protocol). */
int vmm__virtio_console_create(vmm_vm_t *vm, struct vmm_virtio_dev **out);
/* vmm__agent_queue_message() and vmm__agent_status() on its agent. Thread: any. */
int vmm__virtio_console_message(struct vmm_virtio_dev *vd, const char *text, unsigned seconds);
void vmm__virtio_console_status(struct vmm_virtio_dev *vd, struct vmm_agent_status *st);

struct vmm_bochs;
int vmm__bochs_create(vmm_vm_t *vm, uint32_t width, uint32_t height, struct vmm_bochs **out);
extern const struct dpy_fb_source vmm__bochs_fb_source;
/* Build the 128-byte EDID (1.4) block announcing @width x @height at 60 Hz as preferred. */
void vmm__edid_build(uint8_t out[128], uint32_t width, uint32_t height);

/* The input sink over a keyboard and a tablet (either may be NULL). */
extern const struct dpy_input_sink vmm__input_sink;
struct vmm_input_pair {
    struct vmm_virtio_dev *kbd, *tablet;
    uint32_t buttons; /* last buttons sent */
};

#endif /* VDI_VMM_PCI_INTERNAL_H */
