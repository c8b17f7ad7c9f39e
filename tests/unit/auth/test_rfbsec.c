/* Unit tests for auth/rfbsec.c: the RFB/VeNCrypt security handshake, fed whole and one byte at a
 * time, with every refusal the protocol allows checked byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth/auth.h"
#include "common/vdi.h"

/* A scripted exchange: feed @in in pieces of @chunk bytes, collect everything the machine says
 * and the events it reports. */
struct run {
    vdi_buf_t out;
    enum auth_rfbsec_event events[16];
    size_t nevents;
    size_t used;
};

static void take_output(auth_rfbsec_t *s, struct run *r)
{
    size_t n;
    const uint8_t *p = auth_rfbsec_output(s, &n);
    assert_int_equal(vdi_buf_append(&r->out, p, n), 0);
    auth_rfbsec_output_consume(s, n);
}

/* Feeds until the input is used up or an event other than NEED_MORE is reported. */
static enum auth_rfbsec_event feed(auth_rfbsec_t *s, struct run *r, const void *in, size_t len,
                                   size_t chunk)
{
    const uint8_t *p = in;
    enum auth_rfbsec_event ev = AUTH_RFBSEC_NEED_MORE;
    size_t off = 0;
    while (off < len) {
        size_t n = VDI_MIN(chunk, len - off), used = 0;
        ev = auth_rfbsec_feed(s, p + off, n, &used);
        assert_true(used <= n);
        off += used;
        take_output(s, r);
        if (ev != AUTH_RFBSEC_NEED_MORE) {
            if (r->nevents < VDI_ARRAY_SIZE(r->events))
                r->events[r->nevents++] = ev;
            break;
        } else {
            assert_int_equal(used, n);
        }
    }
    r->used = off;
    return ev;
}

static const uint8_t hello38[] = "RFB 003.008\n";
static const uint8_t hello37[] = "RFB 003.007\n";

static auth_rfbsec_t *mk(bool tlsplain)
{
    auth_rfbsec_config_t cfg = {
        .allow_tlsplain = tlsplain, .max_username_len = 32, .max_password_len = 64};
    auth_rfbsec_t *s;
    assert_int_equal(auth_rfbsec_create(&cfg, &s), 0);
    return s;
}

/* Client bytes up to and including the subtype choice. */
static size_t client_pre_tls(uint8_t *b, const uint8_t *hello, uint32_t subtype)
{
    memcpy(b, hello, 12);
    b[12] = 19;
    b[13] = 0;
    b[14] = 2;
    b[15] = (uint8_t)(subtype >> 24);
    b[16] = (uint8_t)(subtype >> 16);
    b[17] = (uint8_t)(subtype >> 8);
    b[18] = (uint8_t)subtype;
    return 19;
}

static size_t plain_creds(uint8_t *b, const char *user, const char *pass)
{
    uint32_t ul = (uint32_t)strlen(user), pl = (uint32_t)strlen(pass);
    uint8_t hdr[8] = {(uint8_t)(ul >> 24), (uint8_t)(ul >> 16), (uint8_t)(ul >> 8), (uint8_t)ul,
                      (uint8_t)(pl >> 24), (uint8_t)(pl >> 16), (uint8_t)(pl >> 8), (uint8_t)pl};
    memcpy(b, hdr, 8);
    memcpy(b + 8, user, ul);
    memcpy(b + 8 + ul, pass, pl);
    return 8 + ul + pl;
}

