/* server/http.c: vdid's HTTPS server for the web portal. TCP connections on web_listen get the
 * same TLS as the RFB gateway (auth_tls_accept); the plaintext goes through http-parse.c one
 * request at a time (HTTP/1.1 keep-alive; pipelined requests wait their turn, and reading stops
 * while one is being answered and more than a little is buffered). Each request is handed to the
 * portal as an exchange (srv_httpx_t), answered now or later (PAM, desktop start-up); a client that
 * goes away first aborts it. Every answer carries the security headers: HSTS, a CSP allowing only
 * our own origin (no framing), nosniff, no referrer.
 *
 * Limits: SRV_HTTP_MAX_* per request (answered 413/414/431 and closed); connections through the
 * listener's gate (listen.c: preauth_max in all, preauth_max_per_addr from one address, counted
 * from accept, so pending TLS handshakes count too, until the connection closes or becomes a
 * WebSocket console, which has a token); the TLS handshake must end within the handshake
 * timeout ([auth] handshake_timeout_ms), a request must arrive whole within HEADER_TIMEOUT_MS
 * of the handshake or of its own first byte, and a kept-alive connection idle for
 * IDLE_TIMEOUT_MS is closed. A refusal a client may repeat at will (429) ends the connection, so
 * requests pipelined behind it are never read.
 */
#define VDI_LOG_TAG "web"
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"
#include "common/vdi.h"
#include "server/internal-web.h"
#include "server/internal.h"

#define MAX_BUFFERED      (64 * 1024) /* pipelined bytes kept while a request is answered */
#define HEADER_TIMEOUT_MS 15000
#define IDLE_TIMEOUT_MS   60000
#define WRITE_BACKLOG_MAX (4 * 1024 * 1024)

struct srv_web {
    srv_t *s;
    srv_portal_t *portal;
    uv_tcp_t listener;
    srv_gate_t *gate; /* connections from accept until they close or become consoles */
    vdi_list_t conns;
    unsigned n_conns;
    unsigned refs; /* listener + accepts in progress + connections */
    int port;
    bool closing;
};

struct hconn;
struct srv_httpx {
    struct hconn *c;
    void (*abort_fn)(void *);
    void *abort_ctx;
};

struct hconn {
    srv_web_t *w;
    vdi_list_t link;
    auth_tls_t *tls;
    srv_httpreq_t *req;
    vdi_buf_t in;
    uv_timer_t *timer;
    struct srv_httpx *x; /* the request being answered */
    bool reading;
    bool closing;
    bool close_after; /* the answer in flight ends the connection */
    bool in_process;  /* process() is on the stack: it takes the next request itself */
    bool started;     /* bytes of the next request arrived: it must be complete in time */
    unsigned refs;    /* self + tls + timer */
    srv_gate_slot_t *slot;
    char peer[64];
};

/* A connection in its TLS handshake. */
struct haccept {
    srv_web_t *w;
    srv_gate_slot_t *slot;
};

static void web_unref(srv_web_t *w)
{
    if (--w->refs > 0)
        return;
    srv__portal_destroy(w->portal);
    srv__gate_destroy(w->gate);
    free(w);
}

static void conn_unref(struct hconn *c)
{
    if (--c->refs > 0)
        return;
    srv_web_t *w = c->w;
    srv__httpreq_destroy(c->req);
    vdi_buf_free(&c->in);
    free(c);
    web_unref(w);
}

static void on_tls_closed(void *ctx)
{
    conn_unref(ctx);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct hconn *c = h->data;
    free(h);
    conn_unref(c);
}

static void conn_close(struct hconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    vdi_list_remove(&c->link);
    c->w->n_conns--;
    srv__gate_release(c->slot);
    c->slot = NULL;
    if (c->x) {
        struct srv_httpx *x = c->x;
        c->x = NULL;
        if (x->abort_fn)
            x->abort_fn(x->abort_ctx);
        free(x);
    }
    if (c->timer) {
        uv_close((uv_handle_t *)c->timer, on_timer_closed);
        c->timer = NULL;
    }
    if (c->tls) {
        auth_tls_close(c->tls, on_tls_closed, c);
        c->tls = NULL;
    }
    conn_unref(c);
}

static void on_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void arm(struct hconn *c, uint64_t ms)
{
    if (c->timer)
        uv_timer_start(c->timer, on_timeout, ms, 0);
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Status";
    }
}

/* Host as the client named us, reduced to characters a host[:port] can have (it goes into the
 * CSP header). */
