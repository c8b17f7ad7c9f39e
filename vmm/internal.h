/* vmm/internal.h: what the files of vdi-vmm share. Not for other modules (make check-includes).
 *
 * Two halves meet here:
 *  - the core (vm.c: KVM, memory and the vCPU threads; io.c, iothread.c, boot.c, tables.c,
 *    the legacy devices dev-*.c, control.c, main.c) owns struct vmm_vm and implements the
 *    vmm__vm_* / vmm__io_* / vmm__mem* / vmm__irq* / vmm__iothread_* functions below;
 *  - the PCI side (pci.c, msix.c, virtq.c, virtio-pci.c, virtio-*.c, dev-bochs.c; its own
 *    declarations in pci-internal.h) implements vmm__pci_* and the devices, using only the
 *    functions below to reach KVM.
 *
 * Threads: vCPU threads run I/O handlers (vmm_io_fn); the I/O thread runs fd
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
    const char *serial_log;              /* NULL: stdout */
    uint64_t serial_log_max;             /* the serial log's cap (0: VMM_SERIAL_LOG_MAX_DEFAULT) */
    struct vmm_serial_sink *serial_sink; /* NULL: the UART makes its own from the two above */
    const char *control_path;
    bool restart_on_reboot;
    struct vmm_disk_config disks[VMM_MAX_DISKS];
    unsigned ndisks;
    const char *backing_root; /* NULL: a disk's backing files may lie anywhere (regular files) */
    const char *net_tap;      /* NULL: no network by name (see net_has_fd) */
    bool net_has_fd;          /* the NIC is on the opened tap net_fd (vdid made it) */
    int net_fd;
    bool net_has_mac; /* the NIC's MAC is net_mac (else 52:54:00 and three random bytes) */
    uint8_t net_mac[6];
    bool rng;   /* virtio-rng (default on) */
    bool agent; /* the guest agent's port, virtio-console (default on) */
    /* Display and input (display/ serves them; the devices live on the PCI bus). */
    uint32_t fb_width, fb_height; /* preferred mode for the EDID; 0: no display device */
    bool input;                   /* virtio keyboard + tablet */
    const char *serial_in;        /* COM1 input: NULL none, "-" stdin, else a file or FIFO */
};

/* ---- The serial log (serial-sink.c) ------------------------------------------------------- */
/* Guest COM1 output on its way to a file: control characters and escape sequences rendered
 * harmless (\xNN), a rate limit, a size cap (rotation to FILE.1 for a log file, suppression for
 * stdout or a device), and the dropped bytes reported in the log. Design: serial-sink.c. */
#define VMM_SERIAL_LOG_MAX_DEFAULT (1ull << 20)
#define VMM_SERIAL_LOG_MAX_MIN     4096ull
#define VMM_SERIAL_RATE            (64u << 10) /* bytes per second, sustained */
#define VMM_SERIAL_BURST_S         4           /* seconds of VMM_SERIAL_RATE allowed at once */
#define VMM_SERIAL_REPORT_MS       1000        /* at most one suppression line per ... */
#define VMM_SERIAL_CAP_REPORT_MS   60000       /* ... and, once a log without rotation is full */

typedef struct vmm_serial_sink vmm_serial_sink_t;
struct vmm_serial_sink_opts {
    const char *path;   /* the log file (opened for appending), or NULL to write to @fd */
    int fd;             /* with @path NULL: borrowed, never closed (stdout) */
    uint64_t max_bytes; /* >= VMM_SERIAL_LOG_MAX_MIN */
    uint64_t rate;      /* bytes per second; VMM_SERIAL_RATE in the program */
    uint64_t now_ms;    /* the clock the caller passes to every call (vdi_now_ms()) */
};
struct vmm_serial_stats {
    uint64_t guest_bytes;  /* handed to vmm__serial_sink_write */
    uint64_t written;      /* bytes written to the log, escapes and notices included */
    uint64_t dropped_rate; /* guest bytes dropped by the rate limit */
    uint64_t dropped_cap;  /* guest bytes dropped because the log was full */
    uint64_t rotations;
};
/* Open the sink @o describes. Returns 0, -EINVAL (a cap below the minimum, rate 0) or -errno
 * from opening @o->path. The caller owns *out. Thread: any; one thread at a time per sink. */
int vmm__serial_sink_create(const struct vmm_serial_sink_opts *o, vmm_serial_sink_t **out);
/* Log @len bytes the guest wrote at time @now_ms (milliseconds of one monotonic clock). Never
 * blocks on the guest's behalf beyond writing what passes the limits. */
