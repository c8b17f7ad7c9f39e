/* server/rollout.c: pools follow their image's current version, by rollouts (docs/images.md).
 *
 * When the current version of a pool's image changes (a patch published it, or an admin ran
 * `vdictl image set-current`), the pool moves to it in steps:
 *   canary   a share of the pool (canary_percent, at least one desktop) moves: idle desktops
 *            (spares) are recycled at once and their replacements, like every new desktop while
 *            the share is not full, get the new version; busy desktops move at their user's
 *            logout, or after logoff_grace with logoff = force;
 *   health   a desktop on the new version is healthy once it has been ready for health_window
 *            (it reached `ready` within ready_timeout, or it would have failed) without failing;
 *   waves    once the canary is healthy the rest moves in `waves` steps, each waiting for the
 *            previous one to be healthy;
 *   rollback if more than max_unhealthy desktops on the new version fail before they are
 *            healthy, the rollout stops by itself: the image's current version goes back to the
 *            old one and every desktop on the new version moves back (idle ones at once).
 * Users' data disks are never touched: a move recycles the system disk only.
 *
 * Each pool's latest rollout is kept in the store (brk_store_rollout_*) so that a restarted vdid
 * goes on where it stopped. The image's current version is read on the catalogue worker every
 * POLL_MS (and at once after a patch), never on the loop.
 *
 * Thread: the loop, except poll_work (the catalogue worker).
 */
#define VDI_LOG_TAG "rollout"
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/vdi.h"
#include "golden-images/img.h"
#include "server/desktop-internal.h"

#define POLL_MS 2000
#define STEP_MS 500

/* One pool's rollout state, s->rollouts[i] for config pool i. */
struct srv_rollout {
    brk_rollout_t r;  /* its latest rollout (r.id 0: none yet) */
    uint32_t current; /* the image's current version, as last read (0: not read yet) */
    bool from_ref;    /* we hold the reference "rollout-POOL" on r.from */
    uint32_t ref_ver; /* ... the version it is on */
};

/* What one desktop counts for. */
struct counts {
    unsigned n;        /* desktops of the pool that are not being recycled */
    unsigned on_to;    /* on (or being made on) the new version */
    unsigned healthy;  /* on the new version and past their health window */
    unsigned on_old;   /* on any other version */
    unsigned busy_old; /* ... with a user */
    unsigned moving;   /* recycled by the rollout, not gone yet (a spare's replacement follows) */
    unsigned pinned;   /* never move (counted in nothing else): see pinned() */
};

static uint32_t vm_version(const srv_vm_t *vm)
{
    return vm->image_version ? vm->image_version : vm->want_version;
}

static struct srv_rollout *pool_rollout(srv_t *s, const brk_pool_config_t *p)
{
    if (!s->rollouts || p < s->cfg->pools || p >= s->cfg->pools + s->cfg->n_pools)
        return NULL;
    return &s->rollouts[p - s->cfg->pools];
}

/* A dedicated desktop without a data disk keeps its user's files on its system disk: it stays on
 * its version (the rollout neither waits for it nor counts it). */
static bool pinned(const srv_vm_t *vm, uint32_t to)
{
    const brk_pool_config_t *p = srv__desktop_pool(vm);
    return p && p->type == BRK_POOL_DEDICATED && !p->user_disk && vm->owner[0] &&
           vm_version(vm) != to;
}

static void count(srv_t *s, const brk_pool_config_t *p, const struct srv_rollout *ro,
                  struct counts *c)
{
    const brk_rollout_t *r = &ro->r;
    memset(c, 0, sizeof(*c));
    for (vdi_list_t *it = s->vms.next; it != &s->vms; it = it->next) {
        const srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        if (strcmp(vm->pool, p->name) != 0)
            continue;
        if (vm->state == BRK_DS_RECYCLING) {
            c->moving += vm->moving;
            continue;
        }
        if (pinned(vm, r->to)) {
            c->pinned++;
            continue;
        }
        c->n++;
        if (vm_version(vm) == r->to) {
            c->on_to++;
            c->healthy += vm->healthy;
        } else {
            c->on_old++;
            c->busy_old += vm->owner[0] != 0;
        }
    }
}

