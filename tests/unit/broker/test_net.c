/* Unit tests for broker/net.c and the network keys of broker/config.c: names, MACs, a nat pool's
 * subnet and the address each desktop gets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "broker/brk.h"
#include "common/vdi.h"

static brk_config_t *parse(const char *text, char *err, size_t errlen)
{
    brk_config_t *cfg = NULL;
    err[0] = 0;
    int rc = brk_config_parse(text, strlen(text), "t.conf", &cfg, err, errlen);
    if (rc < 0)
        return NULL;
    return cfg;
}

static void test_names_fit_an_interface(void **state)
{
    (void)state;
    char a[BRK_NET_IFNAMSIZ], b[BRK_NET_IFNAMSIZ];
    uint32_t i1 = brk_net_instance("/var/lib/vdi"), i2 = brk_net_instance("/srv/vdi");
    assert_int_not_equal(i1, i2);
    brk_net_bridge_name(i1, "lab", a);
    brk_net_bridge_name(i2, "lab", b);
    assert_int_equal(strlen(a), 11);
    assert_memory_equal(a, "vdn", 3);
    assert_string_not_equal(a, b); /* two vdids on one host do not share a bridge */
    brk_net_bridge_name(i1, "lab2", b);
    assert_string_not_equal(a, b);
    brk_net_tap_name(i1, 1, a);
    assert_true(strlen(a) < 16);
    assert_memory_equal(a, "vdt", 3);
    brk_net_tap_name(i1, 2, b);
    assert_string_not_equal(a, b);
    /* ids far past what a host makes still fit in 15 bytes */
    brk_net_tap_name(i1, INT64_MAX, a);
    assert_true(strlen(a) <= 15);
    brk_net_tap_name(i1, 36 * 36 * 36, a);
    assert_string_equal(a + 7, "1000");
    /* a maintenance VM's tap never has a desktop's name */
    brk_net_maint_tap_name(i1, 1, b);
    brk_net_tap_name(i1, 1, a);
    assert_memory_equal(b, "vdm", 3);
    assert_string_equal(a + 3, b + 3);
    assert_string_not_equal(a, b);
    brk_net_maint_tap_name(i1, UINT32_MAX, b);
    assert_true(strlen(b) <= 15);
}

static void test_mac(void **state)
{
    (void)state;
    char m[BRK_NET_MAC_LEN];
    uint8_t r[3] = {0xab, 0x01, 0xff};
    brk_net_mac(r, m);
    assert_string_equal(m, "02:76:64:ab:01:ff");
    assert_true(brk_net_mac_valid(m));
    assert_false(brk_net_mac_valid("02:76:64:ab:01"));
    assert_false(brk_net_mac_valid("02-76-64-ab-01-ff"));
    assert_false(brk_net_mac_valid("02:76:64:ab:01:fg"));
}

static void test_ip_parse(void **state)
{
    (void)state;
    uint32_t ip;
    char s[BRK_NET_IP_LEN];
    assert_int_equal(brk_net_ip_parse("10.213.7.1", &ip), 0);
    assert_int_equal(ip, 0x0ad50701);
    brk_net_ip_str(ip, s);
    assert_string_equal(s, "10.213.7.1");
    assert_int_equal(brk_net_ip_parse("10.213.7.256", &ip), -EINVAL);
    assert_int_equal(brk_net_ip_parse("10.213.7", &ip), -EINVAL);
    assert_int_equal(brk_net_ip_parse("10.213.7.1x", &ip), -EINVAL);
    assert_int_equal(brk_net_ip_parse(" 10.213.7.1", &ip), -EINVAL);
}

static void test_ip_pick_round_robin(void **state)
{
    (void)state;
    static char lab[] = "lab";
    brk_pool_config_t p = {.name = lab,
                           .net = BRK_NET_NAT,
                           .subnet = 0xc0a80a00,
                           .subnet_prefix = 29}; /* 192.168.10.0/29: .2 to .6 */
    assert_int_equal(brk_net_hosts(&p), 5);
    assert_int_equal(brk_net_gateway(&p), 0xc0a80a01);
    uint32_t ip, used[5];
    assert_int_equal(brk_net_ip_pick(&p, NULL, 0, 0, &ip), 0);
    assert_int_equal(ip, 0xc0a80a02);
    /* after .3 comes .4, even though .2 is free: a released address is reused last */
    used[0] = 0xc0a80a03;
    assert_int_equal(brk_net_ip_pick(&p, used, 1, 0xc0a80a03, &ip), 0);
    assert_int_equal(ip, 0xc0a80a04);
    /* wraps around past the last host, never to the broadcast address */
    assert_int_equal(brk_net_ip_pick(&p, NULL, 0, 0xc0a80a06, &ip), 0);
    assert_int_equal(ip, 0xc0a80a02);
    for (int i = 0; i < 5; i++)
        used[i] = 0xc0a80a02 + (uint32_t)i;
    assert_int_equal(brk_net_ip_pick(&p, used, 5, 0, &ip), -ENOSPC);
}

