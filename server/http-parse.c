/* server/http-parse.c: one HTTP/1.1 request from plaintext bytes, parsed by http-parser
 * (libhttp-parser, Node.js's former parser), with our limits: request line and headers at most
 * SRV_HTTP_MAX_HEAD bytes, target SRV_HTTP_MAX_URL, body SRV_HTTP_MAX_BODY (Content-Length or
 * chunked). We keep the few headers the portal reads; a second Host, Origin, Content-Length or
 * X-CSRF-Token is an error (request smuggling and confused checks), a second Cookie is joined.
 *
 * The parser is paused at the end of each message, so pipelined requests are taken one at a time
 * and an Upgrade request leaves the bytes after it to the WebSocket.
 */
#define VDI_LOG_TAG "http"
#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/vdi.h"
#include "server/internal-web.h"

enum hdr {
    H_NONE = -1,
    H_HOST,
    H_ORIGIN,
    H_COOKIE,
    H_CONTENT_TYPE,
    H_CSRF,
    H_IF_NONE_MATCH,
    H_UPGRADE,
    H_CONNECTION,
    H_WS_KEY,
    H_WS_VERSION,
    H_WS_PROTOCOL,
    H__COUNT,
};

static const char *const hdr_names[H__COUNT] = {
    [H_HOST] = "host",
    [H_ORIGIN] = "origin",
    [H_COOKIE] = "cookie",
    [H_CONTENT_TYPE] = "content-type",
    [H_CSRF] = "x-csrf-token",
    [H_IF_NONE_MATCH] = "if-none-match",
    [H_UPGRADE] = "upgrade",
    [H_CONNECTION] = "connection",
    [H_WS_KEY] = "sec-websocket-key",
    [H_WS_VERSION] = "sec-websocket-version",
    [H_WS_PROTOCOL] = "sec-websocket-protocol",
};

struct srv_httpreq {
    http_parser p;
    srv_httpreq_info_t info;
    char url[SRV_HTTP_MAX_URL + 1];
    size_t url_len;
    char field[64]; /* the current header's name (longer names are not ours) */
    size_t field_len;
    bool field_long;
    char value[4096]; /* the current header's value */
    size_t value_len;
    bool in_value;
    size_t head_bytes;
    unsigned seen; /* bit per enum hdr */
    vdi_buf_t body;
    bool complete;
    int status; /* the HTTP status to answer with, once the request failed (0: none) */
    int err;    /* and the error feed() returns for it: VDI_EPROTOCOL or -ENOMEM */
};

/* Record why the request cannot be served (the first reason wins) and stop http-parser (its
 * callbacks stop it with a non-zero return). */
static int fail(struct srv_httpreq *r, int status)
{
    if (!r->status) {
        r->status = status;
        r->err = status == 503 ? -ENOMEM : VDI_EPROTOCOL;
    }
    return -1;
}

static int count_head(struct srv_httpreq *r, size_t n)
{
    r->head_bytes += n;
    return r->head_bytes > SRV_HTTP_MAX_HEAD ? fail(r, 431) : 0;
}

static int on_message_begin(http_parser *p)
{
    VDI_UNUSED(p);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct srv_httpreq *r = p->data;
    if (r->url_len + n > SRV_HTTP_MAX_URL)
        return fail(r, 414);
    memcpy(r->url + r->url_len, at, n);
    r->url_len += n;
    r->url[r->url_len] = 0;
    return count_head(r, n);
}