static unsigned canary_size(const brk_pool_config_t *p, unsigned n)
{
    unsigned c = (unsigned)(((uint64_t)n * p->canary_percent + 99) / 100);
    return c ? c : 1;
}

/* Desktops that should be on the new version now (forward rollouts). */
static unsigned target(const brk_pool_config_t *p, const brk_rollout_t *r, unsigned n)
{
    unsigned c = canary_size(p, n);
    if (r->state == BRK_RO_CANARY || n <= c)
        return c < n ? c : n;
    unsigned w = r->wave < p->waves ? r->wave : p->waves;
    return c + (unsigned)(((uint64_t)(n - c) * w + p->waves - 1) / p->waves);
}

/* The version the next new desktop of @p gets. A spare recycled to move is gone before its
 * replacement is made: that one counts as one more desktop, like any new one, and gets the new
 * version while the share on it is not full. */
static uint32_t next_version(srv_t *s, const brk_pool_config_t *p)
{
    struct srv_rollout *ro = pool_rollout(s, p);
    if (!ro || !ro->r.id)
        return ro ? ro->current : 0;
    const brk_rollout_t *r = &ro->r;
    switch (r->state) {
    case BRK_RO_CANARY:
    case BRK_RO_WAVES: {
        struct counts c;
        count(s, p, ro, &c);
        /* The new desktop is one more of the pool: does the share on the new version want it? */
        return c.on_to < target(p, r, c.n + 1) ? r->to : r->from;
    }
    case BRK_RO_ROLLING_BACK:
    case BRK_RO_ROLLED_BACK:
        return r->from;
    case BRK_RO_DONE:
    case BRK_RO_SUPERSEDED:
    case BRK_RO__COUNT:
        break;
    }
    return r->to;
}

uint32_t srv__rollout_version(srv_t *s, const brk_pool_config_t *p)
{
    return next_version(s, p);
}

uint32_t srv__rollout_version_peek(srv_t *s, const brk_pool_config_t *p)
{
    return next_version(s, p);
}

uint32_t srv__vm_logoff_in(const srv_vm_t *vm)
{
    uint64_t now = vdi_now_ms();
    if (!vm->logoff_at || vm->state == BRK_DS_RECYCLING)
        return 0;
    return vm->logoff_at > now ? (uint32_t)((vm->logoff_at - now + 999) / 1000) : 1;
}

bool srv__rollout_outdated(const srv_vm_t *vm)
{
    const brk_pool_config_t *p = srv__desktop_pool(vm);
    const struct srv_rollout *ro = p ? pool_rollout(vm->s, p) : NULL;
    if (!ro || !ro->r.id || !brk_rollout_active(ro->r.state))
        return false;
    return vm_version(vm) != (ro->r.state == BRK_RO_ROLLING_BACK ? ro->r.from : ro->r.to);
}

/* ---- the reference on the old version, and the current version, on the catalogue worker ------- */
/* Hold (or, @version 0, drop) the pool's reference on the version it may go back to, so that it
 * cannot be removed while the rollout runs. */
static void hold_from(srv_t *s, struct srv_rollout *ro, uint32_t version)
{
    if (ro->from_ref && ro->ref_ver == version)
        return;
    char holder[80];
    snprintf(holder, sizeof(holder), "rollout-%s", ro->r.pool);
    if (ro->from_ref)
        srv__image_unref(s, ro->r.image, ro->ref_ver, holder);
    srv__image_ref(s, ro->r.image, version, holder);
    ro->from_ref = version != 0;
    ro->ref_ver = version;
}

struct current_job {
    srv_t *s;
    img_catalog_t *cat;
    uint64_t gen; /* s->rollout_gen when it was asked: a rollback since makes it stale */
    size_t n;
    char (*image)[64];
    uint32_t *version;
    char back_image[64]; /* a rollback: make back_from current again if back_to still is */
    uint32_t back_to, back_from;
    int back_rc;
};

