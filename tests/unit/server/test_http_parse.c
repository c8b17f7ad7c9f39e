/* Unit tests for server/http-parse.c: the portal's request parser (http-parser with our limits
 * and header rules): fields, pipelining, pieces of any size, upgrade leftovers, limits, duplicate
 * and malformed headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "server/internal-web.h"

static int feed_str(srv_httpreq_t *r, const char *s, size_t *used)
{
    return srv__httpreq_feed(r, (const uint8_t *)s, strlen(s), used);
}

static void test_fields(void **state)
{
    (void)state;
    srv_httpreq_t *r = srv__httpreq_create();
    size_t used;
    const char *req = "POST /api/login?x=1 HTTP/1.1\r\nHost: vdi.example:8443\r\n"
                      "Origin: https://vdi.example:8443\r\nCookie: a=1\r\ncookie: vdi_session=T\r\n"
                      "Content-Type: application/json\r\nX-CSRF-Token: c\r\nContent-Length: 2\r\n"
                      "\r\n{}";
    assert_int_equal(feed_str(r, req, &used), 1);
    assert_int_equal(used, strlen(req));
    const srv_httpreq_info_t *in = srv__httpreq_info(r);
    assert_int_equal(in->method, SRV_HTTP_POST);
    assert_string_equal(in->path, "/api/login");
    assert_string_equal(in->query, "x=1");
    assert_string_equal(in->host, "vdi.example:8443");
    assert_string_equal(in->origin, "https://vdi.example:8443");
    assert_string_equal(in->cookie, "a=1; vdi_session=T");
    assert_string_equal(in->csrf, "c");
    assert_int_equal(in->body_len, 2);
    assert_memory_equal(in->body, "{}", 2);
    assert_true(in->keep_alive);
    assert_false(in->is_upgrade);
    srv__httpreq_destroy(r);
}

static void test_pipelined_in_pieces(void **state)
{
    (void)state;
    const char *two = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.0\r\nHost: x\r\n\r\n";
    for (size_t piece = 1; piece < 8; piece++) {
        srv_httpreq_t *r = srv__httpreq_create();
        size_t off = 0, n = strlen(two);
        int got = 0;
        while (off < n) {
            size_t len = n - off < piece ? n - off : piece, used = 0;
            int rc = srv__httpreq_feed(r, (const uint8_t *)two + off, len, &used);
            assert_true(rc == 0 || rc == 1);
            off += used;
            if (rc == 1) {
                const srv_httpreq_info_t *in = srv__httpreq_info(r);
                assert_string_equal(in->path, got == 0 ? "/a" : "/b");
                assert_int_equal(in->keep_alive, got == 0); /* HTTP/1.0: close */
                got++;
                srv__httpreq_reset(r);
            }
        }
        assert_int_equal(got, 2);
        srv__httpreq_destroy(r);
    }
}

static void test_upgrade_leaves_the_rest(void **state)
{
    (void)state;
    srv_httpreq_t *r = srv__httpreq_create();
    const char *req = "GET /ws?desktop=1&token=t HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n"
                      "\r\n\x82\x80"
                      "abcd";
    size_t used;
    assert_int_equal(feed_str(r, req, &used), 1);
    assert_int_equal(strlen(req) - used, 6); /* the WebSocket frame is not HTTP */
    const srv_httpreq_info_t *in = srv__httpreq_info(r);
    assert_true(in->is_upgrade);
    assert_string_equal(in->upgrade, "websocket");
    assert_string_equal(in->ws_version, "13");
    assert_string_equal(in->query, "desktop=1&token=t");
    srv__httpreq_destroy(r);
}

static void expect_status(const char *req, int status)
{
    srv_httpreq_t *r = srv__httpreq_create();
    size_t used;
    assert_int_equal(srv__httpreq_status(r), 0);
    assert_int_equal(feed_str(r, req, &used), VDI_EPROTOCOL);
    assert_int_equal(srv__httpreq_status(r), status);
    /* The error sticks until reset. */
    assert_int_equal(feed_str(r, "GET / HTTP/1.1\r\n\r\n", &used), VDI_EPROTOCOL);
    assert_int_equal(srv__httpreq_status(r), status);
    srv__httpreq_reset(r);
    assert_int_equal(srv__httpreq_status(r), 0);
    assert_int_equal(feed_str(r, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &used), 1);
    srv__httpreq_destroy(r);
}

static void test_errors(void **state)
{
    (void)state;
    char big[SRV_HTTP_MAX_HEAD + 100];
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nOrigin: a\x01z\r\n\r\n", 400);
    expect_status("GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    expect_status("\x16\x03\x01 hello\r\n\r\n", 400);
    expect_status("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505);
    expect_status("POST / HTTP/1.1\r\nContent-Length: 16385\r\n\r\n", 413);
    snprintf(big, sizeof(big), "GET /%0*d HTTP/1.1\r\n\r\n", SRV_HTTP_MAX_URL, 0);
    expect_status(big, 414);
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX-A: %0*d\r\n\r\n", SRV_HTTP_MAX_HEAD, 0);
    expect_status(big, 431);
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nCookie: %0*d\r\n\r\n", 4096, 0);
    expect_status(big, 431);
}

static void test_chunked_body_limit(void **state)
{
    (void)state;
    static char chunk[5 + 1024 + 3];
    srv_httpreq_t *r = srv__httpreq_create();
    size_t used;
    memcpy(chunk, "400\r\n", 5); /* 1 KiB chunks */
    memset(chunk + 5, 'a', 1024);
    memcpy(chunk + 5 + 1024, "\r\n", 3);
    assert_int_equal(feed_str(r, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &used),
                     0);
    int rc = 0, i;
    for (i = 0; i < 40 && rc == 0; i++)
        rc = feed_str(r, chunk, &used);
    assert_int_equal(rc, VDI_EPROTOCOL);
    assert_int_equal(srv__httpreq_status(r), 413);
    assert_int_equal(i, SRV_HTTP_MAX_BODY / 1024 + 1);
    srv__httpreq_destroy(r);
}

static void test_cookie_and_query(void **state)
{
    (void)state;
    char v[8];
    assert_true(srv__http_cookie("a=1; vdi_session=tok; b=2", "vdi_session", v, sizeof(v)));
    assert_string_equal(v, "tok");
    assert_true(srv__http_cookie("vdi_session=x;vdi_session=y", "vdi_session", v, sizeof(v)));
    assert_string_equal(v, "x");
    assert_false(srv__http_cookie("xvdi_session=tok", "vdi_session", v, sizeof(v)));
    assert_false(srv__http_cookie("vdi_session=", "vdi_session", v, sizeof(v)));
    assert_false(srv__http_cookie("vdi_session=12345678", "vdi_session", v, sizeof(v)));
    assert_string_equal(v, "");
    assert_true(srv__http_query("desktop=12&token=abc", "token", v, sizeof(v)));
    assert_string_equal(v, "abc");
    assert_true(srv__http_query("xtoken=1&token=", "token", v, sizeof(v)));
    assert_string_equal(v, "");
    assert_false(srv__http_query("desktop=1", "token", v, sizeof(v)));
    assert_false(srv__http_query("token=123456789", "token", v, sizeof(v)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_pipelined_in_pieces),
        cmocka_unit_test(test_upgrade_leaves_the_rest),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_chunked_body_limit),
        cmocka_unit_test(test_cookie_and_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
