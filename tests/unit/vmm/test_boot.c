/* tests/unit/vmm/test_boot.c: the boot structures vdi-vmm hands a guest, without KVM: the e820
 * map, Linux's zero page, PVH's hvm_start_info, the MP table and ACPI checksums, the PVH note
 * parser against hostile ELF files, host-side decompression of bzImage payloads in all four
 * formats (built here with the same libraries), and the decompressed-kernel cache: two kernels
 * with the same CRC-64, CRC-32 and length get their own entries, a damaged or foreign entry is
 * ignored and rewritten, and a cache directory others could write is not used. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <lz4.h>
#include <lzma.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "vmm/internal.h"

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p)
{
    return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}
static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void test_e820_small(void **state)
{
    struct vmm_e820 e[VMM_E820_MAX];
    (void)state;
    unsigned n = vmm__e820_build(64ULL << 20, e);
    assert_int_equal(n, 4);
    assert_true(e[0].addr == 0 && e[0].size == 0x9fc00 && e[0].type == VMM_E820_RAM);
    assert_true(e[1].addr == 0x9fc00 && e[1].type == VMM_E820_RESERVED);
    assert_true(e[2].addr == 0xe0000 && e[2].addr + e[2].size == 0x100000);
    assert_true(e[3].addr == 0x100000 && e[3].addr + e[3].size == 64ULL << 20);
}

static void test_e820_high(void **state)
{
    struct vmm_e820 e[VMM_E820_MAX];
    (void)state;
    /* 5 GiB: 3 GiB below the PCI hole, 2 GiB from 4 GiB. */
    unsigned n = vmm__e820_build(5ULL << 30, e);
    assert_int_equal(n, 5);
    assert_true(e[3].addr + e[3].size == VMM_MMIO_HOLE_START);
    assert_true(e[4].addr == VMM_HIGH_RAM_START && e[4].size == 2ULL << 30);
    uint64_t ram = 0;
    for (unsigned i = 0; i < n; i++) {
        if (e[i].type == VMM_E820_RAM)
            ram += e[i].size;
        /* sorted, no overlaps */
        if (i)
            assert_true(e[i].addr >= e[i - 1].addr + e[i - 1].size);
    }
    assert_true(ram == (5ULL << 30) - 0x100000 + 0x9fc00);
}

/* A bzImage-shaped buffer: setup header with boot protocol 2.15, 64-bit entry, payload. */
static uint8_t *fake_bzimage(size_t len, const uint8_t *payload, size_t plen)
{
    uint8_t *k = calloc(1, len);
    k[0x1f1] = 1; /* setup_sects: protected-mode code at 1024 */
    k[0x1fe] = 0x55, k[0x1ff] = 0xaa;
    k[0x200] = 0xeb, k[0x201] = 0x6a; /* header ends at 0x26c */
    memcpy(k + 0x202, "HdrS", 4);
    k[0x206] = 0x0f, k[0x207] = 0x02; /* 2.15 */
    k[0x211] = 0x01;
    wr32(k + 0x22c, 0x7fffffff); /* initrd_addr_max */
    k[0x234] = 1;                /* relocatable */
    k[0x236] = 1;                /* XLF_KERNEL_64 */
    wr32(k + 0x238, 2047);       /* cmdline_size */
    wr32(k + 0x248, 0x100);      /* payload_offset (from 1024) */
    wr32(k + 0x24c, (uint32_t)plen);
    k[0x25a] = 0x00, k[0x25b] = 0x01; /* pref_address 0x1000000 */
    wr32(k + 0x260, 0x2000000);       /* init_size */
    if (payload)
        memcpy(k + 1024 + 0x100, payload, plen);
    return k;
}

