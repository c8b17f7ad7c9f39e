/* server/portal-console.c: browser consoles. "Connect" in the portal gets the user's desktop
 * from the broker (srv__login) and opens the session at once (the desktop is in use from then
 * on); the console then waits, at most the console token's lifetime, for the browser's
 * WebSocket. When it comes with the burnt token, vdid connects to the desktop's display socket
 * and splices: each binary WebSocket message from noVNC goes to the display as it is, each read
 * from the display goes to noVNC as one binary message. noVNC speaks RFB itself: the display
 * socket (RFB 3.8, security None, reachable only by vdid) offers it security None, and the
 * WebSocket behind the token is the authentication.
 *
 * Backpressure as in the RFB gateway: more than HIGH_WATER bytes waiting towards one side stops
 * reading the other until the backlog is under LOW_WATER.
 *
 * Endings: the session is kicked (reconnect elsewhere, admin, logout, idle) -> close frame 4409
 * with the reason; the display closes -> 4404; the browser closes -> session closed "client
 * closed"; the browser never comes -> session closed "browser did not connect".
 */
#define VDI_LOG_TAG "console"
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "common/vdi.h"
#include "server/internal-web.h"
#include "server/internal.h"

#define HIGH_WATER (1024 * 1024)
#define LOW_WATER  (256 * 1024)

enum cstate {
    C_PENDING, /* session open, waiting for the WebSocket */
    C_CONNECT, /* WebSocket here, connecting to the display socket */
    C_SPLICE,
    C_CLOSING,
};

struct srv_console {
    srv_portal_t *p;
    vdi_list_t link;
    enum cstate state;
    int64_t desktop;
    char user[64];
    char web_session[40];
    char peer[64];
    srv_session_t *se;
    uv_timer_t *timer;
    auth_tls_t *tls;
    srv_ws_t *ws;
    uv_pipe_t *vmm;
    uv_connect_t creq;
    vdi_buf_t early; /* WebSocket bytes that came with the upgrade request */
    bool tls_paused, vmm_paused;
    unsigned refs; /* self + timer + tls + vmm */
};

static void con_unref(struct srv_console *c)
{
    if (--c->refs > 0)
        return;
    srv__ws_destroy(c->ws);
    vdi_buf_free(&c->early);
    free(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct srv_console *c = h->data;
    free(h);
    con_unref(c);
}

static void on_vmm_closed(uv_handle_t *h)
{
    struct srv_console *c = h->data;
    free(h);
    con_unref(c);
}

static void on_tls_closed(void *ctx)
{
    con_unref(ctx);
}

/* End the console: the session record gets @reason; the browser gets a close frame @code (when
 * it is attached and @code is not 0). */
static void con_close(struct srv_console *c, uint16_t code, const char *reason)
{
    if (c->state == C_CLOSING)
        return;
    enum cstate was = c->state;
    c->state = C_CLOSING;
    vdi_list_remove(&c->link);
    if (was != C_PENDING)
        VDI_LOG_INFO("user=%s desktop=%" PRId64 " peer=%s browser console closed: %s", c->user,
                     c->desktop, c->peer, reason);
    if (c->se) {
        srv__session_close(c->se, reason);
        c->se = NULL;
    }
    if (c->ws && c->tls && code)
        srv__ws_close(c->ws, code, reason);
    if (c->timer) {
        uv_close((uv_handle_t *)c->timer, on_timer_closed);
        c->timer = NULL;
    }
    if (c->vmm) {
        uv_close((uv_handle_t *)c->vmm, on_vmm_closed);
        c->vmm = NULL;
    }
    if (c->tls) {
        auth_tls_close(c->tls, on_tls_closed, c); /* lets the close frame drain */
        c->tls = NULL;
    }
    con_unref(c);
}

static void on_kick(void *ctx, const char *reason)
{
    struct srv_console *c = ctx;
    srv_session_t *se = c->se;
    c->se = NULL;
    if (se)
        srv__session_close(se, reason);
    con_close(c, SRV_WS_CLOSE_TAKEOVER, reason);
}

static void on_wait_expired(uv_timer_t *t)
{
    con_close(t->data, 0, "browser did not connect");
}

int srv__console_open(srv_portal_t *p, srv_vm_t *vm, const char *user, const char *peer,
                      const char *web_session, uint32_t ttl_ms)
{
    struct srv_console *c = vdi_xcalloc(1, sizeof(*c));
    c->p = p;
    c->desktop = srv__vm_id(vm);
    snprintf(c->user, sizeof(c->user), "%s", user);
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    snprintf(c->web_session, sizeof(c->web_session), "%s", web_session);
    /* Listed first: srv__session_open() may kick this user's earlier browser console on the
     * same desktop, which must not be mistaken for this one. */
    int rc = srv__session_open(vm, user, peer, on_kick, c, &c->se);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->refs = 2;
    c->timer = vdi_xcalloc(1, sizeof(*c->timer));
    uv_timer_init(srv__portal_srv(p)->loop, c->timer);
    c->timer->data = c;
    uv_timer_start(c->timer, on_wait_expired, (uint64_t)ttl_ms + 2000, 0);
    vdi_list_push_tail(srv__portal_consoles(p), &c->link);
    return 0;
}

/* ---- browser -> display ------------------------------------------------------------------------- */
static void on_tls_read(auth_tls_t *t, ssize_t nread, const uint8_t *data, void *ctx);

static void on_vmm_written(uv_write_t *req, int status)
{
    struct srv_console *c = req->data;
    free(req);
    if (c->state != C_SPLICE)
        return;
    if (status < 0) {
        con_close(c, SRV_WS_CLOSE_GONE, "desktop display closed");
        return;
    }
    if (c->tls_paused && uv_stream_get_write_queue_size((uv_stream_t *)c->vmm) < LOW_WATER) {
        c->tls_paused = false;
        auth_tls_read_start(c->tls, on_tls_read, c);
    }
}

static void ws_message(void *ctx, const uint8_t *data, size_t n)
{
    struct srv_console *c = ctx;
    if (c->state != C_SPLICE || n == 0)
        return;
    if (c->se)
        srv__session_activity(c->se);
    uv_write_t *req = vdi_trymalloc(sizeof(*req) + n);
    if (!req) {
        con_close(c, SRV_WS_CLOSE_ERROR, "out of memory");
        return;
    }
    memcpy(req + 1, data, n);
    req->data = c;
    uv_buf_t b = uv_buf_init((char *)(req + 1), (unsigned)n);
    if (uv_write(req, (uv_stream_t *)c->vmm, &b, 1, on_vmm_written) < 0) {
        free(req);
        con_close(c, SRV_WS_CLOSE_GONE, "desktop display closed");
        return;
    }
    if (!c->tls_paused && uv_stream_get_write_queue_size((uv_stream_t *)c->vmm) > HIGH_WATER) {
        c->tls_paused = true;
        auth_tls_read_stop(c->tls);
    }
}

static void on_vmm_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void vmm_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    VDI_UNUSED(h);
    VDI_UNUSED(suggested);
    static char chunk[65536]; /* framed and copied by srv__ws_send before the next read */
    *buf = uv_buf_init(chunk, sizeof(chunk));
}

