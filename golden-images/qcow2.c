/* golden-images/qcow2.c: qcow2 (version 3, compat 1.1; version 2 read-only) reading and writing.
 *
 * Layout (docs/interop/qcow2.txt in QEMU): a header in cluster 0 with extensions (backing format,
 * feature names); a two-level map from guest clusters to host clusters (L1 table -> L2 tables ->
 * data clusters, or zero / compressed descriptors); a two-level refcount structure (refcount
 * table -> refcount blocks) saying how many references each host cluster has.
 *
 * Design:
 * - The L1 and refcount tables live in memory. L2 tables and refcount blocks are cached in arrays
 *   indexed by their table index (O(1) lookup); the cache is trimmed between requests, never
 *   inside one, so pointers into it stay valid for the length of one request.
 * - Writes to a cluster the image already owns (COPIED flag) go straight to the file. Any other
 *   write allocates a new cluster, fills it (copy-up: backing data, zeros or the decompressed
 *   old cluster around the new bytes) and points the L2 entry at it in the cache.
 * - Metadata reaches the file only on flush (or when the cache is trimmed), in this order, each
 *   step synced: data and refcount blocks, the refcount table, L2 tables, the L1 table. So the
 *   file never holds a table that points at unwritten data; a crash can only leak clusters
 *   (refcount 1, no reference), which the repair on the next open reclaims.
 * - Freed clusters (discard, overwritten compressed clusters) are released only after the next
 *   flush has removed every on-disk reference to them, so they cannot be reused while the file
 *   still points at them.
 * - The dirty bit (incompatible feature bit 0) is set before the first change after open and
 *   cleared on a clean close.
 */
#define VDI_LOG_TAG "img"
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "common/vdi.h"
#include "golden-images/internal.h"

#define L1E_OFFSET_MASK       0x00fffffffffffe00ULL
#define L2E_OFFSET_MASK       0x00fffffffffffe00ULL
#define RTE_OFFSET_MASK       0xfffffffffffffe00ULL
#define QCOW_OFLAG_COPIED     (1ULL << 63)
#define QCOW_OFLAG_COMPRESSED (1ULL << 62)
#define QCOW_OFLAG_ZERO       1ULL
#define L1E_RESERVED          0x7f000000000001ffULL
#define L2E_RESERVED          0x3f000000000001feULL

/* Trim the table cache past this many bytes (between requests). */
#define CACHE_CAP (32u << 20)

/* ---- helpers ------------------------------------------------------------------------------ */

static bool is_aligned(const struct img__qcow2 *q, uint64_t off)
{
    return (off & (q->cluster_size - 1)) == 0;
}

/* Does [off, off+len) overlap a fixed metadata area (header, L1 table, refcount table)? */
static bool overlaps_fixed(const struct img__qcow2 *q, uint64_t off, uint64_t len)
{
    uint64_t l1_len = (uint64_t)q->l1_size * 8;
    uint64_t rt_len = (uint64_t)q->rt_clusters * q->cluster_size;
    if (off < q->cluster_size)
        return true;
    if (l1_len && off < q->l1_offset + l1_len && q->l1_offset < off + len)
        return true;
    if (off < q->rt_offset + rt_len && q->rt_offset < off + len)
        return true;
    return false;
}

static int corrupt(img_disk_t *d, const char *what)
{
    VDI_LOG_ERR_RL("image=%s is corrupt: %s", d->path, what);
    return VDI_EBADIMAGE;
}

/* ---- refcounts ---------------------------------------------------------------------------- */

static uint64_t rc_get_raw(const struct img__qcow2 *q, const uint8_t *blk, uint64_t idx)
{
    switch (q->refcount_order) {
    case 0:
        return (blk[idx / 8] >> (idx % 8)) & 1;
    case 1:
        return (blk[idx / 4] >> (2 * (idx % 4))) & 3;
    case 2:
        return (blk[idx / 2] >> (4 * (idx % 2))) & 15;
    case 3:
        return blk[idx];
    case 4:
        return img__be16(blk + 2 * idx);
    case 5:
        return img__be32(blk + 4 * idx);
    default:
        return img__be64(blk + 8 * idx);
    }
}

static void rc_set_raw(const struct img__qcow2 *q, uint8_t *blk, uint64_t idx, uint64_t v)
{
    switch (q->refcount_order) {
    case 0:
    case 1:
    case 2: {
        unsigned bits = 1u << q->refcount_order, per = 8 / bits;
        unsigned shift = bits * (unsigned)(idx % per);
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << shift);
        blk[idx / per] = (uint8_t)((blk[idx / per] & ~mask) | ((v << shift) & mask));
        break;
    }
    case 3:
        blk[idx] = (uint8_t)v;
        break;
    case 4:
        img__put_be16(blk + 2 * idx, (uint16_t)v);
        break;
    case 5:
        img__put_be32(blk + 4 * idx, (uint32_t)v);
        break;
    default:
        img__put_be64(blk + 8 * idx, v);
        break;
    }
}

uint64_t img__qcow2_rc_max(const struct img__qcow2 *q)
{
    return q->refcount_order == 6 ? UINT64_MAX : (1ULL << (1u << q->refcount_order)) - 1;
}

/* Load refcount block @rti into the cache. *out = NULL when the table has no block there. */
static int rb_load(img_disk_t *d, uint64_t rti, uint8_t **out)
{
    struct img__qcow2 *q = d->q;
    *out = NULL;
    if (rti >= q->rt_entries)
        return 0;
    if (q->rb[rti]) {
        *out = q->rb[rti];
        return 0;
    }
    uint64_t off = q->rt[rti] & RTE_OFFSET_MASK;
    if (!off)
        return 0;
    if (q->rt[rti] & 0x1ff)
        return corrupt(d, "refcount table entry has reserved bits set");
    if (off + q->cluster_size > q->file_size || overlaps_fixed(q, off, q->cluster_size))
        return corrupt(d, "refcount block lies past the end of the file or overlaps metadata");
    uint8_t *blk = vdi_trymalloc(q->cluster_size);
    if (!blk)
        return -ENOMEM;
    int err = img__pread_full(d->fd, blk, q->cluster_size, off);
    if (err < 0) {
        free(blk);
        VDI_LOG_ERR("image=%s reading a refcount block failed: %s", d->path, vdi_strerror(err));
        return err;
    }
    q->rb[rti] = blk;
    q->cache_bytes += q->cluster_size;
    *out = blk;
    return 0;
}

int img__qcow2_get_refcount(img_disk_t *d, uint64_t cluster, uint64_t *rc)
{
    struct img__qcow2 *q = d->q;
    uint8_t *blk;
    int err = rb_load(d, cluster / q->rb_entries, &blk);
    if (err < 0)
        return err;
    *rc = blk ? rc_get_raw(q, blk, cluster % q->rb_entries) : 0;
    return 0;
}

static int grow_rt(img_disk_t *d, uint64_t need_entries);

/* Make sure the refcount block counting @cluster exists (growing the refcount table or adding a
 * block at the end of the file as needed). *blk gets it. */
static int ensure_block(img_disk_t *d, uint64_t cluster, uint8_t **blk)
{
    struct img__qcow2 *q = d->q;
    for (;;) {
        uint64_t rti = cluster / q->rb_entries;
        int err;
        if (rti >= q->rt_entries) {
            err = grow_rt(d, rti + 1);
            if (err < 0)
                return err;
            continue;
        }
        err = rb_load(d, rti, blk);
        if (err < 0 || *blk)
            return err;
        /* A new refcount block, placed at the end of the file. If it lies inside the range it
         * covers, it counts itself; else its own block is found the same way. */
        uint64_t at = q->end / q->cluster_size;
        uint8_t *nb = vdi_trycalloc(1, q->cluster_size);
        if (!nb)
            return -ENOMEM;
        q->rb[rti] = nb;
        q->rb_dirty[rti] = 1;
        q->cache_bytes += q->cluster_size;
        q->rt[rti] = at * q->cluster_size;
        q->rt_dirty = true;
        q->end += q->cluster_size;
        if (at / q->rb_entries == rti) {
            rc_set_raw(q, nb, at % q->rb_entries, 1);
        } else {
            err = img__qcow2_set_refcount(d, at, 1);
            if (err < 0)
                return err;
        }
    }
}

/* Set the refcount of @cluster, creating its refcount block if needed. */
int img__qcow2_set_refcount(img_disk_t *d, uint64_t cluster, uint64_t rc)
{
    struct img__qcow2 *q = d->q;
    uint8_t *blk;
    if (rc == 0) {
        int err = rb_load(d, cluster / q->rb_entries, &blk);
        if (err < 0 || !blk)
            return err;
    } else {
        int err = ensure_block(d, cluster, &blk);
        if (err < 0)
            return err;
    }
    rc_set_raw(q, blk, cluster % q->rb_entries, rc);
    q->rb_dirty[cluster / q->rb_entries] = 1;
    return 0;
}

/* Resize the per-index cache arrays of refcount blocks to @n entries. */
static void rb_arrays_resize(struct img__qcow2 *q, uint64_t n)
{
    q->rb = vdi_xrealloc(q->rb, n * sizeof(*q->rb));
    q->rb_dirty = vdi_xrealloc(q->rb_dirty, n);
    for (uint64_t i = q->rt_entries; i < n; i++) {
        q->rb[i] = NULL;
        q->rb_dirty[i] = 0;
    }
}

