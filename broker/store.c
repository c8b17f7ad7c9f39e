/* broker/store.c: vdid's state in SQLite: pools, desktops, sessions, tokens, the audit log, and
 * auth/'s login limits and web sessions (written through as they change: one small statement on
 * the loop, a WAL append without an fsync).
 *
 * The schema is versioned with PRAGMA user_version; migrations[] holds one SQL script per step
 * and opening a database applies the missing steps in one transaction each. Desktop state
 * changes and their audit records are written in one transaction, so the audit log never
 * disagrees with the desktops table.
 *
 * The audit log is bounded two ways. Refusals a client can repeat at will go through
 * brk_store_audit_repeated(): the first of a kind (actor, event, user, address) writes its row,
 * the repeats within the coalescing window only count in memory, and when the window is over
 * the row's detail gets "repeated N times in S s" (one UPDATE), so a flood costs a counter, not
 * a row per attempt. And brk_store_audit_maintain(), run periodically by vdid, deletes rows
 * past the retention limits in small batches. Ids grow with time (AUTOINCREMENT, and nothing
 * deletes audit rows but retention, from the oldest), so both deletions walk the rowid from its
 * low end: no index on ts is needed and a batch never scans the table.
 */
#define VDI_LOG_TAG "store"
#include <inttypes.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/internal.h"
#include "common/vdi.h"

struct audit_state;

struct brk_store {
    sqlite3 *db;
    int version;
    struct audit_state *audit; /* limits, clock and repeats (the audit section below) */
};

/* migrations[i] takes a database from version i to version i + 1. Never edit a released step:
 * add a new one. */
static const char *const migrations[BRK_STORE_SCHEMA_VERSION] = {
    /* 0 -> 1: pools, desktops, sessions, audit log */
    "CREATE TABLE pools(name TEXT PRIMARY KEY, image TEXT NOT NULL, type TEXT NOT NULL,"
    " vcpus INTEGER NOT NULL, memory INTEGER NOT NULL, fb_width INTEGER NOT NULL,"
    " fb_height INTEGER NOT NULL, min_spares INTEGER NOT NULL, max_desktops INTEGER NOT NULL,"
    " removed INTEGER NOT NULL DEFAULT 0, updated INTEGER NOT NULL);"
    "CREATE TABLE desktops(id INTEGER PRIMARY KEY AUTOINCREMENT, pool TEXT NOT NULL,"
    " owner TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, image TEXT NOT NULL,"
    " image_version INTEGER NOT NULL DEFAULT 0, overlay TEXT NOT NULL DEFAULT '',"
    " vmm_pid INTEGER NOT NULL DEFAULT 0, memory INTEGER NOT NULL, created INTEGER NOT NULL,"
    " updated INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE sessions(id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL,"
    " desktop INTEGER NOT NULL, client TEXT NOT NULL, started INTEGER NOT NULL,"
    " ended INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE audit(id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL,"
    " actor TEXT NOT NULL, event TEXT NOT NULL, desktop INTEGER NOT NULL DEFAULT 0,"
    " user TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '');",
    /* 1 -> 2: browser tokens, why a session ended, indexes for the hot queries */
    "ALTER TABLE sessions ADD COLUMN end_reason TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE tokens(hash TEXT PRIMARY KEY, user TEXT NOT NULL, desktop INTEGER NOT NULL,"
    " expires INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX desktops_state ON desktops(state);"
    "CREATE INDEX sessions_open ON sessions(ended);",
    /* 2 -> 3: login limits and web sessions, so that a restart neither forgets a lockout nor logs
     * browser users out. Times in Unix milliseconds; web sessions by the SHA-256 of the cookie. */
    "CREATE TABLE auth_limits(scope TEXT NOT NULL, key TEXT NOT NULL, failures INTEGER NOT NULL,"
    " last_fail INTEGER NOT NULL, locked_until INTEGER NOT NULL, last_ok INTEGER NOT NULL,"
    " expires INTEGER NOT NULL, PRIMARY KEY(scope, key));"
    "CREATE INDEX auth_limits_expires ON auth_limits(expires);"
    "CREATE TABLE web_sessions(digest TEXT PRIMARY KEY, user TEXT NOT NULL, groups TEXT NOT NULL,"
    " is_admin INTEGER NOT NULL, csrf TEXT NOT NULL, idle_ms INTEGER NOT NULL,"
    " last_used INTEGER NOT NULL, expires INTEGER NOT NULL);",
    /* 3 -> 4: desktop networks: each desktop's MAC and address, and the host objects vdid made
     * (so that it removes them when their pool is gone, even after a crash). */
    "ALTER TABLE desktops ADD COLUMN mac TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE desktops ADD COLUMN ip TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE net_objects(kind TEXT NOT NULL, name TEXT NOT NULL, pool TEXT NOT NULL,"
    " desktop INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(kind, name));",
    /* 4 -> 5: rollouts of new image versions to pools (server/rollout.c) */
    "CREATE TABLE rollouts(id INTEGER PRIMARY KEY AUTOINCREMENT, pool TEXT NOT NULL,"
    " image TEXT NOT NULL, from_version INTEGER NOT NULL, to_version INTEGER NOT NULL,"
    " state TEXT NOT NULL, wave INTEGER NOT NULL DEFAULT 0, healthy INTEGER NOT NULL DEFAULT 0,"
    " failed INTEGER NOT NULL DEFAULT 0, started INTEGER NOT NULL, updated INTEGER NOT NULL,"
    " reason TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX rollouts_pool ON rollouts(pool, id);",
};

static void audit_state_free(brk_store_t *st);

static int db_err(brk_store_t *st, int rc, const char *what)
{
    VDI_LOG_ERR("sqlite %s: %s (code %d)", what, st->db ? sqlite3_errmsg(st->db) : "?", rc);
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return VDI_ECORRUPT;
    case SQLITE_CANTOPEN:
        return -EACCES;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_FULL:
        return -ENOSPC;
    default:
        return -EIO;
    }
}