static void test_zero_page(void **state)
{
    uint8_t bp[4096];
    struct vmm_e820 e[VMM_E820_MAX];
    (void)state;
    uint8_t *k = fake_bzimage(8192, NULL, 0);
    unsigned n = vmm__e820_build(256ULL << 20, e);
    memset(bp, 0xaa, sizeof(bp));
    assert_int_equal(vmm__zero_page_build(bp, k, 8192, 0x20000, 0x7000000, 0x123456, e, n, 0xe0000),
                     0);
    assert_memory_equal(bp + 0x202, "HdrS", 4);    /* header copied */
    assert_int_equal(bp[0x210], 0xff);             /* type_of_loader */
    assert_true(bp[0x211] & 0x01);                 /* LOADED_HIGH */
    assert_int_equal(rd32(bp + 0x228), 0x20000);   /* cmd_line_ptr */
    assert_int_equal(rd32(bp + 0x218), 0x7000000); /* ramdisk_image */
    assert_int_equal(rd32(bp + 0x21c), 0x123456);  /* ramdisk_size */
    assert_int_equal(rd64(bp + VMM_BP_ACPI_RSDP), 0xe0000);
    assert_int_equal(bp[VMM_BP_E820_ENTRIES], n);
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *x = bp + VMM_BP_E820_TABLE + i * 20;
        assert_true(rd64(x) == e[i].addr && rd64(x + 8) == e[i].size && rd32(x + 16) == e[i].type);
    }
    assert_int_equal(bp[0], 0); /* the rest was cleared */
    assert_int_equal(bp[0x1000 - 1], 0);

    /* Not a bzImage, or too old a protocol: refused. */
    k[0x202] = 'X';
    assert_int_equal(vmm__zero_page_build(bp, k, 8192, 0, 0, 0, e, n, 0), VDI_EBADKERNEL);
    k[0x202] = 'H';
    k[0x206] = 0x01;
    assert_int_equal(vmm__zero_page_build(bp, k, 8192, 0, 0, 0, e, n, 0), VDI_EBADKERNEL);
    free(k);
}

static void test_pvh_start_info(void **state)
{
    struct vmm_e820 e[VMM_E820_MAX];
    struct vmm_hvm_start_info si;
    struct vmm_hvm_memmap_entry m;
    struct vmm_hvm_modlist_entry mod;
    (void)state;
    uint8_t *ram = calloc(1, 1 << 20);
    unsigned n = vmm__e820_build(128ULL << 20, e);
    assert_int_equal(
        vmm__pvh_start_info_build(ram, 1 << 20, 0x20000, 0x6000000, 4096, e, n, 0xe0000), 0);
    memcpy(&si, ram + VMM_BOOT_INFO, sizeof(si));
    assert_int_equal(si.magic, VMM_HVM_START_MAGIC);
    assert_int_equal(si.version, 1);
    assert_int_equal(si.cmdline_paddr, 0x20000);
    assert_int_equal(si.rsdp_paddr, 0xe0000);
    assert_int_equal(si.memmap_entries, n);
    assert_int_equal(si.nr_modules, 1);
    for (unsigned i = 0; i < n; i++) {
        memcpy(&m, ram + si.memmap_paddr + i * sizeof(m), sizeof(m));
        assert_true(m.addr == e[i].addr && m.size == e[i].size && m.type == e[i].type);
    }
    memcpy(&mod, ram + si.modlist_paddr, sizeof(mod));
    assert_true(mod.paddr == 0x6000000 && mod.size == 4096);
    /* Structures must not overlap each other or the start info. */
    assert_true(si.memmap_paddr >= VMM_BOOT_INFO + sizeof(si));
    assert_true(si.modlist_paddr >= si.memmap_paddr + n * sizeof(m));

    /* No initrd: no modules. */
    memset(ram, 0, 1 << 20);
    assert_int_equal(vmm__pvh_start_info_build(ram, 1 << 20, 0x20000, 0, 0, e, n, 0), 0);
    memcpy(&si, ram + VMM_BOOT_INFO, sizeof(si));
    assert_int_equal(si.nr_modules, 0);
    assert_int_equal(si.modlist_paddr, 0);
    free(ram);
}