/* The header that just ended: keep it if it is one of ours. */
static int end_header(struct srv_httpreq *r)
{
    srv_httpreq_info_t *in = &r->info;
    enum hdr h = H_NONE;
    r->value[r->value_len] = 0;
    r->field[r->field_len] = 0;
    if (!r->field_long)
        for (int i = 0; i < H__COUNT; i++)
            if (strcasecmp(r->field, hdr_names[i]) == 0)
                h = (enum hdr)i;
    r->in_value = false;
    r->field_len = r->value_len = 0;
    r->field_long = false;
    if (h == H_NONE)
        return 0;
    static const struct {
        size_t off, size;
    } dst[H__COUNT] = {
#define F(h, f) [h] = {offsetof(srv_httpreq_info_t, f), sizeof(((srv_httpreq_info_t *)0)->f)}
        F(H_HOST, host),
        F(H_ORIGIN, origin),
        F(H_COOKIE, cookie),
        F(H_CONTENT_TYPE, content_type),
        F(H_CSRF, csrf),
        F(H_IF_NONE_MATCH, if_none_match),
        F(H_UPGRADE, upgrade),
        F(H_CONNECTION, connection),
        F(H_WS_KEY, ws_key),
        F(H_WS_VERSION, ws_version),
        F(H_WS_PROTOCOL, ws_protocol),
#undef F
    };
    char *out = (char *)in + dst[h].off;
    size_t cap = dst[h].size, have = strlen(out);
    size_t n = strlen(r->value);
    if (r->seen & (1u << h)) {
        /* Repeatable: Cookie (RFC 6265 says one, HTTP/2 gateways send several), Connection and
         * Sec-WebSocket-Protocol (lists). The others must be unique. */
        if (h != H_COOKIE && h != H_CONNECTION && h != H_WS_PROTOCOL)
            return fail(r, 400);
        if (have + 2 + n >= cap)
            return fail(r, 431);
        memcpy(out + have, h == H_COOKIE ? "; " : ", ", 2);
        memcpy(out + have + 2, r->value, n + 1);
        return 0;
    }
    r->seen |= 1u << h;
    if (n >= cap)
        return fail(r, 431);
    memcpy(out, r->value, n + 1);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct srv_httpreq *r = p->data;
    if (r->in_value && end_header(r) < 0)
        return -1;
    if (r->field_len + n >= sizeof(r->field)) {
        r->field_long = true;
    } else {
        memcpy(r->field + r->field_len, at, n);
        r->field_len += n;
    }
    return count_head(r, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct srv_httpreq *r = p->data;
    r->in_value = true;
    if (r->value_len + n >= sizeof(r->value))
        return fail(r, 431);
    memcpy(r->value + r->value_len, at, n);
    r->value_len += n;
    /* Control characters in a value we keep would end up in logs or comparisons. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)at[i] < 0x20 && at[i] != '\t')
            return fail(r, 400);
    return count_head(r, n);
}

static int on_headers_complete(http_parser *p)
{
    struct srv_httpreq *r = p->data;
    srv_httpreq_info_t *in = &r->info;
    if (r->in_value && end_header(r) < 0)
        return -1;
    if (p->http_major != 1)
        return fail(r, 505);
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > SRV_HTTP_MAX_BODY)
        return fail(r, 413);
    switch (p->method) {
    case HTTP_GET:
        in->method = SRV_HTTP_GET;
        break;
    case HTTP_HEAD:
        in->method = SRV_HTTP_HEAD;
        break;
    case HTTP_POST:
        in->method = SRV_HTTP_POST;
        break;
    default:
        in->method = SRV_HTTP_OTHER;
        break;
    }
    in->method_name = http_method_str((enum http_method)p->method);
    in->keep_alive = http_should_keep_alive(p) != 0;
    /* origin-form only (RFC 9112 §3.2.1): "/path[?query]". */
    if (r->url[0] != '/')
        return fail(r, 400);
    char *q = strchr(r->url, '?');
    size_t plen = q ? (size_t)(q - r->url) : r->url_len;
    memcpy(in->path, r->url, plen);
    in->path[plen] = 0;
    if (q)
        snprintf(in->query, sizeof(in->query), "%s", q + 1);
    char *hash = strchr(in->query, '#');
    if (hash)
        *hash = 0;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct srv_httpreq *r = p->data;
    if (r->body.len + n > SRV_HTTP_MAX_BODY)
        return fail(r, 413);
    if (vdi_buf_append(&r->body, at, n) < 0)
        return fail(r, 503);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct srv_httpreq *r = p->data;
    r->complete = true;
    r->info.body = r->body.data;
    r->info.body_len = r->body.len;
    http_parser_pause(p, 1); /* one request at a time */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

srv_httpreq_t *srv__httpreq_create(void)
{
    srv_httpreq_t *r = vdi_xcalloc(1, sizeof(*r));
    srv__httpreq_reset(r);
    return r;
}

void srv__httpreq_destroy(srv_httpreq_t *r)
{
    if (!r)
        return;
    if (r->body.data)
        vdi_wipe(r->body.data, r->body.cap); /* bodies carry passwords (login) */
    vdi_buf_free(&r->body);
    free(r);
}

void srv__httpreq_reset(srv_httpreq_t *r)
{
    vdi_buf_t body = r->body;
    if (body.data)
        vdi_wipe(body.data, body.cap); /* bodies carry passwords (login) */
    vdi_buf_reset(&body);
    memset(r, 0, sizeof(*r));
    r->body = body;
    http_parser_init(&r->p, HTTP_REQUEST);
    r->p.data = r;
    r->info.method_name = "";
}

int srv__httpreq_feed(srv_httpreq_t *r, const uint8_t *data, size_t len, size_t *consumed)
{
    *consumed = 0;
    if (r->status)
        return r->err;
    if (len == 0)
        return 0;
    size_t n = http_parser_execute(&r->p, &settings, (const char *)data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->p);
    *consumed = n;
    if (r->complete) {
        r->info.is_upgrade = r->p.upgrade != 0;
        return 1;
    }
    if (r->status)
        return r->err;
    if (e != HPE_OK && e != HPE_PAUSED) {
        /* http-parser's own limit (80 KiB) is above ours; everything else is malformed. */
        fail(r, e == HPE_HEADER_OVERFLOW ? 431 : 400);
        return r->err;
    }
    if (r->p.upgrade) { /* CONNECT, or an upgrade without a message end: not for us */
        fail(r, 400);
        return r->err;
    }
    return 0;
}

int srv__httpreq_status(const srv_httpreq_t *r)
{
    return r->status;
}

const srv_httpreq_info_t *srv__httpreq_info(const srv_httpreq_t *r)
{
    return &r->info;
}

bool srv__http_cookie(const char *header, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    const char *c = header;
    out[0] = 0;
    while (*c) {
        while (*c == ' ' || *c == '\t' || *c == ';')
            c++;
        if (strncmp(c, name, nl) == 0 && c[nl] == '=') {
            const char *v = c + nl + 1;
            size_t len = strcspn(v, "; \t");
            if (len == 0 || len >= n)
                return false;
            memcpy(out, v, len);
            out[len] = 0;
            return true;
        }
        c += strcspn(c, ";");
    }
    return false;
}

bool srv__http_query(const char *query, const char *key, char *out, size_t n)
{
    size_t kl = strlen(key);
    const char *q = query;
    out[0] = 0;
    while (*q) {
        size_t len = strcspn(q, "&");
        if (len > kl && strncmp(q, key, kl) == 0 && q[kl] == '=') {
            if (len - kl - 1 >= n)
                return false;
            memcpy(out, q + kl + 1, len - kl - 1);
            out[len - kl - 1] = 0;
            return true;
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return false;
}
