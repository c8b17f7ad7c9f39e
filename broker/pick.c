/* broker/pick.c: placement. A login goes to the user's own desktop, else a ready spare, else a
 * new desktop, in the first entitled pool (config order) that can take it. */
#include <string.h>

#include "broker/brk.h"
#include "common/vdi.h"

static bool live(brk_desktop_state_t s)
{
    return s != BRK_DS_GONE && s != BRK_DS_FAILED;
}

struct usage_ctx {
    const char *pool;
    uint64_t mem;
    unsigned n;
};

static int usage_cb(const brk_desktop_t *d, void *ctx)
{
    struct usage_ctx *u = ctx;
    if (!live(d->state) || (u->pool && strcmp(u->pool, d->pool) != 0))
        return 0;
    u->mem += d->memory;
    u->n++;
    return 0;
}

int brk_usage(brk_store_t *st, const char *pool, uint64_t *mem_used, unsigned *n_live)
{
    struct usage_ctx u = {.pool = pool};
    int rc = brk_store_desktop_foreach(st, false, usage_cb, &u);
    if (rc < 0)
        return rc;
    if (mem_used)
        *mem_used = u.mem;
    if (n_live)
        *n_live = u.n;
    return 0;
}

struct find_ctx {
    const char *user; /* own desktop of this user, or a spare when NULL */
    bool failed;      /* with user: the newest failed one instead of a live one */
    const char *pool;
    int64_t id;
    char pool_found[64];
    uint64_t memory;
};

static int find_cb(const brk_desktop_t *d, void *ctx)
{
    struct find_ctx *f = ctx;
    if (f->user && f->failed) {
        if (strcmp(d->owner, f->user) != 0 || d->state != BRK_DS_FAILED)
            return 0;
        f->id = d->id; /* keep going: the newest wins */
        snprintf(f->pool_found, sizeof(f->pool_found), "%s", d->pool);
        f->memory = d->memory;
        return 0;
    } else if (f->user) {
        if (strcmp(d->owner, f->user) != 0 || !live(d->state) || d->state == BRK_DS_RECYCLING)
            return 0;
    } else {
        if (d->owner[0] || d->state != BRK_DS_READY || strcmp(d->pool, f->pool) != 0)
            return 0;
    }
    f->id = d->id;
    snprintf(f->pool_found, sizeof(f->pool_found), "%s", d->pool);
    return 1; /* stop at the first (oldest) */
}

int brk_pick(brk_store_t *st, const brk_config_t *cfg, const char *user, const char *const *groups,
             size_t n_groups, uint64_t mem_budget, brk_pick_t *out)
{
    bool entitled = false;
    int rc;

    /* 1. The user's own live desktop, if its pool still exists and still entitles them. */
    struct find_ctx f = {.user = user};
    rc = brk_store_desktop_foreach(st, false, find_cb, &f);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        const brk_pool_config_t *p = brk_config_pool(cfg, f.pool_found);
        if (p && brk_pool_entitled(p, user, groups, n_groups)) {
            *out = (brk_pick_t){.kind = BRK_PICK_EXISTING, .desktop = f.id, .pool = p};
            return 0;
        }
    }
    uint64_t mem_used;
    rc = brk_usage(st, NULL, &mem_used, NULL);
    if (rc < 0)
        return rc;
    /* 1b. Their failed desktop of a dedicated pool: it kept its disk; start it again. */
    struct find_ctx ff = {.user = user, .failed = true};
    rc = brk_store_desktop_foreach(st, true, find_cb, &ff);
    if (rc < 0)
        return rc;
    if (ff.id) {
        const brk_pool_config_t *p = brk_config_pool(cfg, ff.pool_found);
        if (p && p->type == BRK_POOL_DEDICATED && brk_pool_entitled(p, user, groups, n_groups)) {
            if (mem_used + ff.memory > mem_budget)
                return VDI_ECAPACITY;
            *out = (brk_pick_t){.kind = BRK_PICK_RESTART, .desktop = ff.id, .pool = p};
            return 0;
        }
    }
    /* 2. A ready spare; 3. a new desktop. Spares first across all pools: a spare is instant. */
    for (size_t i = 0; i < cfg->n_pools; i++) {
        const brk_pool_config_t *p = &cfg->pools[i];
        if (!brk_pool_entitled(p, user, groups, n_groups))
            continue;
        entitled = true;
        if (p->user_disk) /* a spare has no data disk: the user's desktop is made for them */
            continue;
        struct find_ctx sp = {.pool = p->name};
        rc = brk_store_desktop_foreach(st, false, find_cb, &sp);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            *out = (brk_pick_t){.kind = BRK_PICK_SPARE, .desktop = sp.id, .pool = p};
            return 0;
        }
    }
    if (!entitled)
        return VDI_EDENIED;
    for (size_t i = 0; i < cfg->n_pools; i++) {
        const brk_pool_config_t *p = &cfg->pools[i];
        unsigned n;
        if (!brk_pool_entitled(p, user, groups, n_groups))
            continue;
        rc = brk_usage(st, p->name, NULL, &n);
        if (rc < 0)
            return rc;
        if (n >= p->max_desktops || mem_used + p->memory > mem_budget)
            continue;
        *out = (brk_pick_t){.kind = BRK_PICK_NEW, .desktop = 0, .pool = p};
        return 0;
    }
    return VDI_ECAPACITY;
}