void vmm__serial_sink_write(vmm_serial_sink_t *s, const void *data, size_t len, uint64_t now_ms);
/* Write the pending suppression report now (the VM stops). */
void vmm__serial_sink_flush(vmm_serial_sink_t *s, uint64_t now_ms);
void vmm__serial_sink_stats(const vmm_serial_sink_t *s, struct vmm_serial_stats *st);
void vmm__serial_sink_destroy(vmm_serial_sink_t *s, uint64_t now_ms); /* flushes; NULL is fine */

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
/* Release a region: it stops answering and is freed before this returns (NULL does nothing). A
 * vCPU that looked it up just before may still be running its handler. Thread: any. */
void vmm__io_del(vmm_io_region_t *r);
/* How many region objects the VM holds (allocated and not yet freed): it must not grow however
 * often a guest toggles or moves BARs (tests watch it). Thread: any. */
size_t vmm__io_region_count(vmm_vm_t *vm);

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
/* Post an event for the control socket (enum vmm_event, vmm/vmm.h). Thread: any. */
void vmm__vm_event(vmm_vm_t *vm, enum vmm_event ev, const char *reason);
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

/* ---- The guest agent, host side (agent.c; docs/agent-protocol.md) ------------------------ */
/* The protocol state of one agent port: what the guest's agent said, what waits for it, and the
 * heartbeat watchdog. It knows nothing of the transport: virtio-console.c owns one, feeds it the
 * bytes the guest sent and moves ->out into the guest's buffers. Not locked: the owner
 * serialises every call (virtio-console.c under its device lock). Events go out through
 * vmm__vm_event(). */
#define VMM_AGENT_OUT_MAX (4u << 20) /* bytes queued for a guest that does not read */
struct vmm_agent {
    vmm_vm_t *vm;
    vdi_buf_t in;  /* a partial line from the guest */
    bool skipping; /* dropping the rest of an over-long line */
    vdi_buf_t out; /* bytes for the guest not yet in its buffers */
    bool open;     /* the guest has the port open */
    bool hello;    /* it said hello since it opened the port */
    bool lost;     /* agent-lost went out and nothing came since */
    char name[32], caps[64];
    unsigned hb_s;
    uint64_t last_ms; /* its last line */
    uint64_t lines, bad_lines, overlong;
};
void vmm__agent_init(struct vmm_agent *a, vmm_vm_t *vm);
void vmm__agent_fini(struct vmm_agent *a);
/* The guest opened (@open) or closed its end, or the device was reset (closed). */
void vmm__agent_opened(struct vmm_agent *a, bool open, uint64_t now_ms);
/* Bytes the guest's agent wrote. Replies it calls for are appended to ->out. */
void vmm__agent_input(struct vmm_agent *a, const void *data, size_t len, uint64_t now_ms);
/* The watchdog: agent-lost once no line came for VMM_AGENT_HB_MISSED heartbeat periods.
 * Returns the milliseconds until it needs to run again (0: not while nothing changes). */
uint64_t vmm__agent_tick(struct vmm_agent *a, uint64_t now_ms);
/* Queue a `message` for the guest: 0, -ENOTCONN, -EOPNOTSUPP, -ENOBUFS, -EINVAL (the text is
 * empty or over VMM_AGENT_TEXT_MAX, @seconds out of range). */
int vmm__agent_queue_message(struct vmm_agent *a, const char *text, unsigned seconds);
void vmm__agent_status(const struct vmm_agent *a, uint64_t now_ms, struct vmm_agent_status *st);
/* The same for the VM's agent port (virtio-console.c), from any thread; a VM without one gives
 * -ENOTCONN and a status with present false. */
int vmm__vm_agent_message(vmm_vm_t *vm, const char *text, unsigned seconds);
void vmm__vm_agent_status(vmm_vm_t *vm, struct vmm_agent_status *st);

/* ---- Core-only (vm.c, boot.c, tables.c, dev-*.c, control.c, main.c) ---------------------- */
/* Guest physical map: RAM from 0 up to min(mem, 3 GiB), the rest from 4 GiB. The 32-bit PCI
 * window lies between the top of low RAM (at most VMM_MMIO_HOLE_START) and the IOAPIC. */
#define VMM_MMIO_HOLE_START 0xc0000000ULL
#define VMM_PCI_MMIO32_END  0xfec00000ULL
#define VMM_IOAPIC_BASE     0xfec00000ULL
#define VMM_LAPIC_BASE      0xfee00000ULL
#define VMM_HIGH_RAM_START  0x100000000ULL
/* Legacy ports the core claims; the PCI side's port window starts at 0x1000. */
#define VMM_ACPI_PM_BASE 0x600 /* PM1a_EVT (4), PM1a_CNT (2), PM_TMR (4) */
#define VMM_ACPI_SCI_IRQ 9
#define VMM_UART_IRQ     4
#define VMM_RTC_IRQ      8
/* INTA# of PCI slot @slot (pci.c's routing, which the MP table describes). */
#define VMM_PCI_INTX_GSI(slot) (16 + ((slot) % 8))

