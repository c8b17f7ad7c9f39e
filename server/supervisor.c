/* server/supervisor.c: the set of desktops as a whole: re-attaching to the VMMs that kept running
 * while vdid was down, the periodic tick, and spares.
 *
 * Time-driven work (control socket connect retries, ready and shutdown deadlines, disconnect and
 * idle timeouts, exit polls, spares) runs from one periodic timer (TICK_MS) that scans the
 * desktops: a few hundred desktops cost microseconds per tick, and no per-desktop timers means
 * no per-desktop handle lifetimes to get wrong. How many spares a pool needs is the broker's
 * policy (brk_spares_plan); this file counts and acts.
 */
#define VDI_LOG_TAG "vm"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"
#include "server/desktop-internal.h"

#define TICK_MS         100
#define SPARES_EVERY_MS 2000

/* ---- spares ---------------------------------------------------------------------------------- */
void srv__spares_kick(srv_t *s)
{
    s->spares_wanted = true;
}

static bool is_spare(const srv_vm_t *vm)
{
    return !vm->owner[0] && (vm->state == BRK_DS_PROVISIONING || vm->state == BRK_DS_READY);
}

void srv__spares_check(srv_t *s)
{
    s->spares_wanted = false;
    s->last_spares = vdi_now_ms();
    uint64_t used;
    if (brk_usage(s->store, NULL, &used, NULL) < 0)
        return; /* logged by the store; try again on the next round */
    for (size_t i = 0; i < s->cfg->n_pools; i++) {
        const brk_pool_config_t *p = &s->cfg->pools[i];
        unsigned spares = 0, live = 0, ready = 0;
        vdi_list_t *it, *tmp;
        for (it = s->vms.next; it != &s->vms; it = it->next) {
            srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
            if (strcmp(vm->pool, p->name) != 0)
                continue;
            live++;
            spares += is_spare(vm);
            ready += is_spare(vm) && vm->state == BRK_DS_READY;
        }
        brk_spares_t plan = brk_spares_plan(p, live, spares, used, s->memory_budget);
        /* Surplus: ready spares go while more than min_spares are ready (a spare still booting
         * does not count: a login must find a ready one). First those a rollout moves off their
         * version (rollout.c made their replacements), then the newest (the oldest have waited
         * longest for a user). */
        for (int pass = 0; pass < 2; pass++)
            vdi_list_foreach_safe(it, tmp, &s->vms)
            {
                srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
                if (plan.drop && ready > p->min_spares && is_spare(vm) &&
                    vm->state == BRK_DS_READY && strcmp(vm->pool, p->name) == 0 &&
                    (pass == 1 || srv__rollout_outdated(vm))) {
                    plan.drop--;
                    ready--;
                    srv__desktop_recycle(vm, false,
                                         pass == 0 ? "replaced by a spare on the pool's new version"
                                                   : "surplus spare (more than min_spares)");
                }
            }
        if (vdi_now_ms() < s->spare_retry_at[i])
            continue;
        for (unsigned n = 0; n < plan.make; n++) {
            if (srv__desktop_provision(s, p, "", NULL) < 0)
                break; /* logged and recorded; try again on the next round */
            used += p->memory;
        }
    }
}

/* ---- control-socket connects: one timer for the earliest due ------------------------------------
 * A new VMM's `ready` can only be heard once vdid is connected, so connects run on a timer of
 * their own at the time each desktop asked for, not on the tick (which would add up to 100 ms to
 * every desktop's start). */
static void on_connect_due(uv_timer_t *t);

static void arm_connect(srv_t *s, uint64_t when)
{
    uint64_t now = vdi_now_ms();
    if (s->connect_due && s->connect_due <= when)
        return;
    s->connect_due = when;
    uv_timer_start(&s->connect_timer, on_connect_due, when > now ? when - now : 0, 0);
}

static void on_connect_due(uv_timer_t *t)
{
    srv_t *s = t->data;
    uint64_t now = vdi_now_ms(), next = 0;
    vdi_list_t *it, *tmp;
    s->connect_due = 0;
    vdi_list_foreach_safe(it, tmp, &s->vms)
    {
        srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        if (vm->next_connect && !vm->ctl && !vm->exit_poll && vm->next_connect <= now)
            srv__desktop_connect(vm);
    }
    for (it = s->vms.next; it != &s->vms; it = it->next) {
        srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        if (vm->next_connect && !vm->ctl && (!next || vm->next_connect < next))
            next = vm->next_connect;
    }
    if (next)
        arm_connect(s, next);
}

