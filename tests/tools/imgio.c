/* tests/tools/imgio.c: drive golden-images/ from shell tests (interop with qemu-img).
 *
 *   imgio dump IMG OUT          write IMG's whole virtual disk to OUT (raw)
 *   imgio create IMG SIZE [CLUSTER_BITS [BACKING [BACKING_FMT]]]
 *   imgio write IMG OFF LEN SEED     write a pattern (SEED) at OFF
 *   imgio random IMG REF N SEED [MAXLEN]   N random writes/discards to IMG and the same to REF (raw)
 *   imgio check IMG [repair]    print errors/leaks; exit 1 if any remain
 *   imgio crash IMG N SEED      N random writes, flush after some, then _exit without closing
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/img.h"

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void pattern(uint8_t *b, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i++)
        b[i] = (uint8_t)((seed * 131 + i * 7 + (i >> 9)) ^ (seed >> 3));
}

static int die(const char *what, int err)
{
    fprintf(stderr, "imgio: %s: %s\n", what, vdi_strerror(err));
    return 1;
}

static int do_dump(const char *img, const char *out)
{
    img_disk_t *d;
    int err = img_open(img, IMG_OPEN_RDONLY, &d);
    if (err < 0)
        return die(img, err);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return die(out, -errno);
    size_t chunk = 1 << 20;
    uint8_t *buf = malloc(chunk), *zero = calloc(1, chunk);
    uint64_t size = img_size(d);
    for (uint64_t off = 0; off < size; off += chunk) {
        size_t n = (size_t)VDI_MIN((uint64_t)chunk, size - off);
        err = img_pread(d, buf, n, off);
        if (err < 0)
            return die("read", err);
        if (memcmp(buf, zero, n) != 0 && pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
            return die("write", -errno);
    }
    if (ftruncate(fd, (off_t)size) < 0)
        return die("truncate", -errno);
    close(fd);
    free(buf);
    free(zero);
    img_close(d);
    return 0;
}

static int do_random(const char *img, const char *ref, long n, uint64_t seed, uint64_t maxlen,
                     bool crash)
{
    img_disk_t *d;
    int err = img_open(img, 0, &d);
    if (err < 0)
        return die(img, err);
    int rfd = ref ? open(ref, O_RDWR) : -1;
    if (ref && rfd < 0)
        return die(ref, -errno);
    rng_state = seed * 0x9e3779b97f4a7c15ULL + 1;
    uint64_t size = img_size(d);
    uint8_t *buf = malloc(maxlen), *zero = calloc(1, maxlen);
    for (long i = 0; i < n; i++) {
        uint64_t len = 1 + rnd() % maxlen;
        if (rnd() % 4 == 0)
            len = (rnd() % 2 + 1) * 512;
        uint64_t off = rnd() % size;
        /* cluster-ish alignment half the time, to hit whole-cluster paths */
        if (rnd() % 2)
            off &= ~(uint64_t)4095;
        if (off + len > size)
            len = size - off;
        if (len == 0)
            continue;
        if (rnd() % 10 == 0 && !crash) {
            err = img_discard(d, off, len);
            if (err < 0)
                return die("discard", err);
            /* Reference: what a discard did is visible only through reads; apply it by
             * re-reading the range from the image (whole clusters read as zeros). */
            err = img_pread(d, buf, len, off);
            if (err < 0)
                return die("read after discard", err);
            if (rfd >= 0 && pwrite(rfd, buf, len, (off_t)off) != (ssize_t)len)
                return die("ref write", -errno);
            continue;
        }
        pattern(buf, len, rnd());
        err = img_pwrite(d, buf, len, off);
        if (err < 0)
            return die("write", err);
        if (rfd >= 0 && pwrite(rfd, buf, len, (off_t)off) != (ssize_t)len)
            return die("ref write", -errno);
        if (crash && rnd() % 5 == 0 && (err = img_flush(d)) < 0)
            return die("flush", err);
    }
    if (crash)
        _exit(0); /* no close: the image stays dirty, with unflushed metadata */
    free(buf);
    free(zero);
    if (rfd >= 0)
        close(rfd);
    img_close(d);
    return 0;
}

int main(int argc, char **argv)
{
    vdi_log_init_from_env();
    if (argc >= 4 && strcmp(argv[1], "dump") == 0)
        return do_dump(argv[2], argv[3]);
    if (argc >= 4 && strcmp(argv[1], "create") == 0) {
        uint64_t size;
        if (vdi_parse_size(argv[3], 0, UINT64_MAX, &size) < 0)
            return die("size", -EINVAL);
        struct img_create_opts o = {.size = size};
        if (argc > 4)
            o.cluster_size = 1u << atoi(argv[4]);
        if (argc > 5)
            o.backing = argv[5];
        if (argc > 6)
            o.backing_fmt = argv[6];
        int err = img_create(argv[2], &o);
        return err < 0 ? die("create", err) : 0;
    }
    if (argc >= 6 && strcmp(argv[1], "write") == 0) {
        img_disk_t *d;
        uint64_t off = strtoull(argv[3], NULL, 0), len = strtoull(argv[4], NULL, 0);
        int err = img_open(argv[2], 0, &d);
        if (err < 0)
            return die(argv[2], err);
        uint8_t *buf = malloc(len);
        pattern(buf, len, strtoull(argv[5], NULL, 0));
        err = img_pwrite(d, buf, len, off);
        if (err == 0)
            err = img_flush(d);
        free(buf);
        img_close(d);
        return err < 0 ? die("write", err) : 0;
    }
    if (argc >= 6 && strcmp(argv[1], "random") == 0)
        return do_random(argv[2], argv[3], atol(argv[4]), strtoull(argv[5], NULL, 0),
                         argc > 6 ? strtoull(argv[6], NULL, 0) : 200000, false);
    if (argc >= 5 && strcmp(argv[1], "crash") == 0)
        return do_random(argv[2], NULL, atol(argv[3]), strtoull(argv[4], NULL, 0), 100000, true);
    if (argc >= 3 && strcmp(argv[1], "check") == 0) {
        struct img_check_result r;
        int err = img_check(argv[2], argc > 3, &r);
        if (err < 0)
            return die("check", err);
        printf("errors=%" PRIu64 " fixed=%" PRIu64 " left=%" PRIu64 " leaks=%" PRIu64
               " fixed=%" PRIu64 " left=%" PRIu64 "\n",
               r.errors, r.errors_fixed, r.errors_left, r.leaks, r.leaks_fixed, r.leaks_left);
        return r.errors_left || r.leaks_left ? 1 : 0;
    }
    fprintf(stderr, "usage: see the top of tests/tools/imgio.c\n");
    return 2;
}
