/* golden-images/tools/mktestdisk.c: write testdesk's system disk with our own qcow2 writer.
 *
 *   mktestdisk OUT SIZE SECTORS PATTERN
 *
 * Sectors 0..SECTORS-1 hold testdesk's test pattern (golden-images/testdesk/blk.c): "TDSK", the
 * sector number as a little-endian 64-bit number, then 500 bytes of PATTERN; the rest of the
 * disk is unallocated (reads as zeros). In the guest, `disk-verify 0 0 SECTORS PATTERN` passes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/img.h"

int main(int argc, char **argv)
{
    uint64_t size, sectors, pat;
    if (argc != 5 || vdi_parse_size(argv[2], 1 << 20, 1ULL << 40, &size) < 0 ||
        vdi_parse_u64(argv[3], 1, size / 512, &sectors) < 0 ||
        vdi_parse_u64(argv[4], 0, 255, &pat) < 0) {
        fprintf(stderr, "usage: mktestdisk OUT SIZE SECTORS PATTERN(0..255)\n");
        return 2;
    }
    vdi_log_init_from_env();
    char *tmp = vdi_xasprintf("%s.tmp", argv[1]);
    struct img_create_opts o = {.size = size, .overwrite = true};
    img_disk_t *d;
    int err = img_create(tmp, &o);
    if (err == 0)
        err = img_open(tmp, 0, &d);
    if (err < 0) {
        fprintf(stderr, "mktestdisk: %s: %s\n", tmp, vdi_strerror(err));
        return 1;
    }
    uint8_t *buf = vdi_xmalloc(512 * 256);
    for (uint64_t s = 0; s < sectors && err == 0; s += 256) {
        uint64_t n = VDI_MIN(256, sectors - s);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t sec = s + i; /* little-endian on the host we build on (x86-64) */
            memcpy(buf + 512 * i, "TDSK", 4);
            memcpy(buf + 512 * i + 4, &sec, 8);
            memset(buf + 512 * i + 12, (int)pat, 500);
        }
        err = img_pwrite(d, buf, n * 512, s * 512);
    }
    free(buf);
    if (err == 0)
        err = img_flush(d);
    img_close(d);
    if (err == 0 && rename(tmp, argv[1]) < 0)
        err = -errno;
    if (err < 0) {
        fprintf(stderr, "mktestdisk: %s: %s\n", argv[1], vdi_strerror(err));
        unlink(tmp);
        return 1;
    }
    free(tmp);
    return 0;
}