static int exec(brk_store_t *st, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        VDI_LOG_ERR("sqlite: %s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return db_err(st, rc, "exec");
    }
    return 0;
}

static int prepare(brk_store_t *st, const char *sql, sqlite3_stmt **out)
{
    int rc = sqlite3_prepare_v2(st->db, sql, -1, out, NULL);
    if (rc != SQLITE_OK)
        return db_err(st, rc, "prepare");
    return 0;
}

/* Step a statement that returns no rows, then finalize it. */
static int step_done(brk_store_t *st, sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return db_err(st, rc, "step");
    return 0;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_TRANSIENT);
}

static void copy_col(char *dst, size_t n, sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(dst, n, "%s", t ? (const char *)t : "");
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

static int migrate(brk_store_t *st, int target)
{
    int from = st->version;
    for (int v = st->version; v < target; v++) {
        int rc = exec(st, "BEGIN IMMEDIATE");
        if (rc < 0)
            return rc;
        rc = exec(st, migrations[v]);
        if (rc == 0) {
            char sql[64];
            snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
            rc = exec(st, sql);
        }
        if (rc < 0) {
            exec(st, "ROLLBACK");
            VDI_LOG_ERR("schema migration %d -> %d failed", v, v + 1);
            return rc;
        }
        rc = exec(st, "COMMIT");
        if (rc < 0)
            return rc;
        if (from > 0)
            VDI_LOG_INFO("schema migrated from version %d to %d", v, v + 1);
        st->version = v + 1;
    }
    return 0;
}

int brk__store_open_at(const char *path, int version, brk_store_t **out)
{
    brk_store_t *st = vdi_xcalloc(1, sizeof(*st));
    sqlite3_stmt *s;
    int rc;

    VDI_ASSERT(version >= 1 && version <= BRK_STORE_SCHEMA_VERSION);
    rc = sqlite3_open_v2(path, &st->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        VDI_LOG_ERR("db=%s cannot open: %s", path, st->db ? sqlite3_errmsg(st->db) : "?");
        rc = db_err(st, rc, "open");
        goto err_close;
    }
    sqlite3_busy_timeout(st->db, 2000);
    sqlite3_extended_result_codes(st->db, 0);
    /* journal_mode answers with a row; in-memory databases stay "memory". */
    rc = prepare(st, "PRAGMA journal_mode = WAL", &s);
    if (rc < 0)
        goto err_close;
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW) {
        VDI_LOG_ERR("db=%s is not a usable SQLite database", path);
        rc = db_err(st, rc, "journal_mode");
        goto err_close;
    }
    rc = exec(st, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON");
    if (rc < 0)
        goto err_close;
    rc = prepare(st, "PRAGMA user_version", &s);
    if (rc < 0)
        goto err_close;
    if (sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_finalize(s);
        rc = db_err(st, SQLITE_CORRUPT, "user_version");
        goto err_close;
    }
    st->version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (st->version > BRK_STORE_SCHEMA_VERSION || st->version < 0) {
        VDI_LOG_ERR("db=%s has schema version %d, newer than this vdid (%d): refusing to touch it",
                    path, st->version, BRK_STORE_SCHEMA_VERSION);
        rc = VDI_ECORRUPT;
        goto err_close;
    }
    if (st->version == 0) {
        /* A fresh database must be empty: never adopt someone else's file. */
        rc = prepare(st, "SELECT count(*) FROM sqlite_master", &s);
        if (rc < 0)
            goto err_close;
        int tables = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
        sqlite3_finalize(s);
        if (tables != 0) {
            VDI_LOG_ERR("db=%s has tables but no vdi schema version: not a vdi database", path);
            rc = VDI_ECORRUPT;
            goto err_close;
        }
    }
    rc = migrate(st, version);
    if (rc < 0)
        goto err_close;
    *out = st;
    return 0;
err_close:
    sqlite3_close(st->db);
    free(st);
    return rc;
}

int brk_store_open(const char *path, brk_store_t **out)
{
    return brk__store_open_at(path, BRK_STORE_SCHEMA_VERSION, out);
}

void brk_store_close(brk_store_t *st)
{
    if (!st)
        return;
    audit_state_free(st); /* writes the counts of repeats still being coalesced */
    sqlite3_close(st->db);
    free(st);
}

int brk_store_schema_version(brk_store_t *st)
{
    return st->version;
}

int brk_store_sync_pools(brk_store_t *st, const brk_config_t *cfg)
{
    sqlite3_stmt *s;
    int64_t now = now_s();
    int rc = exec(st, "BEGIN IMMEDIATE");
    if (rc < 0)
        return rc;
    rc = exec(st, "UPDATE pools SET removed = 1");
    for (size_t i = 0; rc == 0 && i < cfg->n_pools; i++) {
        const brk_pool_config_t *p = &cfg->pools[i];
        rc = prepare(st,
                     "INSERT INTO pools(name, image, type, vcpus, memory, fb_width, fb_height,"
                     " min_spares, max_desktops, removed, updated)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10)"
                     " ON CONFLICT(name) DO UPDATE SET image = ?2, type = ?3, vcpus = ?4,"
                     " memory = ?5, fb_width = ?6, fb_height = ?7, min_spares = ?8,"
                     " max_desktops = ?9, removed = 0, updated = ?10",
                     &s);
        if (rc < 0)
            break;
        bind_text(s, 1, p->name);
        bind_text(s, 2, p->image);
        bind_text(s, 3, brk_pool_type_name(p->type));
        sqlite3_bind_int64(s, 4, p->vcpus);
        sqlite3_bind_int64(s, 5, (int64_t)p->memory);
        sqlite3_bind_int64(s, 6, p->fb_width);
        sqlite3_bind_int64(s, 7, p->fb_height);
        sqlite3_bind_int64(s, 8, p->min_spares);
        sqlite3_bind_int64(s, 9, p->max_desktops);
        sqlite3_bind_int64(s, 10, now);
        rc = step_done(st, s);
    }
    if (rc < 0) {
        exec(st, "ROLLBACK");
        return rc;
    }
    return exec(st, "COMMIT");
}

/* ---- the audit log ------------------------------------------------------------------------ */
#define AUDIT_REPEATS_MAX 256 /* kinds of repeated refusal coalesced at once */

struct audit_repeat {
    bool used;
    char actor[64], event[48], user[64], peer[64];
    int64_t id;     /* its row */
    int64_t since;  /* the window's start (its first occurrence) */
    uint64_t count; /* occurrences in the window, the first included */
};

struct audit_state {
    brk_audit_limits_t lim;
    int64_t (*clock)(void *ctx);
    void *clock_ctx;
    struct audit_repeat rep[AUDIT_REPEATS_MAX];
    /* Repeats that found the table full: counted together, one row at the window's end. */
    uint64_t other_count;
    int64_t other_since;
};

static struct audit_state *audit_state(brk_store_t *st)
{
    if (!st->audit) {
        st->audit = vdi_xcalloc(1, sizeof(*st->audit));
        st->audit->lim = (brk_audit_limits_t){.coalesce_s = 60};
    }
    return st->audit;
}

static int64_t audit_now(brk_store_t *st)
{
    struct audit_state *a = audit_state(st);
    return a->clock ? a->clock(a->clock_ctx) : now_s();
}

void brk__store_set_clock(brk_store_t *st, int64_t (*clock)(void *ctx), void *ctx)
{
    struct audit_state *a = audit_state(st);
    a->clock = clock;
    a->clock_ctx = ctx;
}

static int audit_insert(brk_store_t *st, const char *actor, const char *event, int64_t desktop,
                        const char *user, const char *detail)
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     "INSERT INTO audit(ts, actor, event, desktop, user, detail)"
                     " VALUES(?, ?, ?, ?, ?, ?)",
                     &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, audit_now(st));
    bind_text(s, 2, actor ? actor : "vdid");
    bind_text(s, 3, event);
    sqlite3_bind_int64(s, 4, desktop);
    bind_text(s, 5, user);
    bind_text(s, 6, detail);
    return step_done(st, s);
}

