/* broker/config.c: vdid's configuration file, INI.
 *
 *   # comment            ; comment too
 *   [vdid]               daemon-wide options
 *   key = value
 *   [auth]               login limits, parsed into an auth_config_t for auth/
 *   [pool NAME]          one section per desktop pool
 *
 * Every option lives in one of the tables below with its default, so docs/config.md can be
 * checked against them; the defaults of [auth] (and of pam_service) are auth_config_defaults()'s
 * and are not repeated here. Unknown sections, unknown or repeated keys and bad values are errors
 * that name the line. The parser reads untrusted bytes (tests/fuzz/fuzz_config.c).
 */
#define VDI_LOG_TAG "config"
#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/brk.h"
#include "common/vdi.h"

#define MAX_CONFIG_BYTES (1u << 20) /* 1 MiB: far more than any real config */
#define MAX_POOLS        256
#define MAX_NAME         63
#define MAX_LIST         1024

enum opt_type {
    T_PATH,     /* absolute path */
    T_STRING,   /* any non-empty text */
    T_NAME,     /* [A-Za-z0-9._-]+, at most MAX_NAME bytes */
    T_ADDR,     /* HOST:PORT as vdi_hostport_addr() reads it */
    T_ADDR_OFF, /* the same, or "off" (the field stays NULL) */
    T_U32,      /* integer in [min, max] */
    T_SIZE,     /* size with K/M/G/T suffix in [min, max] */
    T_DURATION, /* seconds, or a number with s/m/h/d suffix, in [min, max] seconds */
    T_POOLTYPE, /* floating | dedicated */
    T_FBSIZE,   /* WIDTHxHEIGHT */
    T_LIST,     /* comma separated names */
    T_LOGLEVEL, /* err | warn | info | debug */
    T_BOOL,     /* true | false | yes | no | on | off | 1 | 0 */
    T_SECCOMP,  /* kill | log (a bool field: log) */
    T_NETWORK,  /* none | nat | bridge:NAME (net, and net_bridge at off2) */
    T_SUBNET,   /* A.B.C.D/N, N from 16 to 28 (subnet, and the prefix at off2) */
    T_IFNAME,   /* a network interface name (at most 15 bytes, no '/', ':' or spaces) */
    T_RATE,     /* bits per second: a number with k, M or G (decimal), in [min, max] */
    T_AUTOBOOL, /* auto | a T_BOOL value: an int field, -1 (auto), 0 or 1 */
    T_LOGOFF,   /* wait | force (a bool field: force) */
};

struct opt {
    const char *key;
    enum opt_type type;
    size_t off;      /* of the field in brk_config_t or brk_pool_config_t */
    size_t off2;     /* T_FBSIZE: height; T_LIST: the count */
    const char *def; /* default (NULL: none; required when .required) */
    uint64_t min, max;
    bool required;
};

#define CF(f) offsetof(brk_config_t, f)
#define PF(f) offsetof(brk_pool_config_t, f)
#define GIB   (1024ull * 1024 * 1024)
#define MIB   (1024ull * 1024)
#define DAY   86400u