/* Exit statuses of vdi-vmm: enum vmm_exit_status in vmm/vmm.h (the contract with vdid). */

/* Build the VM @cfg describes (KVM, RAM, devices, kernel loaded): vCPUs are created but not
 * running. Returns 0, -errno, VDI_EBADKERNEL or VDI_ECONFIG (bad input: *err_msg, when not
 * NULL, gets a malloc'd one-line explanation the caller frees). Thread: main. */
int vmm__vm_create(const struct vmm_config *cfg, vmm_vm_t **out, char **err_msg);
/* Start the vCPU and I/O threads. Thread: main. */
int vmm__vm_start(vmm_vm_t *vm);
/* An eventfd that becomes readable once a stop was requested. Thread: any. */
int vmm__vm_stop_fd(const vmm_vm_t *vm);
/* Stop every thread (after a stop request) and return the reason; *why (may be NULL) is valid
 * until vmm__vm_destroy(). Thread: main. */
enum vmm_stop_reason vmm__vm_join(vmm_vm_t *vm, const char **why);
void vmm__vm_destroy(vmm_vm_t *vm); /* NULL is fine. Thread: main, after vmm__vm_join(). */
/* Park the vCPUs (returns once none runs guest code) and let them go again. Thread: main. */
void vmm__vm_pause(vmm_vm_t *vm);
void vmm__vm_resume(vmm_vm_t *vm);
bool vmm__vm_paused(const vmm_vm_t *vm);
unsigned vmm__vm_vcpus(const vmm_vm_t *vm);
uint64_t vmm__vm_uptime_ms(const vmm_vm_t *vm); /* since vmm__vm_start() */
/* Ask the guest to power off (the ACPI power button). Returns -ENOTSUP when the guest has not
 * enabled the power-button event. Thread: any. */
int vmm__vm_power_button(vmm_vm_t *vm);
/* Events for the control socket (enum vmm_event, vmm/vmm.h). @fn runs on the posting thread and
 * must only queue. Thread: main sets it before vmm__vm_start(). */
typedef void (*vmm_event_fn)(void *ctx, enum vmm_event ev, const char *reason);
void vmm__vm_set_event_fn(vmm_vm_t *vm, vmm_event_fn fn, void *ctx);

/* Legacy devices (dev-*.c), created by devices.c. Each returns 0 or -errno. Thread: main. */
int vmm__uart_setup(vmm_vm_t *vm, const struct vmm_config *cfg);
int vmm__legacy_setup(vmm_vm_t *vm); /* i8042, CMOS RTC, ACPI PM block, port 0x80 */
int vmm__devices_setup(vmm_vm_t *vm, const struct vmm_config *cfg); /* devices.c: all of them */
void vmm__devices_teardown(vmm_vm_t *vm);
/* Device state the VM frees at destroy: a list of (ptr, free fn) the core keeps. */
void vmm__vm_own(vmm_vm_t *vm, void *ptr, void (*free_fn)(void *));
/* The ACPI PM block raises its SCI through this, and the power button sets its status bit. */
struct vmm_acpi_pm;
struct vmm_acpi_pm *vmm__vm_acpi_pm(vmm_vm_t *vm);
void vmm__vm_set_acpi_pm(vmm_vm_t *vm, struct vmm_acpi_pm *pm);
int vmm__acpi_pm_power_button(struct vmm_acpi_pm *pm);

/* ---- Boot structures (boot.c, tables.c): pure functions, unit-tested without KVM ---------- */
#define VMM_E820_RAM      1
#define VMM_E820_RESERVED 2
#define VMM_E820_ACPI     3
struct vmm_e820 {
    uint64_t addr, size;
    uint32_t type;
};
#define VMM_E820_MAX 8
/* The guest's memory map for @ram_bytes of RAM; returns the entry count. */
unsigned vmm__e820_build(uint64_t ram_bytes, struct vmm_e820 *out);

/* Fixed low-memory layout of what we hand the guest. */
#define VMM_BOOT_GDT         0x0500ULL
#define VMM_BOOT_INFO        0x1000ULL /* hvm_start_info, or the zero page (4 KiB) */
#define VMM_BOOT_MEMMAP      0x2000ULL /* PVH memory map and module list */
#define VMM_BOOT_PML4        0x9000ULL /* identity page tables for the 64-bit entry: 0x9000-0xefff */
#define VMM_BOOT_CMDLINE     0x20000ULL
#define VMM_BOOT_CMDLINE_MAX 4096
#define VMM_EBDA_START       0x9fc00ULL
#define VMM_ACPI_START       0xe0000ULL /* RSDP and tables: 0xe0000-0xeffff */
#define VMM_MPTABLE_START    0xf0000ULL
#define VMM_BIOS_END         0x100000ULL

