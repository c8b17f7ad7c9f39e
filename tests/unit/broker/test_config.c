/* Unit tests for broker/config.c: defaults, every value type, errors that name the line, and
 * the [auth] section: it fills the auth_config_t vdid hands to auth/, from auth's defaults, which
 * are the ones docs/config.md documents. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
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
                                 "user_disk = no\n"
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
    parse_bad("[vdid]\nlisten = desktop.example:5900\n",
              "t.conf:2: listen: 'desktop.example:5900' is not HOST:PORT (HOST an IPv4 address, "
              "[IPv6 address] or localhost; PORT 0-65535)");
    parse_bad("[vdid]\nweb_listen = ::1:8443\n", "web_listen: '::1:8443' is not HOST:PORT");
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

/* user_disk: auto is yes for dedicated pools and no for floating ones; spares cannot carry one. */
static void test_user_disk(void **state)
{
    (void)state;
    brk_config_t *cfg = parse_ok("[pool d]\nimage=x\ntype=dedicated\n[pool f]\nimage=x\n"
                                 "[pool g]\nimage=x\nuser_disk = yes\nuser_disk_size = 64M\n"
                                 "[pool h]\nimage=x\ntype=dedicated\nuser_disk=no\nmin_spares=2\n");
    assert_int_equal(brk_config_pool(cfg, "d")->user_disk, 1);
    assert_int_equal(brk_config_pool(cfg, "f")->user_disk, 0);
    assert_int_equal(brk_config_pool(cfg, "g")->user_disk, 1);
    assert_int_equal(brk_config_pool(cfg, "g")->user_disk_size, 64 << 20);
    assert_int_equal(brk_config_pool(cfg, "d")->user_disk_size, 4ULL << 30);
    assert_int_equal(brk_config_pool(cfg, "h")->user_disk, 0);
    brk_config_free(cfg);
    parse_bad("[pool d]\nimage=x\ntype=dedicated\nmin_spares=1\n",
              "t.conf:1: [pool d]: min_spares needs user_disk = no");
    parse_bad("[pool f]\nimage=x\nuser_disk=maybe\n", "user_disk: 'maybe' is not auto, yes or no");
    parse_bad("[pool f]\nimage=x\nuser_disk_size=1M\n", "user_disk_size: '1M'");
}