static int write_dirty_refblocks(img_disk_t *d);

/* Grow the refcount table to at least @need_entries entries: a new table at the end of the file
 * together with the refcount blocks that count it, written and synced before the header points
 * at it; then the old table's clusters are freed. */
static int grow_rt(img_disk_t *d, uint64_t need_entries)
{
    struct img__qcow2 *q = d->q;
    uint64_t per = q->cluster_size / 8;
    uint64_t new_entries = VDI_MAX(need_entries, q->rt_entries * 2);
    uint64_t start = q->end / q->cluster_size;
    uint64_t *newblk = NULL;
    size_t nnew = 0;
    int err;

    if (new_entries > IMG__QCOW2_MAX_RT_BYTES / 8)
        return corrupt(d, "refcount table would grow past its size limit");
    for (;;) {
        new_entries = (new_entries + per - 1) / per * per;
        uint64_t n_tc = new_entries / per;
        bool changed = false;
        uint64_t total = n_tc + nnew;
        for (uint64_t c = start; c < start + total; c += 1) {
            uint64_t rti = c / q->rb_entries;
            bool have = rti < q->rt_entries && (q->rt[rti] & RTE_OFFSET_MASK);
            for (size_t k = 0; k < nnew && !have; k++)
                have = newblk[k] == rti;
            if (!have) {
                newblk = vdi_xrealloc(newblk, (nnew + 1) * sizeof(*newblk));
                newblk[nnew++] = rti;
                changed = true;
                total++;
            }
        }
        uint64_t max_rti = (start + total) / q->rb_entries;
        if (max_rti >= new_entries) {
            new_entries = max_rti + 1;
            continue;
        }
        if (!changed)
            break;
    }
    uint64_t n_tc = new_entries / per;
    uint64_t total = n_tc + nnew;
    uint64_t old_off = q->rt_offset;
    uint64_t old_clusters = q->rt_clusters;

    rb_arrays_resize(q, new_entries);
    uint64_t *rt = vdi_xcalloc(new_entries, sizeof(*rt));
    memcpy(rt, q->rt, q->rt_entries * sizeof(*rt));
    free(q->rt);
    q->rt = rt;
    q->rt_entries = new_entries;
    for (size_t k = 0; k < nnew; k++) {
        uint8_t *blk = vdi_trycalloc(1, q->cluster_size);
        if (!blk) {
            free(newblk);
            return -ENOMEM;
        }
        q->rb[newblk[k]] = blk;
        q->rb_dirty[newblk[k]] = 1;
        q->cache_bytes += q->cluster_size;
        q->rt[newblk[k]] = (start + n_tc + k) * q->cluster_size;
    }
    free(newblk);
    q->end = (start + total) * q->cluster_size;
    for (uint64_t c = start; c < start + total; c++) {
        uint8_t *blk;
        err = rb_load(d, c / q->rb_entries, &blk);
        if (err < 0)
            return err;
        VDI_ASSERT(blk);
        rc_set_raw(q, blk, c % q->rb_entries, 1);
        q->rb_dirty[c / q->rb_entries] = 1;
    }
    err = write_dirty_refblocks(d);
    if (err < 0)
        return err;
    uint8_t *buf = vdi_xcalloc(n_tc, q->cluster_size);
    for (uint64_t i = 0; i < new_entries; i++)
        img__put_be64(buf + 8 * i, q->rt[i]);
    err = img__pwrite_full(d->fd, buf, n_tc * q->cluster_size, start * q->cluster_size);
    free(buf);
    if (err == 0 && fdatasync(d->fd) < 0)
        err = -errno;
    if (err < 0)
        goto err_io;
    uint8_t hdr[12];
    img__put_be64(hdr, start * q->cluster_size);
    img__put_be32(hdr + 8, (uint32_t)n_tc);
    err = img__pwrite_full(d->fd, hdr, sizeof(hdr), 48);
    if (err == 0 && fdatasync(d->fd) < 0)
        err = -errno;
    if (err < 0)
        goto err_io;
    q->rt_offset = start * q->cluster_size;
    q->rt_clusters = (uint32_t)n_tc;
    q->rt_dirty = false;
    if (q->end > q->file_size)
        q->file_size = q->end;
    for (uint64_t c = 0; c < old_clusters; c++) {
        err = img__qcow2_set_refcount(d, old_off / q->cluster_size + c, 0);
        if (err < 0)
            return err;
    }
    q->free_hint = VDI_MIN(q->free_hint, old_off / q->cluster_size);
    return 0;
err_io:
    VDI_LOG_ERR("image=%s growing the refcount table failed: %s", d->path, vdi_strerror(err));
    return err;
}

/* Allocate one cluster (refcount 0 -> 1). Returns its host offset in *off. */
static int alloc_cluster(img_disk_t *d, uint64_t *off)
{
    struct img__qcow2 *q = d->q;
    for (;;) {
        uint64_t end_c = q->end / q->cluster_size;
        uint64_t c = q->free_hint;
        uint8_t *blk;
        int err;
        for (; c < end_c; c++) {
            uint64_t rc;
            if (c % q->rb_entries == 0 && c / q->rb_entries < q->rt_entries &&
                !(q->rt[c / q->rb_entries] & RTE_OFFSET_MASK))
                break; /* a whole range without a block: free */
            err = img__qcow2_get_refcount(d, c, &rc);
            if (err < 0)
                return err;
            if (rc == 0)
                break;
        }
        q->free_hint = c;
        /* Counting @c may need a new refcount block or a bigger table, which take clusters at
         * the end of the file: then @c may be one of them, so look again. */
        uint64_t end_before = q->end;
        err = ensure_block(d, c, &blk);
        if (err < 0)
            return err;
        if (q->end != end_before)
            continue;
        rc_set_raw(q, blk, c % q->rb_entries, 1);
        q->rb_dirty[c / q->rb_entries] = 1;
        if ((c + 1) * q->cluster_size > q->end)
            q->end = (c + 1) * q->cluster_size;
        q->free_hint = c + 1;
        *off = c * q->cluster_size;
        return 0;
    }
}

/* Drop @n references starting at host cluster @c once the next flush has made the file stop
 * pointing at them. */
static void defer_free(struct img__qcow2 *q, uint64_t c, uint64_t n)
{
    if (q->n_pending == q->cap_pending) {
        q->cap_pending = q->cap_pending ? q->cap_pending * 2 : 64;
        q->pending = vdi_xrealloc(q->pending, q->cap_pending * sizeof(*q->pending));
    }
    q->pending[q->n_pending].cluster = c;
    q->pending[q->n_pending].n = n;
    q->n_pending++;
}

static int apply_pending_frees(img_disk_t *d)
{
    struct img__qcow2 *q = d->q;
    for (size_t i = 0; i < q->n_pending; i++) {
        for (uint64_t c = q->pending[i].cluster; c < q->pending[i].cluster + q->pending[i].n; c++) {
            uint64_t rc;
            int err = img__qcow2_get_refcount(d, c, &rc);
            if (err < 0)
                return err;
            if (rc == 0) {
                VDI_LOG_WARN_RL("image=%s freeing cluster %" PRIu64 " whose refcount is already 0",
                                d->path, c);
                continue;
            }
            err = img__qcow2_set_refcount(d, c, rc - 1);
            if (err < 0)
                return err;
            if (rc == 1 && c < q->free_hint)
                q->free_hint = c;
        }
    }
    q->n_pending = 0;
    return 0;
}

/* ---- L2 tables ---------------------------------------------------------------------------- */

/* Load the L2 table of L1 index @l1i. *out = NULL when unallocated. */
static int l2_load(img_disk_t *d, uint64_t l1i, uint64_t **out)
{
    struct img__qcow2 *q = d->q;
    *out = NULL;
    if (q->l2[l1i]) {
        *out = q->l2[l1i];
        return 0;
    }
    uint64_t off = q->l1[l1i] & L1E_OFFSET_MASK;
    if (!off)
        return 0;
    /* L1 entries were validated at open; the table may still overlap the refcount blocks or
     * L2 tables, which a check finds. */
    uint8_t *raw = vdi_trymalloc(q->cluster_size);
    uint64_t *t = vdi_trymalloc(q->cluster_size);
    if (!raw || !t) {
        free(raw);
        free(t);
        return -ENOMEM;
    }
    int err = img__pread_full(d->fd, raw, q->cluster_size, off);
    if (err < 0) {
        free(raw);
        free(t);
        if (err == -EIO)
            return corrupt(d, "L2 table lies past the end of the file");
        VDI_LOG_ERR("image=%s reading an L2 table failed: %s", d->path, vdi_strerror(err));
        return err;
    }
    for (uint64_t i = 0; i < q->l2_entries; i++)
        t[i] = img__be64(raw + 8 * i);
    free(raw);
    q->l2[l1i] = t;
    q->cache_bytes += q->cluster_size;
    *out = t;
    return 0;
}

/* The L2 table of @l1i, allocated (empty) if missing. */
static int l2_get_alloc(img_disk_t *d, uint64_t l1i, uint64_t **out)
{
    struct img__qcow2 *q = d->q;
    int err = l2_load(d, l1i, out);
    if (err < 0 || *out)
        return err;
    uint64_t off;
    err = alloc_cluster(d, &off);
    if (err < 0)
        return err;
    uint64_t *t = vdi_trycalloc(1, q->cluster_size);
    if (!t)
        return -ENOMEM;
    q->l2[l1i] = t;
    q->l2_dirty[l1i] = 1;
    q->cache_bytes += q->cluster_size;
    q->l1[l1i] = off | QCOW_OFLAG_COPIED;
    q->l1_dirty = true;
    *out = t;
    return 0;
}

