/* vmm/iothread.c: the I/O thread: one epoll loop running device back-ends (virtqueue kicks
 * through ioeventfds, tap input) off the vCPU threads.
 *
 * The epoll data carries only the fd number; the thread looks the fd up under fd_lock and marks
 * it running, so vmm__iothread_del_fd() can wait for a running callback and a stale event for a
 * removed fd finds nothing. */
#define VDI_LOG_TAG "vmm"
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/internal.h"
#include "vmm/vm-private.h"

/* Set on the I/O thread itself: a callback that removes its own fd must not wait for itself
 * (known from the first instruction, unlike the pthread_t the creator stores). */
static __thread bool on_iothread;

int vmm__iothread_init(vmm_vm_t *vm)
{
    vm->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (vm->epfd < 0)
        return -errno;
    vm->io_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->io_wake_fd < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = vm->io_wake_fd};
    if (epoll_ctl(vm->epfd, EPOLL_CTL_ADD, vm->io_wake_fd, &ev) < 0)
        return -errno;
    return 0;
}

static struct vm_fd *find_fd(vmm_vm_t *vm, int fd)
{
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &vm->fds)
    {
        struct vm_fd *f = vdi_list_entry(it, struct vm_fd, link);
        if (f->fd == fd)
            return f;
    }
    return NULL;
}

int vmm__iothread_add_fd(vmm_vm_t *vm, int fd, vmm_fd_fn fn, void *opaque)
{
    struct vm_fd *f = vdi_xcalloc(1, sizeof(*f));
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    f->fd = fd;
    f->fn = fn;
    f->opaque = opaque;
    pthread_mutex_lock(&vm->fd_lock);
    if (find_fd(vm, fd)) {
        pthread_mutex_unlock(&vm->fd_lock);
        free(f);
        return -EEXIST;
    }
    if (epoll_ctl(vm->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = -errno;
        pthread_mutex_unlock(&vm->fd_lock);
        free(f);
        return err;
    }
    vdi_list_push_tail(&vm->fds, &f->link);
    pthread_mutex_unlock(&vm->fd_lock);
    return 0;
}

void vmm__iothread_del_fd(vmm_vm_t *vm, int fd)
{
    bool self = on_iothread;
    pthread_mutex_lock(&vm->fd_lock);
    struct vm_fd *f = find_fd(vm, fd);
    if (f) {
        epoll_ctl(vm->epfd, EPOLL_CTL_DEL, fd, NULL);
        vdi_list_remove(&f->link);
        while (f->running && !self)
            pthread_cond_wait(&vm->fd_cond, &vm->fd_lock);
        if (f->running)
            f->fn = NULL; /* removed by its own callback: the loop frees it */
        else
            free(f);
    }
    pthread_mutex_unlock(&vm->fd_lock);
}

static void *iothread_main(void *arg)
{
    vmm_vm_t *vm = arg;
    struct epoll_event evs[32];
    on_iothread = true;
    pthread_setname_np(pthread_self(), "vmm-io");
    for (;;) {
        int n = epoll_wait(vm->epfd, evs, VDI_ARRAY_SIZE(evs), -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            VDI_LOG_ERR("vm=%s epoll_wait failed: %s", vm->name, strerror(errno));
            vmm__vm_request_stop(vm, VMM_STOP_CRASHED, "the I/O thread failed");
            return NULL;
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == vm->io_wake_fd)
                return NULL;
            pthread_mutex_lock(&vm->fd_lock);
            struct vm_fd *f = find_fd(vm, fd);
            if (!f) {
                pthread_mutex_unlock(&vm->fd_lock);
                continue;
            }
            f->running = true;
            vmm_fd_fn fn = f->fn;
            void *opaque = f->opaque;
            pthread_mutex_unlock(&vm->fd_lock);
            fn(opaque);
            pthread_mutex_lock(&vm->fd_lock);
            f->running = false;
            if (!f->fn)
                free(f);
            pthread_cond_broadcast(&vm->fd_cond);
            pthread_mutex_unlock(&vm->fd_lock);
        }
    }
}

int vmm__iothread_start(vmm_vm_t *vm)
{
    int err = -pthread_create(&vm->iothread, NULL, iothread_main, vm);
    if (err == 0)
        vm->iothread_started = true;
    return err;
}

void vmm__iothread_stop(vmm_vm_t *vm)
{
    if (!vm->iothread_started)
        return;
    uint64_t one = 1;
    if (write(vm->io_wake_fd, &one, sizeof(one)) < 0)
        VDI_LOG_ERR("vm=%s cannot wake the I/O thread: %s", vm->name, strerror(errno));
    pthread_join(vm->iothread, NULL);
    vm->iothread_started = false;
}

void vmm__iothread_fini(vmm_vm_t *vm)
{
    vdi_list_t *it, *tmp;
    vmm__iothread_stop(vm);
    vdi_list_foreach_safe(it, tmp, &vm->fds)
    {
        vdi_list_remove(it);
        free(vdi_list_entry(it, struct vm_fd, link));
    }
    if (vm->epfd >= 0)
        close(vm->epfd);
    if (vm->io_wake_fd >= 0)
        close(vm->io_wake_fd);
    vm->epfd = vm->io_wake_fd = -1;
}