static void test_mptable(void **state)
{
    uint8_t buf[4096];
    (void)state;
    for (unsigned cpus = 1; cpus <= VMM_MAX_VCPUS; cpus++) {
        memset(buf, 0xcc, sizeof(buf));
        int n = vmm__mptable_build(buf, sizeof(buf), 0xf0000, cpus);
        assert_true(n > 0);
        assert_memory_equal(buf, "_MP_", 4);
        assert_int_equal(vmm__checksum(buf, 16), 0);
        assert_int_equal(rd32(buf + 4), 0xf0010);
        const uint8_t *ct = buf + 16;
        assert_memory_equal(ct, "PCMP", 4);
        unsigned len = ct[4] | ct[5] << 8, count = ct[34] | ct[35] << 8;
        assert_int_equal(vmm__checksum(ct, len), 0);
        assert_int_equal(16 + len, (unsigned)n);
        /* Walk the entries: cpus processors (BSP first), one IOAPIC, IRQ0 on pin 2. */
        unsigned procs = 0, ioapics = 0, off = 44;
        bool irq0_pin2 = false;
        for (unsigned i = 0; i < count; i++) {
            const uint8_t *e = ct + off;
            if (e[0] == 0) {
                assert_int_equal(e[1], procs);
                assert_int_equal(!!(e[3] & 2), procs == 0);
                procs++;
                off += 20;
            } else {
                if (e[0] == 2) {
                    ioapics++;
                    assert_int_equal(rd32(e + 4), VMM_IOAPIC_BASE);
                }
                if (e[0] == 3 && e[5] == 0 && e[7] == 2)
                    irq0_pin2 = true;
                off += 8;
            }
        }
        assert_int_equal(off, len);
        assert_int_equal(procs, cpus);
        assert_int_equal(ioapics, 1);
        assert_true(irq0_pin2);
    }
    assert_int_equal(vmm__mptable_build(buf, 64, 0xf0000, 4), -ENOSPC);
}

static const uint8_t *acpi_table(const uint8_t *buf, uint64_t base, uint64_t gpa)
{
    return buf + (gpa - base);
}

static void test_acpi(void **state)
{
    uint8_t buf[8192];
    (void)state;
    const uint64_t base = 0xe0000;
    int n = vmm__acpi_build(buf, sizeof(buf), base, 2);
    assert_true(n > 0);
    assert_memory_equal(buf, "RSD PTR ", 8);
    assert_int_equal(vmm__checksum(buf, 20), 0);
    assert_int_equal(vmm__checksum(buf, 36), 0);
    const uint8_t *xsdt = acpi_table(buf, base, rd64(buf + 24));
    assert_memory_equal(xsdt, "XSDT", 4);
    assert_int_equal(vmm__checksum(xsdt, rd32(xsdt + 4)), 0);
    const uint8_t *rsdt = acpi_table(buf, base, rd32(buf + 16));
    assert_int_equal(vmm__checksum(rsdt, rd32(rsdt + 4)), 0);
    bool fadt = false, madt = false;
    for (unsigned i = 0; i < (rd32(xsdt + 4) - 36) / 8; i++) {
        const uint8_t *t = acpi_table(buf, base, rd64(xsdt + 36 + i * 8));
        assert_int_equal(vmm__checksum(t, rd32(t + 4)), 0);
        if (!memcmp(t, "FACP", 4)) {
            fadt = true;
            assert_int_equal(rd32(t + 64), VMM_ACPI_PM_BASE + 4); /* PM1a_CNT_BLK */
            assert_int_equal(t[46], VMM_ACPI_SCI_IRQ);
            const uint8_t *dsdt = acpi_table(buf, base, rd64(t + 140));
            assert_memory_equal(dsdt, "DSDT", 4);
            assert_int_equal(vmm__checksum(dsdt, rd32(dsdt + 4)), 0);
            /* \_S5 names our sleep type. */
            const uint8_t *s5 = memmem(dsdt, rd32(dsdt + 4), "_S5_", 4);
            assert_non_null(s5);
            assert_int_equal(s5[4], 0x12);
            assert_int_equal(s5[8], VMM_ACPI_S5_TYP);
            const uint8_t *facs = acpi_table(buf, base, rd64(t + 132));
            assert_memory_equal(facs, "FACS", 4);
        }
        if (!memcmp(t, "APIC", 4)) {
            madt = true;
            unsigned lapics = 0;
            for (unsigned off = 44; off < rd32(t + 4); off += t[off + 1])
                lapics += t[off] == 0;
            assert_int_equal(lapics, 2);
        }
    }
    assert_true(fadt && madt);
}

