/* Unit tests for broker/config.c: defaults, every value type, and errors that name the line. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/brk.h"
#include "common/vdi.h"

static char err[256];

static brk_config_t *parse_ok(const char *text)
{
    brk_config_t *cfg = NULL;
    int rc = brk_config_parse(text, strlen(text), "t.conf", &cfg, err, sizeof(err));
    if (rc != 0)
        fail_msg("unexpected error %d: %s", rc, err);
    return cfg;
}

/* Parse @text, expect a config error whose message contains @want. */
static void parse_bad(const char *text, const char *want)
{
    brk_config_t *cfg = NULL;
    int rc = brk_config_parse(text, strlen(text), "t.conf", &cfg, err, sizeof(err));
    if (rc != VDI_ECONFIG)
        fail_msg("'%s' parsed (rc %d), expected an error containing '%s'", text, rc, want);
    assert_null(cfg);
    if (!strstr(err, want))
        fail_msg("error '%s' does not contain '%s'", err, want);
}

static void test_empty_gives_defaults(void **state)
{
    (void)state;
    brk_config_t *cfg = parse_ok("");
    assert_string_equal(cfg->state_dir, "/var/lib/vdi");
    assert_string_equal(cfg->run_dir, "/run/vdi");
    assert_string_equal(cfg->admin_socket, "/run/vdi/vdid.sock");
    assert_string_equal(cfg->listen, "0.0.0.0:5900");
    assert_string_equal(cfg->pam_service, "vdi");
    assert_null(cfg->vmm);
    assert_string_equal(cfg->admin_group, VDI_ADMIN_GROUP_DEFAULT);
    assert_int_equal(cfg->overcommit_pct, 100);
    assert_int_equal(cfg->memory_budget, 0);
    assert_int_equal(cfg->memory_reserve, 1024ull * 1024 * 1024);
    assert_int_equal(cfg->ready_timeout_s, 60);
    assert_int_equal(cfg->log_level, VDI_LOG_LEVEL_INFO);
    assert_int_equal(cfg->n_pools, 0);
    brk_config_free(cfg);
}

static void test_full(void **state)
{
    (void)state;
    brk_config_t *cfg = parse_ok("# a comment\n"
                                 "; another\n"
                                 "[vdid]\n"
                                 "state_dir = /srv/vdi\n"
                                 "run_dir=/run/x\r\n"
                                 "  listen = 127.0.0.1:15900  \n"
                                 "memory_budget = 8G\n"
                                 "overcommit = 150\n"
                                 "ready_timeout = 2m\n"
                                 "log_level = debug\n"
                                 "admin_group = vdiadm\n"
                                 "\n"
                                 "[pool office]\n"
                                 "image = debian-desktop\n"
                                 "type = dedicated\n"
                                 "vcpus = 2\n"
                                 "memory = 2G\n"
                                 "framebuffer = 1280x800\n"
                                 "min_spares = 3\n"
                                 "max_desktops = 50\n"
                                 "users = alice, bob,carol\n"
                                 "groups = staff\n"
                                 "disconnect_timeout = 1h\n"
                                 "idle_timeout = 30m\n"
                                 "[pool lab]\n"
                                 "image = testdesk\n");
    assert_string_equal(cfg->state_dir, "/srv/vdi");
    assert_string_equal(cfg->run_dir, "/run/x");
    assert_string_equal(cfg->admin_socket, "/run/x/vdid.sock");
    assert_string_equal(cfg->listen, "127.0.0.1:15900");
    assert_int_equal(cfg->memory_budget, 8ull << 30);
    assert_int_equal(cfg->overcommit_pct, 150);
    assert_int_equal(cfg->ready_timeout_s, 120);
    assert_int_equal(cfg->log_level, VDI_LOG_LEVEL_DEBUG);
    assert_string_equal(cfg->admin_group, "vdiadm");
    assert_int_equal(cfg->n_pools, 2);
    const brk_pool_config_t *p = brk_config_pool(cfg, "office");
    assert_non_null(p);
    assert_string_equal(p->image, "debian-desktop");
    assert_int_equal(p->type, BRK_POOL_DEDICATED);
    assert_int_equal(p->vcpus, 2);
    assert_int_equal(p->memory, 2ull << 30);
    assert_int_equal(p->fb_width, 1280);
    assert_int_equal(p->fb_height, 800);
    assert_int_equal(p->min_spares, 3);
    assert_int_equal(p->max_desktops, 50);
    assert_int_equal(p->n_users, 3);
    assert_string_equal(p->users[2], "carol");
    assert_int_equal(p->n_groups, 1);
    assert_int_equal(p->disconnect_timeout_s, 3600);
    assert_int_equal(p->idle_timeout_s, 1800);
    assert_int_equal(p->line, 13);
    p = brk_config_pool(cfg, "lab");
    assert_non_null(p);
    assert_int_equal(p->type, BRK_POOL_FLOATING);
    assert_int_equal(p->vcpus, 1);
    assert_int_equal(p->memory, 256ull << 20);
    assert_int_equal(p->fb_width, 1024);
    assert_int_equal(p->fb_height, 768);
    assert_int_equal(p->max_desktops, 10);
    assert_int_equal(p->disconnect_timeout_s, 300);
    assert_int_equal(p->n_users, 0);
    assert_null(brk_config_pool(cfg, "nope"));
    brk_config_free(cfg);
}

