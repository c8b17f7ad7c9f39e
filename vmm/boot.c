/* vmm/boot.c: loading the guest kernel, two ways in.
 *
 *  - An ELF with a PVH note (XEN_ELFNOTE_PHYS32_ENTRY): its PT_LOAD segments go to their
 *    physical addresses and the BSP starts in 32-bit protected mode at the note's entry with
 *    %ebx pointing at an hvm_start_info (memory map, command line, initrd as module 0, RSDP).
 *  - A Linux bzImage (Documentation/arch/x86/boot.rst): by default its compressed payload is
 *    decompressed here (decompress.c, cached by SHA-256) and the resulting vmlinux is loaded at
 *    its physical addresses and entered at startup_64 through the 64-bit boot protocol; with
 *    --guest-decompress the protected-mode code is loaded as is and entered at +0x200, so the
 *    kernel's own decompressor runs. Either way %rsi points at the zero page (boot_params).
 */
#define VDI_LOG_TAG "vmm"
#include <elf.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/internal.h"
#include "vmm/vm-private.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define MAX_KERNEL_FILE          (512ULL << 20)

static inline uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t rd64(const uint8_t *p)
{
    return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}
static inline void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void wr32(uint8_t *p, uint32_t v)
{
    wr16(p, (uint16_t)v);
    wr16(p + 2, (uint16_t)(v >> 16));
}
static inline void wr64(uint8_t *p, uint64_t v)
{
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

/* ---- Memory map --------------------------------------------------------------------------- */
unsigned vmm__e820_build(uint64_t ram_bytes, struct vmm_e820 *out)
{
    uint64_t low = VDI_MIN(ram_bytes, VMM_MMIO_HOLE_START);
    unsigned n = 0;
    out[n++] = (struct vmm_e820){0, VMM_EBDA_START, VMM_E820_RAM};
    out[n++] = (struct vmm_e820){VMM_EBDA_START, 0xa0000 - VMM_EBDA_START, VMM_E820_RESERVED};
    /* ACPI tables and the MP table live here. */
    out[n++] = (struct vmm_e820){VMM_ACPI_START, VMM_BIOS_END - VMM_ACPI_START, VMM_E820_RESERVED};
    if (low > VMM_BIOS_END)
        out[n++] = (struct vmm_e820){VMM_BIOS_END, low - VMM_BIOS_END, VMM_E820_RAM};
    if (ram_bytes > low)
        out[n++] = (struct vmm_e820){VMM_HIGH_RAM_START, ram_bytes - low, VMM_E820_RAM};
    return n;
}

/* ---- Zero page ---------------------------------------------------------------------------- */
#define HDR_SETUP_SECTS    0x1f1
#define HDR_BOOT_FLAG      0x1fe
#define HDR_JUMP           0x200
#define HDR_MAGIC          0x202
#define HDR_VERSION        0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS      0x211
#define HDR_RAMDISK_IMAGE  0x218
#define HDR_RAMDISK_SIZE   0x21c
#define HDR_HEAP_END       0x224
#define HDR_CMD_LINE_PTR   0x228
#define HDR_INITRD_MAX     0x22c
#define HDR_KERNEL_ALIGN   0x230
#define HDR_RELOCATABLE    0x234
#define HDR_XLOADFLAGS     0x236
#define HDR_CMDLINE_SIZE   0x238
#define HDR_PAYLOAD_OFFSET 0x248
#define HDR_PAYLOAD_LENGTH 0x24c
#define HDR_PREF_ADDRESS   0x258
#define HDR_INIT_SIZE      0x260
#define XLF_KERNEL_64      1
#define LOADED_HIGH        1
#define CAN_USE_HEAP       0x80

static bool is_bzimage(const uint8_t *k, size_t len)
{
    return len >= 0x1000 && rd16(k + HDR_BOOT_FLAG) == 0xaa55 && !memcmp(k + HDR_MAGIC, "HdrS", 4);
}

int vmm__zero_page_build(uint8_t *bp, const uint8_t *kernel, size_t len, uint64_t cmdline_gpa,
                         uint64_t initrd_gpa, uint64_t initrd_size, const struct vmm_e820 *e820,
                         unsigned ne820, uint64_t rsdp)
{
    if (!is_bzimage(kernel, len))
        return VDI_EBADKERNEL;
    uint16_t version = rd16(kernel + HDR_VERSION);
    if (version < 0x206) /* 2.06: cmdline_size; older kernels are out of scope */
        return VDI_EBADKERNEL;
    /* The setup header runs from 0x1f1 to the end given by the jump at 0x200. */
    size_t hdr_end = 0x202 + kernel[HDR_JUMP + 1];
    if (hdr_end > 0x280 || hdr_end < HDR_CMDLINE_SIZE + 4)
        return VDI_EBADKERNEL;
    memset(bp, 0, 4096);
    memcpy(bp + HDR_SETUP_SECTS, kernel + HDR_SETUP_SECTS, hdr_end - HDR_SETUP_SECTS);
    bp[HDR_TYPE_OF_LOADER] = 0xff; /* undefined loader */
    bp[HDR_LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
    wr16(bp + HDR_HEAP_END, 0xfe00);
    wr32(bp + HDR_CMD_LINE_PTR, (uint32_t)cmdline_gpa);
    wr32(bp + VMM_BP_EXT_CMDLINE, (uint32_t)(cmdline_gpa >> 32));
    wr32(bp + HDR_RAMDISK_IMAGE, (uint32_t)initrd_gpa);
    wr32(bp + HDR_RAMDISK_SIZE, (uint32_t)initrd_size);
    wr32(bp + VMM_BP_EXT_RD_IMAGE, (uint32_t)(initrd_gpa >> 32));
    wr32(bp + VMM_BP_EXT_RD_SIZE, (uint32_t)(initrd_size >> 32));
    if (version >= 0x20e)
        wr64(bp + VMM_BP_ACPI_RSDP, rsdp);
    if (ne820 > VMM_BP_E820_MAX)
        return -EINVAL;
    bp[VMM_BP_E820_ENTRIES] = (uint8_t)ne820;
    for (unsigned i = 0; i < ne820; i++) {
        uint8_t *e = bp + VMM_BP_E820_TABLE + i * 20;
        wr64(e, e820[i].addr);
        wr64(e + 8, e820[i].size);
        wr32(e + 16, e820[i].type);
    }
    return 0;
}

/* ---- PVH start info ----------------------------------------------------------------------- */
int vmm__pvh_start_info_build(uint8_t *ram, size_t ram_len, uint64_t cmdline_gpa,
                              uint64_t initrd_gpa, uint64_t initrd_size,
                              const struct vmm_e820 *e820, unsigned ne820, uint64_t rsdp)
{
    struct vmm_hvm_start_info si;
    struct vmm_hvm_modlist_entry mod;
    uint64_t memmap = VMM_BOOT_MEMMAP, modlist = VMM_BOOT_MEMMAP + 0x800;
    if (ram_len < VMM_BOOT_MEMMAP + 0x1000 || ne820 * sizeof(struct vmm_hvm_memmap_entry) > 0x800)
        return -EINVAL;
    memset(&si, 0, sizeof(si));
    si.magic = VMM_HVM_START_MAGIC;
    si.version = 1;
    si.cmdline_paddr = cmdline_gpa;
    si.rsdp_paddr = rsdp;
    si.memmap_paddr = memmap;
    si.memmap_entries = ne820;
    for (unsigned i = 0; i < ne820; i++) {
        struct vmm_hvm_memmap_entry m = {e820[i].addr, e820[i].size, e820[i].type, 0};
        memcpy(ram + memmap + i * sizeof(m), &m, sizeof(m));
    }
    if (initrd_size) {
        memset(&mod, 0, sizeof(mod));
        mod.paddr = initrd_gpa;
        mod.size = initrd_size;
        memcpy(ram + modlist, &mod, sizeof(mod));
        si.nr_modules = 1;
        si.modlist_paddr = modlist;
    }
    memcpy(ram + VMM_BOOT_INFO, &si, sizeof(si));
    return 0;
}

/* ---- ELF ---------------------------------------------------------------------------------- */
struct elf_seg {
    uint64_t offset, paddr, vaddr, filesz, memsz;
};

/* The PT_LOAD segments of an ELF32 or ELF64 little-endian x86 file, bounds-checked. */
static int elf_segments(const uint8_t *f, size_t len, struct elf_seg *segs, unsigned cap,
                        unsigned *nseg, uint64_t *entry)
{
    if (len < sizeof(Elf32_Ehdr) || memcmp(f, ELFMAG, SELFMAG) || f[EI_DATA] != ELFDATA2LSB)
        return VDI_EBADKERNEL;
    bool is64 = f[EI_CLASS] == ELFCLASS64;
    if (!is64 && f[EI_CLASS] != ELFCLASS32)
        return VDI_EBADKERNEL;
    if (is64 && len < sizeof(Elf64_Ehdr))
        return VDI_EBADKERNEL;
    uint64_t phoff = is64 ? rd64(f + 0x20) : rd32(f + 0x1c);
    uint16_t phentsize = rd16(f + (is64 ? 0x36 : 0x2a));
    uint16_t phnum = rd16(f + (is64 ? 0x38 : 0x2c));
    *entry = is64 ? rd64(f + 0x18) : rd32(f + 0x18);
    if (phentsize < (is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr)) || phoff > len ||
        (uint64_t)phnum * phentsize > len - phoff)
        return VDI_EBADKERNEL;
    *nseg = 0;
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *ph = f + phoff + (uint64_t)i * phentsize;
        struct elf_seg s;
        uint32_t type = rd32(ph);
        if (is64) {
            s.offset = rd64(ph + 8);
            s.vaddr = rd64(ph + 16);
            s.paddr = rd64(ph + 24);
            s.filesz = rd64(ph + 32);
            s.memsz = rd64(ph + 40);
        } else {
            s.offset = rd32(ph + 4);
            s.vaddr = rd32(ph + 8);
            s.paddr = rd32(ph + 12);
            s.filesz = rd32(ph + 16);
            s.memsz = rd32(ph + 20);
        }
        if (type != PT_LOAD && type != PT_NOTE)
            continue;
        if (s.offset > len || s.filesz > len - s.offset)
            return VDI_EBADKERNEL;
        if (type == PT_LOAD && (s.filesz > s.memsz || s.paddr + s.memsz < s.paddr))
            return VDI_EBADKERNEL;
        if (type == PT_NOTE) {
            s.memsz = 0; /* marks a note for the callers below */
            s.paddr = UINT64_MAX;
        }
        if (*nseg == cap)
            return VDI_EBADKERNEL;
        segs[(*nseg)++] = s;
    }
    return 0;
}

