/* server/metrics.c: vdid's Prometheus endpoint (docs/metrics.md). A plain-HTTP listener of its
 * own, [vdid] metrics_listen (default 127.0.0.1:9600; never the users' ports), that answers
 * `GET /metrics` in the text exposition format 0.0.4 and closes the connection.
 *
 * What it counts comes from the loop: the gateway reports each login's phases (srv__metrics_logon)
 * and refusals, the auth audit hook failures and lockouts; desktops, sessions and memory are read
 * from the state database at each scrape. Names follow Prometheus' conventions: one vdi_ prefix,
 * base units (seconds, bytes), counters ending in _total, and no user names as labels.
 *
 * A scraper is a peer like any other: a request must arrive whole (8 KiB at most) within
 * REQUEST_TIMEOUT_MS, at most MAX_CONNS connections are open at once (one more is closed at
 * once), and anything but GET /metrics gets a short error. Thread: loop only.
 */
#define VDI_LOG_TAG "metrics"
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"
#include "server/desktop-internal.h"
#include "server/internal-web.h"
#include "server/internal.h"

#define MAX_CONNS          16
#define REQUEST_TIMEOUT_MS 10000

/* Logon duration buckets, in seconds. */
static const double buckets[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

static const char *const phase_names[SRV_LOGON__COUNT] = {
    [SRV_LOGON_AUTH] = "auth",
    [SRV_LOGON_DESKTOP] = "desktop",
    [SRV_LOGON_DISPLAY] = "display",
    [SRV_LOGON_TOTAL] = "total",
};

struct hist {
    uint64_t count[NBUCKETS]; /* per bucket (not cumulative) */
    uint64_t n;
    double sum;
};

struct srv_metrics {
    srv_t *s;
    uv_tcp_t listener;
    int port;
    unsigned n_conns;
    unsigned refs; /* listener + connections */
    bool closing;
    vdi_list_t conns;
    struct hist logon[SRV_LOGON__COUNT];
    uint64_t counter[SRV_METRIC__COUNT];
};

struct mconn {
    srv_metrics_t *m;
    vdi_list_t link;
    uv_tcp_t tcp;
    uv_timer_t timer;
    srv_httpreq_t *req;
    bool answered;
    unsigned handles; /* tcp + timer */
};

static void metrics_unref(srv_metrics_t *m)
{
    if (--m->refs == 0)
        free(m);
}

/* ---- counting ---------------------------------------------------------------------------------- */
void srv__metrics_logon(srv_t *s, const uint64_t ms[SRV_LOGON__COUNT])
{
    srv_metrics_t *m = s->metrics;
    if (!m)
        return;
    for (int p = 0; p < SRV_LOGON__COUNT; p++) {
        double v = (double)ms[p] / 1000.0;
        struct hist *h = &m->logon[p];
        size_t b = 0;
        while (b < NBUCKETS && v > buckets[b])
            b++;
        if (b < NBUCKETS)
            h->count[b]++;
        h->n++;
        h->sum += v;
    }
    m->counter[SRV_METRIC_LOGONS]++;
}

void srv__metrics_count(srv_t *s, enum srv_metric c)
{
    if (s->metrics && (unsigned)c < SRV_METRIC__COUNT)
        s->metrics->counter[c]++;
}

/* ---- the exposition ---------------------------------------------------------------------------- */
/* @v as a label value: \, " and newline escaped. */
static void label(vdi_buf_t *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            vdi_buf_printf(b, "\\%c", *v);
        else if (*v == '\n')
            vdi_buf_printf(b, "\\n");
        else
            vdi_buf_append(b, v, 1);
    }
}

struct desk_count {
    char pool[64];
    uint32_t version;
    brk_desktop_state_t state;
    unsigned n;
};
struct desk_ctx {
    struct desk_count *c;
    size_t n, cap;
    uint64_t mem_used;
};

