/* golden-images/catalog.c: the catalogue of golden images: named images with numbered,
 * immutable versions, a current version, desktop references and O(1) clones.
 *
 * STATE/images/NAME/
 *   .lock            flock: exclusive for changes, shared for clone/ref
 *   .last            the highest version number ever given (numbers are never reused)
 *   current          "N\n", replaced atomically (rename)
 *   .tmp-XXXXXX/     a version in the making (import, publish), flocked by its maker
 *   vN/              one version, renamed into place from its .tmp- directory when complete
 *     disk.qcow2     flattened, or an overlay on ../vK/disk.qcow2 (published from a clone)
 *     kernel initrd cmdline   boot files (each optional)
 *     manifest.json  {"image","version","parent","backing_version","created","virtual_size",
 *                     "cmdline","files":{NAME:{"sha256","size"}},"notes",
 *                     "patch":{"id","exit","output"} (versions made by a patch)}
 *     refs/HOLDER    one empty file per desktop using the version
 *
 * Locking: the long part of making a version (copying and converting the disk, copying the boot
 * files, hashing them all) runs in NAME/.tmp-XXXXXX/ WITHOUT the image lock, so clones and
 * references (vdid, at every login and recycle) never wait for an import. The exclusive lock is
 * held only for the commit: pick the next number, write the manifest, rename the directory to vN
 * and update `current`. Two makers of one image therefore both succeed, with distinct numbers.
 * A maker holds an exclusive flock on its .tmp- directory while it works: a .tmp- directory whose
 * flock can be taken was left by a maker that died (crash, kill -9) and is removed by the next
 * img_catalog_open() or the next import or publish of that image. Versions are only ever names
 * starting with 'v', so a half-made one is never visible.
 */
#define VDI_LOG_TAG "img"
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/internal.h"

struct img_catalog {
    char *root; /* STATE/images */
};

static const char *const boot_files[] = {"kernel", "initrd", "cmdline"};

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int check_name(const char *name)
{
    if (!valid_name(name)) {
        VDI_LOG_ERR("image name '%s' is not valid ([A-Za-z0-9._-], 1-64, no leading dot)", name);
        return -EINVAL;
    }
    return 0;
}

static void sweep_all(img_catalog_t *cat);

int img_catalog_open(const char *state_dir, img_catalog_t **out)
{
    char *root = vdi_xasprintf("%s/images", state_dir);
    if (mkdir(state_dir, 0755) < 0 && errno != EEXIST) {
        int err = -errno;
        VDI_LOG_ERR("state directory %s cannot be created: %s", state_dir, vdi_strerror(err));
        free(root);
        return err;
    }
    if (mkdir(root, 0755) < 0 && errno != EEXIST) {
        int err = -errno;
        VDI_LOG_ERR("catalogue %s cannot be created: %s", root, vdi_strerror(err));
        free(root);
        return err;
    }
    img_catalog_t *cat = vdi_xcalloc(1, sizeof(*cat));
    cat->root = root;
    sweep_all(cat);
    *out = cat;
    return 0;
}

void img_catalog_close(img_catalog_t *cat)
{
    if (!cat)
        return;
    free(cat->root);
    free(cat);
}

/* Lock image @name (creating its directory when @create). Returns an fd to close, or -errno.
 * The last version's removal removes NAME/ with its .lock while others may wait for that lock:
 * a waiter that then holds a lock on a removed file locks the file that is there now instead. */
static int lock_image(img_catalog_t *cat, const char *name, bool exclusive, bool create)
{
    char *dir = vdi_xasprintf("%s/%s", cat->root, name);
    char *lock = vdi_xasprintf("%s/.lock", dir);
    int fd;
    for (;;) {
        struct stat st, held;
        if (create && mkdir(dir, 0755) < 0 && errno != EEXIST) {
            fd = -errno;
            break;
        }
        fd = -ENOENT;
        if (stat(dir, &st) == 0)
            fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd == -1)
            fd = -errno;
        if (fd < 0)
            break;
        while (flock(fd, exclusive ? LOCK_EX : LOCK_SH) < 0)
            if (errno != EINTR) {
                int err = -errno;
                close(fd);
                fd = err;
                break;
            }
        if (fd < 0)
            break;
        if (fstat(fd, &held) == 0 && stat(lock, &st) == 0 && held.st_ino == st.st_ino &&
            held.st_dev == st.st_dev)
            break;
        close(fd);
    }
    if (fd == -ENOENT)
        VDI_LOG_ERR("image %s does not exist", name);
    free(lock);
    free(dir);
    return fd;
}

