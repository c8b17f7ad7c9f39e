/* golden-images/img.h: disk images (raw and qcow2 v3, our own implementation) for vdi-vmm's
 * virtio-blk and for `vdictl image`.
 *
 * A disk is opened by path; its format is found from its first bytes (qcow2 magic, else raw).
 * A qcow2 image's backing chain is opened read-only and reads fall through it; writes allocate in
 * the top image, copying up partial clusters. The top image is locked with an fcntl OFD lock
 * (write lock when writable, read lock when read-only; backing files get read locks), so two
 * processes can never write one image and nobody writes a golden image that is in use.
 *
 * Threads: one disk is used by one thread at a time; the caller serialises every call on one
 * img_disk_t (vdi-vmm's virtio-blk runs them on its I/O thread). Different disks are independent.
 * Errors: 0, -errno or VDI_EBADIMAGE (corrupt or unsupported image); failures are logged once,
 * naming the file and the problem.
 */
#ifndef VDI_GOLDEN_IMAGES_IMG_H
#define VDI_GOLDEN_IMAGES_IMG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct img_disk img_disk_t; /* opaque */

/* img_open() flags. */
#define IMG_OPEN_RDONLY 0x1u /* read-only: no write, discard or repair; a shared (read) lock */
#define IMG_OPEN_NOLOCK 0x2u /* take no lock (inspection tools only: `vdictl image info`) */
#define IMG_OPEN_RAW    0x4u /* treat the file as raw whatever its first bytes say */

/* Open the disk image at @path. On success *out holds a new disk that the caller owns; release
 * it with img_close(). A qcow2 image that was not closed cleanly (dirty flag set) is repaired
 * (leaked clusters reclaimed) when opened writable. Returns 0, -errno (-EAGAIN: another process
 * holds a conflicting lock; -ENOENT: the file or a backing file is missing) or VDI_EBADIMAGE. */
int img_open(const char *path, unsigned flags, img_disk_t **out);

/* Virtual size in bytes. */
uint64_t img_size(const img_disk_t *d);

/* "raw" or "qcow2". Static string. */
const char *img_format(const img_disk_t *d);

/* Path the disk was opened with; valid until img_close(). */
const char *img_path(const img_disk_t *d);

/* The backing disk of a qcow2 image, or NULL. Borrowed: owned by @d. */
img_disk_t *img_backing(const img_disk_t *d);

/* Read @len bytes at virtual offset @off into @buf. The range must lie within img_size()
 * (-EINVAL otherwise). Returns 0 when all bytes were read, -errno or VDI_EBADIMAGE. */
int img_pread(img_disk_t *d, void *buf, size_t len, uint64_t off);

/* Write @len bytes from @buf at virtual offset @off (within img_size()). Returns 0, -EROFS on a
 * read-only disk, -errno or VDI_EBADIMAGE. Data is durable only after img_flush(). */
int img_pwrite(img_disk_t *d, const void *buf, size_t len, uint64_t off);

/* Make every completed write durable. qcow2: data first, then refcounts, then L2 tables, then
 * the L1 table, each step synced, so a crash never leaves metadata pointing at unwritten data.
 * Returns 0 or -errno. */
int img_flush(img_disk_t *d);

/* Discard (guest TRIM) the whole clusters inside [@off, @off + @len): qcow2 frees them in the top
 * image (they read as zeros afterwards, never as the backing file's data); raw punches a hole.
 * Partial clusters at the edges are left alone. Returns 0, -EROFS, -errno or VDI_EBADIMAGE. */
int img_discard(img_disk_t *d, uint64_t off, uint64_t len);

/* Flush, clear the dirty flag, unlock and free. NULL does nothing. */
void img_close(img_disk_t *d);

/* ---- Creating ----------------------------------------------------------------------------- */

struct img_create_opts {
    const char *format;      /* "qcow2" (default) or "raw" */
    uint64_t size;           /* bytes; 0 = the backing file's size */
    uint32_t cluster_size;   /* qcow2: a power of two from 4 KiB to 2 MiB; 0 = 64 KiB */
    const char *backing;     /* qcow2: backing file as stored in the header (absolute, or relative
                              * to the new image's directory), or NULL */
    const char *backing_fmt; /* "raw" or "qcow2"; NULL = found from the backing file */
    bool overwrite;          /* replace an existing file (default: -EEXIST) */
};

/* Create an empty image at @path (an overlay when @o->backing is set). O(1) in the virtual size:
 * a few clusters of metadata are written, the L1 table is a hole. The backing chain is opened
 * read-only to validate it and take its size and format. Returns 0, -errno or VDI_EBADIMAGE.
 * Thread: any (blocks on I/O; keep it off an event loop). */
int img_create(const char *path, const struct img_create_opts *o);

/* ---- Checking ----------------------------------------------------------------------------- */

/* What img_check() found. Counts are clusters. */
struct img_check_result {
    uint64_t errors, errors_fixed, errors_left; /* refcount too low, bad flags, bad pointers */
    uint64_t leaks, leaks_fixed, leaks_left;    /* refcount too high (no harm but wasted space) */
    uint64_t allocated, compressed;             /* guest clusters in the top image */
};

/* Check the qcow2 image at @path (refcounts against references, flags, pointers); with @repair
 * open it writable and fix what can be fixed. A raw image has nothing to check (all zeros).
 * Returns 0 (see @res for what was found), -errno or VDI_EBADIMAGE. */
int img_check(const char *path, bool repair, struct img_check_result *res);

#endif /* VDI_GOLDEN_IMAGES_IMG_H */
