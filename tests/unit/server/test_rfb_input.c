/* Unit tests for server/rfb-input.c: which of a viewer's RFB messages count as a person's input
 * for idle_timeout. Update requests, encodings, pixel formats, fences, continuous updates and
 * desktop-size requests do not; keys, QEMU extended keys, cut text (plain and Extended
 * Clipboard) and pointer events that move or click do; a pointer event repeating the last one
 * does not. Messages cut anywhere across chunks, the handshake skipped, and a type that cannot be
 * framed makes everything count from then on. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "common/vdi.h"
#include "server/internal.h"

static const uint8_t update_req[] = {3, 1, 0, 0, 0, 0, 4, 0, 3, 0};
static const uint8_t encodings[] = {2, 0, 0, 2, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0x21};
static const uint8_t pixfmt[20] = {0};
static const uint8_t fence[] = {248, 0, 0, 0, 0, 0, 0, 1, 3, 'a', 'b', 'c'};
static const uint8_t cont[] = {150, 1, 0, 0, 0, 0, 4, 0, 3, 0};
static const uint8_t desksize[] = {251, 0, 4, 0, 3, 0, 1, 0, /* one screen: */
                                   0,   0, 0, 1, 0, 0, 0, 0, 4, 0, 3, 0, 0, 0, 0, 0};
static const uint8_t key[] = {4, 1, 0, 0, 0, 0, 0, 'a'};
static const uint8_t qkey[] = {255, 0, 0, 1, 0, 0, 0, 'a', 0, 0, 0, 30};
static const uint8_t cut[] = {6, 0, 0, 0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
static const uint8_t xcut[] = {6, 0, 0, 0, 0xff, 0xff, 0xff, 0xfc, 0, 0, 0, 1}; /* -4 */
static const uint8_t ptr_a[] = {5, 0, 0, 10, 0, 20};
static const uint8_t ptr_b[] = {5, 1, 0, 10, 0, 20}; /* a click where it was */
static const uint8_t audio[] = {255, 1, 0, 0};

static bool feed(srv_rfbin_t *f, const uint8_t *m, size_t n)
{
    return srv__rfbin_feed(f, m, n);
}

static void test_what_counts(void **state)
{
    (void)state;
    srv_rfbin_t f;
    srv__rfbin_init(&f, 0);
    assert_false(feed(&f, update_req, sizeof(update_req)));
    assert_false(feed(&f, encodings, sizeof(encodings)));
    assert_false(feed(&f, pixfmt, sizeof(pixfmt)));
    assert_false(feed(&f, fence, sizeof(fence)));
    assert_false(feed(&f, cont, sizeof(cont)));
    assert_false(feed(&f, desksize, sizeof(desksize)));
    assert_false(feed(&f, audio, sizeof(audio)));
    assert_true(feed(&f, key, sizeof(key)));
    assert_true(feed(&f, qkey, sizeof(qkey)));
    assert_true(feed(&f, cut, sizeof(cut)));
    assert_true(feed(&f, xcut, sizeof(xcut))); /* 8 + 4 bytes of Extended Clipboard */
    assert_false(feed(&f, update_req, sizeof(update_req)));
    assert_true(feed(&f, ptr_a, sizeof(ptr_a)));
    assert_false(feed(&f, ptr_a, sizeof(ptr_a))); /* the same again: nobody moved */
    assert_true(feed(&f, ptr_b, sizeof(ptr_b)));
    assert_false(f.lost);
}

/* The same stream cut at every byte: the same verdicts, message by message. */
static void test_any_cut(void **state)
{
    (void)state;
    uint8_t s[256];
    size_t n = 0;
    const uint8_t *msgs[] = {update_req, encodings, cut, update_req, key, fence, ptr_a, desksize};
    const size_t lens[] = {sizeof(update_req), sizeof(encodings), sizeof(cut),   sizeof(update_req),
                           sizeof(key),        sizeof(fence),     sizeof(ptr_a), sizeof(desksize)};
    for (size_t i = 0; i < VDI_ARRAY_SIZE(msgs); i++) {
        memcpy(s + n, msgs[i], lens[i]);
        n += lens[i];
    }
    for (size_t cut_at = 1; cut_at < n; cut_at++) {
        srv_rfbin_t f;
        srv__rfbin_init(&f, 0);
        bool a = srv__rfbin_feed(&f, s, cut_at), b = srv__rfbin_feed(&f, s + cut_at, n - cut_at);
        assert_true(a || b);
        assert_false(f.lost);
        assert_int_equal(f.have, 0);
        assert_int_equal(f.skip, 0);
        /* Nothing but update requests after the last input: no input. */
        assert_false(srv__rfbin_feed(&f, update_req, sizeof(update_req)));
    }
    /* Byte by byte: the input is seen at the last byte of the key event. */
    srv_rfbin_t f;
    srv__rfbin_init(&f, 0);
    for (size_t i = 0; i < sizeof(key); i++)
        assert_int_equal(srv__rfbin_feed(&f, key + i, 1), i == sizeof(key) - 1);
}

static void test_handshake_and_lost(void **state)
{
    (void)state;
    srv_rfbin_t f;
    /* The browser console: version, security type, ClientInit, then messages. */
    srv__rfbin_init(&f, 14);
    static const uint8_t hs[] = "RFB 003.008\n\x01\x01";
    assert_false(srv__rfbin_feed(&f, hs, 14));
    assert_false(srv__rfbin_feed(&f, update_req, sizeof(update_req)));
    assert_true(srv__rfbin_feed(&f, key, sizeof(key)));
    /* A type nobody frames: from then on everything counts. */
    static const uint8_t odd[] = {77, 1, 2, 3};
    assert_true(srv__rfbin_feed(&f, odd, sizeof(odd)));
    assert_true(f.lost);
    assert_true(srv__rfbin_feed(&f, update_req, sizeof(update_req)));
    assert_false(srv__rfbin_feed(&f, update_req, 0));
    /* An unknown QEMU subtype, and an unknown audio operation, too. */
    srv__rfbin_init(&f, 0);
    static const uint8_t q9[] = {255, 9, 0, 0};
    assert_true(srv__rfbin_feed(&f, q9, sizeof(q9)));
    srv__rfbin_init(&f, 0);
    static const uint8_t a9[] = {255, 1, 0, 9};
    assert_true(srv__rfbin_feed(&f, a9, sizeof(a9)));
    /* A cut text announcing 4 GiB is skipped as it streams, whatever its length. */
    srv__rfbin_init(&f, 0);
    static const uint8_t big[] = {6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff};
    assert_true(srv__rfbin_feed(&f, big, sizeof(big)));
    uint8_t junk[4096];
    memset(junk, 4, sizeof(junk)); /* looks like key events, but is the text */
    assert_false(srv__rfbin_feed(&f, junk, sizeof(junk)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_what_counts),
        cmocka_unit_test(test_any_cut),
        cmocka_unit_test(test_handshake_and_lost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
