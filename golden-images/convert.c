/* golden-images/convert.c: image inspection, conversion (qcow2 chain <-> raw <-> qcow2),
 * commit into the backing file and rebase, all through our own reader and writer. */
#define VDI_LOG_TAG "img"
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/internal.h"

#define CHUNK (1u << 20)

static bool all_zero(const uint8_t *p, size_t n)
{
    static const uint8_t zero[4096];
    while (n >= sizeof(zero)) {
        if (memcmp(p, zero, sizeof(zero)) != 0)
            return false;
        p += sizeof(zero);
        n -= sizeof(zero);
    }
    return memcmp(p, zero, n) == 0;
}

int img_info(const char *path, struct img_info *out)
{
    img_disk_t *d;
    struct stat st;
    int err = img_open(path, IMG_OPEN_RDONLY | IMG_OPEN_NOLOCK, &d);
    if (err < 0)
        return err;
    memset(out, 0, sizeof(*out));
    out->format = img_format(d);
    out->virtual_size = img_size(d);
    if (fstat(d->fd, &st) == 0) {
        out->file_size = (uint64_t)st.st_size;
        out->disk_usage = (uint64_t)st.st_blocks * 512;
    }
    if (d->q) {
        struct img__qcow2 *q = d->q;
        out->cluster_size = (uint32_t)q->cluster_size;
        out->version = q->version;
        out->refcount_bits = 1u << q->refcount_order;
        out->compression = q->compression_type ? "zstd" : "zlib";
        out->dirty = q->incompat & IMG__QCOW2_INCOMPAT_DIRTY;
        out->corrupt = q->incompat & IMG__QCOW2_INCOMPAT_CORRUPT;
        out->backing = q->backing_name ? vdi_xstrdup(q->backing_name) : NULL;
        out->backing_fmt = q->backing_fmt ? vdi_xstrdup(q->backing_fmt) : NULL;
    }
    for (img_disk_t *b = d->backing; b; b = b->backing)
        out->chain_depth++;
    img_close(d);
    return 0;
}

void img_info_free(struct img_info *info)
{
    if (!info)
        return;
    free(info->backing);
    free(info->backing_fmt);
    info->backing = info->backing_fmt = NULL;
}

int img_convert(const char *src, const char *dst, const struct img_convert_opts *o)
{
    img_disk_t *s, *d;
    /* The chain is followed inside the source's directory only, so that a crafted header cannot
     * copy a host file (/etc/shadow as a raw backing file) into the result. */
    char *copy = vdi_xstrdup(src);
    struct img_open_opts oo = {
        .flags = IMG_OPEN_RDONLY,
        .backing_root = o->allow_backing_outside ? NULL : dirname(copy),
    };
    int err = img_open_ex(src, &oo, &s);
    free(copy);
    if (err < 0)
        return err;
    struct img_create_opts co = {
        .format = o->format,
        .size = img_size(s),
        .cluster_size = o->cluster_size,
        .overwrite = o->overwrite,
    };
    err = img_create(dst, &co);
    if (err < 0)
        goto out_src;
    err = img_open(dst, 0, &d);
    if (err < 0)
        goto out_unlink;
    uint8_t *buf = vdi_xmalloc(CHUNK);
    uint64_t size = img_size(s);
    for (uint64_t off = 0; off < size; off += CHUNK) {
        size_t n = (size_t)VDI_MIN((uint64_t)CHUNK, size - off);
        err = img_pread(s, buf, n, off);
        if (err < 0)
            break;
        /* A new image reads as zeros: skip zero blocks, keeping the copy sparse. Contiguous
         * non-zero blocks go in one write. */
        size_t blk = o->cluster_size ? o->cluster_size : 65536, run = 0;
        for (size_t i = 0; i < n && err == 0;) {
            size_t len = VDI_MIN(blk, n - i);
            if (all_zero(buf + i, len)) {
                if (run)
                    err = img_pwrite(d, buf + i - run, run, off + i - run);
                run = 0;
            } else {
                run += len;
            }
            i += len;
        }
        /* The run that reaches the end of the chunk (a last, partial block included). */
        if (err == 0 && run)
            err = img_pwrite(d, buf + n - run, run, off + n - run);
        if (err < 0)
            break;
        if (o->progress)
            o->progress(off + n, size, o->ctx);
    }
    free(buf);
    if (err == 0)
        err = img_flush(d);
    img_close(d);
    if (err < 0)
        goto out_unlink;
    img_close(s);
    return 0;
out_unlink:
    unlink(dst);
out_src:
    img_close(s);
    return err;
}