static char *vdir(img_catalog_t *cat, const char *name, uint32_t v)
{
    return vdi_xasprintf("%s/%s/v%u", cat->root, name, v);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int list_versions(img_catalog_t *cat, const char *name, uint32_t **out, size_t *n)
{
    char *dir = vdi_xasprintf("%s/%s", cat->root, name);
    DIR *dp = opendir(dir);
    free(dir);
    *out = NULL;
    *n = 0;
    if (!dp)
        return -errno;
    struct dirent *de;
    while ((de = readdir(dp))) {
        uint64_t v;
        if (de->d_name[0] != 'v' || vdi_parse_u64(de->d_name + 1, 1, UINT32_MAX, &v) < 0)
            continue;
        *out = vdi_xrealloc(*out, (*n + 1) * sizeof(**out));
        (*out)[(*n)++] = (uint32_t)v;
    }
    closedir(dp);
    if (*n > 1)
        qsort(*out, *n, sizeof(**out), cmp_u32);
    return 0;
}

int img_catalog_versions(img_catalog_t *cat, const char *name, uint32_t **versions, size_t *n)
{
    int err = check_name(name);
    if (err < 0)
        return err;
    err = list_versions(cat, name, versions, n);
    if (err == 0 && *n == 0) {
        free(*versions);
        *versions = NULL;
        err = -ENOENT;
    }
    if (err == -ENOENT)
        VDI_LOG_ERR("image %s does not exist", name);
    return err;
}

int img_catalog_list(img_catalog_t *cat, char ***names, size_t *n)
{
    DIR *dp = opendir(cat->root);
    *names = NULL;
    *n = 0;
    if (!dp)
        return -errno;
    struct dirent *de;
    while ((de = readdir(dp))) {
        if (!valid_name(de->d_name))
            continue;
        uint32_t *v;
        size_t nv;
        if (list_versions(cat, de->d_name, &v, &nv) < 0 || nv == 0) {
            free(v);
            continue;
        }
        free(v);
        *names = vdi_xrealloc(*names, (*n + 1) * sizeof(**names));
        (*names)[(*n)++] = vdi_xstrdup(de->d_name);
    }
    closedir(dp);
    for (size_t i = 1; i < *n; i++) /* insertion sort: a handful of names */
        for (size_t j = i; j > 0 && strcmp((*names)[j - 1], (*names)[j]) > 0; j--) {
            char *t = (*names)[j];
            (*names)[j] = (*names)[j - 1];
            (*names)[j - 1] = t;
        }
    return 0;
}

static int read_current(img_catalog_t *cat, const char *name, uint32_t *v)
{
    char *p = vdi_xasprintf("%s/%s/current", cat->root, name);
    FILE *f = fopen(p, "re");
    free(p);
    if (!f)
        return -errno;
    unsigned x = 0;
    int ok = fscanf(f, "%u", &x);
    fclose(f);
    if (ok != 1 || x == 0)
        return VDI_ECORRUPT;
    *v = x;
    return 0;
}

static int write_current(img_catalog_t *cat, const char *name, uint32_t v)
{
    char *tmp = vdi_xasprintf("%s/%s/.current.%d", cat->root, name, (int)getpid());
    char *p = vdi_xasprintf("%s/%s/current", cat->root, name);
    int err = 0;
    FILE *f = fopen(tmp, "we");
    if (!f || fprintf(f, "%u\n", v) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0)
        err = -errno;
    if (f && fclose(f) != 0 && err == 0)
        err = -errno;
    if (err == 0 && rename(tmp, p) < 0)
        err = -errno;
    if (err < 0) {
        unlink(tmp);
        VDI_LOG_ERR("image %s: cannot record the current version: %s", name, vdi_strerror(err));
    }
    free(tmp);
    free(p);
    return err;
}

int img_catalog_current(img_catalog_t *cat, const char *name, uint32_t *version)
{
    int err = check_name(name);
    if (err < 0)
        return err;
    err = read_current(cat, name, version);
    if (err == -ENOENT)
        VDI_LOG_ERR("image %s does not exist", name);
    return err;
}

/* Resolve version 0 to the current one and make sure it exists. */
static int resolve(img_catalog_t *cat, const char *name, uint32_t *v)
{
    int err = check_name(name);
    if (err < 0)
        return err;
    if (*v == 0) {
        err = read_current(cat, name, v);
        if (err < 0) {
            VDI_LOG_ERR("image %s does not exist or has no current version", name);
            return err == VDI_ECORRUPT ? err : -ENOENT;
        }
    }
    char *m = vdi_xasprintf("%s/%s/v%u/manifest.json", cat->root, name, *v);
    err = access(m, R_OK) < 0 ? -errno : 0;
    free(m);
    if (err < 0)
        VDI_LOG_ERR("image %s has no version %u", name, *v);
    return err;
}

int img_catalog_set_current(img_catalog_t *cat, const char *name, uint32_t version)
{
    int err = check_name(name);
    if (err < 0)
        return err;
    int lk = lock_image(cat, name, true, false);
    if (lk < 0)
        return lk;
    err = resolve(cat, name, &version);
    if (err == 0)
        err = write_current(cat, name, version);
    close(lk);
    if (err == 0)
        VDI_LOG_INFO("image=%s current version is now %u", name, version);
    return err;
}

int img_catalog_path(img_catalog_t *cat, const char *name, uint32_t version, const char *file,
                     char **path)
{
    int err = resolve(cat, name, &version);
    if (err < 0)
        return err;
    char *p = vdi_xasprintf("%s/%s/v%u/%s", cat->root, name, version, file);
    if (access(p, F_OK) < 0) {
        err = -errno;
        free(p);
        return err;
    }
    *path = p;
    return 0;
}

static int read_file(const char *path, char **out)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    vdi_buf_t b = VDI_BUF_INIT;
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        if (vdi_buf_append(&b, tmp, n) < 0) {
            fclose(f);
            vdi_buf_free(&b);
            return -ENOMEM;
        }
    fclose(f);
    if (vdi_buf_append(&b, "", 1) < 0) {
        vdi_buf_free(&b);
        return -ENOMEM;
    }
    *out = (char *)b.data;
    return 0;
}