/* [vdid]: keep in step with docs/config.md. */
static const struct opt daemon_opts[] = {
    {"state_dir", T_PATH, CF(state_dir), 0, "/var/lib/vdi", 0, 0, false},
    {"run_dir", T_PATH, CF(run_dir), 0, "/run/vdi", 0, 0, false},
    {"admin_socket", T_PATH, CF(admin_socket), 0, NULL, 0, 0, false}, /* run_dir/vdid.sock */
    {"admin_group", T_NAME, CF(admin_group), 0, VDI_ADMIN_GROUP_DEFAULT, 0, 0, false},
    {"listen", T_ADDR, CF(listen), 0, "0.0.0.0:5900", 0, 0, false},
    {"vmm", T_PATH, CF(vmm), 0, NULL, 0, 0, false}, /* vdi-vmm next to vdid */
    {"tls_cert", T_PATH, CF(tls_cert), 0, NULL, 0, 0, false},
    {"tls_key", T_PATH, CF(tls_key), 0, NULL, 0, 0, false},
    {"pam_service", T_NAME, CF(pam_service), 0, NULL, 0, 0, false}, /* auth_config_defaults() */
    {"memory_budget", T_SIZE, CF(memory_budget), 0, "0", 0, 1ull << 50, false},
    {"memory_reserve", T_SIZE, CF(memory_reserve), 0, "1G", 0, 1ull << 50, false},
    {"overcommit", T_U32, CF(overcommit_pct), 0, "100", 10, 1000, false},
    {"ready_timeout", T_DURATION, CF(ready_timeout_s), 0, "60", 1, DAY, false},
    {"shutdown_timeout", T_DURATION, CF(shutdown_timeout_s), 0, "10", 1, 3600, false},
    {"log_level", T_LOGLEVEL, CF(log_level), 0, "info", 0, 0, false},
    /* Connections not logged in yet, per listener (server/listen.c). */
    {"preauth_max", T_U32, CF(preauth_max), 0, "1024", 1, 1000000, false},
    {"preauth_max_per_addr", T_U32, CF(preauth_max_per_addr), 0, "64", 1, 1000000, false},
    /* The audit log (broker/store.c). */
    {"audit_keep", T_DURATION, CF(audit_keep_s), 0, "90d", 0, 3650 * DAY, false},
    {"audit_max_rows", T_U32, CF(audit_max_rows), 0, "1000000", 0, 1000000000, false},
    {"audit_coalesce", T_DURATION, CF(audit_coalesce_s), 0, "60", 0, 3600, false},
    /* The web portal (server/http.c, server/portal*.c). */
    {"web_listen", T_ADDR_OFF, CF(web_listen), 0, "0.0.0.0:8443", 0, 0, false},
    {"metrics_listen", T_ADDR_OFF, CF(metrics_listen), 0, "127.0.0.1:9600", 0, 0, false},
    {"web_root", T_PATH, CF(web_root), 0, NULL, 0, 0, false},   /* found next to vdid */
    {"novnc_dir", T_PATH, CF(novnc_dir), 0, NULL, 0, 0, false}, /* found next to vdid */
    {"web_session_idle", T_DURATION, CF(web_session_idle_s), 0, "30m", 60, DAY, false},
    {"web_session_max", T_DURATION, CF(web_session_max_s), 0, "12h", 60, 7 * DAY, false},
    {"web_token_ttl", T_DURATION, CF(web_token_ttl_s), 0, "30", 1, 300, false},
    {"web_max_sessions", T_U32, CF(web_max_sessions), 0, "4096", 8, 1000000, false},
    {"web_user_tokens", T_U32, CF(web_user_tokens), 0, "16", 1, 1024, false},
    /* The VMM jail (server/jail.c, server/cgroup.c; docs/security.md). */
    {"jail", T_BOOL, CF(jail), 0, "yes", 0, 0, false},
    {"vmm_uid_first", T_U32, CF(vmm_uid_first), 0, "4000000", 1000, 4000000000u, false},
    {"vmm_uid_count", T_U32, CF(vmm_uid_count), 0, "65536", 1, 1000000, false},
    {"vmm_memory_overhead", T_SIZE, CF(vmm_memory_overhead), 0, "128M", 16 * MIB, 64 * GIB, false},
    {"vmm_pids_max", T_U32, CF(vmm_pids_max), 0, "256", 16, 65536, false},
    {"vmm_seccomp", T_SECCOMP, CF(vmm_seccomp_log), 0, "kill", 0, 0, false},
    {"vmm_env", T_LIST, CF(vmm_env), CF(n_vmm_env), "", 0, 0, false},
    {"vdid_memory_max", T_SIZE, CF(vdid_memory_max), 0, "1G", 0, 1ull << 50, false},
    /* Desktop networks (server/net*.c; docs/network.md). */
    {"nat_uplink", T_IFNAME, CF(nat_uplink), 0, NULL, 0, 0, false},
    {"dnsmasq", T_PATH, CF(dnsmasq), 0, "/usr/sbin/dnsmasq", 0, 0, false},
};

#define AF(f) offsetof(brk_config_t, auth.f)
#define H24   (24u * 3600 * 1000)
/* [auth]: keep in step with docs/config.md. Fields of auth_config_t; no defaults here: the
 * section starts from auth_config_defaults(). */
