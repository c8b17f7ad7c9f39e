/* vmm/vm.c: the virtual machine: KVM set-up (in-kernel irqchip and PIT, TSS and identity map,
 * guest RAM, CPUID and MSRs), the vCPU threads and their exits, interrupt routing, extra memory
 * slots, and the stop / pause machinery.
 *
 * Threads: the main thread creates, starts, pauses and joins the VM; each vCPU thread loops in
 * KVM_RUN and dispatches port and MMIO exits (io.c). A stop or pause request sets a flag and
 * kicks every vCPU with VMM_KICK_SIGNAL, whose handler sets kvm_run.immediate_exit, so a vCPU
 * that was about to enter the guest returns at once (no lost wake-up).
 */
#define VDI_LOG_TAG "vmm"
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "vmm/internal.h"
#include "vmm/vm-private.h"

#define VMM_KICK_SIGNAL SIGUSR1
#define VMM_TSS_ADDR    0xfffbd000ULL
#define VMM_IDMAP_ADDR  0xfffbc000ULL
#define VMM_FIRST_MSI   24 /* GSIs 0-23 are the IOAPIC's pins */

static __thread struct kvm_run *tls_run;

static void kick_handler(int sig)
{
    VDI_UNUSED(sig);
    if (tls_run)
        tls_run->immediate_exit = 1;
}

const char *vmm__vm_name(const vmm_vm_t *vm)
{
    return vm->name;
}

uint64_t vmm__ram_size(const vmm_vm_t *vm)
{
    return vm->ram_size;
}

unsigned vmm__vm_vcpus(const vmm_vm_t *vm)
{
    return vm->nvcpus;
}

void *vmm__gpa_ptr(vmm_vm_t *vm, uint64_t gpa, uint64_t len)
{
    if (gpa + len < gpa)
        return NULL;
    if (gpa + len <= vm->low_size)
        return vm->ram + gpa;
    if (gpa >= VMM_HIGH_RAM_START && gpa + len <= VMM_HIGH_RAM_START + vm->high_size)
        return vm->ram + vm->low_size + (gpa - VMM_HIGH_RAM_START);
    return NULL;
}

void vmm__vm_own(vmm_vm_t *vm, void *ptr, void (*free_fn)(void *))
{
    struct vm_owned *o = vdi_xcalloc(1, sizeof(*o));
    o->ptr = ptr;
    o->free_fn = free_fn;
    vdi_list_push_head(&vm->owned, &o->link);
}

void vmm__vm_set_event_fn(vmm_vm_t *vm, vmm_event_fn fn, void *ctx)
{
    vm->event_fn = fn;
    vm->event_ctx = ctx;
}

void vmm__vm_event(vmm_vm_t *vm, enum vmm_event ev, const char *reason)
{
    VDI_LOG_INFO("vm=%s event=%s%s%s", vm->name, vmm_event_name(ev), reason ? " reason=" : "",
                 reason ? reason : "");
    if (vm->event_fn)
        vm->event_fn(vm->event_ctx, ev, reason);
}

struct vmm_acpi_pm *vmm__vm_acpi_pm(vmm_vm_t *vm)
{
    return vm->pm;
}

void vmm__vm_set_acpi_pm(vmm_vm_t *vm, struct vmm_acpi_pm *pm)
{
    vm->pm = pm;
}

int vmm__vm_power_button(vmm_vm_t *vm)
{
    if (!vm->pm)
        return -ENOTSUP;
    return vmm__acpi_pm_power_button(vm->pm);
}

/* ---- Interrupts --------------------------------------------------------------------------- */
int vmm__irq_line(vmm_vm_t *vm, uint32_t gsi, bool level)
{
    struct kvm_irq_level l = {.irq = gsi, .level = level ? 1 : 0};
    if (ioctl(vm->fd, KVM_IRQ_LINE, &l) < 0)
        return -errno;
    return 0;
}

int vmm__msi_send(vmm_vm_t *vm, uint64_t addr, uint32_t data)
{
    struct kvm_msi msi = {
        .address_lo = (uint32_t)addr,
        .address_hi = (uint32_t)(addr >> 32),
        .data = data,
    };
    if (ioctl(vm->fd, KVM_SIGNAL_MSI, &msi) < 0)
        return -errno;
    return 0;
}

