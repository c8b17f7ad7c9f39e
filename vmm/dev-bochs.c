/* vmm/dev-bochs.c: a display adapter compatible with QEMU's bochs-display (PCI 1234:1111), so
 * Linux's bochs DRM driver and testdesk drive it.
 *
 *   BAR0  the framebuffer (32-bit prefetchable memory), host memory of our own in a KVM memory
 *         slot of its own with dirty logging: the display learns which pages the guest wrote.
 *   BAR2  4 KiB MMIO: the EDID block at 0x000, the DISPI (VBE) registers at 0x500 (register i
 *         at 0x500 + 2i, 16 bits), QEMU's extended registers at 0x600 (size, endianness).
 *
 * As in QEMU, the DISPI registers just hold what the guest wrote; the mode is worked out (and
 * validated against the video memory) when the display asks for it. Only 32 bpp is scanned out,
 * the one format struct dpy_mode carries.
 */
#define VDI_LOG_TAG "vmm"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "display/dpy.h"
#include "vmm/pci-internal.h"

#define DISPI_INDEX_ID               0x0
#define DISPI_INDEX_XRES             0x1
#define DISPI_INDEX_YRES             0x2
#define DISPI_INDEX_BPP              0x3
#define DISPI_INDEX_ENABLE           0x4
#define DISPI_INDEX_BANK             0x5
#define DISPI_INDEX_VIRT_WIDTH       0x6
#define DISPI_INDEX_VIRT_HEIGHT      0x7
#define DISPI_INDEX_X_OFFSET         0x8
#define DISPI_INDEX_Y_OFFSET         0x9
#define DISPI_INDEX_VIDEO_MEMORY_64K 0xa
#define DISPI_NREGS                  0xb
#define DISPI_ID0                    0xb0c0
#define DISPI_ID5                    0xb0c5
#define DISPI_ENABLED                0x01

#define MMIO_SIZE                    0x1000
#define EDID_SIZE                    0x400
#define DISPI_BASE                   0x500
#define QEXT_BASE                    0x600
#define QEXT_SIZE                    8
#define QEXT_LITTLE                  0x1e1e1e1e

#define FB_MAX_W                     3840
#define FB_MAX_H                     2160
#define FB_MIN_W                     320
#define FB_MIN_H                     200

struct vmm_bochs {
    struct vmm_pci_dev pci; /* first */
    pthread_mutex_t lock;
    uint8_t *vram;
    uint64_t vram_size;
    int slot;
    uint16_t regs[DISPI_NREGS];
    uint8_t edid[128];
    /* What get_mode() last reported, to bump the generation on change. */
    uint32_t last_w, last_h, last_stride;
    uint64_t last_off, generation;
    uint64_t *dirty; /* one bit per vram page, scratch for get_dirty */
};

/* ---- EDID 1.4 ----------------------------------------------------------------------------- */
static void detailed_timing(uint8_t *d, uint32_t w, uint32_t h)
{
    /* Reduced blanking in the spirit of CVT-RB: 160 pixels of horizontal blanking, vertical
     * blanking of at least 460 us, 60 Hz. */
    const uint32_t hblank = 160, hfront = 48, hsync = 32, vfront = 3, vsync = 6;
    uint32_t vblank = (uint32_t)((h * 0.0276) / (1 - 0.0276)) + 2;
    if (vblank < 15)
        vblank = 15;
    uint64_t clock = ((uint64_t)(w + hblank) * (h + vblank) * 60 + 9999) / 10000; /* 10 kHz */
    uint32_t wmm = w * 254 / 960, hmm = h * 254 / 960;                            /* as if 96 dpi */

    d[0] = clock & 0xff;
    d[1] = clock >> 8;
    d[2] = w & 0xff;
    d[3] = hblank & 0xff;
    d[4] = (uint8_t)(((w >> 8) & 0xf) << 4 | ((hblank >> 8) & 0xf));
    d[5] = h & 0xff;
    d[6] = vblank & 0xff;
    d[7] = (uint8_t)(((h >> 8) & 0xf) << 4 | ((vblank >> 8) & 0xf));
    d[8] = hfront & 0xff;
    d[9] = hsync & 0xff;
    d[10] = (uint8_t)((vfront & 0xf) << 4 | (vsync & 0xf));
    d[11] = (uint8_t)(((hfront >> 8) & 3) << 6 | ((hsync >> 8) & 3) << 4 |
                      ((vfront >> 4) & 3) << 2 | ((vsync >> 4) & 3));
    d[12] = wmm & 0xff;
    d[13] = hmm & 0xff;
    d[14] = (uint8_t)(((wmm >> 8) & 0xf) << 4 | ((hmm >> 8) & 0xf));
    d[15] = 0;
    d[16] = 0;
    d[17] = 0x1e; /* digital separate sync, +hsync, +vsync */
}