static int count_desktop(const brk_desktop_t *d, void *ctx)
{
    struct desk_ctx *x = ctx;
    if (d->state != BRK_DS_FAILED)
        x->mem_used += d->memory;
    for (size_t i = 0; i < x->n; i++) {
        struct desk_count *c = &x->c[i];
        if (c->state == d->state && c->version == d->image_version && !strcmp(c->pool, d->pool)) {
            c->n++;
            return 0;
        }
    }
    if (x->n == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 16;
        x->c = vdi_xrealloc(x->c, x->cap * sizeof(*x->c));
    }
    struct desk_count *c = &x->c[x->n++];
    snprintf(c->pool, sizeof(c->pool), "%s", d->pool);
    c->version = d->image_version;
    c->state = d->state;
    c->n = 1;
    return 0;
}

static int count_session(const brk_session_t *se, void *ctx)
{
    VDI_UNUSED(se);
    (*(unsigned *)ctx)++;
    return 0;
}

static void counter(vdi_buf_t *b, const char *name, const char *help, uint64_t v)
{
    vdi_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name, name,
                   v);
}

int srv__metrics_render(srv_t *s, vdi_buf_t *b)
{
    srv_metrics_t *m = s->metrics;
    struct desk_ctx dc = {0};
    unsigned sessions = 0;
    int rc = brk_store_desktop_foreach(s->store, false, count_desktop, &dc);
    if (rc == 0)
        rc = brk_store_session_foreach(s->store, false, count_session, &sessions);
    if (rc < 0) {
        free(dc.c);
        return rc;
    }
    vdi_buf_printf(b, "# HELP vdi_build_info The running vdid's version.\n"
                      "# TYPE vdi_build_info gauge\nvdi_build_info{version=\"");
    label(b, VDI_VERSION);
    vdi_buf_printf(b, "\"} 1\n");
    vdi_buf_printf(b,
                   "# HELP vdi_uptime_seconds Seconds since vdid started.\n"
                   "# TYPE vdi_uptime_seconds gauge\nvdi_uptime_seconds %" PRIu64 "\n",
                   (vdi_now_ms() - s->started_ms) / 1000);
    vdi_buf_printf(b, "# HELP vdi_desktops Desktops by pool, image version and state (gone ones "
                      "not counted).\n# TYPE vdi_desktops gauge\n");
    for (size_t i = 0; i < dc.n; i++) {
        vdi_buf_printf(b, "vdi_desktops{pool=\"");
        label(b, dc.c[i].pool);
        vdi_buf_printf(b, "\",image_version=\"%" PRIu32 "\",state=\"%s\"} %u\n", dc.c[i].version,
                       brk_desktop_state_name(dc.c[i].state), dc.c[i].n);
    }
    vdi_buf_printf(b,
                   "# HELP vdi_sessions Viewer sessions open now.\n"
                   "# TYPE vdi_sessions gauge\nvdi_sessions %u\n",
                   sessions);
    vdi_buf_printf(b,
                   "# HELP vdi_memory_budget_bytes Memory desktops may use (overcommit included).\n"
                   "# TYPE vdi_memory_budget_bytes gauge\nvdi_memory_budget_bytes %" PRIu64 "\n"
                   "# HELP vdi_memory_used_bytes Guest memory of the desktops that exist.\n"
                   "# TYPE vdi_memory_used_bytes gauge\nvdi_memory_used_bytes %" PRIu64 "\n",
                   s->memory_budget, dc.mem_used);
    free(dc.c);
    counter(b, "vdi_logons_total", "Logins that reached their desktop.",
            m->counter[SRV_METRIC_LOGONS]);
    counter(b, "vdi_logons_refused_total",
            "Logins refused after authentication (not entitled, no capacity, a failed desktop).",
            m->counter[SRV_METRIC_LOGON_REFUSED]);
    counter(b, "vdi_auth_failures_total", "Failed authentications (RFB and web).",
            m->counter[SRV_METRIC_AUTH_FAILED]);
    counter(b, "vdi_auth_lockouts_total", "Lockouts begun after repeated failures.",
            m->counter[SRV_METRIC_AUTH_LOCKOUT]);
    vdi_buf_printf(b, "# HELP vdi_logon_duration_seconds RFB logon time by phase: auth (connect "
                      "to password checked), desktop (placement, clone and boot, or a spare), "
                      "display (the desktop's RFB handshake), total.\n"
                      "# TYPE vdi_logon_duration_seconds histogram\n");
    for (int p = 0; p < SRV_LOGON__COUNT; p++) {
        const struct hist *h = &m->logon[p];
        uint64_t cum = 0;
        for (size_t i = 0; i < NBUCKETS; i++) {
            cum += h->count[i];
            vdi_buf_printf(
                b, "vdi_logon_duration_seconds_bucket{phase=\"%s\",le=\"%g\"} %" PRIu64 "\n",
                phase_names[p], buckets[i], cum);
        }
        vdi_buf_printf(b,
                       "vdi_logon_duration_seconds_bucket{phase=\"%s\",le=\"+Inf\"} %" PRIu64 "\n"
                       "vdi_logon_duration_seconds_sum{phase=\"%s\"} %.3f\n"
                       "vdi_logon_duration_seconds_count{phase=\"%s\"} %" PRIu64 "\n",
                       phase_names[p], h->n, phase_names[p], h->sum, phase_names[p], h->n);
    }
    return 0;
}

