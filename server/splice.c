/* server/splice.c: a client's TLS stream (auth_tls_t) joined to a desktop's display socket (a
 * connected uv_pipe_t), bytes copied both ways without being parsed. The RFB gateway (gateway.c)
 * uses it as it is; the browser console (portal-console.c) puts its WebSocket framing on the
 * client side through the from_client/from_display hooks.
 *
 * Backpressure: bytes from one side are written to the other; when more than
 * SRV_SPLICE_HIGH_WATER bytes wait to be written to a side, reading the opposite side stops until
 * that backlog drops below SRV_SPLICE_LOW_WATER. A slow client therefore slows the desktop's
 * display server (its socket buffer fills), a display that does not read slows the client (TCP
 * flow control), and vdid holds at most about HIGH_WATER plus one read per direction per splice.
 * The backlogs are libuv's write queue on the pipe and auth_tls_write_queue_size() on the client.
 *
 * Endings: whatever ends the splice (a side closed or failed, a write failed) is reported once
 * through ops->end, after which nothing more is read; the owner then calls srv__splice_close(),
 * which closes both sides (the client's after its queued bytes drain) and frees the splice once
 * libuv is done with both.
 */
#define VDI_LOG_TAG "splice"
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "common/vdi.h"
#include "server/internal.h"

struct srv_splice {
    auth_tls_t *tls;
    uv_pipe_t *display;
    const srv_splice_ops_t *ops;
    void *ctx;
    bool client_paused;  /* we stopped reading the client (backlog towards the display) */
    bool display_paused; /* we stopped reading the display (backlog towards the client) */
    bool ended;          /* ops->end ran (or closing): read nothing more */
    bool closing;
    unsigned open_sides; /* while closing: sides whose close has not finished */
    void (*close_cb)(void *ctx);
    void *close_ctx;
};

static void on_client_read(auth_tls_t *t, ssize_t nread, const uint8_t *data, void *ctx);
static void on_display_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void display_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    VDI_UNUSED(h);
    VDI_UNUSED(suggested);
    /* One buffer for every splice: each read is written on (auth_tls_write copies it, and so
     * does the framing) before the loop reads again. */
    static char chunk[65536];
    *buf = uv_buf_init(chunk, sizeof(chunk));
}

static void end(srv_splice_t *sp, enum srv_splice_end why, int err)
{
    if (sp->ended)
        return;
    sp->ended = true;
    auth_tls_read_stop(sp->tls);
    uv_read_stop((uv_stream_t *)sp->display);
    sp->ops->end(sp->ctx, why, err);
}

/* ---- client -> display -------------------------------------------------------------------- */
static void on_display_written(uv_write_t *req, int status)
{
    srv_splice_t *sp = req->data;
    free(req);
    if (sp->closing)
        return; /* cancelled by the close */
    if (status < 0) {
        end(sp, SRV_SPLICE_DISPLAY_CLOSED, status);
        return;
    }
    if (sp->client_paused && !sp->ended &&
        uv_stream_get_write_queue_size((uv_stream_t *)sp->display) < SRV_SPLICE_LOW_WATER) {
        sp->client_paused = false;
        auth_tls_read_start(sp->tls, on_client_read, sp);
    }
}

int srv__splice_to_display(srv_splice_t *sp, const uint8_t *data, size_t len)
{
    if (sp->closing)
        return -EPIPE;
    if (len == 0)
        return 0;
    uv_write_t *req = vdi_trymalloc(sizeof(*req) + len);
    if (!req) {
        end(sp, SRV_SPLICE_NOMEM, -ENOMEM);
        return -ENOMEM;
    }
    memcpy(req + 1, data, len);
    req->data = sp;
    uv_buf_t b = uv_buf_init((char *)(req + 1), (unsigned)len);
    int rc = uv_write(req, (uv_stream_t *)sp->display, &b, 1, on_display_written);
    if (rc < 0) {
        free(req);
        end(sp, SRV_SPLICE_DISPLAY_CLOSED, rc);
        return rc;
    }
    if (!sp->client_paused &&
        uv_stream_get_write_queue_size((uv_stream_t *)sp->display) > SRV_SPLICE_HIGH_WATER) {
        sp->client_paused = true;
        auth_tls_read_stop(sp->tls);
    }
    return 0;
}

void srv__splice_client_bytes(srv_splice_t *sp, const uint8_t *data, size_t len)
{
    if (sp->ended || len == 0)
        return;
    if (sp->ops->client_input)
        sp->ops->client_input(sp->ctx, data, len);
    if (sp->ended)
        return;
    if (!sp->ops->from_client) {
        srv__splice_to_display(sp, data, len);
        return;
    }
    int rc = sp->ops->from_client(sp->ctx, data, len);
    if (rc < 0)
        end(sp, SRV_SPLICE_CLIENT_ERROR, rc);
}

