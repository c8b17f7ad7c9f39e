/* Unit tests for broker/store.c against a real SQLite database in a temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/internal.h"
#include "common/vdi.h"

struct fx {
    char dir[64];
    char path[96];
    brk_store_t *st;
};

static int setup(void **state)
{
    struct fx *f = vdi_xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/vdi-test-store.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/vdi.db", f->dir);
    if (brk_store_open(f->path, &f->st) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    brk_store_close(f->st);
    char *cmd = vdi_xasprintf("rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static int count_cb(const void *x, void *ctx)
{
    (void)x;
    (*(int *)ctx)++;
    return 0;
}
static int count_desktops(const brk_desktop_t *d, void *ctx)
{
    return count_cb(d, ctx);
}
static int count_sessions(const brk_session_t *s, void *ctx)
{
    return count_cb(s, ctx);
}

struct audit_rec {
    int n;
    brk_audit_t recs[16];
};
static int collect_audit(const brk_audit_t *a, void *ctx)
{
    struct audit_rec *r = ctx;
    if (r->n < 16)
        r->recs[r->n++] = *a;
    return 0;
}

static void test_fresh_db_is_wal_and_current(void **state)
{
    struct fx *f = *state;
    assert_int_equal(brk_store_schema_version(f->st), BRK_STORE_SCHEMA_VERSION);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void test_desktop_lifecycle_is_audited(void **state)
{
    struct fx *f = *state;
    int64_t id;
    brk_desktop_t d;
    assert_int_equal(brk_store_desktop_create(f->st, "lab", "", "testdesk", 256 << 20, &id), 0);
    assert_true(id > 0);
    assert_int_equal(brk_store_desktop_get(f->st, id, &d), 0);
    assert_int_equal(d.state, BRK_DS_PROVISIONING);
    assert_string_equal(d.pool, "lab");
    assert_int_equal(d.memory, 256 << 20);
    assert_int_equal(brk_store_desktop_set_vmm(f->st, id, 4242, "/x/disk.qcow2", 3), 0);
    assert_int_equal(brk_store_desktop_set_state(f->st, id, BRK_DS_READY, NULL), 0);
    assert_int_equal(brk_store_desktop_set_owner(f->st, id, "alice"), 0);
    assert_int_equal(brk_store_desktop_set_state(f->st, id, BRK_DS_IN_USE, "login"), 0);
    /* a forbidden transition changes nothing */
    assert_int_equal(brk_store_desktop_set_state(f->st, id, BRK_DS_PROVISIONING, NULL), VDI_ESTATE);
    assert_int_equal(brk_store_desktop_get(f->st, id, &d), 0);
    assert_int_equal(d.state, BRK_DS_IN_USE);
    assert_string_equal(d.owner, "alice");
    assert_string_equal(d.overlay, "/x/disk.qcow2");
    assert_int_equal(d.vmm_pid, 4242);
    assert_int_equal(d.image_version, 3);
    assert_string_equal(d.reason, "login");
    assert_int_equal(
        brk_store_desktop_set_state(f->st, id, BRK_DS_FAILED, "vmm killed by signal 9"), 0);
    assert_int_equal(brk_store_desktop_set_state(f->st, id, BRK_DS_GONE, NULL), 0);
    assert_int_equal(brk_store_desktop_set_state(f->st, 999, BRK_DS_GONE, NULL), -ENOENT);
    assert_int_equal(brk_store_desktop_set_owner(f->st, 999, "x"), -ENOENT);

    /* every transition is in the audit log, in order */
    struct audit_rec au = {0};
    int rc = brk_store_audit_tail(f->st, 100, collect_audit, &au);
    for (int i = 0; i < au.n; i++) {
        assert_string_equal(au.recs[i].event, "desktop.state");
        assert_int_equal(au.recs[i].desktop, id);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(au.n, 5);
    assert_string_equal(au.recs[0].detail, "pool=lab to=provisioning");
    assert_string_equal(au.recs[1].detail, "from=provisioning to=ready");
    assert_string_equal(au.recs[2].detail, "from=ready to=in-use reason=login");
    assert_string_equal(au.recs[3].detail, "from=in-use to=failed reason=vmm killed by signal 9");
    assert_string_equal(au.recs[4].detail, "from=failed to=gone");

    int n = 0;
    assert_int_equal(brk_store_desktop_foreach(f->st, false, count_desktops, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(brk_store_desktop_foreach(f->st, true, count_desktops, &n), 0);
    assert_int_equal(n, 1);
}

static void test_sessions(void **state)
{
    struct fx *f = *state;
    int64_t s1, s2;
    brk_session_t se;
    assert_int_equal(brk_store_session_open(f->st, "alice", 1, "127.0.0.1:4000", &s1), 0);
    assert_int_equal(brk_store_session_open(f->st, "bob", 2, "127.0.0.1:4001", &s2), 0);
    assert_int_equal(brk_store_session_close(f->st, s1, "logout"), 0);
    assert_int_equal(brk_store_session_close(f->st, s1, "again"), VDI_ESTATE);
    assert_int_equal(brk_store_session_close(f->st, 77, "x"), -ENOENT);
    assert_int_equal(brk_store_session_get(f->st, s1, &se), 0);
    assert_true(se.ended >= se.started && se.ended > 0);
    assert_string_equal(se.end_reason, "logout");
    assert_string_equal(se.user, "alice");
    int n = 0;
    assert_int_equal(brk_store_session_foreach(f->st, false, count_sessions, &n), 0);
    assert_int_equal(n, 1);
    n = 0;
    assert_int_equal(brk_store_session_foreach(f->st, true, count_sessions, &n), 0);
    assert_int_equal(n, 2);
}

static void test_tokens_burn(void **state)
{
    struct fx *f = *state;
    char user[64];
    int64_t dt = 0;
    assert_int_equal(brk_store_token_put(f->st, "aa", "alice", 5, 1000), 0);
    assert_int_equal(brk_store_token_put(f->st, "bb", "bob", 6, 1000), 0);
    assert_int_equal(brk_store_token_take(f->st, "aa", 999, user, sizeof(user), &dt), 0);
    assert_string_equal(user, "alice");
    assert_int_equal(dt, 5);
    assert_int_equal(brk_store_token_take(f->st, "aa", 999, user, sizeof(user), &dt), VDI_ETOKEN);
    assert_int_equal(brk_store_token_take(f->st, "bb", 1000, user, sizeof(user), &dt), VDI_ETOKEN);
    /* an expired token was burnt too */
    assert_int_equal(brk_store_token_take(f->st, "bb", 0, user, sizeof(user), &dt), VDI_ETOKEN);
    assert_int_equal(brk_store_token_take(f->st, "cc", 0, user, sizeof(user), &dt), VDI_ETOKEN);
}

static void test_pools_sync(void **state)
{
    struct fx *f = *state;
    brk_config_t *cfg;
    char err[128];
    const char *t1 = "[pool a]\nimage=x\n[pool b]\nimage=y\nvcpus=2\n";
    assert_int_equal(brk_config_parse(t1, strlen(t1), "t", &cfg, err, sizeof(err)), 0);
    assert_int_equal(brk_store_sync_pools(f->st, cfg), 0);
    brk_config_free(cfg);
    const char *t2 = "[pool b]\nimage=z\n";
    assert_int_equal(brk_config_parse(t2, strlen(t2), "t", &cfg, err, sizeof(err)), 0);
    assert_int_equal(brk_store_sync_pools(f->st, cfg), 0);
    brk_config_free(cfg);
    sqlite3 *db;
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT name, image, removed FROM pools ORDER BY name",
                                        -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "a");
    assert_int_equal(sqlite3_column_int(s, 2), 1);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 1), "z");
    assert_int_equal(sqlite3_column_int(s, 2), 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void test_reopen_keeps_everything(void **state)
{
    struct fx *f = *state;
    int64_t id;
    assert_int_equal(brk_store_desktop_create(f->st, "lab", "bob", "testdesk", 1 << 28, &id), 0);
    brk_store_close(f->st);
    assert_int_equal(brk_store_open(f->path, &f->st), 0);
    brk_desktop_t d;
    assert_int_equal(brk_store_desktop_get(f->st, id, &d), 0);
    assert_string_equal(d.owner, "bob");
}

/* A user name as long as a login allows (AUTH_USERNAME_MAX bytes) comes back whole, as a
 * desktop's owner, a session's user and an audit record's user: the next login compares it with
 * the name it carries, so a cut name would give that user a new desktop every time. */
static void test_long_user_names(void **state)
{
    struct fx *f = *state;
    char name[AUTH_USERNAME_MAX + 1];
    for (size_t i = 0; i < AUTH_USERNAME_MAX; i++)
        name[i] = (char)('a' + i % 26);
    name[AUTH_USERNAME_MAX] = 0;
    int64_t id, sid;
    assert_int_equal(brk_store_desktop_create(f->st, "lab", name, "testdesk", 1 << 28, &id), 0);
    brk_desktop_t d;
    assert_int_equal(brk_store_desktop_get(f->st, id, &d), 0);
    assert_int_equal(strlen(d.owner), AUTH_USERNAME_MAX);
    assert_string_equal(d.owner, name);
    assert_int_equal(brk_store_desktop_set_owner(f->st, id, name), 0);
    brk_store_close(f->st);
    assert_int_equal(brk_store_open(f->path, &f->st), 0);
    assert_int_equal(brk_store_desktop_get(f->st, id, &d), 0);
    assert_string_equal(d.owner, name);
    assert_int_equal(brk_store_session_open(f->st, name, id, "127.0.0.1", &sid), 0);
    brk_session_t se;
    assert_int_equal(brk_store_session_get(f->st, sid, &se), 0);
    assert_string_equal(se.user, name);
    struct audit_rec r = {0};
    assert_int_equal(brk_store_audit_tail(f->st, 1, collect_audit, &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.recs[0].user, name);
    char user[BRK_USER_MAX];
    int64_t desk;
    assert_int_equal(brk_store_token_put(f->st, "h", name, id, INT64_MAX), 0);
    assert_int_equal(brk_store_token_take(f->st, "h", 1, user, sizeof(user), &desk), 0);
    assert_string_equal(user, name);
}

static void test_migration_from_v1(void **state)
{
    struct fx *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/old.db", f->dir);
    brk_store_t *st;
    assert_int_equal(brk__store_open_at(path, 1, &st), 0);
    assert_int_equal(brk_store_schema_version(st), 1);
    int64_t id;
    assert_int_equal(brk_store_desktop_create(st, "lab", "carol", "testdesk", 1 << 28, &id), 0);
    brk_store_close(st);
    assert_int_equal(brk_store_open(path, &st), 0);
    assert_int_equal(brk_store_schema_version(st), BRK_STORE_SCHEMA_VERSION);
    brk_desktop_t d;
    assert_int_equal(brk_store_desktop_get(st, id, &d), 0);
    assert_string_equal(d.owner, "carol");
    /* the version 2 tables work */
    assert_int_equal(brk_store_token_put(st, "h", "carol", id, 10), 0);
    int64_t sid;
    assert_int_equal(brk_store_session_open(st, "carol", id, "x", &sid), 0);
    assert_int_equal(brk_store_session_close(st, sid, "logout"), 0);
    brk_store_close(st);
}

/* Version 2 -> 3: what version 2 held stays, and the new tables work. */
static void test_migration_from_v2(void **state)
{
    struct fx *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/v2.db", f->dir);
    brk_store_t *st;
    assert_int_equal(brk__store_open_at(path, 2, &st), 0);
    int64_t id;
    assert_int_equal(brk_store_desktop_create(st, "lab", "dave", "testdesk", 1 << 28, &id), 0);
    assert_int_equal(brk_store_token_put(st, "h2", "dave", id, 10), 0);
    brk_store_close(st);
    assert_int_equal(brk_store_open(path, &st), 0);
    assert_int_equal(brk_store_schema_version(st), BRK_STORE_SCHEMA_VERSION);
    brk_desktop_t d;
    assert_int_equal(brk_store_desktop_get(st, id, &d), 0);
    assert_string_equal(d.owner, "dave");
    auth_limit_record_t r = {.failures = 1, .last_fail = 5, .expires = 100};
    assert_int_equal(brk_store_limit_put(st, "user", "dave", &r), 0);
    brk_store_close(st);
}

/* Version 3 -> 4: desktops keep their rows and gain a MAC and an address; host network objects
 * are recorded and listed. */
static int count_obj(const char *kind, const char *name, const char *pool, int64_t desktop,
                     void *ctx)
{
    (void)name;
    (void)pool;
    if (!strcmp(kind, "tap"))
        assert_int_equal(desktop, 7);
    (*(int *)ctx)++;
    return 0;
}

static void test_migration_from_v3_net(void **state)
{
    struct fx *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/v3.db", f->dir);
    brk_store_t *st;
    assert_int_equal(brk__store_open_at(path, 3, &st), 0);
    int64_t id;
    assert_int_equal(brk_store_desktop_create(st, "lab", "erin", "testdesk", 1 << 28, &id), 0);
    brk_store_close(st);
    assert_int_equal(brk_store_open(path, &st), 0);
    assert_int_equal(brk_store_schema_version(st), BRK_STORE_SCHEMA_VERSION);
    brk_desktop_t d;
    assert_int_equal(brk_store_desktop_get(st, id, &d), 0);
    assert_string_equal(d.owner, "erin");
    assert_string_equal(d.mac, "");
    assert_int_equal(brk_store_desktop_set_net(st, id, "02:76:64:00:00:01", "10.213.4.2"), 0);
    assert_int_equal(brk_store_desktop_get(st, id, &d), 0);
    assert_string_equal(d.mac, "02:76:64:00:00:01");
    assert_string_equal(d.ip, "10.213.4.2");
    assert_int_equal(brk_store_netobj_add(st, "bridge", "vdn01234567", "lab", 0), 0);
    assert_int_equal(brk_store_netobj_add(st, "tap", "vdt00017", "lab", 7), 0);
    assert_int_equal(brk_store_netobj_add(st, "tap", "vdt00017", "lab", 7), 0); /* idempotent */
    int n = 0;
    assert_int_equal(brk_store_netobj_foreach(st, count_obj, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(brk_store_netobj_del(st, "tap", "vdt00017"), 0);
    n = 0;
    assert_int_equal(brk_store_netobj_foreach(st, count_obj, &n), 0);
    assert_int_equal(n, 1);
    brk_store_close(st);
}

static int collect_rollout(const brk_rollout_t *r, void *ctx)
{
    brk_rollout_t *out = ctx;
    while (out->id)
        out++;
    *out = *r;
    return 0;
}

/* A version 4 database gains the rollouts table; rollouts are saved, updated and listed newest
 * first, per pool or all. */
static void test_migration_from_v4_rollouts(void **state)
{
    struct fx *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/v4.db", f->dir);
    brk_store_t *st;
    assert_int_equal(brk__store_open_at(path, 4, &st), 0);
    brk_store_close(st);
    assert_int_equal(brk_store_open(path, &st), 0);
    assert_int_equal(brk_store_schema_version(st), BRK_STORE_SCHEMA_VERSION);
    brk_rollout_t a = {.from = 1, .to = 2, .state = BRK_RO_CANARY, .started = 1000};
    snprintf(a.pool, sizeof(a.pool), "lab");
    snprintf(a.image, sizeof(a.image), "testdesk");
    assert_int_equal(brk_store_rollout_save(st, &a), 0);
    assert_true(a.id > 0);
    brk_rollout_t b = a;
    b.id = 0;
    snprintf(b.pool, sizeof(b.pool), "office");
    assert_int_equal(brk_store_rollout_save(st, &b), 0);
    assert_true(b.id > a.id);
    a.state = BRK_RO_ROLLING_BACK;
    a.failed = 2;
    a.wave = 1;
    snprintf(a.reason, sizeof(a.reason), "2 desktops on version 2 failed");
    assert_int_equal(brk_store_rollout_save(st, &a), 0);
    brk_store_close(st);
    assert_int_equal(brk_store_open(path, &st), 0);
    brk_rollout_t got[4] = {{0}};
    assert_int_equal(brk_store_rollout_foreach(st, NULL, collect_rollout, got), 0);
    assert_int_equal(got[0].id, b.id); /* newest first */
    assert_int_equal(got[1].id, a.id);
    assert_int_equal(got[2].id, 0);
    assert_string_equal(got[1].pool, "lab");
    assert_int_equal(got[1].state, BRK_RO_ROLLING_BACK);
    assert_int_equal(got[1].failed, 2);
    assert_int_equal(got[1].wave, 1);
    assert_int_equal(got[1].from, 1);
    assert_int_equal(got[1].to, 2);
    assert_int_equal(got[1].started, 1000);
    assert_string_equal(got[1].reason, "2 desktops on version 2 failed");
    memset(got, 0, sizeof(got));
    assert_int_equal(brk_store_rollout_foreach(st, "office", collect_rollout, got), 0);
    assert_int_equal(got[0].id, b.id);
    assert_int_equal(got[1].id, 0);
    assert_true(brk_rollout_active(BRK_RO_CANARY) && brk_rollout_active(BRK_RO_ROLLING_BACK));
    assert_false(brk_rollout_active(BRK_RO_DONE) || brk_rollout_active(BRK_RO_ROLLED_BACK));
    assert_string_equal(brk_rollout_state_name(BRK_RO_ROLLED_BACK), "rolled-back");
    brk_store_close(st);
}

struct limits_seen {
    int n;
    char keys[8][64];
    auth_limit_record_t recs[8];
};
static int collect_limit(const char *scope, const char *key, const auth_limit_record_t *rec,
                         void *ctx)
{
    struct limits_seen *l = ctx;
    if (l->n < 8) {
        snprintf(l->keys[l->n], sizeof(l->keys[0]), "%s|%s", scope, key);
        l->recs[l->n++] = *rec;
    }
    return 0;
}

/* Login limit records: put, replace, delete, and expired ones purged by the walk. */
static void test_limits(void **state)
{
    struct fx *f = *state;
    auth_limit_record_t a = {.failures = 9,
                             .last_fail = 1700000000000,
                             .locked_until = 1700000900000,
                             .expires = 1700003600000};
    auth_limit_record_t b = {.last_ok = 1700000000000, .expires = 1702592000000};
    assert_int_equal(brk_store_limit_put(f->st, "user-addr", "203.0.113.9 alice", &a), 0);
    assert_int_equal(brk_store_limit_put(f->st, "user-addr", "192.0.2.1 alice", &b), 0);
    assert_int_equal(brk_store_limit_put(f->st, "addr", "2001:db8::/64", &a), 0);
    a.failures = 10;
    assert_int_equal(brk_store_limit_put(f->st, "user-addr", "203.0.113.9 alice", &a), 0);
    assert_int_equal(brk_store_limit_delete(f->st, "addr", "2001:db8::/64"), 0);
    brk_store_close(f->st);
    assert_int_equal(brk_store_open(f->path, &f->st), 0);
    struct limits_seen l = {0};
    assert_int_equal(brk_store_limit_foreach(f->st, 1700000000001, collect_limit, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.keys[0], "user-addr|203.0.113.9 alice");
    assert_int_equal(l.recs[0].failures, 10);
    assert_int_equal(l.recs[0].locked_until, 1700000900000);
    assert_int_equal(l.recs[0].expires, 1700003600000);
    assert_string_equal(l.keys[1], "user-addr|192.0.2.1 alice");
    assert_int_equal(l.recs[1].last_ok, 1700000000000);
    /* An hour later the lockout record is over and gone from the table. */
    memset(&l, 0, sizeof(l));
    assert_int_equal(brk_store_limit_foreach(f->st, 1700003600000, collect_limit, &l), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.keys[0], "user-addr|192.0.2.1 alice");
}

struct ws_seen {
    int n;
    char user[4][BRK_USER_MAX];
    char groups[4][64];
    char csrf[4][64];
    int64_t last_used[4];
    bool admin[4];
};
static int collect_ws(const brk_web_session_t *ws, void *ctx)
{
    struct ws_seen *w = ctx;
    if (w->n < 4) {
        snprintf(w->user[w->n], sizeof(w->user[0]), "%s", ws->user);
        snprintf(w->groups[w->n], sizeof(w->groups[0]), "%s", ws->groups);
        snprintf(w->csrf[w->n], sizeof(w->csrf[0]), "%s", ws->csrf);
        w->last_used[w->n] = ws->last_used;
        w->admin[w->n++] = ws->is_admin;
    }
    return 0;
}

/* Web sessions: put, touch, delete; sessions over (absolute or idle) purged by the walk. */
static void test_web_sessions(void **state)
{
    struct fx *f = *state;
    brk_web_session_t a = {.digest = "aa",
                           .user = "alice",
                           .groups = "alice\nstaff\n",
                           .csrf = "c1",
                           .idle_ms = 1000,
                           .last_used = 10000,
                           .expires = 50000};
    brk_web_session_t b = {.digest = "bb",
                           .user = "root2",
                           .groups = "",
                           .is_admin = true,
                           .csrf = "c2",
                           .idle_ms = 100000,
                           .last_used = 10000,
                           .expires = 20000};
    brk_web_session_t c = {.digest = "cc",
                           .user = "carol",
                           .groups = "",
                           .csrf = "c3",
                           .idle_ms = 100000,
                           .last_used = 10000,
                           .expires = 90000};
    assert_int_equal(brk_store_web_session_put(f->st, &a), 0);
    assert_int_equal(brk_store_web_session_put(f->st, &b), 0);
    assert_int_equal(brk_store_web_session_put(f->st, &c), 0);
    assert_int_equal(brk_store_web_session_touch(f->st, "aa", 10900), 0);
    assert_int_equal(brk_store_web_session_touch(f->st, "zz", 10900), -ENOENT);
    struct ws_seen w = {0};
    assert_int_equal(brk_store_web_session_foreach(f->st, 11000, collect_ws, &w), 0);
    assert_int_equal(w.n, 3);
    assert_string_equal(w.user[0], "alice");
    assert_string_equal(w.groups[0], "alice\nstaff\n");
    assert_string_equal(w.csrf[0], "c1");
    assert_int_equal(w.last_used[0], 10900);
    assert_true(w.admin[1]);
    assert_int_equal(brk_store_web_session_delete(f->st, "cc"), 0);
    /* At 20000: alice idle for 9.1 s (1 s allowed), root2's absolute end reached. */
    memset(&w, 0, sizeof(w));
    assert_int_equal(brk_store_web_session_foreach(f->st, 20000, collect_ws, &w), 0);
    assert_int_equal(w.n, 0);
}

static void test_refuses_foreign_and_newer(void **state)
{
    struct fx *f = *state;
    char path[128];
    sqlite3 *db;
    brk_store_t *st = NULL;
    snprintf(path, sizeof(path), "%s/foreign.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(brk_store_open(path, &st), VDI_ECORRUPT);
    assert_null(st);

    snprintf(path, sizeof(path), "%s/newer.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(brk_store_open(path, &st), VDI_ECORRUPT);

    snprintf(path, sizeof(path), "%s/garbage.db", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 512; i++)
        fputs("this is not a database ", fp);
    fclose(fp);
    assert_int_equal(brk_store_open(path, &st), VDI_ECORRUPT);

    assert_true(brk_store_open("/nonexistent/dir/vdi.db", &st) < 0);
    assert_null(st);
}

int main(void)
{
    vdi_log_set_level(VDI_LOG_LEVEL_ERR - 1); /* the refusals above log errors on purpose */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_db_is_wal_and_current, setup, teardown),
        cmocka_unit_test_setup_teardown(test_desktop_lifecycle_is_audited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens_burn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pools_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_user_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v3_net, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v4_rollouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_web_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_foreign_and_newer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
