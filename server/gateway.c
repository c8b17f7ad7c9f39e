/* server/gateway.c: the RFB gateway. A viewer connects over TCP; auth/ runs the RFB 3.8
 * VeNCrypt login (TLS, PAM) and hands over the TLS stream right after SecurityResult. The broker
 * finds the user's desktop (starting one if needed); the gateway then connects to the desktop's
 * display socket, completes that RFB handshake as a client (version 3.8, security None), and from
 * the viewer's ClientInit on splices bytes both ways without parsing them (splice.c: backpressure
 * both ways, so a slow viewer slows the desktop's display server and vdid holds a bounded backlog).
 *
 * When no desktop can be had (not entitled, host full, the desktop failed), SecurityResult has
 * already said OK (auth/ sends it), so the refusal is a ServerInit whose desktop name is the
 * message (viewers show it as the window title), followed by a close.
 *
 * Before login every connection holds a slot of the listener's gate (listen.c: preauth_max in
 * all, preauth_max_per_addr from one address); one beyond is reset before any RFB or TLS byte.
 * The slot is given back when the login ends, so logged-in viewers are never counted.
 */
#define VDI_LOG_TAG "gateway"
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "common/vdi.h"
#include "server/internal.h"

#define RFB_HANDSHAKE_MAX 4096

struct srv_gateway {
    srv_t *s;
    uv_tcp_t listener;
    srv_gate_t *gate;  /* connections before login */
    vdi_list_t logins; /* struct pending: logins in auth/ */
    vdi_list_t conns;  /* struct gconn */
    int port;
    bool closing;
    unsigned refs; /* listener + pendings + conns: free at 0 */
};

struct pending {
    srv_gateway_t *gw;
    auth_rfb_login_t *login;
    srv_gate_slot_t *slot;
    vdi_list_t link;
    uint64_t t_conn; /* ms: accepted */
};

enum gphase {
    G_DESKTOP,
    G_REFUSE,  /* waiting for ClientInit to answer with the refusal */
    G_REFUSED, /* refusal sent; lingering so that the viewer can show it */
    G_VMM_CONNECT,
    G_VMM_HANDSHAKE,
    G_SPLICE,
    G_CLOSING
};
#define REFUSE_LINGER_MS 1500

struct gconn {
    srv_gateway_t *gw;
    vdi_list_t link;
    enum gphase phase;
    auth_tls_t *tls;
    auth_identity_t *id;
    char peer[64];
    char close_reason[96];
    srv_login_t *blogin;
    srv_session_t *se;
    int64_t desktop;
    uv_pipe_t *vmm; /* allocated; until the splice takes it over */
    srv_splice_t *splice;
    uv_timer_t *refuse_timer;
    uv_connect_t connect_req;
    vdi_buf_t hs;           /* VMM handshake bytes; then client bytes waiting for the splice */
    vdi_buf_t client_early; /* client bytes (ClientInit...) that came before the splice */
    int hs_state;
    unsigned refs;      /* self + tls + vmm pipe (+ refuse timer); tls and pipe become one splice */
    uint64_t t_conn;    /* ms: the TCP connection was accepted */
    uint64_t t_accept;  /* ms: the login succeeded */
    uint64_t t_desktop; /* ms: the broker handed a desktop */
    srv_rfbin_t rfbin;  /* the viewer's messages, from ClientInit on (idle_timeout) */
};

static void gw_unref(srv_gateway_t *gw)
{
    if (--gw->refs > 0)
        return;
    srv__gate_destroy(gw->gate);
    free(gw);
}

static void conn_unref(struct gconn *c)
{
    if (--c->refs > 0)
        return;
    vdi_buf_free(&c->hs);
    vdi_buf_free(&c->client_early);
    auth_identity_free(c->id);
    srv_gateway_t *gw = c->gw;
    free(c);
    gw_unref(gw);
}

static void on_tls_closed(void *ctx)
{
    conn_unref(ctx);
}

static void on_vmm_closed(uv_handle_t *h)
{
    struct gconn *c = h->data;
    free(h);
    conn_unref(c);
}