/* Push the whole routing table to KVM (it replaces the table). Called with route_lock held. */
static int routes_commit(vmm_vm_t *vm)
{
    size_t sz = sizeof(struct kvm_irq_routing) + vm->nroutes * sizeof(struct kvm_irq_routing_entry);
    struct kvm_irq_routing *r = vdi_xcalloc(1, sz);
    int err = 0;
    r->nr = vm->nroutes;
    memcpy(r->entries, vm->routes, vm->nroutes * sizeof(*vm->routes));
    if (ioctl(vm->fd, KVM_SET_GSI_ROUTING, r) < 0)
        err = -errno;
    free(r);
    return err;
}

static void route_add_irqchip(vmm_vm_t *vm, uint32_t gsi, uint32_t chip, uint32_t pin)
{
    struct kvm_irq_routing_entry *e = &vm->routes[vm->nroutes++];
    memset(e, 0, sizeof(*e));
    e->gsi = gsi;
    e->type = KVM_IRQ_ROUTING_IRQCHIP;
    e->u.irqchip.irqchip = chip;
    e->u.irqchip.pin = pin;
}

/* The legacy routing QEMU and Linux expect: GSIs 0-15 to the PICs, 0-23 to the IOAPIC, with
 * GSI 0 (the PIT) on IOAPIC pin 2 (the MADT and MP table say so too). */
static int routes_init(vmm_vm_t *vm)
{
    vm->routes_cap = 64;
    vm->routes = vdi_xcalloc(vm->routes_cap, sizeof(*vm->routes));
    for (uint32_t i = 0; i < 16; i++)
        if (i != 2)
            route_add_irqchip(vm, i, i < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, i % 8);
    for (uint32_t i = 0; i < 24; i++)
        if (i != 2)
            route_add_irqchip(vm, i, KVM_IRQCHIP_IOAPIC, i == 0 ? 2 : i);
    vm->next_gsi = VMM_FIRST_MSI;
    return routes_commit(vm);
}

static struct kvm_irq_routing_entry *route_find_msi(vmm_vm_t *vm, uint32_t gsi)
{
    for (uint32_t i = 0; i < vm->nroutes; i++)
        if (vm->routes[i].gsi == gsi && vm->routes[i].type == KVM_IRQ_ROUTING_MSI)
            return &vm->routes[i];
    return NULL;
}

int vmm__msi_route_add(vmm_vm_t *vm, uint64_t addr, uint32_t data, uint32_t *gsi_out)
{
    int err;
    uint32_t gsi;
    pthread_mutex_lock(&vm->route_lock);
    /* Reuse the lowest free MSI GSI so a guest that reprograms vectors forever cannot exhaust
     * the GSI space. */
    for (gsi = VMM_FIRST_MSI; gsi < vm->next_gsi; gsi++)
        if (!route_find_msi(vm, gsi))
            break;
    if (gsi == vm->next_gsi) {
        if (vm->next_gsi >= vm->max_gsi) {
            pthread_mutex_unlock(&vm->route_lock);
            return -ENOSPC;
        }
        vm->next_gsi++;
    }
    if (vm->nroutes == vm->routes_cap) {
        vm->routes_cap *= 2;
        vm->routes = vdi_xrealloc(vm->routes, vm->routes_cap * sizeof(*vm->routes));
    }
    struct kvm_irq_routing_entry *e = &vm->routes[vm->nroutes++];
    memset(e, 0, sizeof(*e));
    e->gsi = gsi;
    e->type = KVM_IRQ_ROUTING_MSI;
    e->u.msi.address_lo = (uint32_t)addr;
    e->u.msi.address_hi = (uint32_t)(addr >> 32);
    e->u.msi.data = data;
    err = routes_commit(vm);
    if (err < 0)
        vm->nroutes--;
    else
        *gsi_out = gsi;
    pthread_mutex_unlock(&vm->route_lock);
    return err;
}

int vmm__msi_route_set(vmm_vm_t *vm, uint32_t gsi, uint64_t addr, uint32_t data)
{
    int err;
    pthread_mutex_lock(&vm->route_lock);
    struct kvm_irq_routing_entry *e = route_find_msi(vm, gsi);
    if (!e) {
        pthread_mutex_unlock(&vm->route_lock);
        return -ENOENT;
    }
    e->u.msi.address_lo = (uint32_t)addr;
    e->u.msi.address_hi = (uint32_t)(addr >> 32);
    e->u.msi.data = data;
    err = routes_commit(vm);
    pthread_mutex_unlock(&vm->route_lock);
    return err;
}

void vmm__msi_route_del(vmm_vm_t *vm, uint32_t gsi)
{
    pthread_mutex_lock(&vm->route_lock);
    struct kvm_irq_routing_entry *e = route_find_msi(vm, gsi);
    if (e) {
        *e = vm->routes[--vm->nroutes];
        int err = routes_commit(vm);
        if (err < 0)
            VDI_LOG_WARN("vm=%s gsi=%u removing an MSI route failed: %s", vm->name, gsi,
                         vdi_strerror(err));
    }
    pthread_mutex_unlock(&vm->route_lock);
}