int brk_store_audit(brk_store_t *st, const char *actor, const char *event, int64_t desktop,
                    const char *user, const char *detail)
{
    return audit_insert(st, actor, event, desktop, user, detail);
}

void brk_store_audit_set_limits(brk_store_t *st, const brk_audit_limits_t *lim)
{
    audit_state(st)->lim = *lim;
}

/* The window of @r is over (or the store closes): its row gets the count of the repeats. */
static int repeat_flush(brk_store_t *st, struct audit_repeat *r)
{
    int rc = 0;
    if (r->count > 1) {
        sqlite3_stmt *s;
        char tail[96];
        snprintf(tail, sizeof(tail), " (repeated %" PRIu64 " times in %u s)", r->count,
                 st->audit->lim.coalesce_s);
        rc = prepare(st, "UPDATE audit SET detail = detail || ? WHERE id = ?", &s);
        if (rc == 0) {
            bind_text(s, 1, tail);
            sqlite3_bind_int64(s, 2, r->id);
            rc = step_done(st, s);
        }
    }
    r->used = false;
    return rc;
}

static int other_flush(brk_store_t *st)
{
    struct audit_state *a = st->audit;
    if (!a->other_count)
        return 0;
    char detail[160];
    snprintf(detail, sizeof(detail),
             "%" PRIu64 " more refusals of other users or addresses in %u s, not written one by "
             "one (too many kinds at once)",
             a->other_count, a->lim.coalesce_s);
    a->other_count = 0;
    return audit_insert(st, NULL, "audit.coalesced", 0, NULL, detail);
}

/* Flush the windows that are over at @now (all of them with @all). */
static int repeats_flush(brk_store_t *st, int64_t now, bool all)
{
    struct audit_state *a = st->audit;
    int rc = 0;
    for (size_t i = 0; i < AUDIT_REPEATS_MAX; i++) {
        struct audit_repeat *r = &a->rep[i];
        if (r->used && (all || now - r->since >= (int64_t)a->lim.coalesce_s)) {
            int e = repeat_flush(st, r);
            rc = rc < 0 ? rc : e;
        }
    }
    if (a->other_count && (all || now - a->other_since >= (int64_t)a->lim.coalesce_s)) {
        int e = other_flush(st);
        rc = rc < 0 ? rc : e;
    }
    return rc;
}

static void audit_state_free(brk_store_t *st)
{
    if (!st->audit)
        return;
    repeats_flush(st, 0, true);
    free(st->audit);
    st->audit = NULL;
}

int brk_store_audit_repeated(brk_store_t *st, const char *actor, const char *event,
                             const char *user, const char *peer, const char *detail)
{
    struct audit_state *a = audit_state(st);
    if (!a->lim.coalesce_s)
        return audit_insert(st, actor, event, 0, user, detail);
    int64_t now = audit_now(st);
    actor = actor ? actor : "vdid";
    struct audit_repeat *r = NULL, *free_slot = NULL;
    for (size_t i = 0; i < AUDIT_REPEATS_MAX; i++) {
        struct audit_repeat *x = &a->rep[i];
        if (!x->used) {
            if (!free_slot)
                free_slot = x;
            continue;
        }
        /* Keys are compared as stored: cut to the fields' sizes like the row's columns. */
        if (strncmp(x->event, event, sizeof(x->event) - 1) == 0 &&
            strncmp(x->actor, actor, sizeof(x->actor) - 1) == 0 &&
            strncmp(x->user, user ? user : "", sizeof(x->user) - 1) == 0 &&
            strncmp(x->peer, peer ? peer : "", sizeof(x->peer) - 1) == 0) {
            r = x;
            break;
        }
    }
    if (r && now - r->since < (int64_t)a->lim.coalesce_s && now >= r->since) {
        r->count++;
        return 0;
    }
    if (r) {
        repeat_flush(st, r); /* its window is over: this one starts the next */
        free_slot = r;
    }
    if (!free_slot) {
        repeats_flush(st, now, false);
        for (size_t i = 0; i < AUDIT_REPEATS_MAX && !free_slot; i++)
            if (!a->rep[i].used)
                free_slot = &a->rep[i];
    }
    if (!free_slot) {
        if (a->other_count++ == 0)
            a->other_since = now;
        return 0;
    }
    int rc = audit_insert(st, actor, event, 0, user, detail);
    if (rc < 0)
        return rc;
    r = free_slot;
    r->used = true;
    snprintf(r->actor, sizeof(r->actor), "%s", actor);
    snprintf(r->event, sizeof(r->event), "%s", event);
    snprintf(r->user, sizeof(r->user), "%s", user ? user : "");
    snprintf(r->peer, sizeof(r->peer), "%s", peer ? peer : "");
    r->id = sqlite3_last_insert_rowid(st->db);
    r->since = now;
    r->count = 1;
    return 0;
}