static int notes_find_pvh(const uint8_t *p, uint64_t len, uint64_t *entry)
{
    uint64_t off = 0;
    while (len - off >= 12) {
        uint32_t namesz = rd32(p + off), descsz = rd32(p + off + 4), type = rd32(p + off + 8);
        uint64_t name = off + 12, desc = name + ((namesz + 3ULL) & ~3ULL);
        uint64_t next = desc + ((descsz + 3ULL) & ~3ULL);
        if (next > len)
            return VDI_EBADKERNEL;
        if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 && !memcmp(p + name, "Xen", 4)) {
            if (descsz == 4)
                *entry = rd32(p + desc);
            else if (descsz == 8)
                *entry = rd64(p + desc);
            else
                return VDI_EBADKERNEL;
            return 0;
        }
        off = next;
    }
    return -ENOENT;
}

int vmm__elf_pvh_entry(const uint8_t *elf, size_t len, uint64_t *entry)
{
    struct elf_seg segs[64];
    unsigned n;
    uint64_t e;
    int err = elf_segments(elf, len, segs, VDI_ARRAY_SIZE(segs), &n, &e);
    if (err < 0)
        return err;
    for (unsigned i = 0; i < n; i++) {
        if (segs[i].memsz != 0)
            continue;
        err = notes_find_pvh(elf + segs[i].offset, segs[i].filesz, entry);
        if (err != -ENOENT)
            return err;
    }
    return -ENOENT;
}

