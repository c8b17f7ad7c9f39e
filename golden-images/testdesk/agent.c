/* golden-images/testdesk/agent.c: testdesk's side of central patching. At boot it reads the data
 * area of disk 0 (patch.h) and shows what a patch put there (files, the banner, a request to
 * crash, which desk.c carries out after READY); in a maintenance VM (a read-only disk holding a
 * ustar bundle with a `run` member) it runs that script against the data area, writes the area
 * back, prints "PATCH EXIT N" on serial and powers off. docs/testdesk.md. */
#include "golden-images/testdesk/desk.h"
#include "golden-images/testdesk/patch.h"

#define SECTOR      512
#define AREA_SECTOR (TP_AREA_OFFSET / SECTOR)
#define AREA_COUNT  (TP_AREA_BYTES / SECTOR)

static struct tp_area area;
static uint8_t *area_buf; /* TP_AREA_BYTES, from td_alloc */
static bool area_ok;      /* disk 0 is big enough and its area parsed (or was empty) */
static bool crash_set;    /* the area holds a valid `crash` file: crash crash_ms after READY */
static uint64_t crash_ms;
static bool hang_set; /* ... a valid `hang` file: the guest agent stops hang_ms after READY */
static uint64_t hang_ms;

static bool read_area(void)
{
    char why[96];
    if (td_blk_count() == 0 || td_blk_sectors(0) < AREA_SECTOR + AREA_COUNT)
        return false;
    if (!area_buf && !(area_buf = td_alloc(TP_AREA_BYTES, 4096))) {
        td_printf("TESTDESK FAIL data area out of memory\n");
        return false;
    }
    if (td_blk_io(0, false, AREA_SECTOR, area_buf, AREA_COUNT) < 0) {
        td_printf("TESTDESK FAIL data area cannot be read from disk0\n");
        return false;
    }
    if (tp_area_parse(area_buf, TP_AREA_BYTES, &area, why, sizeof(why)) < 0) {
        td_printf("TESTDESK FAIL data area damaged: %s\n", why);
        return false;
    }
    return true;
}

/* testdesk.data=N: count this boot on the user's data disk N. */
static void data_disk_boot(void)
{
    unsigned dn = td_opt.data_disk;
    uint8_t *sec = td_alloc(SECTOR, SECTOR);
    if (!dn || !sec)
        return;
    if (dn >= td_blk_count() || td_blk_ro(dn)) {
        td_printf("TESTDESK FAIL data disk%u %s\n", dn,
                  dn >= td_blk_count() ? "missing" : "is read-only");
        return;
    }
    if (td_blk_io(dn, false, 0, sec, 1) < 0) {
        td_printf("TESTDESK FAIL data disk%u cannot be read\n", dn);
        return;
    }
    uint64_t n = tp_data_boot(sec);
    if (!n) {
        td_printf("TESTDESK FAIL data disk%u holds something else; left alone\n", dn);
        return;
    }
    if (td_blk_io(dn, true, 0, sec, 1) < 0 || td_blk_flush(dn) < 0) {
        td_printf("TESTDESK FAIL data disk%u cannot be written\n", dn);
        return;
    }
    td_printf("TESTDESK DATA disk=%u boots=%lu\n", dn, n);
}

void td_agent_boot(void)
{
    data_disk_boot();
    area_ok = read_area();
    if (!area_ok)
        return;
    for (unsigned i = 0; i < area.n; i++)
        td_printf("testdesk: file %s size=%u\n", area.f[i].name, area.f[i].len);
    const struct tp_file *b = tp_area_get(&area, "banner");
    if (b) {
        td_printf("TESTDESK BANNER %s\n", b->data);
        td_fb_banner(b->data);
    }
    char why[96];
    int r = tp_file_ms(&area, "crash", &crash_ms, why, sizeof(why));
    if (r < 0)
        td_printf("TESTDESK FAIL crash file ignored: %s\n", why);
    crash_set = r > 0;
    if (crash_set)
        td_printf("TESTDESK CRASH in %lu ms\n", crash_ms);
    r = tp_file_ms(&area, "hang", &hang_ms, why, sizeof(why));
    if (r < 0)
        td_printf("TESTDESK FAIL hang file ignored: %s\n", why);
    hang_set = r > 0;
    if (hang_set)
        td_printf("TESTDESK AGENT hang in %lu ms\n", hang_ms);
}