static void poll_work(void *arg) /* Thread: the catalogue worker */
{
    struct current_job *j = arg;
    if (j->back_image[0]) {
        uint32_t cur = 0;
        j->back_rc = img_catalog_current(j->cat, j->back_image, &cur);
        if (j->back_rc == 0 && cur == j->back_to)
            j->back_rc = img_catalog_set_current(j->cat, j->back_image, j->back_from);
    }
    /* Only the images that exist: a pool may name one not imported yet (its desktops fail to
     * clone and say so; no need to log it here every POLL_MS too). */
    char **names = NULL;
    size_t n = 0;
    if (img_catalog_list(j->cat, &names, &n) < 0)
        n = 0;
    for (size_t i = 0; i < j->n; i++) {
        bool exists = false;
        for (size_t k = 0; k < n && !exists; k++)
            exists = !strcmp(names[k], j->image[i]);
        if (!exists || img_catalog_current(j->cat, j->image[i], &j->version[i]) < 0)
            j->version[i] = 0;
    }
    for (size_t k = 0; k < n; k++)
        free(names[k]);
    free(names);
}

static void observe(srv_t *s, const brk_pool_config_t *p, struct srv_rollout *ro, uint32_t cur);

static void poll_done(void *arg, int status)
{
    struct current_job *j = arg;
    srv_t *s = j->s;
    if (status == 0 && j->back_image[0]) {
        if (j->back_rc < 0)
            VDI_LOG_ERR("image=%s: cannot make version %u current again: %s", j->back_image,
                        j->back_from, vdi_strerror(j->back_rc));
        else
            VDI_LOG_INFO("image=%s: version %u is current again", j->back_image, j->back_from);
    }
    if (j->gen == s->rollout_gen)
        s->rollout_polling = false;
    /* A rollback since this was read: what it read may be the version rolled back from. */
    if (status == 0 && j->gen == s->rollout_gen && s->rollouts && !s->stopping &&
        j->n == s->cfg->n_pools)
        for (size_t i = 0; i < j->n; i++)
            observe(s, &s->cfg->pools[i], &s->rollouts[i], j->version[i]);
    free(j->image);
    free(j->version);
    free(j);
}

/* Read every pool's image's current version (@back: first roll image back_image back). */
static void poll(srv_t *s, const struct current_job *back)
{
    if (!s->rollouts || (s->rollout_polling && !back))
        return;
    struct current_job *j = vdi_xcalloc(1, sizeof(*j));
    if (back) {
        snprintf(j->back_image, sizeof(j->back_image), "%s", back->back_image);
        j->back_to = back->back_to;
        j->back_from = back->back_from;
    }
    j->s = s;
    j->cat = s->catalog;
    j->gen = s->rollout_gen;
    j->n = s->cfg->n_pools;
    j->image = vdi_xcalloc(j->n + 1, sizeof(*j->image));
    j->version = vdi_xcalloc(j->n + 1, sizeof(*j->version));
    for (size_t i = 0; i < j->n; i++)
        snprintf(j->image[i], sizeof(j->image[i]), "%s", s->cfg->pools[i].image);
    if (srv__catq_submit(s->catq, poll_work, poll_done, j, NULL) < 0) {
        free(j->image);
        free(j->version);
        free(j);
        return;
    }
    s->rollout_polling = true;
    s->rollout_polled = vdi_now_ms();
}

void srv__rollouts_kick(srv_t *s)
{
    s->rollout_polled = 0;
}

/* ---- the rollout record ---------------------------------------------------------------------- */
static void save(srv_t *s, struct srv_rollout *ro)
{
    int rc = brk_store_rollout_save(s->store, &ro->r);
    if (rc < 0)
        VDI_LOG_ERR("pool=%s: cannot record its rollout: %s", ro->r.pool, vdi_strerror(rc));
}

static void audit(srv_t *s, const struct srv_rollout *ro, const char *event, const char *fmt, ...)
    VDI_PRINTF(4, 5);