static void test_rollout_keys(void **state)
{
    (void)state;
    brk_config_t *cfg = parse_ok("[pool a]\nimage=x\n[pool b]\nimage=x\ncanary_percent = 50\n"
                                 "waves = 4\nhealth_window = 90s\nmax_unhealthy = 2\n"
                                 "logoff = force\nlogoff_grace = 2m\n");
    const brk_pool_config_t *a = brk_config_pool(cfg, "a"), *b = brk_config_pool(cfg, "b");
    assert_int_equal(a->canary_percent, 10);
    assert_int_equal(a->waves, 3);
    assert_int_equal(a->health_window_s, 600);
    assert_int_equal(a->max_unhealthy, 0);
    assert_false(a->logoff_force);
    assert_int_equal(a->logoff_grace_s, 300);
    assert_int_equal(b->canary_percent, 50);
    assert_int_equal(b->waves, 4);
    assert_int_equal(b->health_window_s, 90);
    assert_int_equal(b->max_unhealthy, 2);
    assert_true(b->logoff_force);
    assert_int_equal(b->logoff_grace_s, 120);
    brk_config_free(cfg);
    parse_bad("[pool a]\nimage=x\ncanary_percent = 0\n", "canary_percent: '0'");
    parse_bad("[pool a]\nimage=x\ncanary_percent = 101\n", "canary_percent: '101'");
    parse_bad("[pool a]\nimage=x\nwaves = 0\n", "waves: '0'");
    parse_bad("[pool a]\nimage=x\nlogoff = now\n", "logoff: 'now' is not wait or force");
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

static void test_listen_addresses(void **state)
{
    (void)state;
    /* The forms the listeners accept (server/listen.c reads them the same way). */
    brk_config_t *cfg = parse_ok("[vdid]\nlisten = localhost:5900\nweb_listen = [::1]:0\n");
    assert_string_equal(cfg->listen, "localhost:5900");
    assert_string_equal(cfg->web_listen, "[::1]:0");
    brk_config_free(cfg);
    cfg = parse_ok("[vdid]\nweb_listen = off\n");
    assert_null(cfg->web_listen);
    brk_config_free(cfg);
}

static void test_auth_section(void **state)
{
    (void)state;
    brk_config_t *cfg = parse_ok("");
    auth_config_t def;
    auth_config_defaults(&def);
    /* Unset, [auth] is auth/'s defaults, and the [vdid] keys auth/ takes are linked in. */
    assert_false(cfg->auth.allow_tlsplain);
    assert_int_equal(cfg->auth.handshake_timeout_ms, def.handshake_timeout_ms);
    assert_memory_equal(&cfg->auth.limit_user, &def.limit_user, sizeof(def.limit_user));
    assert_memory_equal(&cfg->auth.limit_addr, &def.limit_addr, sizeof(def.limit_addr));
    assert_string_equal(cfg->auth.pam_service, "vdi");
    assert_ptr_equal(cfg->auth.pam_service, cfg->pam_service);
    assert_ptr_equal(cfg->auth.state_dir, cfg->state_dir);
    assert_null(cfg->auth.tls_cert);
    assert_string_equal(cfg->auth.admin_group, def.admin_group);
    brk_config_free(cfg);
    /* Keys set in the config reach the struct vdid hands to auth_create(). */
    cfg = parse_ok("[auth]\nallow_tlsplain = yes\nmax_checks_per_addr = 0\n"
                   "user_lockout_ms = 60000\naddr_free_failures = 7\n"
                   "[vdid]\nlisten = 127.0.0.1:1\npam_service = vdi-x\nadmin_group = ops\n"
                   "tls_cert = /c.pem\ntls_key = /k.pem\nstate_dir = /s\n");
    assert_true(cfg->auth.allow_tlsplain);
    assert_int_equal(cfg->auth.max_checks_per_addr, 0);
    assert_int_equal(cfg->auth.limit_user.lockout_ms, 60000);
    assert_int_equal(cfg->auth.limit_addr.free_failures, 7);
    assert_int_equal(cfg->auth.limit_user.free_failures, def.limit_user.free_failures);
    assert_int_equal(cfg->auth.limit_addr.forget_ms, def.limit_addr.forget_ms);
    assert_string_equal(cfg->auth.pam_service, "vdi-x");
    assert_string_equal(cfg->auth.admin_group, "ops");
    assert_string_equal(cfg->auth.tls_cert, "/c.pem");
    assert_string_equal(cfg->auth.tls_key, "/k.pem");
    assert_string_equal(cfg->auth.state_dir, "/s");
    brk_config_free(cfg);
    parse_bad("[auth]\nallow_tlsplain = maybe\n",
              "t.conf:2: allow_tlsplain: 'maybe' is not true or false");
    parse_bad("[auth]\nmax_password_len = 4096\n",
              "t.conf:2: max_password_len: '4096' is not a whole number from 1 to 1024");
    parse_bad("[auth]\n[auth]\n", "t.conf:2: section [auth] appears twice");
    parse_bad("[auth]\nlisten = 1.2.3.4:5\n", "t.conf:2: unknown key 'listen' in [auth]");
}

/* The limits of @cfg's auth_config_t without its strings (which point into each config). */
static void auth_limits(const brk_config_t *cfg, auth_config_t *out)
{
    memcpy(out, &cfg->auth, sizeof(*out));
    out->pam_service = out->tls_cert = out->tls_key = out->state_dir = out->admin_group = NULL;
}

/* Split a docs table cell ("`a`, `b`" or "`256`, `1024`") into its backquoted items. */
static size_t cell_items(const char *cell, char items[][48], size_t max)
{
    size_t n = 0;
    const char *c = cell;
    while (n < max && (c = strchr(c, '`')) != NULL) {
        const char *e = strchr(c + 1, '`');
        if (!e)
            break;
        snprintf(items[n++], 48, "%.*s", (int)(e - c - 1), c + 1);
        c = e + 1;
    }
    return n;
}

/* docs/config.md's [auth] table is the truth admins read: setting each key to the default the
 * table names changes nothing (so the table states the real default), and setting it to
 * another value changes the struct handed to auth/ (so the key reaches it). */
static void test_auth_defaults_are_documented(void **state)
{
    (void)state;
    const char *src = getenv("VDI_SRC");
    char *path = vdi_xasprintf("%s/docs/config.md", src && *src ? src : ".");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s (set VDI_SRC to the checkout)", path);
    char line[1024];
    bool in_auth = false;
    unsigned keys = 0;
    brk_config_t *cfg0 = parse_ok("");
    auth_config_t base;
    auth_limits(cfg0, &base);
    brk_config_free(cfg0);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "## ", 3) == 0)
            in_auth = strncmp(line, "## [auth]", 9) == 0;
        if (!in_auth || strncmp(line, "| `", 3) != 0)
            continue;
        /* | `key`, `key2` | `def`, `def2` | meaning | */
        char *c1 = line + 1, *c2 = strchr(c1, '|');
        assert_non_null(c2);
        *c2++ = 0;
        char *c3 = strchr(c2, '|');
        assert_non_null(c3);
        *c3 = 0;
        char k[8][48], d[8][48];
        size_t nk = cell_items(c1, k, 8), nd = cell_items(c2, d, 8);
        if (nk != nd)
            fail_msg("docs/config.md [auth]: %zu keys but %zu defaults in '%s'", nk, nd, c1);
        for (size_t i = 0; i < nk; i++) {
            char text[1024];
            auth_config_t got;
            snprintf(text, sizeof(text), "[auth]\n%s = %s\n", k[i], d[i]);
            brk_config_t *cfg = parse_ok(text);
            auth_limits(cfg, &got);
            brk_config_free(cfg);
            if (memcmp(&got, &base, sizeof(got)) != 0)
                fail_msg("docs/config.md says %s defaults to %s, but it does not", k[i], d[i]);
            /* Another value: the opposite boolean, or the default plus (or minus) one. */
            const char *other = strcmp(d[i], "false") == 0 ? "true" : NULL;
            char num[32];
            if (!other) {
                unsigned long v = strtoul(d[i], NULL, 10);
                snprintf(text, sizeof(text), "[auth]\n%s = %lu\n", k[i], v + 1);
                cfg = NULL;
                if (brk_config_parse(text, strlen(text), "t.conf", &cfg, err, sizeof(err)) < 0)
                    v -= 2;
                brk_config_free(cfg);
                snprintf(num, sizeof(num), "%lu", v + 1);
                other = num;
            }
            snprintf(text, sizeof(text), "[auth]\n%s = %s\n", k[i], other);
            cfg = parse_ok(text);
            auth_limits(cfg, &got);
            brk_config_free(cfg);
            if (memcmp(&got, &base, sizeof(got)) == 0)
                fail_msg("[auth] %s = %s does not reach auth_config_t", k[i], other);
            keys++;
        }
    }
    fclose(f);
    free(path);
    assert_int_equal(keys, 24); /* every key of the [auth] table in broker/config.c */
}

