/* golden-images/disk.c: opening a disk (format by magic, locking, backing chains) and the
 * format-independent entry points; the raw format.
 *
 * Locks are fcntl OFD locks on the whole file: they belong to the open file description, so two
 * opens of one image conflict even inside one process, and closing the fd drops them. A writable
 * open takes a write lock, a read-only open (and every backing file) a read lock: many desktops
 * may read one golden image, nobody may write it while they do.
 *
 * Backing files come from image headers, which a crafted image controls: each is checked to be a
 * regular file before it is opened (a device or FIFO is never even opened) and again by fstat
 * after, and under a backing root it is resolved with realpath(3), refused unless it lies under
 * the root, and opened by the resolved path with O_NOFOLLOW. Every open is O_NONBLOCK so a FIFO
 * named on the command line cannot hang us; the flag is cleared once the file is known.
 */
#define VDI_LOG_TAG "img"
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/internal.h"

int img__pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO; /* past the end of the file */
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int img__pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* ---- raw ---------------------------------------------------------------------------------- */

static int raw_pread(img_disk_t *d, void *buf, size_t len, uint64_t off)
{
    int err = img__pread_full(d->fd, buf, len, off);
    if (err == -EIO) {
        /* The file shrank under us: what is gone reads as zeros, as a hole would. */
        struct stat st;
        if (fstat(d->fd, &st) == 0 && (uint64_t)st.st_size < off + len) {
            memset(buf, 0, len);
            if ((uint64_t)st.st_size > off)
                return img__pread_full(d->fd, buf, (size_t)((uint64_t)st.st_size - off), off);
            return 0;
        }
    }
    if (err < 0)
        VDI_LOG_ERR_RL("image=%s read of %zu bytes at %" PRIu64 " failed: %s", d->path, len, off,
                       vdi_strerror(err));
    return err;
}

static int raw_pwrite(img_disk_t *d, const void *buf, size_t len, uint64_t off)
{
    int err = img__pwrite_full(d->fd, buf, len, off);
    if (err < 0)
        VDI_LOG_ERR_RL("image=%s write of %zu bytes at %" PRIu64 " failed: %s", d->path, len, off,
                       vdi_strerror(err));
    return err;
}

static int raw_flush(img_disk_t *d)
{
    if (fdatasync(d->fd) < 0) {
        int err = -errno;
        VDI_LOG_ERR("image=%s flush failed: %s", d->path, vdi_strerror(err));
        return err;
    }
    return 0;
}

static int raw_discard(img_disk_t *d, uint64_t off, uint64_t len)
{
    if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0) {
        int err = -errno;
        /* Discard is advisory: a file system or device without hole punching keeps the data. */
        if (err == -EOPNOTSUPP || err == -ENOSYS)
            return 0;
        VDI_LOG_ERR_RL("image=%s discard at %" PRIu64 "+%" PRIu64 " failed: %s", d->path, off, len,
                       vdi_strerror(err));
        return err;
    }
    return 0;
}

static void raw_close(img_disk_t *d)
{
    VDI_UNUSED(d);
}

const struct img__ops img__raw_ops = {
    .name = "raw",
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .flush = raw_flush,
    .discard = raw_discard,
    .close = raw_close,
};

/* ---- open and dispatch -------------------------------------------------------------------- */

static int lock_fd(int fd, bool write)
{
    struct flock fl = {.l_type = write ? F_WRLCK : F_RDLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
        return errno == EACCES ? -EAGAIN : -errno;
    return 0;
}

static const char *file_kind(mode_t m)
{
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISDIR(m))
        return "a directory";
    return "not a regular file";
}

/* Is the resolved path @p @root itself or below it? @root is resolved, without a trailing slash
 * unless it is "/". */
static bool under_root(const char *root, const char *p)
{
    size_t n = strlen(root);
    if (n == 1)
        return p[0] == '/';
    return strncmp(p, root, n) == 0 && (p[n] == '/' || p[n] == 0);
}

/* Open the backing file @path for reading under the rules in the opening comment. Returns the fd
 * or a negative code, logged naming the image that names @path (chain->parent). */