static void text_descriptor(uint8_t *d, uint8_t tag, const char *text)
{
    size_t n = strlen(text);
    memset(d, 0, 18);
    d[3] = tag;
    memset(d + 5, ' ', 13);
    memcpy(d + 5, text, n);
    if (n < 13)
        d[5 + n] = '\n';
}

void vmm__edid_build(uint8_t e[128], uint32_t width, uint32_t height)
{
    static const uint8_t header[8] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00};
    /* sRGB primaries and D65 white in 10-bit fractions (x, y). */
    static const uint16_t chroma[8] = {655, 338, 307, 614, 154, 61, 320, 337};
    uint8_t *d;
    unsigned sum = 0;

    memset(e, 0, 128);
    memcpy(e, header, 8);
    e[8] = 0x58; /* manufacturer "VDI": 5-bit letters, big-endian */
    e[9] = 0x89;
    e[10] = 0x01; /* product code */
    e[16] = 1;    /* week */
    e[17] = 34;   /* 2024 */
    e[18] = 1;    /* EDID 1.4 */
    e[19] = 4;
    e[20] = 0xa0; /* digital, 8 bits per colour */
    e[21] = (uint8_t)VDI_MAX(1u, VDI_MIN(255u, width * 254 / 9600)); /* cm at 96 dpi */
    e[22] = (uint8_t)VDI_MAX(1u, VDI_MIN(255u, height * 254 / 9600));
    e[23] = 120;  /* gamma 2.2 */
    e[24] = 0x06; /* sRGB default, preferred timing is native */
    e[25] = (uint8_t)((chroma[0] & 3) << 6 | (chroma[1] & 3) << 4 | (chroma[2] & 3) << 2 |
                      (chroma[3] & 3));
    e[26] = (uint8_t)((chroma[4] & 3) << 6 | (chroma[5] & 3) << 4 | (chroma[6] & 3) << 2 |
                      (chroma[7] & 3));
    for (unsigned i = 0; i < 8; i++)
        e[27 + i] = (uint8_t)(chroma[i] >> 2);
    e[35] = 0x21; /* 640x480@60, 800x600@60 */
    e[36] = 0x08; /* 1024x768@60 */
    /* Standard timings (60 Hz): common modes no larger than the preferred one, so a guest can
     * switch to them. Byte 1: width / 8 - 31; byte 2: aspect (bits 7-6) | refresh - 60. */
    static const struct {
        uint16_t w, h;
        uint8_t aspect; /* 0 16:10, 1 4:3, 2 5:4, 3 16:9 */
    } std_modes[] = {
        {1280, 720, 3}, {1280, 800, 0},  {1280, 1024, 2}, {1440, 900, 0},
        {1600, 900, 3}, {1680, 1050, 0}, {1920, 1080, 3}, {1920, 1200, 0},
    };
    unsigned nstd = 0;
    for (unsigned i = 38; i < 54; i++)
        e[i] = 0x01; /* unused slots */
    for (unsigned i = 0; i < VDI_ARRAY_SIZE(std_modes) && nstd < 8; i++) {
        if (std_modes[i].w > width || std_modes[i].h > height ||
            (std_modes[i].w == width && std_modes[i].h == height))
            continue;
        e[38 + 2 * nstd] = (uint8_t)(std_modes[i].w / 8 - 31);
        e[39 + 2 * nstd] = (uint8_t)(std_modes[i].aspect << 6);
        nstd++;
    }
    detailed_timing(e + 54, width, height);
    /* Display range limits: 50-75 Hz, 30-160 kHz, enough pixel clock for the preferred mode. */
    d = e + 72;
    d[3] = 0xfd;
    d[5] = 50;
    d[6] = 75;
    d[7] = 30;
    d[8] = 160;
    d[9] = (uint8_t)VDI_MIN(255u, (unsigned)(((e[54] | e[55] << 8) + 999) / 1000) + 1);
    d[10] = 0x01; /* range limits only */
    d[11] = 0x0a;
    memset(d + 12, ' ', 6);
    text_descriptor(e + 90, 0xfc, "VDI display");
    text_descriptor(e + 108, 0xff, "0");
    e[126] = 0; /* no extension blocks */
    for (unsigned i = 0; i < 127; i++)
        sum += e[i];
    e[127] = (uint8_t)(256 - (sum & 0xff));
}

