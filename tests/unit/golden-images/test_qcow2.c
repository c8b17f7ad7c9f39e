/* Unit tests for golden-images/qcow2.c: header parsing and writing, L2 lookups, allocation and
 * refcounts, copy-up of partial clusters, and crash consistency: a sequence of writes, discards
 * and flushes is cut off after every single pwrite() it makes (later ones fail as if the power
 * went), and each time the image must reopen (repairing it), check clean and read, cluster by
 * cluster, as some state the sequence went through. pwrite is wrapped (-Wl,--wrap=pwrite). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/internal.h"

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);

static long crash_at = -1; /* pwrite number after which every pwrite fails; -1: never */
static long n_writes;

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (crash_at >= 0 && n_writes++ >= crash_at) {
        errno = EIO;
        return -1;
    }
    return __real_pwrite(fd, buf, n, off);
}

static char dir[64], base[128], top[128];
#define DISK (1u << 20)
#define CS   4096u

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/vdi-qcow2-test.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(base, sizeof(base), "%s/base.raw", dir);
    snprintf(top, sizeof(top), "%s/top.qcow2", dir);
    int fd = open(base, O_RDWR | O_CREAT | O_TRUNC, 0600);
    uint8_t *b = malloc(DISK);
    for (unsigned i = 0; i < DISK; i++)
        b[i] = (uint8_t)(i / 512 + 1);
    if (fd < 0 || __real_pwrite(fd, b, DISK, 0) != DISK)
        return -1;
    free(b);
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(top);
    unlink(base);
    rmdir(dir);
    return 0;
}

static void fill(uint8_t *b, size_t n, int seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(seed * 37 + i * 3);
}

static void new_overlay(void)
{
    unlink(top);
    struct img_create_opts o = {.cluster_size = CS, .backing = "base.raw", .backing_fmt = "raw"};
    assert_int_equal(img_create(top, &o), 0);
}

static void test_header_roundtrip(void **state)
{
    (void)state;
    img_disk_t *d;
    new_overlay();
    assert_int_equal(img_open(top, IMG_OPEN_RDONLY, &d), 0);
    assert_string_equal(img_format(d), "qcow2");
    assert_int_equal(img_size(d), DISK);
    assert_non_null(img_backing(d));
    assert_string_equal(img_format(img_backing(d)), "raw");
    assert_int_equal(d->q->version, 3);
    assert_int_equal(d->q->cluster_size, CS);
    assert_int_equal(d->q->refcount_order, 4);
    assert_string_equal(d->q->backing_name, "base.raw");
    assert_string_equal(d->q->backing_fmt, "raw");
    assert_true(d->q->n_features >= 5);
    img_close(d);
    /* An existing file is not overwritten. */
    struct img_create_opts o = {.size = DISK};
    assert_int_equal(img_create(top, &o), -EEXIST);
}

static void test_parse_rejects(void **state)
{
    (void)state;
    uint8_t h[4096];
    img_disk_t d = {.path = (char *)"crafted"};
    struct img__qcow2 q;
    memset(h, 0, sizeof(h));
    memcpy(h, "QFI\xfb", 4);
    img__put_be32(h + 4, 3);
    img__put_be32(h + 20, 16);
    img__put_be64(h + 24, 1 << 20);
    img__put_be32(h + 36, 1);
    img__put_be64(h + 40, 3 * 65536);
    img__put_be64(h + 48, 65536);
    img__put_be32(h + 56, 1);
    img__put_be32(h + 96, 4);
    img__put_be32(h + 100, 104);
#define PARSE()                                                                                    \
    (memset(&q, 0, sizeof(q)), q.file_size = 4 * 65536, d.q = &q,                                  \
     img__qcow2_parse_header(&d, h, sizeof(h)))
#define FREEQ() (free(q.backing_name), free(q.backing_fmt))
    assert_int_equal(PARSE(), 0);
    FREEQ();
    img__put_be32(h + 20, 22); /* 4 MiB clusters */
    assert_int_equal(PARSE(), VDI_EBADIMAGE);
    img__put_be32(h + 20, 16);
    img__put_be64(h + 24, UINT64_MAX); /* absurd size */
    assert_int_equal(PARSE(), VDI_EBADIMAGE);
    img__put_be64(h + 24, 1 << 20);
    img__put_be64(h + 40, 65536); /* L1 on top of the refcount table */
    assert_int_equal(PARSE(), VDI_EBADIMAGE);
    img__put_be64(h + 40, 100 * 65536); /* L1 past EOF */
    assert_int_equal(PARSE(), VDI_EBADIMAGE);
    img__put_be64(h + 40, 3 * 65536);
    img__put_be32(h + 36, 0); /* L1 too small for the size */
    assert_int_equal(PARSE(), VDI_EBADIMAGE);
    img__put_be32(h + 36, 1);
    img__put_be64(h + 72, 1ULL << 4); /* extended L2: unsupported */
    assert_int_equal(PARSE(), VDI_EBADIMAGE);
    img__put_be64(h + 72, 0);
    img__put_be32(h + 32, 1); /* AES */
    assert_int_equal(PARSE(), VDI_EBADIMAGE);
    img__put_be32(h + 32, 0);
    img__put_be32(h + 96, 7); /* refcount order */
    assert_int_equal(PARSE(), VDI_EBADIMAGE);
    img__put_be32(h + 96, 4);
    img__put_be64(h + 8, 4000); /* backing name runs off the cluster... of this 4 KiB buffer */
    img__put_be32(h + 16, 1000);
    assert_int_equal(PARSE(), VDI_EBADIMAGE);
    img__put_be64(h + 8, 0);
    img__put_be32(h + 16, 0);
    img__put_be32(h + 104, 0xe2792aca); /* extension longer than the cluster */
    img__put_be32(h + 108, 0xffffff00);
    assert_int_equal(PARSE(), VDI_EBADIMAGE);
    img__put_be32(h + 108, 3);
    memcpy(h + 112, "raw", 3);
    assert_int_equal(PARSE(), 0);
    assert_string_equal(q.backing_fmt, "raw");
    FREEQ();
    memcpy(h, "QFI\xfa", 4);
    assert_int_equal(PARSE(), VDI_EBADIMAGE);
}

