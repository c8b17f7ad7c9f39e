// fuzz-srcs: vmm/serial-sink.c common/*.c
// fuzz-libs:
/* libFuzzer target for vmm/serial-sink.c: the input is a guest's COM1 output cut into writes,
 * each with a clock step, through a sink on an fd it cannot rotate (vdid's stdout case) with a
 * cap and a rate the first bytes choose. Whatever the guest writes, the log must hold only
 * printable ASCII, \n and \t, and no more than the cap plus one report line per minute of
 * clock. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char out[1 << 20];
    if (size < 2)
        return 0;
    int fd = memfd_create("serial", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    uint64_t max = VMM_SERIAL_LOG_MAX_MIN << (data[0] % 6);
    uint64_t rate = 64ull << (data[1] % 12), now = 0;
    struct vmm_serial_sink_opts o = {.fd = fd, .max_bytes = max, .rate = rate};
    vmm_serial_sink_t *s;
    if (vmm__serial_sink_create(&o, &s) < 0)
        abort();
    data += 2;
    size -= 2;
    /* Records: [length][clock step in 10 ms units][length bytes of output]. */
    while (size >= 2) {
        size_t n = VDI_MIN((size_t)data[0], size - 2);
        now += 10ull * data[1];
        vmm__serial_sink_write(s, data + 2, n, now);
        data += 2 + n;
        size -= 2 + n;
    }
    vmm__serial_sink_destroy(s, now);
    ssize_t got = pread(fd, out, sizeof(out), 0);
    close(fd);
    if (got < 0)
        abort();
    for (ssize_t i = 0; i < got; i++) {
        unsigned char c = (unsigned char)out[i];
        if (!((c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t'))
            abort(); /* a control byte or escape reached the log */
    }
    if ((uint64_t)got > max + 200 * (now / VMM_SERIAL_CAP_REPORT_MS + 2))
        abort(); /* the cap did not hold */
    return 0;
}
