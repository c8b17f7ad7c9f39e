/* Unit tests for server/splice.c: the client side is a fake TLS stream (auth_tls_* wrapped with
 * -Wl,--wrap: the test delivers its reads, sees what is written, and decides when the "network"
 * drains), the display side a real unix socketpair on a uv_pipe_t. They show that backpressure
 * stops reading a side whose peer does not drain and resumes once it does, that bytes arrive
 * complete and in order both ways, also through a framing hook, and how a splice ends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/auth.h"
#include "common/vdi.h"
#include "server/internal.h"

#define TOTAL (4u * 1024 * 1024) /* bytes each way: several times the high-water mark */
#define CHUNK 65536

/* ---- the fake TLS stream -------------------------------------------------------------------- */
struct pending_write {
    auth_tls_write_cb cb;
    void *ctx;
    size_t len;
};

struct auth_tls {
    bool reading;
    unsigned read_stops; /* how often the splice stopped reading us */
    auth_tls_read_cb cb;
    void *ctx;
    vdi_buf_t written; /* plaintext the splice sent to the client */
    size_t queue;      /* what auth_tls_write_queue_size() says: written, not yet drained */
    struct pending_write *pending;
    size_t n_pending, cap_pending;
    bool closed;
};

int __wrap_auth_tls_read_start(auth_tls_t *t, auth_tls_read_cb cb, void *ctx);
void __wrap_auth_tls_read_stop(auth_tls_t *t);
int __wrap_auth_tls_write(auth_tls_t *t, const void *data, size_t len, auth_tls_write_cb cb,
                          void *ctx);
size_t __wrap_auth_tls_write_queue_size(const auth_tls_t *t);
void __wrap_auth_tls_close(auth_tls_t *t, auth_tls_close_cb cb, void *ctx);

int __wrap_auth_tls_read_start(auth_tls_t *t, auth_tls_read_cb cb, void *ctx)
{
    assert_false(t->closed);
    t->reading = true;
    t->cb = cb;
    t->ctx = ctx;
    return 0;
}

void __wrap_auth_tls_read_stop(auth_tls_t *t)
{
    if (t->reading)
        t->read_stops++;
    t->reading = false;
}

int __wrap_auth_tls_write(auth_tls_t *t, const void *data, size_t len, auth_tls_write_cb cb,
                          void *ctx)
{
    assert_false(t->closed);
    assert_int_equal(vdi_buf_append(&t->written, data, len), 0);
    t->queue += len;
    if (t->n_pending == t->cap_pending) {
        t->cap_pending = t->cap_pending ? t->cap_pending * 2 : 64;
        t->pending = vdi_xrealloc(t->pending, t->cap_pending * sizeof(*t->pending));
    }
    t->pending[t->n_pending++] = (struct pending_write){cb, ctx, len};
    return 0;
}

size_t __wrap_auth_tls_write_queue_size(const auth_tls_t *t)
{
    return t->queue;
}

void __wrap_auth_tls_close(auth_tls_t *t, auth_tls_close_cb cb, void *ctx)
{
    t->closed = true;
    t->reading = false;
    if (cb)
        cb(ctx);
}

/* The client's network takes everything written so far: write callbacks run. */
static void tls_drain(auth_tls_t *t)
{
    size_t n = t->n_pending;
    struct pending_write *p = vdi_xmalloc((n ? n : 1) * sizeof(*p));
    memcpy(p, t->pending, n * sizeof(*p));
    t->n_pending = 0;
    for (size_t i = 0; i < n; i++) {
        t->queue -= p[i].len;
        if (p[i].cb && !t->closed)
            p[i].cb(t, 0, p[i].ctx);
    }
    free(p);
}

/* ---- a splice under test ---------------------------------------------------------------------- */
struct fixture {
    uv_loop_t loop;
    struct auth_tls tls;
    int peer; /* the display's end of the socketpair */
    srv_splice_t *sp;
    int ended;
    enum srv_splice_end why;
    bool closed;
    vdi_buf_t frame_in; /* framing: client bytes not yet a whole frame */
    unsigned frames_in, frames_out;
};