/* Copy the PT_LOAD segments into guest RAM; *end gets the highest byte used. */
static int elf_load(vmm_vm_t *vm, const uint8_t *f, size_t len, uint64_t *entry, uint64_t *end,
                    char **err_msg, const char *path)
{
    struct elf_seg segs[64];
    unsigned n;
    int err = elf_segments(f, len, segs, VDI_ARRAY_SIZE(segs), &n, entry);
    if (err < 0) {
        *err_msg =
            vdi_xasprintf("--kernel %s: not a valid x86 ELF file (truncated or corrupt)", path);
        return err;
    }
    *end = 0;
    bool any = false;
    for (unsigned i = 0; i < n; i++) {
        struct elf_seg *s = &segs[i];
        if (s->memsz == 0)
            continue;
        uint8_t *dst = vmm__gpa_ptr(vm, s->paddr, s->memsz);
        if (!dst || s->paddr < VMM_BIOS_END) {
            *err_msg = vdi_xasprintf("--kernel %s: a segment at 0x%" PRIx64 " (%" PRIu64
                                     " bytes) does not fit in guest memory",
                                     path, s->paddr, s->memsz);
            return s->paddr < VMM_BIOS_END ? VDI_EBADKERNEL : VDI_ECONFIG;
        }
        memcpy(dst, f + s->offset, s->filesz);
        memset(dst + s->filesz, 0, s->memsz - s->filesz);
        *end = VDI_MAX(*end, s->paddr + s->memsz);
        /* A vmlinux's entry is a virtual address in some builds: translate it. */
        if (*entry >= s->vaddr && *entry - s->vaddr < s->memsz && s->vaddr != s->paddr)
            *entry = *entry - s->vaddr + s->paddr;
        any = true;
    }
    if (!any) {
        *err_msg = vdi_xasprintf("--kernel %s: the ELF file has nothing to load", path);
        return VDI_EBADKERNEL;
    }
    return 0;
}