static void audit(srv_t *s, const struct srv_rollout *ro, const char *event, const char *fmt, ...)
{
    char d[700];
    int n = snprintf(d, sizeof(d), "pool %s image %s v%u -> v%u: ", ro->r.pool, ro->r.image,
                     ro->r.from, ro->r.to);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d + n, sizeof(d) - (size_t)n, fmt, ap);
    va_end(ap);
    VDI_LOG_INFO("%s %s", event, d);
    brk_store_audit(s->store, NULL, event, 0, NULL, d);
}

/* End the pool's rollout (@state: done, rolled-back or superseded) with @reason. */
static void finish(srv_t *s, struct srv_rollout *ro, brk_rollout_state_t state, const char *reason)
{
    ro->r.state = state;
    if (reason)
        snprintf(ro->r.reason, sizeof(ro->r.reason), "%s", reason);
    save(s, ro);
    hold_from(s, ro, 0);
    audit(s, ro, state == BRK_RO_DONE ? "image.rollout.done" : "image.rollout.end", "%s%s%s",
          brk_rollout_state_name(state), ro->r.reason[0] ? ": " : "", ro->r.reason);
    for (vdi_list_t *it = s->vms.next; it != &s->vms; it = it->next) {
        srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        if (!strcmp(vm->pool, ro->r.pool))
            vm->logoff_at = 0;
    }
}

static void start(srv_t *s, const brk_pool_config_t *p, struct srv_rollout *ro, uint32_t from,
                  uint32_t to)
{
    ro->r = (brk_rollout_t){.from = from, .to = to, .state = BRK_RO_CANARY};
    snprintf(ro->r.pool, sizeof(ro->r.pool), "%s", p->name);
    snprintf(ro->r.image, sizeof(ro->r.image), "%s", p->image);
    ro->r.started = (int64_t)time(NULL);
    save(s, ro);
    hold_from(s, ro, from);
    for (vdi_list_t *it = s->vms.next; it != &s->vms; it = it->next) {
        srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        if (!strcmp(vm->pool, p->name))
            vm->logoff_at = 0;
    }
    audit(s, ro, "image.rollout.start",
          "canary %u%% then %u wave%s, health window %us, max_unhealthy %u, logoff %s",
          p->canary_percent, p->waves, p->waves == 1 ? "" : "s", p->health_window_s,
          p->max_unhealthy, p->logoff_force ? "force" : "wait");
}

static void rollback(srv_t *s, struct srv_rollout *ro, const char *why)
{
    ro->r.state = BRK_RO_ROLLING_BACK;
    snprintf(ro->r.reason, sizeof(ro->r.reason), "%s", why);
    save(s, ro);
    for (vdi_list_t *it = s->vms.next; it != &s->vms; it = it->next) {
        srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        if (!strcmp(vm->pool, ro->r.pool))
            vm->logoff_at = 0;
    }
    VDI_LOG_WARN("pool=%s image=%s: rolling back from v%u to v%u: %s", ro->r.pool, ro->r.image,
                 ro->r.to, ro->r.from, why);
    audit(s, ro, "image.rollout.rollback", "%s", why);
}

/* The most common version among the pool's desktops other than @not (0: none). */
static uint32_t common_version(srv_t *s, const brk_pool_config_t *p, uint32_t not )
{
    uint32_t best = 0;
    unsigned best_n = 0;
    for (vdi_list_t *it = s->vms.next; it != &s->vms; it = it->next) {
        const srv_vm_t *a = vdi_list_entry(it, srv_vm_t, link);
        uint32_t v = vm_version(a);
        if (strcmp(a->pool, p->name) || !v || v == not )
            continue;
        unsigned n = 0;
        for (vdi_list_t *jt = s->vms.next; jt != &s->vms; jt = jt->next) {
            const srv_vm_t *b = vdi_list_entry(jt, srv_vm_t, link);
            n += !strcmp(b->pool, p->name) && vm_version(b) == v;
        }
        if (n > best_n) {
            best = v;
            best_n = n;
        }
    }
    return best;
}