int img_catalog_manifest(img_catalog_t *cat, const char *name, uint32_t version, char **json)
{
    int err = resolve(cat, name, &version);
    if (err < 0)
        return err;
    char *p = vdi_xasprintf("%s/%s/v%u/manifest.json", cat->root, name, version);
    err = read_file(p, json);
    free(p);
    return err;
}

static json_t *load_manifest(img_catalog_t *cat, const char *name, uint32_t v)
{
    char *p = vdi_xasprintf("%s/%s/v%u/manifest.json", cat->root, name, v);
    json_error_t je;
    json_t *m = json_load_file(p, 0, &je);
    if (!m)
        VDI_LOG_ERR("manifest %s cannot be read: %s (line %d)", p, je.text, je.line);
    free(p);
    return m;
}

/* ---- files -------------------------------------------------------------------------------- */

static int sha256_file(const char *path, char hex[65], uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    uint8_t *buf = vdi_xmalloc(1 << 20);
    ssize_t n;
    uint64_t total = 0;
    int err = 0;
    while ((n = read(fd, buf, 1 << 20)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = -errno;
            break;
        }
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        total += (uint64_t)n;
    }
    uint8_t md[32];
    unsigned mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    free(buf);
    close(fd);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (size)
        *size = total;
    return err;
}

static int copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        int err = -errno;
        close(in);
        return err;
    }
    int err = 0;
    uint64_t off = 0;
    uint8_t *buf = vdi_xmalloc(1 << 20);
    for (;;) {
        ssize_t n = read(in, buf, 1 << 20);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = -errno;
            break;
        }
        if (n == 0)
            break;
        err = img__pwrite_full(out, buf, (size_t)n, off);
        if (err < 0)
            break;
        off += (uint64_t)n;
    }
    free(buf);
    if (err == 0 && fsync(out) < 0)
        err = -errno;
    close(out);
    close(in);
    return err;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p) < 0 ? -1 : 0;
}

