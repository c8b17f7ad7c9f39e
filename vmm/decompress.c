/* vmm/decompress.c: host-side decompression of a bzImage's payload (the compressed vmlinux),
 * with Debian's libraries (zlib, liblzma, libzstd, liblz4), and a cache of the result keyed by
 * the SHA-256 of the whole bzImage.
 *
 * Linux's arch/x86/boot/compressed/Makefile appends the uncompressed size as a little-endian
 * 32-bit word to xz, zstd and lz4 payloads (gzip carries it as ISIZE), so the last four bytes
 * size the output in every case. The output is the stripped vmlinux ELF (with the relocations
 * appended when the kernel is relocatable; the ELF loader ignores them).
 */
#define VDI_LOG_TAG "vmm"
#include <fcntl.h>
#include <inttypes.h>
#include <lz4.h>
#include <lzma.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "vmm/internal.h"

#define MAX_VMLINUX      (1ULL << 30)
#define LZ4_LEGACY_MAGIC 0x184c2102u
#define LZ4_LEGACY_BLOCK (8u << 20)

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int gunzip(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *got)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    if (inflateInit2(&s, 16 + MAX_WBITS) != Z_OK)
        return -ENOMEM;
    s.next_in = (Bytef *)in;
    s.avail_in = (uInt)VDI_MIN(len, (size_t)UINT32_MAX);
    s.next_out = out;
    s.avail_out = (uInt)VDI_MIN(cap, (size_t)UINT32_MAX);
    int r = inflate(&s, Z_FINISH);
    *got = s.total_out;
    inflateEnd(&s);
    return r == Z_STREAM_END ? 0 : VDI_EBADKERNEL;
}

static int unxz(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *got)
{
    uint64_t memlimit = 256ULL << 20;
    size_t in_pos = 0, out_pos = 0;
    lzma_ret r =
        lzma_stream_buffer_decode(&memlimit, 0, NULL, in, &in_pos, len, out, &out_pos, cap);
    *got = out_pos;
    return r == LZMA_OK ? 0 : (r == LZMA_MEM_ERROR ? -ENOMEM : VDI_EBADKERNEL);
}

static int unzstd(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *got)
{
    size_t r = ZSTD_decompress(out, cap, in, len);
    if (ZSTD_isError(r))
        return VDI_EBADKERNEL;
    *got = r;
    return 0;
}

/* The lz4 "legacy" frame Linux uses (lz4 -l): a magic word, then blocks of a 32-bit compressed
 * length and data, each expanding to at most 8 MiB; a new magic word may start another frame. */
static int unlz4(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *got)
{
    size_t off = 0;
    *got = 0;
    while (off + 4 <= len) {
        uint32_t n = le32(in + off);
        off += 4;
        if (n == LZ4_LEGACY_MAGIC)
            continue;
        if (n > len - off || n > (uint32_t)LZ4_compressBound(LZ4_LEGACY_BLOCK))
            return VDI_EBADKERNEL;
        int room = (int)VDI_MIN(cap - *got, (size_t)LZ4_LEGACY_BLOCK);
        int r = LZ4_decompress_safe((const char *)in + off, (char *)out + *got, (int)n, room);
        if (r < 0)
            return VDI_EBADKERNEL;
        *got += (size_t)r;
        off += n;
    }
    return *got ? 0 : VDI_EBADKERNEL;
}

int vmm__bzimage_decompress(const uint8_t *k, size_t len, uint8_t **out, size_t *out_len)
{
    if (len < 0x270 || memcmp(k + 0x202, "HdrS", 4) || (k[0x206] | k[0x207] << 8) < 0x208)
        return VDI_EBADKERNEL;
    unsigned setup_sects = k[0x1f1] ? k[0x1f1] : 4;
    uint64_t pm = (setup_sects + 1) * 512ULL;
    uint64_t poff = le32(k + 0x248), plen = le32(k + 0x24c);
    if (pm > len || poff > len - pm || plen > len - pm - poff || plen < 16)
        return VDI_EBADKERNEL;
    const uint8_t *p = k + pm + poff;
    uint64_t size = le32(p + plen - 4);
    if (size < 4096 || size > MAX_VMLINUX)
        return VDI_EBADKERNEL;
    uint8_t *buf = vdi_trymalloc(size);
    size_t got = 0;
    int err;
    if (!buf)
        return -ENOMEM;
    if (p[0] == 0x1f && p[1] == 0x8b)
        err = gunzip(p, plen, buf, size, &got);
    else if (!memcmp(p,
                     "\xfd"
                     "7zXZ\0",
                     6))
        err = unxz(p, plen - 4, buf, size, &got);
    else if (le32(p) == 0xfd2fb528u)
        err = unzstd(p, plen - 4, buf, size, &got);
    else if (le32(p) == LZ4_LEGACY_MAGIC)
        err = unlz4(p, plen - 4, buf, size, &got);
    else
        err = VDI_EBADKERNEL; /* bzip2, lzma, lzo: not supported here (--guest-decompress) */
    if (err == 0 && (got != size || got < 4 || memcmp(buf, "\177ELF", 4)))
        err = VDI_EBADKERNEL;
    if (err < 0) {
        free(buf);
        return err;
    }
    *out = buf;
    *out_len = got;
    return 0;
}