/* Delete the rows the statement @sql picks (bound: ?1 = @a, ?2 = @b); returns how many. */
static int delete_rows(brk_store_t *st, const char *sql, int64_t a, int64_t b)
{
    sqlite3_stmt *s;
    int rc = prepare(st, sql, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, a);
    sqlite3_bind_int64(s, 2, b);
    rc = step_done(st, s);
    return rc < 0 ? rc : sqlite3_changes(st->db);
}

int brk_store_audit_maintain(brk_store_t *st, unsigned batch)
{
    struct audit_state *a = audit_state(st);
    int64_t now = audit_now(st);
    int rc = repeats_flush(st, now, false);
    if (rc < 0)
        return rc;
    int deleted = 0;
    if (a->lim.max_rows) {
        sqlite3_stmt *s;
        rc = prepare(st, "SELECT max(id) FROM audit", &s);
        if (rc < 0)
            return rc;
        int64_t max_id = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
        sqlite3_finalize(s);
        /* Ids have no gaps but the deleted oldest ones: the last max_rows ids are the rows kept. */
        int64_t below = max_id - (int64_t)a->lim.max_rows;
        if (below > 0) {
            rc = delete_rows(st,
                             "DELETE FROM audit WHERE id IN"
                             " (SELECT id FROM audit WHERE id <= ?1 ORDER BY id LIMIT ?2)",
                             below, batch);
            if (rc < 0)
                return rc;
            deleted += rc;
        }
    }
    if (a->lim.keep_s && (unsigned)deleted < batch) {
        /* Only the oldest rows by id are looked at: a batch never scans the whole table. */
        rc = delete_rows(st,
                         "DELETE FROM audit WHERE id IN (SELECT id FROM"
                         " (SELECT id, ts FROM audit ORDER BY id LIMIT ?2) WHERE ts < ?1)",
                         now - (int64_t)a->lim.keep_s, batch - (unsigned)deleted);
        if (rc < 0)
            return rc;
        deleted += rc;
    }
    return deleted;
}

int brk_store_desktop_create(brk_store_t *st, const char *pool, const char *owner,
                             const char *image, uint64_t memory, int64_t *id)
{
    sqlite3_stmt *s;
    int64_t now = now_s();
    int rc = exec(st, "BEGIN IMMEDIATE");
    if (rc < 0)
        return rc;
    rc = prepare(st,
                 "INSERT INTO desktops(pool, owner, state, image, memory, created, updated)"
                 " VALUES(?, ?, ?, ?, ?, ?, ?)",
                 &s);
    if (rc < 0)
        goto err_rollback;
    bind_text(s, 1, pool);
    bind_text(s, 2, owner);
    bind_text(s, 3, brk_desktop_state_name(BRK_DS_PROVISIONING));
    bind_text(s, 4, image);
    sqlite3_bind_int64(s, 5, (int64_t)memory);
    sqlite3_bind_int64(s, 6, now);
    sqlite3_bind_int64(s, 7, now);
    rc = step_done(st, s);
    if (rc < 0)
        goto err_rollback;
    int64_t new_id = sqlite3_last_insert_rowid(st->db);
    char detail[128];
    snprintf(detail, sizeof(detail), "pool=%s to=provisioning", pool);
    rc = audit_insert(st, NULL, "desktop.state", new_id, owner, detail);
    if (rc < 0)
        goto err_rollback;
    rc = exec(st, "COMMIT");
    if (rc < 0)
        goto err_rollback;
    *id = new_id;
    return 0;
err_rollback:
    exec(st, "ROLLBACK");
    return rc;
}

static int read_desktop(sqlite3_stmt *s, brk_desktop_t *d)
{
    memset(d, 0, sizeof(*d));
    d->id = sqlite3_column_int64(s, 0);
    copy_col(d->pool, sizeof(d->pool), s, 1);
    copy_col(d->owner, sizeof(d->owner), s, 2);
    const unsigned char *st = sqlite3_column_text(s, 3);
    int state = brk_desktop_state_parse(st ? (const char *)st : "");
    if (state < 0)
        return VDI_ECORRUPT;
    d->state = (brk_desktop_state_t)state;
    copy_col(d->image, sizeof(d->image), s, 4);
    d->image_version = sqlite3_column_int64(s, 5);
    copy_col(d->overlay, sizeof(d->overlay), s, 6);
    d->vmm_pid = sqlite3_column_int64(s, 7);
    d->memory = (uint64_t)sqlite3_column_int64(s, 8);
    d->created = sqlite3_column_int64(s, 9);
    d->updated = sqlite3_column_int64(s, 10);
    copy_col(d->reason, sizeof(d->reason), s, 11);
    copy_col(d->mac, sizeof(d->mac), s, 12);
    copy_col(d->ip, sizeof(d->ip), s, 13);
    return 0;
}

#define DESKTOP_COLS                                                                               \
    "id, pool, owner, state, image, image_version, overlay, vmm_pid, memory, created, updated, "   \
    "reason, mac, ip"

