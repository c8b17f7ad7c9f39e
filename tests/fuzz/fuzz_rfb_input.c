// fuzz-srcs: server/rfb-input.c
// fuzz-libs:
/* libFuzzer target for server/rfb-input.c: a viewer's client-to-server RFB bytes (any bytes: a
 * logged-in viewer sends what it likes), cut into chunks by the first byte. Whatever comes, the
 * framer's header never overflows, a lost framing stays lost, and the verdicts do not depend on
 * where the stream was cut. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"
#include "server/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t step = 1 + data[0] % 17;
    data++;
    size--;
    srv_rfbin_t a, b;
    srv__rfbin_init(&a, data[0] % 3 == 0 ? 14 : 1);
    b = a;
    bool any_a = false, any_b = srv__rfbin_feed(&b, data, size); /* whole */
    for (size_t off = 0; off < size; off += step) {
        size_t n = VDI_MIN(step, size - off);
        any_a |= srv__rfbin_feed(&a, data + off, n);
        if (a.have > sizeof(a.hdr))
            abort();
    }
    /* The same bytes in other chunks: the same end state and the same "was there input". */
    if (any_a != any_b || a.lost != b.lost || a.have != b.have || a.skip != b.skip)
        abort();
    return 0;
}
