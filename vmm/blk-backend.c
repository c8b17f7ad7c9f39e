/* vmm/blk-backend.c: disk back-ends for virtio-blk.
 *  - img: disk image files through golden-images/ (qcow2 or raw, found from the first bytes;
 *    locked against a second writer). A thin adapter: struct vmm_blk_ops maps onto img_*.
 *  - raw: a host block device accessed with pread/pwrite; flush is fdatasync; discard punches a
 *    hole.
 * A read-only disk is opened read-only underneath, so not even a bug here could write it.
 */
#define VDI_LOG_TAG "vmm"
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "golden-images/img.h"
#include "vmm/pci-internal.h"

struct raw_blk {
    struct vmm_blk base;
    int fd;
};

static int raw_pread(struct vmm_blk *b, void *buf, size_t len, uint64_t off)
{
    struct raw_blk *r = vdi_container_of(b, struct raw_blk, base);
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(r->fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0) {
            memset(p, 0, len); /* past the end of a file that shrank: zeroes */
            return 0;
        }
        p += n;
        len -= n;
        off += n;
    }
    return 0;
}

static int raw_pwrite(struct vmm_blk *b, const void *buf, size_t len, uint64_t off)
{
    struct raw_blk *r = vdi_container_of(b, struct raw_blk, base);
    const uint8_t *p = buf;
    if (b->read_only)
        return -EROFS;
    while (len > 0) {
        ssize_t n = pwrite(r->fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= n;
        off += n;
    }
    return 0;
}

static int raw_flush(struct vmm_blk *b)
{
    struct raw_blk *r = vdi_container_of(b, struct raw_blk, base);
    if (b->read_only)
        return 0;
    return fdatasync(r->fd) < 0 ? -errno : 0;
}

static int raw_discard(struct vmm_blk *b, uint64_t off, uint64_t len)
{
    struct raw_blk *r = vdi_container_of(b, struct raw_blk, base);
    if (b->read_only)
        return -EROFS;
    if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0 &&
        errno != EOPNOTSUPP)
        return -errno;
    return 0; /* discard is advisory: unsupported file systems just keep the data */
}

static void raw_close(struct vmm_blk *b)
{
    struct raw_blk *r = vdi_container_of(b, struct raw_blk, base);
    close(r->fd);
    free(r);
}

static const struct vmm_blk_ops raw_ops = {
    .name = "raw",
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .flush = raw_flush,
    .discard = raw_discard,
    .close = raw_close,
};

int vmm__blk_open_raw(const char *path, bool read_only, struct vmm_blk **out)
{
    struct raw_blk *r;
    struct stat st;
    uint64_t size;
    int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    int err;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        err = -errno;
        goto err_close;
    }
    if (S_ISBLK(st.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
            err = -errno;
            goto err_close;
        }
    } else if (S_ISREG(st.st_mode)) {
        size = (uint64_t)st.st_size;
    } else {
        err = -EINVAL;
        goto err_close;
    }
    r = vdi_xcalloc(1, sizeof(*r));
    r->base.ops = &raw_ops;
    r->base.size = size;
    r->base.read_only = read_only;
    r->fd = fd;
    *out = &r->base;
    return 0;
err_close:
    close(fd);
    return err;
}

/* ---- golden-images adapter ---------------------------------------------------------------- */
struct img_blk {
    struct vmm_blk base;
    img_disk_t *disk;
};

static img_disk_t *img_of(struct vmm_blk *b)
{
    return vdi_container_of(b, struct img_blk, base)->disk;
}

static int img_blk_pread(struct vmm_blk *b, void *buf, size_t len, uint64_t off)
{
    return img_pread(img_of(b), buf, len, off);
}

static int img_blk_pwrite(struct vmm_blk *b, const void *buf, size_t len, uint64_t off)
{
    return img_pwrite(img_of(b), buf, len, off);
}

static int img_blk_flush(struct vmm_blk *b)
{
    return img_flush(img_of(b));
}

static int img_blk_discard(struct vmm_blk *b, uint64_t off, uint64_t len)
{
    return img_discard(img_of(b), off, len);
}

static void img_blk_close(struct vmm_blk *b)
{
    struct img_blk *ib = vdi_container_of(b, struct img_blk, base);
    img_close(ib->disk);
    free(ib);
}

static const struct vmm_blk_ops img_blk_ops = {
    .name = "img",
    .pread = img_blk_pread,
    .pwrite = img_blk_pwrite,
    .flush = img_blk_flush,
    .discard = img_blk_discard,
    .close = img_blk_close,
};

int vmm__blk_open(const char *path, bool read_only, const char *backing_root, struct vmm_blk **out)
{
    struct stat st;
    img_disk_t *disk;
    int err;

    if (stat(path, &st) < 0)
        return -errno;
    if (S_ISBLK(st.st_mode))
        return vmm__blk_open_raw(path, read_only, out);
    struct img_open_opts o = {.flags = read_only ? IMG_OPEN_RDONLY : 0,
                              .backing_root = backing_root};
    err = img_open_ex(path, &o, &disk);
    if (err < 0)
        return err;
    struct img_blk *ib = vdi_xcalloc(1, sizeof(*ib));
    ib->base.ops = &img_blk_ops;
    ib->base.size = img_size(disk);
    ib->base.read_only = read_only;
    ib->disk = disk;
    *out = &ib->base;
    return 0;
}
