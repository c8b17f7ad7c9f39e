/* Unit tests for server/listen.c: configured listen addresses, IPv4, IPv6 and localhost (which
 * binds the loopback address), and bad ones; the gate before login (caps per address, IPv6 by
 * /64, in all; slots given back; a real accept beyond the cap is reset at once). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

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

static struct sockaddr_storage sa(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
    }
    return ss;
}

static int admit(srv_gate_t *g, const char *ip, srv_gate_slot_t **slot)
{
    struct sockaddr_storage ss = sa(ip);
    return srv__gate_admit(g, (struct sockaddr *)&ss, slot);
}

static void test_gate_per_addr(void **state)
{
    (void)state;
    srv_gate_t *g = srv__gate_create("test", 100, 3);
    srv_gate_slot_t *s[8];
    for (int i = 0; i < 3; i++)
        assert_int_equal(admit(g, "192.0.2.1", &s[i]), 0);
    assert_int_equal(admit(g, "192.0.2.1", &s[3]), -EBUSY);
    /* The same address written as v4-mapped IPv6 is the same address. */
    assert_int_equal(admit(g, "::ffff:192.0.2.1", &s[3]), -EBUSY);
    assert_int_equal(admit(g, "192.0.2.2", &s[3]), 0);
    srv_gate_stats_t st;
    srv__gate_stats(g, &st);
    assert_int_equal(st.open, 4);
    assert_int_equal(st.addrs, 2);
    assert_int_equal(st.refused_addr, 2);
    assert_int_equal(st.refused_total, 0);
    /* A slot given back makes room again. */
    srv__gate_release(s[0]);
    assert_int_equal(admit(g, "192.0.2.1", &s[0]), 0);
    for (int i = 0; i < 4; i++)
        srv__gate_release(s[i]);
    srv__gate_release(NULL);
    srv__gate_stats(g, &st);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.addrs, 0);
    assert_int_equal(st.accepted, 5);
    srv__gate_destroy(g);
}

static void test_gate_ipv6_by_64(void **state)
{
    (void)state;
    srv_gate_t *g = srv__gate_create("test", 100, 2);
    srv_gate_slot_t *s[4];
    assert_int_equal(admit(g, "2001:db8:1:2::1", &s[0]), 0);
    assert_int_equal(admit(g, "2001:db8:1:2:ffff:1:2:3", &s[1]), 0);
    /* A third address of the same /64: refused; another /64: admitted. */
    assert_int_equal(admit(g, "2001:db8:1:2::99", &s[2]), -EBUSY);
    assert_int_equal(admit(g, "2001:db8:1:3::1", &s[2]), 0);
    srv_gate_stats_t st;
    srv__gate_stats(g, &st);
    assert_int_equal(st.addrs, 2);
    for (int i = 0; i < 3; i++)
        srv__gate_release(s[i]);
    srv__gate_destroy(g);
}

static void test_gate_total(void **state)
{
    (void)state;
    srv_gate_t *g = srv__gate_create("test", 5, 64);
    srv_gate_slot_t *s[8];
    char ip[32];
    for (int i = 0; i < 5; i++) {
        snprintf(ip, sizeof(ip), "198.51.100.%d", i + 1);
        assert_int_equal(admit(g, ip, &s[i]), 0);
    }
    assert_int_equal(admit(g, "198.51.100.99", &s[5]), -EBUSY);
    srv_gate_stats_t st;
    srv__gate_stats(g, &st);
    assert_int_equal(st.refused_total, 1);
    assert_int_equal(st.refused_addr, 0);
    srv__gate_release(s[2]);
    assert_int_equal(admit(g, "198.51.100.99", &s[2]), 0);
    for (int i = 0; i < 5; i++)
        srv__gate_release(s[i]);
    srv__gate_destroy(g);
}

/* Through a real listener on loopback: two connections admitted, the third reset at once. */
struct accept_fx {
    srv_gate_t *g;
    uv_tcp_t *conns[4];
    srv_gate_slot_t *slots[4];
    int admitted, refused;
};

static void on_conn(uv_stream_t *server, int status)
{
    struct accept_fx *f = server->data;
    assert_int_equal(status, 0);
    int rc = srv__gate_accept(f->g, server, &f->conns[f->admitted], &f->slots[f->admitted]);
    if (rc == 0)
        f->admitted++;
    else if (rc == -EBUSY)
        f->refused++;
    else
        fail_msg("srv__gate_accept: %s", vdi_strerror(rc));
}

static void on_tick(uv_timer_t *t)
{
    struct accept_fx *f = t->data;
    if (f->admitted + f->refused == 3)
        uv_stop(t->loop);
}

static void test_gate_accept_resets(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_tcp_t srv;
    uv_timer_t tick;
    struct sockaddr_in a;
    struct accept_fx f = {.g = srv__gate_create("test", 10, 2)};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_tcp_init(&loop, &srv), 0);
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &a), 0);
    assert_int_equal(uv_tcp_bind(&srv, (struct sockaddr *)&a, 0), 0);
    srv.data = &f;
    assert_int_equal(uv_listen((uv_stream_t *)&srv, 16, on_conn), 0);
    a.sin_port = htons((uint16_t)srv__bound_port(&srv));
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fds[i] >= 0);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&a, sizeof(a)), 0);
    }
    uv_timer_init(&loop, &tick);
    tick.data = &f;
    uv_timer_start(&tick, on_tick, 10, 10);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(f.admitted, 2);
    assert_int_equal(f.refused, 1);
    /* The refused one (the third to arrive) sees a reset, not a connection held open. */
    char b;
    int resets = 0;
    for (int i = 0; i < 3; i++) {
        struct timeval tv = {0, 200000};
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (read(fds[i], &b, 1) < 0 && errno == ECONNRESET)
            resets++;
        close(fds[i]);
    }
    assert_int_equal(resets, 1);
    for (int i = 0; i < f.admitted; i++) {
        srv__gate_release(f.slots[i]);
        uv_close((uv_handle_t *)f.conns[i], (uv_close_cb)free);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_close((uv_handle_t *)&srv, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    srv__gate_destroy(f.g);
}

int main(void)
{
    vdi_log_set_level(VDI_LOG_LEVEL_ERR - 1); /* the refusals above are expected */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_localhost),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_bound_port),
        cmocka_unit_test(test_gate_per_addr),
        cmocka_unit_test(test_gate_ipv6_by_64),
        cmocka_unit_test(test_gate_total),
        cmocka_unit_test(test_gate_accept_resets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