int vmm__irqfd(vmm_vm_t *vm, int fd, uint32_t gsi, bool assign)
{
    struct kvm_irqfd irqfd = {
        .fd = (uint32_t)fd,
        .gsi = gsi,
        .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
    };
    if (ioctl(vm->fd, KVM_IRQFD, &irqfd) < 0)
        return -errno;
    return 0;
}

int vmm__ioeventfd(vmm_vm_t *vm, int fd, enum vmm_io_space space, uint64_t addr, uint32_t len,
                   bool assign)
{
    struct kvm_ioeventfd ev = {
        .addr = addr,
        .len = len,
        .fd = fd,
        .flags = (space == VMM_IO_PIO ? KVM_IOEVENTFD_FLAG_PIO : 0) |
                 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
    };
    if (ioctl(vm->fd, KVM_IOEVENTFD, &ev) < 0)
        return -errno;
    return 0;
}

/* ---- Memory slots ------------------------------------------------------------------------- */
static int set_region(vmm_vm_t *vm, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size,
                      void *hva)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot,
        .flags = flags,
        .guest_phys_addr = gpa,
        .memory_size = size,
        .userspace_addr = (uintptr_t)hva,
    };
    if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return -errno;
    return 0;
}

int vmm__memslot_add(vmm_vm_t *vm, void *hva, uint64_t size, bool dirty_log, int *slot_out)
{
    pthread_mutex_lock(&vm->slot_lock);
    for (int i = 0; i < VMM_EXTRA_SLOTS; i++) {
        if (vm->slots[i].hva)
            continue;
        vm->slots[i].hva = hva;
        vm->slots[i].size = size;
        vm->slots[i].dirty_log = dirty_log;
        vm->slots[i].mapped = false;
        *slot_out = VMM_FIRST_EXTRA_SLOT + i;
        pthread_mutex_unlock(&vm->slot_lock);
        return 0;
    }
    pthread_mutex_unlock(&vm->slot_lock);
    return -ENOSPC;
}

static struct vm_slot *slot_get(vmm_vm_t *vm, int slot)
{
    int i = slot - VMM_FIRST_EXTRA_SLOT;
    if (i < 0 || i >= VMM_EXTRA_SLOTS || !vm->slots[i].hva)
        return NULL;
    return &vm->slots[i];
}

int vmm__memslot_map(vmm_vm_t *vm, int slot, uint64_t gpa)
{
    int err = 0;
    pthread_mutex_lock(&vm->slot_lock);
    struct vm_slot *s = slot_get(vm, slot);
    if (!s) {
        err = -ENOENT;
        goto out;
    }
    if (s->mapped && s->gpa == gpa)
        goto out;
    /* KVM cannot move a slot: delete it, then create it at the new address. */
    if (s->mapped) {
        err = set_region(vm, (uint32_t)slot, 0, s->gpa, 0, s->hva);
        if (err < 0)
            goto out;
        s->mapped = false;
    }
    err = set_region(vm, (uint32_t)slot, s->dirty_log ? KVM_MEM_LOG_DIRTY_PAGES : 0, gpa, s->size,
                     s->hva);
    if (err == 0) {
        s->mapped = true;
        s->gpa = gpa;
    }
out:
    pthread_mutex_unlock(&vm->slot_lock);
    return err;
}

int vmm__memslot_unmap(vmm_vm_t *vm, int slot)
{
    int err = 0;
    pthread_mutex_lock(&vm->slot_lock);
    struct vm_slot *s = slot_get(vm, slot);
    if (!s)
        err = -ENOENT;
    else if (s->mapped) {
        err = set_region(vm, (uint32_t)slot, 0, s->gpa, 0, s->hva);
        if (err == 0)
            s->mapped = false;
    }
    pthread_mutex_unlock(&vm->slot_lock);
    return err;
}

int vmm__memslot_get_dirty(vmm_vm_t *vm, int slot, uint64_t *bitmap)
{
    int err = 0;
    pthread_mutex_lock(&vm->slot_lock);
    struct vm_slot *s = slot_get(vm, slot);
    if (!s || !s->mapped) {
        err = -ENODEV;
    } else {
        struct kvm_dirty_log log = {.slot = (uint32_t)slot, .dirty_bitmap = bitmap};
        if (ioctl(vm->fd, KVM_GET_DIRTY_LOG, &log) < 0)
            err = -errno;
    }
    pthread_mutex_unlock(&vm->slot_lock);
    return err;
}