/* A minimal ELF64 with one PT_LOAD and one PT_NOTE holding @note (@nlen bytes). */
static uint8_t *fake_elf(const uint8_t *note, size_t nlen, size_t *len)
{
    size_t off_note = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr);
    *len = off_note + nlen + 16;
    uint8_t *f = calloc(1, *len);
    Elf64_Ehdr *eh = (Elf64_Ehdr *)f;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_machine = EM_X86_64;
    eh->e_entry = 0x100000;
    eh->e_phoff = sizeof(Elf64_Ehdr);
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = 2;
    Elf64_Phdr *ph = (Elf64_Phdr *)(f + sizeof(Elf64_Ehdr));
    ph[0].p_type = PT_LOAD;
    ph[0].p_offset = off_note + nlen;
    ph[0].p_paddr = ph[0].p_vaddr = 0x100000;
    ph[0].p_filesz = ph[0].p_memsz = 16;
    ph[1].p_type = PT_NOTE;
    ph[1].p_offset = off_note;
    ph[1].p_filesz = nlen;
    memcpy(f + off_note, note, nlen);
    return f;
}

static void test_pvh_note(void **state)
{
    uint64_t entry = 0;
    size_t len;
    (void)state;
    uint8_t good[] = {4, 0, 0,   0,   4,   0, 0,    0,    18,   0,
                      0, 0, 'X', 'e', 'n', 0, 0x50, 0x08, 0x00, 0x01};
    uint8_t *f = fake_elf(good, sizeof(good), &len);
    assert_int_equal(vmm__elf_pvh_entry(f, len, &entry), 0);
    assert_int_equal(entry, 0x1000850);
    free(f);

    /* Another vendor's note of type 18: not ours. */
    uint8_t other[] = {4, 0, 0, 0, 4, 0, 0, 0, 18, 0, 0, 0, 'G', 'N', 'U', 0, 1, 2, 3, 4};
    f = fake_elf(other, sizeof(other), &len);
    assert_int_equal(vmm__elf_pvh_entry(f, len, &entry), -ENOENT);
    free(f);

    /* A name size that runs off the end of the note segment. */
    uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 4,   0, 0, 0, 18, 0,
                      0,    0,    'X',  'e',  'n', 0, 0, 0, 0,  0};
    f = fake_elf(huge, sizeof(huge), &len);
    assert_int_equal(vmm__elf_pvh_entry(f, len, &entry), VDI_EBADKERNEL);
    free(f);

    /* Program headers pointing past the file; every truncation of a good file. */
    f = fake_elf(good, sizeof(good), &len);
    ((Elf64_Ehdr *)f)->e_phoff = 1u << 30;
    assert_int_equal(vmm__elf_pvh_entry(f, len, &entry), VDI_EBADKERNEL);
    free(f);
    f = fake_elf(good, sizeof(good), &len);
    for (size_t cut = 0; cut < len - 16; cut++)
        assert_true(vmm__elf_pvh_entry(f, cut, &entry) < 0);
    free(f);
}

/* ---- Decompression ------------------------------------------------------------------------ */
#define VMLINUX_LEN (300 * 1024)

