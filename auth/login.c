/* auth/login.c: one RFB login on an accepted TCP connection: the sans-IO handshake of rfbsec.c
 * driven over the socket (in clear), then over TLS (auth_tls_t), then the password check
 * (limits + PAM), then SecurityResult. On success the TLS stream is handed to the caller.
 *
 * One timer bounds everything up to the arrival of the credentials (handshake_timeout_ms), so a
 * client that stalls anywhere before it has said who it is gets dropped. The PAM check itself is
 * bounded by the PAM stack, and the backoff by its configured maximum.
 *
 * Lifetime: the login holds references for its timer handle, a check in flight and itself until
 * finished; it is freed when all are gone. The caller's callback runs exactly once.
 */
#define VDI_LOG_TAG "auth"

#include <stdlib.h>
#include <string.h>

#include "auth/internal.h"

enum phase {
    PH_CLEAR,
    PH_TLS_HANDSHAKE,
    PH_TLS,
    PH_CHECKING,
    PH_FINISHED
};

struct auth_rfb_login {
    auth_t *a;
    enum phase phase;
    uv_tcp_t *tcp; /* until TLS takes it over */
    auth_tls_t *tls;
    auth_rfbsec_t *sec;
    uv_timer_t timer;
    int refs;
    bool aborting; /* auth_rfb_login_abort() ran; the timer reports -ECANCELED */
    char peer[64];
    auth_rfb_login_cb cb;
    void *ctx;
    uint8_t buf[1024];
};

static void unref(auth_rfb_login_t *l)
{
    if (--l->refs > 0)
        return;
    auth_rfbsec_destroy(l->sec);
    free(l);
}

static void on_timer_closed(uv_handle_t *h)
{
    unref(h->data);
}

static void on_clear_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    auth__tcp_close_free((uv_tcp_t *)req->handle);
    free(req);
}

/* Close the connection, after queued writes (e.g. a refusal). */
static void close_transports(auth_rfb_login_t *l)
{
    if (l->tcp) {
        uv_read_stop((uv_stream_t *)l->tcp);
        uv_shutdown_t *req = vdi_xmalloc(sizeof(*req));
        if (uv_shutdown(req, (uv_stream_t *)l->tcp, on_clear_shutdown) < 0) {
            free(req);
            auth__tcp_close_free(l->tcp);
        }
        l->tcp = NULL;
    }
    if (l->tls) {
        auth_tls_close(l->tls, NULL, NULL);
        l->tls = NULL;
    }
}

/* Report @status; on failure close the connection first. */
static void finish(auth_rfb_login_t *l, int status, auth_rfb_login_result_t *res)
{
    if (l->phase == PH_FINISHED)
        return;
    l->phase = PH_FINISHED;
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, on_timer_closed);
    if (status != 0)
        close_transports(l);
    l->a->logins--;
    l->cb(l, status, res, l->ctx);
    unref(l);
}

static void on_clear_write(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows up as a read error or EOF */
    free(req);
}

/* Send what the handshake wants to say: in clear before TLS, through TLS after. */
static int send_output(auth_rfb_login_t *l)
{
    size_t n;
    const uint8_t *p = auth_rfbsec_output(l->sec, &n);
    if (n == 0)
        return 0;
    int err;
    if (l->tls) {
        err = auth_tls_write(l->tls, p, n, NULL, NULL);
    } else {
        uv_write_t *req = vdi_xmalloc(sizeof(*req) + n);
        memcpy(req + 1, p, n);
        uv_buf_t b = uv_buf_init((char *)(req + 1), (unsigned)n);
        err = uv_write(req, (uv_stream_t *)l->tcp, &b, 1, on_clear_write);
        if (err < 0)
            free(req);
    }
    auth_rfbsec_output_consume(l->sec, n);
    return err;
}

static void on_check(int status, auth_identity_t *id, const char *reason, void *ctx);
static void on_tls_handshake(auth_tls_t *t, int status, void *ctx);

