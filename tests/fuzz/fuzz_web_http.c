// fuzz-srcs: server/http-parse.c common/*.c
// fuzz-libs: -lhttp_parser
/* tests/fuzz/fuzz_web_http.c: the portal's HTTP request parser (http-parser under our limits and
 * header rules) and the cookie and query lookups on arbitrary bytes, fed in pieces whose sizes
 * come from the input, with pipelined requests taken one at a time as vdid does. Every outcome
 * is a request, "need more" or an error code with the HTTP status to answer; a request's fields
 * are NUL-terminated and within the limits. */
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"
#include "server/internal-web.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t piece = (size_t)data[0] % 64 + 1; /* delivery in pieces of this size */
    data++;
    size--;
    srv_httpreq_t *r = srv__httpreq_create();
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < piece ? size - off : piece;
        size_t used = 0;
        int rc = srv__httpreq_feed(r, data + off, n, &used);
        VDI_ASSERT(used <= n);
        if (rc == 0) {
            VDI_ASSERT(used == n);
            off += n;
            continue;
        }
        if (rc < 0) {
            int status = srv__httpreq_status(r);
            VDI_ASSERT(rc == VDI_EPROTOCOL || rc == -ENOMEM);
            VDI_ASSERT(status == 400 || status == 413 || status == 414 || status == 431 ||
                       status == 505 || (status == 503 && rc == -ENOMEM));
            break;
        }
        const srv_httpreq_info_t *in = srv__httpreq_info(r);
        VDI_ASSERT(in->path[0] == '/');
        VDI_ASSERT(strlen(in->path) <= SRV_HTTP_MAX_URL && strlen(in->query) <= SRV_HTTP_MAX_URL);
        VDI_ASSERT(in->body_len <= SRV_HTTP_MAX_BODY);
        VDI_ASSERT(strlen(in->host) < sizeof(in->host) && strlen(in->cookie) < sizeof(in->cookie));
        for (const char *c = in->origin; *c; c++)
            VDI_ASSERT((unsigned char)*c >= 0x20 || *c == '\t');
        char v[64];
        if (srv__http_cookie(in->cookie, "vdi_session", v, sizeof(v)))
            VDI_ASSERT(v[0] && strlen(v) < sizeof(v) && !strchr(v, ';'));
        if (srv__http_query(in->query, "token", v, sizeof(v)))
            VDI_ASSERT(strlen(v) < sizeof(v) && !strchr(v, '&'));
        off += used;
        if (in->is_upgrade)
            break; /* the rest would be WebSocket frames */
        srv__httpreq_reset(r);
    }
    srv__httpreq_destroy(r);
    return 0;
}