static uint8_t *fake_vmlinux(void)
{
    uint8_t *v = malloc(VMLINUX_LEN);
    memcpy(v, "\177ELF", 4);
    for (size_t i = 4; i < VMLINUX_LEN; i++)
        v[i] = (uint8_t)((i * 7) ^ (i >> 9));
    return v;
}

static void check_roundtrip(uint8_t *payload, size_t plen, const uint8_t *vmlinux)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    uint8_t *k = fake_bzimage(1024 + 0x100 + plen, payload, plen);
    assert_int_equal(vmm__bzimage_decompress(k, 1024 + 0x100 + plen, &out, &out_len), 0);
    assert_int_equal(out_len, VMLINUX_LEN);
    assert_memory_equal(out, vmlinux, VMLINUX_LEN);
    free(out);
    /* A flipped byte in the middle of the payload must not pass as a kernel. */
    k[1024 + 0x100 + plen / 2] ^= 0x55;
    int err = vmm__bzimage_decompress(k, 1024 + 0x100 + plen, &out, &out_len);
    if (err == 0) {
        assert_true(memcmp(out, vmlinux, VMLINUX_LEN) != 0 || out_len != VMLINUX_LEN);
        free(out);
    }
    free(k);
}

static void append_size(uint8_t *p, size_t *plen)
{
    wr32(p + *plen, VMLINUX_LEN);
    *plen += 4;
}