static const struct opt auth_opts[] = {
    {"allow_tlsplain", T_BOOL, AF(allow_tlsplain), 0, NULL, 0, 0, false},
    {"tlsplain_only", T_BOOL, AF(tlsplain_only), 0, NULL, 0, 0, false},
    {"handshake_timeout_ms", T_U32, AF(handshake_timeout_ms), 0, NULL, 100, 600000, false},
    {"pam_max_concurrent", T_U32, AF(pam_max_concurrent), 0, NULL, 1, 64, false},
    {"pam_max_queued", T_U32, AF(pam_max_queued), 0, NULL, 0, 100000, false},
    {"max_checks_per_addr", T_U32, AF(max_checks_per_addr), 0, NULL, 0, 100000, false},
    {"max_username_len", T_U32, AF(max_username_len), 0, NULL, 1, AUTH_USERNAME_MAX, false},
    {"max_password_len", T_U32, AF(max_password_len), 0, NULL, 1, AUTH_PASSWORD_MAX, false},
    {"user_free_failures", T_U32, AF(limit_user.free_failures), 0, NULL, 0, 1000, false},
    {"user_backoff_base_ms", T_U32, AF(limit_user.backoff_base_ms), 0, NULL, 0, 600000, false},
    {"user_backoff_max_ms", T_U32, AF(limit_user.backoff_max_ms), 0, NULL, 0, 600000, false},
    {"user_lockout_failures", T_U32, AF(limit_user.lockout_failures), 0, NULL, 1, 100000, false},
    {"user_lockout_ms", T_U32, AF(limit_user.lockout_ms), 0, NULL, 0, H24, false},
    {"user_global_free_failures", T_U32, AF(limit_user_global.free_failures), 0, NULL, 0, 100000,
     false},
    {"user_global_backoff_base_ms", T_U32, AF(limit_user_global.backoff_base_ms), 0, NULL, 0,
     600000, false},
    {"user_global_backoff_max_ms", T_U32, AF(limit_user_global.backoff_max_ms), 0, NULL, 0, 600000,
     false},
    {"user_global_lockout_failures", T_U32, AF(limit_user_global.lockout_failures), 0, NULL, 1,
     1000000, false},
    {"user_global_lockout_ms", T_U32, AF(limit_user_global.lockout_ms), 0, NULL, 0, H24, false},
    {"known_addr_days", T_U32, AF(known_addr_days), 0, NULL, 0, 365, false},
    {"addr_free_failures", T_U32, AF(limit_addr.free_failures), 0, NULL, 0, 1000, false},
    {"addr_backoff_base_ms", T_U32, AF(limit_addr.backoff_base_ms), 0, NULL, 0, 600000, false},
    {"addr_backoff_max_ms", T_U32, AF(limit_addr.backoff_max_ms), 0, NULL, 0, 600000, false},
    {"addr_lockout_failures", T_U32, AF(limit_addr.lockout_failures), 0, NULL, 1, 100000, false},
    {"addr_lockout_ms", T_U32, AF(limit_addr.lockout_ms), 0, NULL, 0, H24, false},
};

/* [pool NAME]: keep in step with docs/config.md. */
static const struct opt pool_opts[] = {
    {"image", T_NAME, PF(image), 0, NULL, 0, 0, true},
    {"type", T_POOLTYPE, PF(type), 0, "floating", 0, 0, false},
    {"vcpus", T_U32, PF(vcpus), 0, "1", 1, 64, false},
    {"memory", T_SIZE, PF(memory), 0, "256M", 16 * MIB, 1024 * GIB, false},
    {"framebuffer", T_FBSIZE, PF(fb_width), PF(fb_height), "1024x768", 0, 0, false},
    {"min_spares", T_U32, PF(min_spares), 0, "0", 0, 10000, false},
    {"max_desktops", T_U32, PF(max_desktops), 0, "10", 1, 100000, false},
    {"users", T_LIST, PF(users), PF(n_users), "", 0, 0, false},
    {"groups", T_LIST, PF(groups), PF(n_groups), "", 0, 0, false},
    {"disconnect_timeout", T_DURATION, PF(disconnect_timeout_s), 0, "300", 0, 30 * DAY, false},
    {"idle_timeout", T_DURATION, PF(idle_timeout_s), 0, "0", 0, 30 * DAY, false},
    {"cpu_weight", T_U32, PF(cpu_weight), 0, "100", 1, 10000, false},
    {"cpu_max", T_U32, PF(cpu_max_pct), 0, "0", 0, 100000, false},
    {"network", T_NETWORK, PF(net), PF(net_bridge), "none", 0, 0, false},
    {"vlan", T_U32, PF(vlan), 0, "0", 0, 4094, false},
    {"isolate", T_BOOL, PF(isolate), 0, "yes", 0, 0, false},
    {"allow_host", T_BOOL, PF(allow_host), 0, "no", 0, 0, false},
    {"subnet", T_SUBNET, PF(subnet), PF(subnet_prefix), NULL, 0, 0, false},
    {"bandwidth", T_RATE, PF(bandwidth_bps), 0, "0", 0, 100000000000ull, false},
    {"user_disk", T_AUTOBOOL, PF(user_disk), 0, "auto", 0, 0, false},
    {"user_disk_size", T_SIZE, PF(user_disk_size), 0, "4G", 16 * MIB, 64 * 1024 * GIB, false},
    /* Rollouts of a new image version (server/rollout.c; docs/images.md). */
    {"canary_percent", T_U32, PF(canary_percent), 0, "10", 1, 100, false},
    {"waves", T_U32, PF(waves), 0, "3", 1, 100, false},
    {"health_window", T_DURATION, PF(health_window_s), 0, "10m", 0, DAY, false},
    {"max_unhealthy", T_U32, PF(max_unhealthy), 0, "0", 0, 100000, false},
    {"logoff", T_LOGOFF, PF(logoff_force), 0, "wait", 0, 0, false},
    {"logoff_grace", T_DURATION, PF(logoff_grace_s), 0, "5m", 0, DAY, false},
};

struct parser {
    const char *file;
    unsigned line;
    char *err;
    size_t errlen;
};