/* ---- Registers ---------------------------------------------------------------------------- */
static uint16_t dispi_read(struct vmm_bochs *b, unsigned idx)
{
    switch (idx) {
    case DISPI_INDEX_ID:
        return DISPI_ID5;
    case DISPI_INDEX_VIDEO_MEMORY_64K:
        return (uint16_t)(b->vram_size >> 16);
    default:
        return idx < DISPI_NREGS ? b->regs[idx] : 0;
    }
}

static void dispi_write(struct vmm_bochs *b, unsigned idx, uint16_t v)
{
    if (idx >= DISPI_NREGS || idx == DISPI_INDEX_ID || idx == DISPI_INDEX_VIDEO_MEMORY_64K)
        return;
    b->regs[idx] = v;
}

static void bochs_mmio(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct vmm_bochs *b = opaque;
    uint8_t buf[8] = {0};

    if (is_write)
        memcpy(buf, data, len);
    pthread_mutex_lock(&b->lock);
    if (off < EDID_SIZE) {
        if (!is_write)
            for (uint32_t k = 0; k < len && off + k < sizeof(b->edid); k++)
                buf[k] = b->edid[off + k];
    } else if (off >= DISPI_BASE && off < DISPI_BASE + 2 * DISPI_NREGS) {
        /* Byte-wise so any width works: register (off - base) / 2, low or high byte. */
        for (uint32_t k = 0; k < len; k++) {
            uint64_t o = off + k - DISPI_BASE;
            unsigned idx = o / 2, shift = 8 * (o & 1);
            if (idx >= DISPI_NREGS)
                break;
            uint16_t r = dispi_read(b, idx);
            if (is_write) {
                r = (uint16_t)((b->regs[idx] & ~(0xff << shift)) | buf[k] << shift);
                dispi_write(b, idx, r);
            } else {
                buf[k] = (uint8_t)(r >> shift);
            }
        }
    } else if (off >= QEXT_BASE && off < QEXT_BASE + QEXT_SIZE) {
        uint32_t q[2] = {QEXT_SIZE, QEXT_LITTLE};
        /* Writes of the endianness register are accepted and ignored: we only do
         * little-endian framebuffers (a big-endian request still reads back little). */
        if (!is_write)
            for (uint32_t k = 0; k < len && off - QEXT_BASE + k < sizeof(q); k++)
                buf[k] = ((uint8_t *)q)[off - QEXT_BASE + k];
    }
    pthread_mutex_unlock(&b->lock);
    if (!is_write)
        memcpy(data, buf, len);
}

/* ---- struct dpy_fb_source ----------------------------------------------------------------- */
/* Lock held. Returns false if the registers do not describe a mode we can scan out. */
static bool current_mode(struct vmm_bochs *b, uint32_t *w, uint32_t *h, uint32_t *stride,
                         uint64_t *off)
{
    const uint16_t *r = b->regs;
    if (!(r[DISPI_INDEX_ENABLE] & DISPI_ENABLED) || r[DISPI_INDEX_BPP] != 32)
        return false;
    uint32_t width = r[DISPI_INDEX_XRES], height = r[DISPI_INDEX_YRES];
    uint32_t vw = VDI_MAX(r[DISPI_INDEX_VIRT_WIDTH], width);
    if (width == 0 || height == 0)
        return false;
    uint64_t st = (uint64_t)vw * 4;
    uint64_t o = (uint64_t)r[DISPI_INDEX_X_OFFSET] * 4 + (uint64_t)r[DISPI_INDEX_Y_OFFSET] * st;
    if (o + st * height > b->vram_size)
        return false;
    *w = width;
    *h = height;
    *stride = (uint32_t)st;
    *off = o;
    return true;
}

static bool fb_get_mode(void *ctx, struct dpy_mode *mode)
{
    struct vmm_bochs *b = ctx;
    uint32_t w, h, stride;
    uint64_t off;
    pthread_mutex_lock(&b->lock);
    bool ok = current_mode(b, &w, &h, &stride, &off);
    if (ok) {
        if (w != b->last_w || h != b->last_h || stride != b->last_stride || off != b->last_off) {
            b->generation++;
            b->last_w = w;
            b->last_h = h;
            b->last_stride = stride;
            b->last_off = off;
        }
        mode->width = w;
        mode->height = h;
        mode->stride = stride;
        mode->pixels = b->vram + off;
        mode->generation = b->generation;
    }
    pthread_mutex_unlock(&b->lock);
    return ok;
}

