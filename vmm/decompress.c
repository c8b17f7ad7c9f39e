/* vmm/decompress.c: host-side decompression of a bzImage's payload (the compressed vmlinux),
 * with Debian's libraries (zlib, liblzma, libzstd, liblz4), and a cache of the result keyed by
 * the payload's checksums.
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

/* ---- Cache -------------------------------------------------------------------------------- */
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

static int read_all(const char *path, uint64_t want, uint8_t **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != want) {
        close(fd);
        return -EINVAL;
    }
    uint8_t *buf = vdi_trymalloc(want ? want : 1);
    size_t got = 0;
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    while (got < want) {
        ssize_t r = read(fd, buf + got, want - got);
        if (r <= 0) {
            close(fd);
            free(buf);
            return -EIO;
        }
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    return 0;
}

static void write_atomic(const char *dir, const char *path, const uint8_t *data, size_t len)
{
    char *tmp = vdi_xasprintf("%s.%d.tmp", path, (int)getpid());
    int fd;
    /* mkdir -p of the last two levels is enough for the defaults. */
    char *parent = vdi_xstrdup(dir), *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = 0;
        mkdir(parent, 0700);
    }
    free(parent);
    mkdir(dir, 0700);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        goto fail;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, data + done, len - done);
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            goto fail;
        }
        done += (size_t)w;
    }
    if (close(fd) < 0 || rename(tmp, path) < 0) {
        unlink(tmp);
        goto fail;
    }
    free(tmp);
    return;
fail:
    VDI_LOG_WARN("cannot cache the decompressed kernel in %s: %s", dir, strerror(errno));
    free(tmp);
}

int vmm__kernel_cache_get(const uint8_t *k, size_t len, uint8_t **out, size_t *out_len)
{
    /* The key covers the whole bzImage (setup header included), with two independent checksums
     * and the length, so a collision needs both a CRC-64 and a CRC-32 collision at once. */
    uint64_t c64 = lzma_crc64(k, len, 0);
    uint32_t c32 = (uint32_t)crc32(0, k, (uInt)VDI_MIN(len, (size_t)UINT32_MAX));
    char *dir = cache_dir(), *path = NULL;
    int err;

    if (len >= 0x270) {
        unsigned setup_sects = k[0x1f1] ? k[0x1f1] : 4;
        uint64_t pm = (setup_sects + 1) * 512ULL, poff = le32(k + 0x248), plen = le32(k + 0x24c);
        if (dir && pm + poff + plen <= len && plen >= 16) {
            uint64_t size = le32(k + pm + poff + plen - 4);
            path = vdi_xasprintf("%s/vmlinux-%016" PRIx64 "-%08x-%zu.elf", dir, c64, c32, len);
            if (read_all(path, size, out) == 0) {
                if (size < 4 || memcmp(*out, "\177ELF", 4)) {
                    free(*out);
                    *out = NULL;
                    goto decompress;
                }
                *out_len = size;
                VDI_LOG_DEBUG("decompressed kernel from the cache: %s", path);
                free(path);
                free(dir);
                return 0;
            }
        }
    }
decompress:
    err = vmm__bzimage_decompress(k, len, out, out_len);
    if (err == 0 && path)
        write_atomic(dir, path, *out, *out_len);
    free(path);
    free(dir);
    return err;
}