static void test_decompress_gzip(void **state)
{
    (void)state;
    uint8_t *v = fake_vmlinux(), *p = malloc(VMLINUX_LEN * 2);
    z_stream s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(deflateInit2(&s, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    s.next_in = v;
    s.avail_in = VMLINUX_LEN;
    s.next_out = p;
    s.avail_out = VMLINUX_LEN * 2;
    assert_int_equal(deflate(&s, Z_FINISH), Z_STREAM_END);
    size_t plen = s.total_out;
    deflateEnd(&s);
    check_roundtrip(p, plen, v);
    free(p);
    free(v);
}

static void test_decompress_xz(void **state)
{
    (void)state;
    uint8_t *v = fake_vmlinux(), *p = malloc(VMLINUX_LEN * 2);
    size_t plen = 0;
    assert_int_equal(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, v, VMLINUX_LEN, p, &plen,
                                             VMLINUX_LEN * 2),
                     LZMA_OK);
    append_size(p, &plen);
    check_roundtrip(p, plen, v);
    free(p);
    free(v);
}

static void test_decompress_zstd(void **state)
{
    (void)state;
    uint8_t *v = fake_vmlinux(), *p = malloc(VMLINUX_LEN * 2);
    size_t plen = ZSTD_compress(p, VMLINUX_LEN * 2, v, VMLINUX_LEN, 19);
    assert_false(ZSTD_isError(plen));
    append_size(p, &plen);
    check_roundtrip(p, plen, v);
    free(p);
    free(v);
}

static void test_decompress_lz4(void **state)
{
    (void)state;
    uint8_t *v = fake_vmlinux(), *p = malloc(VMLINUX_LEN * 2);
    /* The legacy frame: magic, then (size, block) pairs of at most 8 MiB input each; two blocks
     * here to exercise the loop. */
    size_t plen = 4, half = VMLINUX_LEN / 2;
    wr32(p, 0x184c2102);
    for (int b = 0; b < 2; b++) {
        int n = LZ4_compress_default((const char *)v + b * half, (char *)p + plen + 4, (int)half,
                                     VMLINUX_LEN);
        assert_true(n > 0);
        wr32(p + plen, (uint32_t)n);
        plen += 4 + (size_t)n;
    }
    append_size(p, &plen);
    check_roundtrip(p, plen, v);
    free(p);
    free(v);
}

static void test_decompress_refuses(void **state)
{
    uint8_t *out;
    size_t out_len;
    (void)state;
    /* bzip2 is not one of ours; a size trailer of 4 GiB is absurd; no payload at all. */
    uint8_t bz2[64] = "BZh91AY&SY";
    wr32(bz2 + 60, VMLINUX_LEN);
    uint8_t *k = fake_bzimage(4096, bz2, sizeof(bz2));
    assert_int_equal(vmm__bzimage_decompress(k, 4096, &out, &out_len), VDI_EBADKERNEL);
    wr32(k + 1024 + 0x100 + 60, 0xffffffff);
    assert_int_equal(vmm__bzimage_decompress(k, 4096, &out, &out_len), VDI_EBADKERNEL);
    wr32(k + 0x24c, 100000); /* payload_length past the end */
    assert_int_equal(vmm__bzimage_decompress(k, 4096, &out, &out_len), VDI_EBADKERNEL);
    free(k);
}

/* ---- the decompressed-kernel cache -------------------------------------------------------- */

typedef unsigned __int128 u128;

/* The 96 bits the old cache key held besides the length: CRC-64 (xz's) and CRC-32 (zlib's). */
static u128 crc96(const uint8_t *p, size_t n)
{
    return (u128)lzma_crc64(p, n, 0) << 32 | (uint32_t)crc32(0, p, (uInt)n);
}

/* Choose bits among the last 16 bytes of @b (@n bytes) so that crc96(b) == crc96(a) (same length).
 * Both CRCs are affine in the message for a fixed length, so flipping bit i changes crc96 by a
 * fixed s_i, and this is a linear system over GF(2): 128 unknowns, 96 equations. */
static void forge_crc96(const uint8_t *a, uint8_t *b, size_t n)
{
    struct {
        u128 v, m;
        bool set;
    } basis[96] = {{0}};
    u128 base = crc96(b, n);
    for (int i = 0; i < 128; i++) {
        uint8_t *byte = b + n - 16 + i / 8, bit = (uint8_t)(1u << (i % 8));
        *byte ^= bit;
        u128 v = crc96(b, n) ^ base, m = (u128)1 << i;
        *byte ^= bit;
        for (int j = 95; j >= 0 && v; j--) {
            if (!((v >> j) & 1))
                continue;
            if (!basis[j].set) {
                basis[j].v = v, basis[j].m = m, basis[j].set = true;
                break;
            }
            v ^= basis[j].v, m ^= basis[j].m;
        }
    }
    u128 t = crc96(a, n) ^ base, m = 0;
    for (int j = 95; j >= 0; j--)
        if ((t >> j) & 1) {
            assert_true(basis[j].set);
            t ^= basis[j].v, m ^= basis[j].m;
        }
    assert_true(t == 0);
    for (int i = 0; i < 128; i++)
        if ((m >> i) & 1)
            b[n - 16 + i / 8] ^= (uint8_t)(1u << (i % 8));
}

static size_t gzip_into(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(deflateInit2(&s, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    s.next_in = (Bytef *)in;
    s.avail_in = (uInt)n;
    s.next_out = out;
    s.avail_out = (uInt)cap;
    assert_int_equal(deflate(&s, Z_FINISH), Z_STREAM_END);
    size_t got = s.total_out;
    deflateEnd(&s);
    return got;
}

struct cache_fixture {
    char root[64], dir[96];
    uint8_t *va, *vb; /* two different vmlinux files */
    uint8_t *ka, *kb; /* their bzImages: same length, same CRC-64 and CRC-32 */
    size_t klen;
};

static int cache_setup(void **state)
{
    struct cache_fixture *f = calloc(1, sizeof(*f));
    strcpy(f->root, "/tmp/vdi-test-kcache.XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/cache", f->root);
    setenv("VDI_VMM_CACHE_DIR", f->dir, 1);
    f->va = fake_vmlinux();
    f->vb = fake_vmlinux();
    memcpy(f->vb + 4096, "another kernel", 14);
    uint8_t *pa = malloc(VMLINUX_LEN * 2), *pb = malloc(VMLINUX_LEN * 2);
    size_t la = gzip_into(f->va, VMLINUX_LEN, pa, VMLINUX_LEN * 2);
    size_t lb = gzip_into(f->vb, VMLINUX_LEN, pb, VMLINUX_LEN * 2);
    /* Same file length for both; 16 free bytes after the longer payload for the forgery. */
    f->klen = 1024 + 0x100 + (la > lb ? la : lb) + 16;
    f->ka = fake_bzimage(f->klen, pa, la);
    f->kb = fake_bzimage(f->klen, pb, lb);
    free(pa);
    free(pb);
    forge_crc96(f->ka, f->kb, f->klen);
    *state = f;
    return 0;
}

static void rm_dir(const char *d)
{
    DIR *dp = opendir(d);
    struct dirent *de;
    char p[512];
    while (dp && (de = readdir(dp)))
        if (de->d_name[0] != '.') {
            snprintf(p, sizeof(p), "%s/%s", d, de->d_name);
            unlink(p);
        }
    if (dp)
        closedir(dp);
    rmdir(d);
}

static int cache_teardown(void **state)
{
    struct cache_fixture *f = *state;
    rm_dir(f->dir);
    rmdir(f->root);
    unsetenv("VDI_VMM_CACHE_DIR");
    free(f->va);
    free(f->vb);
    free(f->ka);
    free(f->kb);
    free(f);
    return 0;
}

/* The cache entries' names into @names (up to 4); returns how many. */
static int entries(const struct cache_fixture *f, char names[4][256])
{
    DIR *dp = opendir(f->dir);
    struct dirent *de;
    int n = 0;
    while (dp && (de = readdir(dp)))
        if (de->d_name[0] != '.' && n < 4)
            snprintf(names[n++], 256, "%s", de->d_name);
    if (dp)
        closedir(dp);
    return n;
}

/* Load @k through the cache and check that it gives @want. */
static void load_is(const uint8_t *k, size_t klen, const uint8_t *want)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    assert_int_equal(vmm__kernel_cache_get(k, klen, &out, &out_len), 0);
    assert_int_equal(out_len, VMLINUX_LEN);
    assert_memory_equal(out, want, VMLINUX_LEN);
    free(out);
}

static void test_cache_crc_collision(void **state)
{
    struct cache_fixture *f = *state;
    char names[4][256];
    /* The two kernels differ but agree on everything the old key held. */
    assert_true(memcmp(f->ka, f->kb, f->klen) != 0);
    assert_true(crc96(f->ka, f->klen) == crc96(f->kb, f->klen));
    load_is(f->ka, f->klen, f->va);
    assert_int_equal(entries(f, names), 1);
    load_is(f->kb, f->klen, f->vb); /* must not be served A's vmlinux */
    assert_int_equal(entries(f, names), 2);
    /* Both come back right from their own entries. */
    load_is(f->ka, f->klen, f->va);
    load_is(f->kb, f->klen, f->vb);
    assert_int_equal(entries(f, names), 2);
    struct stat st;
    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

/* Overwrite (@data, @n at @off) or truncate (@data NULL: to @off) the cache entry @name. */
static void damage(const struct cache_fixture *f, const char *name, off_t off, const void *data,
                   size_t n)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", f->dir, name);
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    if (data)
        assert_int_equal(pwrite(fd, data, n, off), (ssize_t)n);
    else
        assert_int_equal(ftruncate(fd, off), 0);
    close(fd);
}

static uint8_t *slurp(const struct cache_fixture *f, const char *name, size_t *n)
{
    char p[256];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", f->dir, name);
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *b = malloc((size_t)st.st_size);
    assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
    close(fd);
    *n = (size_t)st.st_size;
    return b;
}

static void test_cache_damaged_entries(void **state)
{
    struct cache_fixture *f = *state;
    char names[4][256];
    size_t good_len, n;
    load_is(f->ka, f->klen, f->va);
    assert_int_equal(entries(f, names), 1);
    uint8_t *good = slurp(f, names[0], &good_len);
    assert_int_equal(good_len, 96 + VMLINUX_LEN);

    /* A flipped bit in the vmlinux (the header still matches): ignored and rewritten. */
    damage(f, names[0], 96 + 5000, "\xff\x00", 2);
    load_is(f->ka, f->klen, f->va);
    uint8_t *now = slurp(f, names[0], &n);
    assert_int_equal(n, good_len);
    assert_memory_equal(now, good, good_len);
    free(now);

    /* Truncated; a bad magic: the same. */
    damage(f, names[0], 96 + 1000, NULL, 0);
    load_is(f->ka, f->klen, f->va);
    damage(f, names[0], 0, "VDIKCACX", 8);
    load_is(f->ka, f->klen, f->va);
    now = slurp(f, names[0], &n);
    assert_memory_equal(now, good, good_len);
    free(now);

    /* Another kernel's entry (B's, a valid one) under A's name: its key says so. */
    char a_name[256];
    snprintf(a_name, sizeof(a_name), "%s", names[0]);
    load_is(f->kb, f->klen, f->vb);
    assert_int_equal(entries(f, names), 2);
    const char *b_name = strcmp(names[0], a_name) ? names[0] : names[1];
    uint8_t *other = slurp(f, b_name, &n);
    assert_int_equal(n, good_len);
    damage(f, a_name, 0, other, n);
    load_is(f->ka, f->klen, f->va);
    now = slurp(f, a_name, &n);
    assert_memory_equal(now, good, good_len);
    free(now);
    free(other);
    free(good);
}

static void test_cache_dir_must_be_ours(void **state)
{
    struct cache_fixture *f = *state;
    char names[4][256];
    /* Group- or world-writable: not used (the kernel still loads, nothing is cached). */
    assert_int_equal(mkdir(f->dir, 0700), 0);
    assert_int_equal(chmod(f->dir, 0777), 0);
    load_is(f->ka, f->klen, f->va);
    assert_int_equal(entries(f, names), 0);
    assert_int_equal(chmod(f->dir, 0720), 0);
    load_is(f->ka, f->klen, f->va);
    assert_int_equal(entries(f, names), 0);
    /* Through a symlink: not used either. */
    assert_int_equal(chmod(f->dir, 0700), 0);
    char link[128];
    snprintf(link, sizeof(link), "%s/link", f->root);
    assert_int_equal(symlink(f->dir, link), 0);
    setenv("VDI_VMM_CACHE_DIR", link, 1);
    load_is(f->ka, f->klen, f->va);
    assert_int_equal(entries(f, names), 0);
    unlink(link);
    setenv("VDI_VMM_CACHE_DIR", f->dir, 1);
    /* Owned by someone else (needs root to arrange). */
    if (geteuid() == 0) {
        assert_int_equal(chown(f->dir, 65534, 65534), 0);
        load_is(f->ka, f->klen, f->va);
        assert_int_equal(entries(f, names), 0);
        assert_int_equal(chown(f->dir, 0, 0), 0);
    }
    /* Ours and 0700: used. */
    load_is(f->ka, f->klen, f->va);
    assert_int_equal(entries(f, names), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e820_small),
        cmocka_unit_test(test_e820_high),
        cmocka_unit_test(test_zero_page),
        cmocka_unit_test(test_pvh_start_info),
        cmocka_unit_test(test_mptable),
        cmocka_unit_test(test_acpi),
        cmocka_unit_test(test_pvh_note),
        cmocka_unit_test(test_decompress_gzip),
        cmocka_unit_test(test_decompress_xz),
        cmocka_unit_test(test_decompress_zstd),
        cmocka_unit_test(test_decompress_lz4),
        cmocka_unit_test(test_decompress_refuses),
        cmocka_unit_test_setup_teardown(test_cache_crc_collision, cache_setup, cache_teardown),
        cmocka_unit_test_setup_teardown(test_cache_damaged_entries, cache_setup, cache_teardown),
        cmocka_unit_test_setup_teardown(test_cache_dir_must_be_ours, cache_setup, cache_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
