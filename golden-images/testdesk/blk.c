/* golden-images/testdesk/blk.c: virtio-blk (virtio 1.2 §5.2) and virtio-rng (§5.4), driven one
 * request at a time from the command interpreter.
 *
 * Test pattern: sector s written by `disk-write D S N P` holds "TDSK", then s as a little-endian
 * 64-bit number, then 500 bytes of the pattern byte P. A host can check it without the guest. */
#include "golden-images/testdesk/desk.h"

#define VIRTIO_BLK_F_RO    (1ULL << 5)
#define VIRTIO_BLK_F_FLUSH (1ULL << 9)
#define T_IN               0
#define T_OUT              1
#define T_FLUSH            4
#define MAX_DISKS          8
#define CHUNK              128 /* sectors per request */
#define TIMEOUT_US         5000000

struct req_hdr {
    uint32_t type, reserved;
    uint64_t sector;
};

struct disk {
    struct td_virtio v;
    uint64_t sectors;
    bool ro;
};

static struct disk disks[MAX_DISKS];
static unsigned ndisks;
static struct req_hdr *hdr;
static uint8_t *status, *buf;
static struct td_virtio rng;
static bool rng_ok;
static uint8_t *rng_buf;

unsigned td_blk_count(void)
{
    return ndisks;
}

bool td_have_rng(void)
{
    return rng_ok;
}

static bool buffers(void)
{
    if (!buf) {
        hdr = td_alloc(sizeof(*hdr), 16);
        status = td_alloc(1, 1);
        buf = td_alloc(CHUNK * 512, 4096);
    }
    return hdr && status && buf;
}

void td_blk_probe(const struct td_pci_dev *d)
{
    if (ndisks == MAX_DISKS) {
        td_printf("testdesk: virtio-blk %02x:%02x.%x not used (%u disks already)\n", d->bus, d->dev,
                  d->fn, MAX_DISKS);
        return;
    }
    struct disk *k = &disks[ndisks];
    if (td_virtio_init(&k->v, d, "virtio-blk", VIRTIO_BLK_F_RO | VIRTIO_BLK_F_FLUSH, 1, 16) < 0)
        return;
    if (!k->v.devcfg || !buffers()) {
        td_printf("TESTDESK FAIL virtio-blk %s\n", buf ? "no device config" : "out of memory");
        return;
    }
    k->sectors = rd64(k->v.devcfg + 0);
    k->ro = k->v.features & VIRTIO_BLK_F_RO;
    td_virtio_driver_ok(&k->v);
    td_printf("testdesk: disk%u sectors=%lu ro=%u flush=%u\n", ndisks, k->sectors, k->ro,
              (k->v.features & VIRTIO_BLK_F_FLUSH) ? 1 : 0);
    ndisks++;
}

/* One request: header, optional data, status. Returns the status byte, or -1 on timeout. */
static int request(struct disk *k, uint32_t type, uint64_t sector, uint32_t bytes)
{
    struct td_vq *q = &k->v.vq[0];
    hdr->type = type;
    hdr->reserved = 0;
    hdr->sector = sector;
    *status = 0xff;
    uint64_t a[3] = {(uint64_t)(uintptr_t)hdr, (uint64_t)(uintptr_t)buf,
                     (uint64_t)(uintptr_t)status};
    uint32_t l[3] = {sizeof(*hdr), bytes, 1};
    bool w[3] = {false, type == T_IN, true};
    if (!bytes) {
        a[1] = a[2];
        l[1] = 1;
        w[1] = true;
    }
    if (!td_vq_post(q, a, l, w, bytes ? 3 : 2))
        return -1;
    td_vq_kick(q);
    if (!td_vq_wait(q, TIMEOUT_US))
        return -1;
    uint16_t head;
    uint32_t len;
    td_vq_take(q, &head, &len);
    return *status;
}