/* The image's current version is @cur: start, redirect or leave the pool's rollout. */
static void observe(srv_t *s, const brk_pool_config_t *p, struct srv_rollout *ro, uint32_t cur)
{
    if (!cur)
        return; /* no such image (yet): desktops fail to clone and say so */
    ro->current = cur;
    brk_rollout_t *r = &ro->r;
    if (r->id && strcmp(r->image, p->image) != 0) {
        /* The pool was given another image in the config: that is not a rollout. */
        finish(s, ro, BRK_RO_SUPERSEDED, "the pool's image changed in the configuration");
        memset(r, 0, sizeof(*r));
    }
    if (!r->id) {
        uint32_t other = common_version(s, p, cur);
        if (other)
            start(s, p, ro, other, cur);
        return;
    }
    char why[160];
    switch (r->state) {
    case BRK_RO_CANARY:
    case BRK_RO_WAVES:
        if (cur == r->to)
            return;
        if (cur == r->from) {
            snprintf(why, sizeof(why), "version %u was made current again", cur);
            rollback(s, ro, why);
            return;
        }
        snprintf(why, sizeof(why), "version %u was made current", cur);
        uint32_t from = r->from;
        finish(s, ro, BRK_RO_SUPERSEDED, why);
        start(s, p, ro, from, cur);
        return;
    case BRK_RO_ROLLING_BACK:
        if (cur == r->from)
            return;
        snprintf(why, sizeof(why), "version %u was made current during the rollback", cur);
        from = r->from;
        finish(s, ro, BRK_RO_SUPERSEDED, why);
        start(s, p, ro, from, cur);
        return;
    case BRK_RO_DONE:
    case BRK_RO_ROLLED_BACK:
    case BRK_RO_SUPERSEDED:
    case BRK_RO__COUNT:
        break;
    }
    uint32_t have = r->state == BRK_RO_ROLLED_BACK ? r->from : r->to;
    if (cur != have)
        start(s, p, ro, have, cur);
}

/* ---- moving desktops ------------------------------------------------------------------------- */
/* Recycle @vm so that it comes back on the version the rollout wants (a spare, or a user's
 * desktop at logoff = force). */
static void move(struct srv_rollout *ro, srv_vm_t *vm, uint32_t to, const char *how)
{
    char why[200];
    snprintf(why, sizeof(why), "moving from version %u to %u of image %s (%s)", vm_version(vm), to,
             ro->r.image, how);
    vm->moving = true;
    vm->logoff_at = 0;
    srv__desktop_recycle(vm, false, why);
}

/* Make up to @want new spares of @p (they get the version the rollout wants) while old ready
 * ones keep waiting for logins; the spares check then drops the surplus, old ones first
 * (srv__rollout_outdated). Memory and max_desktops permitting; returns how many were made. */
static unsigned surge(srv_t *s, const brk_pool_config_t *p, unsigned want)
{
    unsigned ready_old = 0, live = 0, made = 0;
    uint64_t used;
    for (vdi_list_t *it = s->vms.next; it != &s->vms; it = it->next) {
        const srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        if (strcmp(vm->pool, p->name))
            continue;
        live++;
        ready_old += !vm->owner[0] && vm->state == BRK_DS_READY && srv__rollout_outdated(vm);
    }
    if (brk_usage(s->store, NULL, &used, NULL) < 0)
        return 0;
    while (made < want && made < ready_old && live + made < p->max_desktops &&
           brk_admit(p->memory, used + (uint64_t)made * p->memory, s->memory_budget)) {
        if (srv__desktop_provision(s, p, "", NULL) < 0)
            break;
        made++;
    }
    if (made)
        VDI_LOG_INFO("pool=%s: %u new spare%s on version %u before the old ones go", p->name, made,
                     made == 1 ? "" : "s", srv__rollout_version_peek(s, p));
    return made;
}

/* Tell the user of @vm, on the desktop itself through the guest agent, that it restarts in
 * @grace_s seconds (the browser viewer says it too, from the session's state). */
