/* golden-images/catalog.c: the catalogue of golden images: named images with numbered,
 * immutable versions, a current version, desktop references and O(1) clones.
 *
 * STATE/images/NAME/
 *   .lock            flock: exclusive for changes, shared for clone/ref
 *   current          "N\n", replaced atomically (rename)
 *   vN/              one version, made under .tmp-vN-PID/ and renamed into place when complete
 *     disk.qcow2     flattened, or an overlay on ../vK/disk.qcow2 (published from a clone)
 *     kernel initrd cmdline   boot files (each optional)
 *     manifest.json  {"image","version","parent","backing_version","created","virtual_size",
 *                     "cmdline","files":{NAME:{"sha256","size"}},"notes"}
 *     refs/HOLDER    one empty file per desktop using the version
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

/* Lock image @name (creating its directory when @create). Returns an fd to close, or -errno. */
static int lock_image(img_catalog_t *cat, const char *name, bool exclusive, bool create)
{
    char *dir = vdi_xasprintf("%s/%s", cat->root, name);
    if (create && mkdir(dir, 0755) < 0 && errno != EEXIST) {
        int err = -errno;
        free(dir);
        return err;
    }
    char *lock = vdi_xasprintf("%s/.lock", dir);
    struct stat st;
    int fd = -ENOENT;
    if (stat(dir, &st) == 0)
        fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1)
        fd = -errno;
    free(lock);
    free(dir);
    if (fd < 0) {
        if (fd == -ENOENT)
            VDI_LOG_ERR("image %s does not exist", name);
        return fd;
    }
    while (flock(fd, exclusive ? LOCK_EX : LOCK_SH) < 0)
        if (errno != EINTR) {
            int err = -errno;
            close(fd);
            return err;
        }
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
 * records the highest number ever given. */
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

/* Fill tmp/ with the boot files, hash everything, write the manifest, make it read-only and
 * rename it to vN. */
static int finish_version(img_catalog_t *cat, const char *name, const char *tmp, uint32_t v,
                          uint32_t parent, uint32_t backing_v, const struct img_import_opts *o)
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

    json_t *m = json_object(), *files = json_object();
    char created[32];
    now_iso(created);
    json_object_set_new(m, "image", json_string(name));
    json_object_set_new(m, "version", json_integer(v));
    json_object_set_new(m, "parent", parent ? json_integer(parent) : json_null());
    json_object_set_new(m, "backing_version", backing_v ? json_integer(backing_v) : json_null());
    json_object_set_new(m, "created", json_string(created));
    char *disk = vdi_xasprintf("%s/disk.qcow2", tmp);
    struct img_info info;
    err = img_info(disk, &info);
    free(disk);
    if (err < 0) {
        json_decref(m);
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
    char *mp = vdi_xasprintf("%s/manifest.json", tmp);
    if (err == 0 && json_dump_file(m, mp, JSON_INDENT(2) | JSON_SORT_KEYS) < 0)
        err = -EIO;
    chmod(mp, 0444);
    free(mp);
    json_decref(m);
    if (err < 0)
        return err;
    char *final = vdir(cat, name, v);
    if (rename(tmp, final) < 0)
        err = -errno;
    free(final);
    if (err == 0)
        record_last(cat, name, v);
    return err;
}