static void on_splice_closed(void *ctx)
{
    conn_unref(ctx);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct gconn *c = h->data;
    free(h);
    conn_unref(c);
}

static void conn_close(struct gconn *c, const char *reason)
{
    if (c->phase == G_CLOSING)
        return;
    enum gphase was = c->phase;
    c->phase = G_CLOSING;
    vdi_list_remove(&c->link);
    if (was == G_SPLICE || c->se)
        VDI_LOG_INFO("user=%s desktop=%" PRId64 " peer=%s session closed: %s",
                     c->id ? c->id->username : "?", c->desktop, c->peer, reason);
    if (c->blogin) {
        srv__login_cancel(c->blogin);
        c->blogin = NULL;
    }
    if (c->se) {
        srv__session_close(c->se, reason);
        c->se = NULL;
    }
    if (c->splice) {
        srv__splice_close(c->splice, on_splice_closed, c);
        c->splice = NULL;
    }
    if (c->vmm) {
        uv_close((uv_handle_t *)c->vmm, on_vmm_closed);
        c->vmm = NULL;
    }
    if (c->refuse_timer) {
        uv_close((uv_handle_t *)c->refuse_timer, on_timer_closed);
        c->refuse_timer = NULL;
    }
    if (c->tls) {
        auth_tls_close(c->tls, on_tls_closed, c);
        c->tls = NULL;
    }
    conn_unref(c); /* the self reference */
}

/* ---- the splice ------------------------------------------------------------------------------ */
static void on_splice_end(void *ctx, enum srv_splice_end why, int err)
{
    static const char *const reasons[] = {
        [SRV_SPLICE_CLIENT_CLOSED] = "client closed",
        [SRV_SPLICE_CLIENT_ERROR] = "client connection error",
        [SRV_SPLICE_DISPLAY_CLOSED] = "desktop display closed",
        [SRV_SPLICE_NOMEM] = "out of memory",
    };
    struct gconn *c = ctx;
    if (err < 0)
        VDI_LOG_DEBUG("desktop=%" PRId64 " peer=%s splice ended: %s", c->desktop, c->peer,
                      vdi_strerror(err));
    conn_close(c, reasons[why]);
}

/* Only a person's input keeps the session from its idle_timeout, not update requests. */
static void on_client_input(void *ctx, const uint8_t *data, size_t len)
{
    struct gconn *c = ctx;
    if (srv__rfbin_feed(&c->rfbin, data, len) && c->se)
        srv__session_activity(c->se);
}

static const srv_splice_ops_t splice_ops = {.end = on_splice_end, .client_input = on_client_input};

/* ---- viewer, before the splice ------------------------------------------------------------- */
static void refuse_after_clientinit(struct gconn *c);

static void on_tls_read(auth_tls_t *t, ssize_t nread, const uint8_t *data, void *ctx)
{
    struct gconn *c = ctx;
    VDI_UNUSED(t);
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? "client closed" : "client connection error");
        return;
    }
    if (c->phase == G_REFUSE) {
        refuse_after_clientinit(c);
        return;
    }
    if (c->phase == G_REFUSED)
        return;
    /* Before the splice (the VMM handshake is running): keep ClientInit for later, bounded. */
    if (c->client_early.len + (size_t)nread > RFB_HANDSHAKE_MAX ||
        vdi_buf_append(&c->client_early, data, (size_t)nread) < 0) {
        conn_close(c, "client sent too much before its desktop was ready");
        return;
    }
}

/* ---- the desktop's display: connect, handshake, then the splice -------------------------------- */
static void on_vmm_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void vmm_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    VDI_UNUSED(h);
    VDI_UNUSED(suggested);
    static char chunk[RFB_HANDSHAKE_MAX]; /* appended to c->hs before the next read */
    *buf = uv_buf_init(chunk, sizeof(chunk));
}

static void on_hs_written(uv_write_t *req, int status)
{
    VDI_UNUSED(status); /* a display that went away shows up as a read error */
    free(req);
}