/* Feed bytes to the handshake and act on what it says. */
static void process(auth_rfb_login_t *l, const uint8_t *data, size_t len)
{
    for (;;) {
        size_t used = 0;
        enum auth_rfbsec_event ev = auth_rfbsec_feed(l->sec, data, len, &used);
        data += used;
        len -= used;
        int err = send_output(l);
        if (err < 0) {
            VDI_LOG_DEBUG("rfb peer=%s write failed: %s", l->peer, vdi_strerror(err));
            finish(l, err, NULL);
            return;
        }
        switch (ev) {
        case AUTH_RFBSEC_NEED_MORE:
            return;
        case AUTH_RFBSEC_START_TLS: {
            uint32_t sub = auth_rfbsec_subtype(l->sec);
            SSL_CTX *ctx = sub == AUTH_VENCRYPT_TLSPLAIN ? l->a->tls_anon : l->a->tls_x509;
            VDI_ASSERT(ctx);
            uv_read_stop((uv_stream_t *)l->tcp);
            uv_tcp_t *tcp = l->tcp;
            l->tcp = NULL;
            l->phase = PH_TLS_HANDSHAKE;
            /* Bytes after the subtype are the client's first TLS bytes. The login timer bounds
             * the TLS handshake too, so the TLS layer gets no timer of its own. */
            err = auth__tls_start(ctx, tcp, l->peer, data, len, 0, on_tls_handshake, l, &l->tls);
            if (err < 0) {
                VDI_LOG_ERR("rfb peer=%s cannot start TLS: %s", l->peer, vdi_strerror(err));
                finish(l, err, NULL);
            }
            return;
        }
        case AUTH_RFBSEC_CREDENTIALS: {
            /* Whatever the client sent after its credentials (it should wait for the
             * SecurityResult, but may pipeline ClientInit) goes to the next owner of the stream. */
            auth_tls_read_stop(l->tls);
            if (len && auth__tls_unread(l->tls, data, len) < 0) {
                finish(l, -ENOMEM, NULL);
                return;
            }
            uv_timer_stop(&l->timer);
            l->phase = PH_CHECKING;
            const char *user, *pass;
            auth_rfbsec_credentials(l->sec, &user, &pass);
            l->refs++; /* the check holds the login until it reports */
            err = auth_check_password(l->a, "rfb", user, pass, l->peer, on_check, l);
            if (err < 0) {
                l->refs--;
                auth_rfbsec_finish(l->sec, false, "invalid username or password");
                send_output(l);
                finish(l, err, NULL);
            }
            return;
        }
        case AUTH_RFBSEC_FAILED:
            VDI_LOG_WARN_RL("rfb peer=%s handshake refused: %s", l->peer,
                            auth_rfbsec_error(l->sec));
            finish(l, VDI_EPROTOCOL, NULL);
            return;
        case AUTH_RFBSEC_DONE:
            VDI_ASSERT(!"handshake done before the check finished");
        }
    }
}

static void on_check(int status, auth_identity_t *id, const char *reason, void *ctx)
{
    auth_rfb_login_t *l = ctx;
    if (l->phase != PH_CHECKING || l->aborting) { /* aborted meanwhile */
        auth_identity_free(id);
        unref(l);
        return;
    }
    l->refs--; /* finish() below drops the login's own reference */
    if (status == 0) {
        auth_rfbsec_finish(l->sec, true, NULL);
        int err = send_output(l);
        if (err < 0) {
            auth_identity_free(id);
            finish(l, err, NULL);
            return;
        }
        VDI_LOG_INFO("rfb peer=%s user=%s logged in (RFB 3.%d, VeNCrypt %s, %s %s)", l->peer,
                     id->username, auth_rfbsec_minor(l->sec),
                     auth_rfbsec_subtype(l->sec) == AUTH_VENCRYPT_TLSPLAIN ? "TLSPlain"
                                                                           : "X509Plain",
                     auth_tls_version(l->tls), auth_tls_cipher(l->tls));
        auth_rfb_login_result_t res = {
            .id = id,
            .tls = l->tls,
            .rfb_minor = auth_rfbsec_minor(l->sec),
            .vencrypt_subtype = auth_rfbsec_subtype(l->sec),
            .peer = l->peer,
        };
        l->tls = NULL;
        finish(l, 0, &res);
        return;
    }
    auth_rfbsec_finish(l->sec, false, reason);
    send_output(l);
    finish(l, status, NULL);
}

static void on_tls_read(auth_tls_t *t, ssize_t n, const uint8_t *data, void *ctx)
{
    auth_rfb_login_t *l = ctx;
    (void)t;
    if (n < 0) {
        VDI_LOG_WARN_RL("rfb peer=%s connection ended during the security handshake: %s", l->peer,
                        vdi_strerror((int)n));
        finish(l, n == UV_EOF ? VDI_EPROTOCOL : (int)n, NULL);
        return;
    }
    process(l, data, (size_t)n);
}