/* ---- the listener ------------------------------------------------------------------------------ */
static void on_handle_closed(uv_handle_t *h)
{
    struct mconn *c = h->data;
    if (--c->handles)
        return;
    srv_metrics_t *m = c->m;
    srv__httpreq_destroy(c->req);
    free(c);
    metrics_unref(m);
}

static void conn_close(struct mconn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    vdi_list_remove(&c->link);
    c->m->n_conns--;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_written(uv_write_t *w, int status)
{
    struct mconn *c = w->data;
    VDI_UNUSED(status);
    free(w);
    conn_close(c);
}

/* Answer and close; takes @body's bytes (copied). */
static void respond(struct mconn *c, int status, const char *type, const void *body, size_t len)
{
    static const char *const reason[] = {[200] = "OK",
                                         [404] = "Not Found",
                                         [405] = "Method Not Allowed",
                                         [500] = "Internal Server Error"};
    vdi_buf_t out = VDI_BUF_INIT;
    const char *r =
        status < (int)VDI_ARRAY_SIZE(reason) && reason[status] ? reason[status] : "Bad Request";
    vdi_buf_printf(&out,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                   "Connection: close\r\n\r\n",
                   status, r, type, len);
    vdi_buf_append(&out, body, len);
    c->answered = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_write_t *w = vdi_xmalloc(sizeof(*w) + out.len);
    memcpy(w + 1, out.data, out.len);
    uv_buf_t ub = uv_buf_init((char *)(w + 1), (unsigned)out.len);
    w->data = c;
    vdi_buf_free(&out);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &ub, 1, on_written) < 0) {
        free(w);
        conn_close(c);
    }
}

static void text(struct mconn *c, int status, const char *msg)
{
    respond(c, status, "text/plain; charset=utf-8", msg, strlen(msg));
}

