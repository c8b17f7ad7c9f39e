/* server/portal-console.c: browser consoles. "Connect" in the portal gets the user's desktop
 * from the broker (srv__login) and opens the session at once (the desktop is in use from then
 * on); the console then waits, at most the console token's lifetime, for the browser's
 * WebSocket. When it comes with the burnt token, vdid connects to the desktop's display socket
 * and splices (splice.c, with the WebSocket framing in its hooks): each binary WebSocket message
 * from noVNC goes to the display as it is, each read from the display goes to noVNC as one
 * binary message. noVNC speaks RFB itself: the display socket (RFB 3.8, security None, reachable
 * only by vdid) offers it security None, and the WebSocket behind the token is the
 * authentication.
 *
 * Backpressure is the splice's, as in the RFB gateway: a backlog towards one side stops reading
 * the other until it drains.
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
    char user[BRK_USER_MAX];
    char web_session[40];
    char peer[64];
    srv_session_t *se;
    srv_rfbin_t rfbin; /* noVNC's RFB bytes, from the protocol version on (idle_timeout) */
    uv_timer_t *timer;
    auth_tls_t *tls; /* until the splice takes it over */
    srv_ws_t *ws;
    uv_pipe_t *vmm; /* until the splice takes it over */
    srv_splice_t *splice;
    uv_connect_t creq;
    vdi_buf_t early; /* WebSocket bytes that came with the upgrade request */
    unsigned refs;   /* self + timer + tls + vmm; tls and vmm become one splice */
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

static void on_splice_closed(void *ctx)
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
    if (c->ws && (c->tls || c->splice) && code)
        srv__ws_close(c->ws, code, reason); /* the frame goes out before the close below */
    if (c->timer) {
        uv_close((uv_handle_t *)c->timer, on_timer_closed);
        c->timer = NULL;
    }
    if (c->splice) {
        srv__splice_close(c->splice, on_splice_closed, c); /* lets the close frame drain */
        c->splice = NULL;
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

/* ---- the splice, with the WebSocket framing in its hooks ---------------------------------------- */
/* A whole message from noVNC: RFB bytes for the display. */
static void ws_message(void *ctx, const uint8_t *data, size_t n)
{
    struct srv_console *c = ctx;
    if (c->state != C_SPLICE || n == 0)
        return;
    /* Only a person's input keeps the session from its idle_timeout, not update requests. */
    if (srv__rfbin_feed(&c->rfbin, data, n) && c->se)
        srv__session_activity(c->se);
    srv__splice_to_display(c->splice, data, n); /* a failure ends the splice: on_splice_end */
}

/* Frames for the browser: through the splice once it runs, before that (a refusal's close frame)
 * straight to the TLS stream. */
static int ws_output(void *ctx, const uint8_t *data, size_t n)
{
    struct srv_console *c = ctx;
    if (c->splice)
        return srv__splice_to_client(c->splice, data, n);
    if (c->tls)
        return auth_tls_write(c->tls, data, n, NULL, NULL);
    return -EPIPE;
}

static const srv_ws_ops_t ws_ops = {.message = ws_message, .output = ws_output};

static int from_client(void *ctx, const uint8_t *data, size_t n)
{
    struct srv_console *c = ctx;
    int rc = srv__ws_feed(c->ws, data, n);
    if (c->state == C_CLOSING)
        return 0;
    if (rc == 1)
        con_close(c, 0, "client closed"); /* close handshake done, or a protocol error answered */
    return rc < 0 ? rc : 0;
}

/* One read from the display becomes one binary message. */
static int from_display(void *ctx, const uint8_t *data, size_t n)
{
    struct srv_console *c = ctx;
    return srv__ws_send(c->ws, data, n);
}

static void on_splice_end(void *ctx, enum srv_splice_end why, int err)
{
    struct srv_console *c = ctx;
    VDI_UNUSED(err);
    switch (why) {
    case SRV_SPLICE_CLIENT_CLOSED:
        con_close(c, 0, "client closed");
        break;
    case SRV_SPLICE_CLIENT_ERROR:
        con_close(c, 0, "client connection error");
        break;
    case SRV_SPLICE_DISPLAY_CLOSED:
        con_close(c, SRV_WS_CLOSE_GONE, "desktop display closed");
        break;
    case SRV_SPLICE_NOMEM:
        con_close(c, SRV_WS_CLOSE_ERROR, "out of memory");
        break;
    }
}

static const srv_splice_ops_t splice_ops = {
    .end = on_splice_end,
    .from_client = from_client,
    .from_display = from_display,
};

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
    int rc = srv__splice_start(c->tls, c->vmm, &splice_ops, c, &c->splice);
    if (rc < 0) {
        VDI_LOG_WARN("desktop=%" PRId64 " peer=%s cannot start the splice: %s", c->desktop, c->peer,
                     vdi_strerror(rc));
        con_close(c, 0, "client connection error");
        return;
    }
    c->tls = NULL;
    c->vmm = NULL;
    c->refs--; /* the tls and vmm references are now the splice's one */
    c->state = C_SPLICE;
    /* noVNC does the display's handshake itself: "RFB 003.008\n", security type None, then
     * ClientInit; messages follow. */
    srv__rfbin_init(&c->rfbin, 12 + 1 + 1);
    VDI_LOG_INFO("user=%s desktop=%" PRId64 " peer=%s browser console connected", c->user,
                 c->desktop, c->peer);
    if (c->early.len) {
        vdi_buf_t e = c->early;
        c->early = (vdi_buf_t)VDI_BUF_INIT;
        srv__splice_client_bytes(c->splice, e.data, e.len);
        vdi_buf_free(&e);
    }
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