static void on_tls_handshake(auth_tls_t *t, int status, void *ctx)
{
    auth_rfb_login_t *l = ctx;
    if (status < 0) {
        l->tls = NULL; /* closing itself; it logged the cause */
        finish(l, status, NULL);
        return;
    }
    l->phase = PH_TLS;
    int err = auth_tls_read_start(t, on_tls_read, l);
    if (err < 0)
        finish(l, err, NULL);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    auth_rfb_login_t *l = h->data;
    (void)hint;
    *b = uv_buf_init((char *)l->buf, sizeof(l->buf));
}

static void on_clear_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    auth_rfb_login_t *l = s->data;
    if (n < 0) {
        VDI_LOG_WARN_RL("rfb peer=%s connection ended before TLS: %s", l->peer,
                        uv_strerror((int)n));
        finish(l, n == UV_EOF ? VDI_EPROTOCOL : (int)n, NULL);
        return;
    }
    process(l, (const uint8_t *)b->base, (size_t)n);
}

static void on_timeout(uv_timer_t *tm)
{
    auth_rfb_login_t *l = tm->data;
    static const char *const names[] = {"before TLS", "in the TLS handshake",
                                        "before the credentials", "", ""};
    VDI_LOG_WARN_RL("rfb peer=%s security handshake timed out %s", l->peer, names[l->phase]);
    finish(l, VDI_ETIMEOUT, NULL);
}

int auth_rfb_login_accept(auth_t *a, uv_stream_t *server, auth_rfb_login_cb cb, void *ctx,
                          auth_rfb_login_t **out)
{
    uv_tcp_t *tcp = vdi_xmalloc(sizeof(*tcp));
    uv_tcp_init(a->loop, tcp);
    int err = uv_accept(server, (uv_stream_t *)tcp);
    if (err < 0) {
        auth__tcp_close_free(tcp);
        return err;
    }
    return auth_rfb_login_start(a, tcp, cb, ctx, out);
}

int auth_rfb_login_start(auth_t *a, uv_tcp_t *tcp, auth_rfb_login_cb cb, void *ctx,
                         auth_rfb_login_t **out)
{
    int err;
    auth_rfb_login_t *l = vdi_xcalloc(1, sizeof(*l));
    auth_rfbsec_config_t sc = {
        .allow_tlsplain = a->cfg.allow_tlsplain && a->tls_anon,
        .tlsplain_only = a->cfg.tlsplain_only && a->tls_anon,
        .max_username_len = a->cfg.max_username_len,
        .max_password_len = a->cfg.max_password_len,
    };
    err = auth_rfbsec_create(&sc, &l->sec);
    if (err < 0) {
        free(l);
        auth__tcp_close_free(tcp);
        return err;
    }
    l->a = a;
    l->tcp = tcp;
    tcp->data = l;
    l->cb = cb;
    l->ctx = ctx;
    l->refs = 2; /* the login itself, its timer handle */
    uv_tcp_nodelay(tcp, 1);
    auth__peer_name(tcp, l->peer, sizeof(l->peer));
    uv_timer_init(a->loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, on_timeout, a->cfg.handshake_timeout_ms, 0);
    a->logins++;
    VDI_LOG_DEBUG("rfb peer=%s connected", l->peer);
    err = send_output(l); /* ProtocolVersion */
    if (err == 0)
        err = uv_read_start((uv_stream_t *)tcp, on_alloc, on_clear_read);
    if (err < 0) {
        /* The callback must not run when we return an error: undo by hand. */
        a->logins--;
        l->phase = PH_FINISHED;
        uv_close((uv_handle_t *)&l->timer, on_timer_closed);
        auth__tcp_close_free(tcp);
        unref(l);
        return err;
    }
    if (out)
        *out = l;
    return 0;
}

static void on_abort(uv_timer_t *tm)
{
    finish(tm->data, -ECANCELED, NULL);
}

void auth_rfb_login_abort(auth_rfb_login_t *l)
{
    if (l->phase == PH_FINISHED || l->aborting)
        return;
    l->aborting = true;
    /* No more input: nothing can complete the login now. The callback comes from the loop. */
    close_transports(l);
    uv_timer_start(&l->timer, on_abort, 0, 0);
}

size_t auth_rfb_login_count(const auth_t *a)
{
    return a->logins;
}