static void on_end(void *ctx, enum srv_splice_end why, int err)
{
    struct fixture *f = ctx;
    VDI_UNUSED(err);
    f->ended++;
    f->why = why;
}

static void on_closed(void *ctx)
{
    struct fixture *f = ctx;
    f->closed = true;
}

/* Framing for the test: each frame is a 4-byte big-endian length and that many payload bytes
 * (like the WebSocket's, it needs state across reads: frames arrive in any pieces). */
static int frame_from_client(void *ctx, const uint8_t *data, size_t len)
{
    struct fixture *f = ctx;
    assert_int_equal(vdi_buf_append(&f->frame_in, data, len), 0);
    while (f->frame_in.len >= 4) {
        const uint8_t *p = f->frame_in.data;
        size_t n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        if (n > CHUNK)
            return VDI_EPROTOCOL;
        if (f->frame_in.len < 4 + n)
            break;
        int rc = srv__splice_to_display(f->sp, p + 4, n);
        if (rc < 0)
            return rc;
        f->frames_in++;
        vdi_buf_consume(&f->frame_in, 4 + n);
    }
    return 0;
}

static int frame_from_display(void *ctx, const uint8_t *data, size_t len)
{
    struct fixture *f = ctx;
    uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                      (uint8_t)len};
    f->frames_out++;
    int rc = srv__splice_to_client(f->sp, hdr, sizeof(hdr));
    return rc < 0 ? rc : srv__splice_to_client(f->sp, data, len);
}

static const srv_splice_ops_t plain_ops = {.end = on_end};
static const srv_splice_ops_t framed_ops = {
    .end = on_end,
    .from_client = frame_from_client,
    .from_display = frame_from_display,
};

static void fixture_start(struct fixture *f, const srv_splice_ops_t *ops)
{
    int sv[2];
    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    f->peer = sv[1];
    uv_pipe_t *display = vdi_xcalloc(1, sizeof(*display));
    assert_int_equal(uv_pipe_init(&f->loop, display, 0), 0);
    assert_int_equal(uv_pipe_open(display, sv[0]), 0);
    assert_int_equal(srv__splice_start(&f->tls, display, ops, f, &f->sp), 0);
    assert_true(f->tls.reading);
}

static void fixture_finish(struct fixture *f)
{
    srv__splice_close(f->sp, on_closed, f);
    assert_true(f->tls.closed);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(f->closed); /* both sides closed, the splice freed */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    if (f->peer >= 0)
        close(f->peer);
    vdi_buf_free(&f->tls.written);
    vdi_buf_free(&f->frame_in);
    free(f->tls.pending);
}

static uint8_t pattern(size_t i)
{
    return (uint8_t)((i ^ (i >> 8) ^ (i >> 17)) * 37 + 11);
}

static void fill(uint8_t *buf, size_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = pattern(off + i);
}

static void check(const uint8_t *buf, size_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (buf[i] != pattern(off + i))
            fail_msg("byte %zu is 0x%02x, expected 0x%02x", off + i, buf[i], pattern(off + i));
}

/* Read what the display's end has (it is the display draining). Returns bytes read. */
static size_t display_drain(struct fixture *f, size_t *got)
{
    uint8_t buf[CHUNK];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(f->peer, buf, sizeof(buf));
        if (n <= 0)
            break;
        check(buf, *got, (size_t)n);
        *got += (size_t)n;
        total += (size_t)n;
    }
    return total;
}