int brk_store_desktop_get(brk_store_t *st, int64_t id, brk_desktop_t *out)
{
    sqlite3_stmt *s;
    int rc = prepare(st, "SELECT " DESKTOP_COLS " FROM desktops WHERE id = ?", &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        rc = read_desktop(s, out);
    } else if (rc == SQLITE_DONE) {
        rc = -ENOENT;
    } else {
        rc = db_err(st, rc, "desktop get");
    }
    sqlite3_finalize(s);
    return rc;
}

int brk_store_desktop_set_state(brk_store_t *st, int64_t id, brk_desktop_state_t to,
                                const char *reason)
{
    brk_desktop_t d;
    sqlite3_stmt *s;
    int rc = exec(st, "BEGIN IMMEDIATE");
    if (rc < 0)
        return rc;
    rc = brk_store_desktop_get(st, id, &d);
    if (rc < 0)
        goto err_rollback;
    if (!brk_desktop_transition_ok(d.state, to)) {
        rc = VDI_ESTATE;
        goto err_rollback;
    }
    rc = prepare(st, "UPDATE desktops SET state = ?, reason = ?, updated = ? WHERE id = ?", &s);
    if (rc < 0)
        goto err_rollback;
    bind_text(s, 1, brk_desktop_state_name(to));
    bind_text(s, 2, reason);
    sqlite3_bind_int64(s, 3, now_s());
    sqlite3_bind_int64(s, 4, id);
    rc = step_done(st, s);
    if (rc < 0)
        goto err_rollback;
    char detail[256];
    snprintf(detail, sizeof(detail), "from=%s to=%s%s%s", brk_desktop_state_name(d.state),
             brk_desktop_state_name(to), reason && *reason ? " reason=" : "", reason ? reason : "");
    rc = audit_insert(st, NULL, "desktop.state", id, d.owner, detail);
    if (rc < 0)
        goto err_rollback;
    return exec(st, "COMMIT");
err_rollback:
    exec(st, "ROLLBACK");
    return rc;
}

static int update_changed(brk_store_t *st, sqlite3_stmt *s)
{
    int rc = step_done(st, s);
    if (rc < 0)
        return rc;
    return sqlite3_changes(st->db) == 1 ? 0 : -ENOENT;
}

int brk_store_desktop_set_owner(brk_store_t *st, int64_t id, const char *owner)
{
    sqlite3_stmt *s;
    int rc = prepare(st, "UPDATE desktops SET owner = ?, updated = ? WHERE id = ?", &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, owner);
    sqlite3_bind_int64(s, 2, now_s());
    sqlite3_bind_int64(s, 3, id);
    return update_changed(st, s);
}

int brk_store_desktop_set_vmm(brk_store_t *st, int64_t id, int64_t pid, const char *overlay,
                              int64_t image_version)
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     "UPDATE desktops SET vmm_pid = ?, overlay = ?, image_version = ?,"
                     " updated = ? WHERE id = ?",
                     &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, pid);
    bind_text(s, 2, overlay);
    sqlite3_bind_int64(s, 3, image_version);
    sqlite3_bind_int64(s, 4, now_s());
    sqlite3_bind_int64(s, 5, id);
    return update_changed(st, s);
}

int brk_store_desktop_set_net(brk_store_t *st, int64_t id, const char *mac, const char *ip)
{
    sqlite3_stmt *s;
    int rc = prepare(st, "UPDATE desktops SET mac = ?, ip = ?, updated = ? WHERE id = ?", &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, mac);
    bind_text(s, 2, ip);
    sqlite3_bind_int64(s, 3, now_s());
    sqlite3_bind_int64(s, 4, id);
    return update_changed(st, s);
}

int brk_store_netobj_add(brk_store_t *st, const char *kind, const char *name, const char *pool,
                         int64_t desktop)
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     "INSERT OR REPLACE INTO net_objects(kind, name, pool, desktop)"
                     " VALUES(?, ?, ?, ?)",
                     &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, kind);
    bind_text(s, 2, name);
    bind_text(s, 3, pool);
    sqlite3_bind_int64(s, 4, desktop);
    return step_done(st, s);
}

int brk_store_netobj_del(brk_store_t *st, const char *kind, const char *name)
{
    sqlite3_stmt *s;
    int rc = prepare(st, "DELETE FROM net_objects WHERE kind = ? AND name = ?", &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, kind);
    bind_text(s, 2, name);
    return step_done(st, s);
}

int brk_store_netobj_foreach(brk_store_t *st, brk_netobj_fn fn, void *ctx)
{
    sqlite3_stmt *s;
    int rc =
        prepare(st, "SELECT kind, name, pool, desktop FROM net_objects ORDER BY kind, name", &s);
    if (rc < 0)
        return rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char kind[16], name[64], pool[64];
        copy_col(kind, sizeof(kind), s, 0);
        copy_col(name, sizeof(name), s, 1);
        copy_col(pool, sizeof(pool), s, 2);
        int r = fn(kind, name, pool, sqlite3_column_int64(s, 3), ctx);
        if (r) {
            sqlite3_finalize(s);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(st, rc, "net objects");
    sqlite3_finalize(s);
    return rc;
}

/* ---- rollouts ------------------------------------------------------------------------------ */
static const char *const rollout_states[BRK_RO__COUNT] = {
    [BRK_RO_CANARY] = "canary",
    [BRK_RO_WAVES] = "waves",
    [BRK_RO_DONE] = "done",
    [BRK_RO_ROLLING_BACK] = "rolling-back",
    [BRK_RO_ROLLED_BACK] = "rolled-back",
    [BRK_RO_SUPERSEDED] = "superseded",
};

const char *brk_rollout_state_name(brk_rollout_state_t s)
{
    return (unsigned)s < BRK_RO__COUNT ? rollout_states[s] : "?";
}

bool brk_rollout_active(brk_rollout_state_t s)
{
    return s == BRK_RO_CANARY || s == BRK_RO_WAVES || s == BRK_RO_ROLLING_BACK;
}

int brk_store_rollout_save(brk_store_t *st, brk_rollout_t *r)
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     r->id ? "UPDATE rollouts SET pool = ?, image = ?, from_version = ?,"
                             " to_version = ?, state = ?, wave = ?, healthy = ?, failed = ?,"
                             " started = ?, updated = ?, reason = ? WHERE id = ?"
                           : "INSERT INTO rollouts(pool, image, from_version, to_version, state,"
                             " wave, healthy, failed, started, updated, reason)"
                             " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     &s);
    if (rc < 0)
        return rc;
    r->updated = now_s();
    bind_text(s, 1, r->pool);
    bind_text(s, 2, r->image);
    sqlite3_bind_int64(s, 3, r->from);
    sqlite3_bind_int64(s, 4, r->to);
    bind_text(s, 5, brk_rollout_state_name(r->state));
    sqlite3_bind_int64(s, 6, r->wave);
    sqlite3_bind_int64(s, 7, r->healthy);
    sqlite3_bind_int64(s, 8, r->failed);
    sqlite3_bind_int64(s, 9, r->started);
    sqlite3_bind_int64(s, 10, r->updated);
    bind_text(s, 11, r->reason);
    if (r->id)
        sqlite3_bind_int64(s, 12, r->id);
    rc = step_done(st, s);
    if (rc == 0 && !r->id)
        r->id = sqlite3_last_insert_rowid(st->db);
    return rc;
}

