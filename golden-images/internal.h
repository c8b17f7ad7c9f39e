/* golden-images/internal.h: shared between the files of golden-images/ (and its tests) only. */
#ifndef VDI_GOLDEN_IMAGES_INTERNAL_H
#define VDI_GOLDEN_IMAGES_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "golden-images/img.h"

/* How deep a backing chain may go before we call it a loop or an absurdity. */
#define IMG__MAX_CHAIN 64

/* One image format: raw or qcow2. */
struct img__ops {
    const char *name;
    int (*pread)(img_disk_t *d, void *buf, size_t len, uint64_t off);
    int (*pwrite)(img_disk_t *d, const void *buf, size_t len, uint64_t off);
    int (*flush)(img_disk_t *d);
    int (*discard)(img_disk_t *d, uint64_t off, uint64_t len);
    void (*close)(img_disk_t *d); /* frees format state; the fd and struct are freed by the caller */
};

/* The chain being opened, to detect backing loops (by device and inode). */
struct img__chain {
    int depth;
    dev_t dev[IMG__MAX_CHAIN + 1];
    ino_t ino[IMG__MAX_CHAIN + 1];
};

struct img__qcow2;

struct img_disk {
    const struct img__ops *ops;
    char *path;
    int fd;
    bool rdonly;
    uint64_t size;
    img_disk_t *backing;   /* qcow2 only; owned */
    struct img__qcow2 *q;  /* qcow2 state */
};

extern const struct img__ops img__raw_ops;
extern const struct img__ops img__qcow2_ops;

/* Open @path as one link of a chain. @fmt: "raw", "qcow2" or NULL (probe by magic). */
int img__open_chain(const char *path, unsigned flags, const char *fmt, struct img__chain *chain,
                    img_disk_t **out);

/* qcow2.c: set up d->q (and d->backing) for an open fd. */
int img__qcow2_open(img_disk_t *d, unsigned flags, struct img__chain *chain);

/* Full pread/pwrite on a file descriptor: 0, -errno, or -EIO on a short read past EOF. */
int img__pread_full(int fd, void *buf, size_t len, uint64_t off);
int img__pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* Big-endian helpers. */
static inline uint64_t img__be64(const void *p)
{
    const uint8_t *b = p;
    return ((uint64_t)b[0] << 56) | ((uint64_t)b[1] << 48) | ((uint64_t)b[2] << 40) |
           ((uint64_t)b[3] << 32) | ((uint64_t)b[4] << 24) | ((uint64_t)b[5] << 16) |
           ((uint64_t)b[6] << 8) | b[7];
}
static inline uint32_t img__be32(const void *p)
{
    const uint8_t *b = p;
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}
static inline uint16_t img__be16(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)((b[0] << 8) | b[1]);
}
static inline void img__put_be64(void *p, uint64_t v)
{
    uint8_t *b = p;
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}
static inline void img__put_be32(void *p, uint32_t v)
{
    uint8_t *b = p;
    for (int i = 3; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}
static inline void img__put_be16(void *p, uint16_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

#endif /* VDI_GOLDEN_IMAGES_INTERNAL_H */
