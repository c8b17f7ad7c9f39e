// fuzz-srcs: golden-images/testdesk/patch.c
// fuzz-libs:
/* libFuzzer target for golden-images/testdesk/patch.c, testdesk's patch agent: everything it
 * reads comes from disks (the data area of the system disk, the ustar bundle and its `run`
 * script). The first byte chooses what the rest is: a data area (parsed, and what parses must
 * format back to the same files, and its `crash` file, if any, read), a bundle disk (searched for `run` and `notes`), or a script
 * run against an area with the rest of the input also as the bundle disk. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "golden-images/testdesk/patch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tp_area area, again;
static uint8_t buf[TP_AREA_BYTES];

struct disk {
    const uint8_t *p;
    size_t n;
};

static int rd(void *ctx, uint64_t off, void *out, size_t len)
{
    const struct disk *d = ctx;
    if (off > d->n || len > d->n - off)
        return -1;
    memcpy(out, d->p + off, len);
    return 0;
}

static void out(void *ctx, const char *line)
{
    (void)ctx;
    if (strlen(line) > TP_LINE_MAX + 64)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[96];
    if (size < 1)
        return 0;
    unsigned mode = data[0] % 3;
    struct disk d = {data + 1, size - 1};
    if (mode == 0) {
        if (tp_area_parse(d.p, d.n, &area, why, sizeof(why)) == 1) {
            uint64_t ms;
            if (tp_file_ms(&area, "crash", &ms, why, sizeof(why)) == 1 && ms > TP_FILE_MS_MAX)
                abort();
            if (tp_area_format(&area, buf, sizeof(buf)) == 0) {
                if (tp_area_parse(buf, sizeof(buf), &again, why, sizeof(why)) != 1 ||
                    again.n != area.n)
                    abort();
                for (unsigned i = 0; i < area.n; i++)
                    if (again.f[i].len != area.f[i].len ||
                        memcmp(again.f[i].data, area.f[i].data, area.f[i].len))
                        abort();
            }
        }
    } else if (mode == 1) {
        uint64_t off, sz;
        const char *names[] = {"run", "notes"};
        for (unsigned i = 0; i < 2; i++)
            if (tp_tar_find(rd, &d, d.n, names[i], &off, &sz) == 1 && (off > d.n || sz > d.n - off))
                abort();
    } else {
        area.n = 0;
        tp_area_put(&area, "banner", "x", 1);
        struct tp_env env = {.ctx = &d, .out = out, .rd = rd, .bundle_bytes = d.n};
        int code;
        tp_script_run((const char *)d.p, d.n, &area, &env, &code);
        if (code < 0 || code > 255 || area.n > TP_FILES_MAX)
            abort();
    }
    return 0;
}
