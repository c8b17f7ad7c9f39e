/* Unit tests for common/hostport.c: listen addresses as the config check and the listeners read
 * them: IPv4, bracketed IPv6, localhost, the port's range, and malformed input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "common/vdi.h"

static void test_ipv4(void **state)
{
    (void)state;
    char host[64];
    uint16_t port = 0;
    struct sockaddr_storage ss;
    assert_int_equal(vdi_hostport_parse("192.0.2.7:5900", host, sizeof(host), &port), 0);
    assert_string_equal(host, "192.0.2.7");
    assert_int_equal(port, 5900);
    assert_int_equal(vdi_hostport_addr("0.0.0.0:8443", &ss, host, sizeof(host)), 0);
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)&ss;
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(in4->sin_port), 8443);
    assert_int_equal(in4->sin_addr.s_addr, htonl(INADDR_ANY));
}

static void test_ipv6_brackets(void **state)
{
    (void)state;
    char host[64];
    uint16_t port = 0;
    struct sockaddr_storage ss;
    assert_int_equal(vdi_hostport_parse("[::1]:5900", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 5900);
    assert_int_equal(vdi_hostport_addr("[2001:db8::7]:443", &ss, host, sizeof(host)), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
    assert_int_equal(ntohs(in6->sin6_port), 443);
    struct in6_addr want;
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::7", &want), 1);
    assert_memory_equal(&in6->sin6_addr, &want, sizeof(want));
    assert_int_equal(vdi_hostport_addr("[::]:0", &ss, host, sizeof(host)), 0);
    /* IPv6 needs its brackets; brackets hold IPv6 only. */
    assert_int_equal(vdi_hostport_addr("::1:5900", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("[127.0.0.1]:5900", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("[localhost]:5900", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("[::1:5900", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("[::1]5900", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("[]:5900", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("[::g]:5900", &ss, host, sizeof(host)), -EINVAL);
}

static void test_localhost(void **state)
{
    (void)state;
    char host[64];
    struct sockaddr_storage ss;
    assert_int_equal(vdi_hostport_addr("localhost:5900", &ss, host, sizeof(host)), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(ss.ss_family, AF_INET);
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)&ss;
    assert_int_equal(in4->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    assert_int_equal(ntohs(in4->sin_port), 5900);
    assert_int_equal(vdi_hostport_addr("LocalHost:1", &ss, host, sizeof(host)), 0);
    /* Other names have the form but are not looked up. */
    char h2[64];
    uint16_t port;
    assert_int_equal(vdi_hostport_parse("desktop.example:5900", h2, sizeof(h2), &port), 0);
    assert_int_equal(vdi_hostport_resolve(h2, port, &ss), -EINVAL);
    assert_int_equal(vdi_hostport_addr("desktop.example:5900", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("localhost.:5900", &ss, host, sizeof(host)), -EINVAL);
}

static void test_missing_port(void **state)
{
    (void)state;
    char host[64];
    struct sockaddr_storage ss;
    assert_int_equal(vdi_hostport_addr("127.0.0.1", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("127.0.0.1:", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr(":5900", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("5900", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("[::1]", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("", &ss, host, sizeof(host)), -EINVAL);
}

static void test_port_range(void **state)
{
    (void)state;
    char host[64] = "untouched";
    uint16_t port = 7;
    assert_int_equal(vdi_hostport_parse("127.0.0.1:0", host, sizeof(host), &port), 0);
    assert_int_equal(port, 0);
    assert_int_equal(vdi_hostport_parse("127.0.0.1:65535", host, sizeof(host), &port), 0);
    assert_int_equal(port, 65535);
    strcpy(host, "untouched");
    port = 7;
    assert_int_equal(vdi_hostport_parse("127.0.0.1:65536", host, sizeof(host), &port), -ERANGE);
    assert_int_equal(
        vdi_hostport_parse("127.0.0.1:99999999999999999999", host, sizeof(host), &port), -ERANGE);
    assert_string_equal(host, "untouched"); /* written only on success */
    assert_int_equal(port, 7);
    assert_int_equal(vdi_hostport_parse("127.0.0.1:-1", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(vdi_hostport_parse("127.0.0.1:+1", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(vdi_hostport_parse("127.0.0.1:0x10", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(vdi_hostport_parse("127.0.0.1: 80", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(vdi_hostport_parse("127.0.0.1:vnc", host, sizeof(host), &port), -EINVAL);
}

static void test_junk(void **state)
{
    (void)state;
    char host[64];
    char tiny[4];
    uint16_t port;
    struct sockaddr_storage ss;
    assert_int_equal(vdi_hostport_parse(NULL, host, sizeof(host), &port), -EINVAL);
    assert_int_equal(vdi_hostport_addr("nowhere", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("a b:1", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("1.2.3.4/8:1", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("1.2.3.4:5:6", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("1.2.3.400:5", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_addr("1.2.3:5", &ss, host, sizeof(host)), -EINVAL);
    assert_int_equal(vdi_hostport_parse("127.0.0.1:1", tiny, sizeof(tiny), &port), -ENAMETOOLONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4),       cmocka_unit_test(test_ipv6_brackets),
        cmocka_unit_test(test_localhost),  cmocka_unit_test(test_missing_port),
        cmocka_unit_test(test_port_range), cmocka_unit_test(test_junk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