/* ---- Files -------------------------------------------------------------------------------- */
static int read_file(const char *what, const char *path, uint64_t max, uint8_t **out, size_t *len,
                     char **err_msg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        int e = errno;
        *err_msg = vdi_xasprintf("%s %s: %s", what, path, strerror(e));
        return VDI_ECONFIG;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        *err_msg = vdi_xasprintf("%s %s: not a regular file", what, path);
        return VDI_ECONFIG;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        *err_msg = vdi_xasprintf("%s %s: %" PRIu64 " MiB is too large (at most %" PRIu64 " MiB)",
                                 what, path, (uint64_t)st.st_size >> 20, max >> 20);
        return VDI_ECONFIG;
    }
    uint8_t *buf = vdi_trymalloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        *err_msg = vdi_xasprintf("%s %s: out of memory", what, path);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            close(fd);
            free(buf);
            *err_msg = vdi_xasprintf("%s %s: read failed: %s", what, path, strerror(e));
            return VDI_ECONFIG;
        }
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *len = got;
    return 0;
}

/* ---- Loading ------------------------------------------------------------------------------ */
struct boot {
    vmm_vm_t *vm;
    const struct vmm_config *cfg;
    uint8_t *kernel, *initrd;
    size_t kernel_len, initrd_len;
    uint64_t kernel_end, initrd_limit, initrd_gpa;
    uint64_t rsdp;
    char **err_msg;
};

/* Put the initrd as high as possible below @limit and above the kernel, page aligned. */
static int place_initrd(struct boot *b)
{
    vmm_vm_t *vm = b->vm;
    if (!b->initrd_len)
        return 0;
    uint64_t top = VDI_MIN(b->initrd_limit, vm->low_size);
    uint64_t bottom = (b->kernel_end + 0xfff) & ~0xfffULL;
    if (b->initrd_len > top || ((top - b->initrd_len) & ~0xfffULL) < bottom) {
        *b->err_msg = vdi_xasprintf(
            "--initrd %s: %zu MiB does not fit in guest memory between the kernel's end "
            "(%" PRIu64 " MiB) and %" PRIu64 " MiB; raise --mem",
            b->cfg->initrd, b->initrd_len >> 20, bottom >> 20, top >> 20);
        return VDI_ECONFIG;
    }
    b->initrd_gpa = (top - b->initrd_len) & ~0xfffULL;
    memcpy(vmm__gpa_ptr(vm, b->initrd_gpa, b->initrd_len), b->initrd, b->initrd_len);
    return 0;
}

static int put_cmdline(struct boot *b, size_t max)
{
    const char *c = b->cfg->cmdline ? b->cfg->cmdline : "";
    size_t n = strlen(c);
    if (n + 1 > max || n + 1 > VMM_BOOT_CMDLINE_MAX) {
        *b->err_msg = vdi_xasprintf("--cmdline: %zu bytes is longer than the kernel accepts (%zu)",
                                    n, VDI_MIN(max, (size_t)VMM_BOOT_CMDLINE_MAX) - 1);
        return VDI_ECONFIG;
    }
    memcpy(vmm__gpa_ptr(b->vm, VMM_BOOT_CMDLINE, n + 1), c, n + 1);
    return 0;
}