static int fail(struct parser *p, const char *fmt, ...) VDI_PRINTF(2, 3);
static int fail(struct parser *p, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(p->err, p->errlen, "%s:%u: ", p->file, p->line);
    if (n < 0 || (size_t)n >= p->errlen)
        return VDI_ECONFIG;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return VDI_ECONFIG;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME)
        return false;
    for (const char *c = s; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
            return false;
    return s[0] != '.' && s[0] != '-';
}

/* What the kernel takes as an interface name (dev_valid_name()): 1 to 15 bytes, not "." or
 * "..", no '/', ':' or white space. */
static bool valid_ifname(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= BRK_NET_IFNAMSIZ || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (const char *c = s; *c; c++)
        if (*c == '/' || *c == ':' || isspace((unsigned char)*c) || !isprint((unsigned char)*c))
            return false;
    return true;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

static int parse_list(struct parser *p, const char *key, const char *v, char ***out, size_t *n)
{
    char **l = NULL;
    size_t cnt = 0;
    const char *s = v;
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        if (!*s)
            break;
        const char *e = s;
        while (*e && *e != ',' && *e != ' ' && *e != '\t')
            e++;
        char *item = vdi_xasprintf("%.*s", (int)(e - s), s);
        if (!valid_name(item)) {
            int rc =
                fail(p, "%s: '%s' is not a valid name (letters, digits, '.', '-', '_')", key, item);
            free(item);
            free_list(l, cnt);
            return rc;
        }
        if (cnt >= MAX_LIST) {
            free(item);
            free_list(l, cnt);
            return fail(p, "%s: more than %u names", key, MAX_LIST);
        }
        l = vdi_xrealloc(l, (cnt + 1) * sizeof(*l));
        l[cnt++] = item;
        s = e;
    }
    *out = l;
    *n = cnt;
    return 0;
}

/* Decimal digits only, then at most @suffix_chars more characters (no hex, no sign). */
static bool decimal(const char *v, size_t suffix_chars)
{
    size_t d = strspn(v, "0123456789");
    return d > 0 && strlen(v) - d <= suffix_chars;
}

static int parse_duration(const char *v, uint64_t *out)
{
    char num[32];
    size_t n = strlen(v);
    uint64_t mult = 1;
    if (n == 0 || n >= sizeof(num))
        return -EINVAL;
    memcpy(num, v, n + 1);
    switch (num[n - 1]) {
    case 's':
        mult = 1;
        break;
    case 'm':
        mult = 60;
        break;
    case 'h':
        mult = 3600;
        break;
    case 'd':
        mult = DAY;
        break;
    default:
        if (!isdigit((unsigned char)num[n - 1]))
            return -EINVAL;
        mult = 0;
        break;
    }
    if (mult)
        num[n - 1] = 0;
    else
        mult = 1;
    if (!decimal(num, 0))
        return -EINVAL; /* refuse "0x10", "+1", " 1" */
    uint64_t x;
    int rc = vdi_parse_u64(num, 0, UINT32_MAX, &x);
    if (rc < 0)
        return rc;
    *out = x * mult;
    return 0;
}

/* The listeners read the address with the same function (server/listen.c), so an address the
 * config accepts is one vdid can bind. */
static bool valid_addr(const char *v)
{
    struct sockaddr_storage ss;
    char host[64];
    return vdi_hostport_addr(v, &ss, host, sizeof(host)) == 0;
}

