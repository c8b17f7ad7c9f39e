// fuzz-srcs: vmm/boot.c vmm/decompress.c vmm/tables.c common/*.c
// fuzz-libs: -lz -llzma -lzstd -llz4 -lcrypto
/* libFuzzer target for vdi-vmm's kernel-file parsers (a kernel may come from an image catalogue):
 * the input is a whole kernel file, tried as a PVH ELF (note walk), as a bzImage setup header
 * (zero page) and as a bzImage payload (host-side decompression in all four formats). Nothing may
 * read outside the input, and a payload accepted must decompress to an ELF. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"

/* boot.c's loader needs these; the parsers fuzzed here never reach them. */
void *vmm__gpa_ptr(vmm_vm_t *vm, uint64_t gpa, uint64_t len)
{
    (void)vm;
    (void)gpa;
    (void)len;
    return NULL;
}
int vmm__vcpu_boot_regs(vmm_vm_t *vm, bool long_mode, uint64_t entry, uint64_t info);
int vmm__vcpu_boot_regs(vmm_vm_t *vm, bool long_mode, uint64_t entry, uint64_t info)
{
    (void)vm;
    (void)long_mode;
    (void)entry;
    (void)info;
    return -ENOSYS;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy of exactly @size bytes, so ASan sees any read past the end. */
    uint8_t *k = malloc(size ? size : 1), *out = NULL;
    uint8_t bp[4096];
    struct vmm_e820 e[VMM_E820_MAX];
    uint64_t entry;
    size_t out_len;
    memcpy(k, data, size);
    vmm__elf_pvh_entry(k, size, &entry);
    unsigned n = vmm__e820_build(256ULL << 20, e);
    vmm__zero_page_build(bp, k, size, 0x20000, 0, 0, e, n, 0xe0000);
    if (vmm__bzimage_decompress(k, size, &out, &out_len) == 0) {
        if (out_len < 4 || memcmp(out, "\177ELF", 4))
            abort();
        free(out);
    }
    free(k);
    return 0;
}