static void rm_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void now_iso(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Version numbers are never reused, even after the highest version was removed: NAME/.last
 * records the highest number ever given. Caller holds the image's exclusive lock. */
static uint32_t next_version(img_catalog_t *cat, const char *name)
{
    uint32_t *v, next = 1;
    size_t n;
    if (list_versions(cat, name, &v, &n) == 0 && n)
        next = v[n - 1] + 1;
    free(v);
    char *p = vdi_xasprintf("%s/%s/.last", cat->root, name);
    FILE *f = fopen(p, "re");
    unsigned last = 0;
    if (f) {
        if (fscanf(f, "%u", &last) == 1 && last >= next)
            next = last + 1;
        fclose(f);
    }
    free(p);
    return next;
}

static void record_last(img_catalog_t *cat, const char *name, uint32_t v)
{
    char *p = vdi_xasprintf("%s/%s/.last", cat->root, name);
    FILE *f = fopen(p, "we");
    if (f) {
        fprintf(f, "%u\n", v);
        fclose(f);
    }
    free(p);
}

/* ---- versions in the making --------------------------------------------------------------- */

/* A version in the making: NAME/.tmp-XXXXXX, its maker holding the exclusive flock on @fd. */
struct tmpdir {
    char *path; /* NULL once renamed into place */
    int fd;
};

/* Open the directory @path and take its flock without waiting. Returns the fd, or -1 when its
 * maker still holds it or it is no longer what @path names. */
static int claim_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat a, b;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0 || fstat(fd, &a) < 0 || stat(path, &b) < 0 ||
        a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Remove the .tmp- directories of image @name whose maker is gone (crashed or killed mid-copy).
 * Returns how many are still held by a live maker. */
static size_t sweep_image(img_catalog_t *cat, const char *name)
{
    char *dir = vdi_xasprintf("%s/%s", cat->root, name);
    DIR *dp = opendir(dir);
    size_t live = 0;
    struct dirent *de;
    while (dp && (de = readdir(dp))) {
        if (strncmp(de->d_name, ".tmp-", 5) != 0)
            continue;
        char *p = vdi_xasprintf("%s/%s", dir, de->d_name);
        int fd = claim_dir(p);
        if (fd >= 0) {
            VDI_LOG_WARN("image=%s removing %s, left by an import or publish that did not finish",
                         name, p);
            rm_tree(p);
            close(fd);
        } else {
            live++;
        }
        free(p);
    }
    if (dp)
        closedir(dp);
    free(dir);
    return live;
}

/* With the image's exclusive lock held and no version left: remove NAME/, unless a maker is
 * working in it (then only `current` goes; that maker's version becomes current). */
static void remove_empty_locked(img_catalog_t *cat, const char *name)
{
    char *dir = vdi_xasprintf("%s/%s", cat->root, name);
    if (sweep_image(cat, name) > 0) {
        char *cur = vdi_xasprintf("%s/current", dir);
        unlink(cur);
        free(cur);
        free(dir);
        return;
    }
    DIR *dp = opendir(dir);
    struct dirent *de;
    while (dp && (de = readdir(dp))) {
        char *p = vdi_xasprintf("%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && !S_ISDIR(st.st_mode))
            unlink(p); /* .lock, .last, current, a crashed writer's .current.PID */
        free(p);
    }
    if (dp)
        closedir(dp);
    /* ENOTEMPTY: a new maker came meanwhile; NAME/ is its now. */
    rmdir(dir);
    free(dir);
}

static void sweep_all(img_catalog_t *cat)
{
    DIR *dp = opendir(cat->root);
    struct dirent *de;
    while (dp && (de = readdir(dp))) {
        if (!valid_name(de->d_name))
            continue;
        sweep_image(cat, de->d_name);
    }
    if (dp)
        closedir(dp);
}

/* After a failed import: an image left with no version is removed, so a failed first import
 * leaves nothing behind. */
static void drop_if_empty(img_catalog_t *cat, const char *name)
{
    uint32_t *vs;
    size_t n;
    if (list_versions(cat, name, &vs, &n) < 0 || n > 0) {
        free(vs);
        return;
    }
    free(vs);
    int lk = lock_image(cat, name, true, false);
    if (lk < 0)
        return;
    if (list_versions(cat, name, &vs, &n) == 0 && n == 0)
        remove_empty_locked(cat, name);
    free(vs);
    close(lk);
}

/* Make NAME/.tmp-XXXXXX (and NAME/ when new), flocked by us; sweep stale ones first. */
static int tmp_make(img_catalog_t *cat, const char *name, struct tmpdir *t)
{
    char *dir = vdi_xasprintf("%s/%s", cat->root, name);
    int err = -EAGAIN;
    t->path = NULL;
    t->fd = -1;
    sweep_image(cat, name);
    /* Try again when a failed first import of the same name removed NAME/ between our mkdir and
     * mkdtemp, or a sweeper took our directory before we had locked it. */
    for (int tries = 0; tries < 16 && !t->path; tries++) {
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
            err = -errno;
            break;
        }
        char *p = vdi_xasprintf("%s/.tmp-XXXXXX", dir);
        int fd = -1;
        if (!mkdtemp(p)) {
            err = -errno;
        } else if ((fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
            err = -errno;
        } else {
            while ((err = flock(fd, LOCK_EX) < 0 ? -errno : 0) == -EINTR)
                ;
            struct stat a, b;
            if (err == 0 && (fstat(fd, &a) < 0 || stat(p, &b) < 0 || a.st_ino != b.st_ino ||
                             a.st_dev != b.st_dev))
                err = -ENOENT;
            /* mkdtemp makes it 0700; a version is readable by the jailed VMMs. */
            if (err == 0 && fchmod(fd, 0755) < 0)
                err = -errno;
        }
        if (err == 0) {
            t->path = p;
            t->fd = fd;
            break;
        }
        if (fd >= 0)
            close(fd);
        free(p);
        if (err != -ENOENT)
            break;
    }
    if (err < 0)
        VDI_LOG_ERR("image %s: cannot make a temporary directory in %s: %s", name, dir,
                    vdi_strerror(err));
    free(dir);
    return err;
}

/* Remove what is left of @t (nothing once it was renamed into place) and release it. */
static void tmp_drop(struct tmpdir *t)
{
    if (t->path)
        rm_tree(t->path);
    if (t->fd >= 0)
        close(t->fd);
    free(t->path);
    t->path = NULL;
    t->fd = -1;
}

/* Fill @tmp with the boot files (from @o, else inherited from version @parent), hash every file,
 * make them read-only and describe the version in @m, all but its number and date. Runs without
 * the image lock. */
static int prepare_version(img_catalog_t *cat, const char *name, const char *tmp, uint32_t parent,
                           uint32_t backing_v, const struct img_import_opts *o, json_t *m)
{
    int err = 0;
    const char *srcs[3] = {o->kernel, o->initrd, NULL};
    char *parent_dir = parent ? vdir(cat, name, parent) : NULL;
    for (int i = 0; i < 3 && err == 0; i++) {
        char *dst = vdi_xasprintf("%s/%s", tmp, boot_files[i]);
        if (i == 2 && o->cmdline) {
            FILE *f = fopen(dst, "wxe");
            if (!f || fputs(o->cmdline, f) < 0)
                err = -errno;
            if (f && fclose(f) != 0 && err == 0)
                err = -errno;
        } else if (i < 2 && srcs[i]) {
            err = copy_file(srcs[i], dst);
            if (err < 0)
                VDI_LOG_ERR("image %s: %s %s cannot be copied: %s", name, boot_files[i], srcs[i],
                            vdi_strerror(err));
        } else if (parent_dir) {
            /* publish: boot files not given are inherited from the version below */
            char *src = vdi_xasprintf("%s/%s", parent_dir, boot_files[i]);
            if (access(src, F_OK) == 0)
                err = copy_file(src, dst);
            free(src);
        }
        free(dst);
    }
    free(parent_dir);
    if (err < 0)
        return err;

    json_t *files = json_object();
    json_object_set_new(m, "image", json_string(name));
    json_object_set_new(m, "parent", parent ? json_integer(parent) : json_null());
    json_object_set_new(m, "backing_version", backing_v ? json_integer(backing_v) : json_null());
    char *disk = vdi_xasprintf("%s/disk.qcow2", tmp);
    struct img_info info;
    err = img_info(disk, &info);
    free(disk);
    if (err < 0) {
        json_decref(files);
        return err;
    }
    json_object_set_new(m, "virtual_size", json_integer((json_int_t)info.virtual_size));
    img_info_free(&info);
    const char *names[] = {"disk.qcow2", "kernel", "initrd", "cmdline"};
    for (size_t i = 0; i < VDI_ARRAY_SIZE(names); i++) {
        char *p = vdi_xasprintf("%s/%s", tmp, names[i]);
        char hex[65];
        uint64_t size;
        if (access(p, F_OK) == 0) {
            err = sha256_file(p, hex, &size);
            if (err == 0)
                json_object_set_new(
                    files, names[i],
                    json_pack("{s:s, s:I}", "sha256", hex, "size", (json_int_t)size));
            if (i == 3 && err == 0) {
                char *text = NULL;
                if (read_file(p, &text) == 0)
                    json_object_set_new(m, "cmdline", json_string(text));
                free(text);
            }
            chmod(p, 0444);
        }
        free(p);
        if (err < 0)
            break;
    }
    json_object_set_new(m, "files", files);
    json_object_set_new(m, "notes", json_string(o->notes ? o->notes : ""));
    if (o->patch_id) {
        const char *out = o->patch_output ? o->patch_output : "";
        size_t len = strlen(out), keep = 64 << 10;
        if (len > keep) { /* the tail, from a line start where one is near */
            out += len - keep;
            const char *nl = strchr(out, '\n');
            if (nl && nl - out < 1024)
                out = nl + 1;
        }
        json_t *po =
            json_pack("{s:s, s:i, s:s}", "id", o->patch_id, "exit", o->patch_exit, "output", out);
        if (!po) /* output that is not UTF-8: keep the record, say so */
            po = json_pack("{s:s, s:i, s:s}", "id", o->patch_id, "exit", o->patch_exit, "output",
                           "(output not valid UTF-8: see the patch log)");
        json_object_set_new(m, "patch", po);
    }
    return err;
}

/* Write @m to the new file @path (read-only) and sync it. */
static int write_manifest(const char *path, json_t *m)
{
    char *text = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!text)
        return -ENOMEM;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    int err = fd < 0 ? -errno : img__pwrite_full(fd, text, strlen(text), 0);
    if (err == 0 && fsync(fd) < 0)
        err = -errno;
    if (fd >= 0)
        close(fd);
    free(text);
    return err;
}

/* The commit, the only part under the image's exclusive lock: number the version in @t, write
 * its manifest @m, rename it into place (a crash before that leaves only a .tmp- directory) and
 * make it current when @make_current or when the image has no current version. @base: for
 * publish, the version @t's disk is an overlay on, which must still be there. */
static int commit_version(img_catalog_t *cat, const char *name, struct tmpdir *t, json_t *m,
                          uint32_t base, bool make_current, uint32_t *version)
{
    int lk = lock_image(cat, name, true, false);
    if (lk < 0)
        return lk;
    int err = 0;
    if (base) {
        char *bm = vdi_xasprintf("%s/%s/v%u/manifest.json", cat->root, name, base);
        if (access(bm, F_OK) < 0) {
            err = -errno;
            VDI_LOG_ERR("image=%s version=%u, the base of the new version, was removed meanwhile",
                        name, base);
        }
        free(bm);
        if (err < 0)
            goto out;
    }
    uint32_t v = next_version(cat, name);
    char created[32];
    now_iso(created);
    json_object_set_new(m, "version", json_integer(v));
    json_object_set_new(m, "created", json_string(created));
    char *mp = vdi_xasprintf("%s/manifest.json", t->path);
    err = write_manifest(mp, m);
    free(mp);
    if (err == 0 && fsync(t->fd) < 0)
        err = -errno;
    char *final = vdir(cat, name, v);
    if (err == 0 && rename(t->path, final) < 0)
        err = -errno;
    free(final);
    if (err < 0) {
        VDI_LOG_ERR("image %s: version %u cannot be put in place: %s", name, v, vdi_strerror(err));
        goto out;
    }
    free(t->path);
    t->path = NULL; /* it is vN now */
    record_last(cat, name, v);
    uint32_t cur;
    if (make_current || read_current(cat, name, &cur) < 0)
        err = write_current(cat, name, v);
    if (err == 0)
        *version = v;
out:
    close(lk);
    return err;
}

int img_catalog_import(img_catalog_t *cat, const char *name, const struct img_import_opts *o,
                       uint32_t *version)
{
    struct tmpdir t;
    int err = check_name(name);
    if (err < 0)
        return err;
    if (!o->disk)
        return -EINVAL;
    err = tmp_make(cat, name, &t);
    if (err < 0) {
        drop_if_empty(cat, name);
        return err;
    }
    char *disk = vdi_xasprintf("%s/disk.qcow2", t.path);
    struct img_convert_opts co = {
        .format = "qcow2", .cluster_size = o->cluster_size, .progress = o->progress, .ctx = o->ctx};
    json_t *m = json_object();
    err = img_convert(o->disk, disk, &co);
    if (err < 0)
        VDI_LOG_ERR("image %s: %s cannot be imported: %s", name, o->disk, vdi_strerror(err));
    if (err == 0)
        err = prepare_version(cat, name, t.path, 0, 0, o, m);
    if (err == 0)
        err = commit_version(cat, name, &t, m, 0, o->make_current, version);
    if (err == 0)
        VDI_LOG_INFO("image=%s version=%u imported from %s", name, *version, o->disk);
    json_decref(m);
    free(disk);
    tmp_drop(&t);
    if (err < 0)
        drop_if_empty(cat, name);
    return err;
}

int img_catalog_publish(img_catalog_t *cat, const char *name, const char *overlay,
                        const struct img_import_opts *o, uint32_t *version)
{
    struct img_info info;
    struct tmpdir t;
    uint32_t *vs = NULL, base = 0;
    size_t n = 0;
    int err = check_name(name);
    if (err < 0)
        return err;
    if (list_versions(cat, name, &vs, &n) < 0 || n == 0) {
        free(vs);
        VDI_LOG_ERR("image %s does not exist", name);
        return -ENOENT;
    }
    /* The overlay must sit on a version of this image. */
    img_disk_t *ov;
    /* Read lock: no VM may be writing it. Its chain must stay inside the catalogue. */
    err = img_open_ex(overlay, &(struct img_open_opts){IMG_OPEN_RDONLY, cat->root}, &ov);
    if (err < 0) {
        free(vs);
        return err;
    }
    if (img_backing(ov)) {
        char *real_b = realpath(img_path(img_backing(ov)), NULL);
        for (size_t i = 0; i < n && real_b && !base; i++) {
            char *p = vdi_xasprintf("%s/%s/v%u/disk.qcow2", cat->root, name, vs[i]);
            char *real_v = realpath(p, NULL);
            if (real_v && strcmp(real_v, real_b) == 0)
                base = vs[i];
            free(real_v);
            free(p);
        }
        free(real_b);
    }
    free(vs);
    if (!base) {
        VDI_LOG_ERR("image %s: %s is not an overlay on one of its versions", name, overlay);
        img_close(ov);
        return -EINVAL;
    }
    err = tmp_make(cat, name, &t);
    if (err < 0) {
        img_close(ov);
        return err;
    }
    char *disk = vdi_xasprintf("%s/disk.qcow2", t.path);
    json_t *m = json_object();
    err = copy_file(overlay, disk);
    img_close(ov);
    if (err == 0) {
        /* Point the copy at its base by a path relative to the version directory (the same from
         * NAME/.tmp-XXXXXX/ as from NAME/vN/). */
        img_disk_t *d;
        char *rel = vdi_xasprintf("../v%u/disk.qcow2", base);
        err = img_open(disk, 0, &d);
        if (err == 0) {
            err = img__qcow2_set_backing(d, rel, "qcow2");
            img_close(d);
        }
        free(rel);
    }
    if (err == 0)
        err = img_info(disk, &info);
    if (err == 0) {
        img_info_free(&info);
        err = prepare_version(cat, name, t.path, base, base, o, m);
    }
    if (err == 0)
        err = commit_version(cat, name, &t, m, base, o->make_current, version);
    if (err == 0)
        VDI_LOG_INFO("image=%s version=%u published from %s (overlay on version %u)", name,
                     *version, overlay, base);
    else
        VDI_LOG_ERR("image %s: publishing %s failed: %s", name, overlay, vdi_strerror(err));
    json_decref(m);
    free(disk);
    tmp_drop(&t);
    return err;
}

/* ---- references, removal, clones, verification -------------------------------------------- */

static int count_dir(const char *dir, size_t *n)
{
    DIR *dp = opendir(dir);
    *n = 0;
    if (!dp)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *de;
    while ((de = readdir(dp)))
        if (de->d_name[0] != '.')
            (*n)++;
    closedir(dp);
    return 0;
}

static int users_locked(img_catalog_t *cat, const char *name, uint32_t v, size_t *desktops,
                        size_t *children)
{
    char *refs = vdi_xasprintf("%s/%s/v%u/refs", cat->root, name, v);
    int err = count_dir(refs, desktops);
    free(refs);
    if (err < 0)
        return err;
    *children = 0;
    uint32_t *vs;
    size_t n;
    err = list_versions(cat, name, &vs, &n);
    for (size_t i = 0; err == 0 && i < n; i++) {
        if (vs[i] == v)
            continue;
        json_t *m = load_manifest(cat, name, vs[i]);
        if (!m)
            continue;
        json_t *b = json_object_get(m, "backing_version");
        if (json_is_integer(b) && json_integer_value(b) == v)
            (*children)++;
        json_decref(m);
    }
    free(vs);
    return err;
}

int img_catalog_users(img_catalog_t *cat, const char *name, uint32_t version, size_t *desktops,
                      size_t *children)
{
    int err = resolve(cat, name, &version);
    if (err < 0)
        return err;
    return users_locked(cat, name, version, desktops, children);
}

int img_catalog_ref(img_catalog_t *cat, const char *name, uint32_t version, const char *holder)
{
    if (!valid_name(holder)) {
        VDI_LOG_ERR("reference holder '%s' is not a valid name", holder);
        return -EINVAL;
    }
    int err = check_name(name);
    if (err < 0)
        return err;
    int lk = lock_image(cat, name, false, false);
    if (lk < 0)
        return lk;
    err = resolve(cat, name, &version);
    if (err == 0) {
        char *refs = vdi_xasprintf("%s/%s/v%u/refs", cat->root, name, version);
        char *p = vdi_xasprintf("%s/%s", refs, holder);
        if (mkdir(refs, 0755) < 0 && errno != EEXIST)
            err = -errno;
        int fd = err == 0 ? open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644) : -1;
        if (err == 0 && fd < 0)
            err = -errno;
        if (fd >= 0)
            close(fd);
        free(p);
        free(refs);
    }
    close(lk);
    return err;
}

