/* server/admin-cmds.c: what the admin socket's commands do. Each takes the request's "args"
 * object (absent = empty) and returns a result or an error message; the table at the end is the
 * list of commands (docs/admin.md describes them). */
#define VDI_LOG_TAG "admin"
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vdi.h"
#include "server/internal-web.h"
#include "server/internal.h"
#include "server/patch-internal.h"

typedef json_t *(*cmd_fn)(srv_t *s, const struct srv_caller *who, json_t *args, char *err,
                          size_t errlen);

static json_t *desktop_json(const brk_desktop_t *d)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:I, s:s, s:s, s:s}", "id",
                     (json_int_t)d->id, "pool", d->pool, "owner", d->owner, "state",
                     brk_desktop_state_name(d->state), "image", d->image, "image_version",
                     (json_int_t)d->image_version, "overlay", d->overlay, "vmm_pid",
                     (json_int_t)d->vmm_pid, "memory", (json_int_t)d->memory, "created",
                     (json_int_t)d->created, "updated", (json_int_t)d->updated, "reason", d->reason,
                     "mac", d->mac, "ip", d->ip);
}

static json_t *session_json(const brk_session_t *se)
{
    return json_pack("{s:I, s:s, s:I, s:s, s:I, s:I, s:s}", "id", (json_int_t)se->id, "user",
                     se->user, "desktop", (json_int_t)se->desktop, "client", se->client, "started",
                     (json_int_t)se->started, "ended", (json_int_t)se->ended, "end_reason",
                     se->end_reason);
}