/* Set option @o in @base (a brk_config_t or brk_pool_config_t) from @v. */
static int set_opt(struct parser *p, const struct opt *o, void *base, const char *v)
{
    char *field = (char *)base + o->off;
    uint64_t x;
    int rc;

    switch (o->type) {
    case T_PATH:
        if (v[0] != '/')
            return fail(p, "%s: '%s' is not an absolute path", o->key, v);
        if (strlen(v) > 200)
            return fail(p, "%s: path longer than 200 bytes", o->key);
        free(*(char **)field);
        *(char **)field = vdi_xstrdup(v);
        return 0;
    case T_STRING:
        if (!v[0])
            return fail(p, "%s: empty value", o->key);
        free(*(char **)field);
        *(char **)field = vdi_xstrdup(v);
        return 0;
    case T_NAME:
        if (!valid_name(v))
            return fail(p, "%s: '%s' is not a valid name (letters, digits, '.', '-', '_')", o->key,
                        v);
        free(*(char **)field);
        *(char **)field = vdi_xstrdup(v);
        return 0;
    case T_ADDR_OFF:
        if (strcmp(v, "off") == 0) {
            free(*(char **)field);
            *(char **)field = NULL;
            return 0;
        }
        /* fall through */
    case T_ADDR:
        if (!valid_addr(v))
            return fail(p, "%s: '%s' is not " VDI_HOSTPORT_FORM, o->key, v);
        free(*(char **)field);
        *(char **)field = vdi_xstrdup(v);
        return 0;
    case T_U32:
        rc = vdi_parse_u64(v, o->min, o->max, &x);
        if (rc < 0 || !decimal(v, 0))
            return fail(p, "%s: '%s' is not a whole number from %" PRIu64 " to %" PRIu64, o->key, v,
                        o->min, o->max);
        *(uint32_t *)field = (uint32_t)x;
        return 0;
    case T_SIZE:
        rc = vdi_parse_size(v, o->min, o->max, &x);
        if (rc < 0 || !decimal(v, 1))
            return fail(p,
                        "%s: '%s' is not a size from %" PRIu64 " to %" PRIu64
                        " bytes (suffixes K, M, G, T)",
                        o->key, v, o->min, o->max);
        *(uint64_t *)field = x;
        return 0;
    case T_DURATION:
        rc = parse_duration(v, &x);
        if (rc < 0 || x < o->min || x > o->max)
            return fail(p,
                        "%s: '%s' is not a duration from %" PRIu64 " to %" PRIu64
                        " seconds (suffixes s, m, h, d)",
                        o->key, v, o->min, o->max);
        *(uint32_t *)field = (uint32_t)x;
        return 0;
    case T_POOLTYPE:
        if (strcmp(v, "floating") == 0)
            *(brk_pool_type_t *)field = BRK_POOL_FLOATING;
        else if (strcmp(v, "dedicated") == 0)
            *(brk_pool_type_t *)field = BRK_POOL_DEDICATED;
        else
            return fail(p, "%s: '%s' is not floating or dedicated", o->key, v);
        return 0;
    case T_FBSIZE: {
        unsigned w, h;
        int used = 0;
        if (sscanf(v, "%4ux%4u%n", &w, &h, &used) != 2 || (size_t)used != strlen(v) ||
            !isdigit((unsigned char)v[0]) || w < 320 || h < 200 || w > 4096 || h > 4096 ||
            w % 8 != 0)
            return fail(p,
                        "%s: '%s' is not WIDTHxHEIGHT (320x200 to 4096x4096, width a "
                        "multiple of 8)",
                        o->key, v);
        *(uint32_t *)field = w;
        *(uint32_t *)((char *)base + o->off2) = h;
        return 0;
    }
    case T_LIST: {
        char **l = NULL;
        size_t n = 0;
        rc = parse_list(p, o->key, v, &l, &n);
        if (rc < 0)
            return rc;
        size_t *np = (size_t *)((char *)base + o->off2);
        free_list(*(char ***)field, *np);
        *(char ***)field = l;
        *np = n;
        return 0;
    }
    case T_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1"))
            *(bool *)field = true;
        else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
            *(bool *)field = false;
        else
            return fail(p, "%s: '%s' is not true or false", o->key, v);
        return 0;
    case T_AUTOBOOL:
        if (!strcmp(v, "auto"))
            *(int *)field = -1;
        else if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1"))
            *(int *)field = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
            *(int *)field = 0;
        else
            return fail(p, "%s: '%s' is not auto, yes or no", o->key, v);
        return 0;
    case T_LOGOFF:
        if (strcmp(v, "wait") && strcmp(v, "force"))
            return fail(p, "%s: '%s' is not wait or force", o->key, v);
        *(bool *)field = !strcmp(v, "force");
        return 0;
    case T_SECCOMP:
        if (strcmp(v, "kill") && strcmp(v, "log"))
            return fail(p, "%s: '%s' is not kill or log", o->key, v);
        *(bool *)field = !strcmp(v, "log");
        return 0;
    case T_IFNAME:
        if (!valid_ifname(v))
            return fail(p, "%s: '%s' is not a network interface name (at most 15 bytes)", o->key,
                        v);
        free(*(char **)field);
        *(char **)field = vdi_xstrdup(v);
        return 0;
    case T_NETWORK: {
        char **bridge = (char **)((char *)base + o->off2);
        brk_net_mode_t m;
        if (strcmp(v, "none") == 0) {
            m = BRK_NET_NONE;
        } else if (strcmp(v, "nat") == 0) {
            m = BRK_NET_NAT;
        } else if (strncmp(v, "bridge:", 7) == 0 && valid_ifname(v + 7)) {
            m = BRK_NET_BRIDGE;
        } else {
            return fail(p,
                        "%s: '%s' is not none, nat or bridge:NAME (NAME an existing bridge, at "
                        "most 15 bytes)",
                        o->key, v);
        }
        *(brk_net_mode_t *)field = m;
        free(*bridge);
        *bridge = m == BRK_NET_BRIDGE ? vdi_xstrdup(v + 7) : NULL;
        return 0;
    }
    case T_RATE: {
        char num[32];
        size_t len = strlen(v);
        uint64_t mult = 1;
        if (len == 0 || len >= sizeof(num))
            return fail(p, "%s: '%s' is not a rate", o->key, v);
        memcpy(num, v, len + 1);
        switch (num[len - 1]) {
        case 'k':
        case 'K':
            mult = 1000;
            break;
        case 'M':
            mult = 1000000;
            break;
        case 'G':
            mult = 1000000000;
            break;
        default:
            break;
        }
        if (mult > 1)
            num[--len] = 0;
        rc = vdi_parse_u64(num, 0, UINT64_MAX / 1000000000, &x);
        if (rc < 0 || !decimal(num, 0) || x * mult > o->max || (x && x * mult < 8000))
            return fail(p,
                        "%s: '%s' is not a rate in bits per second from 8k to 100G (suffixes k, "
                        "M, G), or 0 for none",
                        o->key, v);
        *(uint64_t *)field = x * mult;
        return 0;
    }
    case T_SUBNET: {
        uint32_t ip, pref;
        char addr[32];
        const char *slash = strchr(v, '/');
        if (!slash || (size_t)(slash - v) >= sizeof(addr) || !decimal(slash + 1, 0))
            return fail(p, "%s: '%s' is not A.B.C.D/N", o->key, v);
        memcpy(addr, v, (size_t)(slash - v));
        addr[slash - v] = 0;
        pref = (uint32_t)atoi(slash + 1);
        if (brk_net_ip_parse(addr, &ip) < 0 || pref < 16 || pref > 28)
            return fail(p, "%s: '%s' is not A.B.C.D/N with N from 16 to 28", o->key, v);
        if (ip & ~(~0u << (32 - pref)))
            return fail(p, "%s: '%s' has host bits set (the network address is needed)", o->key, v);
        *(uint32_t *)field = ip;
        *(uint32_t *)((char *)base + o->off2) = pref;
        return 0;
    }
    case T_LOGLEVEL:
        rc = vdi_log_parse_level(v);
        if (rc < 0)
            return fail(p, "%s: '%s' is not err, warn, info or debug", o->key, v);
        *(int *)field = rc;
        return 0;
    }
    VDI_ASSERT(!"unknown option type");
}

