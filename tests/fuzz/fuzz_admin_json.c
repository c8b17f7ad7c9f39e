// fuzz-srcs: server/admin-cmds.c broker/*.c auth/config.c vmm/proto.c common/*.c
// fuzz-libs: -lsqlite3 -ljansson
/* libFuzzer target for vdid's admin socket commands (server/admin-cmds.c): each input line is a
 * request as a client of the admin socket sends it (hostile JSON, wrong types, huge numbers,
 * unknown commands and arguments), dispatched against a real state store (SQLite in memory, with
 * a few desktops and sessions) and a real configuration. Every request gets an object with a
 * boolean "ok"; nothing crashes or leaks. What lies beyond the commands (recycling a running
 * desktop, kicking a session, the gateway's port, the host's memory) is a stand-in here. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"
#include "server/internal-web.h"
#include "server/internal.h"
#include "server/patch-internal.h"

int srv__vm_recycle(srv_t *s, int64_t id, bool hard, const char *why)
{
    brk_desktop_t d;
    (void)hard;
    int rc = brk_store_desktop_get(s->store, id, &d);
    if (rc < 0)
        return rc;
    return brk_store_desktop_set_state(s->store, id, BRK_DS_RECYCLING, why);
}

int srv__session_kick(srv_t *s, int64_t id, const char *reason)
{
    (void)s;
    (void)reason;
    return id == 1 ? 0 : -ENOENT;
}

int srv__host_memory(uint64_t *out)
{
    *out = 8ull << 30;
    return 0;
}

srv_vm_t *srv__vm_find(srv_t *s, int64_t id)
{
    (void)s;
    (void)id;
    return NULL; /* no desktop runs here: the store alone answers */
}

const char *srv__vm_agent(const srv_vm_t *vm, bool *up)
{
    (void)vm;
    *up = false;
    return "";
}

int srv__metrics_port(const srv_metrics_t *m)
{
    (void)m;
    return 0;
}

int srv__gateway_port(const srv_gateway_t *gw)
{
    (void)gw;
    return 5900;
}

/* The listeners' gates: none here (the status command reports null for a missing one). */
const srv_gate_t *srv__gateway_gate(const srv_gateway_t *gw)
{
    (void)gw;
    return NULL;
}

const struct srv_gate *srv__web_gate(const struct srv_web *w)
{
    (void)w;
    return NULL;
}

void srv__gate_stats(const srv_gate_t *g, srv_gate_stats_t *out)
{
    (void)g;
    memset(out, 0, sizeof(*out));
}

/* Patches and rollouts (server/patch.c, server/rollout.c) run VMs and read the catalogue: the
 * commands' argument checks are fuzzed here; what they start is a stand-in. */
int srv__patch_start(struct srv *s, const struct srv_patch_req *r, char *id, size_t idlen,
                     char *why, size_t whylen)
{
    (void)s;
    (void)r;
    (void)why;
    (void)whylen;
    snprintf(id, idlen, "p1");
    return 0;
}

json_t *srv__patch_json(struct srv *s, const char *id, uint64_t from)
{
    (void)s;
    (void)from;
    return strcmp(id, "p1") ? NULL : json_pack("{s:s, s:s}", "id", "p1", "state", "running");
}

json_t *srv__patches_json(struct srv *s)
{
    (void)s;
    return json_array();
}

json_t *srv__rollouts_json(srv_t *s, bool history)
{
    (void)s;
    return json_pack("[{s:s, s:b}]", "pool", "lab", "history", history);
}

static srv_t *fixture(void)
{
    static srv_t s;
    static const char conf[] = "[vdid]\nstate_dir = /nonexistent\n[pool lab]\nimage = t\n"
                               "users = alice\n[pool office]\nimage = t\ntype = dedicated\n";
    char err[256];
    int64_t id, sid;
    if (s.store)
        return &s;
    vdi_log_set_level(VDI_LOG_LEVEL_ERR);
    if (brk_config_parse(conf, sizeof(conf) - 1, "fuzz", &s.cfg, err, sizeof(err)) < 0 ||
        brk_store_open(":memory:", &s.store) < 0 || brk_store_sync_pools(s.store, s.cfg) < 0)
        abort();
    brk_store_desktop_create(s.store, "lab", "alice", "t", 256 << 20, &id);
    brk_store_desktop_set_state(s.store, id, BRK_DS_READY, NULL);
    brk_store_session_open(s.store, "alice", id, "192.0.2.1", &sid);
    brk_store_desktop_create(s.store, "office", "", "t", 512 << 20, &id);
    brk_store_audit(s.store, "admin", "desktop.recycle", id, "bob\xff", "a detail");
    s.memory_budget = 4ull << 30;
    vdi_list_init(&s.vms);
    vdi_list_init(&s.logins);
    return &s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    srv_t *s = fixture();
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = 0;
    for (char *line = buf, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        json_t *req = json_loads(line, JSON_REJECT_DUPLICATES, NULL);
        if (!req)
            continue;
        static const struct srv_caller root = {0, 0};
        json_t *rep = srv__admin_dispatch(s, req, (size & 1) ? &root : NULL);
        if (!json_is_object(rep) || !json_is_boolean(json_object_get(rep, "ok")))
            abort();
        char *text = json_dumps(rep, JSON_COMPACT);
        if (!text)
            abort();
        free(text);
        json_decref(rep);
        json_decref(req);
    }
    free(buf);
    return 0;
}