/* ---- Cache --------------------------------------------------------------------------------
 * One file per kernel, DIR/vmlinux-<SHA-256 of the bzImage, hex>.elf: a header, then the vmlinux.
 *
 *   off  len  field
 *     0    8  magic "VDIKCACH"
 *     8    4  format version (1), little-endian
 *    12    4  reserved, 0
 *    16   32  SHA-256 of the whole bzImage (the key, again)
 *    48    8  bzImage length, little-endian
 *    56    8  vmlinux length, little-endian
 *    64   32  SHA-256 of the vmlinux
 *    96       the vmlinux
 *
 * An entry is used only when every field matches the kernel being loaded, the file is exactly
 * that long and the vmlinux hashes to its digest, so neither a torn write, a flipped bit nor
 * another kernel's entry under this name can pass for this kernel: such an entry is logged,
 * ignored and written again. A CRC could be matched on purpose (it is linear); SHA-256 cannot.
 * The directory is made 0700, and one owned by another user, writable by group or others, or
 * reached through a symlink is not used at all (the kernel is decompressed every time then).
 * Entries are read and written relative to the directory's fd, with O_NOFOLLOW.
 */
#define CACHE_MAGIC   "VDIKCACH"
#define CACHE_VERSION 1u
#define CACHE_HDR     96u

struct cache_key {
    uint8_t sha[32]; /* of the bzImage */
    uint64_t len;    /* of the bzImage */
    char name[96];   /* the entry's file name */
};

static char *cache_dir(void)
{
    const char *d = getenv("VDI_VMM_CACHE_DIR");
    if (d && *d)
        return vdi_xstrdup(d);
    d = getenv("XDG_CACHE_HOME");
    if (d && *d)
        return vdi_xasprintf("%s/vdi-vmm", d);
    d = getenv("HOME");
    if (d && *d)
        return vdi_xasprintf("%s/.cache/vdi-vmm", d);
    return NULL;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t le64(const uint8_t *p)
{
    return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int sha256(const uint8_t *p, size_t len, uint8_t md[32])
{
    unsigned n = 0;
    return EVP_Digest(p, len, md, &n, EVP_sha256(), NULL) == 1 && n == 32 ? 0 : -ENOMEM;
}

/* Open @dir (made 0700, with its parent, when missing) if it is safe to trust: a directory, not
 * a symlink, owned by our effective uid, not writable by group or others. Returns an fd or a
 * negative code (logged). */
static int cache_open_dir(const char *dir)
{
    struct stat st;
    int fd, err;
    /* mkdir -p of the last two levels is enough for the defaults. */
    char *parent = vdi_xstrdup(dir), *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = 0;
        mkdir(parent, 0700);
    }
    free(parent);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        err = -errno;
        VDI_LOG_WARN("kernel cache %s cannot be created: %s; not caching", dir, vdi_strerror(err));
        return err;
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && lstat(dir, &st) == 0 && S_ISLNK(st.st_mode)) {
        VDI_LOG_WARN("kernel cache %s is a symlink; not using it", dir);
        return -ELOOP;
    }
    if (fd < 0) {
        err = -errno;
        VDI_LOG_WARN("kernel cache %s cannot be opened: %s; not caching", dir, vdi_strerror(err));
        return err;
    }
    if (fstat(fd, &st) < 0) {
        err = -errno;
    } else if (st.st_uid != geteuid()) {
        err = -EPERM;
        VDI_LOG_WARN("kernel cache %s is owned by uid %u, not by us (uid %u); not using it", dir,
                     (unsigned)st.st_uid, (unsigned)geteuid());
    } else if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        err = -EPERM;
        VDI_LOG_WARN("kernel cache %s is writable by group or others (mode %03o); not using it",
                     dir, (unsigned)(st.st_mode & 0777));
    } else {
        return fd;
    }
    close(fd);
    return err;
}

static int read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -EIO;
        got += (size_t)r;
    }
    return 0;
}

/* Load the entry for @key whose vmlinux is @size bytes. Returns 0 with *out set, -ENOENT when
 * there is none, or another negative code with @why set when there is one that does not hold. */
