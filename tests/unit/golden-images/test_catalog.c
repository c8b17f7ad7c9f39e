/* Unit tests for golden-images/catalog.c: versions, current, desktop references and what they
 * block, clones, verification, name validation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/img.h"

static char dir[64], raw[128];
static img_catalog_t *cat;

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/vdi-cat-test.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(raw, sizeof(raw), "%s/disk.raw", dir);
    int fd = open(raw, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4 << 20) < 0 || pwrite(fd, "golden", 6, 70000) != 6)
        return -1;
    close(fd);
    return img_catalog_open(dir, &cat);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    chmod(p, 0755);
    return remove(p);
}

static int teardown(void **state)
{
    (void)state;
    img_catalog_close(cat);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static void test_versions_refs_remove(void **state)
{
    (void)state;
    struct img_import_opts o = {.disk = raw, .cmdline = "console=ttyS0", .notes = "n"};
    uint32_t v, cur, used;
    size_t desktops, children;
    assert_int_equal(img_catalog_import(cat, "base", &o, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(img_catalog_import(cat, "base", &o, &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(img_catalog_current(cat, "base", &cur), 0);
    assert_int_equal(cur, 1); /* the first import is current; later ones only when asked */

    /* A desktop reference blocks removal; dropping it unblocks. */
    char clone[160];
    snprintf(clone, sizeof(clone), "%s/desk1.qcow2", dir);
    assert_int_equal(img_catalog_clone(cat, "base", 2, clone, "desk1", &used), 0);
    assert_int_equal(used, 2);
    assert_int_equal(img_catalog_users(cat, "base", 2, &desktops, &children), 0);
    assert_int_equal(desktops, 1);
    assert_int_equal(img_catalog_ref(cat, "base", 2, "desk1"), 0); /* idempotent */
    assert_int_equal(img_catalog_users(cat, "base", 2, &desktops, &children), 0);
    assert_int_equal(desktops, 1);
    assert_int_equal(img_catalog_remove(cat, "base", 2), VDI_EINUSE);
    assert_int_equal(img_catalog_unref(cat, "base", 2, "desk1"), 0);
    assert_int_equal(img_catalog_unref(cat, "base", 2, "desk1"), -ENOENT);

    /* The clone reads the golden data. */
    img_disk_t *d;
    char buf[6];
    assert_int_equal(img_open(clone, IMG_OPEN_RDONLY, &d), 0);
    assert_int_equal(img_pread(d, buf, 6, 70000), 0);
    assert_memory_equal(buf, "golden", 6);
    img_close(d);

    /* The current version cannot be removed while others exist; rollback then remove. */
    assert_int_equal(img_catalog_set_current(cat, "base", 2), 0);
    assert_int_equal(img_catalog_remove(cat, "base", 2), VDI_EINUSE);
    assert_int_equal(img_catalog_set_current(cat, "base", 1), 0);
    assert_int_equal(img_catalog_remove(cat, "base", 2), 0);
    assert_int_equal(img_catalog_set_current(cat, "base", 2), -ENOENT);
    assert_int_equal(img_catalog_verify(cat, "base", 1), 0);

    /* The clone on v2 (removed: nothing referenced it any more) cannot be published: its
     * backing file is gone. An overlay on a file outside the catalogue is refused before its
     * chain is followed. */
    assert_int_equal(img_catalog_publish(cat, "base", clone, &o, &v), -ENOENT);
    char other[160];
    snprintf(other, sizeof(other), "%s/other.qcow2", dir);
    struct img_create_opts co = {.backing = raw, .backing_fmt = "raw"};
    assert_int_equal(img_create(other, &co), 0);
    assert_int_equal(img_catalog_publish(cat, "base", other, &o, &v), -EPERM);
    /* A clone of v1, published, makes v1 used by a later version. */
    unlink(clone);
    assert_int_equal(img_catalog_clone(cat, "base", 0, clone, NULL, &used), 0);
    assert_int_equal(used, 1);
    assert_int_equal(img_catalog_publish(cat, "base", clone, &o, &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(img_catalog_users(cat, "base", 1, &desktops, &children), 0);
    assert_int_equal(desktops, 0);
    assert_int_equal(children, 1);
    assert_int_equal(img_catalog_set_current(cat, "base", 3), 0);
    assert_int_equal(img_catalog_remove(cat, "base", 1), VDI_EINUSE);

    char *path;
    assert_int_equal(img_catalog_path(cat, "base", 0, "cmdline", &path), 0);
    assert_non_null(strstr(path, "/base/v3/cmdline"));
    free(path);
    char **names;
    size_t n;
    assert_int_equal(img_catalog_list(cat, &names, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "base");
    free(names[0]);
    free(names);
}

static void test_bad_names(void **state)
{
    (void)state;
    struct img_import_opts o = {.disk = raw};
    uint32_t v;
    assert_int_equal(img_catalog_import(cat, "../x", &o, &v), -EINVAL);
    assert_int_equal(img_catalog_import(cat, ".hidden", &o, &v), -EINVAL);
    assert_int_equal(img_catalog_import(cat, "", &o, &v), -EINVAL);
    assert_int_equal(img_catalog_ref(cat, "base", 1, "a/b"), -EINVAL);
    assert_int_equal(img_catalog_current(cat, "nosuch", &v), -ENOENT);
    /* A failed first import leaves no image behind. */
    struct img_import_opts bad = {.disk = "/nonexistent/disk.raw"};
    assert_int_equal(img_catalog_import(cat, "ghost", &bad, &v), -ENOENT);
    uint32_t *vs;
    size_t n;
    assert_int_equal(img_catalog_versions(cat, "ghost", &vs, &n), -ENOENT);
}

int main(void)
{
    vdi_log_set_level(VDI_LOG_LEVEL_ERR - 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions_refs_remove),
        cmocka_unit_test(test_bad_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