int brk_store_rollout_foreach(brk_store_t *st, const char *pool, brk_rollout_fn fn, void *ctx)
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     "SELECT id, pool, image, from_version, to_version, state, wave, healthy,"
                     " failed, started, updated, reason FROM rollouts"
                     " WHERE ?1 IS NULL OR pool = ?1 ORDER BY id DESC",
                     &s);
    if (rc < 0)
        return rc;
    if (pool)
        bind_text(s, 1, pool);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        brk_rollout_t r = {.id = sqlite3_column_int64(s, 0)};
        char state[24];
        copy_col(r.pool, sizeof(r.pool), s, 1);
        copy_col(r.image, sizeof(r.image), s, 2);
        r.from = (uint32_t)sqlite3_column_int64(s, 3);
        r.to = (uint32_t)sqlite3_column_int64(s, 4);
        copy_col(state, sizeof(state), s, 5);
        r.state = BRK_RO_SUPERSEDED;
        for (int i = 0; i < BRK_RO__COUNT; i++)
            if (!strcmp(state, rollout_states[i]))
                r.state = (brk_rollout_state_t)i;
        r.wave = (uint32_t)sqlite3_column_int64(s, 6);
        r.healthy = (uint32_t)sqlite3_column_int64(s, 7);
        r.failed = (uint32_t)sqlite3_column_int64(s, 8);
        r.started = sqlite3_column_int64(s, 9);
        r.updated = sqlite3_column_int64(s, 10);
        copy_col(r.reason, sizeof(r.reason), s, 11);
        int x = fn(&r, ctx);
        if (x) {
            sqlite3_finalize(s);
            return x;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(st, rc, "rollouts");
    sqlite3_finalize(s);
    return rc;
}

int brk_store_desktop_foreach(brk_store_t *st, bool include_gone, brk_desktop_fn fn, void *ctx)
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     include_gone ? "SELECT " DESKTOP_COLS " FROM desktops ORDER BY id"
                                  : "SELECT " DESKTOP_COLS
                                    " FROM desktops WHERE state != 'gone' ORDER BY id",
                     &s);
    if (rc < 0)
        return rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        brk_desktop_t d;
        int r = read_desktop(s, &d);
        if (r == 0)
            r = fn(&d, ctx);
        if (r != 0) {
            sqlite3_finalize(s);
            return r;
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : db_err(st, rc, "desktop list");
}

int brk_store_session_open(brk_store_t *st, const char *user, int64_t desktop, const char *client,
                           int64_t *id)
{
    sqlite3_stmt *s;
    int rc = exec(st, "BEGIN IMMEDIATE");
    if (rc < 0)
        return rc;
    rc = prepare(st, "INSERT INTO sessions(user, desktop, client, started) VALUES(?, ?, ?, ?)", &s);
    if (rc < 0)
        goto err_rollback;
    bind_text(s, 1, user);
    sqlite3_bind_int64(s, 2, desktop);
    bind_text(s, 3, client);
    sqlite3_bind_int64(s, 4, now_s());
    rc = step_done(st, s);
    if (rc < 0)
        goto err_rollback;
    int64_t sid = sqlite3_last_insert_rowid(st->db);
    char detail[128];
    snprintf(detail, sizeof(detail), "session=%" PRId64 " client=%s", sid, client ? client : "");
    rc = audit_insert(st, NULL, "session.open", desktop, user, detail);
    if (rc < 0)
        goto err_rollback;
    rc = exec(st, "COMMIT");
    if (rc < 0)
        goto err_rollback;
    *id = sid;
    return 0;
err_rollback:
    exec(st, "ROLLBACK");
    return rc;
}

static int read_session(sqlite3_stmt *s, brk_session_t *o)
{
    memset(o, 0, sizeof(*o));
    o->id = sqlite3_column_int64(s, 0);
    copy_col(o->user, sizeof(o->user), s, 1);
    o->desktop = sqlite3_column_int64(s, 2);
    copy_col(o->client, sizeof(o->client), s, 3);
    o->started = sqlite3_column_int64(s, 4);
    o->ended = sqlite3_column_int64(s, 5);
    copy_col(o->end_reason, sizeof(o->end_reason), s, 6);
    return 0;
}

#define SESSION_COLS "id, user, desktop, client, started, ended, end_reason"