static int cache_load(int dfd, const struct cache_key *key, uint64_t size, uint8_t **out,
                      const char **why)
{
    uint8_t hdr[CACHE_HDR], md[32];
    struct stat st;
    int err = -EINVAL;
    int fd = openat(dfd, key->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        *why = "cannot be opened";
        return errno == ENOENT ? -ENOENT : -errno;
    }
    uint8_t *buf = NULL;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        *why = "is not a regular file of ours";
        goto out;
    }
    if ((uint64_t)st.st_size != CACHE_HDR + size) {
        *why = "has the wrong length";
        goto out;
    }
    if (read_full(fd, hdr, sizeof(hdr)) < 0) {
        *why = "cannot be read";
        goto out;
    }
    if (memcmp(hdr, CACHE_MAGIC, 8) || le32(hdr + 8) != CACHE_VERSION) {
        *why = "has a bad header";
        goto out;
    }
    if (memcmp(hdr + 16, key->sha, 32) || le64(hdr + 48) != key->len || le64(hdr + 56) != size) {
        *why = "belongs to another kernel";
        goto out;
    }
    buf = vdi_trymalloc(size);
    if (!buf) {
        err = -ENOMEM;
        *why = "does not fit in memory";
        goto out;
    }
    if (read_full(fd, buf, size) < 0) {
        *why = "cannot be read";
        goto out;
    }
    if ((err = sha256(buf, size, md)) < 0 || memcmp(md, hdr + 64, 32) || size < 4 ||
        memcmp(buf, "\177ELF", 4)) {
        err = -EINVAL;
        *why = "is corrupt (its contents do not match their digest)";
        goto out;
    }
    *out = buf;
    buf = NULL;
    err = 0;
out:
    free(buf);
    close(fd);
    return err;
}

static void cache_store(int dfd, const char *dir, const struct cache_key *key, const uint8_t *data,
                        size_t len)
{
    uint8_t hdr[CACHE_HDR] = {0};
    char tmp[128];
    int err = 0;
    memcpy(hdr, CACHE_MAGIC, 8);
    hdr[8] = CACHE_VERSION;
    memcpy(hdr + 16, key->sha, 32);
    put_le64(hdr + 48, key->len);
    put_le64(hdr + 56, len);
    if (sha256(data, len, hdr + 64) < 0)
        return;
    snprintf(tmp, sizeof(tmp), "%s.%d.tmp", key->name, (int)getpid());
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        err = -errno;
        goto fail;
    }
    const struct {
        const uint8_t *p;
        size_t n;
    } parts[2] = {{hdr, sizeof(hdr)}, {data, len}};
    for (int i = 0; i < 2 && err == 0; i++)
        for (size_t done = 0; done < parts[i].n && err == 0;) {
            ssize_t w = write(fd, parts[i].p + done, parts[i].n - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                err = w < 0 ? -errno : -EIO;
            else
                done += (size_t)w;
        }
    if (close(fd) < 0 && err == 0)
        err = -errno;
    if (err == 0 && renameat(dfd, tmp, dfd, key->name) < 0)
        err = -errno;
    if (err < 0)
        unlinkat(dfd, tmp, 0);
fail:
    if (err < 0)
        VDI_LOG_WARN("cannot cache the decompressed kernel in %s: %s", dir, vdi_strerror(err));
}

int vmm__kernel_cache_get(const uint8_t *k, size_t len, uint8_t **out, size_t *out_len)
{
    struct cache_key key = {.len = len};
    char *dir = NULL, hex[65];
    int dfd = -1, err;
    uint64_t size = 0;

    /* The key covers the whole bzImage (setup header included): the vmlinux length the payload
     * announces is only used to size the entry. */
    if (len >= 0x270 && sha256(k, len, key.sha) == 0) {
        unsigned setup_sects = k[0x1f1] ? k[0x1f1] : 4;
        uint64_t pm = (setup_sects + 1) * 512ULL, poff = le32(k + 0x248), plen = le32(k + 0x24c);
        if (pm + poff + plen <= len && plen >= 16)
            size = le32(k + pm + poff + plen - 4);
        if (size)
            dir = cache_dir();
    }
    if (dir)
        dfd = cache_open_dir(dir);
    if (dfd >= 0) {
        const char *why = NULL;
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", key.sha[i]);
        snprintf(key.name, sizeof(key.name), "vmlinux-%s.elf", hex);
        err = cache_load(dfd, &key, size, out, &why);
        if (err == 0) {
            *out_len = size;
            VDI_LOG_DEBUG("decompressed kernel from the cache: %s/%s", dir, key.name);
            goto done;
        }
        if (err != -ENOENT)
            VDI_LOG_WARN("kernel cache entry %s/%s %s; decompressing again", dir, key.name, why);
    }
    err = vmm__bzimage_decompress(k, len, out, out_len);
    if (err == 0 && dfd >= 0)
        cache_store(dfd, dir, &key, *out, *out_len);
done:
    if (dfd >= 0)
        close(dfd);
    free(dir);
    return err;
}