/* ---- Creation ----------------------------------------------------------------------------- */
static char *msg(const char *fmt, ...) VDI_PRINTF(1, 2);
static char *msg(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

static int ram_setup(vmm_vm_t *vm, uint64_t bytes, char **err_msg)
{
    struct sysinfo si;
    int err;

    /* Refuse what this host cannot back: more than its RAM and swap together. */
    if (sysinfo(&si) == 0) {
        uint64_t host = ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
        if (bytes > host) {
            if (err_msg)
                *err_msg = msg("--mem %" PRIu64 " MiB does not fit: this host has %" PRIu64
                               " MiB of memory and swap",
                               bytes >> 20, host >> 20);
            return VDI_ECONFIG;
        }
    }
    vm->ram_size = bytes;
    vm->low_size = VDI_MIN(bytes, VMM_MMIO_HOLE_START);
    vm->high_size = bytes - vm->low_size;
    vm->ram = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (vm->ram == MAP_FAILED) {
        err = -errno;
        vm->ram = NULL;
        if (err_msg)
            *err_msg = msg("--mem %" PRIu64 " MiB: cannot map guest memory: %s", bytes >> 20,
                           strerror(-err));
        return err == -ENOMEM ? VDI_ECONFIG : err;
    }
    madvise(vm->ram, bytes, MADV_DONTDUMP);
    err = set_region(vm, 0, 0, 0, vm->low_size, vm->ram);
    if (err == 0 && vm->high_size)
        err = set_region(vm, 1, 0, VMM_HIGH_RAM_START, vm->high_size, vm->ram + vm->low_size);
    if (err < 0 && err_msg)
        *err_msg =
            msg("KVM refused %" PRIu64 " MiB of guest memory: %s", bytes >> 20, strerror(-err));
    return err;
}

static struct kvm_cpuid2 *supported_cpuid(int kvm)
{
    for (unsigned n = 128; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = vdi_xcalloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
        c->nent = n;
        if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) == 0)
            return c;
        free(c);
        if (errno != E2BIG)
            return NULL;
    }
    return NULL;
}

/* CPUID for vCPU @id: what KVM supports, with this vCPU's APIC ID, the hypervisor bit, the KVM
 * paravirt leaves (kvm-clock and friends, as KVM reports them) and no PMU. */
static int vcpu_cpuid(vmm_vm_t *vm, struct vcpu *v)
{
    struct kvm_cpuid2 *c = supported_cpuid(vm->kvm);
    int err = 0;
    if (!c)
        return -errno ? -errno : -EIO;
    for (uint32_t i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        switch (e->function) {
        case 1:
            e->ebx = (e->ebx & 0x0000ffffu) | (v->id << 24) | ((uint32_t)vm->nvcpus << 16);
            e->ecx |= 1u << 31; /* running on a hypervisor */
            if (vm->nvcpus > 1)
                e->edx |= 1u << 28; /* HTT: the logical count in EBX is valid */
            break;
        case 0xb:
        case 0x1f:
            e->edx = v->id; /* x2APIC ID */
            break;
        case 0xa:
            e->eax = e->ebx = e->ecx = e->edx = 0; /* no architectural PMU */
            break;
        case 0x40000000:
            e->eax = 0x40000001; /* KVM_CPUID_FEATURES is the highest leaf */
            memcpy(&e->ebx, "KVMK", 4);
            memcpy(&e->ecx, "VMKV", 4);
            memcpy(&e->edx, "M\0\0\0", 4);
            break;
        default:
            break;
        }
    }
    if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
        err = -errno;
    free(c);
    return err;
}