static void fill(uint8_t *p, uint64_t sector, uint8_t pat)
{
    memcpy(p, "TDSK", 4);
    memcpy(p + 4, &sector, 8);
    memset(p + 12, pat, 500);
}

static uint32_t fnv1a(uint32_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

uint64_t td_blk_sectors(unsigned dn)
{
    return dn < ndisks ? disks[dn].sectors : 0;
}

bool td_blk_ro(unsigned dn)
{
    return dn < ndisks && disks[dn].ro;
}

int td_blk_io(unsigned dn, bool write, uint64_t sector, void *data, uint32_t count)
{
    if (dn >= ndisks || (write && disks[dn].ro) || count > disks[dn].sectors ||
        sector > disks[dn].sectors - count)
        return -1;
    struct disk *k = &disks[dn];
    uint8_t *p = data;
    for (uint32_t done = 0; done < count;) {
        uint32_t c = count - done < CHUNK ? count - done : CHUNK;
        if (write)
            memcpy(buf, p + 512ULL * done, c * 512ULL);
        if (request(k, write ? T_OUT : T_IN, sector + done, c * 512) != 0)
            return -1;
        if (!write)
            memcpy(p + 512ULL * done, buf, c * 512ULL);
        done += c;
    }
    return 0;
}

int td_blk_flush(unsigned dn)
{
    if (dn >= ndisks)
        return -1;
    if (!(disks[dn].v.features & VIRTIO_BLK_F_FLUSH))
        return 0;
    return request(&disks[dn], T_FLUSH, 0, 0) == 0 ? 0 : -1;
}

void td_blk_cmd(const char *op, int argc, char **argv)
{
    char what[32], detail[160];
    uint64_t dn = 0, sector = 0, count = 0, pat = 0;
    bool need_range = strcmp(op, "flush") != 0;
    bool need_pat = !strcmp(op, "write") || !strcmp(op, "verify");
    td_snprintf(what, sizeof(what), "disk-%s", op);
    bool ok = argc >= 2 && td_parse_u64(argv[1], &dn);
    if (ok && need_range)
        ok = argc >= 4 && td_parse_u64(argv[2], &sector) && td_parse_u64(argv[3], &count);
    if (ok && need_pat)
        ok = argc >= 5 && td_parse_u64(argv[4], &pat) && pat <= 255;
    if (!ok) {
        td_printf("TESTDESK FAIL %s usage: %s DISK%s%s\n", what, what,
                  need_range ? " SECTOR COUNT" : "", need_pat ? " PATTERN(0..255)" : "");
        return;
    }
    if (dn >= ndisks) {
        td_printf("TESTDESK FAIL %s disk=%lu no such disk (%u disks)\n", what, dn, ndisks);
        return;
    }
    struct disk *k = &disks[dn];
    int n = td_snprintf(detail, sizeof(detail), "disk=%lu", dn);
    if (need_range)
        n += td_snprintf(detail + n, sizeof(detail) - (size_t)n, " sector=%lu count=%lu", sector,
                         count);
    if (need_pat)
        td_snprintf(detail + n, sizeof(detail) - (size_t)n, " pattern=0x%02lx", pat);
    if (!strcmp(op, "flush")) {
        if (!(k->v.features & VIRTIO_BLK_F_FLUSH)) {
            td_printf("TESTDESK FAIL %s %s flush not offered by the device\n", what, detail);
            return;
        }
        int st = request(k, T_FLUSH, 0, 0);
        td_printf("TESTDESK %s %s %s%s\n", st == 0 ? "OK" : "FAIL", what, detail,
                  st == 0 ? "" : (st < 0 ? " timeout" : " device error"));
        return;
    }
    if (!count || count > k->sectors || sector > k->sectors - count) {
        td_printf("TESTDESK FAIL %s %s out of range (%lu sectors)\n", what, detail, k->sectors);
        return;
    }
    if (!strcmp(op, "write") && k->ro) {
        td_printf("TESTDESK FAIL %s %s read-only disk\n", what, detail);
        return;
    }
    uint32_t hash = 2166136261u;
    for (uint64_t s = sector; s < sector + count;) {
        uint32_t c = (uint32_t)(sector + count - s < CHUNK ? sector + count - s : CHUNK);
        bool wr = !strcmp(op, "write");
        if (wr)
            for (uint32_t i = 0; i < c; i++)
                fill(buf + 512 * i, s + i, (uint8_t)pat);
        int st = request(k, wr ? T_OUT : T_IN, s, c * 512);
        if (st != 0) {
            td_printf("TESTDESK FAIL %s %s at sector %lu: %s (status %d)\n", what, detail, s,
                      st < 0 ? "timeout" : "device error", st);
            return;
        }
        if (!strcmp(op, "verify")) {
            uint8_t want[512];
            for (uint32_t i = 0; i < c; i++) {
                fill(want, s + i, (uint8_t)pat);
                if (memcmp(want, buf + 512 * i, 512)) {
                    td_printf("TESTDESK FAIL %s %s mismatch at sector %lu\n", what, detail, s + i);
                    return;
                }
            }
        }
        hash = fnv1a(hash, buf, c * 512);
        s += c;
    }
    if (!strcmp(op, "read"))
        td_printf("TESTDESK OK %s %s fnv1a=0x%08x\n", what, detail, hash);
    else
        td_printf("TESTDESK OK %s %s\n", what, detail);
}

void td_rng_probe(const struct td_pci_dev *d)
{
    if (rng_ok) {
        td_printf("testdesk: virtio-rng %02x:%02x.%x not used (have one)\n", d->bus, d->dev, d->fn);
        return;
    }
    if (td_virtio_init(&rng, d, "virtio-rng", 0, 1, 8) < 0)
        return;
    rng_buf = td_alloc(4096, 16);
    if (!rng_buf) {
        td_printf("TESTDESK FAIL virtio-rng out of memory\n");
        return;
    }
    td_virtio_driver_ok(&rng);
    rng_ok = true;
    td_printf("testdesk: rng\n");
}

void td_rng_cmd(int argc, char **argv)
{
    uint64_t want = 32;
    if ((argc >= 2 && !td_parse_u64(argv[1], &want)) || !want || want > 4096) {
        td_printf("TESTDESK FAIL rng usage: rng [BYTES(1..4096)]\n");
        return;
    }
    if (!rng_ok) {
        td_printf("TESTDESK FAIL rng no virtio-rng device\n");
        return;
    }
    uint64_t got = 0;
    while (got < want) {
        uint64_t a = (uint64_t)(uintptr_t)(rng_buf + got);
        uint32_t l = (uint32_t)(want - got), len;
        bool w = true;
        uint16_t head;
        struct td_vq *q = &rng.vq[0];
        td_vq_post(q, &a, &l, &w, 1);
        td_vq_kick(q);
        if (!td_vq_wait(q, TIMEOUT_US)) {
            td_printf("TESTDESK FAIL rng bytes=%lu timeout after %lu bytes\n", want, got);
            return;
        }
        td_vq_take(q, &head, &len);
        if (!len || len > l) {
            td_printf("TESTDESK FAIL rng bytes=%lu device returned %u bytes\n", want, len);
            return;
        }
        got += len;
    }
    char hex[33];
    unsigned n = want < 16 ? (unsigned)want : 16;
    bool all_zero = true;
    for (unsigned i = 0; i < want; i++)
        all_zero &= rng_buf[i] == 0;
    for (unsigned i = 0; i < n; i++)
        td_snprintf(hex + 2 * i, 3, "%02x", rng_buf[i]);
    if (all_zero && want >= 8)
        td_printf("TESTDESK FAIL rng bytes=%lu all zero\n", want);
    else
        td_printf("TESTDESK OK rng bytes=%lu head=%s\n", want, hex);
}