static void on_client_read(auth_tls_t *t, ssize_t nread, const uint8_t *data, void *ctx)
{
    srv_splice_t *sp = ctx;
    VDI_UNUSED(t);
    if (nread < 0) {
        if (nread == UV_EOF)
            end(sp, SRV_SPLICE_CLIENT_CLOSED, 0);
        else
            end(sp, SRV_SPLICE_CLIENT_ERROR, (int)nread);
        return;
    }
    srv__splice_client_bytes(sp, data, (size_t)nread);
}

/* ---- display -> client -------------------------------------------------------------------- */
static void on_client_written(auth_tls_t *t, int status, void *ctx)
{
    srv_splice_t *sp = ctx;
    if (sp->closing)
        return;
    if (status < 0) {
        end(sp, SRV_SPLICE_CLIENT_ERROR, status);
        return;
    }
    if (sp->display_paused && !sp->ended && auth_tls_write_queue_size(t) < SRV_SPLICE_LOW_WATER) {
        sp->display_paused = false;
        uv_read_start((uv_stream_t *)sp->display, display_alloc, on_display_read);
    }
}

int srv__splice_to_client(srv_splice_t *sp, const uint8_t *data, size_t len)
{
    if (sp->closing)
        return -EPIPE;
    if (len == 0)
        return 0;
    int rc = auth_tls_write(sp->tls, data, len, on_client_written, sp);
    if (rc < 0) {
        end(sp, rc == -ENOMEM ? SRV_SPLICE_NOMEM : SRV_SPLICE_CLIENT_ERROR, rc);
        return rc;
    }
    if (!sp->display_paused && auth_tls_write_queue_size(sp->tls) > SRV_SPLICE_HIGH_WATER) {
        sp->display_paused = true;
        uv_read_stop((uv_stream_t *)sp->display);
    }
    return 0;
}

void srv__splice_display_bytes(srv_splice_t *sp, const uint8_t *data, size_t len)
{
    if (sp->ended || len == 0)
        return;
    if (!sp->ops->from_display) {
        srv__splice_to_client(sp, data, len);
        return;
    }
    int rc = sp->ops->from_display(sp->ctx, data, len);
    if (rc < 0)
        end(sp, SRV_SPLICE_CLIENT_ERROR, rc);
}

static void on_display_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    srv_splice_t *sp = st->data;
    if (nread < 0) {
        end(sp, SRV_SPLICE_DISPLAY_CLOSED, nread == UV_EOF ? 0 : (int)nread);
        return;
    }
    srv__splice_display_bytes(sp, (const uint8_t *)buf->base, (size_t)nread);
}

/* ---- life cycle --------------------------------------------------------------------------- */
int srv__splice_start(auth_tls_t *tls, uv_pipe_t *display, const srv_splice_ops_t *ops, void *ctx,
                      srv_splice_t **out)
{
    VDI_ASSERT(ops && ops->end && !ops->from_client == !ops->from_display);
    srv_splice_t *sp = vdi_xcalloc(1, sizeof(*sp));
    sp->tls = tls;
    sp->display = display;
    sp->ops = ops;
    sp->ctx = ctx;
    void *owner_data = display->data;
    display->data = sp;
    /* The owner may have been reading either side for its handshake: take both over. */
    uv_read_stop((uv_stream_t *)display);
    int rc = uv_read_start((uv_stream_t *)display, display_alloc, on_display_read);
    if (rc == 0) {
        rc = auth_tls_read_start(tls, on_client_read, sp);
        if (rc < 0)
            uv_read_stop((uv_stream_t *)display);
    }
    if (rc < 0) {
        display->data = owner_data; /* the owner's close callback finds its own again */
        free(sp);
        return rc;
    }
    *out = sp;
    return 0;
}

static void side_closed(srv_splice_t *sp)
{
    if (--sp->open_sides > 0)
        return;
    void (*cb)(void *) = sp->close_cb;
    void *ctx = sp->close_ctx;
    free(sp);
    if (cb)
        cb(ctx);
}

static void on_display_closed(uv_handle_t *h)
{
    srv_splice_t *sp = h->data;
    free(h);
    side_closed(sp);
}

static void on_tls_closed(void *ctx)
{
    side_closed(ctx);
}

void srv__splice_close(srv_splice_t *sp, void (*cb)(void *ctx), void *ctx)
{
    if (!sp || sp->closing)
        return;
    sp->closing = true;
    sp->ended = true;
    sp->close_cb = cb;
    sp->close_ctx = ctx;
    sp->open_sides = 2;
    /* Pending writes to the display are cancelled (their callbacks see sp->closing); the
     * client's drain first (a WebSocket close frame, a TLS close_notify). */
    uv_close((uv_handle_t *)sp->display, on_display_closed);
    auth_tls_close(sp->tls, on_tls_closed, sp);
}