static void safe_host(const char *host, char *out, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; host[i] && j + 1 < n; i++) {
        char ch = host[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '.' || ch == '-' || ch == ':' || ch == '[' || ch == ']')
            out[j++] = ch;
    }
    out[j] = 0;
}

static void process(struct hconn *c);
static void on_read(auth_tls_t *t, ssize_t nread, const uint8_t *data, void *ctx);

static void on_written(auth_tls_t *t, int status, void *ctx)
{
    struct hconn *c = ctx;
    VDI_UNUSED(t);
    if (c->closing)
        return;
    if (status < 0)
        conn_close(c);
}

static int send_head_body(struct hconn *c, vdi_buf_t *head, const void *body, size_t len)
{
    int rc = auth_tls_write(c->tls, head->data, head->len, on_written, c);
    if (rc == 0 && len)
        rc = auth_tls_write(c->tls, body, len, on_written, c);
    if (rc == 0 && auth_tls_write_queue_size(c->tls) > WRITE_BACKLOG_MAX)
        rc = -ENOBUFS; /* a client that does not read its answers */
    return rc;
}

static void finish(struct hconn *c)
{
    free(c->x);
    c->x = NULL;
    if (c->close_after) {
        conn_close(c);
        return;
    }
    srv__httpreq_reset(c->req);
    /* Idle until the next request starts; from its first byte it has HEADER_TIMEOUT_MS. */
    c->started = c->in.len > 0;
    arm(c, c->started ? HEADER_TIMEOUT_MS : IDLE_TIMEOUT_MS);
    if (!c->reading) {
        c->reading = true;
        auth_tls_read_start(c->tls, on_read, c);
    }
    if (!c->in_process)
        process(c); /* answered later: take the next pipelined request now */
}

static void build_head(struct hconn *c, vdi_buf_t *h, int status, const char *ctype,
                       const char *headers, size_t len, bool no_store, bool has_body)
{
    const srv_httpreq_info_t *r = srv__httpreq_info(c->req);
    char host[256];
    safe_host(r->host, host, sizeof(host));
    vdi_buf_printf(h, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
    vdi_buf_printf(h,
                   "Server: vdid\r\n"
                   "Strict-Transport-Security: max-age=31536000\r\n"
                   "X-Content-Type-Options: nosniff\r\n"
                   "X-Frame-Options: DENY\r\n"
                   "Referrer-Policy: no-referrer\r\n"
                   "Cross-Origin-Opener-Policy: same-origin\r\n"
                   "Cross-Origin-Resource-Policy: same-origin\r\n"
                   "Permissions-Policy: camera=(), microphone=(), geolocation=()\r\n"
                   "Content-Security-Policy: default-src 'none'; script-src 'self'; "
                   "style-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
                   "connect-src 'self'%s%s; frame-ancestors 'none'; base-uri 'none'; "
                   "form-action 'self'\r\n",
                   host[0] ? " wss://" : "", host);
    if (no_store)
        vdi_buf_printf(h, "Cache-Control: no-store\r\n");
    if (ctype)
        vdi_buf_printf(h, "Content-Type: %s\r\n", ctype);
    if (has_body)
        vdi_buf_printf(h, "Content-Length: %zu\r\n", len);
    if (headers)
        vdi_buf_printf(h, "%s", headers);
    vdi_buf_printf(h, "Connection: %s\r\n\r\n", c->close_after ? "close" : "keep-alive");
}

void srv__httpx_respond(srv_httpx_t *x, int status, const char *content_type, const char *headers,
                        const void *body, size_t len, bool no_store)
{
    struct hconn *c = x->c;
    const srv_httpreq_info_t *r = srv__httpreq_info(c->req);
    vdi_buf_t h = VDI_BUF_INIT;
    /* After a malformed or refused request, start afresh. After a 429 (locked out, busy) too:
     * whatever the client pipelined behind it is dropped unread, so one connection cannot turn
     * into a stream of refusals (and of audit records). */
    if (!r->keep_alive ||
        (status >= 400 && status != 401 && status != 403 && status != 404 && status != 409))
        c->close_after = true;
    bool head = r->method == SRV_HTTP_HEAD;
    bool has_body = status != 304 && status != 204;
    build_head(c, &h, status, content_type, headers, len, no_store, has_body);
    VDI_LOG_DEBUG("peer=%s %s %s -> %d (%zu bytes)", c->peer, r->method_name, r->path, status, len);
    int rc = send_head_body(c, &h, head || !has_body ? NULL : body, head || !has_body ? 0 : len);
    vdi_buf_free(&h);
    if (rc < 0) {
        conn_close(c);
        return;
    }
    finish(c);
}

void srv__httpx_json(srv_httpx_t *x, int status, const char *headers, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        srv__httpx_respond(x, 500, "application/json", NULL, "{\"error\":\"out of memory\"}", 25,
                           true);
        return;
    }
    srv__httpx_respond(x, status, "application/json", headers, text, strlen(text), true);
    free(text);
}