/* Send handshake bytes @msg (static storage) to the display. */
static int hs_write(struct gconn *c, const char *msg, size_t n)
{
    uv_write_t *req = vdi_xmalloc(sizeof(*req));
    uv_buf_t b = uv_buf_init((char *)msg, (unsigned)n);
    int rc = uv_write(req, (uv_stream_t *)c->vmm, &b, 1, on_hs_written);
    if (rc < 0)
        free(req);
    return rc;
}

static void start_splice(struct gconn *c)
{
    int rc = srv__splice_start(c->tls, c->vmm, &splice_ops, c, &c->splice);
    if (rc < 0) {
        VDI_LOG_WARN("desktop=%" PRId64 " peer=%s cannot start the splice: %s", c->desktop, c->peer,
                     vdi_strerror(rc));
        conn_close(c, "client connection error");
        return;
    }
    c->tls = NULL;
    c->vmm = NULL;
    c->refs--; /* the tls and pipe references are now the splice's one */
    c->phase = G_SPLICE;
    srv__rfbin_init(&c->rfbin, 1); /* ClientInit comes first (client_early) */
    uint64_t now = vdi_now_ms(), phase[SRV_LOGON__COUNT] = {
                                     [SRV_LOGON_AUTH] = c->t_accept - c->t_conn,
                                     [SRV_LOGON_DESKTOP] = c->t_desktop - c->t_accept,
                                     [SRV_LOGON_DISPLAY] = now - c->t_desktop,
                                     [SRV_LOGON_TOTAL] = now - c->t_conn,
                                 };
    srv__metrics_logon(c->gw->s, phase);
    VDI_LOG_INFO("user=%s desktop=%" PRId64 " peer=%s connected (%" PRIu64 " ms after accept)",
                 c->id->username, c->desktop, c->peer, vdi_now_ms() - c->t_accept);
    /* Bytes the display sent past SecurityResult (none for a conforming server) go first, then
     * what the viewer sent meanwhile (ClientInit). */
    if (c->hs.len) {
        srv__splice_display_bytes(c->splice, c->hs.data, c->hs.len);
        vdi_buf_reset(&c->hs);
    }
    if (c->phase == G_SPLICE && c->client_early.len) {
        srv__splice_client_bytes(c->splice, c->client_early.data, c->client_early.len);
        vdi_buf_reset(&c->client_early);
    }
}

/* RFB 6143 §7.1-7.1.3, client side, towards the VMM's display: version, security None, result. */
enum {
    HS_VERSION,
    HS_NTYPES,
    HS_TYPES,
    HS_RESULT,
    HS_REASON_LEN,
    HS_REASON
};

static int vmm_handshake(struct gconn *c)
{
    for (;;) {
        uint8_t *p = c->hs.data;
        size_t n = c->hs.len;
        switch (c->hs_state) {
        case HS_VERSION:
            if (n < 12)
                return 0;
            if (memcmp(p, "RFB 003.", 8) != 0 || p[11] != '\n') {
                VDI_LOG_WARN_RL("desktop=%" PRId64 " display: not an RFB server", c->desktop);
                return VDI_EPROTOCOL;
            }
            if (hs_write(c, "RFB 003.008\n", 12) < 0)
                return -EPIPE;
            vdi_buf_consume(&c->hs, 12);
            c->hs_state = HS_NTYPES;
            break;
        case HS_NTYPES:
            if (n < 1)
                return 0;
            if (p[0] == 0) { /* failure, a reason follows */
                vdi_buf_consume(&c->hs, 1);
                c->hs_state = HS_REASON_LEN;
                break;
            }
            if (n < 1u + p[0])
                return 0;
            bool none = memchr(p + 1, 1, p[0]) != NULL;
            vdi_buf_consume(&c->hs, 1u + p[0]);
            if (!none) {
                VDI_LOG_WARN_RL("desktop=%" PRId64 " display does not offer security None",
                                c->desktop);
                return VDI_EPROTOCOL;
            }
            if (hs_write(c, "\x01", 1) < 0)
                return -EPIPE;
            c->hs_state = HS_RESULT;
            break;
        case HS_RESULT:
            if (n < 4)
                return 0;
            if (p[0] | p[1] | p[2] | p[3]) {
                vdi_buf_consume(&c->hs, 4);
                c->hs_state = HS_REASON_LEN;
                break;
            }
            vdi_buf_consume(&c->hs, 4);
            return 1; /* done */
        case HS_REASON_LEN:
        case HS_REASON: {
            if (n < 4)
                return 0;
            uint32_t len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
            if (len > 1024 || n < 4 + len) {
                if (len > 1024)
                    return VDI_EPROTOCOL;
                return 0;
            }
            VDI_LOG_WARN_RL("desktop=%" PRId64 " display refused us: %.*s", c->desktop, (int)len,
                            (const char *)p + 4);
            return VDI_EPROTOCOL;
        }
        }
    }
}

