/* Unit tests for golden-images/catalog.c: versions, current, desktop references and what they
 * block, clones, verification, name validation; versions made without the image lock (clones
 * during an import, concurrent imports from two processes, crashes mid-copy and their sweep). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

/* ---- making versions without the image lock ------------------------------------------------ */

/* A progress hook that holds an import in the middle of its copy: the first call says so and
 * waits (at most 10 s, so a broken catalogue fails the test instead of hanging it) for release. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool copying, released;
};
#define GATE_INIT                                                                                  \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false                          \
    }

static void deadline_in(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* Wait until *flag (under g->lock) or @ms pass; returns the flag. */
static bool gate_wait(struct gate *g, bool *flag, unsigned ms)
{
    struct timespec ts;
    deadline_in(&ts, ms);
    pthread_mutex_lock(&g->lock);
    while (!*flag && pthread_cond_timedwait(&g->cond, &g->lock, &ts) == 0)
        ;
    bool ok = *flag;
    pthread_mutex_unlock(&g->lock);
    return ok;
}

static void gate_set(struct gate *g, bool *flag)
{
    pthread_mutex_lock(&g->lock);
    *flag = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void gate_progress(uint64_t done, uint64_t total, void *ctx)
{
    struct gate *g = ctx;
    (void)done;
    (void)total;
    pthread_mutex_lock(&g->lock);
    bool first = !g->copying;
    pthread_mutex_unlock(&g->lock);
    if (!first)
        return;
    gate_set(g, &g->copying);
    gate_wait(g, &g->released, 10000);
}

struct import_job {
    const char *name;
    struct gate *gate;
    uint32_t version;
    int rc;
};

static void *import_thread(void *arg)
{
    struct import_job *j = arg;
    struct img_import_opts o = {.disk = raw, .progress = gate_progress, .ctx = j->gate};
    j->rc = img_catalog_import(cat, j->name, &o, &j->version);
    return NULL;
}

struct clone_job {
    struct gate gate; /* copying = done */
    char dest[160];
    uint32_t used;
    int rc;
};

static void *clone_thread(void *arg)
{
    struct clone_job *c = arg;
    c->rc = img_catalog_clone(cat, "busy", 0, c->dest, "desk-9", &c->used);
    if (c->rc == 0)
        c->rc = img_catalog_unref(cat, "busy", c->used, "desk-9");
    if (c->rc == 0)
        c->rc = img_catalog_ref(cat, "busy", c->used, "desk-9");
    if (c->rc == 0)
        c->rc = img_catalog_unref(cat, "busy", c->used, "desk-9");
    gate_set(&c->gate, &c->gate.copying);
    return NULL;
}

/* vdid clones and drops references at every login and recycle: an import of the same image in
 * progress (vdictl, another process) must not make it wait for the copy. */
static void test_clone_during_import(void **state)
{
    (void)state;
    struct img_import_opts o = {.disk = raw};
    uint32_t v, *vs;
    size_t n;
    assert_int_equal(img_catalog_import(cat, "busy", &o, &v), 0);
    assert_int_equal(v, 1);

    struct gate g = GATE_INIT;
    struct import_job imp = {.name = "busy", .gate = &g};
    pthread_t ti, tc;
    assert_int_equal(pthread_create(&ti, NULL, import_thread, &imp), 0);
    assert_true(gate_wait(&g, &g.copying, 5000));

    /* The copy is in progress: the half-made version is not visible... */
    assert_int_equal(img_catalog_versions(cat, "busy", &vs, &n), 0);
    assert_int_equal(n, 1);
    free(vs);
    /* ... and a clone plus reference changes finish at once. */
    struct clone_job c = {.gate = GATE_INIT};
    snprintf(c.dest, sizeof(c.dest), "%s/busy-desk.qcow2", dir);
    uint64_t t0 = vdi_now_ms();
    assert_int_equal(pthread_create(&tc, NULL, clone_thread, &c), 0);
    bool quick = gate_wait(&c.gate, &c.gate.copying, 2000);
    uint64_t took = vdi_now_ms() - t0;
    gate_set(&g, &g.released);
    pthread_join(tc, NULL);
    pthread_join(ti, NULL);
    assert_true(quick);
    assert_true(took < 1000);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.used, 1);
    assert_int_equal(imp.rc, 0);
    assert_int_equal(imp.version, 2);
    assert_int_equal(img_catalog_verify(cat, "busy", 2), 0);
    unlink(c.dest);
}