int img_catalog_unref(img_catalog_t *cat, const char *name, uint32_t version, const char *holder)
{
    if (!valid_name(holder))
        return -EINVAL;
    int err = check_name(name);
    if (err < 0)
        return err;
    int lk = lock_image(cat, name, false, false);
    if (lk < 0)
        return lk;
    err = resolve(cat, name, &version);
    if (err == 0) {
        char *p = vdi_xasprintf("%s/%s/v%u/refs/%s", cat->root, name, version, holder);
        if (unlink(p) < 0)
            err = -errno;
        free(p);
    }
    close(lk);
    return err;
}

int img_catalog_remove(img_catalog_t *cat, const char *name, uint32_t version)
{
    int err = check_name(name);
    if (err < 0)
        return err;
    if (version == 0)
        return -EINVAL;
    int lk = lock_image(cat, name, true, false);
    if (lk < 0)
        return lk;
    err = resolve(cat, name, &version);
    if (err < 0)
        goto out;
    size_t desktops, children, nvers;
    uint32_t cur = 0, *vs;
    err = users_locked(cat, name, version, &desktops, &children);
    if (err < 0)
        goto out;
    read_current(cat, name, &cur);
    list_versions(cat, name, &vs, &nvers);
    free(vs);
    if (desktops || children) {
        VDI_LOG_ERR("image=%s version=%u is in use by %zu desktops and %zu later versions", name,
                    version, desktops, children);
        err = VDI_EINUSE;
        goto out;
    }
    if (cur == version && nvers > 1) {
        VDI_LOG_ERR("image=%s version=%u is current; make another version current first", name,
                    version);
        err = VDI_EINUSE;
        goto out;
    }
    char *dir = vdir(cat, name, version);
    rm_tree(dir);
    err = access(dir, F_OK) == 0 ? -EIO : 0;
    free(dir);
    if (err == 0 && nvers == 1)
        remove_empty_locked(cat, name);
    if (err == 0)
        VDI_LOG_INFO("image=%s version=%u removed", name, version);
out:
    close(lk);
    return err;
}