static int boot_pvh(struct boot *b)
{
    vmm_vm_t *vm = b->vm;
    uint64_t pvh_entry, elf_entry;
    struct vmm_e820 e820[VMM_E820_MAX];
    int err;

    err = vmm__elf_pvh_entry(b->kernel, b->kernel_len, &pvh_entry);
    if (err == -ENOENT) {
        *b->err_msg = vdi_xasprintf("--kernel %s: ELF file without a PVH entry note "
                                    "(XEN_ELFNOTE_PHYS32_ENTRY)",
                                    b->cfg->kernel);
        return VDI_EBADKERNEL;
    } else if (err < 0) {
        *b->err_msg = vdi_xasprintf("--kernel %s: not a valid x86 ELF file (truncated or corrupt)",
                                    b->cfg->kernel);
        return VDI_EBADKERNEL;
    }
    err = elf_load(vm, b->kernel, b->kernel_len, &elf_entry, &b->kernel_end, b->err_msg,
                   b->cfg->kernel);
    if (err < 0)
        return err;
    b->initrd_limit = VMM_MMIO_HOLE_START;
    if ((err = put_cmdline(b, VMM_BOOT_CMDLINE_MAX)) < 0 || (err = place_initrd(b)) < 0)
        return err;
    unsigned n = vmm__e820_build(vm->ram_size, e820);
    err = vmm__pvh_start_info_build(vm->ram, vm->low_size, VMM_BOOT_CMDLINE, b->initrd_gpa,
                                    b->initrd_len, e820, n, b->rsdp);
    if (err < 0)
        return err;
    VDI_LOG_INFO("vm=%s boot=pvh entry=0x%" PRIx64 " kernel_end=0x%" PRIx64, vm->name, pvh_entry,
                 b->kernel_end);
    return vmm__vcpu_boot_regs(vm, false, pvh_entry, VMM_BOOT_INFO);
}

static int boot_bzimage(struct boot *b)
{
    vmm_vm_t *vm = b->vm;
    const uint8_t *k = b->kernel;
    struct vmm_e820 e820[VMM_E820_MAX];
    uint64_t entry;
    int err;

    uint16_t version = rd16(k + HDR_VERSION);
    if (version < 0x20c || !(rd16(k + HDR_XLOADFLAGS) & XLF_KERNEL_64)) {
        *b->err_msg = vdi_xasprintf("--kernel %s: bzImage without the 64-bit entry (boot "
                                    "protocol %u.%02u; 2.12 with XLF_KERNEL_64 needed)",
                                    b->cfg->kernel, version >> 8, version & 0xff);
        return VDI_EBADKERNEL;
    }
    unsigned setup_sects = k[HDR_SETUP_SECTS] ? k[HDR_SETUP_SECTS] : 4;
    size_t pm_off = (setup_sects + 1) * 512;
    if (pm_off >= b->kernel_len) {
        *b->err_msg = vdi_xasprintf("--kernel %s: truncated bzImage", b->cfg->kernel);
        return VDI_EBADKERNEL;
    }
    uint64_t pref = rd64(k + HDR_PREF_ADDRESS);
    uint32_t init_size = rd32(k + HDR_INIT_SIZE);
    if (pref < VMM_BIOS_END || !k[HDR_RELOCATABLE])
        pref = VDI_MAX(pref, VMM_BIOS_END);
    if (b->cfg->guest_decompress) {
        /* The classic path: the kernel decompresses itself, in place, from pref_address. */
        uint64_t need = VDI_MAX((uint64_t)init_size, b->kernel_len - pm_off);
        uint8_t *dst = vmm__gpa_ptr(vm, pref, need);
        if (!dst) {
            *b->err_msg =
                vdi_xasprintf("--kernel %s: needs %" PRIu64 " MiB from 0x%" PRIx64 "; raise --mem",
                              b->cfg->kernel, need >> 20, pref);
            return VDI_ECONFIG;
        }
        memcpy(dst, k + pm_off, b->kernel_len - pm_off);
        entry = pref + 0x200;
        b->kernel_end = pref + need;
    } else {
        uint8_t *elf;
        size_t elf_len;
        err = vmm__kernel_cache_get(k, b->kernel_len, &elf, &elf_len);
        if (err < 0) {
            *b->err_msg = vdi_xasprintf("--kernel %s: cannot decompress the bzImage payload: %s "
                                        "(try --guest-decompress)",
                                        b->cfg->kernel, vdi_strerror(err));
            return err == -ENOMEM ? err : VDI_EBADKERNEL;
        }
        err = elf_load(vm, elf, elf_len, &entry, &b->kernel_end, b->err_msg, b->cfg->kernel);
        free(elf);
        if (err < 0)
            return err;
        /* The kernel's brk and early page tables reach up to pref_address + init_size. */
        b->kernel_end = VDI_MAX(b->kernel_end, pref + init_size);
        if (!vmm__gpa_ptr(vm, pref, init_size)) {
            *b->err_msg = vdi_xasprintf("--kernel %s: needs %u MiB from 0x%" PRIx64 "; raise --mem",
                                        b->cfg->kernel, init_size >> 20, pref);
            return VDI_ECONFIG;
        }
    }
    size_t cmdline_max = rd32(k + HDR_CMDLINE_SIZE) + 1;
    b->initrd_limit = (uint64_t)rd32(k + HDR_INITRD_MAX) + 1;
    if ((err = put_cmdline(b, cmdline_max)) < 0 || (err = place_initrd(b)) < 0)
        return err;
    unsigned n = vmm__e820_build(vm->ram_size, e820);
    err = vmm__zero_page_build(vmm__gpa_ptr(vm, VMM_BOOT_INFO, 4096), k, b->kernel_len,
                               VMM_BOOT_CMDLINE, b->initrd_gpa, b->initrd_len, e820, n, b->rsdp);
    if (err < 0) {
        *b->err_msg =
            vdi_xasprintf("--kernel %s: unsupported bzImage setup header", b->cfg->kernel);
        return err;
    }
    VDI_LOG_INFO("vm=%s boot=bzimage%s entry=0x%" PRIx64, vm->name,
                 b->cfg->guest_decompress ? "(guest-decompress)" : "", entry);
    return vmm__vcpu_boot_regs(vm, true, entry, VMM_BOOT_INFO);
}