static void test_errors_name_the_line(void **state)
{
    (void)state;
    parse_bad("[vdid]\nfoo = 1\n", "t.conf:2: unknown key 'foo' in [vdid]");
    parse_bad("[vdid]\n\n[pool a]\nimage=x\nvcpu = 2\n",
              "t.conf:5: unknown key 'vcpu' in [pool a]");
    parse_bad("listen = 1.2.3.4:5\n", "t.conf:1: key 'listen' outside a section");
    parse_bad("[vdid]\n[server]\n", "t.conf:2: unknown section [server]");
    parse_bad("[vdid]\nlisten\n", "t.conf:2: expected 'key = value'");
    parse_bad("[vdid\n", "t.conf:1: malformed section header");
    parse_bad("[vdid]\n[vdid]\n", "t.conf:2: section [vdid] appears twice");
    parse_bad("[pool a]\nimage=x\n[pool a]\nimage=y\n", "t.conf:3: pool 'a' is defined twice");
    parse_bad("[pool a]\ntype=floating\n", "t.conf:1: [pool a]: required key 'image' is missing");
    parse_bad("[pool a]\nimage=x\n[pool b]\n", "t.conf:3: [pool b]: required key 'image'");
    parse_bad("[pool a/b]\n", "t.conf:1: pool name 'a/b' is not valid");
    parse_bad("[vdid]\nstate_dir = relative\n",
              "t.conf:2: state_dir: 'relative' is not an absolute");
    parse_bad("[vdid]\nlisten = nowhere\n", "t.conf:2: listen: 'nowhere' is not HOST:PORT");
    parse_bad("[vdid]\nlisten = h:70000\n", "listen: 'h:70000'");
    parse_bad("[vdid]\novercommit = 5\n",
              "t.conf:2: overcommit: '5' is not a whole number from 10");
    parse_bad("[vdid]\novercommit = -100\n", "overcommit: '-100'");
    parse_bad("[vdid]\novercommit = 0x64\n", "overcommit: '0x64'");
    parse_bad("[vdid]\nlog_level = loud\n", "log_level: 'loud' is not err, warn, info or debug");
    parse_bad("[vdid]\nready_timeout = 5x\n", "ready_timeout: '5x' is not a duration");
    parse_bad("[vdid]\nready_timeout = 0\n", "ready_timeout: '0' is not a duration from 1");
    parse_bad("[vdid]\nlisten = \n", "t.conf:2: listen: empty value");
    parse_bad("[vdid]\nrun_dir=/a\nrun_dir=/b\n", "t.conf:3: key 'run_dir' set twice in [vdid]");
    parse_bad("[pool a]\nimage=x\ntype=shared\n",
              "t.conf:3: type: 'shared' is not floating or dedicated");
    parse_bad("[pool a]\nimage=x\nmemory=1K\n", "t.conf:3: memory: '1K' is not a size");
    parse_bad("[pool a]\nimage=x\nmemory=100000000\n",
              "memory: '100000000' is not a whole number of MiB");
    parse_bad("[pool a]\nimage=x\nframebuffer=1024\n", "framebuffer: '1024' is not WIDTHxHEIGHT");
    parse_bad("[pool a]\nimage=x\nframebuffer=1023x768\n", "framebuffer: '1023x768'");
    parse_bad("[pool a]\nimage=x\nframebuffer=1024x768x\n", "framebuffer: '1024x768x'");
    parse_bad("[pool a]\nimage=x\nvcpus=0\n", "vcpus: '0' is not a whole number from 1 to 64");
    parse_bad("[pool a]\nimage=x\nusers = al!ce\n", "users: 'al!ce' is not a valid name");
    parse_bad("[pool a]\nimage=../x\n", "image: '../x' is not a valid name");
    parse_bad("[vdid]\ntls_cert = /a.pem\n", "tls_cert and tls_key go together");
    parse_bad("[vdid]\nrun_dir = /a\x01\n", "t.conf:2: control character");
}