static void warn_user(srv_vm_t *vm, unsigned grace_s)
{
    char text[200];
    unsigned secs = VDI_MAX(1u, VDI_MIN(grace_s, (unsigned)VMM_AGENT_MESSAGE_MAX_S));
    snprintf(text, sizeof(text), "This desktop restarts in %u s for an update. Save your work now.",
             grace_s);
    int err = srv__vmmctl_message(vm->ctl, text, secs);
    if (err < 0)
        VDI_LOG_WARN("desktop=%" PRId64 " the logoff warning cannot reach the desktop: %s", vm->id,
                     err == -ENOTCONN ? "its vmm is not connected" : vdi_strerror(err));
}

/* Move up to @want desktops of @p that are not on @to: idle ones at once (new spares first when
 * there is room, so that a login never waits for a boot); busy ones with logoff = force after a
 * warning and logoff_grace. */
static void move_some(srv_t *s, const brk_pool_config_t *p, struct srv_rollout *ro, uint32_t to,
                      unsigned want, uint64_t now)
{
    const brk_rollout_t *r = &ro->r;
    unsigned made = surge(s, p, want);
    want -= made;
    /* A dedicated desktop without a data disk keeps its user's files on its system disk: it is
     * never recycled to move; it moves at its next start only if it has one. */
    bool may_recycle_busy = p->type == BRK_POOL_FLOATING || p->user_disk;
    vdi_list_t *it, *tmp;
    for (int pass = 0; pass < 3 && want; pass++) {
        vdi_list_foreach_safe(it, tmp, &s->vms)
        {
            srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
            if (!want)
                break;
            if (strcmp(vm->pool, p->name) || vm->state == BRK_DS_RECYCLING || vm_version(vm) == to)
                continue;
            bool idle = !vm->owner[0];
            if (pass == 0 && idle && vm->state == BRK_DS_READY) {
                if (made) { /* replaced by a new spare: the spares check drops it once that is up */
                    made--;
                    continue;
                }
                move(ro, vm, to, "an idle desktop");
                want--;
            } else if (pass == 1 && idle && vm->state == BRK_DS_PROVISIONING && vm->image_version) {
                move(ro, vm, to, "an idle desktop");
                want--;
            } else if (pass == 2 && !idle && p->logoff_force && may_recycle_busy) {
                want--;
                if (!vm->logoff_at) {
                    vm->logoff_at = now + (uint64_t)p->logoff_grace_s * 1000;
                    char d[BRK_USER_MAX + 200];
                    snprintf(d, sizeof(d),
                             "user %s's desktop moves to version %u of image %s in %us "
                             "(logoff = force)",
                             vm->owner, to, r->image, p->logoff_grace_s);
                    VDI_LOG_INFO("desktop=%" PRId64 " %s", vm->id, d);
                    brk_store_audit(s->store, NULL, "desktop.logoff-warning", vm->id, vm->owner, d);
                    warn_user(vm, p->logoff_grace_s);
                } else if (now >= vm->logoff_at) {
                    move(ro, vm, to, "logoff = force, after logoff_grace");
                }
            }
        }
    }
}

