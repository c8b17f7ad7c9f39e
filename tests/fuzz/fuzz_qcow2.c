/* tests/fuzz/fuzz_qcow2.c: libFuzzer target for the qcow2 header, extension and table parsers:
 * the input is an image file; it is opened read-only (header, extensions, L1 and refcount
 * tables), checked (every L2 table and refcount block), read where its L1 table maps clusters,
 * then opened writable (dirty-flag repair) and written once. Nothing may crash or leak. */
// fuzz-srcs: golden-images/*.c common/*.c
// fuzz-libs: -lz -lzstd -ljansson -lcrypto
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise(const char *path, unsigned flags)
{
    img_disk_t *d;
    if (img_open(path, flags | IMG_OPEN_NOLOCK, &d) < 0)
        return;
    static uint8_t buf[1 << 16];
    uint64_t vsize = img_size(d);
    /* Read a few spots: the start, the end, and every mapped cluster's first bytes (bounded). */
    img_pread(d, buf, (size_t)VDI_MIN(vsize, sizeof(buf)), 0);
    if (vsize > 512)
        img_pread(d, buf, 512, vsize - 512);
    if (d->q) {
        struct img__qcow2 *q = d->q;
        int reads = 0;
        for (uint64_t i = 0; i < q->l1_size && i < 16; i++)
            for (uint64_t k = 0; k < q->l2_entries && reads < 64; k += 1 + k / 2, reads++) {
                uint64_t off = ((i << q->l2_bits) + k) << q->cluster_bits;
                if (off < vsize)
                    img_pread(d, buf, (size_t)VDI_MIN(sizeof(buf), vsize - off), off);
            }
        struct img_check_result r;
        if (flags & IMG_OPEN_RDONLY)
            img__qcow2_check(d, false, &r);
    }
    if (!(flags & IMG_OPEN_RDONLY) && vsize) {
        memset(buf, 0x5a, 4096);
        img_pwrite(d, buf, (size_t)VDI_MIN(vsize, 4096), 0);
        img_discard(d, 0, vsize);
        img_flush(d);
    }
    img_close(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        vdi_log_set_level(0); /* corrupt images are the point; keep the output quiet */
        init = 1;
    }
    int fd = memfd_create("fuzz.qcow2", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        exercise(path, IMG_OPEN_RDONLY);
        exercise(path, 0);
    }
    close(fd);
    return 0;
}