int brk_store_session_get(brk_store_t *st, int64_t id, brk_session_t *out)
{
    sqlite3_stmt *s;
    int rc = prepare(st, "SELECT " SESSION_COLS " FROM sessions WHERE id = ?", &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        rc = read_session(s, out);
    else if (rc == SQLITE_DONE)
        rc = -ENOENT;
    else
        rc = db_err(st, rc, "session get");
    sqlite3_finalize(s);
    return rc;
}

int brk_store_session_close(brk_store_t *st, int64_t id, const char *reason)
{
    brk_session_t se;
    sqlite3_stmt *s;
    int rc = exec(st, "BEGIN IMMEDIATE");
    if (rc < 0)
        return rc;
    rc = brk_store_session_get(st, id, &se);
    if (rc < 0)
        goto err_rollback;
    if (se.ended) {
        rc = VDI_ESTATE;
        goto err_rollback;
    }
    rc = prepare(st, "UPDATE sessions SET ended = ?, end_reason = ? WHERE id = ?", &s);
    if (rc < 0)
        goto err_rollback;
    sqlite3_bind_int64(s, 1, VDI_MAX(now_s(), se.started));
    bind_text(s, 2, reason);
    sqlite3_bind_int64(s, 3, id);
    rc = step_done(st, s);
    if (rc < 0)
        goto err_rollback;
    char detail[128];
    snprintf(detail, sizeof(detail), "session=%" PRId64 " reason=%s", id, reason ? reason : "");
    rc = audit_insert(st, NULL, "session.close", se.desktop, se.user, detail);
    if (rc < 0)
        goto err_rollback;
    return exec(st, "COMMIT");
err_rollback:
    exec(st, "ROLLBACK");
    return rc;
}

int brk_store_session_foreach(brk_store_t *st, bool include_closed, brk_session_fn fn, void *ctx)
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     include_closed ? "SELECT " SESSION_COLS " FROM sessions ORDER BY id"
                                    : "SELECT " SESSION_COLS
                                      " FROM sessions WHERE ended = 0 ORDER BY id",
                     &s);
    if (rc < 0)
        return rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        brk_session_t se;
        read_session(s, &se);
        int r = fn(&se, ctx);
        if (r != 0) {
            sqlite3_finalize(s);
            return r;
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : db_err(st, rc, "session list");
}

int brk_store_token_put(brk_store_t *st, const char *hash, const char *user, int64_t desktop,
                        int64_t expires)
{
    sqlite3_stmt *s;
    int rc = prepare(st, "INSERT INTO tokens(hash, user, desktop, expires) VALUES(?, ?, ?, ?)", &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, hash);
    bind_text(s, 2, user);
    sqlite3_bind_int64(s, 3, desktop);
    sqlite3_bind_int64(s, 4, expires);
    return step_done(st, s);
}

int brk_store_token_take(brk_store_t *st, const char *hash, int64_t now, char *user, size_t userlen,
                         int64_t *desktop)
{
    sqlite3_stmt *s;
    int rc = exec(st, "BEGIN IMMEDIATE");
    if (rc < 0)
        return rc;
    rc = prepare(st, "SELECT user, desktop, expires, used FROM tokens WHERE hash = ?", &s);
    if (rc < 0)
        goto err_rollback;
    bind_text(s, 1, hash);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(s);
        rc = rc == SQLITE_DONE ? VDI_ETOKEN : db_err(st, rc, "token get");
        goto err_rollback;
    }
    int64_t dt = sqlite3_column_int64(s, 1);
    int64_t expires = sqlite3_column_int64(s, 2);
    int used = sqlite3_column_int(s, 3);
    char u[BRK_USER_MAX];
    copy_col(u, sizeof(u), s, 0);
    sqlite3_finalize(s);
    /* Burn it whatever happens next: a token is tried once. */
    rc = prepare(st, "UPDATE tokens SET used = 1 WHERE hash = ?", &s);
    if (rc < 0)
        goto err_rollback;
    bind_text(s, 1, hash);
    rc = step_done(st, s);
    if (rc < 0)
        goto err_rollback;
    rc = exec(st, "COMMIT");
    if (rc < 0)
        goto err_rollback;
    if (used || now >= expires)
        return VDI_ETOKEN;
    snprintf(user, userlen, "%s", u);
    *desktop = dt;
    return 0;
err_rollback:
    exec(st, "ROLLBACK");
    return rc;
}

/* copy_col() for audit text: when the column does not fit, cut before a UTF-8 sequence the cut
 * would split (bytes that were never UTF-8 stay as they are: the reader escapes them). */
static void copy_text(char *dst, size_t n, sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    size_t len = t ? (size_t)sqlite3_column_bytes(s, col) : 0;
    if (len < n) {
        copy_col(dst, n, s, col);
        return;
    }
    size_t cut = n - 1;
    /* Back over continuation bytes to the lead byte; drop it too if its sequence is cut. */
    size_t lead = cut;
    while (lead > 0 && cut - lead < 3 && (t[lead] & 0xc0) == 0x80)
        lead--;
    if (lead < cut || (t[cut] & 0xc0) == 0x80) {
        unsigned char c = t[lead];
        size_t want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        if (c >= 0xc0 && lead + want > cut)
            cut = lead;
    }
    memcpy(dst, t, cut);
    dst[cut] = 0;
}

int brk_store_audit_tail(brk_store_t *st, unsigned n, brk_audit_fn fn, void *ctx)
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     "SELECT id, ts, actor, event, desktop, user, detail FROM"
                     " (SELECT * FROM audit ORDER BY id DESC LIMIT ?) ORDER BY id",
                     &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, n);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        brk_audit_t a;
        memset(&a, 0, sizeof(a));
        a.id = sqlite3_column_int64(s, 0);
        a.ts = sqlite3_column_int64(s, 1);
        copy_text(a.actor, sizeof(a.actor), s, 2);
        copy_text(a.event, sizeof(a.event), s, 3);
        a.desktop = sqlite3_column_int64(s, 4);
        copy_text(a.user, sizeof(a.user), s, 5);
        copy_text(a.detail, sizeof(a.detail), s, 6);
        int r = fn(&a, ctx);
        if (r != 0) {
            sqlite3_finalize(s);
            return r;
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : db_err(st, rc, "audit tail");
}

