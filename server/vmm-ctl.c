/* server/vmm-ctl.c: vdid's client of one VMM's control socket (vmm/vmm.h, docs/vmm-control.md).
 * It connects, sends typed requests, splits what comes back into lines and hands each one, parsed
 * by vmm_msg_parse(), to its owner. It knows nothing about desktops: desktop.c decides what a
 * message means. A VMM is a jailed, guest-facing process: its lines are untrusted, an over-long
 * line is dropped, a line that is not of the protocol is logged (rate-limited) and skipped.
 */
#define VDI_LOG_TAG "vm"
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"
#include "server/desktop-internal.h"

struct srv_vmmctl {
    uv_pipe_t pipe;
    uv_connect_t req;
    const struct srv_vmmctl_cb *cb;
    void *ctx;
    vdi_buf_t in;
    bool up;      /* connected */
    bool closing; /* no callbacks any more */
};

static void on_closed(uv_handle_t *h)
{
    srv_vmmctl_t *c = vdi_container_of((uv_pipe_t *)h, srv_vmmctl_t, pipe);
    vdi_buf_free(&c->in);
    free(c);
}

void srv__vmmctl_close(srv_vmmctl_t *c)
{
    if (!c || c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->pipe, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    VDI_UNUSED(h);
    VDI_UNUSED(suggested);
    static char chunk[8192]; /* the loop thread only; consumed before the next read */
    *buf = uv_buf_init(chunk, sizeof(chunk));
}

static void lost(srv_vmmctl_t *c)
{
    const struct srv_vmmctl_cb *cb = c->cb;
    void *ctx = c->ctx;
    srv__vmmctl_close(c);
    cb->lost(ctx);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    srv_vmmctl_t *c = vdi_container_of((uv_pipe_t *)st, srv_vmmctl_t, pipe);
    if (c->closing)
        return;
    if (nread < 0) {
        VDI_LOG_DEBUG("control socket: %s", uv_strerror((int)nread));
        lost(c);
        return;
    }
    if (vdi_buf_append(&c->in, buf->base, (size_t)nread) < 0) {
        lost(c);
        return;
    }
    size_t start = 0;
    for (size_t i = 0; i < c->in.len && !c->closing; i++) {
        if (c->in.data[i] != '\n')
            continue;
        struct vmm_msg m;
        size_t n = i - start;
        const char *line = (const char *)c->in.data + start;
        if (n && line[n - 1] == '\r')
            n--;
        if (vmm_msg_parse(line, n, &m) == 0)
            c->cb->msg(c->ctx, &m);
        else
            VDI_LOG_WARN_RL("control socket: a line that is not of the VMM protocol (%zu bytes)",
                            n);
        start = i + 1;
    }
    if (c->closing)
        return; /* the owner closed it from a message */
    vdi_buf_consume(&c->in, start);
    if (c->in.len > VMM_CONTROL_MAX_LINE) {
        VDI_LOG_WARN_RL("control socket: line longer than %d bytes dropped", VMM_CONTROL_MAX_LINE);
        vdi_buf_reset(&c->in);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    srv_vmmctl_t *c = vdi_container_of(req, srv_vmmctl_t, req);
    if (c->closing)
        return;
    if (status < 0) {
        const struct srv_vmmctl_cb *cb = c->cb;
        void *ctx = c->ctx;
        srv__vmmctl_close(c);
        cb->failed(ctx, status);
        return;
    }
    c->up = true;
    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
    c->cb->connected(c->ctx);
}

int srv__vmmctl_connect(uv_loop_t *loop, const char *path, const struct srv_vmmctl_cb *cb,
                        void *ctx, srv_vmmctl_t **out)
{
    srv_vmmctl_t *c = vdi_xcalloc(1, sizeof(*c));
    int rc = uv_pipe_init(loop, &c->pipe, 0);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->cb = cb;
    c->ctx = ctx;
    uv_pipe_connect(&c->req, &c->pipe, path, on_connect);
    *out = c;
    return 0;
}

static void on_written(uv_write_t *req, int status)
{
    VDI_UNUSED(status); /* a broken socket shows up as a read error */
    free(req);
}

/* Queue @n bytes of @line on the socket (copied). */
static void write_line(srv_vmmctl_t *c, const char *line, size_t n)
{
    uv_write_t *req = vdi_xmalloc(sizeof(*req) + n);
    memcpy(req + 1, line, n);
    uv_buf_t b = uv_buf_init((char *)(req + 1), (unsigned)n);
    if (uv_write(req, (uv_stream_t *)&c->pipe, &b, 1, on_written) < 0)
        free(req);
}

void srv__vmmctl_send(srv_vmmctl_t *c, enum vmm_cmd cmd, uint32_t timeout_ms)
{
    char line[128];
    if (!c || !c->up || c->closing)
        return;
    int n = vmm_request_format(cmd, timeout_ms, line, sizeof(line));
    VDI_ASSERT(n > 0);
    write_line(c, line, (size_t)n);
}

int srv__vmmctl_message(srv_vmmctl_t *c, const char *text, unsigned seconds)
{
    /* JSON escapes take at most 6 bytes a byte of text. */
    size_t cap = 6 * (size_t)VMM_AGENT_TEXT_MAX + 128;
    if (!c || !c->up || c->closing)
        return -ENOTCONN;
    char *line = vdi_xmalloc(cap);
    int n = vmm_request_format_message(text, seconds, line, cap);
    if (n > 0)
        write_line(c, line, (size_t)n);
    free(line);
    return n < 0 ? n : 0;
}