/* Argument helpers: each writes @err and returns false on a bad argument. */
static bool arg_string(json_t *args, const char *key, const char **out, char *err, size_t errlen)
{
    json_t *v = json_object_get(args, key);
    *out = NULL;
    if (!v)
        return true;
    if (!json_is_string(v)) {
        snprintf(err, errlen, "argument '%s' must be a string", key);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

static bool arg_bool(json_t *args, const char *key, bool *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(args, key);
    *out = false;
    if (!v)
        return true;
    if (!json_is_boolean(v)) {
        snprintf(err, errlen, "argument '%s' must be true or false", key);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

static bool arg_int(json_t *args, const char *key, bool required, int64_t min, int64_t max,
                    int64_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(args, key);
    if (!v) {
        if (required)
            snprintf(err, errlen, "argument '%s' is required", key);
        return !required;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        snprintf(err, errlen, "argument '%s' must be a whole number from %" PRId64 " to %" PRId64,
                 key, min, max);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

struct list_ctx {
    json_t *arr;
    const char *pool;
    int state;
    uint64_t mem_used;
    unsigned by_state[BRK_DS__COUNT];
};

static int collect_desktop(const brk_desktop_t *d, void *ctx)
{
    struct list_ctx *l = ctx;
    if (l->pool && strcmp(l->pool, d->pool) != 0)
        return 0;
    if (l->state >= 0 && (int)d->state != l->state)
        return 0;
    l->by_state[d->state]++;
    if (d->state != BRK_DS_GONE && d->state != BRK_DS_FAILED)
        l->mem_used += d->memory;
    if (l->arr)
        json_array_append_new(l->arr, desktop_json(d));
    return 0;
}

static json_t *cmd_desktops_list(srv_t *s, const struct srv_caller *who, json_t *args, char *err,
                                 size_t errlen)
{
    VDI_UNUSED(who);
    struct list_ctx l = {.arr = json_array(), .state = -1};
    const char *state = NULL;
    bool all;
    if (!arg_string(args, "pool", &l.pool, err, errlen) ||
        !arg_string(args, "state", &state, err, errlen) ||
        !arg_bool(args, "all", &all, err, errlen))
        goto err;
    if (state) {
        l.state = brk_desktop_state_parse(state);
        if (l.state < 0) {
            snprintf(err, errlen, "unknown state '%s'", state);
            goto err;
        }
        all = all || l.state == BRK_DS_GONE;
    }
    int rc = brk_store_desktop_foreach(s->store, all, collect_desktop, &l);
    if (rc < 0) {
        snprintf(err, errlen, "state database: %s", vdi_strerror(rc));
        goto err;
    }
    return l.arr;
err:
    json_decref(l.arr);
    return NULL;
}

static json_t *cmd_desktops_show(srv_t *s, const struct srv_caller *who, json_t *args, char *err,
                                 size_t errlen)
{
    VDI_UNUSED(who);
    int64_t id = 0;
    brk_desktop_t d;
    if (!arg_int(args, "id", true, 1, INT64_MAX, &id, err, errlen))
        return NULL;
    int rc = brk_store_desktop_get(s->store, id, &d);
    if (rc < 0) {
        snprintf(err, errlen, "desktop %" PRId64 ": %s", id,
                 rc == -ENOENT ? "no such desktop" : vdi_strerror(rc));
        return NULL;
    }
    json_t *j = desktop_json(&d);
    /* The guest agent, as its VMM last reported it ("" before any report). */
    srv_vm_t *vm = srv__vm_find(s, id);
    bool up = false;
    json_object_set_new(j, "agent", json_string(vm ? srv__vm_agent(vm, &up) : ""));
    json_object_set_new(j, "agent_up", json_boolean(up));
    return j;
}

static json_t *desktop_action(srv_t *s, json_t *args, bool hard, char *err, size_t errlen)
{
    int64_t id = 0;
    brk_desktop_t d;
    if (!arg_int(args, "id", true, 1, INT64_MAX, &id, err, errlen))
        return NULL;
    int rc =
        srv__vm_recycle(s, id, hard, hard ? "destroyed by the admin" : "recycled by the admin");
    if (rc == 0)
        rc = brk_store_desktop_get(s->store, id, &d);
    if (rc < 0) {
        snprintf(err, errlen, "desktop %" PRId64 ": %s", id,
                 rc == -ENOENT      ? "no such desktop"
                 : rc == VDI_ESTATE ? "already gone or going"
                                    : vdi_strerror(rc));
        return NULL;
    }
    return desktop_json(&d);
}

static json_t *cmd_desktops_destroy(srv_t *s, const struct srv_caller *who, json_t *args, char *err,
                                    size_t errlen)
{
    VDI_UNUSED(who);
    return desktop_action(s, args, true, err, errlen);
}

static json_t *cmd_desktops_recycle(srv_t *s, const struct srv_caller *who, json_t *args, char *err,
                                    size_t errlen)
{
    VDI_UNUSED(who);
    return desktop_action(s, args, false, err, errlen);
}

static json_t *cmd_sessions_disconnect(srv_t *s, const struct srv_caller *who, json_t *args,
                                       char *err, size_t errlen)
{
    VDI_UNUSED(who);
    int64_t id = 0;
    if (!arg_int(args, "id", true, 1, INT64_MAX, &id, err, errlen))
        return NULL;
    if (srv__session_kick(s, id, "disconnected by the admin") < 0) {
        snprintf(err, errlen, "session %" PRId64 ": no such open session", id);
        return NULL;
    }
    brk_store_audit(s->store, "admin", "session.disconnect", 0, NULL, NULL);
    return json_pack("{s:I}", "id", (json_int_t)id);
}

static int count_sessions(const brk_session_t *se, void *ctx)
{
    VDI_UNUSED(se);
    (*(unsigned *)ctx)++;
    return 0;
}

static json_t *cmd_pools_list(srv_t *s, const struct srv_caller *who, json_t *args, char *err,
                              size_t errlen)
{
    VDI_UNUSED(who);
    VDI_UNUSED(args);
    json_t *arr = json_array();
    for (size_t i = 0; i < s->cfg->n_pools; i++) {
        const brk_pool_config_t *p = &s->cfg->pools[i];
        struct list_ctx l = {.pool = p->name, .state = -1};
        int rc = brk_store_desktop_foreach(s->store, false, collect_desktop, &l);
        if (rc < 0) {
            snprintf(err, errlen, "state database: %s", vdi_strerror(rc));
            json_decref(arr);
            return NULL;
        }
        json_t *users = json_array(), *groups = json_array();
        for (size_t j = 0; j < p->n_users; j++)
            json_array_append_new(users, json_string(p->users[j]));
        for (size_t j = 0; j < p->n_groups; j++)
            json_array_append_new(groups, json_string(p->groups[j]));
        char fb[32];
        snprintf(fb, sizeof(fb), "%ux%u", p->fb_width, p->fb_height);
        char net[96], sub[BRK_NET_IP_LEN];
        if (p->net == BRK_NET_NAT) {
            brk_net_ip_str(p->subnet, sub);
            snprintf(net, sizeof(net), "nat %s/%u%s", sub, p->subnet_prefix,
                     p->isolate ? "" : " (not isolated)");
        } else if (p->net == BRK_NET_BRIDGE) {
            snprintf(net, sizeof(net), "bridge:%s%s%.0u%s", p->net_bridge, p->vlan ? " vlan " : "",
                     p->vlan, p->isolate ? "" : " (not isolated)");
        } else {
            snprintf(net, sizeof(net), "none");
        }
        unsigned live = 0;
        for (int st = 0; st < BRK_DS__COUNT; st++)
            if (st != BRK_DS_GONE && st != BRK_DS_FAILED)
                live += l.by_state[st];
        json_array_append_new(
            arr,
            json_pack("{s:s, s:s, s:s, s:i, s:I, s:s, s:i, s:i, s:o, s:o, s:i, s:i, s:i,"
                      " s:i, s:i, s:s}",
                      "name", p->name, "image", p->image, "type", brk_pool_type_name(p->type),
                      "vcpus", (int)p->vcpus, "memory", (json_int_t)p->memory, "framebuffer", fb,
                      "min_spares", (int)p->min_spares, "max_desktops", (int)p->max_desktops,
                      "users", users, "groups", groups, "disconnect_timeout",
                      (int)p->disconnect_timeout_s, "idle_timeout", (int)p->idle_timeout_s,
                      "desktops", (int)live, "ready", (int)l.by_state[BRK_DS_READY], "in_use",
                      (int)l.by_state[BRK_DS_IN_USE], "network", net));
    }
    return arr;
}

static int collect_session(const brk_session_t *se, void *ctx)
{
    json_array_append_new(ctx, session_json(se));
    return 0;
}

static json_t *cmd_sessions_list(srv_t *s, const struct srv_caller *who, json_t *args, char *err,
                                 size_t errlen)
{
    VDI_UNUSED(who);
    bool all;
    if (!arg_bool(args, "all", &all, err, errlen))
        return NULL;
    json_t *arr = json_array();
    int rc = brk_store_session_foreach(s->store, all, collect_session, arr);
    if (rc < 0) {
        snprintf(err, errlen, "state database: %s", vdi_strerror(rc));
        json_decref(arr);
        return NULL;
    }
    return arr;
}

/* Length of the UTF-8 sequence at @p (@n bytes left) if it is a valid one (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), else 0. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4
                                          : 0;
    if (!len || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) || (c == 0xf0 && p[1] < 0x90) ||
        (c == 0xf4 && p[1] > 0x8f))
        return 0;
    return len;
}

/* Audit text as a JSON string. Rows hold what clients sent, and a user name need not be UTF-8,
 * which JSON strings must be (jansson refuses such a string, and the row would vanish from the
 * reply). Text that is valid UTF-8 without control characters goes as it is; other text is
 * escaped: each byte outside a valid sequence and each control character as \xNN, and a
 * backslash as \\, and its field is named in the row's "escaped" list. */
static json_t *audit_text(const char *text, const char *field, json_t *escaped)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t n = strlen(text), i = 0, k;
    while (i < n && (k = utf8_seq(p + i, n - i)) && !(k == 1 && (p[i] < 0x20 || p[i] == 0x7f)))
        i += k;
    if (i == n)
        return json_string(text);
    vdi_buf_t b = VDI_BUF_INIT;
    for (i = 0; i < n; i += k) {
        k = utf8_seq(p + i, n - i);
        if (k == 1 && p[i] == '\\')
            vdi_buf_printf(&b, "\\\\");
        else if (k == 0 || (k == 1 && (p[i] < 0x20 || p[i] == 0x7f)))
            vdi_buf_printf(&b, "\\x%02x", p[i]);
        else
            vdi_buf_append(&b, p + i, k);
        k = k ? k : 1;
    }
    vdi_buf_append(&b, "", 1);
    json_array_append_new(escaped, json_string(field));
    json_t *j = json_string((const char *)b.data);
    vdi_buf_free(&b);
    return j;
}

static int collect_audit(const brk_audit_t *a, void *ctx)
{
    json_t *escaped = json_array();
    json_t *actor = audit_text(a->actor, "actor", escaped);
    json_t *event = audit_text(a->event, "event", escaped);
    json_t *user = audit_text(a->user, "user", escaped);
    json_t *detail = audit_text(a->detail, "detail", escaped);
    json_t *row = json_pack("{s:I, s:I, s:o, s:o, s:I, s:o, s:o}", "id", (json_int_t)a->id, "ts",
                            (json_int_t)a->ts, "actor", actor, "event", event, "desktop",
                            (json_int_t)a->desktop, "user", user, "detail", detail);
    if (row && json_array_size(escaped))
        json_object_set(row, "escaped", escaped);
    json_decref(escaped);
    if (!row)
        return -ENOMEM;
    json_array_append_new(ctx, row);
    return 0;
}

static json_t *cmd_audit_tail(srv_t *s, const struct srv_caller *who, json_t *args, char *err,
                              size_t errlen)
{
    VDI_UNUSED(who);
    int64_t n = 20;
    if (!arg_int(args, "n", false, 1, 100000, &n, err, errlen))
        return NULL;
    json_t *arr = json_array();
    int rc = brk_store_audit_tail(s->store, (unsigned)n, collect_audit, arr);
    if (rc < 0) {
        snprintf(err, errlen, "state database: %s", vdi_strerror(rc));
        json_decref(arr);
        return NULL;
    }
    return arr;
}

/* A listener's gate: connections before login now, and since start admitted and refused. */
static json_t *gate_json(const srv_gate_t *g)
{
    if (!g)
        return json_null();
    srv_gate_stats_t st;
    srv__gate_stats(g, &st);
    return json_pack("{s:i, s:i, s:I, s:I, s:I}", "open", (int)st.open, "addresses", (int)st.addrs,
                     "accepted", (json_int_t)st.accepted, "refused_per_addr",
                     (json_int_t)st.refused_addr, "refused_total", (json_int_t)st.refused_total);
}

static json_t *cmd_status(srv_t *s, const struct srv_caller *who, json_t *args, char *err,
                          size_t errlen)
{
    VDI_UNUSED(who);
    VDI_UNUSED(args);
    struct list_ctx l = {.state = -1};
    unsigned sessions = 0;
    uint64_t host = 0;
    int rc = brk_store_desktop_foreach(s->store, false, collect_desktop, &l);
    if (rc == 0)
        rc = brk_store_session_foreach(s->store, false, count_sessions, &sessions);
    if (rc < 0) {
        snprintf(err, errlen, "state database: %s", vdi_strerror(rc));
        return NULL;
    }
    srv__host_memory(&host);
    json_t *states = json_object();
    for (int st = 0; st < BRK_DS__COUNT; st++)
        if (st != BRK_DS_GONE)
            json_object_set_new(states, brk_desktop_state_name(st), json_integer(l.by_state[st]));
    return json_pack(
        "{s:s, s:I, s:I, s:s, s:i, s:i, s:i, s:o, s:i, s:{s:I, s:I, s:I, s:I, s:i}, s:{s:o, s:o}}",
        "version", VDI_VERSION, "pid", (json_int_t)getpid(), "uptime",
        (json_int_t)((vdi_now_ms() - s->started_ms) / 1000), "listen", s->cfg->listen, "rfb_port",
        srv__gateway_port(s->gateway), "metrics_port", srv__metrics_port(s->metrics), "pools",
        (int)s->cfg->n_pools, "desktops", states, "sessions", (int)sessions, "memory", "host",
        (json_int_t)host, "budget", (json_int_t)s->memory_budget, "used", (json_int_t)l.mem_used,
        "free", (json_int_t)(s->memory_budget > l.mem_used ? s->memory_budget - l.mem_used : 0),
        "overcommit", (int)s->cfg->overcommit_pct, "preauth", "rfb",
        gate_json(srv__gateway_gate(s->gateway)), "web",
        gate_json(s->web ? (const srv_gate_t *)srv__web_gate(s->web) : NULL));
}

/* image.patch {image, script | bundle | script_text, deadline (s), memory (MiB), vcpus, flatten,
 * notes, network (a pool)}: start a patch; the result is its id (follow it with
 * image.patch-status). */
static json_t *cmd_image_patch(srv_t *s, const struct srv_caller *who, json_t *args, char *err,
                               size_t errlen)
{
    struct srv_patch_req r = {.actor = "admin"};
    if (who)
        r.reader = (struct srv_reader){.any = who->uid == 0, .uid = who->uid, .gid = who->gid};
    int64_t deadline = SRV_PATCH_DEADLINE_S, mem = SRV_PATCH_MEMORY >> 20, vcpus = 1;
    if (!arg_string(args, "image", &r.image, err, errlen) ||
        !arg_string(args, "script", &r.script, err, errlen) ||
        !arg_string(args, "bundle", &r.bundle, err, errlen) ||
        !arg_string(args, "script_text", &r.script_text, err, errlen) ||
        !arg_string(args, "notes", &r.notes, err, errlen) ||
        !arg_string(args, "network", &r.network, err, errlen) ||
        !arg_int(args, "deadline", false, 1, 7 * 24 * 3600, &deadline, err, errlen) ||
        !arg_int(args, "memory", false, 64, 1 << 20, &mem, err, errlen) ||
        !arg_int(args, "vcpus", false, 1, 16 /* vdi-vmm --vcpus */, &vcpus, err, errlen) ||
        !arg_bool(args, "flatten", &r.flatten, err, errlen))
        return NULL;
    if (!who && (r.script || r.bundle)) {
        /* The web view's admin is not a user of this host: no host paths for them. */
        snprintf(err, errlen,
                 "a script or bundle path is read on the vdid host: use vdictl there, "
                 "or send the script's text (script_text)");
        return NULL;
    }
    r.deadline_s = (uint32_t)deadline;
    r.memory = (uint64_t)mem << 20;
    r.vcpus = (unsigned)vcpus;
    char id[SRV_PATCH_ID_MAX];
    if (srv__patch_start(s, &r, id, sizeof(id), err, errlen) < 0)
        return NULL;
    return json_pack("{s:s}", "id", id);
}

/* image.patch-status {id, from}: a patch's state and its output from byte @from on. */
static json_t *cmd_image_patch_status(srv_t *s, const struct srv_caller *who, json_t *args,
                                      char *err, size_t errlen)
{
    VDI_UNUSED(who);
    const char *id;
    int64_t from = 0;
    if (!arg_string(args, "id", &id, err, errlen) ||
        !arg_int(args, "from", false, 0, INT64_MAX, &from, err, errlen))
        return NULL;
    if (!id) {
        snprintf(err, errlen, "argument 'id' is required");
        return NULL;
    }
    json_t *j = srv__patch_json(s, id, (uint64_t)from);
    if (!j)
        snprintf(err, errlen, "no patch '%.64s'", id);
    return j;
}

static json_t *cmd_image_patches(srv_t *s, const struct srv_caller *who, json_t *args, char *err,
                                 size_t errlen)
{
    VDI_UNUSED(who);
    VDI_UNUSED(args);
    VDI_UNUSED(err);
    VDI_UNUSED(errlen);
    return srv__patches_json(s);
}

static json_t *cmd_image_rollouts(srv_t *s, const struct srv_caller *who, json_t *args, char *err,
                                  size_t errlen)
{
    VDI_UNUSED(who);
    VDI_UNUSED(err);
    VDI_UNUSED(errlen);
    return srv__rollouts_json(s, json_is_true(json_object_get(args, "history")));
}

static const struct {
    const char *name;
    cmd_fn fn;
} commands[] = {
    {"image.rollouts", cmd_image_rollouts},
    {"image.patch", cmd_image_patch},
    {"image.patch-status", cmd_image_patch_status},
    {"image.patches", cmd_image_patches},
    {"status", cmd_status},
    {"pools.list", cmd_pools_list},
    {"desktops.list", cmd_desktops_list},
    {"desktops.show", cmd_desktops_show},
    {"desktops.destroy", cmd_desktops_destroy},
    {"desktops.recycle", cmd_desktops_recycle},
    {"sessions.list", cmd_sessions_list},
    {"sessions.disconnect", cmd_sessions_disconnect},
    {"audit.tail", cmd_audit_tail},
};

json_t *srv__admin_dispatch(srv_t *s, json_t *req, const struct srv_caller *who)
{
    char err[512] = "";
    if (!json_is_object(req))
        return json_pack("{s:b, s:s}", "ok", 0, "error", "request must be a JSON object");
    json_t *cmd = json_object_get(req, "cmd");
    if (!json_is_string(cmd))
        return json_pack("{s:b, s:s}", "ok", 0, "error",
                         "request needs \"cmd\": a command name string");
    json_t *args = json_object_get(req, "args");
    json_t *empty = NULL;
    if (!args) {
        args = empty = json_object();
    } else if (!json_is_object(args)) {
        return json_pack("{s:b, s:s}", "ok", 0, "error", "\"args\" must be a JSON object");
    }
    const char *name = json_string_value(cmd);
    json_t *result = NULL;
    size_t i;
    for (i = 0; i < VDI_ARRAY_SIZE(commands); i++)
        if (strcmp(commands[i].name, name) == 0)
            break;
    if (i == VDI_ARRAY_SIZE(commands)) {
        snprintf(err, sizeof(err), "unknown command '%.64s'", name);
    } else {
        result = commands[i].fn(s, who, args, err, sizeof(err));
        if (!result && !err[0])
            snprintf(err, sizeof(err), "%s failed", name);
    }
    json_decref(empty);
    if (!result)
        return json_pack("{s:b, s:s}", "ok", 0, "error", err);
    return json_pack("{s:b, s:o}", "ok", 1, "result", result);
}
