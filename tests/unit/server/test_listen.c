/* Unit tests for server/listen.c: configured listen addresses, IPv4, IPv6 and localhost (which
 * binds the loopback address), and bad ones. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <string.h>

#include "common/vdi.h"
#include "server/internal.h"

static void test_ipv4(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    char host[64];
    assert_int_equal(srv__listen_addr("listen", "127.0.0.1:5900", &ss, host, sizeof(host)), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 5900);
}

static void test_ipv6(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    char host[64];
    assert_int_equal(srv__listen_addr("web_listen", "[::1]:8443", &ss, host, sizeof(host)), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 8443);
}

static void test_localhost(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    char host[64];
    assert_int_equal(srv__listen_addr("listen", "localhost:0", &ss, host, sizeof(host)), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(ss.ss_family, AF_INET);
    /* It binds, and on the loopback address. */
    uv_loop_t loop;
    uv_tcp_t tcp;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_tcp_init(&loop, &tcp), 0);
    assert_int_equal(uv_tcp_bind(&tcp, (struct sockaddr *)&ss, 0), 0);
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    assert_int_equal(uv_tcp_getsockname(&tcp, (struct sockaddr *)&bound, &len), 0);
    assert_int_equal(bound.ss_family, AF_INET);
    assert_int_equal(((struct sockaddr_in *)&bound)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    assert_true(srv__bound_port(&tcp) > 0);
    uv_close((uv_handle_t *)&tcp, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_bad(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    char host[64];
    assert_int_equal(srv__listen_addr("listen", "desktop.example:5900", &ss, host, sizeof(host)),
                     VDI_ECONFIG);
    assert_int_equal(srv__listen_addr("listen", "5900", &ss, host, sizeof(host)), VDI_ECONFIG);
    assert_int_equal(srv__listen_addr("listen", "[:5900", &ss, host, sizeof(host)), VDI_ECONFIG);
    assert_int_equal(srv__listen_addr("listen", "::1:5900", &ss, host, sizeof(host)), VDI_ECONFIG);
    assert_int_equal(srv__listen_addr("listen", "127.0.0.1:65536", &ss, host, sizeof(host)),
                     VDI_ECONFIG);
}

static void test_bound_port(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_tcp_t tcp;
    struct sockaddr_in sa;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_tcp_init(&loop, &tcp), 0);
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    assert_int_equal(uv_tcp_bind(&tcp, (struct sockaddr *)&sa, 0), 0);
    int port = srv__bound_port(&tcp);
    assert_true(port > 0 && port < 65536);
    uv_close((uv_handle_t *)&tcp, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    vdi_log_set_level(VDI_LOG_LEVEL_ERR - 1); /* the refusals above are expected */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4),       cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_localhost),  cmocka_unit_test(test_bad),
        cmocka_unit_test(test_bound_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