static void step(srv_t *s, const brk_pool_config_t *p, struct srv_rollout *ro, uint64_t now)
{
    brk_rollout_t *r = &ro->r;
    if (!r->id || !brk_rollout_active(r->state))
        return;
    /* Desktops on the new version that stayed up for the health window are healthy. */
    for (vdi_list_t *it = s->vms.next; it != &s->vms; it = it->next) {
        srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        if (strcmp(vm->pool, p->name) || vm_version(vm) != r->to || vm->healthy || !vm->ready_at ||
            vm->state == BRK_DS_RECYCLING)
            continue;
        if (now - vm->ready_at >= (uint64_t)p->health_window_s * 1000) {
            vm->healthy = true;
            if (r->state != BRK_RO_ROLLING_BACK) {
                r->healthy++;
                save(s, ro);
                VDI_LOG_INFO("desktop=%" PRId64 " pool=%s healthy on version %u", vm->id, p->name,
                             r->to);
            }
        }
    }
    struct counts c;
    count(s, p, ro, &c);
    if (r->state == BRK_RO_ROLLING_BACK) {
        if (c.on_to == 0) {
            char why[600];
            snprintf(why, sizeof(why), "%s", r->reason);
            finish(s, ro, BRK_RO_ROLLED_BACK, why);
        } else {
            move_some(s, p, ro, r->from, c.on_to, now);
        }
        return;
    }
    if (c.on_old == 0 && c.healthy == c.on_to && !c.moving) {
        char why[120] = "";
        if (c.pinned)
            snprintf(why, sizeof(why),
                     "%u desktop%s stay%s on %s version (dedicated, no data disk: %s files are on "
                     "it)",
                     c.pinned, c.pinned == 1 ? "" : "s", c.pinned == 1 ? "s" : "",
                     c.pinned == 1 ? "its" : "their",
                     c.pinned == 1 ? "its user's" : "their users'");
        else if (!c.n)
            snprintf(why, sizeof(why), "the pool had no desktops");
        finish(s, ro, BRK_RO_DONE, why[0] ? why : NULL);
        return;
    }
    /* A spare moved but not gone yet: its replacement, on the new version, follows. */
    unsigned n = c.n + c.moving, on_to = c.on_to + c.moving;
    unsigned t = target(p, r, n);
    if (c.healthy >= t && on_to >= t) {
        r->state = BRK_RO_WAVES;
        r->wave++;
        save(s, ro);
        audit(s, ro, "image.rollout.wave", "wave %u of %u (%u of %u desktops on v%u, healthy)",
              r->wave, p->waves, c.healthy, n, r->to);
        t = target(p, r, n);
    }
    if (on_to < t)
        move_some(s, p, ro, r->to, t - on_to, now);
}

void srv__rollout_desktop_failed(srv_vm_t *vm, const char *reason)
{
    srv_t *s = vm->s;
    const brk_pool_config_t *p = srv__desktop_pool(vm);
    struct srv_rollout *ro = p ? pool_rollout(s, p) : NULL;
    if (!ro || !ro->r.id || (ro->r.state != BRK_RO_CANARY && ro->r.state != BRK_RO_WAVES) ||
        vm_version(vm) != ro->r.to || vm->healthy)
        return;
    brk_rollout_t *r = &ro->r;
    r->failed++;
    save(s, ro);
    VDI_LOG_WARN("desktop=%" PRId64 " pool=%s on version %u failed its health check: %s", vm->id,
                 p->name, r->to, reason);
    char d[400];
    snprintf(d, sizeof(d), "desktop %" PRId64 " on v%u failed its health check: %s", vm->id, r->to,
             reason);
    brk_store_audit(s->store, NULL, "image.rollout.unhealthy", vm->id, vm->owner, d);
    if (r->failed > p->max_unhealthy) {
        char why[600];
        snprintf(why, sizeof(why),
                 "%u desktop%s on version %u failed (max_unhealthy = %u); last: desktop %" PRId64
                 ": %s",
                 r->failed, r->failed == 1 ? "" : "s", r->to, p->max_unhealthy, vm->id, reason);
        rollback(s, ro, why);
        struct current_job back = {.back_to = r->to, .back_from = r->from};
        snprintf(back.back_image, sizeof(back.back_image), "%s", r->image);
        ro->current = r->from;
        s->rollout_gen++; /* a poll on its way may still read v(to) as current */
        poll(s, &back);
    }
}

void srv__rollouts_tick(srv_t *s, uint64_t now)
{
    if (!s->rollouts || s->stopping)
        return;
    if (now - s->rollout_polled >= POLL_MS)
        poll(s, NULL);
    if (now - s->rollout_stepped < STEP_MS || s->spares_wanted)
        return;
    s->rollout_stepped = now;
    for (size_t i = 0; i < s->cfg->n_pools; i++)
        step(s, &s->cfg->pools[i], &s->rollouts[i], now);
}