/* The MSRs a 64-bit guest expects in a defined state; ones KVM does not know are skipped. */
static void vcpu_msrs(vmm_vm_t *vm, struct vcpu *v)
{
    static const struct {
        uint32_t index;
        uint64_t value;
    } init[] = {
        {0x174, 0},              /* IA32_SYSENTER_CS */
        {0x175, 0},              /* IA32_SYSENTER_ESP */
        {0x176, 0},              /* IA32_SYSENTER_EIP */
        {0xc0000081, 0},         /* STAR */
        {0xc0000082, 0},         /* LSTAR */
        {0xc0000083, 0},         /* CSTAR */
        {0xc0000084, 0},         /* SFMASK */
        {0xc0000102, 0},         /* KERNEL_GS_BASE */
        {0x10, 0},               /* TSC */
        {0x1a0, 1},              /* IA32_MISC_ENABLE: fast strings */
        {0x2ff, (1u << 11) | 6}, /* MTRRdefType: MTRRs on, default write-back */
    };
    for (size_t i = 0; i < VDI_ARRAY_SIZE(init); i++) {
        union {
            struct kvm_msrs h;
            uint8_t raw[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
        } m;
        memset(&m, 0, sizeof(m));
        m.h.nmsrs = 1;
        m.h.entries[0].index = init[i].index;
        m.h.entries[0].data = init[i].value;
        if (ioctl(v->fd, KVM_SET_MSRS, &m) != 1)
            VDI_LOG_DEBUG("vm=%s vcpu=%u msr=0x%x not set", vm->name, v->id, init[i].index);
    }
}

/* LINT0 as ExtINT (the PIC's virtual wire) and LINT1 as NMI, as firmware leaves them. */
static int vcpu_lapic(struct vcpu *v)
{
    struct kvm_lapic_state l;
    if (ioctl(v->fd, KVM_GET_LAPIC, &l) < 0)
        return -errno;
    uint32_t *lvt0 = (uint32_t *)&l.regs[0x350], *lvt1 = (uint32_t *)&l.regs[0x360];
    *lvt0 = (*lvt0 & ~0x700u) | (7u << 8);
    *lvt1 = (*lvt1 & ~0x700u) | (4u << 8);
    if (ioctl(v->fd, KVM_SET_LAPIC, &l) < 0)
        return -errno;
    return 0;
}

static int vcpu_create(vmm_vm_t *vm, unsigned id)
{
    struct vcpu *v = &vm->vcpus[id];
    int err;
    v->vm = vm;
    v->id = id;
    v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, (unsigned long)id);
    if (v->fd < 0)
        return -errno;
    v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        v->run = NULL;
        return -errno;
    }
    err = vcpu_cpuid(vm, v);
    if (err < 0)
        return err;
    vcpu_msrs(vm, v);
    if (id == 0)
        return vcpu_lapic(v);
    return 0;
}

int vmm__vm_create(const struct vmm_config *cfg, vmm_vm_t **out, char **err_msg)
{
    static atomic_uint seq;
    vmm_vm_t *vm = vdi_xcalloc(1, sizeof(*vm));
    int err;

    snprintf(vm->name, sizeof(vm->name), "%d.%u", (int)getpid(), atomic_fetch_add(&seq, 1));
    vm->kvm = vm->fd = vm->stop_fd = vm->epfd = vm->io_wake_fd = -1;
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
    vm->nvcpus = cfg->vcpus;

    vm->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm < 0) {
        err = -errno;
        if (err_msg)
            *err_msg = msg("cannot open /dev/kvm: %s", strerror(-err));
        goto fail;
    }
    if (ioctl(vm->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        err = -ENOTSUP;
        if (err_msg)
            *err_msg = msg("/dev/kvm speaks an unknown KVM API version");
        goto fail;
    }
    vm->fd = ioctl(vm->kvm, KVM_CREATE_VM, 0UL);
    if (vm->fd < 0) {
        err = -errno;
        if (err_msg)
            *err_msg = msg("KVM_CREATE_VM failed: %s", strerror(-err));
        goto fail;
    }
    int max_vcpus = ioctl(vm->kvm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (max_vcpus > 0 && cfg->vcpus > (unsigned)max_vcpus) {
        err = VDI_ECONFIG;
        if (err_msg)
            *err_msg = msg("--vcpus %u: KVM on this host allows at most %d", cfg->vcpus, max_vcpus);
        goto fail;
    }
    int max_gsi = ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQ_ROUTING);
    vm->max_gsi = max_gsi > VMM_FIRST_MSI ? (uint32_t)max_gsi : 1024;
    vm->run_size = (size_t)ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    /* The TSS and identity map live in the last page frames below 4 GiB, outside RAM and the
     * PCI window (Intel VMX needs them for real mode). */
    if (ioctl(vm->fd, KVM_SET_TSS_ADDR, (unsigned long)VMM_TSS_ADDR) < 0 ||
        ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){VMM_IDMAP_ADDR}) < 0 ||
        ioctl(vm->fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        err = -errno;
        if (err_msg)
            *err_msg = msg("KVM refused the TSS, identity map or irqchip: %s", strerror(-err));
        goto fail;
    }
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm->fd, KVM_CREATE_PIT2, &pit) < 0) {
        err = -errno;
        if (err_msg)
            *err_msg = msg("KVM refused the PIT: %s", strerror(-err));
        goto fail;
    }
    err = routes_init(vm);
    if (err < 0) {
        if (err_msg)
            *err_msg = msg("KVM refused the interrupt routing: %s", strerror(-err));
        goto fail;
    }
    err = ram_setup(vm, cfg->mem_bytes, err_msg);
    if (err < 0)
        goto fail;
    for (unsigned i = 0; i < cfg->vcpus; i++) {
        err = vcpu_create(vm, i);
        if (err < 0) {
            if (err_msg)
                *err_msg = msg("cannot create vCPU %u: %s", i, vdi_strerror(err));
            goto fail;
        }
    }
    vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->stop_fd < 0) {
        err = -errno;
        goto fail;
    }
    err = vmm__iothread_init(vm);
    if (err < 0)
        goto fail;
    err = vmm__devices_setup(vm, cfg);
    if (err < 0) {
        if (err_msg && !*err_msg)
            *err_msg = msg("device set-up failed: %s", vdi_strerror(err));
        goto fail;
    }
    err = vmm__boot_load(vm, cfg, err_msg);
    if (err < 0)
        goto fail;
    *out = vm;
    return 0;
