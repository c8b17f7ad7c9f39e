/* golden-images/img.h: disk images (raw and qcow2 v3, our own implementation) for vdi-vmm's
 * virtio-blk and for `vdictl image`.
 *
 * A disk is opened by path; its format is found from its first bytes (qcow2 magic, else raw).
 * A qcow2 image's backing chain is opened read-only and reads fall through it; writes allocate in
 * the top image, copying up partial clusters. The top image is locked with an fcntl OFD lock
 * (write lock when writable, read lock when read-only; backing files get read locks), so two
 * processes can never write one image and nobody writes a golden image that is in use.
 *
 * Backing files are image content, so a crafted image chooses them: a backing file must always be
 * a regular file (never a block or character device, FIFO, socket or directory), and
 * img_open_ex() can also confine the whole chain to one directory (the catalogue does, for its
 * versions; vdi-vmm does, for a desktop's overlay), so that no image can pull a host file such as
 * /etc/shadow into a disk. A backing file that breaks either rule is refused with an error naming
 * the image and the backing path.
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

/* img_open_ex() options. Borrowed for the call. */
struct img_open_opts {
    unsigned flags; /* IMG_OPEN_* */
    /* NULL: backing files may lie anywhere (they must still be regular files). Else a directory:
     * every backing file in the chain must resolve (symlinks and ".." followed, as realpath(3)
     * does) to a regular file under it, and is opened by that resolved path with O_NOFOLLOW and
     * checked again with fstat. The image at @path itself is not confined. */
    const char *backing_root;
};

/* img_open() with options. Returns what img_open() does; a backing file outside
 * @o->backing_root is -EPERM, a backing file that is not a regular file VDI_EBADIMAGE. */
int img_open_ex(const char *path, const struct img_open_opts *o, img_disk_t **out);

/* Virtual size in bytes. */
uint64_t img_size(const img_disk_t *d);

/* "raw" or "qcow2". Static string. */
const char *img_format(const img_disk_t *d);

/* Path the disk was opened with; valid until img_close(). */
const char *img_path(const img_disk_t *d);

/* Whether the disk was opened read-only (IMG_OPEN_RDONLY): writes and discards fail with -EROFS. */
bool img_read_only(const img_disk_t *d);

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

/* ---- Inspecting, converting, committing, rebasing ------------------------------------------ */

/* Progress of a long operation: @done of @total bytes. Called from the calling thread. */
typedef void (*img_progress_fn)(uint64_t done, uint64_t total, void *ctx);

struct img_info {
    const char *format;      /* "raw" or "qcow2" (static) */
    uint64_t virtual_size;   /* bytes */
    uint64_t file_size;      /* bytes of the file */
    uint64_t disk_usage;     /* bytes the file occupies on disk */
    uint32_t cluster_size;   /* qcow2 */
    uint32_t version;        /* qcow2: 2 or 3 */
    uint32_t refcount_bits;  /* qcow2 */
    const char *compression; /* qcow2: "zlib" or "zstd" (static) */
    bool dirty, corrupt;     /* qcow2 incompatible feature bits */
    char *backing;           /* as stored in the header, or NULL; owned, see img_info_free() */
    char *backing_fmt;       /* or NULL; owned */
    uint32_t chain_depth;    /* number of backing files below */
};
/* Describe the image at @path (opened read-only, without lock). Returns 0, -errno or
 * VDI_EBADIMAGE; on success release with img_info_free(). */
int img_info(const char *path, struct img_info *out);
void img_info_free(struct img_info *info);

struct img_convert_opts {
    const char *format;    /* "qcow2" (default) or "raw" */
    uint32_t cluster_size; /* qcow2; 0 = 64 KiB */
    bool overwrite;
    /* By default every backing file of @src must lie under @src's directory (see
     * img_open_opts.backing_root); true lifts that rule (backing files must still be regular
     * files). Only for an admin who checked where the chain points. */
    bool allow_backing_outside;
    img_progress_fn progress; /* optional */
    void *ctx;
};
/* Copy what the disk at @src shows (its whole backing chain flattened) into a new image @dst.
 * Zero ranges are left unallocated (sparse). Returns 0, -errno (-EPERM: a backing file outside
 * @src's directory) or VDI_EBADIMAGE; @dst is removed on failure. */
int img_convert(const char *src, const char *dst, const struct img_convert_opts *o);

/* Write every cluster allocated in the qcow2 overlay @path into its backing file (opened
 * writable for this). The overlay is left as it is. Returns 0, -EINVAL (no backing file),
 * -errno or VDI_EBADIMAGE. */
int img_commit(const char *path, img_progress_fn progress, void *ctx);

/* Make @backing (as it will be stored: absolute or relative to @path's directory; NULL for none)
 * the backing file of the qcow2 image @path. Safe mode first copies into @path every cluster it
 * does not hold whose contents differ between the old and the new backing chain, so what the
 * image shows is unchanged; @unsafe only rewrites the header. */
int img_rebase(const char *path, const char *backing, const char *backing_fmt, bool unsafe,
               img_progress_fn progress, void *ctx);