static int set_defaults(struct parser *p, const struct opt *opts, size_t n, void *base)
{
    for (size_t i = 0; i < n; i++) {
        if (!opts[i].def)
            continue;
        int rc = set_opt(p, &opts[i], base, opts[i].def);
        VDI_ASSERT(rc == 0); /* our own defaults are valid */
    }
    return 0;
}

static void pool_free_fields(brk_pool_config_t *pl)
{
    free(pl->name);
    free(pl->image);
    free_list(pl->users, pl->n_users);
    free_list(pl->groups, pl->n_groups);
    free(pl->net_bridge);
}

void brk_config_free(brk_config_t *cfg)
{
    if (!cfg)
        return;
    free(cfg->state_dir);
    free(cfg->run_dir);
    free(cfg->admin_socket);
    free(cfg->admin_group);
    free(cfg->listen);
    free(cfg->vmm);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->pam_service);
    free(cfg->web_listen);
    free(cfg->metrics_listen);
    free(cfg->web_root);
    free(cfg->novnc_dir);
    free_list(cfg->vmm_env, cfg->n_vmm_env);
    free(cfg->nat_uplink);
    free(cfg->dnsmasq);
    for (size_t i = 0; i < cfg->n_pools; i++)
        pool_free_fields(&cfg->pools[i]);
    free(cfg->pools);
    free(cfg);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        *--e = 0;
    return s;
}

/* Which keys a section has set, to refuse repeats and to check required ones at its end. */
struct seen {
    uint64_t bits; /* one per key of the section's table */
};
_Static_assert(VDI_ARRAY_SIZE(daemon_opts) <= 64 && VDI_ARRAY_SIZE(auth_opts) <= 64 &&
                   VDI_ARRAY_SIZE(pool_opts) <= 64,
               "struct seen has one bit per key");

static int end_section(struct parser *p, const struct opt *opts, size_t n, struct seen *seen,
                       const char *section, unsigned header_line)
{
    for (size_t i = 0; i < n; i++)
        if (opts[i].required && !(seen->bits & (1ull << i))) {
            p->line = header_line;
            return fail(p, "[%s]: required key '%s' is missing", section, opts[i].key);
        }
    return 0;
}