void srv__desktop_connect_at(srv_vm_t *vm, uint64_t when)
{
    vm->next_connect = when;
    arm_connect(vm->s, when);
}

/* ---- the tick -------------------------------------------------------------------------------- */
static void tick_desktop(srv_t *s, srv_vm_t *vm, uint64_t now)
{
    if (vm->exit_poll) {
        if (!srv__pid_alive(vm->pid)) {
            srv__desktop_gone(vm, vm->state != BRK_DS_RECYCLING,
                              vm->crash[0] ? vm->crash
                              : vm->off[0] ? vm->off
                                           : "vmm exited (status unknown: it was started by an "
                                             "earlier vdid)");
            return;
        }
    }
    if (vm->deadline && now >= vm->deadline) {
        vm->deadline = 0;
        if (vm->state == BRK_DS_PROVISIONING) {
            char why[96];
            snprintf(why, sizeof(why), "not ready after %us", s->cfg->ready_timeout_s);
            VDI_LOG_WARN("desktop=%" PRId64 " %s: killing its vmm", vm->id, why);
            snprintf(vm->crash, sizeof(vm->crash), "%s", why);
            brk_store_audit(s->store, NULL, "desktop.timeout", vm->id, vm->owner, why);
            srv__desktop_kill(vm, true);
        } else if (vm->state == BRK_DS_RECYCLING) {
            VDI_LOG_WARN("desktop=%" PRId64 " vmm did not exit within %us: killing it", vm->id,
                         s->cfg->shutdown_timeout_s + 5);
            srv__desktop_kill(vm, false);
        }
    }
    if (vm->disconnect_at && now >= vm->disconnect_at) {
        vm->disconnect_at = 0;
        if (vm->state == BRK_DS_DISCONNECTED)
            srv__desktop_recycle(vm, false, "disconnect timeout");
    }
}

static void on_tick(uv_timer_t *t)
{
    srv_t *s = t->data;
    uint64_t now = vdi_now_ms();
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &s->vms)
    {
        tick_desktop(s, vdi_list_entry(it, srv_vm_t, link), now);
    }
    srv__sessions_tick(s, now);
    if (!s->stopping && (s->spares_wanted || now - s->last_spares >= SPARES_EVERY_MS))
        srv__spares_check(s);
    srv__rollouts_tick(s, now);
}

/* ---- start and stop -------------------------------------------------------------------------- */
struct collect_ctx {
    brk_desktop_t *d;
    size_t n;
};

static int collect_live(const brk_desktop_t *d, void *ctx)
{
    struct collect_ctx *c = ctx;
    if (d->state == BRK_DS_FAILED || d->state == BRK_DS_GONE)
        return 0;
    c->d = vdi_xrealloc(c->d, (c->n + 1) * sizeof(*c->d));
    c->d[c->n++] = *d;
    return 0;
}

/* The real uid of process @pid (0 when unknown or root: not a jailed VMM). */
static uid_t pid_uid(pid_t pid)
{
    char path[64], line[256];
    unsigned uid = 0;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "Uid: %u", &uid) == 1)
            break;
    fclose(f);
    return (uid_t)uid;
}