static int open_backing(const char *path, const struct img__chain *chain)
{
    char *real = NULL;
    const char *target = path;
    struct stat st;
    int fd, err;

    if (chain->root) {
        real = realpath(path, NULL);
        if (!real) {
            err = -errno;
            VDI_LOG_ERR("image=%s backing file %s cannot be resolved: %s", chain->parent, path,
                        vdi_strerror(err));
            return err;
        }
        target = real;
    }
    /* Look before opening: opening a device can have effects of its own. */
    if (stat(target, &st) == 0 && !S_ISREG(st.st_mode)) {
        err = VDI_EBADIMAGE;
        VDI_LOG_ERR("image=%s backing file %s is %s, not a regular file: refused", chain->parent,
                    path, file_kind(st.st_mode));
        goto out;
    }
    if (real && !under_root(chain->root, real)) {
        err = -EPERM;
        VDI_LOG_ERR("image=%s backing file %s resolves to %s, outside %s: refused", chain->parent,
                    path, real, chain->root);
        goto out;
    }
    fd = open(target, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (real ? O_NOFOLLOW : 0));
    if (fd < 0) {
        err = -errno;
        VDI_LOG_ERR("image=%s backing file %s cannot be opened: %s", chain->parent, path,
                    vdi_strerror(err));
        goto out;
    }
    /* It may have been replaced between stat and open: what counts is what we opened. */
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        err = VDI_EBADIMAGE;
        VDI_LOG_ERR("image=%s backing file %s is not a regular file: refused", chain->parent, path);
        close(fd);
        goto out;
    }
    err = fd;
out:
    free(real);
    return err;
}