int brk_config_parse(const char *text, size_t len, const char *name, brk_config_t **out, char *err,
                     size_t errlen)
{
    struct parser p = {.file = name ? name : "config", .line = 0, .err = err, .errlen = errlen};
    brk_config_t *cfg = vdi_xcalloc(1, sizeof(*cfg));
    const struct opt *opts = NULL;
    size_t n_opts = 0;
    void *base = NULL;
    struct seen seen = {0};
    char section[96] = "";
    unsigned header_line = 0;
    bool seen_daemon = false;
    int rc;

    if (errlen)
        err[0] = 0;
    if (len > MAX_CONFIG_BYTES) {
        rc = fail(&p, "file larger than %u bytes", MAX_CONFIG_BYTES);
        goto err_free;
    }
    set_defaults(&p, daemon_opts, VDI_ARRAY_SIZE(daemon_opts), cfg);
    auth_config_defaults(&cfg->auth); /* [auth]'s defaults live in auth/ alone */
    bool seen_auth = false;

    size_t pos = 0;
    while (pos < len) {
        size_t eol = pos;
        while (eol < len && text[eol] != '\n')
            eol++;
        p.line++;
        char linebuf[1024];
        if (eol - pos >= sizeof(linebuf)) {
            rc = fail(&p, "line longer than %zu bytes", sizeof(linebuf) - 1);
            goto err_free;
        }
        memcpy(linebuf, text + pos, eol - pos);
        linebuf[eol - pos] = 0;
        size_t linelen = eol - pos;
        pos = eol + 1;
        if (strlen(linebuf) != linelen) {
            rc = fail(&p, "NUL byte in line");
            goto err_free;
        }
        char *l = trim(linebuf);
        if (!*l || *l == '#' || *l == ';')
            continue;
        for (char *c = l; *c; c++)
            if ((unsigned char)*c < 0x20 && *c != '\t') {
                rc = fail(&p, "control character in line");
                goto err_free;
            }
        if (*l == '[') {
            char *close = strchr(l, ']');
            if (!close || *trim(close + 1)) {
                rc = fail(&p, "malformed section header (expected [vdid], [auth] or [pool NAME])");
                goto err_free;
            }
            *close = 0;
            char *sec = trim(l + 1);
            if (base) {
                rc = end_section(&p, opts, n_opts, &seen, section, header_line);
                if (rc < 0)
                    goto err_free;
            }
            seen.bits = 0;
            header_line = p.line;
            if (strcmp(sec, "vdid") == 0) {
                if (seen_daemon) {
                    rc = fail(&p, "section [vdid] appears twice");
                    goto err_free;
                }
                seen_daemon = true;
                opts = daemon_opts;
                n_opts = VDI_ARRAY_SIZE(daemon_opts);
                base = cfg;
                snprintf(section, sizeof(section), "vdid");
            } else if (strcmp(sec, "auth") == 0) {
                if (seen_auth) {
                    rc = fail(&p, "section [auth] appears twice");
                    goto err_free;
                }
                seen_auth = true;
                opts = auth_opts;
                n_opts = VDI_ARRAY_SIZE(auth_opts);
                base = cfg;
                snprintf(section, sizeof(section), "auth");
            } else if (strncmp(sec, "pool", 4) == 0 && (sec[4] == ' ' || sec[4] == '\t')) {
                char *pname = trim(sec + 4);
                if (!valid_name(pname)) {
                    rc = fail(&p,
                              "pool name '%s' is not valid (1-%d letters, digits, '.', "
                              "'-', '_')",
                              pname, MAX_NAME);
                    goto err_free;
                }
                if (brk_config_pool(cfg, pname)) {
                    rc = fail(&p, "pool '%s' is defined twice (first on line %u)", pname,
                              brk_config_pool(cfg, pname)->line);
                    goto err_free;
                }
                if (cfg->n_pools >= MAX_POOLS) {
                    rc = fail(&p, "more than %d pools", MAX_POOLS);
                    goto err_free;
                }
                cfg->pools = vdi_xrealloc(cfg->pools, (cfg->n_pools + 1) * sizeof(*cfg->pools));
                brk_pool_config_t *pl = &cfg->pools[cfg->n_pools++];
                memset(pl, 0, sizeof(*pl));
                pl->name = vdi_xstrdup(pname);
                pl->line = p.line;
                set_defaults(&p, pool_opts, VDI_ARRAY_SIZE(pool_opts), pl);
                opts = pool_opts;
                n_opts = VDI_ARRAY_SIZE(pool_opts);
                base = pl;
                snprintf(section, sizeof(section), "pool %s", pname);
            } else {
                rc = fail(&p, "unknown section [%s] (expected [vdid], [auth] or [pool NAME])", sec);
                goto err_free;
            }
            continue;
        }
        char *eq = strchr(l, '=');
        if (!eq) {
            rc = fail(&p, "expected 'key = value' or a [section]");
            goto err_free;
        }
        *eq = 0;
        char *key = trim(l);
        char *val = trim(eq + 1);
        if (!base) {
            rc = fail(&p, "key '%s' outside a section (start with [vdid] or [pool NAME])", key);
            goto err_free;
        }
        size_t i;
        for (i = 0; i < n_opts; i++)
            if (strcmp(opts[i].key, key) == 0)
                break;
        if (i == n_opts) {
            rc = fail(&p, "unknown key '%s' in [%s]", key, section);
            goto err_free;
        }
        if (seen.bits & (1ull << i)) {
            rc = fail(&p, "key '%s' set twice in [%s]", key, section);
            goto err_free;
        }
        seen.bits |= 1ull << i;
        if (!*val && opts[i].type != T_LIST) {
            rc = fail(&p, "%s: empty value", key);
            goto err_free;
        }
        rc = set_opt(&p, &opts[i], base, val);
        if (rc < 0)
            goto err_free;
        if (opts == pool_opts && opts[i].type == T_SIZE && strcmp(key, "memory") == 0 &&
            ((brk_pool_config_t *)base)->memory % MIB) {
            rc = fail(&p, "memory: '%s' is not a whole number of MiB", val);
            goto err_free;
        }
    }
    if (base) {
        rc = end_section(&p, opts, n_opts, &seen, section, header_line);
        if (rc < 0)
            goto err_free;
    }
    /* Derived defaults. */
    if (!cfg->admin_socket)
        cfg->admin_socket = vdi_xasprintf("%s/vdid.sock", cfg->run_dir);
    if (!cfg->pam_service)
        cfg->pam_service = vdi_xstrdup(cfg->auth.pam_service);
    /* What auth/ takes from [vdid]; borrowed from cfg (see brk_config_t.auth). [vdid]
     * admin_group (the admin socket's group) is also the group whose members get the admin
     * role; unset, auth/ keeps its own default. */
    cfg->auth.pam_service = cfg->pam_service;
    cfg->auth.tls_cert = cfg->tls_cert;
    cfg->auth.tls_key = cfg->tls_key;
    cfg->auth.state_dir = cfg->state_dir;
    if (cfg->admin_group)
        cfg->auth.admin_group = cfg->admin_group;
    if (!cfg->tls_cert != !cfg->tls_key) {
        p.line = 0;
        rc = fail(&p, "tls_cert and tls_key go together: set both or neither");
        goto err_free;
    }
    for (size_t i = 0; i < cfg->n_pools; i++) {
        brk_pool_config_t *pl = &cfg->pools[i];
        p.line = pl->line;
        if (pl->user_disk < 0) /* auto: every user of a dedicated pool has a data disk */
            pl->user_disk = pl->type == BRK_POOL_DEDICATED;
        if (pl->user_disk && pl->min_spares) {
            rc = fail(&p,
                      "[pool %s]: min_spares needs user_disk = no: a spare is started before "
                      "its user is known, so it cannot carry the user's data disk",
                      pl->name);
            goto err_free;
        }
        if (pl->vlan && pl->net != BRK_NET_BRIDGE) {
            rc = fail(&p, "[pool %s]: vlan needs network = bridge:NAME", pl->name);
            goto err_free;
        }
        if (pl->bandwidth_bps && pl->net == BRK_NET_NONE) {
            rc = fail(&p, "[pool %s]: bandwidth needs a network (network = nat or bridge:NAME)",
                      pl->name);
            goto err_free;
        }
        if (pl->subnet_prefix && pl->net != BRK_NET_NAT) {
            rc = fail(&p, "[pool %s]: subnet needs network = nat", pl->name);
            goto err_free;
        }
    }
    p.line = 0;
    char why[256];
    if (brk_net_resolve(cfg, why, sizeof(why)) < 0) {
        rc = fail(&p, "%s", why);
        goto err_free;
    }
    *out = cfg;
    return 0;
err_free:
    brk_config_free(cfg);
    return rc;
}