int img_catalog_import(img_catalog_t *cat, const char *name, const struct img_import_opts *o,
                       uint32_t *version)
{
    int err = check_name(name);
    if (err < 0)
        return err;
    if (!o->disk)
        return -EINVAL;
    int lk = lock_image(cat, name, true, true);
    if (lk < 0)
        return lk;
    uint32_t v = next_version(cat, name);
    char *tmp = vdi_xasprintf("%s/%s/.tmp-v%u-%d", cat->root, name, v, (int)getpid());
    char *disk = vdi_xasprintf("%s/disk.qcow2", tmp);
    rm_tree(tmp);
    if (mkdir(tmp, 0755) < 0) {
        err = -errno;
        goto out;
    }
    struct img_convert_opts co = {
        .format = "qcow2", .cluster_size = o->cluster_size, .progress = o->progress, .ctx = o->ctx};
    err = img_convert(o->disk, disk, &co);
    if (err < 0) {
        VDI_LOG_ERR("image %s: %s cannot be imported: %s", name, o->disk, vdi_strerror(err));
        goto out;
    }
    err = finish_version(cat, name, tmp, v, 0, 0, o);
    if (err < 0)
        goto out;
    uint32_t cur;
    if (o->make_current || read_current(cat, name, &cur) < 0)
        err = write_current(cat, name, v);
    if (err == 0) {
        *version = v;
        VDI_LOG_INFO("image=%s version=%u imported from %s", name, v, o->disk);
    }
out:
    if (err < 0) {
        rm_tree(tmp);
        uint32_t *vs;
        size_t n;
        /* A new image that got no version: leave nothing behind. */
        if (list_versions(cat, name, &vs, &n) == 0 && n == 0) {
            char *dir = vdi_xasprintf("%s/%s", cat->root, name);
            rm_tree(dir);
            free(dir);
        }
        free(vs);
    }
    free(disk);
    free(tmp);
    close(lk);
    return err;
}

int img_catalog_publish(img_catalog_t *cat, const char *name, const char *overlay,
                        const struct img_import_opts *o, uint32_t *version)
{
    struct img_info info;
    int err = check_name(name);
    if (err < 0)
        return err;
    int lk = lock_image(cat, name, true, false);
    if (lk < 0)
        return lk;
    /* The overlay must sit on a version of this image. */
    img_disk_t *ov;
    uint32_t base = 0;
    /* Read lock: no VM may be writing it. Its chain must stay inside the catalogue. */
    err = img_open_ex(overlay, &(struct img_open_opts){IMG_OPEN_RDONLY, cat->root}, &ov);
    if (err < 0)
        goto out_lock;
    if (img_backing(ov)) {
        char *real_b = realpath(img_path(img_backing(ov)), NULL);
        uint32_t *vs = NULL;
        size_t n = 0;
        list_versions(cat, name, &vs, &n);
        for (size_t i = 0; i < n && real_b && !base; i++) {
            char *p = vdi_xasprintf("%s/%s/v%u/disk.qcow2", cat->root, name, vs[i]);
            char *real_v = realpath(p, NULL);
            if (real_v && strcmp(real_v, real_b) == 0)
                base = vs[i];
            free(real_v);
            free(p);
        }
        free(vs);
        free(real_b);
    }
    if (!base) {
        VDI_LOG_ERR("image %s: %s is not an overlay on one of its versions", name, overlay);
        err = -EINVAL;
        img_close(ov);
        goto out_lock;
    }
    uint32_t v = next_version(cat, name);
    char *tmp = vdi_xasprintf("%s/%s/.tmp-v%u-%d", cat->root, name, v, (int)getpid());
    char *disk = vdi_xasprintf("%s/disk.qcow2", tmp);
    rm_tree(tmp);
    err = mkdir(tmp, 0755) < 0 ? -errno : 0;
    if (err == 0)
        err = copy_file(overlay, disk);
    img_close(ov);
    if (err == 0) {
        /* Point the copy at its base by a path relative to the version directory. */
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
        err = finish_version(cat, name, tmp, v, base, base, o);
    }
    if (err == 0 && o->make_current)
        err = write_current(cat, name, v);
    if (err == 0) {
        *version = v;
        VDI_LOG_INFO("image=%s version=%u published from %s (overlay on version %u)", name, v,
                     overlay, base);
    } else {
        VDI_LOG_ERR("image %s: publishing %s failed: %s", name, overlay, vdi_strerror(err));
        rm_tree(tmp);
    }
    free(disk);
    free(tmp);
out_lock:
    close(lk);
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
    if (err == 0 && nvers == 1) {
        char *d = vdi_xasprintf("%s/%s", cat->root, name);
        rm_tree(d);
        free(d);
    }
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