/* ---- decoding entries --------------------------------------------------------------------- */

enum ctype {
    C_UNALLOC,
    C_ZERO,
    C_NORMAL,
    C_COMPRESSED
};

struct cinfo {
    enum ctype type;
    uint64_t host;  /* C_NORMAL: cluster offset; C_COMPRESSED: byte offset */
    uint64_t csize; /* C_COMPRESSED: bytes of compressed data (upper bound) */
    bool copied;
};

static int decode_l2e(img_disk_t *d, uint64_t e, struct cinfo *ci)
{
    struct img__qcow2 *q = d->q;
    memset(ci, 0, sizeof(*ci));
    ci->copied = e & QCOW_OFLAG_COPIED;
    if (e & QCOW_OFLAG_COMPRESSED) {
        unsigned x = 62 - (q->cluster_bits - 8);
        ci->type = C_COMPRESSED;
        ci->host = e & ((1ULL << x) - 1);
        uint64_t nsec = (e >> x) & ((1ULL << (q->cluster_bits - 8)) - 1);
        ci->csize = (nsec + 1) * 512 - (ci->host & 511);
        if (ci->host >= q->file_size || ci->host < q->cluster_size)
            return corrupt(d, "compressed cluster lies past the end of the file or in the header");
        return 0;
    }
    if (e & L2E_RESERVED)
        return corrupt(d, "L2 entry has reserved bits set");
    ci->host = e & L2E_OFFSET_MASK;
    if ((e & QCOW_OFLAG_ZERO) && q->version >= 3) {
        ci->type = C_ZERO;
        return 0;
    }
    if (!ci->host) {
        ci->type = C_UNALLOC;
        return 0;
    }
    if (!is_aligned(q, ci->host))
        return corrupt(d, "data cluster offset is not cluster-aligned");
    if (overlaps_fixed(q, ci->host, q->cluster_size))
        return corrupt(d, "data cluster overlaps the header, L1 table or refcount table");
    if (ci->host + q->cluster_size > q->file_size) {
        /* The last cluster of a file may be short when nothing after it was written; anything
         * that starts past the end is corrupt. */
        if (ci->host >= q->file_size)
            return corrupt(d, "data cluster lies past the end of the file");
    }
    ci->type = C_NORMAL;
    return 0;
}

/* Look up the cluster holding guest offset @off. */
static int lookup(img_disk_t *d, uint64_t off, struct cinfo *ci)
{
    struct img__qcow2 *q = d->q;
    uint64_t ci_idx = off >> q->cluster_bits;
    uint64_t l1i = ci_idx >> q->l2_bits;
    uint64_t l2i = ci_idx & (q->l2_entries - 1);
    uint64_t *t;
    if (l1i >= q->l1_size) {
        memset(ci, 0, sizeof(*ci));
        return 0;
    }
    int err = l2_load(d, l1i, &t);
    if (err < 0)
        return err;
    if (!t) {
        memset(ci, 0, sizeof(*ci));
        return 0;
    }
    err = decode_l2e(d, t[l2i], ci);
    if (err == 0 && ci->type == C_NORMAL && ci->host == (q->l1[l1i] & L1E_OFFSET_MASK))
        return corrupt(d, "L2 entry points at its own L2 table");
    return err;
}

/* Decompress the cluster at @ci into q->dcache (one-cluster cache). */
static int decompress(img_disk_t *d, const struct cinfo *ci)
{
    struct img__qcow2 *q = d->q;
    if (q->dcache_valid && q->dcache_host == ci->host)
        return 0;
    q->dcache_valid = false;
    uint64_t want = VDI_MIN(ci->csize, q->file_size - ci->host);
    if (want > 2 * q->cluster_size + 512)
        return corrupt(d, "compressed cluster descriptor is too large");
    uint8_t *in = q->cbuf;
    ssize_t got = 0;
    while ((uint64_t)got < want) {
        ssize_t n = pread(d->fd, in + got, want - (uint64_t)got, (off_t)(ci->host + (uint64_t)got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = -errno;
            VDI_LOG_ERR("image=%s reading a compressed cluster failed: %s", d->path,
                        vdi_strerror(err));
            return err;
        }
        if (n == 0)
            break;
        got += n;
    }
    if (q->compression_type == 0) {
        z_stream zs = {0};
        if (inflateInit2(&zs, -15) != Z_OK)
            return -ENOMEM;
        zs.next_in = in;
        zs.avail_in = (uInt)got;
        zs.next_out = q->dcache;
        zs.avail_out = (uInt)q->cluster_size;
        int zr = inflate(&zs, Z_FINISH);
        uInt left = zs.avail_out;
        inflateEnd(&zs);
        /* Trailing bytes after the deflate stream are allowed (the descriptor rounds up). */
        if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR && zr != Z_OK) || left != 0)
            return corrupt(d, "compressed cluster does not inflate to a whole cluster");
    } else {
        if (!q->zstd) {
            q->zstd = ZSTD_createDCtx();
            if (!q->zstd)
                return -ENOMEM;
        }
        ZSTD_DCtx_reset(q->zstd, ZSTD_reset_session_only);
        ZSTD_inBuffer zin = {in, (size_t)got, 0};
        ZSTD_outBuffer zout = {q->dcache, q->cluster_size, 0};
        while (zout.pos < zout.size) {
            size_t r = ZSTD_decompressStream(q->zstd, &zout, &zin);
            if (ZSTD_isError(r))
                return corrupt(d, "compressed cluster is not valid zstd data");
            if (r == 0 || zin.pos == zin.size)
                break;
        }
        if (zout.pos != zout.size)
            return corrupt(d, "compressed cluster does not decompress to a whole cluster");
    }
    q->dcache_valid = true;
    q->dcache_host = ci->host;
    return 0;
}

/* Read from the backing file, or zeros past its end / without one. */
static int read_backing(img_disk_t *d, void *buf, size_t len, uint64_t off)
{
    uint64_t bsize = d->backing ? img_size(d->backing) : 0;
    if (off >= bsize) {
        memset(buf, 0, len);
        return 0;
    }
    size_t in = (size_t)VDI_MIN((uint64_t)len, bsize - off);
    if (in < len)
        memset((uint8_t *)buf + in, 0, len - in);
    return d->backing->ops->pread(d->backing, buf, in, off);
}

/* Read a data cluster range; bytes past the end of the file (a short last cluster) are zeros. */
static int read_host(img_disk_t *d, void *buf, size_t len, uint64_t host)
{
    struct img__qcow2 *q = d->q;
    if (host + len > q->file_size) {
        size_t in = host < q->file_size ? (size_t)(q->file_size - host) : 0;
        memset((uint8_t *)buf + in, 0, len - in);
        len = in;
    }
    int err = img__pread_full(d->fd, buf, len, host);
    if (err == -EIO) {
        /* The file shrank since we last looked: refresh and retry once. */
        struct stat st;
        if (fstat(d->fd, &st) == 0)
            q->file_size = (uint64_t)st.st_size;
        return corrupt(d, "data cluster lies past the end of the file");
    }
    if (err < 0)
        VDI_LOG_ERR_RL("image=%s read at host offset %" PRIu64 " failed: %s", d->path, host,
                       vdi_strerror(err));
    return err;
}

static void cache_trim(img_disk_t *d);