void srv__httpx_error(srv_httpx_t *x, int status, const char *msg)
{
    srv__httpx_json(x, status, NULL, json_pack("{s:s}", "error", msg));
}

const srv_httpreq_info_t *srv__httpx_req(const srv_httpx_t *x)
{
    return srv__httpreq_info(x->c->req);
}

const char *srv__httpx_peer(const srv_httpx_t *x)
{
    return x->c->peer;
}

void srv__httpx_on_abort(srv_httpx_t *x, void (*fn)(void *ctx), void *ctx)
{
    x->abort_fn = fn;
    x->abort_ctx = ctx;
}

/* Does the comma-separated header value @list contain @token (case-insensitive)? */
static bool has_token(const char *list, const char *token)
{
    size_t tl = strlen(token);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == tl && strncasecmp(p, token, tl) == 0)
            return true;
        p = e;
    }
    return false;
}

int srv__httpx_upgrade(srv_httpx_t *x, auth_tls_t **tls, vdi_buf_t *early)
{
    struct hconn *c = x->c;
    const srv_httpreq_info_t *r = srv__httpreq_info(c->req);
    char accept[29];
    if (r->method != SRV_HTTP_GET || !has_token(r->upgrade, "websocket") ||
        !has_token(r->connection, "upgrade") || strcmp(r->ws_version, "13") != 0 ||
        srv__ws_accept_key(r->ws_key, accept) < 0) {
        srv__httpx_respond(x, 400, "text/plain", "Sec-WebSocket-Version: 13\r\n",
                           "bad WebSocket upgrade request\n", 29, true);
        return -EINVAL;
    }
    vdi_buf_t h = VDI_BUF_INIT;
    vdi_buf_printf(&h,
                   "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n",
                   accept);
    if (has_token(r->ws_protocol, "binary"))
        vdi_buf_printf(&h, "Sec-WebSocket-Protocol: binary\r\n");
    vdi_buf_printf(&h, "\r\n");
    int rc = auth_tls_write(c->tls, h.data, h.len, NULL, NULL);
    vdi_buf_free(&h);
    if (rc < 0) {
        conn_close(c);
        return rc;
    }
    /* Hand the stream over: the connection forgets it and goes away quietly. */
    auth_tls_read_stop(c->tls);
    c->reading = false;
    *tls = c->tls;
    *early = c->in;
    c->in = (vdi_buf_t)VDI_BUF_INIT;
    c->tls = NULL;
    c->refs--; /* the tls reference */
    free(c->x);
    c->x = NULL;
    conn_close(c);
    return 0;
}

/* Parse what is buffered; hand a complete request to the portal. */
static void process(struct hconn *c)
{
    c->in_process = true;
    while (!c->closing && !c->x && c->in.len) {
        size_t used = 0;
        int rc = srv__httpreq_feed(c->req, c->in.data, c->in.len, &used);
        vdi_buf_consume(&c->in, used);
        if (rc == 0)
            return;
        c->x = vdi_xcalloc(1, sizeof(*c->x));
        c->x->c = c;
        if (rc < 0) {
            int status = srv__httpreq_status(c->req);
            VDI_LOG_WARN_RL("peer=%s bad request: HTTP %d (%s)", c->peer, status, vdi_strerror(rc));
            c->close_after = true;
            srv__httpx_error(c->x, status, reason_phrase(status));
            break;
        }
        uv_timer_stop(c->timer);
        srv__portal_handle(c->w->portal, c->x);
    }
    c->in_process = false;
}

static void on_read(auth_tls_t *t, ssize_t nread, const uint8_t *data, void *ctx)
{
    struct hconn *c = ctx;
    VDI_UNUSED(t);
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (vdi_buf_append(&c->in, data, (size_t)nread) < 0) {
        conn_close(c);
        return;
    }
    if (!c->x && !c->started) {
        c->started = true; /* slow senders (slowloris) get HEADER_TIMEOUT_MS for the request */
        arm(c, HEADER_TIMEOUT_MS);
    }
    if (c->x && c->in.len > MAX_BUFFERED) {
        auth_tls_read_stop(c->tls); /* resumed when the answer is out */
        c->reading = false;
        return;
    }
    if (!c->x && c->in.len > SRV_HTTP_MAX_HEAD + SRV_HTTP_MAX_BODY + MAX_BUFFERED) {
        conn_close(c);
        return;
    }
    process(c);
}