static void test_copy_up_and_refcounts(void **state)
{
    (void)state;
    img_disk_t *d;
    uint8_t buf[3 * CS], back[3 * CS], orig[3 * CS];
    new_overlay();
    assert_int_equal(img_open(top, 0, &d), 0);
    assert_int_equal(img_pread(d, orig, sizeof(orig), 5 * CS), 0);
    assert_int_equal(orig[0], 5 * CS / 512 + 1); /* falls through to the backing file */
    /* 100 bytes in the middle of a cluster: the rest of the cluster comes from the backing. */
    fill(buf, 100, 1);
    assert_int_equal(img_pwrite(d, buf, 100, 5 * CS + 1000), 0);
    assert_int_equal(img_pread(d, back, 3 * CS, 5 * CS), 0);
    assert_memory_equal(back, orig, 1000);
    assert_memory_equal(back + 1000, buf, 100);
    assert_memory_equal(back + 1100, orig + 1100, 3 * CS - 1100);
    /* header, refcount table, refcount block, L1, then the L2 table and the data cluster */
    uint64_t rc;
    for (uint64_t c = 0; c < 6; c++) {
        assert_int_equal(img__qcow2_get_refcount(d, c, &rc), 0);
        assert_int_equal(rc, 1);
    }
    assert_int_equal(img__qcow2_get_refcount(d, 6, &rc), 0);
    assert_int_equal(rc, 0);
    /* A second write to the same cluster goes in place: no new cluster. */
    assert_int_equal(img_pwrite(d, buf, 100, 5 * CS + 3000), 0);
    assert_int_equal(d->q->end, 6 * CS);
    /* Discard: reads zeros (not the backing file) and frees the cluster after a flush. */
    assert_int_equal(img_discard(d, 5 * CS, CS), 0);
    assert_int_equal(img_pread(d, back, CS, 5 * CS), 0);
    for (unsigned i = 0; i < CS; i++)
        assert_int_equal(back[i], 0);
    assert_int_equal(img_flush(d), 0);
    assert_int_equal(img__qcow2_get_refcount(d, 5, &rc), 0);
    assert_int_equal(rc, 0);
    /* The freed cluster is reused. */
    assert_int_equal(img_pwrite(d, buf, 10, 9 * CS), 0);
    assert_int_equal(d->q->end, 6 * CS);
    img_close(d);
    struct img_check_result r;
    assert_int_equal(img_check(top, false, &r), 0);
    assert_int_equal(r.errors + r.leaks, 0);
    assert_int_equal(r.allocated, 1);
}