fail:
    vmm__vm_destroy(vm);
    return err;
}

/* ---- vCPU threads ------------------------------------------------------------------------- */
static void crash(struct vcpu *v, const char *fmt, ...) VDI_PRINTF(2, 3);
static void crash(struct vcpu *v, const char *fmt, ...)
{
    char why[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    struct kvm_regs regs;
    if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
        VDI_LOG_ERR("vm=%s vcpu=%u crashed: %s (rip=0x%llx)", v->vm->name, v->id, why,
                    (unsigned long long)regs.rip);
    else
        VDI_LOG_ERR("vm=%s vcpu=%u crashed: %s", v->vm->name, v->id, why);
    vmm__vm_request_stop(v->vm, VMM_STOP_CRASHED, why);
}

/* Handle one exit; false when the vCPU must stop. */
static bool handle_exit(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    switch (run->exit_reason) {
    case KVM_EXIT_IO: {
        uint8_t *p = (uint8_t *)run + run->io.data_offset;
        for (uint32_t i = 0; i < run->io.count; i++, p += run->io.size)
            vmm__io_dispatch(v->vm, VMM_IO_PIO, run->io.port, p, run->io.size,
                             run->io.direction == KVM_EXIT_IO_OUT);
        return true;
    }
    case KVM_EXIT_MMIO:
        vmm__io_dispatch(v->vm, VMM_IO_MMIO, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
                         run->mmio.is_write);
        return true;
    case KVM_EXIT_HLT:
        /* Only without an in-kernel LAPIC; with one, HLT never reaches us. */
        return true;
    case KVM_EXIT_SHUTDOWN:
        crash(v, "triple fault");
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        crash(v, "KVM could not enter the guest (hardware reason 0x%llx)",
              (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION)
            crash(v, "emulation failure: KVM could not emulate an instruction");
        else
            crash(v, "KVM internal error %u", run->internal.suberror);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
            vmm__vm_request_stop(v->vm, VMM_STOP_POWEROFF, "guest powered off");
            break;
        case KVM_SYSTEM_EVENT_RESET:
            vmm__vm_request_stop(v->vm, VMM_STOP_REBOOT, "guest reset");
            break;
        default:
            crash(v, "guest reported a crash (system event %u)", run->system_event.type);
            break;
        }
        return false;
    default:
        crash(v, "unexpected KVM exit %u", run->exit_reason);
        return false;
    }
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    vmm_vm_t *vm = v->vm;
    sigset_t set;
    char name[16];

    snprintf(name, sizeof(name), "vcpu%u", v->id);
    pthread_setname_np(pthread_self(), name);
    tls_run = v->run;
    sigemptyset(&set);
    sigaddset(&set, VMM_KICK_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    for (;;) {
        if (atomic_load(&vm->stopping))
            break;
        if (atomic_load(&vm->paused)) {
            pthread_mutex_lock(&vm->pause_lock);
            while (atomic_load(&vm->paused) && !atomic_load(&vm->stopping)) {
                vm->parked++;
                pthread_cond_broadcast(&vm->pause_cond);
                pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
                vm->parked--;
            }
            pthread_mutex_unlock(&vm->pause_lock);
            continue;
        }
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                v->run->immediate_exit = 0;
                continue;
            }
            crash(v, "KVM_RUN failed: %s", strerror(errno));
            break;
        }
        if (!handle_exit(v))
            break;
    }
    tls_run = NULL;
    return NULL;
}