/* Removing an image's last version while an import of it is under way: the import still lands,
 * as the image's current version. */
static void test_remove_last_during_import(void **state)
{
    (void)state;
    struct img_import_opts o = {.disk = raw};
    uint32_t v, cur;
    assert_int_equal(img_catalog_import(cat, "gone", &o, &v), 0);
    struct gate g = GATE_INIT;
    struct import_job imp = {.name = "gone", .gate = &g};
    pthread_t ti;
    assert_int_equal(pthread_create(&ti, NULL, import_thread, &imp), 0);
    bool copying = gate_wait(&g, &g.copying, 5000);
    int rc = img_catalog_remove(cat, "gone", v);
    gate_set(&g, &g.released);
    pthread_join(ti, NULL);
    assert_true(copying);
    assert_int_equal(rc, 0);
    assert_int_equal(imp.rc, 0);
    assert_int_equal(imp.version, v + 1);
    assert_int_equal(img_catalog_current(cat, "gone", &cur), 0);
    assert_int_equal(cur, v + 1);
}

/* Read one byte from @fd within @ms; returns 1, or 0 on timeout or end of file. */
static int read_byte(int fd, unsigned ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;
    return poll(&p, 1, (int)ms) == 1 && read(fd, &c, 1) == 1;
}

static int child_go_fd = -1, child_started_fd = -1;

static void child_progress(uint64_t done, uint64_t total, void *ctx)
{
    bool *first = ctx;
    (void)done;
    (void)total;
    if (!*first)
        return;
    *first = false;
    if (write(child_started_fd, "s", 1) != 1)
        _exit(90);
    read_byte(child_go_fd, 10000);
}

/* A child process importing into image @name; its exit status is the version it got, or 100+. */
static pid_t spawn_importer(const char *name, int started, int go)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    img_catalog_t *c;
    bool first = true;
    uint32_t v = 0;
    child_started_fd = started;
    child_go_fd = go;
    struct img_import_opts o = {.disk = raw, .progress = child_progress, .ctx = &first};
    if (img_catalog_open(dir, &c) < 0)
        _exit(101);
    int rc = img_catalog_import(c, name, &o, &v);
    img_catalog_close(c);
    _exit(rc < 0 ? 102 : (int)v);
}

/* Two vdictl processes importing one new image at once: both copy at the same time, both get a
 * version, with distinct numbers; the first one to finish becomes current. */
static void test_concurrent_imports(void **state)
{
    (void)state;
    int started[2], go[2];
    assert_int_equal(pipe(started), 0);
    assert_int_equal(pipe(go), 0);
    pid_t a = spawn_importer("twice", started[1], go[0]);
    pid_t b = spawn_importer("twice", started[1], go[0]);
    assert_true(a > 0 && b > 0);
    /* Both copies run together: neither waits for the other's lock. */
    int both = read_byte(started[0], 5000) + read_byte(started[0], 5000);
    assert_int_equal(write(go[1], "gg", 2), 2);
    int sa, sb;
    assert_int_equal(waitpid(a, &sa, 0), a);
    assert_int_equal(waitpid(b, &sb, 0), b);
    close(started[0]);
    close(started[1]);
    close(go[0]);
    close(go[1]);
    assert_int_equal(both, 2);
    assert_true(WIFEXITED(sa) && WIFEXITED(sb));
    int va = WEXITSTATUS(sa), vb = WEXITSTATUS(sb);
    assert_true((va == 1 && vb == 2) || (va == 2 && vb == 1));
    uint32_t *vs, cur;
    size_t n;
    assert_int_equal(img_catalog_versions(cat, "twice", &vs, &n), 0);
    assert_int_equal(n, 2);
    free(vs);
    assert_int_equal(img_catalog_current(cat, "twice", &cur), 0);
    assert_true(cur == 1 || cur == 2);
    assert_int_equal(img_catalog_verify(cat, "twice", 1), 0);
    assert_int_equal(img_catalog_verify(cat, "twice", 2), 0);
}