/* A desktop whose VMM an earlier vdid started: follow it again through its control socket. */
static void attach_one(srv_t *s, const brk_desktop_t *d)
{
    srv_vm_t *vm = srv__desktop_new(s, d);
    uint64_t now = vdi_now_ms();
    if (!srv__pid_alive(vm->pid)) {
        srv__desktop_gone(vm, vm->state != BRK_DS_RECYCLING, "vmm gone while vdid was down");
        return;
    }
    vm->uid = pid_uid(vm->pid);
    const brk_pool_config_t *pl = srv__desktop_pool(vm);
    vm->user_disk = pl && pl->user_disk && vm->owner[0]; /* it holds its owner's data disk */
    if (s->cgroups && vm->uid) {
        char name[40];
        snprintf(name, sizeof(name), "desktop-%" PRId64, vm->id);
        vm->cgroup = srv__cgroup_open(s->cgroups, name);
    }
    VDI_LOG_INFO("desktop=%" PRId64 " state=%s: re-attaching to vmm pid=%d uid=%u", vm->id,
                 brk_desktop_state_name(vm->state), (int)vm->pid, (unsigned)vm->uid);
    brk_store_audit(s->store, NULL, "vmm.reattach", vm->id, vm->owner, NULL);
    if (vm->state == BRK_DS_IN_USE)
        srv__desktop_set_state(vm, BRK_DS_DISCONNECTED, "vdid restarted");
    if (vm->state == BRK_DS_DISCONNECTED) {
        const brk_pool_config_t *p = srv__desktop_pool(vm);
        if (p && p->type == BRK_POOL_FLOATING)
            vm->disconnect_at = now + (uint64_t)p->disconnect_timeout_s * 1000;
    }
    /* A provisioning desktop may have become ready while we were down: the status reply on
     * connect says so (vmm/vmm.h: `ready`). Until then its ready deadline runs anew. */
    if (vm->state == BRK_DS_PROVISIONING)
        vm->deadline = now + (uint64_t)s->cfg->ready_timeout_s * 1000;
    else if (vm->state != BRK_DS_RECYCLING)
        vm->ready_at = now; /* a rollout's health window starts again */
    if (vm->state == BRK_DS_RECYCLING)
        vm->deadline = now + (uint64_t)s->cfg->shutdown_timeout_s * 1000;
    srv__desktop_connect_at(vm, now);
    if (!srv__desktop_pool(vm)) {
        VDI_LOG_WARN("desktop=%" PRId64 " pool=%s is no longer in the configuration: stopping "
                     "its VMM, keeping its disk (vdictl desktops destroy %" PRId64 " clears it)",
                     vm->id, vm->pool, vm->id);
        vm->orphan = true;
        srv__desktop_recycle(vm, false, "its pool is no longer in the configuration");
    }
}

struct ids {
    int64_t *v;
    size_t n;
};

static int collect_session(const brk_session_t *se, void *ctx)
{
    struct ids *ids = ctx;
    ids->v = vdi_xrealloc(ids->v, (ids->n + 1) * sizeof(*ids->v));
    ids->v[ids->n++] = se->id;
    return 0;
}

int srv__vms_start(srv_t *s)
{
    vdi_list_init(&s->vms);
    srv__logins_init(s);
    s->spare_retry_at = vdi_xcalloc(s->cfg->n_pools + 1, sizeof(*s->spare_retry_at));
    /* Sessions are connections: none survives the vdid that carried it. */
    struct ids open = {0};
    int rc = brk_store_session_foreach(s->store, false, collect_session, &open);
    for (size_t i = 0; rc == 0 && i < open.n; i++)
        brk_store_session_close(s->store, open.v[i], "vdid restarted");
    free(open.v);
    if (rc < 0)
        return rc;
    uv_timer_init(s->loop, &s->tick_timer);
    s->tick_timer.data = s;
    uv_timer_init(s->loop, &s->connect_timer);
    s->connect_timer.data = s;
    s->connect_due = 0;
    /* Read first, act after: acting writes to the store. */
    struct collect_ctx c = {0};
    rc = brk_store_desktop_foreach(s->store, false, collect_live, &c);
    if (rc == 0)
        for (size_t i = 0; i < c.n; i++)
            attach_one(s, &c.d[i]);
    free(c.d);
    if (rc < 0)
        return rc;
    uv_timer_start(&s->tick_timer, on_tick, 0, TICK_MS);
    s->spares_wanted = true;
    s->vms_started = true;
    return 0;
}

void srv__vms_stop(srv_t *s)
{
    uv_timer_stop(&s->tick_timer);
    uv_timer_stop(&s->connect_timer);
    srv__logins_fini(s);
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &s->vms)
    {
        srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        srv__session_detach(vm, "the server is shutting down", true);
        /* Stop watching, do not kill: a restarted vdid re-attaches. */
        srv__desktop_free(vm);
    }
    uv_close((uv_handle_t *)&s->tick_timer, NULL);
    uv_close((uv_handle_t *)&s->connect_timer, NULL);
    free(s->spare_retry_at);
    s->spare_retry_at = NULL;
}