int vmm__boot_load(vmm_vm_t *vm, const struct vmm_config *cfg, char **err_msg)
{
    struct boot b = {.vm = vm, .cfg = cfg, .err_msg = err_msg};
    char *dummy = NULL;
    int err;

    if (!err_msg)
        b.err_msg = &dummy;
    if (vm->low_size < 16ULL << 20) {
        *b.err_msg = vdi_xasprintf("--mem: at least 16 MiB needed");
        return VDI_ECONFIG;
    }
    /* Firmware tables first: the boot structures point at them. */
    int n = vmm__acpi_build(vmm__gpa_ptr(vm, VMM_ACPI_START, 0x10000), 0x10000, VMM_ACPI_START,
                            vm->nvcpus);
    if (n < 0)
        return n;
    b.rsdp = VMM_ACPI_START;
    n = vmm__mptable_build(vmm__gpa_ptr(vm, VMM_MPTABLE_START, 0x10000), 0x10000, VMM_MPTABLE_START,
                           vm->nvcpus);
    if (n < 0)
        return n;

    err = read_file("--kernel", cfg->kernel, MAX_KERNEL_FILE, &b.kernel, &b.kernel_len, b.err_msg);
    if (err < 0)
        goto out;
    if (cfg->initrd) {
        err = read_file("--initrd", cfg->initrd, vm->ram_size, &b.initrd, &b.initrd_len, b.err_msg);
        if (err < 0) {
            if (b.initrd == NULL && *b.err_msg && strstr(*b.err_msg, "too large")) {
                free(*b.err_msg);
                *b.err_msg = vdi_xasprintf("--initrd %s: larger than guest memory (%" PRIu64
                                           " MiB); raise --mem",
                                           cfg->initrd, vm->ram_size >> 20);
            }
            goto out;
        }
    }
    if (b.kernel_len >= 4 && !memcmp(b.kernel, ELFMAG, SELFMAG))
        err = boot_pvh(&b);
    else if (is_bzimage(b.kernel, b.kernel_len))
        err = boot_bzimage(&b);
    else {
        *b.err_msg =
            vdi_xasprintf("--kernel %s: neither a PVH ELF nor a Linux bzImage", cfg->kernel);
        err = VDI_EBADKERNEL;
    }
out:
    free(b.kernel);
    free(b.initrd);
    free(dummy);
    return err;
}
