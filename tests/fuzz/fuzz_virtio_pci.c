// fuzz-srcs: vmm/pci.c vmm/msix.c vmm/virtq.c vmm/virtio-pci.c vmm/virtio-blk.c vmm/virtio-rng.c vmm/virtio-input.c vmm/virtio-net.c vmm/virtio-console.c vmm/agent.c vmm/agent-wire.c vmm/dev-bochs.c golden-images/disk.c golden-images/qcow2.c golden-images/create.c common/*.c
// fuzz-libs: -lz -lzstd
/* libFuzzer target for the PCI side of vdi-vmm as a guest sees it: the input is a program of
 * guest actions (config-space accesses through 0xcf8/0xcfc, MMIO accesses to whatever BARs are
 * decoded, writes to guest RAM where rings live, I/O-thread turns, display-side input events and
 * framebuffer reads) run against a machine with every device (display, keyboard, tablet, a disk,
 * rng, the agent's port) over the fake core of the unit tests. Nothing may crash, leak or trip a sanitizer. */
#include "tests/unit/vmm/fake_vm.h"

#include <fcntl.h>

#include "display/dpy.h"

#define RAM_SIZE (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *disk_path(void)
{
    static char path[64];
    if (!path[0]) {
        snprintf(path, sizeof(path), "/tmp/vdi-fuzz-disk.%d", (int)getpid());
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
            abort();
        close(fd);
    }
    return path;
}

struct reader {
    const uint8_t *p;
    size_t left;
};

static uint64_t take(struct reader *r, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        v |= (uint64_t)(r->left ? *r->p : 0) << (8 * i);
        if (r->left) {
            r->p++;
            r->left--;
        }
    }
    return v;
}

/* The @k-th decoded MMIO region (modulo how many there are), or NULL. */
static struct vmm_io_region *mmio_region(vmm_vm_t *vm, unsigned k)
{
    unsigned n = 0;
    for (int i = 0; i < FAKE_MAX_REGIONS; i++)
        n += vm->regions[i].used && vm->regions[i].space == VMM_IO_MMIO;
    if (n == 0)
        return NULL;
    k %= n;
    for (int i = 0; i < FAKE_MAX_REGIONS; i++)
        if (vm->regions[i].used && vm->regions[i].space == VMM_IO_MMIO && k-- == 0)
            return &vm->regions[i];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t lens[4] = {1, 2, 4, 8};
    struct reader r = {data, size};
    struct vmm_config cfg = {
        .fb_width = 320, .fb_height = 200, .input = true, .rng = true, .agent = true};
    vmm_vm_t *vm = fake_vm_new(RAM_SIZE);
    void *fb_ctx, *in_ctx;

    vdi_log_set_level(VDI_LOG_LEVEL_ERR);
    cfg.disks[0].path = disk_path();
    cfg.ndisks = 1;
    if (vmm__pci_setup(vm, &cfg) < 0)
        abort();
    const struct dpy_fb_source *fb = vmm__pci_fb_source(vm, &fb_ctx);
    const struct dpy_input_sink *in = vmm__pci_input_sink(vm, &in_ctx);
    /* Decoding on for every device, as a driver would start. */
    for (unsigned s = 1; s < 6; s++)
        cfg_write(vm, s, 0x04, 2, 0x0006);

    for (unsigned steps = 0; r.left && steps < 512; steps++) {
        uint8_t op = (uint8_t)take(&r, 1);
        switch (op % 8) {
        case 0: {
            unsigned slot = take(&r, 1) % 8, reg = (unsigned)take(&r, 1);
            uint32_t len = lens[take(&r, 1) % 3];
            cfg_write(vm, slot, reg & ~(len - 1), len, (uint32_t)take(&r, 4));
            break;
        }
        case 1: {
            unsigned slot = take(&r, 1) % 8, reg = (unsigned)take(&r, 1);
            (void)cfg_read(vm, slot, reg & ~3u, 4);
            break;
        }
        case 2:
        case 3: {
            struct vmm_io_region *reg = mmio_region(vm, (unsigned)take(&r, 1));
            uint64_t off = take(&r, 2), v = take(&r, 8);
            uint32_t len = lens[take(&r, 1) % 4];
            if (!reg)
                break;
            off %= reg->size;
            if (off + len > reg->size)
                off = reg->size - len;
            if (op % 8 == 2)
                fake_mmio_write(vm, reg->base + off, &v, len);
            else
                fake_io(vm, VMM_IO_MMIO, reg->base + off, &v, len, false);
            break;
        }
        case 4: {
            uint64_t off = take(&r, 3) % (RAM_SIZE - 8), v = take(&r, 8);
            memcpy(vm->ram + off, &v, 8);
            break;
        }
        case 5:
            fake_iothread_run(vm);
            break;
        case 6: {
            uint8_t what = (uint8_t)take(&r, 1);
            uint32_t a = (uint32_t)take(&r, 4), b = (uint32_t)take(&r, 4);
            if (what % 3 == 0)
                in->key(in_ctx, (uint16_t)a, b & 1);
            else if (what % 3 == 1)
                in->pointer(in_ctx, a, b, what >> 2);
            else
                in->wheel(in_ctx, (int)(int8_t)a, (int)(int8_t)b);
            break;
        }
        case 7: {
            struct dpy_mode m;
            uint64_t bm[64] = {0};
            if (fb->get_mode(fb_ctx, &m)) {
                volatile uint8_t *px = m.pixels;
                (void)px[(size_t)m.stride * (m.height - 1) + 4 * (m.width - 1)];
                size_t npages = ((size_t)m.stride * m.height + 4095) / 4096;
                if (npages <= 64 * 64)
                    (void)fb->get_dirty(fb_ctx, bm, npages);
            }
            break;
        }
        }
    }
    fake_iothread_run(vm);
    vmm__pci_teardown(vm);
    fake_vm_free(vm);
    return 0;
}
