/* golden-images/create.c: creating empty images and overlays. */
#define VDI_LOG_TAG "img"
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/internal.h"

int img_create(const char *path, const struct img_create_opts *o)
{
    const char *fmt = o->format ? o->format : "qcow2";
    uint64_t size = o->size;
    const char *bfmt = o->backing_fmt;
    uint32_t cs = o->cluster_size ? o->cluster_size : 65536;
    int err;

    if (strcmp(fmt, "raw") == 0) {
        if (o->backing) {
            VDI_LOG_ERR("image=%s: a raw image cannot have a backing file", path);
            return -EINVAL;
        }
        int fd =
            open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (o->overwrite ? O_TRUNC : O_EXCL), 0644);
        if (fd < 0) {
            err = -errno;
            VDI_LOG_ERR("image=%s cannot be created: %s", path, vdi_strerror(err));
            return err;
        }
        err = ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
        close(fd);
        if (err < 0)
            VDI_LOG_ERR("image=%s cannot be sized: %s", path, vdi_strerror(err));
        return err;
    }
    if (strcmp(fmt, "qcow2") != 0) {
        VDI_LOG_ERR("image=%s: unknown format '%s' (raw or qcow2)", path, fmt);
        return -EINVAL;
    }
    if (cs < 4096 || cs > (2u << 20) || (cs & (cs - 1))) {
        VDI_LOG_ERR("image=%s: cluster size %u is not a power of two from 4 KiB to 2 MiB", path,
                    cs);
        return -EINVAL;
    }
    char *bfmt_owned = NULL;
    if (o->backing) {
        img_disk_t *b;
        char *bpath = img__qcow2_backing_path(path, o->backing);
        /* Opened as the backing file it will be (depth 1): a regular file, like any other. */
        err = img__open_chain(bpath, IMG_OPEN_RDONLY | IMG_OPEN_NOLOCK, bfmt,
                              &(struct img__chain){.depth = 1, .parent = path}, &b);
        free(bpath);
        if (err < 0) {
            VDI_LOG_ERR("image=%s: backing file '%s' cannot be used: %s", path, o->backing,
                        vdi_strerror(err));
            return err;
        }
        if (size == 0)
            size = img_size(b);
        if (!bfmt)
            bfmt = bfmt_owned = vdi_xstrdup(img_format(b));
        img_close(b);
    }
    /* qcow2 sizes are whole 512-byte sectors to QEMU, which rounds a header's size down: round
     * up instead (as qemu-img does), so that no byte of a converted image is cut off. */
    size = (size + 511) & ~511ull;
    err =
        img__qcow2_create(path, size, (uint32_t)__builtin_ctz(cs), o->backing, bfmt, !o->overwrite);
    free(bfmt_owned);
    return err;
}
