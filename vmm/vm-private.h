/* vmm/vm-private.h: the body of struct vmm_vm, shared by the core's vm.c, io.c, iothread.c and
 * boot.c only (and the core's unit tests). The PCI side and the devices go through
 * vmm/internal.h and never see these fields. */
#ifndef VDI_VMM_VM_PRIVATE_H
#define VDI_VMM_VM_PRIVATE_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>

#include "vmm/internal.h"

#define VMM_FIRST_EXTRA_SLOT 2 /* 0: low RAM, 1: high RAM */
#define VMM_EXTRA_SLOTS      8

struct vcpu {
    vmm_vm_t *vm;
    unsigned id;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    atomic_bool started; /* set by the main thread, read by kick_all() on any thread */
};

struct vm_slot {
    void *hva;
    uint64_t size, gpa;
    bool dirty_log, mapped;
};

struct vm_owned {
    vdi_list_t link;
    void *ptr;
    void (*free_fn)(void *);
};

struct vmm_io_region {
    vdi_list_t link;
    vmm_vm_t *vm;
    enum vmm_io_space space;
    uint64_t base, size;
    vmm_io_fn fn;
    void *opaque;
};

struct vm_fd {
    vdi_list_t link;
    int fd;
    vmm_fd_fn fn;
    void *opaque;
    bool running;
};

struct vmm_vm {
    char name[32];
    int kvm, fd;
    size_t run_size;
    uint8_t *ram;
    uint64_t ram_size, low_size, high_size;
    unsigned nvcpus;
    struct vcpu vcpus[VMM_MAX_VCPUS];
    uint64_t start_ms;

    pthread_mutex_t slot_lock;
    struct vm_slot slots[VMM_EXTRA_SLOTS];

    pthread_mutex_t route_lock;
    struct kvm_irq_routing_entry *routes;
    uint32_t nroutes, routes_cap, next_gsi, max_gsi;

    /* Port and MMIO regions: read-locked by dispatch, write-locked by add/move/del. Dispatch
     * keeps no pointer to a region past the read lock, so vmm__io_del() frees it at once
     * (io.c's opening comment). */
    pthread_rwlock_t io_lock;
    vdi_list_t io_regions;
    size_t io_nregions; /* region objects allocated and not yet freed (tests watch it) */

    pthread_mutex_t stop_lock;
    atomic_bool stopping;
    enum vmm_stop_reason stop_reason;
    char stop_why[160];
    int stop_fd;

    pthread_mutex_t pause_lock;
    pthread_cond_t pause_cond;
    atomic_bool paused;
    unsigned parked;

    /* The I/O thread. */
    int epfd, io_wake_fd;
    pthread_t iothread;
    bool iothread_started;
    pthread_mutex_t fd_lock;
    pthread_cond_t fd_cond;
    vdi_list_t fds;

    vmm_event_fn event_fn;
    void *event_ctx;
    struct vmm_acpi_pm *pm;
    vdi_list_t owned;
    bool pci_up;
};

/* io.c */
void vmm__io_init(vmm_vm_t *vm);
void vmm__io_fini(vmm_vm_t *vm);
void vmm__io_dispatch(vmm_vm_t *vm, enum vmm_io_space space, uint64_t addr, void *data,
                      uint32_t len, bool is_write);
/* iothread.c */
int vmm__iothread_init(vmm_vm_t *vm);
int vmm__iothread_start(vmm_vm_t *vm);
void vmm__iothread_stop(vmm_vm_t *vm);
void vmm__iothread_fini(vmm_vm_t *vm);
/* vm.c */
int vmm__vcpu_boot_regs(vmm_vm_t *vm, bool long_mode, uint64_t entry, uint64_t info);

#endif /* VDI_VMM_VM_PRIVATE_H */