static void on_tls_written(auth_tls_t *t, int status, void *ctx)
{
    struct srv_console *c = ctx;
    if (c->state != C_SPLICE)
        return;
    if (status < 0) {
        con_close(c, 0, "client connection error");
        return;
    }
    if (c->vmm_paused && auth_tls_write_queue_size(t) < LOW_WATER) {
        c->vmm_paused = false;
        uv_read_start((uv_stream_t *)c->vmm, vmm_alloc, on_vmm_read);
    }
}

static int ws_output(void *ctx, const uint8_t *data, size_t n)
{
    struct srv_console *c = ctx;
    if (!c->tls)
        return -EPIPE;
    return auth_tls_write(c->tls, data, n, on_tls_written, c);
}

static const srv_ws_ops_t ws_ops = {.message = ws_message, .output = ws_output};

static void on_tls_read(auth_tls_t *t, ssize_t nread, const uint8_t *data, void *ctx)
{
    struct srv_console *c = ctx;
    VDI_UNUSED(t);
    if (nread < 0) {
        con_close(c, 0, "client closed");
        return;
    }
    int rc = srv__ws_feed(c->ws, data, (size_t)nread);
    if (c->state == C_CLOSING)
        return;
    if (rc < 0)
        con_close(c, 0, "client connection error");
    else if (rc == 1)
        con_close(c, 0, "client closed");
}

/* ---- display -> browser ------------------------------------------------------------------------- */
static void on_vmm_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct srv_console *c = st->data;
    if (nread < 0) {
        con_close(c, SRV_WS_CLOSE_GONE, "desktop display closed");
        return;
    }
    if (nread == 0 || c->state != C_SPLICE)
        return;
    if (srv__ws_send(c->ws, (const uint8_t *)buf->base, (size_t)nread) < 0) {
        con_close(c, 0, "client connection error");
        return;
    }
    if (!c->vmm_paused && auth_tls_write_queue_size(c->tls) > HIGH_WATER) {
        c->vmm_paused = true;
        uv_read_stop((uv_stream_t *)c->vmm);
    }
}