static void on_vmm_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct gconn *c = st->data;
    if (nread < 0) {
        conn_close(c, "desktop display closed during the handshake");
        return;
    }
    if (nread == 0)
        return;
    if (c->hs.len + (size_t)nread > RFB_HANDSHAKE_MAX ||
        vdi_buf_append(&c->hs, buf->base, (size_t)nread) < 0) {
        conn_close(c, "desktop display misbehaved");
        return;
    }
    int rc = vmm_handshake(c);
    if (rc < 0) {
        conn_close(c, "desktop display handshake failed");
    } else if (rc == 1) {
        start_splice(c);
    }
}

static void on_vmm_connect(uv_connect_t *req, int status)
{
    struct gconn *c = req->data;
    if (c->phase != G_VMM_CONNECT)
        return; /* closed meanwhile; the pipe's close callback frees */
    if (status < 0) {
        VDI_LOG_WARN("desktop=%" PRId64 " display socket: %s", c->desktop, uv_strerror(status));
        conn_close(c, "desktop display unreachable");
        return;
    }
    c->phase = G_VMM_HANDSHAKE;
    uv_read_start((uv_stream_t *)c->vmm, vmm_alloc, on_vmm_read);
}

/* ---- refusals ---------------------------------------------------------------------------------- */
static void on_refuse_timer(uv_timer_t *t)
{
    struct gconn *c = t->data;
    conn_close(c, c->close_reason);
}

static void refuse_after_clientinit(struct gconn *c)
{
    /* ServerInit (RFB 7.3.2): a small framebuffer in a standard 32-bit format, named with the
     * message, then close. */
    const char *msg = c->close_reason;
    size_t len = strlen(msg);
    uint8_t si[24 + 96];
    memset(si, 0, 24);
    si[0] = 320 >> 8, si[1] = 320 & 0xff, si[2] = 0, si[3] = 24;
    si[4] = 32, si[5] = 24, si[6] = 0, si[7] = 1;     /* bpp, depth, little endian, true colour */
    si[8] = 0, si[9] = 255, si[10] = 0, si[11] = 255; /* red, green max */
    si[12] = 0, si[13] = 255, si[14] = 16, si[15] = 8, si[16] = 0; /* blue max, shifts */
    si[20] = (uint8_t)(len >> 24), si[21] = (uint8_t)(len >> 16), si[22] = (uint8_t)(len >> 8);
    si[23] = (uint8_t)len;
    memcpy(si + 24, msg, len);
    auth_tls_write(c->tls, si, 24 + len, NULL, NULL);
    /* Keep reading (and dropping) what the viewer sends after ServerInit for a moment, so it
     * gets to show the name before the connection drops; the timer then closes. */
    c->phase = G_REFUSED;
    c->refuse_timer = vdi_xcalloc(1, sizeof(*c->refuse_timer));
    uv_timer_init(c->gw->s->loop, c->refuse_timer);
    c->refuse_timer->data = c;
    c->refs++;
    uv_timer_start(c->refuse_timer, on_refuse_timer, REFUSE_LINGER_MS, 0);
}

static void refuse(struct gconn *c, const char *msg)
{
    snprintf(c->close_reason, sizeof(c->close_reason), "%.95s", msg);
    VDI_LOG_INFO("user=%s peer=%s refused: %s", c->id->username, c->peer, msg);
    c->phase = G_REFUSE;
    /* The viewer's ClientInit (one byte) comes next, maybe already buffered. */
    auth_tls_read_start(c->tls, on_tls_read, c);
}

