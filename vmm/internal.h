/* vmm/internal.h: what the files of vdi-vmm share. Not for other modules (make check-includes).
 *
 * Two halves meet here:
 *  - the core (vm.c, vcpu.c, memory, boot, legacy devices, control socket, main.c) owns struct
 *    vmm_vm and implements the vmm__vm_* / vmm__io_* / vmm__mem* / vmm__irq* / vmm__iothread_*
 *    functions below;
 *  - the PCI side (pci.c, virtio-pci.c, virtio-*.c, dev-bochs.c) implements vmm__pci_* and the
 *    devices, using only the functions below to reach KVM.
 *
 * Threads: vCPU threads run I/O handlers (struct vmm_io_ops.rw); the I/O thread runs fd
 * callbacks (virtio queue back-ends); the main thread builds and tears down the VM. A device's
 * state is touched from vCPU threads (register access) and its I/O-thread callbacks: it holds its
 * own mutex where both touch the same fields.
 */
#ifndef VDI_VMM_INTERNAL_H
#define VDI_VMM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "common/vdi.h"
#include "vmm/vmm.h"

/* ---- Configuration (filled by main.c from the command line) ------------------------------- */
#define VMM_MAX_VCPUS 16
#define VMM_MAX_DISKS 8

struct vmm_disk_config {
    const char *path;
    bool read_only;
};

struct vmm_config {
    uint64_t mem_bytes;
    unsigned vcpus;
    const char *kernel, *initrd, *cmdline;
    bool guest_decompress;
    const char *serial_log; /* NULL: stdout */
    const char *control_path;
    bool restart_on_reboot;
    struct vmm_disk_config disks[VMM_MAX_DISKS];
    unsigned ndisks;
    const char *net_tap; /* NULL: no network */
    bool rng;            /* virtio-rng (default on) */
    /* Display and input (display/ serves them; the devices live on the PCI bus). */
    uint32_t fb_width, fb_height; /* preferred mode for the EDID; 0: no display device */
    bool input;                   /* virtio keyboard + tablet */
};

/* ---- Port and MMIO dispatch --------------------------------------------------------------- */
enum vmm_io_space {
    VMM_IO_PIO,
    VMM_IO_MMIO,
};

/* A handler for one region. @offset is relative to the region's base; @len is 1, 2, 4 or 8.
 * Reads fill @data (little-endian); a handler that does not implement an offset returns zeros on
 * reads and ignores writes (rate-limited log). Thread: vCPU. */
typedef void (*vmm_io_fn)(void *opaque, uint64_t offset, void *data, uint32_t len, bool is_write);

typedef struct vmm_io_region vmm_io_region_t;

/* Claim [@base, @base+@size) in @space. Fails with -EEXIST if it overlaps another region.
 * The region belongs to the VM until vmm__io_del(). Thread: any (serialised with dispatch). */
int vmm__io_add(vmm_vm_t *vm, enum vmm_io_space space, uint64_t base, uint64_t size, vmm_io_fn fn,
                void *opaque, vmm_io_region_t **out);
/* Move a region (a guest reprogrammed a BAR); -EEXIST on overlap, region unchanged then.
 * Thread: vCPU or main. */
int vmm__io_move(vmm_io_region_t *r, uint64_t new_base);
void vmm__io_del(vmm_io_region_t *r);

/* ---- Guest memory ------------------------------------------------------------------------- */
/* Host pointer to guest-physical [@gpa, @gpa+@len) if that range lies wholly inside guest RAM,
 * else NULL (hostile descriptors end here). Valid for the VM's life. Thread: any. */
void *vmm__gpa_ptr(vmm_vm_t *vm, uint64_t gpa, uint64_t len);
uint64_t vmm__ram_size(const vmm_vm_t *vm);

/* Extra KVM memory slots backed by host memory the caller owns (the framebuffer BAR): the slot
 * is created unmapped; vmm__memslot_map() places it in the guest's physical address space when
 * the guest enables the BAR. Thread: main or vCPU. */
int vmm__memslot_add(vmm_vm_t *vm, void *hva, uint64_t size, bool dirty_log, int *slot_out);
int vmm__memslot_map(vmm_vm_t *vm, int slot, uint64_t gpa); /* (re)map at @gpa */
int vmm__memslot_unmap(vmm_vm_t *vm, int slot);             /* guest disabled the BAR */
/* Copy the slot's dirty bitmap (one bit per 4 KiB page, KVM_GET_DIRTY_LOG semantics: the bits
 * are cleared by the call) into @bitmap, which holds at least ceil(pages/64) words. Returns 0,
 * -ENODEV if the slot is not mapped, or -errno. Thread: any (the display thread calls it). */