static void crash_progress(uint64_t done, uint64_t total, void *ctx)
{
    (void)done;
    (void)total;
    (void)ctx;
    _exit(7); /* killed mid-copy */
}

/* How many NAME/.tmp-* entries image @name has. */
static size_t count_tmp(const char *name)
{
    char p[160];
    snprintf(p, sizeof(p), "%s/images/%s", dir, name);
    DIR *dp = opendir(p);
    size_t n = 0;
    struct dirent *de;
    while (dp && (de = readdir(dp)))
        if (strncmp(de->d_name, ".tmp-", 5) == 0)
            n++;
    if (dp)
        closedir(dp);
    return n;
}

static void crash_import(const char *name)
{
    pid_t pid = fork();
    if (pid == 0) {
        uint32_t v;
        struct img_import_opts o = {.disk = raw, .progress = crash_progress};
        img_catalog_import(cat, name, &o, &v);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 7);
}

/* An import killed mid-copy leaves no version, only a .tmp- directory that the next import or
 * catalogue open removes; a .tmp- directory whose maker is alive is left alone. */
static void test_crash_mid_import(void **state)
{
    (void)state;
    struct img_import_opts o = {.disk = raw};
    uint32_t v, *vs;
    size_t n;
    assert_int_equal(img_catalog_import(cat, "crashy", &o, &v), 0);
    assert_int_equal(v, 1);
    crash_import("crashy");
    assert_int_equal(count_tmp("crashy"), 1);
    assert_int_equal(img_catalog_versions(cat, "crashy", &vs, &n), 0);
    assert_int_equal(n, 1);
    free(vs);
    /* The next import sweeps it. */
    assert_int_equal(img_catalog_import(cat, "crashy", &o, &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(count_tmp("crashy"), 0);

    /* The next open sweeps too, but not what a live maker holds. */
    crash_import("crashy");
    char live[200];
    snprintf(live, sizeof(live), "%s/images/crashy/.tmp-live01", dir);
    assert_int_equal(mkdir(live, 0700), 0);
    int fd = open(live, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    assert_int_equal(count_tmp("crashy"), 2);
    img_catalog_t *c2;
    assert_int_equal(img_catalog_open(dir, &c2), 0);
    img_catalog_close(c2);
    assert_int_equal(count_tmp("crashy"), 1);
    assert_int_equal(access(live, F_OK), 0);
    close(fd);

    /* A crashed first import: no image, and the open removes what it left. */
    crash_import("newborn");
    char **names;
    assert_int_equal(img_catalog_list(cat, &names, &n), 0);
    for (size_t i = 0; i < n; i++) {
        assert_string_not_equal(names[i], "newborn");
        free(names[i]);
    }
    free(names);
    assert_int_equal(img_catalog_open(dir, &c2), 0);
    img_catalog_close(c2);
    assert_int_equal(count_tmp("newborn"), 0);
}

int main(void)
{
    vdi_log_set_level(VDI_LOG_LEVEL_ERR - 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions_refs_remove),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_clone_during_import),
        cmocka_unit_test(test_remove_last_during_import),
        cmocka_unit_test(test_concurrent_imports),
        cmocka_unit_test(test_crash_mid_import),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