int img_catalog_clone(img_catalog_t *cat, const char *name, uint32_t version, const char *dest,
                      const char *holder, uint32_t *used)
{
    if (holder && !valid_name(holder))
        return -EINVAL;
    int err = check_name(name);
    if (err < 0)
        return err;
    int lk = lock_image(cat, name, false, false);
    if (lk < 0)
        return lk;
    err = resolve(cat, name, &version);
    if (err < 0)
        goto out;
    char *disk = vdi_xasprintf("%s/%s/v%u/disk.qcow2", cat->root, name, version);
    char *abs = realpath(disk, NULL);
    free(disk);
    if (!abs) {
        err = -errno;
        goto out;
    }
    struct img_create_opts co = {.backing = abs, .backing_fmt = "qcow2"};
    err = img_create(dest, &co);
    free(abs);
    if (err == 0 && holder) {
        char *refs = vdi_xasprintf("%s/%s/v%u/refs", cat->root, name, version);
        char *p = vdi_xasprintf("%s/%s", refs, holder);
        if (mkdir(refs, 0755) < 0 && errno != EEXIST)
            err = -errno;
        int fd = err == 0 ? open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644) : -1;
        if (err == 0 && fd < 0)
            err = -errno;
        if (fd >= 0)
            close(fd);
        if (err < 0)
            unlink(dest);
        free(p);
        free(refs);
    }
    if (err == 0)
        *used = version;