static void on_vmm_connect(uv_connect_t *req, int status)
{
    struct srv_console *c = req->data;
    if (c->state != C_CONNECT)
        return;
    if (status < 0) {
        VDI_LOG_WARN("desktop=%" PRId64 " display socket: %s", c->desktop, uv_strerror(status));
        con_close(c, SRV_WS_CLOSE_ERROR, "desktop display unreachable");
        return;
    }
    c->state = C_SPLICE;
    VDI_LOG_INFO("user=%s desktop=%" PRId64 " peer=%s browser console connected", c->user,
                 c->desktop, c->peer);
    uv_read_start((uv_stream_t *)c->vmm, vmm_alloc, on_vmm_read);
    if (c->early.len) {
        vdi_buf_t e = c->early;
        c->early = (vdi_buf_t)VDI_BUF_INIT;
        on_tls_read(c->tls, (ssize_t)e.len, e.data, c);
        vdi_buf_free(&e);
        if (c->state != C_SPLICE)
            return;
    }
    auth_tls_read_start(c->tls, on_tls_read, c);
}

/* A WebSocket we will not serve: a close frame, then close. */
struct refusal {
    auth_tls_t *tls;
};

static void refusal_msg(void *ctx, const uint8_t *data, size_t n)
{
    VDI_UNUSED(ctx);
    VDI_UNUSED(data);
    VDI_UNUSED(n);
}

static int refusal_out(void *ctx, const uint8_t *data, size_t n)
{
    struct refusal *r = ctx;
    return auth_tls_write(r->tls, data, n, NULL, NULL);
}

static const srv_ws_ops_t refusal_ops = {.message = refusal_msg, .output = refusal_out};

void srv__console_refuse(srv_portal_t *p, auth_tls_t *tls, uint16_t code, const char *reason)
{
    struct refusal r = {.tls = tls};
    srv_ws_t *ws = NULL;
    VDI_UNUSED(p);
    if (srv__ws_create(&refusal_ops, &r, &ws) == 0) {
        srv__ws_close(ws, code, reason);
        srv__ws_destroy(ws);
    }
    auth_tls_close(tls, NULL, NULL); /* drains the close frame */
}

void srv__console_attach(srv_portal_t *p, int64_t desktop, const char *user, auth_tls_t *tls,
                         vdi_buf_t *early)
{
    srv_t *s = srv__portal_srv(p);
    struct srv_console *c = NULL;
    vdi_list_t *it;
    vdi_list_t *head = srv__portal_consoles(p);
    for (it = head->next; it != head; it = it->next) {
        struct srv_console *x = vdi_list_entry(it, struct srv_console, link);
        if (x->state == C_PENDING && x->desktop == desktop && strcmp(x->user, user) == 0)
            c = x;
    }
    srv_vm_t *vm = srv__vm_find(s, desktop);
    if (!c || !vm) {
        vdi_buf_free(early);
        srv__console_refuse(p, tls, SRV_WS_CLOSE_GONE,
                            "the desktop is gone, or this connection was replaced");
        return;
    }
    snprintf(c->peer, sizeof(c->peer), "%s", auth_tls_peer(tls));
    if (srv__ws_create(&ws_ops, c, &c->ws) < 0) {
        vdi_buf_free(early);
        srv__console_refuse(p, tls, SRV_WS_CLOSE_ERROR, "out of memory");
        con_close(c, 0, "out of memory");
        return;
    }
    uv_timer_stop(c->timer);
    c->tls = tls;
    c->refs++;
    c->early = *early;
    *early = (vdi_buf_t)VDI_BUF_INIT;
    c->state = C_CONNECT;
    c->vmm = vdi_xcalloc(1, sizeof(*c->vmm));
    uv_pipe_init(s->loop, c->vmm, 0);
    c->vmm->data = c;
    c->refs++;
    c->creq.data = c;
    uv_pipe_connect(&c->creq, c->vmm, srv__vm_display(vm), on_vmm_connect);
}

unsigned srv__console_kick(srv_portal_t *p, const char *user, int64_t desktop,
                           const char *web_session, const char *reason)
{
    unsigned n = 0;
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, srv__portal_consoles(p))
    {
        struct srv_console *c = vdi_list_entry(it, struct srv_console, link);
        bool match = web_session
                         ? strcmp(c->web_session, web_session) == 0
                         : strcmp(c->user, user) == 0 && (desktop == 0 || c->desktop == desktop);
        if (!match)
            continue;
        con_close(c, SRV_WS_CLOSE_TAKEOVER, reason);
        n++;
    }
    return n;
}

void srv__consoles_close(srv_portal_t *p)
{
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, srv__portal_consoles(p))
    {
        con_close(vdi_list_entry(it, struct srv_console, link), SRV_WS_CLOSE_TAKEOVER,
                  "the server is shutting down");
    }
}