/* ---- start, stop, and what the admin sees ------------------------------------------------------ */
static int load_latest(const brk_rollout_t *r, void *ctx)
{
    *(brk_rollout_t *)ctx = *r;
    return 1;
}

int srv__rollouts_init(srv_t *s)
{
    s->rollouts = vdi_xcalloc(s->cfg->n_pools + 1, sizeof(*s->rollouts));
    for (size_t i = 0; i < s->cfg->n_pools; i++) {
        struct srv_rollout *ro = &s->rollouts[i];
        int rc = brk_store_rollout_foreach(s->store, s->cfg->pools[i].name, load_latest, &ro->r);
        if (rc < 0)
            return rc;
        if (ro->r.id && brk_rollout_active(ro->r.state)) {
            VDI_LOG_INFO("pool=%s: rollout %" PRId64 " of image %s v%u -> v%u goes on (%s)",
                         ro->r.pool, ro->r.id, ro->r.image, ro->r.from, ro->r.to,
                         brk_rollout_state_name(ro->r.state));
            ro->from_ref = true; /* taken by the vdid that started it */
            ro->ref_ver = ro->r.from;
        }
    }
    s->rollout_polled = 0;
    return 0;
}

void srv__rollouts_fini(srv_t *s)
{
    free(s->rollouts);
    s->rollouts = NULL;
}

static json_t *rollout_json(const brk_rollout_t *r)
{
    return json_pack(
        "{s:I, s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:s}", "id", (json_int_t)r->id,
        "pool", r->pool, "image", r->image, "from", (json_int_t)r->from, "to", (json_int_t)r->to,
        "state", brk_rollout_state_name(r->state), "wave", (json_int_t)r->wave, "healthy",
        (json_int_t)r->healthy, "failed", (json_int_t)r->failed, "started", (json_int_t)r->started,
        "updated", (json_int_t)r->updated, "reason", r->reason);
}

static int history_cb(const brk_rollout_t *r, void *ctx)
{
    json_array_append_new(ctx, rollout_json(r));
    return 0;
}

json_t *srv__rollouts_json(srv_t *s, bool history)
{
    json_t *pools = json_array();
    for (size_t i = 0; s->rollouts && i < s->cfg->n_pools; i++) {
        const brk_pool_config_t *p = &s->cfg->pools[i];
        const struct srv_rollout *ro = &s->rollouts[i];
        json_t *o = ro->r.id ? rollout_json(&ro->r)
                             : json_pack("{s:s, s:s}", "pool", p->name, "image", p->image);
        json_t *per = json_object();
        unsigned busy = 0, total = 0, kept = 0;
        for (vdi_list_t *it = s->vms.next; it != &s->vms; it = it->next) {
            const srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
            if (strcmp(vm->pool, p->name) || vm->state == BRK_DS_RECYCLING)
                continue;
            char k[16];
            snprintf(k, sizeof(k), "%u", vm_version(vm));
            json_t *n = json_object_get(per, k);
            json_object_set_new(per, k, json_integer(n ? json_integer_value(n) + 1 : 1));
            total++;
            if (ro->r.id && pinned(vm, ro->r.to))
                kept++;
            else
                busy += ro->r.id && vm_version(vm) != ro->r.to && vm->owner[0];
        }
        json_object_set_new(o, "desktops", per);
        json_object_set_new(o, "total", json_integer(total));
        json_object_set_new(o, "waiting_for_logout", json_integer(busy));
        json_object_set_new(o, "kept", json_integer(kept)); /* dedicated, no data disk: stay */
        json_object_set_new(o, "waves_planned", json_integer(p->waves));
        json_object_set_new(o, "current", json_integer(ro->current));
        json_object_set_new(o, "next_version", json_integer(srv__rollout_version_peek(s, p)));
        if (history) {
            json_t *h = json_array();
            brk_store_rollout_foreach(s->store, p->name, history_cb, h);
            json_object_set_new(o, "history", h);
        }
        json_array_append_new(pools, o);
    }
    return pools;
}