/* ---- The image catalogue ------------------------------------------------------------------ *
 * Under STATE/images/NAME/: one directory per version (v1, v2, ...) holding disk.qcow2, the boot
 * files (kernel, initrd, cmdline) and manifest.json (version, parent, created, sha256 of each
 * file, notes); `current` names the current version. A version never changes once published
 * (files are made read-only). A version is in use while desktops hold references to it
 * (img_catalog_ref/unref: one file per holder under vN/refs/) or a later version's disk is an
 * overlay on it; it cannot be removed then, nor while it is current.
 * Locks (flock on NAME/.lock): clones and references take a shared one, changes an exclusive one
 * held only for moments: import and publish copy and hash into NAME/.tmp-XXXXXX/ without the
 * lock and take it only to number the version and rename it into place. So vdid and vdictl may
 * work on one catalogue at once, and a clone never waits for an import's copy (docs/images.md).
 * Thread: any; calls block on file I/O (keep them off the loop).
 */
typedef struct img_catalog img_catalog_t; /* opaque */

/* Open (creating STATE/images/ if missing) the catalogue under @state_dir. Removes what imports
 * or publishes that died mid-copy left behind (.tmp- directories nobody holds). */
int img_catalog_open(const char *state_dir, img_catalog_t **out);
void img_catalog_close(img_catalog_t *cat);

struct img_import_opts {
    const char *disk;   /* raw or qcow2 (a chain is flattened); required */
    const char *kernel; /* boot files, optional */
    const char *initrd;
    const char *cmdline; /* kernel command line text, optional */
    const char *notes;   /* free text for the manifest, optional */
    /* A version made by a patch (vdid's `image patch`): the manifest's "patch" object gets its id,
     * the script's exit status and its output (the last 64 KiB of it). NULL: not a patch. */
    const char *patch_id;
    const char *patch_output;
    int patch_exit;
    uint32_t cluster_size; /* 0 = 64 KiB */
    bool make_current;     /* also make it current (always for the first version) */
    img_progress_fn progress;
    void *ctx;
};
/* Import a new version of image @name (created if new: [A-Za-z0-9._-], 1-64 characters, not
 * starting with a dot). *version gets its number. Concurrent imports of one image (threads or
 * processes) all succeed, with distinct numbers. The backing chain of @o->disk must stay under
 * @o->disk's directory (img_convert() without allow_backing_outside; there is no way around it
 * here). Returns 0, -EINVAL, -EPERM, -errno or VDI_EBADIMAGE. */
int img_catalog_import(img_catalog_t *cat, const char *name, const struct img_import_opts *o,
                       uint32_t *version);

/* Publish the qcow2 overlay @overlay, whose backing file is a version of @name (e.g. a clone
 * patched by a maintenance VM), as the next version: its disk stays an overlay on that version
 * (which becomes referenced by it); boot files are copied from that version unless @o names new
 * ones (@o->disk is ignored). The overlay's backing chain must stay inside the catalogue. */
int img_catalog_publish(img_catalog_t *cat, const char *name, const char *overlay,
                        const struct img_import_opts *o, uint32_t *version);

/* Names of all images, sorted; free each and the array. */
int img_catalog_list(img_catalog_t *cat, char ***names, size_t *n);
/* Versions of @name in ascending order (free the array). */
int img_catalog_versions(img_catalog_t *cat, const char *name, uint32_t **versions, size_t *n);
int img_catalog_current(img_catalog_t *cat, const char *name, uint32_t *version);
int img_catalog_set_current(img_catalog_t *cat, const char *name, uint32_t version);
/* The manifest of a version (0 = current) as JSON text; caller frees. */
int img_catalog_manifest(img_catalog_t *cat, const char *name, uint32_t version, char **json);
/* Path of @file ("disk.qcow2", "kernel", "initrd", "cmdline", "manifest.json") of a version
 * (0 = current); caller frees. -ENOENT when that version has no such file. */
int img_catalog_path(img_catalog_t *cat, const char *name, uint32_t version, const char *file,
                     char **path);

/* Desktop references (the broker calls these). @holder: [A-Za-z0-9._-], e.g. a desktop id.
 * Taking a reference twice is one reference; dropping a missing one is -ENOENT. */
int img_catalog_ref(img_catalog_t *cat, const char *name, uint32_t version, const char *holder);
int img_catalog_unref(img_catalog_t *cat, const char *name, uint32_t version, const char *holder);
/* How many desktops and later versions use a version. */
int img_catalog_users(img_catalog_t *cat, const char *name, uint32_t version, size_t *desktops,
                      size_t *children);

/* Remove a version nothing uses (VDI_EINUSE otherwise, or when it is current); removing the last
 * version removes the image. */
int img_catalog_remove(img_catalog_t *cat, const char *name, uint32_t version);

/* Create the overlay @dest on version @version (0 = current) of @name, in O(1); with @holder,
 * also take a reference for it. *used gets the version. */
int img_catalog_clone(img_catalog_t *cat, const char *name, uint32_t version, const char *dest,
                      const char *holder, uint32_t *used);

/* Recompute the sha256 of every file of a version and compare with its manifest. Returns 0, or
 * VDI_ECORRUPT (each mismatch logged, naming the file), -errno. */
int img_catalog_verify(img_catalog_t *cat, const char *name, uint32_t version);

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

/* ---- Command line ------------------------------------------------------------------------- */

/* `vdictl image ...`: argv[0] is "image". Returns the exit status (0, 1 failure, 2 usage; check
 * also 2 errors found, 3 leaks only). Thread: main. */
int img_cli_main(int argc, char **argv);

#endif /* VDI_GOLDEN_IMAGES_IMG_H */