static void on_accepted(auth_tls_t *t, int status, void *ctx)
{
    struct haccept *ha = ctx;
    srv_web_t *w = ha->w;
    srv_gate_slot_t *slot = ha->slot;
    free(ha);
    if (status < 0 || w->closing) {
        if (status == 0)
            auth_tls_close(t, NULL, NULL); /* else auth/ logged and closed it */
        srv__gate_release(slot);
        web_unref(w);
        return;
    }
    struct hconn *c = vdi_xcalloc(1, sizeof(*c));
    c->w = w; /* the accept's reference on w passes to the connection */
    c->slot = slot;
    c->tls = t;
    c->req = srv__httpreq_create();
    c->refs = 3;
    snprintf(c->peer, sizeof(c->peer), "%s", auth_tls_peer(t));
    c->timer = vdi_xcalloc(1, sizeof(*c->timer));
    uv_timer_init(w->s->loop, c->timer);
    c->timer->data = c;
    vdi_list_push_tail(&w->conns, &c->link);
    w->n_conns++;
    arm(c, HEADER_TIMEOUT_MS);
    c->reading = true;
    auth_tls_read_start(t, on_read, c);
}

static void on_connection(uv_stream_t *server, int status)
{
    srv_web_t *w = server->data;
    if (status < 0 || w->closing) {
        VDI_LOG_WARN_RL("accept: %s", uv_strerror(status));
        return;
    }
    uv_tcp_t *tcp;
    srv_gate_slot_t *slot;
    int rc = srv__gate_accept(w->gate, server, &tcp, &slot);
    if (rc == -EBUSY)
        return; /* reset at once, counted and logged */
    if (rc < 0) {
        VDI_LOG_WARN_RL("accept: %s", vdi_strerror(rc));
        return;
    }
    struct haccept *ha = vdi_xmalloc(sizeof(*ha));
    ha->w = w;
    ha->slot = slot;
    rc = auth_tls_accept_tcp(w->s->auth, tcp, on_accepted, ha);
    if (rc < 0) {
        VDI_LOG_WARN_RL("accept: %s", vdi_strerror(rc));
        srv__gate_release(slot);
        free(ha);
        return;
    }
    w->refs++;
}

static void on_listener_closed(uv_handle_t *h)
{
    web_unref(h->data);
}

int srv__web_start(srv_t *s, srv_web_t **out)
{
    const char *listen = s->cfg->web_listen;
    struct sockaddr_storage ss;
    char host[128];
    int rc;

    *out = NULL;
    if (!listen) {
        VDI_LOG_INFO("web portal off (web_listen = off)");
        return 0;
    }
    rc = srv__listen_addr("web_listen", listen, &ss, host, sizeof(host));
    if (rc < 0)
        return rc;
    srv_web_t *w = vdi_xcalloc(1, sizeof(*w));
    w->s = s;
    vdi_list_init(&w->conns);
    w->gate = srv__gate_create("web", s->cfg->preauth_max, s->cfg->preauth_max_per_addr);
    rc = srv__portal_create(s, &w->portal);
    if (rc < 0) {
        srv__gate_destroy(w->gate);
        free(w);
        return rc;
    }
    w->refs = 1;
    uv_tcp_init(s->loop, &w->listener);
    w->listener.data = w;
    rc = uv_tcp_bind(&w->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&w->listener, 128, on_connection);
    if (rc < 0) {
        VDI_LOG_ERR("web_listen=%s: %s", listen, uv_strerror(rc));
        w->closing = true;
        uv_close((uv_handle_t *)&w->listener, on_listener_closed);
        return rc;
    }
    w->port = srv__bound_port(&w->listener);
    VDI_LOG_INFO("web portal listening on %s port %d", host, w->port);
    *out = w;
    return 0;
}

int srv__web_port(const srv_web_t *w)
{
    return w ? w->port : 0;
}

const srv_gate_t *srv__web_gate(const srv_web_t *w)
{
    return w ? w->gate : NULL;
}

void srv__web_close(srv_web_t *w)
{
    if (!w || w->closing)
        return;
    w->closing = true;
    srv__consoles_close(w->portal);
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &w->conns)
    {
        conn_close(vdi_list_entry(it, struct hconn, link));
    }
    uv_close((uv_handle_t *)&w->listener, on_listener_closed);
}
