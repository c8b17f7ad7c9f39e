/* tests/unit/vmm/bare_vm.h: a struct vmm_vm without KVM, for the unit tests of the core's parts
 * that need none (io.c, iothread.c, the legacy devices). bare_vm_new() does what
 * vmm__vm_create() (vm.c) does before it opens /dev/kvm, which these tests must run without (the
 * tests that boot a guest call vmm__vm_create() itself: test_kvm_display_input.c); keep the two
 * in step. The VM is released with the real vmm__vm_destroy(). */
#ifndef VDI_TESTS_BARE_VM_H
#define VDI_TESTS_BARE_VM_H

#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "vmm/internal.h"
#include "vmm/vm-private.h"

/* A VM with no KVM, no RAM, no vCPUs and no devices; port and MMIO dispatch work, the I/O thread
 * can be started (vmm__iothread_init/start), stop requests land on its stop eventfd. */
static inline vmm_vm_t *bare_vm_new(void)
{
    vmm_vm_t *vm = calloc(1, sizeof(*vm));
    strcpy(vm->name, "test");
    vm->kvm = vm->fd = vm->epfd = vm->io_wake_fd = -1;
    vdi_list_init(&vm->owned);
    vdi_list_init(&vm->fds);
    pthread_mutex_init(&vm->route_lock, NULL);
    pthread_mutex_init(&vm->slot_lock, NULL);
    pthread_mutex_init(&vm->stop_lock, NULL);
    pthread_mutex_init(&vm->pause_lock, NULL);
    pthread_cond_init(&vm->pause_cond, NULL);
    pthread_mutex_init(&vm->fd_lock, NULL);
    pthread_cond_init(&vm->fd_cond, NULL);
    vmm__io_init(vm);
    vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return vm;
}

#endif /* VDI_TESTS_BARE_VM_H */