/* ---- session kicks ----------------------------------------------------------------------------- */
static void on_kick(void *ctx, const char *reason)
{
    struct gconn *c = ctx;
    srv_session_t *se = c->se;
    c->se = NULL; /* the broker closes it (or did) */
    if (se)
        srv__session_close(se, reason);
    conn_close(c, reason);
}

/* ---- the desktop is ready ---------------------------------------------------------------------- */
static void on_desktop(int status, srv_vm_t *vm, const char *msg, void *ctx)
{
    struct gconn *c = ctx;
    c->blogin = NULL;
    c->t_desktop = vdi_now_ms();
    if (status < 0) {
        srv__metrics_count(c->gw->s, SRV_METRIC_LOGON_REFUSED);
        brk_store_audit_repeated(c->gw->s->store, NULL, "login.refused", c->id->username, c->peer,
                                 msg);
        refuse(c, msg);
        return;
    }
    c->desktop = srv__vm_id(vm);
    int rc = srv__session_open(vm, c->id->username, c->peer, on_kick, c, &c->se);
    if (rc < 0) {
        refuse(c, "internal error; the administrator was told");
        return;
    }
    c->vmm = vdi_xcalloc(1, sizeof(*c->vmm));
    uv_pipe_init(c->gw->s->loop, c->vmm, 0);
    c->vmm->data = c;
    c->refs++;
    c->phase = G_VMM_CONNECT;
    c->connect_req.data = c;
    uv_pipe_connect(&c->connect_req, c->vmm, srv__vm_display(vm), on_vmm_connect);
    /* Read the viewer now: ClientInit is kept until the display handshake is done, and an EOF
     * cancels everything. */
    auth_tls_read_start(c->tls, on_tls_read, c);
}

/* ---- logins ------------------------------------------------------------------------------------ */
static void on_login(auth_rfb_login_t *l, int status, auth_rfb_login_result_t *res, void *ctx)
{
    struct pending *p = ctx;
    srv_gateway_t *gw = p->gw;
    VDI_UNUSED(l);
    vdi_list_remove(&p->link);
    srv__gate_release(p->slot); /* logged in, or gone: no longer a connection before login */
    uint64_t t_conn = p->t_conn;
    free(p);
    if (status < 0 || gw->closing) {
        if (status == 0) {
            auth_tls_close(res->tls, NULL, NULL);
            auth_identity_free(res->id);
        }
        gw_unref(gw);
        return;
    }
    struct gconn *c = vdi_xcalloc(1, sizeof(*c));
    c->t_conn = t_conn;
    c->gw = gw; /* the pending's reference on gw passes to the connection */
    c->tls = res->tls;
    c->id = res->id;
    c->refs = 2; /* self + tls */
    c->t_accept = vdi_now_ms();
    c->phase = G_DESKTOP;
    snprintf(c->peer, sizeof(c->peer), "%s", res->peer);
    vdi_list_push_tail(&gw->conns, &c->link);
    brk_store_audit(gw->s->store, "auth", "login", 0, c->id->username, c->peer);
    int rc = srv__login(gw->s, c->id->username, (const char *const *)c->id->groups, c->id->ngroups,
                        on_desktop, c, &c->blogin);
    if (rc < 0)
        refuse(c, "internal error; the administrator was told");
}

static void on_connection(uv_stream_t *server, int status)
{
    srv_gateway_t *gw = server->data;
    if (status < 0 || gw->closing) {
        VDI_LOG_WARN_RL("accept: %s", uv_strerror(status));
        return;
    }
    uv_tcp_t *tcp;
    srv_gate_slot_t *slot;
    int rc = srv__gate_accept(gw->gate, server, &tcp, &slot);
    if (rc == -EBUSY)
        return; /* reset at once, counted and logged */
    if (rc < 0) {
        VDI_LOG_WARN_RL("accept: %s", vdi_strerror(rc));
        return;
    }
    struct pending *p = vdi_xcalloc(1, sizeof(*p));
    p->gw = gw;
    p->slot = slot;
    p->t_conn = vdi_now_ms();
    rc = auth_rfb_login_start(gw->s->auth, tcp, on_login, p, &p->login);
    if (rc < 0) {
        VDI_LOG_WARN_RL("accept: %s", vdi_strerror(rc));
        srv__gate_release(slot);
        free(p);
        return;
    }
    gw->refs++;
    vdi_list_push_tail(&gw->logins, &p->link);
}