/* ---- client -> display ------------------------------------------------------------------------ */
static void test_client_to_display_backpressure(void **state)
{
    (void)state;
    struct fixture f;
    static uint8_t chunk[CHUNK];
    size_t sent = 0, got = 0;
    fixture_start(&f, &plain_ops);

    /* The display reads nothing: the client is read until the backlog passes the high-water
     * mark, then no more. */
    while (f.tls.reading && sent < TOTAL) {
        fill(chunk, sent, CHUNK);
        f.tls.cb(&f.tls, CHUNK, chunk, f.tls.ctx);
        sent += CHUNK;
        uv_run(&f.loop, UV_RUN_NOWAIT);
    }
    assert_false(f.tls.reading);
    assert_int_equal(f.tls.read_stops, 1);
    assert_true(sent < TOTAL);
    assert_true(sent > SRV_SPLICE_HIGH_WATER);
    /* The kernel's socket buffer holds some of it; vdid holds the rest, about HIGH_WATER. */
    for (int i = 0; i < 20; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_false(f.tls.reading);

    /* The display drains: reading the client resumes, and everything arrives in order. */
    unsigned resumed = 0;
    for (unsigned spins = 0; got < TOTAL; spins++) {
        if (spins > 200000)
            fail_msg("stalled at %zu of %u bytes: reading the client did not resume", got, TOTAL);
        bool was = f.tls.reading;
        if (f.tls.reading && sent < TOTAL) {
            fill(chunk, sent, CHUNK);
            f.tls.cb(&f.tls, CHUNK, chunk, f.tls.ctx);
            sent += CHUNK;
        }
        display_drain(&f, &got);
        uv_run(&f.loop, UV_RUN_NOWAIT);
        if (!was && f.tls.reading)
            resumed++;
    }
    assert_true(resumed >= 1);
    assert_int_equal(sent, TOTAL);
    assert_int_equal(got, TOTAL);
    assert_int_equal(f.ended, 0);
    fixture_finish(&f);
}

/* ---- display -> client ------------------------------------------------------------------------ */
static size_t display_write(struct fixture *f, size_t *sent)
{
    uint8_t buf[CHUNK];
    size_t total = 0;
    while (*sent < TOTAL) {
        size_t n = VDI_MIN(sizeof(buf), TOTAL - *sent);
        fill(buf, *sent, n);
        ssize_t w = write(f->peer, buf, n);
        if (w <= 0)
            break;
        *sent += (size_t)w;
        total += (size_t)w;
    }
    return total;
}

static void test_display_to_client_backpressure(void **state)
{
    (void)state;
    struct fixture f;
    size_t sent = 0;
    fixture_start(&f, &plain_ops);

    /* The client's network takes nothing: the display is read until the backlog towards the
     * client passes the high-water mark, then no more, though it has more to send. */
    size_t before = (size_t)-1;
    for (int idle = 0; idle < 20;) {
        display_write(&f, &sent);
        uv_run(&f.loop, UV_RUN_NOWAIT);
        if (f.tls.written.len == before)
            idle++;
        before = f.tls.written.len;
    }
    assert_true(f.tls.written.len > SRV_SPLICE_HIGH_WATER);
    assert_true(f.tls.written.len <= SRV_SPLICE_HIGH_WATER + CHUNK);
    assert_true(sent > f.tls.written.len); /* the display had more to give */
    check(f.tls.written.data, 0, f.tls.written.len);

    /* The client drains: reading the display resumes and everything arrives in order. */
    for (unsigned spins = 0; f.tls.written.len < TOTAL; spins++) {
        if (spins > 200000)
            fail_msg("stalled at %zu of %u bytes: reading the display did not resume",
                     f.tls.written.len, TOTAL);
        display_write(&f, &sent);
        tls_drain(&f.tls);
        uv_run(&f.loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(f.tls.written.len, TOTAL);
    check(f.tls.written.data, 0, TOTAL);
    assert_int_equal(f.ended, 0);
    fixture_finish(&f);
}

/* ---- through a framing hook, both ways at once -------------------------------------------------- */
static void test_framing_both_ways(void **state)
{
    (void)state;
    struct fixture f;
    size_t d_sent = 0, d_got = 0; /* display -> client payload */
    size_t c_sent = 0, c_got = 0; /* client -> display payload */
    size_t piece = 1, framed = 0; /* client bytes fed in pieces of 1, 2, ... 4096 bytes */
    static uint8_t out[TOTAL / 4 + TOTAL / 4 / 100 * 4 + 8]; /* client side: frames */
    size_t out_len = 0;
    fixture_start(&f, &framed_ops);

    /* The client's frames: payloads of 1..1000 bytes, headers included. */
    while (c_sent < TOTAL / 4) {
        size_t n = VDI_MIN(c_sent % 1000 + 1, TOTAL / 4 - c_sent);
        out[out_len++] = (uint8_t)(n >> 24);
        out[out_len++] = (uint8_t)(n >> 16);
        out[out_len++] = (uint8_t)(n >> 8);
        out[out_len++] = (uint8_t)n;
        fill(out + out_len, c_sent, n);
        out_len += n;
        c_sent += n;
    }
    size_t off_framed = 0; /* client-side frames from the display, parsed so far */
    for (unsigned spins = 0; framed < out_len || d_got < TOTAL / 4 || c_got < TOTAL / 4; spins++) {
        if (spins > 1000000)
            fail_msg("stalled: client->display %zu, display->client %zu of %u", c_got, d_got,
                     TOTAL / 4);
        if (f.tls.reading && framed < out_len) {
            size_t n = VDI_MIN(piece, out_len - framed);
            f.tls.cb(&f.tls, (ssize_t)n, out + framed, f.tls.ctx);
            framed += n;
            piece = piece % 4096 + 1;
        }
        if (d_sent < TOTAL / 4) {
            uint8_t buf[3000];
            size_t n = VDI_MIN(sizeof(buf), TOTAL / 4 - d_sent);
            fill(buf, d_sent, n);
            ssize_t w = write(f.peer, buf, n);
            if (w > 0)
                d_sent += (size_t)w;
        }
        display_drain(&f, &c_got);
        uv_run(&f.loop, UV_RUN_NOWAIT);
        /* Unframe what reached the client. */
        const uint8_t *w = f.tls.written.data;
        while (f.tls.written.len - off_framed >= 4) {
            const uint8_t *p = w + off_framed;
            size_t n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
            assert_true(n > 0 && n <= 65536);
            assert_true(f.tls.written.len - off_framed >= 4 + n); /* frames are whole */
            check(p + 4, d_got, n);
            d_got += n;
            off_framed += 4 + n;
        }
        tls_drain(&f.tls);
    }
    assert_int_equal(c_got, TOTAL / 4);
    assert_int_equal(d_got, TOTAL / 4);
    assert_true(f.frames_in > 1000 && f.frames_out > 10);
    assert_int_equal(f.ended, 0);
    fixture_finish(&f);
}

/* ---- endings ----------------------------------------------------------------------------------- */
static void test_endings(void **state)
{
    (void)state;
    struct fixture f;

    /* The display closes. */
    fixture_start(&f, &plain_ops);
    close(f.peer);
    f.peer = -1;
    for (int i = 0; i < 10 && !f.ended; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_int_equal(f.ended, 1);
    assert_int_equal(f.why, SRV_SPLICE_DISPLAY_CLOSED);
    assert_false(f.tls.reading); /* nothing more is read */
    fixture_finish(&f);

    /* The client closes. */
    fixture_start(&f, &plain_ops);
    f.tls.cb(&f.tls, UV_EOF, NULL, f.tls.ctx);
    assert_int_equal(f.ended, 1);
    assert_int_equal(f.why, SRV_SPLICE_CLIENT_CLOSED);
    fixture_finish(&f);

    /* The client breaks the framing: the hook's error ends the splice, once. */
    fixture_start(&f, &framed_ops);
    static const uint8_t bad[] = {0xff, 0xff, 0xff, 0xff};
    f.tls.cb(&f.tls, sizeof(bad), bad, f.tls.ctx);
    assert_int_equal(f.ended, 1);
    assert_int_equal(f.why, SRV_SPLICE_CLIENT_ERROR);
    f.tls.cb(&f.tls, UV_EOF, NULL, f.tls.ctx); /* a late read: no second end */
    assert_int_equal(f.ended, 1);
    fixture_finish(&f);

    /* Closed while the display has writes queued: no callback after the close. */
    fixture_start(&f, &plain_ops);
    static uint8_t chunk[CHUNK];
    for (int i = 0; i < 40 && f.tls.reading; i++)
        f.tls.cb(&f.tls, CHUNK, chunk, f.tls.ctx);
    fixture_finish(&f);
    assert_int_equal(f.ended, 0);
}

int main(void)
{
    vdi_log_set_level(VDI_LOG_LEVEL_ERR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_to_display_backpressure),
        cmocka_unit_test(test_display_to_client_backpressure),
        cmocka_unit_test(test_framing_both_ways),
        cmocka_unit_test(test_endings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