static void test_nul_and_long_lines(void **state)
{
    (void)state;
    brk_config_t *cfg = NULL;
    static const char nul[] = "[vdid]\nrun_dir = /a\0b\n";
    assert_int_equal(brk_config_parse(nul, sizeof(nul) - 1, "t.conf", &cfg, err, sizeof(err)),
                     VDI_ECONFIG);
    assert_non_null(strstr(err, "t.conf:2: NUL byte"));
    char *big = vdi_xmalloc(5000);
    memset(big, 'a', 4999);
    big[4999] = 0;
    parse_bad(big, "t.conf:1: line longer than");
    free(big);
    /* tiny error buffers are truncated, never overrun */
    char small[8];
    assert_int_equal(brk_config_parse("[x]", 3, "t.conf", &cfg, small, sizeof(small)), VDI_ECONFIG);
    assert_true(strlen(small) < sizeof(small));
}

static void test_auth_section(void **state)
{
    (void)state;
    brk_config_t *cfg = parse_ok("");
    assert_false(cfg->auth.allow_tlsplain);
    assert_int_equal(cfg->auth.handshake_timeout_ms, 10000);
    assert_int_equal(cfg->auth.max_checks_per_addr, 4);
    assert_int_equal(cfg->auth.user_lockout_failures, 10);
    assert_int_equal(cfg->auth.addr_free_failures, 5);
    brk_config_free(cfg);
    cfg = parse_ok("[auth]\nallow_tlsplain = yes\nmax_checks_per_addr = 0\n"
                   "user_lockout_ms = 60000\n[vdid]\nlisten = 127.0.0.1:1\n");
    assert_true(cfg->auth.allow_tlsplain);
    assert_int_equal(cfg->auth.max_checks_per_addr, 0);
    assert_int_equal(cfg->auth.user_lockout_ms, 60000);
    brk_config_free(cfg);
    parse_bad("[auth]\nallow_tlsplain = maybe\n",
              "t.conf:2: allow_tlsplain: 'maybe' is not true or false");
    parse_bad("[auth]\nmax_password_len = 4096\n",
              "t.conf:2: max_password_len: '4096' is not a whole number from 1 to 1024");
    parse_bad("[auth]\n[auth]\n", "t.conf:2: section [auth] appears twice");
    parse_bad("[auth]\nlisten = 1.2.3.4:5\n", "t.conf:2: unknown key 'listen' in [auth]");
}

static void test_entitlement(void **state)
{
    (void)state;
    brk_config_t *cfg = parse_ok("[pool a]\nimage=x\nusers=alice\ngroups=staff, lab\n");
    const brk_pool_config_t *p = brk_config_pool(cfg, "a");
    const char *g1[] = {"users", "lab"};
    const char *g2[] = {"users"};
    assert_true(brk_pool_entitled(p, "alice", NULL, 0));
    assert_true(brk_pool_entitled(p, "bob", g1, 2));
    assert_false(brk_pool_entitled(p, "bob", g2, 1));
    assert_false(brk_pool_entitled(p, "alicex", NULL, 0));
    brk_config_free(cfg);
}

static void test_load_file(void **state)
{
    (void)state;
    brk_config_t *cfg = NULL;
    assert_int_equal(brk_config_load("/nonexistent/vdid.conf", &cfg, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/vdid.conf: cannot open"));
    char path[] = "/tmp/vdi-test-config.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "[vdid]\nbogus = 1\n";
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
    close(fd);
    assert_int_equal(brk_config_load(path, &cfg, err, sizeof(err)), VDI_ECONFIG);
    assert_non_null(strstr(err, ":2: unknown key 'bogus'"));
    assert_non_null(strstr(err, path));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_gives_defaults),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_nul_and_long_lines),
        cmocka_unit_test(test_auth_section),
        cmocka_unit_test(test_entitlement),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
