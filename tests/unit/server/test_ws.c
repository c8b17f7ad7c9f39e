/* Unit tests for server/ws.c: the portal's WebSocket framing (wslay): the accept key (RFC 6455's
 * example), masked messages in pieces, fragments, ping/pong, an unmasked client frame, an
 * oversized message, the close handshake, our own messages and close frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "server/internal-web.h"

struct sink {
    uint8_t out[4096];
    size_t out_len;
    char msgs[8][64];
    int n_msgs;
    size_t big;
};

static void on_msg(void *ctx, const uint8_t *d, size_t n)
{
    struct sink *s = ctx;
    if (n >= sizeof(s->msgs[0])) {
        s->big = n;
        return;
    }
    memcpy(s->msgs[s->n_msgs], d, n);
    s->msgs[s->n_msgs++][n] = 0;
}

static int on_out(void *ctx, const uint8_t *d, size_t n)
{
    struct sink *s = ctx;
    if (s->out_len + n > sizeof(s->out))
        return -ENOBUFS;
    memcpy(s->out + s->out_len, d, n);
    s->out_len += n;
    return 0;
}

static const srv_ws_ops_t ops = {.message = on_msg, .output = on_out};

/* A client frame: FIN @fin, opcode @op, masked with "abcd" unless @unmasked. */
static size_t frame(uint8_t *buf, bool fin, int op, const char *payload, size_t n, bool unmasked)
{
    static const uint8_t m[4] = {'a', 'b', 'c', 'd'};
    size_t o = 0;
    buf[o++] = (uint8_t)((fin ? 0x80 : 0) | op);
    if (n < 126) {
        buf[o++] = (uint8_t)((unmasked ? 0 : 0x80) | n);
    } else {
        buf[o++] = (uint8_t)((unmasked ? 0 : 0x80) | 127);
        for (int i = 7; i >= 0; i--)
            buf[o++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    if (!unmasked) {
        memcpy(buf + o, m, 4);
        o += 4;
    }
    for (size_t i = 0; i < n; i++)
        buf[o + i] = (uint8_t)(payload[i] ^ (unmasked ? 0 : m[i % 4]));
    return o + n;
}

static void test_accept_key(void **state)
{
    (void)state;
    char out[29];
    assert_int_equal(srv__ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="); /* RFC 6455 §1.3 */
    assert_int_equal(srv__ws_accept_key("short", out), -EINVAL);
    assert_int_equal(srv__ws_accept_key("dGhlIHNhbXBsZSBub25jZQ!=", out), -EINVAL);
}

static void test_messages_in_pieces(void **state)
{
    (void)state;
    struct sink s = {0};
    srv_ws_t *w;
    uint8_t buf[256];
    size_t n = frame(buf, true, 2, "RFB 003.008\n", 12, false);
    n += frame(buf + n, false, 2, "frag", 4, false);
    n += frame(buf + n, true, 9, "pi", 2, false); /* a ping between fragments */
    n += frame(buf + n, true, 0, "ment", 4, false);
    assert_int_equal(srv__ws_create(&ops, &s, &w), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(srv__ws_feed(w, buf + i, 1), 0);
    assert_int_equal(s.n_msgs, 2);
    assert_string_equal(s.msgs[0], "RFB 003.008\n");
    assert_string_equal(s.msgs[1], "fragment");
    /* The pong, unmasked, with the ping's payload. */
    assert_int_equal(s.out_len, 4);
    assert_memory_equal(s.out, "\x8a\x02pi", 4);
    /* Our message: one unmasked binary frame. */
    s.out_len = 0;
    assert_int_equal(srv__ws_send(w, (const uint8_t *)"hello", 5), 0);
    assert_memory_equal(s.out, "\x82\x05hello", 7);
    srv__ws_destroy(w);
}

static void test_close_handshake(void **state)
{
    (void)state;
    struct sink s = {0};
    srv_ws_t *w;
    uint8_t buf[64];
    size_t n = frame(buf, true, 8,
                     "\x03\xe8"
                     "bye",
                     5, false);
    assert_int_equal(srv__ws_create(&ops, &s, &w), 0);
    assert_int_equal(srv__ws_feed(w, buf, n), 1);
    assert_int_equal(srv__ws_peer_close_code(w), 1000);
    assert_true(s.out_len >= 4 && s.out[0] == 0x88); /* our close reply */
    srv__ws_destroy(w);

    /* Our own close: code and reason on the wire. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(srv__ws_create(&ops, &s, &w), 0);
    assert_int_equal(srv__ws_close(w, SRV_WS_CLOSE_TOKEN, "expired"), 0);
    assert_int_equal(s.out_len, 11);
    assert_memory_equal(s.out,
                        "\x88\x09\x11\x31"
                        "expired",
                        11);
    assert_true(srv__ws_send(w, (const uint8_t *)"x", 1) < 0); /* nothing after close */
    srv__ws_destroy(w);
}

static void test_protocol_errors(void **state)
{
    (void)state;
    struct sink s = {0};
    srv_ws_t *w;
    uint8_t buf[64];
    /* RFC 6455 §5.1: a server must close on an unmasked client frame. */
    size_t n = frame(buf, true, 2, "hi", 2, true);
    assert_int_equal(srv__ws_create(&ops, &s, &w), 0);
    assert_int_equal(srv__ws_feed(w, buf, n), 1);
    assert_int_equal(s.n_msgs, 0);
    assert_true(s.out_len >= 4 && s.out[0] == 0x88 && s.out[2] == 0x03 &&
                s.out[3] == 0xea); /* 1002 */
    srv__ws_destroy(w);

    /* A message announced over the limit: 1009, never delivered. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(srv__ws_create(&ops, &s, &w), 0);
    uint8_t hdr[14] = {0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0x20, 0, 0, 'a', 'b', 'c', 'd'};
    uint8_t payload[100] = {0};
    assert_int_equal(srv__ws_feed(w, hdr, sizeof(hdr)), 0);
    assert_int_equal(srv__ws_feed(w, payload, sizeof(payload)),
                     1); /* wslay checks at the payload */
    assert_int_equal(s.big, 0);
    assert_true(s.out_len >= 4 && s.out[0] == 0x88 && s.out[2] == 0x03 &&
                s.out[3] == 0xf1); /* 1009 */
    srv__ws_destroy(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_messages_in_pieces),
        cmocka_unit_test(test_close_handshake),
        cmocka_unit_test(test_protocol_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