static void handle(struct mconn *c, const srv_httpreq_info_t *req)
{
    if (strcmp(req->path, "/metrics") != 0) {
        text(c, 404, "vdid serves its metrics at /metrics\n");
        return;
    }
    if (req->method != SRV_HTTP_GET && req->method != SRV_HTTP_HEAD) {
        text(c, 405, "GET /metrics\n");
        return;
    }
    vdi_buf_t b = VDI_BUF_INIT;
    int rc = srv__metrics_render(c->m->s, &b);
    if (rc < 0) {
        VDI_LOG_WARN_RL("scrape failed: state database: %s", vdi_strerror(rc));
        text(c, 500, "the state database cannot be read; see vdid's log\n");
    } else {
        respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data,
                req->method == SRV_HTTP_HEAD ? 0 : b.len);
    }
    vdi_buf_free(&b);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    VDI_UNUSED(h);
    VDI_UNUSED(suggested);
    static char slab[8192]; /* one loop, and each read is consumed before the next */
    *buf = uv_buf_init(slab, sizeof(slab));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct mconn *c = st->data;
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n == 0 || c->answered)
        return;
    size_t used = 0;
    int rc = srv__httpreq_feed(c->req, (const uint8_t *)buf->base, (size_t)n, &used);
    if (rc == 1)
        handle(c, srv__httpreq_info(c->req));
    else if (rc < 0)
        text(c, srv__httpreq_status(c->req) ? srv__httpreq_status(c->req) : 400,
             "malformed request\n");
}

static void on_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_connection(uv_stream_t *server, int status)
{
    srv_metrics_t *m = server->data;
    if (status < 0 || m->closing)
        return;
    struct mconn *c = vdi_xcalloc(1, sizeof(*c));
    c->m = m;
    uv_tcp_init(m->s->loop, &c->tcp);
    uv_timer_init(m->s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    m->refs++;
    m->n_conns++;
    vdi_list_push_tail(&m->conns, &c->link);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 || m->n_conns > MAX_CONNS) {
        VDI_LOG_WARN_RL("a scraper connection refused: %s",
                        m->n_conns > MAX_CONNS ? "too many open" : "accept failed");
        conn_close(c);
        return;
    }
    c->req = srv__httpreq_create();
    uv_timer_start(&c->timer, on_timeout, REQUEST_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_listener_closed(uv_handle_t *h)
{
    metrics_unref(h->data);
}

int srv__metrics_start(srv_t *s, srv_metrics_t **out)
{
    const char *listen = s->cfg->metrics_listen;
    struct sockaddr_storage ss;
    char host[128];
    *out = NULL;
    if (!listen) {
        VDI_LOG_INFO("metrics endpoint off (metrics_listen = off)");
        return 0;
    }
    int rc = srv__listen_addr("metrics_listen", listen, &ss, host, sizeof(host));
    if (rc < 0)
        return rc;
    srv_metrics_t *m = vdi_xcalloc(1, sizeof(*m));
    m->s = s;
    m->refs = 1;
    vdi_list_init(&m->conns);
    uv_tcp_init(s->loop, &m->listener);
    m->listener.data = m;
    rc = uv_tcp_bind(&m->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&m->listener, 16, on_connection);
    if (rc < 0) {
        /* Not fatal: desktops matter more than their figures. */
        VDI_LOG_ERR("metrics_listen=%s: %s; vdid runs without its metrics endpoint", listen,
                    uv_strerror(rc));
        m->closing = true;
        uv_close((uv_handle_t *)&m->listener, on_listener_closed);
        return 0;
    }
    m->port = srv__bound_port(&m->listener);
    if (ss.ss_family == AF_INET
            ? ((struct sockaddr_in *)&ss)->sin_addr.s_addr != htonl(INADDR_LOOPBACK)
            : !IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr))
        VDI_LOG_WARN("metrics on %s port %d: not loopback; the figures are readable by anyone who "
                     "can reach it (plain HTTP, no authentication)",
                     host, m->port);
    VDI_LOG_INFO("metrics listening on %s port %d (/metrics)", host, m->port);
    *out = m;
    return 0;
}

int srv__metrics_port(const srv_metrics_t *m)
{
    return m ? m->port : 0;
}

void srv__metrics_close(srv_metrics_t *m)
{
    if (!m || m->closing)
        return;
    m->closing = true;
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &m->conns)
    {
        conn_close(vdi_list_entry(it, struct mconn, link));
    }
    uv_close((uv_handle_t *)&m->listener, on_listener_closed);
}