/* Linux's struct boot_params (the zero page) offsets we write. */
#define VMM_BP_ACPI_RSDP    0x070
#define VMM_BP_EXT_RD_IMAGE 0x0c0
#define VMM_BP_EXT_RD_SIZE  0x0c4
#define VMM_BP_EXT_CMDLINE  0x0c8
#define VMM_BP_E820_ENTRIES 0x1e8
#define VMM_BP_HDR          0x1f1
#define VMM_BP_E820_TABLE   0x2d0
#define VMM_BP_E820_MAX     128

/* Fill the 4 KiB zero page @bp: the setup header from @kernel (a bzImage of @len bytes), the
 * loader fields, @cmdline_gpa, the initrd, the e820 map and @rsdp. Returns 0 or
 * VDI_EBADKERNEL. */
int vmm__zero_page_build(uint8_t *bp, const uint8_t *kernel, size_t len, uint64_t cmdline_gpa,
                         uint64_t initrd_gpa, uint64_t initrd_size, const struct vmm_e820 *e820,
                         unsigned ne820, uint64_t rsdp);

/* PVH: the hvm_start_info block (xen/include/public/arch-x86/hvm/start_info.h, version 1). */
#define VMM_HVM_START_MAGIC 0x336ec578u
struct vmm_hvm_start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
};
struct vmm_hvm_modlist_entry {
    uint64_t paddr, size, cmdline_paddr, reserved;
};
struct vmm_hvm_memmap_entry {
    uint64_t addr, size;
    uint32_t type, reserved;
};
/* Write the start info at VMM_BOOT_INFO and its memory map and module list at VMM_BOOT_MEMMAP
 * into @ram (guest-physical 0 .. @ram_len). */
int vmm__pvh_start_info_build(uint8_t *ram, size_t ram_len, uint64_t cmdline_gpa,
                              uint64_t initrd_gpa, uint64_t initrd_size,
                              const struct vmm_e820 *e820, unsigned ne820, uint64_t rsdp);

/* Kernel files: what vmm__kernel_probe() found. */
enum vmm_kernel_kind {
    VMM_KERNEL_PVH_ELF,
    VMM_KERNEL_BZIMAGE,
};
/* Entry point (guest-physical) of a PVH ELF: the XEN_ELFNOTE_PHYS32_ENTRY note. Returns 0,
 * -ENOENT (a valid ELF without the note) or VDI_EBADKERNEL (not ELF, truncated, bad note). */
int vmm__elf_pvh_entry(const uint8_t *elf, size_t len, uint64_t *entry);
/* Decompress a bzImage's payload on the host (gzip, xz, zstd, lz4). On success *out is a
 * malloc'd ELF of *out_len bytes. Returns 0, VDI_EBADKERNEL or -ENOMEM. */
int vmm__bzimage_decompress(const uint8_t *kernel, size_t len, uint8_t **out, size_t *out_len);
/* vmm__bzimage_decompress() through the cache ($VDI_VMM_CACHE_DIR, else $XDG_CACHE_HOME/vdi-vmm,
 * else ~/.cache/vdi-vmm), keyed by the SHA-256 of the whole bzImage. An entry that does not hold
 * (another kernel's, corrupt, truncated) is ignored and rewritten; a cache directory that is not
 * ours alone is not used. The cache never changes the result, only how long it takes. */
int vmm__kernel_cache_get(const uint8_t *kernel, size_t len, uint8_t **out, size_t *out_len);
/* Load @kernel for @cfg into the VM: sets the registers each vCPU starts with. */
int vmm__boot_load(vmm_vm_t *vm, const struct vmm_config *cfg, char **err_msg);

/* MP table (Intel MultiProcessor Specification 1.4) for @ncpus CPUs and an IOAPIC into @buf
 * (placed at guest-physical @gpa). Returns the bytes used or -ENOSPC. */
int vmm__mptable_build(uint8_t *buf, size_t cap, uint64_t gpa, unsigned ncpus);
/* ACPI tables (RSDP at @gpa, then XSDT, RSDT, FADT, FACS, DSDT, MADT) into @buf. Returns the
 * bytes used or -ENOSPC. */
int vmm__acpi_build(uint8_t *buf, size_t cap, uint64_t gpa, unsigned ncpus);
/* The sum of @len bytes (tables are valid when it is 0). */
uint8_t vmm__checksum(const void *p, size_t len);
#define VMM_ACPI_S5_TYP 5 /* SLP_TYP our DSDT's \_S5 names */

/* Control socket: the server is public (vmm_control_*, vmm/vmm.h: vdid's test VMM runs it too);
 * main.c drives it with the VM's stop fd and an ops table over vmm__vm_*. */
/* The wire name of a run state ("running"). Thread: any. */
const char *vmm__run_state_name(enum vmm_run_state st);

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