int brk_config_load(const char *path, brk_config_t **out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = -errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, vdi_strerror(e));
        return e;
    }
    vdi_buf_t b = VDI_BUF_INIT;
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0) {
            int e = -errno;
            if (e == -EINTR)
                continue;
            snprintf(err, errlen, "%s: cannot read: %s", path, vdi_strerror(e));
            close(fd);
            vdi_buf_free(&b);
            return e;
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > MAX_CONFIG_BYTES) {
            snprintf(err, errlen, "%s: file larger than %u bytes", path, MAX_CONFIG_BYTES);
            close(fd);
            vdi_buf_free(&b);
            return VDI_ECONFIG;
        }
        if (vdi_buf_append(&b, chunk, (size_t)n) < 0) {
            close(fd);
            vdi_buf_free(&b);
            return -ENOMEM;
        }
    }
    close(fd);
    int rc = brk_config_parse((const char *)b.data, b.len, path, out, err, errlen);
    vdi_buf_free(&b);
    return rc;
}

const brk_pool_config_t *brk_config_pool(const brk_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_pools; i++)
        if (strcmp(cfg->pools[i].name, name) == 0)
            return &cfg->pools[i];
    return NULL;
}

bool brk_pool_entitled(const brk_pool_config_t *pool, const char *user, const char *const *groups,
                       size_t n_groups)
{
    for (size_t i = 0; i < pool->n_users; i++)
        if (strcmp(pool->users[i], user) == 0)
            return true;
    for (size_t i = 0; i < pool->n_groups; i++)
        for (size_t j = 0; j < n_groups; j++)
            if (strcmp(pool->groups[i], groups[j]) == 0)
                return true;
    return false;
}

const char *brk_pool_type_name(brk_pool_type_t t)
{
    return t == BRK_POOL_DEDICATED ? "dedicated" : "floating";
}
