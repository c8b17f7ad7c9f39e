/* server/ws.c: server-side WebSocket framing (RFC 6455) by wslay, without IO. wslay pulls its input
 * through a callback; we push: srv__ws_feed() points the callback at the bytes that came, runs
 * wslay_event_recv() until they are used up (WSLAY_ERR_WOULDBLOCK), then flushes what wslay queued
 * (pongs, close replies) through ops->output. Client frames must be masked (wslay checks), a
 * message is at most SRV_WS_MAX_MSG bytes (larger: close 1009), fragments are reassembled.
 */
#define VDI_LOG_TAG "ws"
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "common/vdi.h"
#include "server/internal-web.h"

struct srv_ws {
    wslay_event_context_ptr ctx;
    const srv_ws_ops_t *ops;
    void *user;
    const uint8_t *in;
    size_t in_len;
    bool broken; /* output failed */
};

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    struct srv_ws *w = ud;
    VDI_UNUSED(flags);
    if (w->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < w->in_len ? len : w->in_len;
    memcpy(buf, w->in, n);
    w->in += n;
    w->in_len -= n;
    return (ssize_t)n;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    struct srv_ws *w = ud;
    VDI_UNUSED(flags);
    if (w->broken || w->ops->output(w->user, data, len) < 0) {
        w->broken = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void ws_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud)
{
    struct srv_ws *w = ud;
    VDI_UNUSED(ctx);
    if (arg->opcode == WSLAY_BINARY_FRAME || arg->opcode == WSLAY_TEXT_FRAME)
        w->ops->message(w->user, arg->msg, arg->msg_length);
}

static const struct wslay_event_callbacks callbacks = {
    .recv_callback = ws_recv,
    .send_callback = ws_send,
    .on_msg_recv_callback = ws_msg,
};

int srv__ws_create(const srv_ws_ops_t *ops, void *ctx, srv_ws_t **out)
{
    struct srv_ws *w = vdi_trycalloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->ops = ops;
    w->user = ctx;
    if (wslay_event_context_server_init(&w->ctx, &callbacks, w) != 0) {
        free(w);
        return -ENOMEM;
    }
    wslay_event_config_set_max_recv_msg_length(w->ctx, SRV_WS_MAX_MSG);
    *out = w;
    return 0;
}

void srv__ws_destroy(srv_ws_t *w)
{
    if (!w)
        return;
    wslay_event_context_free(w->ctx);
    free(w);
}

/* Flush, then say where we are: 0 open, 1 finished, < 0 broken. */
static int ws_flush(struct srv_ws *w)
{
    if (wslay_event_send(w->ctx) != 0 || w->broken)
        return -EPIPE;
    if (!wslay_event_want_read(w->ctx) && !wslay_event_want_write(w->ctx))
        return 1;
    if (wslay_event_get_close_sent(w->ctx) && wslay_event_get_queued_msg_count(w->ctx) == 0)
        return 1; /* our close is out: nothing more to say; the peer's reply may still come */
    return 0;
}

int srv__ws_feed(srv_ws_t *w, const uint8_t *data, size_t len)
{
    if (w->broken)
        return -EPIPE;
    w->in = data;
    w->in_len = len;
    int rc = wslay_event_recv(w->ctx);
    w->in = NULL;
    w->in_len = 0;
    if (rc == WSLAY_ERR_NOMEM)
        return -ENOMEM;
    if (rc != 0 && w->broken)
        return -EPIPE;
    return ws_flush(w);
}

int srv__ws_send(srv_ws_t *w, const uint8_t *data, size_t len)
{
    struct wslay_event_msg m = {.opcode = WSLAY_BINARY_FRAME, .msg = data, .msg_length = len};
    if (w->broken)
        return -EPIPE;
    int rc = wslay_event_queue_msg(w->ctx, &m);
    if (rc == WSLAY_ERR_NOMEM)
        return -ENOMEM;
    if (rc != 0)
        return -EPIPE; /* closing: no more messages */
    rc = ws_flush(w);
    return rc < 0 ? rc : 0;
}

int srv__ws_close(srv_ws_t *w, uint16_t code, const char *reason)
{
    size_t n = reason ? strlen(reason) : 0;
    if (n > 123)
        n = 123; /* a control frame's payload is at most 125 bytes, 2 of them the code */
    if (w->broken)
        return -EPIPE;
    int rc = wslay_event_queue_close(w->ctx, code, (const uint8_t *)reason, n);
    if (rc == WSLAY_ERR_NOMEM)
        return -ENOMEM;
    rc = ws_flush(w);
    return rc < 0 ? rc : 0;
}

uint16_t srv__ws_peer_close_code(const srv_ws_t *w)
{
    return wslay_event_get_close_received(w->ctx) ? wslay_event_get_status_code_received(w->ctx)
                                                  : 0;
}

int srv__ws_accept_key(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"; /* RFC 6455 §1.3 */
    uint8_t raw[20];
    char buf[64];
    size_t n = strlen(key);
    /* base64 of 16 bytes: 22 characters and "==" (RFC 6455 §4.1, item 7). */
    if (n != 24 || key[22] != '=' || key[23] != '=')
        return -EINVAL;
    for (size_t i = 0; i < 22; i++) {
        char c = key[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return -EINVAL;
    }
    memcpy(buf, key, n);
    memcpy(buf + n, guid, sizeof(guid) - 1);
    SHA1((const uint8_t *)buf, n + sizeof(guid) - 1, raw);
    EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw));
    return 0;
}