static void kick_all(vmm_vm_t *vm)
{
    for (unsigned i = 0; i < vm->nvcpus; i++)
        if (vm->vcpus[i].started)
            pthread_kill(vm->vcpus[i].thread, VMM_KICK_SIGNAL);
}

int vmm__vm_start(vmm_vm_t *vm)
{
    struct sigaction sa;
    sigset_t set, old;
    int err;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_handler; /* no SA_RESTART: KVM_RUN must return EINTR */
    sigaction(VMM_KICK_SIGNAL, &sa, NULL);
    err = vmm__iothread_start(vm);
    if (err < 0)
        return err;
    /* Threads start with the kick signal blocked and unblock it themselves once tls_run is set. */
    sigemptyset(&set);
    sigaddset(&set, VMM_KICK_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    vm->start_ms = vdi_now_ms();
    for (unsigned i = 0; i < vm->nvcpus; i++) {
        err = -pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread, &vm->vcpus[i]);
        if (err < 0) {
            vmm__vm_request_stop(vm, VMM_STOP_CRASHED, "cannot start a vCPU thread");
            break;
        }
        vm->vcpus[i].started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}

uint64_t vmm__vm_uptime_ms(const vmm_vm_t *vm)
{
    return vm->start_ms ? vdi_now_ms() - vm->start_ms : 0;
}

void vmm__vm_request_stop(vmm_vm_t *vm, enum vmm_stop_reason reason, const char *why)
{
    pthread_mutex_lock(&vm->stop_lock);
    if (!atomic_load(&vm->stopping)) {
        vm->stop_reason = reason;
        snprintf(vm->stop_why, sizeof(vm->stop_why), "%s", why ? why : "");
        atomic_store(&vm->stopping, true);
        uint64_t one = 1;
        if (write(vm->stop_fd, &one, sizeof(one)) < 0)
            VDI_LOG_ERR("vm=%s cannot signal the stop: %s", vm->name, strerror(errno));
    }
    pthread_mutex_unlock(&vm->stop_lock);
    pthread_mutex_lock(&vm->pause_lock);
    pthread_cond_broadcast(&vm->pause_cond);
    pthread_mutex_unlock(&vm->pause_lock);
    kick_all(vm);
}

int vmm__vm_stop_fd(const vmm_vm_t *vm)
{
    return vm->stop_fd;
}

enum vmm_stop_reason vmm__vm_join(vmm_vm_t *vm, const char **why)
{
    if (!atomic_load(&vm->stopping))
        vmm__vm_request_stop(vm, VMM_STOP_SHUTDOWN, "stopped");
    for (unsigned i = 0; i < vm->nvcpus; i++) {
        if (!vm->vcpus[i].started)
            continue;
        pthread_join(vm->vcpus[i].thread, NULL);
        vm->vcpus[i].started = false;
    }
    vmm__iothread_stop(vm);
    for (unsigned i = 0; i < vm->nvcpus && vdi_log_threshold >= VDI_LOG_LEVEL_DEBUG; i++) {
        struct kvm_regs regs;
        if (ioctl(vm->vcpus[i].fd, KVM_GET_REGS, &regs) == 0)
            VDI_LOG_DEBUG("vm=%s vcpu=%u stopped at rip=0x%llx", vm->name, i,
                          (unsigned long long)regs.rip);
    }
    if (why)
        *why = vm->stop_why;
    return vm->stop_reason;
}

void vmm__vm_pause(vmm_vm_t *vm)
{
    pthread_mutex_lock(&vm->pause_lock);
    atomic_store(&vm->paused, true);
    pthread_mutex_unlock(&vm->pause_lock);
    kick_all(vm);
    pthread_mutex_lock(&vm->pause_lock);
    unsigned running = 0;
    for (unsigned i = 0; i < vm->nvcpus; i++)
        running += vm->vcpus[i].started;
    while (vm->parked < running && !atomic_load(&vm->stopping)) {
        pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
        /* A vCPU that stopped for good never parks: recount. */
        running = 0;
        for (unsigned i = 0; i < vm->nvcpus; i++)
            running += vm->vcpus[i].started;
    }
    pthread_mutex_unlock(&vm->pause_lock);
}

void vmm__vm_resume(vmm_vm_t *vm)
{
    pthread_mutex_lock(&vm->pause_lock);
    atomic_store(&vm->paused, false);
    pthread_cond_broadcast(&vm->pause_cond);
    pthread_mutex_unlock(&vm->pause_lock);
}

bool vmm__vm_paused(const vmm_vm_t *vm)
{
    return atomic_load(&vm->paused);
}

void vmm__vm_destroy(vmm_vm_t *vm)
{
    if (!vm)
        return;
    vmm__devices_teardown(vm);
    vmm__iothread_fini(vm);
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &vm->owned)
    {
        struct vm_owned *o = vdi_list_entry(it, struct vm_owned, link);
        o->free_fn(o->ptr);
        free(o);
    }
    for (unsigned i = 0; i < vm->nvcpus; i++) {
        if (vm->vcpus[i].run)
            munmap(vm->vcpus[i].run, vm->run_size);
        if (vm->vcpus[i].fd > 0)
            close(vm->vcpus[i].fd);
    }
    if (vm->ram)
        munmap(vm->ram, vm->ram_size);
    if (vm->fd >= 0)
        close(vm->fd);
    if (vm->kvm >= 0)
        close(vm->kvm);
    if (vm->stop_fd >= 0)
        close(vm->stop_fd);
    vmm__io_fini(vm);
    free(vm->routes);
    pthread_mutex_destroy(&vm->route_lock);
    pthread_mutex_destroy(&vm->slot_lock);
    pthread_mutex_destroy(&vm->stop_lock);
    pthread_mutex_destroy(&vm->pause_lock);
    pthread_cond_destroy(&vm->pause_cond);
    pthread_mutex_destroy(&vm->fd_lock);
    pthread_cond_destroy(&vm->fd_cond);
    free(vm);
}

