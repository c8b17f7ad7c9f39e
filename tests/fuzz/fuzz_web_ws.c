// fuzz-srcs: server/ws.c common/*.c
// fuzz-libs: -lwslay -lcrypto
/* tests/fuzz/fuzz_web_ws.c: the portal's WebSocket framing (wslay behind our sans-IO wrapper) on
 * arbitrary client bytes, in pieces whose sizes come from the input, with server messages sent
 * in between; and the Sec-WebSocket-Accept computation on arbitrary keys. Messages handed up are
 * within SRV_WS_MAX_MSG; once finished or broken, the socket stays so. */
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"
#include "server/internal-web.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
    size_t out_bytes;
    size_t msgs;
    bool fail_output;
};

static void on_msg(void *ctx, const uint8_t *d, size_t n)
{
    struct sink *s = ctx;
    VDI_ASSERT(n <= SRV_WS_MAX_MSG);
    VDI_ASSERT(n == 0 || d != NULL);
    s->msgs++;
}

static int on_out(void *ctx, const uint8_t *d, size_t n)
{
    struct sink *s = ctx;
    VDI_ASSERT(d && n > 0);
    s->out_bytes += n;
    return s->fail_output ? -EPIPE : 0;
}

static const srv_ws_ops_t ops = {.message = on_msg, .output = on_out};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    char key[32], acc[29];
    size_t kl = size < sizeof(key) - 1 ? size : sizeof(key) - 1;
    memcpy(key, data, kl);
    key[kl] = 0;
    if (srv__ws_accept_key(key, acc) == 0)
        VDI_ASSERT(strlen(acc) == 28);

    size_t piece = (size_t)data[0] % 200 + 1;
    bool fail_late = data[1] & 1;
    data += 2;
    size -= 2;
    struct sink s = {0};
    srv_ws_t *w = NULL;
    if (srv__ws_create(&ops, &s, &w) < 0)
        return 0;
    size_t off = 0;
    int state = 0;
    while (off < size && state == 0) {
        size_t n = size - off < piece ? size - off : piece;
        state = srv__ws_feed(w, data + off, n);
        VDI_ASSERT(state <= 1);
        off += n;
        if (state == 0 && (off & 3) == 0)
            srv__ws_send(w, data, off < 300 ? off : 300);
        if (fail_late && off > size / 2)
            s.fail_output = true;
    }
    if (state == 0)
        srv__ws_close(w, 1000, "bye");
    srv__ws_destroy(w);
    return 0;
}