int img__open_chain(const char *path, unsigned flags, const char *fmt, struct img__chain *chain,
                    img_disk_t **out)
{
    bool rdonly = flags & IMG_OPEN_RDONLY;
    img_disk_t *d = vdi_xcalloc(1, sizeof(*d));
    struct stat st;
    int err;

    d->path = vdi_xstrdup(path);
    d->rdonly = rdonly;
    if (chain->depth > 0) {
        VDI_ASSERT(rdonly);
        d->fd = open_backing(path, chain);
        if (d->fd < 0) {
            err = d->fd;
            goto err_free;
        }
    } else {
        d->fd = open(path, (rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (d->fd < 0) {
            err = -errno;
            VDI_LOG_ERR("image=%s cannot be opened: %s", path, vdi_strerror(err));
            goto err_free;
        }
    }
    if (fstat(d->fd, &st) < 0) {
        err = -errno;
        VDI_LOG_ERR("image=%s stat failed: %s", path, vdi_strerror(err));
        goto err_close;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        err = -EINVAL;
        VDI_LOG_ERR("image=%s is neither a regular file nor a block device", path);
        goto err_close;
    }
    int fl = fcntl(d->fd, F_GETFL);
    if (fl < 0 || fcntl(d->fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        err = -errno;
        VDI_LOG_ERR("image=%s cannot clear O_NONBLOCK: %s", path, vdi_strerror(err));
        goto err_close;
    }
    for (int i = 0; i < chain->depth; i++)
        if (chain->dev[i] == st.st_dev && chain->ino[i] == st.st_ino) {
            err = VDI_EBADIMAGE;
            VDI_LOG_ERR("image=%s backing chain loops back to a file already in the chain", path);
            goto err_close;
        }
    if (chain->depth > IMG__MAX_CHAIN) {
        err = VDI_EBADIMAGE;
        VDI_LOG_ERR("image=%s backing chain is deeper than %d files", path, IMG__MAX_CHAIN);
        goto err_close;
    }
    chain->dev[chain->depth] = st.st_dev;
    chain->ino[chain->depth] = st.st_ino;

    if (!(flags & IMG_OPEN_NOLOCK)) {
        err = lock_fd(d->fd, !rdonly);
        if (err < 0) {
            if (err == -EAGAIN)
                VDI_LOG_ERR("image=%s is in use by another process (lock held)", path);
            else
                VDI_LOG_ERR("image=%s cannot be locked: %s", path, vdi_strerror(err));
            goto err_close;
        }
    }

    uint8_t magic[4] = {0};
    bool is_qcow2 = false;
    if (fmt && strcmp(fmt, "qcow2") == 0) {
        is_qcow2 = true;
    } else if (!fmt && !(flags & IMG_OPEN_RAW)) {
        ssize_t n = pread(d->fd, magic, sizeof(magic), 0);
        is_qcow2 = n == 4 && memcmp(magic, "QFI\xfb", 4) == 0;
    } else if (fmt && strcmp(fmt, "raw") != 0) {
        err = VDI_EBADIMAGE;
        VDI_LOG_ERR("image=%s has unsupported format '%s'", path, fmt);
        goto err_close;
    }

    if (is_qcow2) {
        d->ops = &img__qcow2_ops;
        err = img__qcow2_open(d, flags, chain);
        if (err < 0)
            goto err_close;
    } else {
        d->ops = &img__raw_ops;
        if (S_ISBLK(st.st_mode)) {
            if (ioctl(d->fd, BLKGETSIZE64, &d->size) < 0) {
                err = -errno;
                VDI_LOG_ERR("image=%s block device size unknown: %s", path, vdi_strerror(err));
                goto err_close;
            }
        } else {
            d->size = (uint64_t)st.st_size;
        }
    }
    *out = d;
    return 0;
err_close:
    close(d->fd);
err_free:
    free(d->path);
    free(d);
    return err;
}

int img_open(const char *path, unsigned flags, img_disk_t **out)
{
    struct img_open_opts o = {.flags = flags};
    return img_open_ex(path, &o, out);
}

int img_open_ex(const char *path, const struct img_open_opts *o, img_disk_t **out)
{
    struct img__chain chain = {0};
    char *root = NULL;
    int err;

    if (o->backing_root) {
        root = realpath(o->backing_root, NULL);
        if (!root) {
            err = -errno;
            VDI_LOG_ERR("image=%s backing root %s cannot be resolved: %s", path, o->backing_root,
                        vdi_strerror(err));
            return err;
        }
        chain.root = root;
    }
    err = img__open_chain(path, o->flags, NULL, &chain, out);
    free(root);
    return err;
}

uint64_t img_size(const img_disk_t *d)
{
    return d->size;
}

const char *img_format(const img_disk_t *d)
{
    return d->ops->name;
}

const char *img_path(const img_disk_t *d)
{
    return d->path;
}

bool img_read_only(const img_disk_t *d)
{
    return d->rdonly;
}

img_disk_t *img_backing(const img_disk_t *d)
{
    return d->backing;
}

static bool range_ok(const img_disk_t *d, size_t len, uint64_t off)
{
    return off <= d->size && len <= d->size - off;
}

int img_pread(img_disk_t *d, void *buf, size_t len, uint64_t off)
{
    if (!range_ok(d, len, off))
        return -EINVAL;
    if (len == 0)
        return 0;
    return d->ops->pread(d, buf, len, off);
}

int img_pwrite(img_disk_t *d, const void *buf, size_t len, uint64_t off)
{
    if (d->rdonly)
        return -EROFS;
    if (!range_ok(d, len, off))
        return -EINVAL;
    if (len == 0)
        return 0;
    return d->ops->pwrite(d, buf, len, off);
}

int img_flush(img_disk_t *d)
{
    if (d->rdonly)
        return 0;
    return d->ops->flush(d);
}

int img_discard(img_disk_t *d, uint64_t off, uint64_t len)
{
    if (d->rdonly)
        return -EROFS;
    if (!range_ok(d, (size_t)VDI_MIN(len, (uint64_t)SIZE_MAX), off) || len > d->size - off)
        return -EINVAL;
    if (len == 0)
        return 0;
    return d->ops->discard(d, off, len);
}

void img_close(img_disk_t *d)
{
    if (!d)
        return;
    d->ops->close(d);
    if (d->backing)
        img_close(d->backing);
    close(d->fd);
    free(d->path);
    free(d);
}

int img_check(const char *path, bool repair, struct img_check_result *res)
{
    img_disk_t *d;
    memset(res, 0, sizeof(*res));
    /* A writable open of a dirty image repairs it already; open without that for a plain
     * check so the report shows what was wrong. */
    int err = img_open(path, repair ? 0 : IMG_OPEN_RDONLY, &d);
    if (err < 0)
        return err;
    if (d->q)
        err = img__qcow2_check(d, repair, res);
    img_close(d);
    return err;
}