static void on_audit(const auth_audit_event_t *ev, void *ctx)
{
    srv_t *s = ctx;
    static const char *const kinds[] = {
        [AUTH_AUDIT_LOGIN_OK] = "auth.ok",
        [AUTH_AUDIT_LOGIN_FAILED] = "auth.failed",
        [AUTH_AUDIT_LOCKOUT] = "auth.lockout",
        [AUTH_AUDIT_LOCKED] = "auth.locked",
    };
    char detail[256];
    snprintf(detail, sizeof(detail), "service=%s peer=%s reason=%s", ev->service, ev->peer,
             ev->reason ? ev->reason : "");
    /* Failures and refusals come as fast as a client sends them: coalesced per user and
     * address. A success or a lockout starting is one row each. */
    if (ev->kind == AUTH_AUDIT_LOGIN_FAILED)
        srv__metrics_count(s, SRV_METRIC_AUTH_FAILED);
    else if (ev->kind == AUTH_AUDIT_LOCKOUT)
        srv__metrics_count(s, SRV_METRIC_AUTH_LOCKOUT);
    if (ev->kind == AUTH_AUDIT_LOGIN_FAILED || ev->kind == AUTH_AUDIT_LOCKED)
        brk_store_audit_repeated(s->store, "auth", kinds[ev->kind], ev->username, ev->peer, detail);
    else
        brk_store_audit(s->store, "auth", kinds[ev->kind], 0, ev->username, detail);
}

static void on_listener_closed(uv_handle_t *h)
{
    gw_unref(h->data);
}

int srv__gateway_start(srv_t *s, srv_gateway_t **out)
{
    const brk_config_t *cfg = s->cfg;
    struct sockaddr_storage ss;
    char host[128];
    int rc;

    rc = srv__listen_addr("listen", cfg->listen, &ss, host, sizeof(host));
    if (rc < 0)
        return rc;
    srv_gateway_t *gw = vdi_xcalloc(1, sizeof(*gw));
    gw->s = s;
    gw->refs = 1;
    gw->gate = srv__gate_create("rfb", cfg->preauth_max, cfg->preauth_max_per_addr);
    vdi_list_init(&gw->logins);
    vdi_list_init(&gw->conns);
    uv_tcp_init(s->loop, &gw->listener);
    gw->listener.data = gw;
    rc = uv_tcp_bind(&gw->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&gw->listener, 128, on_connection);
    if (rc < 0) {
        VDI_LOG_ERR("listen=%s: %s", cfg->listen, uv_strerror(rc));
        gw->closing = true;
        uv_close((uv_handle_t *)&gw->listener, on_listener_closed);
        return rc;
    }
    gw->port = srv__bound_port(&gw->listener);
    auth_set_audit(s->auth, on_audit, s);
    VDI_LOG_INFO("RFB gateway listening on %s port %d", host, gw->port);
    *out = gw;
    return 0;
}

int srv__gateway_port(const srv_gateway_t *gw)
{
    return gw ? gw->port : 0;
}

const srv_gate_t *srv__gateway_gate(const srv_gateway_t *gw)
{
    return gw ? gw->gate : NULL;
}

void srv__gateway_close(srv_gateway_t *gw)
{
    if (!gw || gw->closing)
        return;
    gw->closing = true;
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &gw->logins)
    {
        struct pending *p = vdi_list_entry(it, struct pending, link);
        auth_rfb_login_abort(p->login); /* on_login runs later with -ECANCELED */
    }
    vdi_list_foreach_safe(it, tmp, &gw->conns)
    {
        conn_close(vdi_list_entry(it, struct gconn, link), "the server is shutting down");
    }
    uv_close((uv_handle_t *)&gw->listener, on_listener_closed);
}