static void test_config_network_keys(void **state)
{
    (void)state;
    char err[256];
    brk_config_t *cfg = parse("[pool a]\nimage = t\nnetwork = nat\n"
                              "[pool b]\nimage = t\nnetwork = bridge:br0\nvlan = 12\nisolate = no\n"
                              "[pool c]\nimage = t\n"
                              "[pool d]\nimage = t\nnetwork = nat\nsubnet = 172.30.0.0/16\n"
                              "bandwidth = 20M\n",
                              err, sizeof(err));
    if (!cfg)
        fail_msg("%s", err);
    assert_int_equal(cfg->pools[0].net, BRK_NET_NAT);
    assert_int_equal(cfg->pools[0].subnet_prefix, 24);
    assert_int_equal(cfg->pools[0].subnet >> 16, 0x0ad5); /* a /24 of 10.213.0.0/16 */
    assert_true(cfg->pools[0].isolate);
    assert_false(cfg->pools[0].allow_host);
    assert_int_equal(cfg->pools[1].net, BRK_NET_BRIDGE);
    assert_string_equal(cfg->pools[1].net_bridge, "br0");
    assert_int_equal(cfg->pools[1].vlan, 12);
    assert_false(cfg->pools[1].isolate);
    assert_int_equal(cfg->pools[2].net, BRK_NET_NONE);
    assert_int_equal(cfg->pools[3].subnet, 0xac1e0000);
    assert_int_equal(cfg->pools[3].subnet_prefix, 16);
    assert_int_equal(cfg->pools[3].bandwidth_bps, 20000000);
    assert_int_equal(cfg->pools[0].bandwidth_bps, 0);
    assert_string_equal(cfg->dnsmasq, "/usr/sbin/dnsmasq");
    assert_null(cfg->nat_uplink);
    brk_config_free(cfg);
}

static void test_config_default_subnets_differ(void **state)
{
    (void)state;
    char err[256], text[4096] = "";
    size_t n = 0;
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "[pool p%d]\nimage = t\nnetwork = nat\n",
                              i);
    brk_config_t *cfg = parse(text, err, sizeof(err));
    if (!cfg)
        fail_msg("%s", err);
    for (size_t i = 0; i < cfg->n_pools; i++)
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(cfg->pools[i].subnet, cfg->pools[j].subnet);
    brk_config_free(cfg);
    /* the same pool keeps its subnet when others are added before it */
    cfg = parse("[pool lab]\nimage = t\nnetwork = nat\n", err, sizeof(err));
    assert_non_null(cfg);
    uint32_t alone = cfg->pools[0].subnet;
    brk_config_free(cfg);
    cfg = parse("[pool x]\nimage = t\nnetwork = nat\n[pool lab]\nimage = t\nnetwork = nat\n", err,
                sizeof(err));
    assert_non_null(cfg);
    assert_int_equal(cfg->pools[1].subnet, alone);
    brk_config_free(cfg);
}

static void test_config_network_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"[pool a]\nimage = t\nnetwork = wifi\n", "is not none, nat or bridge:NAME"},
        {"[pool a]\nimage = t\nnetwork = bridge:\n", "is not none, nat or bridge:NAME"},
        {"[pool a]\nimage = t\nnetwork = bridge:a-very-long-bridge\n", "at most 15 bytes"},
        {"[pool a]\nimage = t\nnetwork = bridge:br/0\n", "is not none, nat or bridge:NAME"},
        {"[pool a]\nimage = t\nvlan = 5\n", "vlan needs network = bridge:NAME"},
        {"[pool a]\nimage = t\nnetwork = bridge:br0\nvlan = 4095\n", "4094"},
        {"[pool a]\nimage = t\nsubnet = 10.1.0.0/24\n", "subnet needs network = nat"},
        {"[pool a]\nimage = t\nnetwork = nat\nsubnet = 10.1.0.1/24\n", "host bits set"},
        {"[pool a]\nimage = t\nnetwork = nat\nsubnet = 10.1.0.0/30\n", "N from 16 to 28"},
        {"[pool a]\nimage = t\nnetwork = nat\nsubnet = 10.1.0.0\n", "is not A.B.C.D/N"},
        {"[pool a]\nimage = t\nnetwork = nat\nsubnet = 10.1.0.0/28\nmax_desktops = 20\n",
         "holds 13 desktop addresses, fewer than max_desktops = 20"},
        {"[pool a]\nimage = t\nnetwork = nat\nsubnet = 10.1.0.0/16\n"
         "[pool b]\nimage = t\nnetwork = nat\nsubnet = 10.1.4.0/24\n",
         "[pool b]: subnet 10.1.4.0/24 overlaps [pool a]'s"},
        {"[vdid]\nnat_uplink = eth 0\n", "is not a network interface name"},
        {"[pool a]\nimage = t\nnetwork = nat\nbandwidth = 10Mbit\n", "is not a rate"},
        {"[pool a]\nimage = t\nnetwork = nat\nbandwidth = 100\n", "from 8k to 100G"},
        {"[pool a]\nimage = t\nnetwork = nat\nbandwidth = 101G\n", "from 8k to 100G"},
        {"[pool a]\nimage = t\nbandwidth = 10M\n", "bandwidth needs a network"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256];
        brk_config_t *cfg = parse(cases[i].text, err, sizeof(err));
        if (cfg || !strstr(err, cases[i].want))
            fail_msg("case %zu: want an error with \"%s\", got \"%s\"", i, cases[i].want, err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_fit_an_interface),
        cmocka_unit_test(test_mac),
        cmocka_unit_test(test_ip_parse),
        cmocka_unit_test(test_ip_pick_round_robin),
        cmocka_unit_test(test_config_network_keys),
        cmocka_unit_test(test_config_default_subnets_differ),
        cmocka_unit_test(test_config_network_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