bool td_agent_crash_ms(uint64_t *ms)
{
    *ms = crash_ms;
    return crash_set;
}

bool td_agent_hang_ms(uint64_t *ms)
{
    *ms = hang_ms;
    return hang_set;
}

struct bundle {
    unsigned disk;
    uint8_t *sec; /* one sector */
};

static int bundle_read(void *ctx, uint64_t off, void *buf, size_t len)
{
    struct bundle *b = ctx;
    uint8_t *out = buf;
    while (len) {
        uint64_t s = off / SECTOR, in = off % SECTOR;
        size_t n = SECTOR - in < len ? SECTOR - in : len;
        if (td_blk_io(b->disk, false, s, b->sec, 1) < 0)
            return -1;
        memcpy(out, b->sec + in, n);
        out += n;
        off += n;
        len -= n;
    }
    return 0;
}

static void out_line(void *ctx, const char *line)
{
    (void)ctx;
    td_printf("%s\n", line);
}

static void sleep_ms(void *ctx, unsigned ms)
{
    (void)ctx;
    td_udelay((uint64_t)ms * 1000);
}

void td_agent_patch(void)
{
    static char script[TP_SCRIPT_MAX];
    struct bundle b = {0, td_alloc(SECTOR, SECTOR)};
    uint64_t off = 0, size = 0;
    int found = 0;
    if (!b.sec)
        return;
    for (b.disk = 1; b.disk < td_blk_count() && found == 0; b.disk++) {
        if (!td_blk_ro(b.disk))
            continue;
        found = tp_tar_find(bundle_read, &b, td_blk_sectors(b.disk) * SECTOR, "run", &off, &size);
        if (found)
            break;
    }
    if (found == 0)
        return;
    td_printf("testdesk: patch agent: bundle on disk%u\n", b.disk);
    /* A broken version must still be patchable: the maintenance VM never arms the crash. */
    if (crash_set)
        td_printf("testdesk: patch agent: no crash in a maintenance VM (file crash)\n");
    int code = 0;
    if (found < 0) {
        td_printf("patch: the bundle on disk%u cannot be read\n", b.disk);
        code = 125;
    } else if (size > TP_SCRIPT_MAX) {
        td_printf("patch: run is %lu bytes, more than testdesk runs (%u)\n", size, TP_SCRIPT_MAX);
        code = 125;
    } else if (!area_ok) {
        td_printf("patch: disk0 has no usable data area (see above)\n");
        code = 125;
    } else if (bundle_read(&b, off, script, (size_t)size) < 0) {
        td_printf("patch: cannot read run from the bundle\n");
        code = 125;
    } else {
        struct tp_env env = {
            .ctx = &b,
            .out = out_line,
            .sleep_ms = sleep_ms,
            .rd = bundle_read,
            .bundle_bytes = td_blk_sectors(b.disk) * SECTOR,
            .fetch = td_have_net() ? td_net_fetch : NULL,
        };
        if (tp_script_run(script, (size_t)size, &area, &env, &code) == TP_HANG) {
            for (;;)
                td_sleep(td_irq_count);
        }
        if (tp_area_format(&area, area_buf, TP_AREA_BYTES) < 0 ||
            td_blk_io(0, true, AREA_SECTOR, area_buf, AREA_COUNT) < 0 || td_blk_flush(0) < 0) {
            td_printf("patch: cannot write the data area back to disk0\n");
            code = 125;
        }
    }
    td_printf("PATCH EXIT %d\n", code);
    td_poweroff();
}