static int fb_get_dirty(void *ctx, uint64_t *bitmap, size_t npages)
{
    struct vmm_bochs *b = ctx;
    uint64_t vpages = b->vram_size / 4096;
    int err;

    pthread_mutex_lock(&b->lock);
    uint64_t off = b->last_off;
    err = vmm__memslot_get_dirty(b->pci.vm, b->slot, b->dirty);
    if (err == 0) {
        /* Framebuffer page i covers vram bytes [off + 4096 i, off + 4096 (i + 1)). */
        for (size_t i = 0; i < npages; i++) {
            uint64_t first = (off + 4096 * (uint64_t)i) / 4096;
            uint64_t last = (off + 4096 * (uint64_t)(i + 1) - 1) / 4096;
            for (uint64_t p = first; p <= last && p < vpages; p++) {
                if (b->dirty[p / 64] >> (p % 64) & 1) {
                    bitmap[i / 64] |= 1ull << (i % 64);
                    break;
                }
            }
        }
    }
    pthread_mutex_unlock(&b->lock);
    return err;
}

const struct dpy_fb_source vmm__bochs_fb_source = {
    .name = "bochs-display",
    .get_mode = fb_get_mode,
    .get_dirty = fb_get_dirty,
};

/* ---- Life --------------------------------------------------------------------------------- */
static void bochs_destroy(struct vmm_pci_dev *dev)
{
    struct vmm_bochs *b = vdi_container_of(dev, struct vmm_bochs, pci);
    /* The bus unmapped BAR0 already; only once KVM surely has no mapping of the vram may it go
     * (internal.h cannot delete the slot itself: it stays registered, unmapped). */
    if (vmm__memslot_unmap(dev->vm, b->slot) == 0)
        munmap(b->vram, b->vram_size);
    pthread_mutex_destroy(&b->lock);
    free(b->dirty);
    free(b);
}

static const struct vmm_pci_dev_ops bochs_ops = {
    .name = "bochs-display",
    .destroy = bochs_destroy,
};

int vmm__bochs_create(vmm_vm_t *vm, uint32_t width, uint32_t height, struct vmm_bochs **out)
{
    struct vmm_bochs *b;
    uint64_t need, size = 16u << 20;
    bool slotted = false;
    int err;

    if (width < FB_MIN_W || width > FB_MAX_W || height < FB_MIN_H || height > FB_MAX_H) {
        VDI_LOG_ERR("display size %ux%u out of range (%ux%u to %ux%u)", width, height, FB_MIN_W,
                    FB_MIN_H, FB_MAX_W, FB_MAX_H);
        return -EINVAL;
    }
    /* Room for two frames of the preferred mode (page flipping), a power of two. */
    need = 2ull * width * height * 4;
    while (size < need)
        size <<= 1;
    b = vdi_xcalloc(1, sizeof(*b));
    b->vram_size = size;
    b->vram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (b->vram == MAP_FAILED) {
        err = -errno;
        free(b);
        return err;
    }
    b->dirty = vdi_xcalloc((size / 4096 + 63) / 64, sizeof(uint64_t));
    pthread_mutex_init(&b->lock, NULL);
    vmm__edid_build(b->edid, width, height);
    err = vmm__memslot_add(vm, b->vram, size, true, &b->slot);
    if (err < 0)
        goto err_free;
    slotted = true;
    /* QEMU's ids: vendor 1234 device 1111, class "other display", revision 2. */
    vmm__pci_dev_init(&b->pci, &bochs_ops, vm, 0x1234, 0x1111, 0x038000, 2, 0x1af4, 0x1100);
    if ((err = vmm__pci_bar_init(&b->pci, 0, VMM_PCI_BAR_MEM32, true, size, NULL, NULL, b->slot)) <
            0 ||
        (err = vmm__pci_bar_init(&b->pci, 2, VMM_PCI_BAR_MEM32, false, MMIO_SIZE, bochs_mmio, b,
                                 -1)) < 0)
        goto err_free;
    err = vmm__pci_register(vm, &b->pci);
    if (err < 0)
        goto err_free;
    *out = b;
    return 0;
err_free:
    if (!slotted || vmm__memslot_unmap(vm, b->slot) == 0)
        munmap(b->vram, size);
    pthread_mutex_destroy(&b->lock);
    free(b->dirty);
    free(b);
    return err;
}