/* The listener caps and the audit log's limits: defaults, values, ranges. A [vdid] section that
 * sets its last keys (past the 32nd) must not see them as "set twice". */
static void test_preauth_and_audit(void **state)
{
    (void)state;
    brk_config_t *cfg = parse_ok("");
    assert_int_equal(cfg->preauth_max, 1024);
    assert_int_equal(cfg->preauth_max_per_addr, 64);
    assert_int_equal(cfg->audit_keep_s, 90 * 86400);
    assert_int_equal(cfg->audit_max_rows, 1000000);
    assert_int_equal(cfg->audit_coalesce_s, 60);
    brk_config_free(cfg);
    cfg = parse_ok("[vdid]\npreauth_max = 20\npreauth_max_per_addr = 4\naudit_keep = 0\n"
                   "audit_max_rows = 500\naudit_coalesce = 2m\nvmm_env = A\n");
    assert_int_equal(cfg->preauth_max, 20);
    assert_int_equal(cfg->preauth_max_per_addr, 4);
    assert_int_equal(cfg->audit_keep_s, 0);
    assert_int_equal(cfg->audit_max_rows, 500);
    assert_int_equal(cfg->audit_coalesce_s, 120);
    assert_int_equal(cfg->n_vmm_env, 1);
    brk_config_free(cfg);
    parse_bad("[vdid]\npreauth_max = 0\n", "preauth_max: '0' is not a whole number from 1");
    parse_bad("[vdid]\npreauth_max_per_addr = 0\n", "preauth_max_per_addr");
    parse_bad("[vdid]\naudit_keep = 3651d\n", "audit_keep");
    parse_bad("[vdid]\naudit_coalesce = 2h\n", "audit_coalesce");
    parse_bad("[vdid]\nvmm_env = A\nvmm_env = B\n", "key 'vmm_env' set twice");
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
        cmocka_unit_test(test_user_disk),
        cmocka_unit_test(test_rollout_keys),
        cmocka_unit_test(test_listen_addresses),
        cmocka_unit_test(test_auth_section),
        cmocka_unit_test(test_auth_defaults_are_documented),
        cmocka_unit_test(test_preauth_and_audit),
        cmocka_unit_test(test_entitlement),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