static int qcow2_pread(img_disk_t *d, void *buf, size_t len, uint64_t off)
{
    struct img__qcow2 *q = d->q;
    uint8_t *p = buf;
    cache_trim(d);
    while (len) {
        uint64_t intra = off & (q->cluster_size - 1);
        size_t n = (size_t)VDI_MIN((uint64_t)len, q->cluster_size - intra);
        struct cinfo ci;
        int err = lookup(d, off, &ci);
        if (err < 0)
            return err;
        switch (ci.type) {
        case C_UNALLOC: {
            /* Merge following unallocated clusters into one backing read. */
            while (n < len) {
                struct cinfo nx;
                err = lookup(d, off + n, &nx);
                if (err < 0)
                    return err;
                if (nx.type != C_UNALLOC)
                    break;
                n += (size_t)VDI_MIN((uint64_t)(len - n), q->cluster_size);
            }
            err = read_backing(d, p, n, off);
            break;
        }
        case C_ZERO:
            memset(p, 0, n);
            break;
        case C_COMPRESSED:
            err = decompress(d, &ci);
            if (err == 0)
                memcpy(p, q->dcache + intra, n);
            break;
        case C_NORMAL: {
            /* Merge following clusters that are contiguous in the file. */
            uint64_t host = ci.host + intra;
            while (n < len) {
                struct cinfo nx;
                err = lookup(d, off + n, &nx);
                if (err < 0)
                    return err;
                if (nx.type != C_NORMAL || nx.host != host + n)
                    break;
                n += (size_t)VDI_MIN((uint64_t)(len - n), q->cluster_size);
            }
            err = read_host(d, p, n, host);
            break;
        }
        }
        if (err < 0)
            return err;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* ---- writing ------------------------------------------------------------------------------ */

static int write_header_fields(img_disk_t *d)
{
    struct img__qcow2 *q = d->q;
    uint8_t b[24];
    img__put_be64(b, q->incompat);
    img__put_be64(b + 8, q->compat);
    img__put_be64(b + 16, q->autoclear);
    int err = img__pwrite_full(d->fd, b, sizeof(b), 72);
    if (err == 0 && fdatasync(d->fd) < 0)
        err = -errno;
    if (err < 0)
        VDI_LOG_ERR("image=%s writing the header failed: %s", d->path, vdi_strerror(err));
    return err;
}

static int mark_dirty(img_disk_t *d)
{
    struct img__qcow2 *q = d->q;
    if (q->dirty_set)
        return 0;
    q->incompat |= IMG__QCOW2_INCOMPAT_DIRTY;
    int err = write_header_fields(d);
    if (err < 0) {
        q->incompat &= ~IMG__QCOW2_INCOMPAT_DIRTY;
        return err;
    }
    q->dirty_set = true;
    return 0;
}

/* Fill @buf with the current contents of the guest cluster at @coff described by @ci. */
static int read_cluster(img_disk_t *d, const struct cinfo *ci, uint64_t coff, uint8_t *buf)
{
    struct img__qcow2 *q = d->q;
    switch (ci->type) {
    case C_UNALLOC: {
        size_t n = (size_t)VDI_MIN(q->cluster_size, d->size - coff);
        memset(buf + n, 0, q->cluster_size - n);
        return read_backing(d, buf, n, coff);
    }
    case C_ZERO:
        memset(buf, 0, q->cluster_size);
        return 0;
    case C_COMPRESSED: {
        int err = decompress(d, ci);
        if (err == 0)
            memcpy(buf, q->dcache, q->cluster_size);
        return err;
    }
    case C_NORMAL:
        return read_host(d, buf, q->cluster_size, ci->host);
    }
    return 0;
}

static void release_old(struct img__qcow2 *q, const struct cinfo *ci)
{
    if (ci->type == C_NORMAL || (ci->type == C_ZERO && ci->host)) {
        defer_free(q, ci->host / q->cluster_size, 1);
    } else if (ci->type == C_COMPRESSED) {
        uint64_t first = ci->host / q->cluster_size;
        uint64_t last = (ci->host + ci->csize - 1) / q->cluster_size;
        defer_free(q, first, last - first + 1);
    }
}

#define RUN_MAX 256 /* clusters per allocating write */

/* Whole clusters from @off on that all need a new cluster: allocate them contiguously (as far
 * as the allocator gives contiguous clusters), write them with one pwrite, then point their L2
 * entries at them. @first describes the first one. *done gets the bytes written. */
static int write_alloc_run(img_disk_t *d, const uint8_t *p, size_t len, uint64_t l1i, uint64_t l2i,
                           const struct cinfo *first, size_t *done)
{
    struct img__qcow2 *q = d->q;
    struct cinfo old[RUN_MAX];
    uint64_t *t, host, next;
    size_t k = 1;
    int err = l2_get_alloc(d, l1i, &t);
    if (err < 0)
        return err;
    err = alloc_cluster(d, &host);
    if (err < 0)
        return err;
    old[0] = *first;
    while (k < RUN_MAX && (k + 1) * q->cluster_size <= len && l2i + k < q->l2_entries) {
        struct cinfo ci;
        err = decode_l2e(d, t[l2i + k], &ci);
        if (err < 0 || (ci.type == C_NORMAL && ci.copied))
            break; /* an error shows up on its own when that cluster is written next */
        err = alloc_cluster(d, &next);
        if (err < 0)
            return err;
        if (next != host + k * q->cluster_size) {
            /* Not contiguous: give it back (it was never referenced) and stop here. */
            err = img__qcow2_set_refcount(d, next / q->cluster_size, 0);
            if (err < 0)
                return err;
            q->free_hint = VDI_MIN(q->free_hint, next / q->cluster_size);
            break;
        }
        old[k++] = ci;
    }
    err = img__pwrite_full(d->fd, p, k * q->cluster_size, host);
    if (err < 0) {
        VDI_LOG_ERR_RL("image=%s write at host offset %" PRIu64 " failed: %s", d->path, host,
                       vdi_strerror(err));
        return err; /* the clusters stay allocated but unreferenced: leaks, reclaimed by repair */
    }
    if (host + k * q->cluster_size > q->file_size)
        q->file_size = host + k * q->cluster_size;
    for (size_t i = 0; i < k; i++) {
        t[l2i + i] = (host + i * q->cluster_size) | QCOW_OFLAG_COPIED;
        release_old(q, &old[i]);
        if (old[i].type == C_COMPRESSED && q->dcache_host == old[i].host)
            q->dcache_valid = false;
    }
    q->l2_dirty[l1i] = 1;
    *done = k * q->cluster_size;
    return 0;
}

static int qcow2_pwrite(img_disk_t *d, const void *buf, size_t len, uint64_t off)
{
    struct img__qcow2 *q = d->q;
    const uint8_t *p = buf;
    int err;
    cache_trim(d);
    err = mark_dirty(d);
    if (err < 0)
        return err;
    while (len) {
        uint64_t intra = off & (q->cluster_size - 1);
        size_t n = (size_t)VDI_MIN((uint64_t)len, q->cluster_size - intra);
        uint64_t cidx = off >> q->cluster_bits;
        uint64_t l1i = cidx >> q->l2_bits, l2i = cidx & (q->l2_entries - 1);
        uint64_t *t;
        struct cinfo ci;
        err = l2_load(d, l1i, &t);
        if (err < 0)
            return err;
        if (t) {
            err = decode_l2e(d, t[l2i], &ci);
            if (err == 0 && ci.type == C_NORMAL && ci.host == (q->l1[l1i] & L1E_OFFSET_MASK))
                err = corrupt(d, "L2 entry points at its own L2 table");
            if (err < 0)
                return err;
        } else {
            memset(&ci, 0, sizeof(ci));
        }
        if (ci.type == C_NORMAL && ci.copied) {
            /* In place. Merge following owned, contiguous clusters into one write. */
            uint64_t host = ci.host + intra;
            while (n < len) {
                struct cinfo nx;
                err = lookup(d, off + n, &nx);
                if (err < 0)
                    return err;
                if (nx.type != C_NORMAL || !nx.copied || nx.host != host + n)
                    break;
                n += (size_t)VDI_MIN((uint64_t)(len - n), q->cluster_size);
            }
            err = img__pwrite_full(d->fd, p, n, host);
            if (err < 0) {
                VDI_LOG_ERR_RL("image=%s write at host offset %" PRIu64 " failed: %s", d->path,
                               host, vdi_strerror(err));
                return err;
            }
            if (host + n > q->file_size)
                q->file_size = host + n;
        } else if (intra == 0 && n == q->cluster_size) {
            err = write_alloc_run(d, p, len, l1i, l2i, &ci, &n);
            if (err < 0)
                return err;
        } else {
            /* Allocate, copy up, write the whole cluster, then point the L2 entry at it. */
            const uint8_t *src = p;
            if (n < q->cluster_size) {
                err = read_cluster(d, &ci, off - intra, q->wbuf);
                if (err < 0)
                    return err;
                memcpy(q->wbuf + intra, p, n);
                src = q->wbuf;
            }
            err = l2_get_alloc(d, l1i, &t);
            if (err < 0)
                return err;
            uint64_t host;
            err = alloc_cluster(d, &host);
            if (err < 0)
                return err;
            err = img__pwrite_full(d->fd, src, q->cluster_size, host);
            if (err < 0) {
                VDI_LOG_ERR_RL("image=%s write at host offset %" PRIu64 " failed: %s", d->path,
                               host, vdi_strerror(err));
                /* The cluster stays allocated but unreferenced: a leak, reclaimed by repair. */
                return err;
            }
            if (host + q->cluster_size > q->file_size)
                q->file_size = host + q->cluster_size;
            t[l2i] = host | QCOW_OFLAG_COPIED;
            q->l2_dirty[l1i] = 1;
            release_old(q, &ci);
            if (ci.type == C_COMPRESSED && q->dcache_host == ci.host)
                q->dcache_valid = false;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int write_dirty_refblocks(img_disk_t *d)
{
    struct img__qcow2 *q = d->q;
    for (uint64_t i = 0; i < q->rt_entries; i++) {
        if (!q->rb_dirty[i])
            continue;
        int err = img__pwrite_full(d->fd, q->rb[i], q->cluster_size, q->rt[i] & RTE_OFFSET_MASK);
        if (err < 0) {
            VDI_LOG_ERR("image=%s writing a refcount block failed: %s", d->path, vdi_strerror(err));
            return err;
        }
        q->rb_dirty[i] = 0;
    }
    if (q->end > q->file_size)
        q->file_size = q->end;
    return 0;
}

static int sync_fd(img_disk_t *d)
{
    if (fdatasync(d->fd) < 0) {
        int err = -errno;
        VDI_LOG_ERR("image=%s fdatasync failed: %s", d->path, vdi_strerror(err));
        return err;
    }
    return 0;
}

/* Write every dirty table in crash-safe order (see the top of the file). */
static int flush_meta(img_disk_t *d)
{
    struct img__qcow2 *q = d->q;
    bool any_l2 = false;
    int err;
    /* 1. data (already written) and refcount blocks */
    err = write_dirty_refblocks(d);
    if (err < 0)
        return err;
    /* The file must cover every allocated cluster, even one whose data write is pending. */
    if (q->end > q->file_size) {
        if (ftruncate(d->fd, (off_t)q->end) < 0)
            return -errno;
        q->file_size = q->end;
    }
    err = sync_fd(d);
    if (err < 0)
        return err;
    /* 2. the refcount table, when a new block was added */
    if (q->rt_dirty) {
        uint8_t *buf = vdi_xcalloc(q->rt_clusters, q->cluster_size);
        for (uint64_t i = 0; i < q->rt_entries; i++)
            img__put_be64(buf + 8 * i, q->rt[i]);
        err =
            img__pwrite_full(d->fd, buf, (uint64_t)q->rt_clusters * q->cluster_size, q->rt_offset);
        free(buf);
        if (err == 0)
            err = sync_fd(d);
        if (err < 0)
            return err;
        q->rt_dirty = false;
    }
    /* 3. L2 tables */
    uint8_t *raw = q->wbuf;
    for (uint64_t i = 0; i < q->l1_size; i++) {
        if (!q->l2_dirty[i])
            continue;
        for (uint64_t k = 0; k < q->l2_entries; k++)
            img__put_be64(raw + 8 * k, q->l2[i][k]);
        err = img__pwrite_full(d->fd, raw, q->cluster_size, q->l1[i] & L1E_OFFSET_MASK);
        if (err < 0) {
            VDI_LOG_ERR("image=%s writing an L2 table failed: %s", d->path, vdi_strerror(err));
            return err;
        }
        q->l2_dirty[i] = 0;
        any_l2 = true;
    }
    if (any_l2) {
        err = sync_fd(d);
        if (err < 0)
            return err;
    }
    /* 4. the L1 table */
    if (q->l1_dirty) {
        size_t bytes = (size_t)q->l1_size * 8;
        uint8_t *buf = vdi_xmalloc(bytes ? bytes : 1);
        for (uint64_t i = 0; i < q->l1_size; i++)
            img__put_be64(buf + 8 * i, q->l1[i]);
        err = img__pwrite_full(d->fd, buf, bytes, q->l1_offset);
        free(buf);
        if (err == 0)
            err = sync_fd(d);
        if (err < 0) {
            VDI_LOG_ERR("image=%s writing the L1 table failed: %s", d->path, vdi_strerror(err));
            return err;
        }
        q->l1_dirty = false;
    }
    /* 5. Nothing on disk points at the clusters freed before this flush any more. */
    if (q->n_pending) {
        err = apply_pending_frees(d);
        if (err < 0)
            return err;
    }
    return 0;
}

static int qcow2_flush(img_disk_t *d)
{
    return flush_meta(d);
}

/* Drop cached tables when the cache is over its cap; dirty ones are written first. */
static void cache_trim(img_disk_t *d)
{
    struct img__qcow2 *q = d->q;
    if (q->cache_bytes <= CACHE_CAP)
        return;
    if (!d->rdonly && flush_meta(d) < 0)
        return; /* keep everything; the error shows up on the next flush */
    for (uint64_t i = 0; i < q->l1_size; i++)
        if (q->l2[i] && !q->l2_dirty[i]) {
            free(q->l2[i]);
            q->l2[i] = NULL;
            q->cache_bytes -= q->cluster_size;
        }
    for (uint64_t i = 0; i < q->rt_entries; i++)
        if (q->rb[i] && !q->rb_dirty[i]) {
            free(q->rb[i]);
            q->rb[i] = NULL;
            q->cache_bytes -= q->cluster_size;
        }
}

static int qcow2_discard(img_disk_t *d, uint64_t off, uint64_t len)
{
    struct img__qcow2 *q = d->q;
    uint64_t first = (off + q->cluster_size - 1) >> q->cluster_bits;
    uint64_t endc = (off + len) >> q->cluster_bits;
    /* The last cluster may be short (virtual size not a multiple of the cluster size). */
    if (off + len == d->size && (d->size & (q->cluster_size - 1)))
        endc++;
    int err;
    cache_trim(d);
    for (uint64_t c = first; c < endc; c++) {
        uint64_t l1i = c >> q->l2_bits, l2i = c & (q->l2_entries - 1);
        uint64_t *t;
        struct cinfo ci;
        err = l2_load(d, l1i, &t);
        if (err < 0)
            return err;
        if (!t) {
            if (!d->backing) {
                c |= q->l2_entries - 1; /* the whole table is unallocated and reads as zeros */
                continue;
            }
            err = mark_dirty(d);
            if (err == 0)
                err = l2_get_alloc(d, l1i, &t);
            if (err < 0)
                return err;
        }
        err = decode_l2e(d, t[l2i], &ci);
        if (err < 0)
            return err;
        /* With a backing file, a discarded cluster must read as zeros, not as the backing
         * file's data: the zero flag. Without one, unallocated already reads as zeros. */
        uint64_t want = d->backing ? QCOW_OFLAG_ZERO : 0;
        if (t[l2i] == want)
            continue;
        err = mark_dirty(d);
        if (err < 0)
            return err;
        release_old(q, &ci);
        if (ci.type == C_COMPRESSED && q->dcache_host == ci.host)
            q->dcache_valid = false;
        t[l2i] = want;
        q->l2_dirty[l1i] = 1;
    }
    return 0;
}

static void free_state(struct img__qcow2 *q)
{
    if (!q)
        return;
    if (q->l2)
        for (uint64_t i = 0; i < q->l1_size; i++)
            free(q->l2[i]);
    if (q->rb)
        for (uint64_t i = 0; i < q->rt_entries; i++)
            free(q->rb[i]);
    free(q->l2);
    free(q->l2_dirty);
    free(q->rb);
    free(q->rb_dirty);
    free(q->l1);
    free(q->rt);
    free(q->pending);
    free(q->wbuf);
    free(q->cbuf);
    free(q->dcache);
    free(q->backing_name);
    free(q->backing_fmt);
    for (size_t i = 0; i < q->n_features; i++)
        free(q->features[i].name);
    free(q->features);
    if (q->zstd)
        ZSTD_freeDCtx(q->zstd);
    free(q);
}

static void qcow2_close(img_disk_t *d)
{
    struct img__qcow2 *q = d->q;
    if (!d->rdonly && q->dirty_set) {
        int err = flush_meta(d);
        /* The frees applied by that flush reached only the cache: write them too. */
        if (err == 0)
            err = flush_meta(d);
        if (err == 0) {
            q->incompat &= ~IMG__QCOW2_INCOMPAT_DIRTY;
            err = write_header_fields(d);
        }
        if (err < 0)
            VDI_LOG_ERR("image=%s was not closed cleanly (%s); it is repaired on next open",
                        d->path, vdi_strerror(err));
    }
    free_state(q);
    d->q = NULL;
}

const struct img__ops img__qcow2_ops = {
    .name = "qcow2",
    .pread = qcow2_pread,
    .pwrite = qcow2_pwrite,
    .flush = qcow2_flush,
    .discard = qcow2_discard,
    .close = qcow2_close,
};

/* ---- opening ------------------------------------------------------------------------------ */

static const char *feature_name(const struct img__qcow2 *q, int type, int bit)
{
    for (size_t i = 0; i < q->n_features; i++)
        if (q->features[i].type == type && q->features[i].bit == bit)
            return q->features[i].name;
    return NULL;
}

static int parse_extensions(img_disk_t *d, const uint8_t *hdr, size_t hdr_len)
{
    struct img__qcow2 *q = d->q;
    size_t off = q->header_length;
    while (off + 8 <= hdr_len) {
        uint32_t type = img__be32(hdr + off), len = img__be32(hdr + off + 4);
        off += 8;
        if (type == 0)
            return 0;
        if (len > hdr_len - off)
            return corrupt(d, "header extension runs past the first cluster");
        const uint8_t *data = hdr + off;
        if (type == IMG__QCOW2_EXT_BACKING_FMT) {
            if (len == 0 || len > 31)
                return corrupt(d, "backing format extension has a bad length");
            free(q->backing_fmt);
            q->backing_fmt = vdi_xcalloc(1, len + 1);
            memcpy(q->backing_fmt, data, len);
        } else if (type == IMG__QCOW2_EXT_FEATURES) {
            size_t n = len / 48;
            for (size_t i = 0; i < n && q->n_features < 192; i++) {
                q->features = vdi_xrealloc(q->features, (q->n_features + 1) * sizeof(*q->features));
                struct img__qcow2_feature *f = &q->features[q->n_features++];
                f->type = data[48 * i];
                f->bit = data[48 * i + 1];
                f->name = vdi_xcalloc(1, 47);
                memcpy(f->name, data + 48 * i + 2, 46);
            }
        } else if (type == IMG__QCOW2_EXT_DATA_FILE) {
            VDI_LOG_ERR("image=%s uses an external data file, which is not supported", d->path);
            return VDI_EBADIMAGE;
        } else if (type == IMG__QCOW2_EXT_CRYPTO) {
            VDI_LOG_ERR("image=%s is encrypted, which is not supported", d->path);
            return VDI_EBADIMAGE;
        }
        off += (len + 7) & ~7u;
    }
    return 0;
}

/* Resolve a backing file name relative to the directory of the image that names it. */
char *img__qcow2_backing_path(const char *image, const char *name)
{
    if (name[0] == '/')
        return vdi_xstrdup(name);
    char *copy = vdi_xstrdup(image);
    char *dir = dirname(copy);
    char *p = vdi_xasprintf("%s/%s", dir, name);
    free(copy);
    return p;
}

int img__qcow2_parse_header(img_disk_t *d, const uint8_t *h, size_t hlen)
{
    struct img__qcow2 *q = d->q;
    if (hlen < 72 || memcmp(h, "QFI\xfb", 4) != 0)
        return corrupt(d, "bad qcow2 magic or truncated header");
    q->version = img__be32(h + 4);
    if (q->version != 2 && q->version != 3) {
        VDI_LOG_ERR("image=%s has unsupported qcow2 version %u", d->path, q->version);
        return VDI_EBADIMAGE;
    }
    q->backing_off = img__be64(h + 8);
    q->backing_len = img__be32(h + 16);
    q->cluster_bits = img__be32(h + 20);
    q->virtual_size = img__be64(h + 24);
    uint32_t crypt = img__be32(h + 32);
    q->l1_size = img__be32(h + 36);
    q->l1_offset = img__be64(h + 40);
    q->rt_offset = img__be64(h + 48);
    q->rt_clusters = img__be32(h + 56);
    q->nb_snapshots = img__be32(h + 60);
    q->snapshots_offset = img__be64(h + 64);
    q->refcount_order = 4;
    q->header_length = 72;
    if (q->version == 3) {
        if (hlen < 104)
            return corrupt(d, "truncated version 3 header");
        q->incompat = img__be64(h + 72);
        q->compat = img__be64(h + 80);
        q->autoclear = img__be64(h + 88);
        q->refcount_order = img__be32(h + 96);
        q->header_length = img__be32(h + 100);
        if (q->header_length < 104 || q->header_length > hlen || (q->header_length & 7))
            return corrupt(d, "header length is out of range");
        if (q->header_length > 104)
            q->compression_type = h[104];
    }
    if (q->cluster_bits < 9 || q->cluster_bits > 21)
        return corrupt(d, "cluster size is not between 512 bytes and 2 MiB");
    q->cluster_size = 1ULL << q->cluster_bits;
    if (q->header_length > q->cluster_size)
        return corrupt(d, "header is larger than a cluster");
    if (crypt != 0) {
        VDI_LOG_ERR("image=%s is encrypted, which is not supported", d->path);
        return VDI_EBADIMAGE;
    }
    if (q->refcount_order > 6)
        return corrupt(d, "refcount order is above 6");
    q->l2_bits = q->cluster_bits - 3;
    q->l2_entries = 1ULL << q->l2_bits;
    q->rb_entries = (q->cluster_size * 8) >> q->refcount_order;
    if (q->virtual_size > IMG__QCOW2_MAX_SIZE)
        return corrupt(d, "virtual size is absurdly large");
    uint64_t per_l2 = q->cluster_size * q->l2_entries;
    uint64_t need_l1 = (q->virtual_size + per_l2 - 1) / per_l2;
    if (q->l1_size < need_l1)
        return corrupt(d, "L1 table is too small for the virtual size");
    if ((uint64_t)q->l1_size * 8 > IMG__QCOW2_MAX_L1_BYTES)
        return corrupt(d, "L1 table is absurdly large");
    if (q->l1_size && (!is_aligned(q, q->l1_offset) || q->l1_offset == 0))
        return corrupt(d, "L1 table offset is not cluster-aligned or points at the header");
    if (!is_aligned(q, q->rt_offset) || q->rt_offset == 0)
        return corrupt(d, "refcount table offset is not cluster-aligned or points at the header");
    if (q->rt_clusters == 0 || (uint64_t)q->rt_clusters * q->cluster_size > IMG__QCOW2_MAX_RT_BYTES)
        return corrupt(d, "refcount table size is zero or absurdly large");
    uint64_t l1_len = (uint64_t)q->l1_size * 8;
    uint64_t rt_len = (uint64_t)q->rt_clusters * q->cluster_size;
    if (l1_len && q->l1_offset < q->rt_offset + rt_len && q->rt_offset < q->l1_offset + l1_len)
        return corrupt(d, "L1 table and refcount table overlap");
    if (q->l1_offset + l1_len > q->file_size)
        return corrupt(d, "L1 table lies past the end of the file");
    if (q->rt_offset + rt_len > q->file_size)
        return corrupt(d, "refcount table lies past the end of the file");
    if (q->nb_snapshots && !is_aligned(q, q->snapshots_offset))
        return corrupt(d, "snapshot table offset is not cluster-aligned");
    if (q->backing_off) {
        if (q->backing_len == 0 || q->backing_len > 1023 ||
            q->backing_off + q->backing_len > VDI_MIN(q->cluster_size, hlen))
            return corrupt(d, "backing file name is empty, too long or outside the first cluster");
        q->backing_name = vdi_xcalloc(1, q->backing_len + 1);
        memcpy(q->backing_name, h + q->backing_off, q->backing_len);
        if (strlen(q->backing_name) != q->backing_len)
            return corrupt(d, "backing file name contains a NUL byte");
    }
    int err = parse_extensions(d, h, VDI_MIN(hlen, q->cluster_size));
    if (err < 0)
        return err;
    uint64_t known =
        IMG__QCOW2_INCOMPAT_DIRTY | IMG__QCOW2_INCOMPAT_CORRUPT | IMG__QCOW2_INCOMPAT_COMPRESSION;
    if (q->incompat & ~known) {
        for (int bit = 0; bit < 64; bit++)
            if ((q->incompat & ~known) & (1ULL << bit)) {
                const char *name = feature_name(q, 0, bit);
                VDI_LOG_ERR("image=%s uses unsupported incompatible feature bit %d (%s)", d->path,
                            bit, name ? name : "unknown");
                break;
            }
        return VDI_EBADIMAGE;
    }
    if (q->incompat & IMG__QCOW2_INCOMPAT_COMPRESSION) {
        if (q->header_length <= 104 || q->compression_type > 1)
            return corrupt(d, "unknown compression type");
    } else if (q->compression_type != 0) {
        return corrupt(d, "compression type set without its feature bit");
    }
    return 0;
}

int img__qcow2_open(img_disk_t *d, unsigned flags, struct img__chain *chain)
{
    struct img__qcow2 *q = vdi_xcalloc(1, sizeof(*q));
    struct stat st;
    int err;
    d->q = q;
    if (fstat(d->fd, &st) < 0) {
        err = -errno;
        goto err_free;
    }
    q->file_size = (uint64_t)st.st_size;
    /* The header and its extensions fit in the first cluster: read that much (at most 2 MiB,
     * and never past the end of the file). */
    uint8_t first[24] = {0};
    size_t hlen = (size_t)VDI_MIN(q->file_size, 1ULL << 21);
    if (img__pread_full(d->fd, first, sizeof(first), 0) == 0) {
        uint32_t bits = img__be32(first + 20);
        if (bits >= 9 && bits <= 21)
            hlen = (size_t)VDI_MIN(q->file_size, 1ULL << bits);
    }
    uint8_t *h = vdi_xmalloc(hlen ? hlen : 1);
    err = img__pread_full(d->fd, h, hlen, 0);
    if (err == 0)
        err = img__qcow2_parse_header(d, h, hlen);
    free(h);
    if (err < 0)
        goto err_free;
    d->size = q->virtual_size;

    bool rdonly = flags & IMG_OPEN_RDONLY;
    if (!rdonly) {
        const char *why = NULL;
        if (q->version < 3)
            why = "it is qcow2 version 2 (compat 0.10); convert it to version 3";
        else if (q->incompat & IMG__QCOW2_INCOMPAT_CORRUPT)
            why = "it is marked corrupt; run `vdictl image check` on it";
        else if (q->nb_snapshots)
            why = "it has internal snapshots";
        if (why) {
            VDI_LOG_ERR("image=%s cannot be opened for writing: %s", d->path, why);
            err = VDI_EBADIMAGE;
            goto err_free;
        }
    }

    /* Tables. */
    q->l1 = vdi_trycalloc(q->l1_size ? q->l1_size : 1, sizeof(*q->l1));
    q->l2 = vdi_trycalloc(q->l1_size ? q->l1_size : 1, sizeof(*q->l2));
    q->l2_dirty = vdi_trycalloc(q->l1_size ? q->l1_size : 1, 1);
    q->rt_entries = (uint64_t)q->rt_clusters * q->cluster_size / 8;
    q->rt = vdi_trycalloc(q->rt_entries, sizeof(*q->rt));
    q->rb = vdi_trycalloc(q->rt_entries, sizeof(*q->rb));
    q->rb_dirty = vdi_trycalloc(q->rt_entries, 1);
    q->wbuf = vdi_trymalloc(q->cluster_size);
    q->dcache = vdi_trymalloc(q->cluster_size);
    q->cbuf = vdi_trymalloc(2 * q->cluster_size + 512);
    if (!q->l1 || !q->l2 || !q->l2_dirty || !q->rt || !q->rb || !q->rb_dirty || !q->wbuf ||
        !q->dcache || !q->cbuf) {
        err = -ENOMEM;
        goto err_free;
    }
    uint8_t *raw = vdi_trymalloc(
        VDI_MAX((uint64_t)q->l1_size * 8, (uint64_t)q->rt_clusters * q->cluster_size));
    if (!raw) {
        err = -ENOMEM;
        goto err_free;
    }
    err = img__pread_full(d->fd, raw, (size_t)q->l1_size * 8, q->l1_offset);
    for (uint64_t i = 0; err == 0 && i < q->l1_size; i++) {
        q->l1[i] = img__be64(raw + 8 * i);
        uint64_t l2off = q->l1[i] & L1E_OFFSET_MASK;
        if (q->l1[i] & L1E_RESERVED)
            err = corrupt(d, "L1 entry has reserved bits set");
        else if (l2off && l2off + q->cluster_size > q->file_size)
            err = corrupt(d, "L1 entry points past the end of the file");
        else if (l2off && overlaps_fixed(q, l2off, q->cluster_size))
            err = corrupt(d, "L1 entry points at the header, L1 table or refcount table");
    }
    if (err == 0)
        err = img__pread_full(d->fd, raw, (size_t)q->rt_clusters * q->cluster_size, q->rt_offset);
    for (uint64_t i = 0; err == 0 && i < q->rt_entries; i++) {
        q->rt[i] = img__be64(raw + 8 * i);
        uint64_t off = q->rt[i] & RTE_OFFSET_MASK;
        if (q->rt[i] & 0x1ff)
            err = corrupt(d, "refcount table entry has reserved bits set");
        else if (off && off + q->cluster_size > q->file_size)
            err = corrupt(d, "refcount table entry points past the end of the file");
        else if (off && overlaps_fixed(q, off, q->cluster_size))
            err = corrupt(d, "refcount block overlaps the header, L1 table or refcount table");
    }
    free(raw);
    if (err < 0)
        goto err_free;
    q->end = (q->file_size + q->cluster_size - 1) & ~(q->cluster_size - 1);
    q->free_hint = 1;

    /* The backing chain, read-only. */
    if (q->backing_name) {
        char *bpath = img__qcow2_backing_path(d->path, q->backing_name);
        const char *parent = chain->parent;
        chain->parent = d->path;
        chain->depth++;
        err = img__open_chain(bpath, IMG_OPEN_RDONLY | (flags & IMG_OPEN_NOLOCK), q->backing_fmt,
                              chain, &d->backing);
        chain->depth--;
        chain->parent = parent;
        if (err < 0) {
            VDI_LOG_ERR("image=%s backing file %s (named '%s') cannot be used: %s", d->path, bpath,
                        q->backing_name, vdi_strerror(err));
            free(bpath);
            goto err_free;
        }
        free(bpath);
    }

    if (!rdonly) {
        if (q->incompat & IMG__QCOW2_INCOMPAT_DIRTY) {
            struct img_check_result r;
            VDI_LOG_WARN("image=%s was not closed cleanly; repairing", d->path);
            err = img__qcow2_check(d, true, &r);
            if (err < 0)
                goto err_backing;
            if (r.errors_left) {
                VDI_LOG_ERR("image=%s has %" PRIu64 " errors that cannot be repaired", d->path,
                            r.errors_left);
                err = VDI_EBADIMAGE;
                goto err_backing;
            }
            VDI_LOG_INFO("image=%s repaired: %" PRIu64 " leaked clusters reclaimed, %" PRIu64
                         " errors fixed",
                         d->path, r.leaks_fixed, r.errors_fixed);
            q->dirty_set = true; /* cleared on close */
        }
        if (q->autoclear) {
            /* We keep none of the structures these bits vouch for (e.g. bitmaps). */
            q->autoclear = 0;
            err = write_header_fields(d);
            if (err < 0)
                goto err_backing;
        }
    }
    return 0;
err_backing:
    img_close(d->backing);
    d->backing = NULL;
err_free:
    free_state(q);
    d->q = NULL;
    return err;
}

/* ---- check and repair --------------------------------------------------------------------- */

struct refs {
    uint32_t *n;
    uint64_t count;
};

static void ref_add(img_disk_t *d, struct refs *r, uint64_t off, uint64_t len,
                    struct img_check_result *res, const char *what)
{
    struct img__qcow2 *q = d->q;
    if (len == 0)
        return;
    uint64_t first = off / q->cluster_size, last = (off + len - 1) / q->cluster_size;
    if (last >= r->count) {
        res->errors++;
        res->errors_left++;
        VDI_LOG_ERR_RL("image=%s check: %s at %" PRIu64 " lies past the end of the file", d->path,
                       what, off);
        return;
    }
    for (uint64_t c = first; c <= last; c++)
        if (r->n[c] < UINT32_MAX)
            r->n[c]++;
}

int img__qcow2_check(img_disk_t *d, bool repair, struct img_check_result *res)
{
    struct img__qcow2 *q = d->q;
    struct refs r;
    int err = 0;
    memset(res, 0, sizeof(*res));
    if (q->nb_snapshots) {
        VDI_LOG_ERR("image=%s has internal snapshots, which check does not support", d->path);
        return VDI_EBADIMAGE;
    }
    if (repair && d->rdonly)
        return -EROFS;
    /* Every cluster below the end of the file, plus a margin for tables past it. */
    r.count = VDI_MAX(q->end, q->file_size) / q->cluster_size + 1;
    r.n = vdi_trycalloc(r.count, sizeof(*r.n));
    if (!r.n)
        return -ENOMEM;

    ref_add(d, &r, 0, q->cluster_size, res, "header");
    ref_add(d, &r, q->l1_offset, (uint64_t)q->l1_size * 8, res, "L1 table");
    ref_add(d, &r, q->rt_offset, (uint64_t)q->rt_clusters * q->cluster_size, res, "refcount table");
    for (uint64_t i = 0; i < q->rt_entries; i++)
        if (q->rt[i] & RTE_OFFSET_MASK)
            ref_add(d, &r, q->rt[i] & RTE_OFFSET_MASK, q->cluster_size, res, "refcount block");
    for (uint64_t i = 0; i < q->l1_size; i++) {
        uint64_t *t;
        if (!(q->l1[i] & L1E_OFFSET_MASK))
            continue;
        ref_add(d, &r, q->l1[i] & L1E_OFFSET_MASK, q->cluster_size, res, "L2 table");
        err = l2_load(d, i, &t);
        if (err < 0)
            goto out;
        for (uint64_t k = 0; k < q->l2_entries; k++) {
            struct cinfo ci;
            if (decode_l2e(d, t[k], &ci) < 0) {
                res->errors++;
                res->errors_left++;
                continue;
            }
            if (ci.type == C_NORMAL || (ci.type == C_ZERO && ci.host)) {
                if (ci.type == C_ZERO && !is_aligned(q, ci.host)) {
                    res->errors++;
                    res->errors_left++;
                    continue;
                }
                ref_add(d, &r, ci.host, q->cluster_size, res, "data cluster");
            } else if (ci.type == C_COMPRESSED) {
                uint64_t len = VDI_MIN(ci.csize, q->file_size - ci.host);
                ref_add(d, &r, ci.host, len, res, "compressed cluster");
            }
            res->allocated += ci.type == C_NORMAL || ci.type == C_COMPRESSED;
            res->compressed += ci.type == C_COMPRESSED;
        }
    }
    if (res->errors_left) {
        err = 0;
        goto out;
    }

    /* Compare with the stored refcounts. Errors (too low) are fixed before leaks (too high),
     * and nothing is allocated below the end of the file while fixing. */
    uint64_t max = img__qcow2_rc_max(q);
    for (int pass = 0; pass < 2; pass++) {
        for (uint64_t c = 0; c < r.count; c++) {
            uint64_t rc;
            err = img__qcow2_get_refcount(d, c, &rc);
            if (err < 0)
                goto out;
            if (r.n[c] > max) {
                if (pass == 0) {
                    VDI_LOG_ERR("image=%s cluster %" PRIu64 " has %u references, more than a "
                                "%u-bit refcount holds",
                                d->path, c, r.n[c], 1u << q->refcount_order);
                    res->errors++;
                    res->errors_left++;
                }
                continue;
            }
            bool low = rc<r.n[c], high = rc> r.n[c];
            if ((pass == 0 && !low) || (pass == 1 && !high))
                continue;
            if (low)
                res->errors++;
            else
                res->leaks++;
            if (!repair || res->errors_left) {
                if (low)
                    res->errors_left++;
                else
                    res->leaks_left++;
                continue;
            }
            q->free_hint = r.count;
            err = img__qcow2_set_refcount(d, c, r.n[c]);
            if (err < 0)
                goto out;
            if (low)
                res->errors_fixed++;
            else
                res->leaks_fixed++;
        }
    }
    /* Clusters past the end of the file (possible only through a refcount block created while
     * repairing) are counted by their own blocks: nothing to compare. */

    /* The COPIED flags must say "refcount is exactly 1". */
    for (uint64_t i = 0; i < q->l1_size && !res->errors_left; i++) {
        uint64_t off = q->l1[i] & L1E_OFFSET_MASK, rc;
        uint64_t *t;
        if (!off)
            continue;
        err = img__qcow2_get_refcount(d, off / q->cluster_size, &rc);
        if (err < 0)
            goto out;
        bool want = rc == 1;
        if (want != !!(q->l1[i] & QCOW_OFLAG_COPIED)) {
            res->errors++;
            if (repair) {
                q->l1[i] = off | (want ? QCOW_OFLAG_COPIED : 0);
                q->l1_dirty = true;
                res->errors_fixed++;
            } else {
                res->errors_left++;
            }
        }
        err = l2_load(d, i, &t);
        if (err < 0)
            goto out;
        for (uint64_t k = 0; k < q->l2_entries; k++) {
            struct cinfo ci;
            if (decode_l2e(d, t[k], &ci) < 0 ||
                !(ci.type == C_NORMAL || (ci.type == C_ZERO && ci.host)))
                continue;
            err = img__qcow2_get_refcount(d, ci.host / q->cluster_size, &rc);
            if (err < 0)
                goto out;
            want = rc == 1;
            if (want != ci.copied) {
                res->errors++;
                if (repair) {
                    t[k] = want ? t[k] | QCOW_OFLAG_COPIED : t[k] & ~QCOW_OFLAG_COPIED;
                    q->l2_dirty[i] = 1;
                    res->errors_fixed++;
                } else {
                    res->errors_left++;
                }
            }
        }
    }
    if (repair && !res->errors_left)
        err = flush_meta(d);
out:
    free(r.n);
    return err;
}

/* ---- creating ----------------------------------------------------------------------------- */

static size_t put_ext(uint8_t *p, uint32_t type, const void *data, uint32_t len)
{
    img__put_be32(p, type);
    img__put_be32(p + 4, len);
    memcpy(p + 8, data, len);
    return 8 + ((len + 7) & ~7u);
}

int img__qcow2_create(const char *path, uint64_t size, uint32_t cluster_bits, const char *backing,
                      const char *backing_fmt, bool excl)
{
    uint64_t cs = 1ULL << cluster_bits;
    uint64_t l2_entries = cs / 8;
    uint64_t l1_size = (size + cs * l2_entries - 1) / (cs * l2_entries);
    uint64_t l1_clusters = (l1_size * 8 + cs - 1) / cs;
    uint64_t rb_entries = cs * 8 / 16;
    uint64_t rt_clusters = 1, rb_count = 1;
    int err;

    if (cluster_bits < 12 || cluster_bits > 21)
        return -EINVAL;
    if (size > IMG__QCOW2_MAX_SIZE || l1_size * 8 > IMG__QCOW2_MAX_L1_BYTES)
        return -EFBIG;
    if (backing && strlen(backing) > 1023)
        return -ENAMETOOLONG;
    /* header, refcount table, refcount blocks, L1 table: the blocks must count all of them. */
    for (;;) {
        uint64_t n = 1 + rt_clusters + rb_count + l1_clusters;
        uint64_t nb = (n + rb_entries - 1) / rb_entries;
        uint64_t nt = (nb * 8 + cs - 1) / cs;
        if (nb == rb_count && nt == rt_clusters)
            break;
        rb_count = nb;
        rt_clusters = nt;
    }
    uint64_t meta = 1 + rt_clusters + rb_count;
    uint64_t total = meta + l1_clusters;
    uint8_t *buf = vdi_trycalloc(meta, cs);
    if (!buf)
        return -ENOMEM;

    /* Header: version 3, 16-bit refcounts, zlib, 112 bytes. */
    uint8_t *h = buf;
    memcpy(h, "QFI\xfb", 4);
    img__put_be32(h + 4, 3);
    img__put_be32(h + 20, cluster_bits);
    img__put_be64(h + 24, size);
    img__put_be32(h + 36, (uint32_t)l1_size);
    img__put_be64(h + 40, l1_size ? meta * cs : 0);
    img__put_be64(h + 48, cs);
    img__put_be32(h + 56, (uint32_t)rt_clusters);
    img__put_be32(h + 96, 4);
    img__put_be32(h + 100, 112);
    size_t off = 112;
    if (backing && backing_fmt)
        off += put_ext(h + off, IMG__QCOW2_EXT_BACKING_FMT, backing_fmt,
                       (uint32_t)strlen(backing_fmt));
    static const struct {
        uint8_t type, bit;
        const char *name;
    } feats[] = {
        {0, 0, "dirty bit"},        {0, 1, "corrupt bit"},         {0, 2, "external data file"},
        {0, 3, "compression type"}, {0, 4, "extended L2 entries"}, {1, 0, "lazy refcounts"},
        {2, 0, "bitmaps"},          {2, 1, "raw external data"},
    };
    uint8_t ft[VDI_ARRAY_SIZE(feats) * 48];
    memset(ft, 0, sizeof(ft));
    for (size_t i = 0; i < VDI_ARRAY_SIZE(feats); i++) {
        ft[48 * i] = feats[i].type;
        ft[48 * i + 1] = feats[i].bit;
        memcpy(ft + 48 * i + 2, feats[i].name, strlen(feats[i].name));
    }
    off += put_ext(h + off, IMG__QCOW2_EXT_FEATURES, ft, sizeof(ft));
    off += 8; /* end of extensions */
    if (backing) {
        size_t bl = strlen(backing);
        if (off + bl > cs) {
            free(buf);
            return -ENAMETOOLONG;
        }
        img__put_be64(h + 8, off);
        img__put_be32(h + 16, (uint32_t)bl);
        memcpy(h + off, backing, bl);
    }
    /* Refcount table and blocks. */
    for (uint64_t i = 0; i < rb_count; i++)
        img__put_be64(buf + cs + 8 * i, (1 + rt_clusters + i) * cs);
    for (uint64_t c = 0; c < total; c++)
        img__put_be16(buf + (1 + rt_clusters + c / rb_entries) * cs + 2 * (c % rb_entries), 1);

    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | (excl ? O_EXCL : O_TRUNC), 0644);
    if (fd < 0) {
        err = -errno;
        free(buf);
        VDI_LOG_ERR("image=%s cannot be created: %s", path, vdi_strerror(err));
        return err;
    }
    /* The L1 table is all zeros: a hole at the end of the file. */
    /* No fdatasync: until the first flush of whoever writes the image (which syncs these bytes
     * too) nothing refers to it; a crash before then leaves a file that fails to open with a
     * clear error and is simply created again. That keeps a clone at about a millisecond. */
    err = img__pwrite_full(fd, buf, meta * cs, 0);
    if (err == 0 && ftruncate(fd, (off_t)(total * cs)) < 0)
        err = -errno;
    free(buf);
    close(fd);
    if (err < 0) {
        VDI_LOG_ERR("image=%s cannot be written: %s", path, vdi_strerror(err));
        unlink(path);
    }
    return err;
}

/* ---- inspection and header rewriting ------------------------------------------------------ */

int img__qcow2_allocated(img_disk_t *d, uint64_t off, bool *alloc)
{
    struct cinfo ci;
    int err = lookup(d, off, &ci);
    if (err == 0)
        *alloc = ci.type != C_UNALLOC;
    return err;
}

int img__qcow2_set_backing(img_disk_t *d, const char *name, const char *fmt)
{
    struct img__qcow2 *q = d->q;
    size_t cs = (size_t)q->cluster_size;
    uint8_t *h = vdi_trycalloc(1, cs), *old = vdi_trymalloc(cs);
    int err;
    if (!h || !old) {
        err = -ENOMEM;
        goto out;
    }
    if (d->rdonly) {
        err = -EROFS;
        goto out;
    }
    err = img__pread_full(d->fd, old, (size_t)VDI_MIN((uint64_t)cs, q->file_size), 0);
    if (err < 0)
        goto out;
    memcpy(h, old, q->header_length);
    size_t off = q->header_length;
    /* Keep every extension but the backing format, then add the new one. */
    size_t in = q->header_length;
    while (in + 8 <= cs) {
        uint32_t type = img__be32(old + in), len = img__be32(old + in + 4);
        if (type == 0 || len > cs - in - 8)
            break;
        size_t padded = 8 + ((len + 7) & ~7u);
        if (type != IMG__QCOW2_EXT_BACKING_FMT) {
            if (off + padded > cs) {
                err = -ENAMETOOLONG;
                goto out;
            }
            memcpy(h + off, old + in, VDI_MIN(padded, cs - in));
            off += padded;
        }
        in += padded;
    }
    if (name && fmt) {
        size_t fl = strlen(fmt);
        if (off + 8 + ((fl + 7) & ~7u) > cs) {
            err = -ENAMETOOLONG;
            goto out;
        }
        img__put_be32(h + off, IMG__QCOW2_EXT_BACKING_FMT);
        img__put_be32(h + off + 4, (uint32_t)fl);
        memcpy(h + off + 8, fmt, fl);
        off += 8 + ((fl + 7) & ~7u);
    }
    off += 8; /* end marker (zeros) */
    size_t nl = name ? strlen(name) : 0;
    if (off + nl > cs || nl > 1023) {
        err = -ENAMETOOLONG;
        goto out;
    }
    img__put_be64(h + 8, name ? off : 0);
    img__put_be32(h + 16, (uint32_t)nl);
    if (name)
        memcpy(h + off, name, nl);
    size_t used = VDI_MAX(VDI_MAX(off + nl, in), (size_t)(q->backing_off + q->backing_len));
    err = img__pwrite_full(d->fd, h, VDI_MIN(used + 8, cs), 0);
    if (err == 0 && fdatasync(d->fd) < 0)
        err = -errno;
    if (err < 0) {
        VDI_LOG_ERR("image=%s rewriting the header failed: %s", d->path, vdi_strerror(err));
        goto out;
    }
    free(q->backing_name);
    free(q->backing_fmt);
    q->backing_name = name ? vdi_xstrdup(name) : NULL;
    q->backing_fmt = name && fmt ? vdi_xstrdup(fmt) : NULL;
out:
    free(h);
    free(old);
    return err;
}
