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
    void (*close)(
        img_disk_t *d); /* frees format state; the fd and struct are freed by the caller */
};

/* The chain being opened, to detect backing loops (by device and inode), and the directory its
 * backing files must stay under (img_open_opts.backing_root, resolved; NULL: anywhere). */
struct img__chain {
    const char *root;
    const char *parent; /* the image naming the file being opened (for messages) */
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
    img_disk_t *backing;  /* qcow2 only; owned */
    struct img__qcow2 *q; /* qcow2 state */
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

/* ---- qcow2 (qcow2.c) ---------------------------------------------------------------------- */

#define IMG__QCOW2_INCOMPAT_DIRTY       (1ULL << 0)
#define IMG__QCOW2_INCOMPAT_CORRUPT     (1ULL << 1)
#define IMG__QCOW2_INCOMPAT_COMPRESSION (1ULL << 3)
#define IMG__QCOW2_EXT_BACKING_FMT      0xe2792acaU
#define IMG__QCOW2_EXT_FEATURES         0x6803f857U
#define IMG__QCOW2_EXT_CRYPTO           0x0537be77U
#define IMG__QCOW2_EXT_DATA_FILE        0x44415441U
/* Limits on what an image may claim, so a hostile header cannot make us allocate wildly. */
#define IMG__QCOW2_MAX_SIZE     (1ULL << 55) /* 32 PiB */
#define IMG__QCOW2_MAX_L1_BYTES (32ULL << 20)
#define IMG__QCOW2_MAX_RT_BYTES (64ULL << 20)

struct img__qcow2_feature {
    uint8_t type, bit;
    char *name;
};

struct img__qcow2 {
    uint32_t version;
    uint32_t cluster_bits, l2_bits, refcount_order, header_length;
    uint64_t cluster_size, l2_entries, rb_entries;
    uint64_t virtual_size;
    uint64_t incompat, compat, autoclear;
    uint8_t compression_type; /* 0 zlib, 1 zstd */
    uint64_t backing_off;
    uint32_t backing_len;
    char *backing_name, *backing_fmt;
    struct img__qcow2_feature *features;
    size_t n_features;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;

    uint64_t l1_offset;
    uint32_t l1_size;
    uint64_t *l1; /* host byte order */
    bool l1_dirty;
    uint64_t **l2; /* [l1_size] cached L2 tables (host byte order) or NULL */
    uint8_t *l2_dirty;

    uint64_t rt_offset;
    uint32_t rt_clusters;
    uint64_t rt_entries;
    uint64_t *rt;
    bool rt_dirty;
    uint8_t **rb; /* [rt_entries] cached refcount blocks (file byte order) or NULL */
    uint8_t *rb_dirty;

    size_t cache_bytes;
    uint64_t file_size; /* bytes in the file as far as we know */
    uint64_t end;       /* first cluster-aligned offset past everything allocated */
    uint64_t free_hint; /* first cluster index that may be free */
    struct {
        uint64_t cluster, n;
    } * pending; /* references dropped at the next flush */
    size_t n_pending, cap_pending;
    bool dirty_set;

    uint8_t *wbuf;   /* one cluster: copy-up and table serialisation */
    uint8_t *cbuf;   /* compressed input */
    uint8_t *dcache; /* the last decompressed cluster */
    uint64_t dcache_host;
    bool dcache_valid;
    void *zstd; /* ZSTD_DCtx */
};

int img__qcow2_parse_header(img_disk_t *d, const uint8_t *h, size_t hlen);
char *img__qcow2_backing_path(const char *image, const char *name);
uint64_t img__qcow2_rc_max(const struct img__qcow2 *q);
int img__qcow2_get_refcount(img_disk_t *d, uint64_t cluster, uint64_t *rc);
int img__qcow2_set_refcount(img_disk_t *d, uint64_t cluster, uint64_t rc);
int img__qcow2_check(img_disk_t *d, bool repair, struct img_check_result *res);
/* Is the guest cluster holding @off allocated in this layer (data, zero or compressed)? */
int img__qcow2_allocated(img_disk_t *d, uint64_t off, bool *alloc);
/* Rewrite the header's backing file name and format (NULL name: no backing). The disk must be
 * writable; the backing disk already open is not changed. */
int img__qcow2_set_backing(img_disk_t *d, const char *name, const char *fmt);
/* Write a new, empty qcow2 v3 image (O(1) in @size: the L1 table is a hole). @backing as
 * stored in the header (relative to the new file's directory, or absolute) or NULL. */
int img__qcow2_create(const char *path, uint64_t size, uint32_t cluster_bits, const char *backing,
                      const char *backing_fmt, bool excl);

#endif /* VDI_GOLDEN_IMAGES_INTERNAL_H */