static void full_exchange(size_t chunk, const uint8_t *hello, bool tlsplain, uint32_t subtype)
{
    auth_rfbsec_t *s = mk(tlsplain);
    struct run r = {0};
    take_output(s, &r);
    assert_int_equal(r.out.len, 12);
    assert_memory_equal(r.out.data, "RFB 003.008\n", 12);
    vdi_buf_reset(&r.out);

    uint8_t in[64];
    size_t n = client_pre_tls(in, hello, subtype);
    /* Two extra bytes after the subtype stand for the start of the ClientHello. */
    in[n++] = 0x16;
    in[n++] = 0x03;
    assert_int_equal(feed(s, &r, in, n, chunk), AUTH_RFBSEC_START_TLS);
    assert_int_equal(r.used, 19);
    assert_int_equal(auth_rfbsec_subtype(s), subtype);
    assert_int_equal(auth_rfbsec_minor(s), hello[10] == '8' ? 8 : 7);
    /* types: 1 x VeNCrypt; VeNCrypt 0.2; version ok; subtypes; accepted */
    uint8_t want[32] = {1, 19, 0, 2, 0, 1, 0, 0, 1, 6};
    size_t wn = 10;
    if (tlsplain) {
        want[5] = 2;
        want[wn++] = 0, want[wn++] = 0, want[wn++] = 1, want[wn++] = 3;
    }
    want[wn++] = 1;
    assert_int_equal(r.out.len, wn);
    assert_memory_equal(r.out.data, want, wn);
    vdi_buf_reset(&r.out);

    /* Inside TLS: Plain credentials, then ClientInit pipelined behind them. */
    n = plain_creds(in, "alice", "s3cret!");
    in[n++] = 1; /* ClientInit shared-flag */
    assert_int_equal(feed(s, &r, in, n, chunk), AUTH_RFBSEC_CREDENTIALS);
    assert_int_equal(r.used, n - 1);
    const char *u, *p;
    auth_rfbsec_credentials(s, &u, &p);
    assert_string_equal(u, "alice");
    assert_string_equal(p, "s3cret!");
    size_t used;
    /* While the check runs, nothing more is consumed. */
    assert_int_equal(auth_rfbsec_feed(s, in + n - 1, 1, &used), AUTH_RFBSEC_CREDENTIALS);
    assert_int_equal(used, 0);
    assert_int_equal(auth_rfbsec_finish(s, true, NULL), 0);
    take_output(s, &r);
    assert_int_equal(r.out.len, 4);
    assert_memory_equal(r.out.data, "\0\0\0\0", 4);
    assert_int_equal(auth_rfbsec_feed(s, in + n - 1, 1, &used), AUTH_RFBSEC_DONE);
    assert_int_equal(used, 0);
    assert_int_equal(auth_rfbsec_finish(s, true, NULL), VDI_ESTATE);
    vdi_buf_free(&r.out);
    auth_rfbsec_destroy(s);
}

static void test_whole_38(void **state)
{
    (void)state;
    full_exchange(SIZE_MAX, hello38, false, AUTH_VENCRYPT_X509PLAIN);
}

static void test_one_byte_38(void **state)
{
    (void)state;
    full_exchange(1, hello38, false, AUTH_VENCRYPT_X509PLAIN);
}

static void test_one_byte_37(void **state)
{
    (void)state;
    full_exchange(1, hello37, false, AUTH_VENCRYPT_X509PLAIN);
}

static void test_odd_chunks_tlsplain(void **state)
{
    (void)state;
    full_exchange(3, hello38, true, AUTH_VENCRYPT_TLSPLAIN);
    full_exchange(7, hello38, true, AUTH_VENCRYPT_X509PLAIN);
}

static void test_tlsplain_only(void **state)
{
    (void)state;
    auth_rfbsec_config_t cfg = {.tlsplain_only = true};
    auth_rfbsec_t *s;
    assert_int_equal(auth_rfbsec_create(&cfg, &s), 0);
    struct run r = {0};
    take_output(s, &r);
    uint8_t in[19];
    client_pre_tls(in, hello38, AUTH_VENCRYPT_X509PLAIN);
    assert_int_equal(feed(s, &r, in, 19, 1), AUTH_RFBSEC_FAILED);
    /* version, types, VeNCrypt version + ok, one subtype (259), then the refusal (0) */
    assert_int_equal(r.out.len, 12 + 2 + 2 + 1 + 1 + 4 + 1);
    assert_memory_equal(r.out.data + 18, "\0\0\1\3\0", 5);
    vdi_buf_free(&r.out);
    auth_rfbsec_destroy(s);
    assert_int_equal(auth_rfbsec_create(&cfg, &s), 0);
    r = (struct run){0};
    client_pre_tls(in, hello38, AUTH_VENCRYPT_TLSPLAIN);
    assert_int_equal(feed(s, &r, in, 19, 1), AUTH_RFBSEC_START_TLS);
    vdi_buf_free(&r.out);
    auth_rfbsec_destroy(s);
}

static void test_version_above_38_is_38(void **state)
{
    (void)state;
    auth_rfbsec_t *s = mk(false);
    struct run r = {0};
    assert_int_equal(feed(s, &r, "RFB 003.889\n", 12, 1), AUTH_RFBSEC_NEED_MORE);
    assert_int_equal(auth_rfbsec_minor(s), 8);
    vdi_buf_free(&r.out);
    auth_rfbsec_destroy(s);
}

