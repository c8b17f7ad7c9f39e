/* Unit tests for golden-images/disk.c: opening, the raw format, locking, range checks, the
 * rules for backing files (regular files only; confined under a backing root). */
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
#include "golden-images/img.h"
#include "golden-images/internal.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/vdi-img-test.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/raw.img", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
        return -1;
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

static void test_raw_rw(void **state)
{
    (void)state;
    img_disk_t *d;
    char buf[4096], back[4096];
    assert_int_equal(img_open(path, 0, &d), 0);
    assert_string_equal(img_format(d), "raw");
    assert_int_equal(img_size(d), 1 << 20);
    assert_null(img_backing(d));
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)(i * 7);
    assert_int_equal(img_pwrite(d, buf, sizeof(buf), 12345), 0);
    assert_int_equal(img_flush(d), 0);
    assert_int_equal(img_pread(d, back, sizeof(back), 12345), 0);
    assert_memory_equal(buf, back, sizeof(buf));
    /* out of range */
    assert_int_equal(img_pread(d, back, 2, (1 << 20) - 1), -EINVAL);
    assert_int_equal(img_pwrite(d, buf, 1, 1 << 20), -EINVAL);
    assert_int_equal(img_pread(d, back, 1, UINT64_MAX), -EINVAL);
    /* discard makes the range read as zeros (hole) */
    assert_int_equal(img_discard(d, 0, 65536), 0);
    assert_int_equal(img_pread(d, back, sizeof(back), 12345), 0);
    for (size_t i = 0; i < sizeof(back); i++)
        assert_int_equal(back[i], 0);
    img_close(d);
    img_close(NULL);
}

static void test_lock(void **state)
{
    (void)state;
    img_disk_t *a, *b, *c;
    assert_int_equal(img_open(path, 0, &a), 0);
    /* a second writer and a reader both conflict with a writer */
    assert_int_equal(img_open(path, 0, &b), -EAGAIN);
    assert_int_equal(img_open(path, IMG_OPEN_RDONLY, &b), -EAGAIN);
    img_close(a);
    /* many readers share; a writer then conflicts */
    assert_int_equal(img_open(path, IMG_OPEN_RDONLY, &a), 0);
    assert_int_equal(img_open(path, IMG_OPEN_RDONLY, &b), 0);
    assert_int_equal(img_open(path, 0, &c), -EAGAIN);
    char x = 1;
    assert_int_equal(img_pwrite(a, &x, 1, 0), -EROFS);
    assert_int_equal(img_discard(a, 0, 4096), -EROFS);
    img_close(a);
    img_close(b);
    assert_int_equal(img_open(path, 0, &c), 0);
    img_close(c);
}

static void test_missing(void **state)
{
    (void)state;
    img_disk_t *d = (img_disk_t *)0x1;
    char p[160];
    snprintf(p, sizeof(p), "%s/nope.img", dir);
    assert_int_equal(img_open(p, 0, &d), -ENOENT);
    assert_ptr_equal(d, (img_disk_t *)0x1); /* *out untouched on failure */
    assert_int_equal(img_open(dir, 0, &d), -EISDIR);
}

/* open_ex(FILE under dir, ROOT under dir or NULL): img_open_ex() read-only, closing on success. */
static int open_ex(const char *file, const char *root)
{
    char p[192], r[192];
    img_disk_t *d;
    snprintf(p, sizeof(p), "%s/%s", dir, file);
    snprintf(r, sizeof(r), "%s/%s", dir, root ? root : "");
    struct img_open_opts o = {.flags = IMG_OPEN_RDONLY, .backing_root = root ? r : NULL};
    int err = img_open_ex(p, &o, &d);
    if (err == 0)
        img_close(d);
    return err;
}

static void overlay(const char *file, const char *backing)
{
    char p[192];
    snprintf(p, sizeof(p), "%s/%s", dir, file);
    assert_int_equal(img__qcow2_create(p, 1 << 20, 16, backing, "raw", true), 0);
}

static void test_backing_rules(void **state)
{
    (void)state;
    static const char *const files[] = {"in/out.qcow2",  "in/null.qcow2", "in/fifo.qcow2",
                                        "in/link.qcow2", "in/self.qcow2", "in/fifo",
                                        "in/link",       "in/inside.raw"};
    char p[192];
    snprintf(p, sizeof(p), "%s/in", dir);
    assert_int_equal(mkdir(p, 0700), 0);

    /* A regular file outside the root, by ../: followed without a root, refused under one. */
    overlay("in/out.qcow2", "../raw.img");
    assert_int_equal(open_ex("in/out.qcow2", NULL), 0);
    assert_int_equal(open_ex("in/out.qcow2", "in"), -EPERM);
    assert_int_equal(open_ex("in/out.qcow2", "in/"), -EPERM);
    assert_int_equal(open_ex("in/out.qcow2", ""), 0); /* dir itself is the root */

    /* Devices and FIFOs: refused always, and a FIFO does not hang the open. */
    overlay("in/null.qcow2", "/dev/null");
    assert_int_equal(open_ex("in/null.qcow2", NULL), VDI_EBADIMAGE);
    assert_int_equal(open_ex("in/null.qcow2", "in"), VDI_EBADIMAGE);
    snprintf(p, sizeof(p), "%s/in/fifo", dir);
    assert_int_equal(mkfifo(p, 0600), 0);
    overlay("in/fifo.qcow2", "fifo");
    assert_int_equal(open_ex("in/fifo.qcow2", NULL), VDI_EBADIMAGE);
    assert_int_equal(open_ex("in/fifo.qcow2", "in"), VDI_EBADIMAGE);
    assert_int_equal(open_ex("in/fifo", NULL), -EINVAL); /* as the top image: not a disk */

    /* A symlink inside the root that points out of it; the same name pointing inside. */
    snprintf(p, sizeof(p), "%s/in/link", dir);
    assert_int_equal(symlink("../raw.img", p), 0);
    overlay("in/link.qcow2", "link");
    assert_int_equal(open_ex("in/link.qcow2", "in"), -EPERM);
    assert_int_equal(open_ex("in/link.qcow2", ""), 0);
    unlink(p);
    char q[192];
    snprintf(q, sizeof(q), "%s/in/inside.raw", dir);
    int fd = open(q, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    close(fd);
    assert_int_equal(symlink("inside.raw", p), 0);
    assert_int_equal(open_ex("in/link.qcow2", "in"), 0);

    /* The top image is not confined: only what its header names is. */
    overlay("in/self.qcow2", NULL);
    assert_int_equal(open_ex("in/self.qcow2", "in/nonexistent"), -ENOENT);
    assert_int_equal(open_ex("raw.img", "in"), 0);

    for (size_t i = 0; i < VDI_ARRAY_SIZE(files); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        unlink(p);
    }
    snprintf(p, sizeof(p), "%s/in", dir);
    assert_int_equal(rmdir(p), 0);
}

int main(void)
{
    vdi_log_set_level(VDI_LOG_LEVEL_ERR - 1); /* the failures below are expected */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_rw),
        cmocka_unit_test(test_lock),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_backing_rules),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
