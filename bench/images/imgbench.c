/* bench/images/imgbench.c: timings of golden-images/ for bench/images/run.sh.
 *
 *   imgbench clone GOLDEN N DIR     create N overlays on GOLDEN in DIR; print the median in ms
 *   imgbench io FILE read|write BS COUNT STEP
 *       COUNT requests of BS bytes at offsets i*STEP modulo the disk size (the access pattern
 *       of `qemu-img bench -S STEP`), one at a time; print the seconds they took
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/img.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "clone") == 0) {
        int n = atoi(argv[3]);
        double *t = calloc((size_t)n, sizeof(*t));
        char *golden = realpath(argv[2], NULL);
        for (int i = 0; i < n; i++) {
            char *p = vdi_xasprintf("%s/clone-%d.qcow2", argv[4], i);
            struct img_create_opts o = {.backing = golden, .backing_fmt = "qcow2"};
            double t0 = now();
            int err = img_create(p, &o);
            t[i] = now() - t0;
            if (err < 0) {
                fprintf(stderr, "imgbench: %s: %s\n", p, vdi_strerror(err));
                return 1;
            }
            unlink(p);
            free(p);
        }
        qsort(t, (size_t)n, sizeof(*t), cmp_d);
        printf("%.3f\n", t[n / 2] * 1e3);
        return 0;
    }
    if (argc == 7 && strcmp(argv[1], "io") == 0) {
        bool wr = strcmp(argv[3], "write") == 0;
        size_t bs = strtoul(argv[4], NULL, 0);
        long count = atol(argv[5]);
        uint64_t step = strtoull(argv[6], NULL, 0), off = 0;
        img_disk_t *d;
        int err = img_open(argv[2], wr ? 0 : IMG_OPEN_RDONLY, &d);
        if (err < 0) {
            fprintf(stderr, "imgbench: %s: %s\n", argv[2], vdi_strerror(err));
            return 1;
        }
        /* Aligned like QEMU's bounce buffers (qemu_blockalign), and THP where the kernel
         * allows, so both tools copy into the same kind of memory. */
        size_t al = bs >= (2u << 20) ? (2u << 20) : 4096;
        uint8_t *buf = aligned_alloc(al, (bs + al - 1) / al * al);
        madvise(buf, bs, MADV_HUGEPAGE);
        memset(buf, 0xa5, bs);
        uint64_t size = img_size(d);
        double t0 = now();
        for (long i = 0; i < count && err == 0; i++) {
            if (off + bs > size)
                off = 0;
            err = wr ? img_pwrite(d, buf, bs, off) : img_pread(d, buf, bs, off);
            off = (off + step) % size;
        }
        double t = now() - t0;
        img_close(d);
        free(buf);
        if (err < 0) {
            fprintf(stderr, "imgbench: %s\n", vdi_strerror(err));
            return 1;
        }
        printf("%.4f\n", t);
        return 0;
    }
    fprintf(stderr, "usage: see the top of bench/images/imgbench.c\n");
    return 2;
}