/* Runs a hostile exchange to its failure; returns the refusal bytes after @skip of output. */
static void expect_refusal(bool tlsplain, const void *in, size_t len, size_t skip, const void *want,
                           size_t want_len)
{
    for (size_t chunk = 1; chunk <= 64; chunk += 63) {
        auth_rfbsec_t *s = mk(tlsplain);
        struct run r = {0};
        take_output(s, &r); /* the server's version */
        enum auth_rfbsec_event ev = feed(s, &r, in, len, chunk);
        if (ev == AUTH_RFBSEC_START_TLS)
            fail_msg("unexpected TLS start");
        assert_int_equal(ev, AUTH_RFBSEC_FAILED);
        assert_true(*auth_rfbsec_error(s) != '\0');
        assert_int_equal(r.out.len, 12 + skip + want_len);
        assert_memory_equal(r.out.data + 12 + skip, want, want_len);
        size_t used;
        assert_int_equal(auth_rfbsec_feed(s, (const uint8_t *)"x", 1, &used), AUTH_RFBSEC_FAILED);
        assert_int_equal(used, 0);
        vdi_buf_free(&r.out);
        auth_rfbsec_destroy(s);
    }
}

static void test_bad_version_string(void **state)
{
    (void)state;
    const char want[] = "\0\0\0\0\x1b"
                        "bad protocol version string";
    expect_refusal(false, "GET / HTTP/1.1\r\n", 16, 0, want, sizeof(want) - 1);
    expect_refusal(false, "RFB 003.00x\n", 12, 0, want, sizeof(want) - 1);
}

static void test_rfb33_refused(void **state)
{
    (void)state;
    const char reason[] = "RFB 3.3 is not supported: use a client with VeNCrypt (RFB 3.7 or 3.8)";
    uint8_t want[8 + sizeof(reason)] = {0, 0, 0, 0, 0, 0, 0, (uint8_t)(sizeof(reason) - 1)};
    memcpy(want + 8, reason, sizeof(reason) - 1);
    expect_refusal(false, "RFB 003.003\n", 12, 0, want, 8 + sizeof(reason) - 1);
}

static void test_other_sectypes_refused(void **state)
{
    (void)state;
    const char reason[] = "security type not offered: this server requires VeNCrypt";
    uint8_t want[8 + sizeof(reason)] = {0, 0, 0, 1, 0, 0, 0, (uint8_t)(sizeof(reason) - 1)};
    memcpy(want + 8, reason, sizeof(reason) - 1);
    for (uint8_t t = 0; t < 20; t++) {
        if (t == 19)
            continue;
        uint8_t in[13];
        memcpy(in, hello38, 12);
        in[12] = t; /* 1 = None, 2 = VNC auth: never accepted */
        expect_refusal(false, in, 13, 2, want, 8 + sizeof(reason) - 1);
        memcpy(in, hello37, 12);
        expect_refusal(false, in, 13, 2, "\0\0\0\1", 4); /* 3.7: no reason string */
    }
}

static void test_vencrypt_version_refused(void **state)
{
    (void)state;
    uint8_t in[15];
    memcpy(in, hello38, 12);
    in[12] = 19, in[13] = 0, in[14] = 1;
    expect_refusal(false, in, 15, 4, "\xff", 1);
}

static void test_subtypes_not_offered(void **state)
{
    (void)state;
    uint32_t bad[] = {0, 1, 2, 256, 257, 258, AUTH_VENCRYPT_TLSPLAIN, 260, 261, 263, 0xffffffff};
    for (size_t i = 0; i < VDI_ARRAY_SIZE(bad); i++) {
        uint8_t in[19];
        client_pre_tls(in, hello38, bad[i]);
        expect_refusal(false, in, 19, 10, "\0", 1);
    }
}

/* Inside TLS: a Plain header is refused with a SecurityResult and no allocation of its size. */
static void plain_refusal(const uint8_t hdr[8], const char *reason)
{
    auth_rfbsec_t *s = mk(false);
    struct run r = {0};
    uint8_t in[19];
    client_pre_tls(in, hello38, AUTH_VENCRYPT_X509PLAIN);
    assert_int_equal(feed(s, &r, in, 19, 1), AUTH_RFBSEC_START_TLS);
    vdi_buf_reset(&r.out);
    assert_int_equal(feed(s, &r, hdr, 8, 1), AUTH_RFBSEC_FAILED);
    size_t rl = strlen(reason);
    assert_int_equal(r.out.len, 8 + rl);
    assert_memory_equal(r.out.data, "\0\0\0\1", 4);
    assert_int_equal(r.out.data[7], rl);
    assert_memory_equal(r.out.data + 8, reason, rl);
    vdi_buf_free(&r.out);
    auth_rfbsec_destroy(s);
}

static void test_plain_lengths(void **state)
{
    (void)state;
    plain_refusal((const uint8_t[]){0, 0, 0, 0, 0, 0, 0, 4}, "empty username");
    plain_refusal((const uint8_t[]){0, 0, 0, 4, 0, 0, 0, 0}, "empty password");
    plain_refusal((const uint8_t[]){0, 0, 0, 33, 0, 0, 0, 4}, "username too long");
    plain_refusal((const uint8_t[]){0, 0, 0, 4, 0, 0, 0, 65}, "password too long");
    plain_refusal((const uint8_t[]){0xff, 0xff, 0xff, 0xff, 0, 0, 0, 4}, "username too long");
    plain_refusal((const uint8_t[]){0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff}, "password too long");
}

