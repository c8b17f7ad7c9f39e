/* vmm/io.c: port and MMIO dispatch. Regions live in one list per VM, searched linearly (a VM has
 * a few dozen at most; hot paths such as virtqueue notifications go through ioeventfd and never
 * come here). A handler runs without the lock held, so it may move regions (BAR programming).
 *
 * Lifetime: dispatch copies the handler, its opaque pointer and the offset out of the region
 * under the read lock and never touches the region again after dropping it; add, move and delete
 * take the write lock. So once vmm__io_del() holds the write lock no vCPU can be looking at the
 * region, and it is freed there and then. (Regions used to be parked on a list until the VM
 * ended: a guest toggling a BAR's decoding grew the VMM by megabytes a second.) What stays alive
 * is the handler's @opaque, which a vCPU may still be using after the delete: that is the
 * device's, and devices live until the VM is torn down after its vCPUs stopped. */
#define VDI_LOG_TAG "vmm"
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"
#include "vmm/vm-private.h"

void vmm__io_init(vmm_vm_t *vm)
{
    pthread_rwlock_init(&vm->io_lock, NULL);
    vdi_list_init(&vm->io_regions);
    vm->io_nregions = 0;
}

void vmm__io_fini(vmm_vm_t *vm)
{
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &vm->io_regions)
    {
        vdi_list_remove(it);
        free(vdi_list_entry(it, struct vmm_io_region, link));
    }
    vm->io_nregions = 0;
    pthread_rwlock_destroy(&vm->io_lock);
}

static bool overlaps(vmm_vm_t *vm, const struct vmm_io_region *self, enum vmm_io_space space,
                     uint64_t base, uint64_t size)
{
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &vm->io_regions)
    {
        struct vmm_io_region *r = vdi_list_entry(it, struct vmm_io_region, link);
        if (r == self || r->space != space)
            continue;
        if (base < r->base + r->size && r->base < base + size)
            return true;
    }
    return false;
}

int vmm__io_add(vmm_vm_t *vm, enum vmm_io_space space, uint64_t base, uint64_t size, vmm_io_fn fn,
                void *opaque, vmm_io_region_t **out)
{
    if (size == 0 || base + size < base)
        return -EINVAL;
    struct vmm_io_region *r = vdi_xcalloc(1, sizeof(*r));
    r->vm = vm;
    r->space = space;
    r->base = base;
    r->size = size;
    r->fn = fn;
    r->opaque = opaque;
    pthread_rwlock_wrlock(&vm->io_lock);
    if (overlaps(vm, NULL, space, base, size)) {
        pthread_rwlock_unlock(&vm->io_lock);
        free(r);
        return -EEXIST;
    }
    vdi_list_push_tail(&vm->io_regions, &r->link);
    vm->io_nregions++;
    pthread_rwlock_unlock(&vm->io_lock);
    if (out)
        *out = r;
    return 0;
}

int vmm__io_move(vmm_io_region_t *r, uint64_t new_base)
{
    vmm_vm_t *vm = r->vm;
    int err = 0;
    if (new_base + r->size < new_base)
        return -EINVAL;
    pthread_rwlock_wrlock(&vm->io_lock);
    if (overlaps(vm, r, r->space, new_base, r->size))
        err = -EEXIST;
    else
        r->base = new_base;
    pthread_rwlock_unlock(&vm->io_lock);
    return err;
}

void vmm__io_del(vmm_io_region_t *r)
{
    if (!r)
        return;
    vmm_vm_t *vm = r->vm;
    pthread_rwlock_wrlock(&vm->io_lock);
    vdi_list_remove(&r->link);
    vm->io_nregions--;
    pthread_rwlock_unlock(&vm->io_lock);
    /* No dispatch holds the lock, and none keeps a pointer to @r past it (see the top). */
    free(r);
}

size_t vmm__io_region_count(vmm_vm_t *vm)
{
    pthread_rwlock_rdlock(&vm->io_lock);
    size_t n = vm->io_nregions;
    pthread_rwlock_unlock(&vm->io_lock);
    return n;
}

void vmm__io_dispatch(vmm_vm_t *vm, enum vmm_io_space space, uint64_t addr, void *data,
                      uint32_t len, bool is_write)
{
    vmm_io_fn fn = NULL;
    void *opaque = NULL;
    uint64_t off = 0;
    vdi_list_t *it, *tmp;

    pthread_rwlock_rdlock(&vm->io_lock);
    vdi_list_foreach_safe(it, tmp, &vm->io_regions)
    {
        struct vmm_io_region *r = vdi_list_entry(it, struct vmm_io_region, link);
        if (r->space == space && addr >= r->base && addr - r->base < r->size) {
            fn = r->fn;
            opaque = r->opaque;
            off = addr - r->base;
            break;
        }
    }
    pthread_rwlock_unlock(&vm->io_lock);
    if (fn) {
        if (!is_write)
            memset(data, 0, len);
        fn(opaque, off, data, len, is_write);
        return;
    }
    /* Nothing there: reads float high, as on a real bus, and writes vanish. */
    if (!is_write)
        memset(data, 0xff, len);
    if (space == VMM_IO_PIO)
        VDI_LOG_WARN_RL("vm=%s guest %s unknown port 0x%" PRIx64 " len=%u", vm->name,
                        is_write ? "wrote" : "read", addr, len);
    else
        VDI_LOG_WARN_RL("vm=%s guest %s unassigned mmio gpa=0x%" PRIx64 " len=%u", vm->name,
                        is_write ? "wrote" : "read", addr, len);
}