/* ---- Boot registers ----------------------------------------------------------------------- */
static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64, bool db)
{
    memset(s, 0, sizeof(*s));
    s->base = 0;
    s->limit = 0xffffffff;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->s = 1;
    s->g = 1;
    s->l = code64;
    s->db = db;
}

int vmm__vcpu_boot_regs(vmm_vm_t *vm, bool long_mode, uint64_t entry, uint64_t info)
{
    struct vcpu *v = &vm->vcpus[0];
    struct kvm_sregs sregs;
    struct kvm_regs regs;

    if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
        return -errno;
    /* The GDT both entries use: 0x08 flat code32, 0x10 code64, 0x18 flat data, 0x20 TSS. */
    uint64_t *gdt = vmm__gpa_ptr(vm, VMM_BOOT_GDT, 5 * 8);
    gdt[0] = 0;
    gdt[1] = 0x00cf9b000000ffffULL;
    gdt[2] = 0x00af9b000000ffffULL;
    gdt[3] = 0x00cf93000000ffffULL;
    gdt[4] = 0x00008b0000000067ULL;
    sregs.gdt.base = VMM_BOOT_GDT;
    sregs.gdt.limit = 5 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    seg(&sregs.ds, 0x18, 3, false, true);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    memset(&sregs.tr, 0, sizeof(sregs.tr));
    sregs.tr.selector = 0x20;
    sregs.tr.limit = 0x67;
    sregs.tr.type = 11; /* busy 32-bit TSS */
    sregs.tr.present = 1;
    if (long_mode) {
        /* Identity-map the low 4 GiB with 2 MiB pages (boot protocol: the kernel, the zero page
         * and the command line must be identity mapped). */
        uint64_t *pml4 = vmm__gpa_ptr(vm, VMM_BOOT_PML4, 6 * 4096);
        memset(pml4, 0, 6 * 4096);
        uint64_t *pdpt = pml4 + 512, *pd = pml4 + 1024;
        pml4[0] = (VMM_BOOT_PML4 + 0x1000) | 3;
        for (uint64_t i = 0; i < 4; i++) {
            pdpt[i] = (VMM_BOOT_PML4 + 0x2000 + i * 0x1000) | 3;
            for (uint64_t j = 0; j < 512; j++)
                pd[i * 512 + j] = ((i << 30) | (j << 21)) | 0x83;
        }
        seg(&sregs.cs, 0x10, 11, true, false);
        sregs.cr3 = VMM_BOOT_PML4;
        sregs.cr4 = 1u << 5;                       /* PAE */
        sregs.cr0 = 0x80000000u | 0x20 | 0x10 | 1; /* PG NE ET PE */
        sregs.efer = 0x500;                        /* LME LMA */
    } else {
        seg(&sregs.cs, 0x08, 11, false, true);
        sregs.cr0 = 0x10 | 1; /* ET PE */
        sregs.cr4 = 0;
        sregs.efer = 0;
    }
    if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
        return -errno;
    memset(&regs, 0, sizeof(regs));
    regs.rflags = 2;
    regs.rip = entry;
    if (long_mode)
        regs.rsi = info;
    else
        regs.rbx = info;
    if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
        return -errno;
    return 0;
}