/* The sequence cut short by test_crash_every_step; snapshots[i] is the disk after op i. */
#define NOPS 9
static void run_ops(img_disk_t *d, uint8_t *snap /* [NOPS+1][DISK] or NULL */)
{
    static const struct {
        char op; /* w write, d discard, f flush */
        uint32_t off, len;
    } ops[NOPS] = {
        {'w', 1000, 5000},
        {'w', 200 * 1024, 64 * 1024},
        {'f', 0, 0},
        {'d', 200 * 1024, 32 * 1024},
        {'w', 900 * 1024, 100},
        {'f', 0, 0},
        {'w', 204 * 1024, 40000},
        {'w', 0, 8192},
        {'d', 0, 4096},
    };
    uint8_t *buf = malloc(DISK);
    for (int i = 0; i < NOPS; i++) {
        if (snap)
            memcpy(snap + (size_t)(i + 1) * DISK, snap + (size_t)i * DISK, DISK);
        fill(buf, ops[i].len, i + 1);
        int err = 0;
        if (ops[i].op == 'w') {
            err = img_pwrite(d, buf, ops[i].len, ops[i].off);
            if (snap)
                memcpy(snap + (size_t)(i + 1) * DISK + ops[i].off, buf, ops[i].len);
        } else if (ops[i].op == 'd') {
            err = img_discard(d, ops[i].off, ops[i].len);
            if (snap)
                memset(snap + (size_t)(i + 1) * DISK + ops[i].off, 0, ops[i].len);
        } else {
            err = img_flush(d);
        }
        if (snap)
            assert_int_equal(err, 0);
    }
    free(buf);
}

static void test_crash_every_step(void **state)
{
    (void)state;
    uint8_t *snap = malloc((size_t)(NOPS + 1) * DISK), *now = malloc(DISK);
    img_disk_t *d;

    /* The uninterrupted run: snapshots, and how many pwrites it makes. */
    new_overlay();
    int fd = open(base, O_RDONLY);
    assert_int_equal(read(fd, snap, DISK), DISK);
    close(fd);
    assert_int_equal(img_open(top, 0, &d), 0);
    crash_at = 1 << 30;
    n_writes = 0;
    run_ops(d, snap);
    img_close(d);
    long total = n_writes;
    crash_at = -1;
    assert_true(total > 10);

    for (long k = 0; k <= total; k++) {
        new_overlay();
        assert_int_equal(img_open(top, 0, &d), 0);
        crash_at = k;
        n_writes = 0;
        run_ops(d, NULL);
        img_close(d); /* its writes fail too: the power is off */
        crash_at = -1;

        /* Before repair: leaks are allowed, errors (a table pointing at a cluster whose
         * refcount does not count it) are not. */
        struct img_check_result r;
        assert_int_equal(img_check(top, false, &r), 0);
        if (r.errors)
            fail_msg("cut after pwrite %ld: %lu errors before repair", k, (unsigned long)r.errors);
        /* Reopen: repairs if dirty; then a check must be clean. */
        assert_int_equal(img_open(top, 0, &d), 0);
        img_close(d);
        assert_int_equal(img_check(top, false, &r), 0);
        if (r.errors || r.leaks)
            fail_msg("cut after pwrite %ld: %lu errors, %lu leaks after repair", k,
                     (unsigned long)r.errors, (unsigned long)r.leaks);
        assert_int_equal(img_open(top, IMG_OPEN_RDONLY, &d), 0);
        assert_int_equal(img_pread(d, now, DISK, 0), 0);
        img_close(d);
        for (size_t c = 0; c < DISK / CS; c++) {
            bool seen = false;
            for (int i = 0; i <= NOPS && !seen; i++)
                seen = memcmp(now + c * CS, snap + (size_t)i * DISK + c * CS, CS) == 0;
            if (!seen)
                fail_msg("cut after pwrite %ld: cluster %zu reads as no state it ever had", k, c);
        }
    }
    free(snap);
    free(now);
}

/* Allocation n fails, for n = 1, 2, ... until open + write + close succeeds: every failure is a
 * clean error (ASan finds leaks and bad frees), and the image stays consistent. */
static void test_oom(void **state)
{
    (void)state;
    uint8_t buf[CS];
    fill(buf, sizeof(buf), 9);
    int err = -ENOMEM;
    for (unsigned n = 1; err == -ENOMEM && n < 1000; n++) {
        img_disk_t *d;
        new_overlay();
        vdi_alloc_fail_at(n);
        err = img_open(top, 0, &d);
        if (err == 0) {
            err = img_pwrite(d, buf, 100, 3 * CS + 5);
            if (err == 0)
                err = img_pwrite(d, buf, sizeof(buf), 40 * CS);
            img_close(d);
        }
        vdi_alloc_fail_at(0);
        if (err != 0)
            assert_int_equal(err, -ENOMEM);
        struct img_check_result r;
        assert_int_equal(img_check(top, false, &r), 0);
        assert_int_equal(r.errors, 0);
    }
    assert_int_equal(err, 0);
}

int main(void)
{
    vdi_log_set_level(VDI_LOG_LEVEL_ERR - 1); /* the failures below are expected */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_roundtrip),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_copy_up_and_refcounts),
        cmocka_unit_test(test_crash_every_step),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