static void test_plain_bad_bytes(void **state)
{
    (void)state;
    static const char users[][7] = {"ali\nce", {'a', '\0', 'b', 'c', 'd', 'e'}};
    for (size_t i = 0; i < 2; i++) {
        auth_rfbsec_t *s = mk(false);
        struct run r = {0};
        uint8_t in[64];
        client_pre_tls(in, hello37, AUTH_VENCRYPT_X509PLAIN);
        assert_int_equal(feed(s, &r, in, 19, 1), AUTH_RFBSEC_START_TLS);
        vdi_buf_reset(&r.out);
        uint8_t body[] = {0, 0, 0, 6, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 'p', 'w'};
        memcpy(body + 8, users[i], 6);
        assert_int_equal(feed(s, &r, body, sizeof(body), 1), AUTH_RFBSEC_FAILED);
        assert_int_equal(r.out.len, 4); /* 3.7: SecurityResult without a reason */
        vdi_buf_free(&r.out);
        auth_rfbsec_destroy(s);
    }
}

static void test_failed_result_reason(void **state)
{
    (void)state;
    for (int minor = 7; minor <= 8; minor++) {
        auth_rfbsec_t *s = mk(false);
        struct run r = {0};
        uint8_t in[64];
        client_pre_tls(in, minor == 8 ? hello38 : hello37, AUTH_VENCRYPT_X509PLAIN);
        assert_int_equal(feed(s, &r, in, 19, 1), AUTH_RFBSEC_START_TLS);
        vdi_buf_reset(&r.out);
        size_t n = plain_creds(in, "bob", "wrong");
        assert_int_equal(feed(s, &r, in, n, 1), AUTH_RFBSEC_CREDENTIALS);
        assert_int_equal(auth_rfbsec_finish(s, false, "account expired"), 0);
        take_output(s, &r);
        if (minor == 8) {
            assert_int_equal(r.out.len, 8 + 15);
            assert_memory_equal(r.out.data,
                                "\0\0\0\1\0\0\0\x0f"
                                "account expired",
                                23);
        } else {
            assert_int_equal(r.out.len, 4);
            assert_memory_equal(r.out.data, "\0\0\0\1", 4);
        }
        size_t used;
        assert_int_equal(auth_rfbsec_feed(s, in, 1, &used), AUTH_RFBSEC_FAILED);
        vdi_buf_free(&r.out);
        auth_rfbsec_destroy(s);
    }
}

/* Out of memory at each try-allocation: create fails cleanly or the handshake still works. */
static void test_oom(void **state)
{
    (void)state;
    for (unsigned n = 1; n < 8; n++) {
        auth_rfbsec_config_t cfg = {0};
        auth_rfbsec_t *s = NULL;
        vdi_alloc_fail_at(n);
        int err = auth_rfbsec_create(&cfg, &s);
        if (err < 0) {
            assert_int_equal(err, -ENOMEM);
            continue;
        }
        uint8_t in[64];
        client_pre_tls(in, hello38, AUTH_VENCRYPT_X509PLAIN);
        size_t used;
        enum auth_rfbsec_event ev = auth_rfbsec_feed(s, in, 19, &used);
        if (ev == AUTH_RFBSEC_START_TLS) {
            size_t cn = plain_creds(in, "u", "p");
            ev = auth_rfbsec_feed(s, in, cn, &used);
            assert_true(ev == AUTH_RFBSEC_CREDENTIALS || ev == AUTH_RFBSEC_FAILED);
        }
        vdi_alloc_fail_at(0);
        auth_rfbsec_destroy(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_38),
        cmocka_unit_test(test_one_byte_38),
        cmocka_unit_test(test_one_byte_37),
        cmocka_unit_test(test_odd_chunks_tlsplain),
        cmocka_unit_test(test_tlsplain_only),
        cmocka_unit_test(test_version_above_38_is_38),
        cmocka_unit_test(test_bad_version_string),
        cmocka_unit_test(test_rfb33_refused),
        cmocka_unit_test(test_other_sectypes_refused),
        cmocka_unit_test(test_vencrypt_version_refused),
        cmocka_unit_test(test_subtypes_not_offered),
        cmocka_unit_test(test_plain_lengths),
        cmocka_unit_test(test_plain_bad_bytes),
        cmocka_unit_test(test_failed_result_reason),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