/* ---- Login limits and web sessions -------------------------------------------------------------- */
int brk_store_limit_put(brk_store_t *st, const char *scope, const char *key,
                        const auth_limit_record_t *rec)
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     "INSERT INTO auth_limits(scope, key, failures, last_fail, locked_until,"
                     " last_ok, expires) VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(scope, key) DO"
                     " UPDATE SET failures = excluded.failures, last_fail = excluded.last_fail,"
                     " locked_until = excluded.locked_until, last_ok = excluded.last_ok,"
                     " expires = excluded.expires",
                     &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, scope);
    bind_text(s, 2, key);
    sqlite3_bind_int64(s, 3, rec->failures);
    sqlite3_bind_int64(s, 4, (int64_t)rec->last_fail);
    sqlite3_bind_int64(s, 5, (int64_t)rec->locked_until);
    sqlite3_bind_int64(s, 6, (int64_t)rec->last_ok);
    sqlite3_bind_int64(s, 7, (int64_t)VDI_MIN(rec->expires, (uint64_t)INT64_MAX));
    return step_done(st, s);
}

int brk_store_limit_delete(brk_store_t *st, const char *scope, const char *key)
{
    sqlite3_stmt *s;
    int rc = prepare(st, "DELETE FROM auth_limits WHERE scope = ? AND key = ?", &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, scope);
    bind_text(s, 2, key);
    return step_done(st, s);
}

/* Delete the rows of @table whose column @col is at or before @now. */
static int purge_before(brk_store_t *st, const char *sql, int64_t now)
{
    sqlite3_stmt *s;
    int rc = prepare(st, sql, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, now);
    return step_done(st, s);
}

int brk_store_limit_foreach(brk_store_t *st, int64_t now_ms, brk_limit_fn fn, void *ctx)
{
    int rc = purge_before(st, "DELETE FROM auth_limits WHERE expires <= ?", now_ms);
    if (rc < 0)
        return rc;
    sqlite3_stmt *s;
    rc = prepare(st,
                 "SELECT scope, key, failures, last_fail, locked_until, last_ok, expires"
                 " FROM auth_limits ORDER BY rowid",
                 &s);
    if (rc < 0)
        return rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *scope = sqlite3_column_text(s, 0), *key = sqlite3_column_text(s, 1);
        int64_t f = sqlite3_column_int64(s, 2);
        auth_limit_record_t r = {
            .failures = f < 0            ? 0
                        : f > UINT32_MAX ? UINT32_MAX
                                         : (uint32_t)f,
            .last_fail = (uint64_t)VDI_MAX(sqlite3_column_int64(s, 3), 0),
            .locked_until = (uint64_t)VDI_MAX(sqlite3_column_int64(s, 4), 0),
            .last_ok = (uint64_t)VDI_MAX(sqlite3_column_int64(s, 5), 0),
            .expires = (uint64_t)VDI_MAX(sqlite3_column_int64(s, 6), 0),
        };
        int r2 = fn(scope ? (const char *)scope : "", key ? (const char *)key : "", &r, ctx);
        if (r2 != 0) {
            sqlite3_finalize(s);
            return r2;
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : db_err(st, rc, "limit list");
}

int brk_store_web_session_put(brk_store_t *st, const brk_web_session_t *ws)
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     "INSERT OR REPLACE INTO web_sessions(digest, user, groups, is_admin, csrf,"
                     " idle_ms, last_used, expires) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                     &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, ws->digest);
    bind_text(s, 2, ws->user);
    bind_text(s, 3, ws->groups);
    sqlite3_bind_int(s, 4, ws->is_admin);
    bind_text(s, 5, ws->csrf);
    sqlite3_bind_int64(s, 6, ws->idle_ms);
    sqlite3_bind_int64(s, 7, ws->last_used);
    sqlite3_bind_int64(s, 8, ws->expires);
    return step_done(st, s);
}

int brk_store_web_session_touch(brk_store_t *st, const char *digest, int64_t last_used)
{
    sqlite3_stmt *s;
    int rc = prepare(st, "UPDATE web_sessions SET last_used = ? WHERE digest = ?", &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, last_used);
    bind_text(s, 2, digest);
    return update_changed(st, s);
}

int brk_store_web_session_delete(brk_store_t *st, const char *digest)
{
    sqlite3_stmt *s;
    int rc = prepare(st, "DELETE FROM web_sessions WHERE digest = ?", &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, digest);
    return step_done(st, s);
}

int brk_store_web_session_foreach(brk_store_t *st, int64_t now_ms, brk_web_session_fn fn, void *ctx)
{
    int rc = purge_before(
        st, "DELETE FROM web_sessions WHERE expires <= ?1 OR last_used + idle_ms <= ?1", now_ms);
    if (rc < 0)
        return rc;
    sqlite3_stmt *s;
    rc = prepare(st,
                 "SELECT digest, user, groups, is_admin, csrf, idle_ms, last_used, expires"
                 " FROM web_sessions ORDER BY rowid",
                 &s);
    if (rc < 0)
        return rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *t[5] = {sqlite3_column_text(s, 0), sqlite3_column_text(s, 1),
                                     sqlite3_column_text(s, 2), NULL, sqlite3_column_text(s, 4)};
        int64_t idle = sqlite3_column_int64(s, 5);
        brk_web_session_t ws = {
            .digest = t[0] ? (const char *)t[0] : "",
            .user = t[1] ? (const char *)t[1] : "",
            .groups = t[2] ? (const char *)t[2] : "",
            .is_admin = sqlite3_column_int(s, 3) != 0,
            .csrf = t[4] ? (const char *)t[4] : "",
            .idle_ms = idle < 0            ? 0
                       : idle > UINT32_MAX ? UINT32_MAX
                                           : (uint32_t)idle,
            .last_used = sqlite3_column_int64(s, 6),
            .expires = sqlite3_column_int64(s, 7),
        };
        int r = fn(&ws, ctx);
        if (r != 0) {
            sqlite3_finalize(s);
            return r;
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : db_err(st, rc, "web session list");
}