int vmm__memslot_get_dirty(vmm_vm_t *vm, int slot, uint64_t *bitmap);

/* ---- Interrupts --------------------------------------------------------------------------- */
/* Set a GSI line of the in-kernel IOAPIC/PIC (legacy devices: UART IRQ 4, RTC IRQ 8, PCI INTx). */
int vmm__irq_line(vmm_vm_t *vm, uint32_t gsi, bool level);
/* Deliver one MSI now (KVM_SIGNAL_MSI). */
int vmm__msi_send(vmm_vm_t *vm, uint64_t addr, uint32_t data);
/* MSI routes for irqfd: allocate a GSI routed to (@addr, @data), change it, free it. */
int vmm__msi_route_add(vmm_vm_t *vm, uint64_t addr, uint32_t data, uint32_t *gsi_out);
int vmm__msi_route_set(vmm_vm_t *vm, uint32_t gsi, uint64_t addr, uint32_t data);
void vmm__msi_route_del(vmm_vm_t *vm, uint32_t gsi);
int vmm__irqfd(vmm_vm_t *vm, int fd, uint32_t gsi, bool assign);
/* Guest writes of @len bytes at @addr (PIO or MMIO) signal @fd instead of exiting to us. */
int vmm__ioeventfd(vmm_vm_t *vm, int fd, enum vmm_io_space space, uint64_t addr, uint32_t len,
                   bool assign);

/* ---- The I/O thread ----------------------------------------------------------------------- */
/* Run @fn(@opaque) on the I/O thread whenever @fd is readable (epoll, level-triggered). The
 * callback must not block for long; disk requests are fine (they are the reason it exists).
 * Thread: any. */
typedef void (*vmm_fd_fn)(void *opaque);
int vmm__iothread_add_fd(vmm_vm_t *vm, int fd, vmm_fd_fn fn, void *opaque);
void vmm__iothread_del_fd(vmm_vm_t *vm, int fd); /* returns when no callback for @fd runs */

/* ---- VM life ------------------------------------------------------------------------------ */
enum vmm_stop_reason {
    VMM_STOP_POWEROFF, /* guest powered off: exit 0 */
    VMM_STOP_REBOOT,   /* guest asked for a reset */
    VMM_STOP_SHUTDOWN, /* control socket quit/shutdown deadline */
    VMM_STOP_CRASHED,  /* internal error, triple fault, emulation failure, ... */
};
/* Ask the VM to stop; @why names the cause for the `crashed` event. Thread: any. */
void vmm__vm_request_stop(vmm_vm_t *vm, enum vmm_stop_reason reason, const char *why);
/* The identifier used in log lines (vm=ID). */
const char *vmm__vm_name(const vmm_vm_t *vm);

/* ---- PCI (implemented by pci.c and the devices) ------------------------------------------- */
/* The guest-physical window pci.c assigns memory BARs from, below the IOAPIC (0xfec00000). The
 * core keeps RAM out of it (RAM that would reach it continues above 4 GiB) and the e820 map marks
 * it reserved. pci.c calls vmm__io_add/_move/_del and vmm__memslot_map/_unmap from inside its
 * 0xcfc port handler (a guest enabling decoding or moving a BAR). */
#define VMM_PCI_MMIO_BASE 0xC0000000ull
#define VMM_PCI_MMIO_END  0xFEC00000ull /* exclusive */
/* Create the PCI host bridge (config mechanism #1 at 0xcf8/0xcfc) and every PCI device @cfg asks
 * for, in a fixed order. Thread: main, before the vCPUs start. */
int vmm__pci_setup(vmm_vm_t *vm, const struct vmm_config *cfg);
void vmm__pci_teardown(vmm_vm_t *vm);
/* The display device and the input devices, for display/: NULL when absent. */
struct dpy_fb_source;
struct dpy_input_sink;
const struct dpy_fb_source *vmm__pci_fb_source(vmm_vm_t *vm, void **ctx);
const struct dpy_input_sink *vmm__pci_input_sink(vmm_vm_t *vm, void **ctx);

#endif /* VDI_VMM_INTERNAL_H */