out:
    close(lk);
    return err;
}

int img_catalog_verify(img_catalog_t *cat, const char *name, uint32_t version)
{
    int err = resolve(cat, name, &version);
    if (err < 0)
        return err;
    json_t *m = load_manifest(cat, name, version);
    if (!m)
        return VDI_ECORRUPT;
    json_t *files = json_object_get(m, "files");
    const char *fname;
    json_t *val;
    int bad = 0;
    if (!json_is_object(files) || !json_object_get(files, "disk.qcow2")) {
        VDI_LOG_ERR("image=%s version=%u manifest lists no disk", name, version);
        bad++;
    }
    json_object_foreach(files, fname, val)
    {
        const char *want = json_string_value(json_object_get(val, "sha256"));
        char *p = vdi_xasprintf("%s/%s/v%u/%s", cat->root, name, version, fname);
        char hex[65];
        int e = valid_name(fname) ? sha256_file(p, hex, NULL) : -EINVAL;
        if (e < 0) {
            VDI_LOG_ERR("image=%s version=%u file %s cannot be read: %s", name, version, fname,
                        vdi_strerror(e));
            bad++;
        } else if (!want || strcmp(want, hex) != 0) {
            VDI_LOG_ERR("image=%s version=%u file %s does not match its sha256 (manifest %s, "
                        "file %s)",
                        name, version, fname, want ? want : "none", hex);
            bad++;
        }
        free(p);
    }
    json_decref(m);
    return bad ? VDI_ECORRUPT : 0;
}