int img_commit(const char *path, img_progress_fn progress, void *ctx)
{
    img_disk_t *top, *base;
    /* The overlay's own open would put a read lock on the backing file, which our writable open
     * of it below would then conflict with: open the overlay unlocked, then lock the overlay
     * through the backing's write lock and its own read lock taken here. */
    int err = img_open(path, IMG_OPEN_RDONLY | IMG_OPEN_NOLOCK, &top);
    if (err < 0)
        return err;
    if (!top->q || !top->backing) {
        VDI_LOG_ERR("image=%s has no backing file to commit into", path);
        img_close(top);
        return -EINVAL;
    }
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
    if (fcntl(top->fd, F_OFD_SETLK, &fl) < 0) {
        VDI_LOG_ERR("image=%s is in use by another process (lock held)", path);
        img_close(top);
        return -EAGAIN;
    }
    err = img__open_chain(img_path(top->backing), 0, top->q->backing_fmt, &(struct img__chain){0},
                          &base);
    if (err < 0) {
        img_close(top);
        return err;
    }
    uint64_t cs = top->q->cluster_size;
    uint64_t size = VDI_MIN(img_size(top), img_size(base));
    uint8_t *buf = vdi_xmalloc(cs);
    for (uint64_t off = 0; off < size && err == 0; off += cs) {
        bool alloc;
        err = img__qcow2_allocated(top, off, &alloc);
        if (err < 0 || !alloc)
            continue;
        size_t n = (size_t)VDI_MIN(cs, size - off);
        err = img_pread(top, buf, n, off);
        if (err == 0)
            err = img_pwrite(base, buf, n, off);
        if (progress && (off / cs) % 256 == 0)
            progress(off, size, ctx);
    }
    if (progress && err == 0)
        progress(size, size, ctx);
    free(buf);
    if (err == 0)
        err = img_flush(base);
    img_close(base);
    img_close(top);
    return err;
}

int img_rebase(const char *path, const char *backing, const char *backing_fmt, bool unsafe,
               img_progress_fn progress, void *ctx)
{
    img_disk_t *d, *nb = NULL;
    int err = img_open(path, 0, &d);
    if (err < 0)
        return err;
    if (!d->q) {
        VDI_LOG_ERR("image=%s is raw; only qcow2 images have a backing file", path);
        img_close(d);
        return -EINVAL;
    }
    char *fmt_owned = NULL;
    if (backing) {
        char *bpath = img__qcow2_backing_path(path, backing);
        /* Opened as the backing file it will be (depth 1): a regular file, like any other. */
        err = img__open_chain(bpath, IMG_OPEN_RDONLY, backing_fmt,
                              &(struct img__chain){.depth = 1, .parent = path}, &nb);
        free(bpath);
        if (err < 0) {
            VDI_LOG_ERR("image=%s new backing file '%s' cannot be used: %s", path, backing,
                        vdi_strerror(err));
            img_close(d);
            return err;
        }
        if (!backing_fmt)
            backing_fmt = fmt_owned = vdi_xstrdup(img_format(nb));
    }
    if (!unsafe) {
        uint64_t cs = d->q->cluster_size, size = img_size(d);
        uint8_t *a = vdi_xmalloc(cs), *b = vdi_xmalloc(cs);
        for (uint64_t off = 0; off < size && err == 0; off += cs) {
            bool alloc;
            size_t n = (size_t)VDI_MIN(cs, size - off);
            err = img__qcow2_allocated(d, off, &alloc);
            if (err < 0 || alloc)
                continue;
            /* What the image shows now (through the old chain) against the new backing. */
            err = img_pread(d, a, n, off);
            if (err < 0)
                break;
            memset(b, 0, n);
            if (nb && off < img_size(nb))
                err = img_pread(nb, b, (size_t)VDI_MIN((uint64_t)n, img_size(nb) - off), off);
            if (err == 0 && memcmp(a, b, n) != 0)
                err = img_pwrite(d, a, n, off);
            if (progress && (off / cs) % 256 == 0)
                progress(off, size, ctx);
        }
        free(a);
        free(b);
        if (err == 0)
            err = img_flush(d);
    }
    if (err == 0)
        err = img__qcow2_set_backing(d, backing, backing_fmt);
    if (progress && err == 0)
        progress(1, 1, ctx);
    free(fmt_owned);
    img_close(nb);
    img_close(d);
    return err;
}
