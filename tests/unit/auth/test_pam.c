/* Unit tests for auth/pam.c against a real PAM stack: pam_wrapper (LD_PRELOAD) runs service files
 * from a temporary directory, pam_matrix checks passwords from a file, pam_listfile + pam_debug
 * make an expired account, and nss_wrapper (when installed) supplies users and groups. No system
 * user or PAM file is touched.
 *
 * The binary re-executes itself with the wrappers preloaded; it skips (exit 77) if libpam-wrapper
 * is missing, unless VDI_REQUIRE_KVM=1 (CI), where a missing test dependency fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/internal.h"

static const char *const multiarch_dirs[] = {
    "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", NULL};

static char *find_lib(const char *rel)
{
    for (int i = 0; multiarch_dirs[i]; i++) {
        char *p = vdi_xasprintf("%s/%s", multiarch_dirs[i], rel);
        if (access(p, R_OK) == 0)
            return p;
        free(p);
    }
    return NULL;
}

static void write_file(const char *dir, const char *name, const char *fmt, ...) VDI_PRINTF(3, 4);
static void write_file(const char *dir, const char *name, const char *fmt, ...)
{
    char *path = vdi_xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
    free(path);
}

static bool have_nss;

/* Parent: build the PAM world in a temporary directory and re-execute under the wrappers. */
static void reexec(char **argv)
{
    char *pamw = find_lib("libpam_wrapper.so");
    char *matrix = find_lib("pam_wrapper/pam_matrix.so");
    char *listfile = find_lib("security/pam_listfile.so");
    char *debug = find_lib("security/pam_debug.so");
    char *deny = find_lib("security/pam_deny.so");
    char *nssw = find_lib("libnss_wrapper.so");
    char *setitems = find_lib("pam_wrapper/pam_set_items.so");
    char *faildelay = find_lib("security/pam_faildelay.so");
    if (!pamw || !matrix || !listfile || !debug || !deny || !setitems || !faildelay) {
        const char *ci = getenv("VDI_REQUIRE_DEPS");
        if (!ci || strcmp(ci, "1") != 0)
            ci = getenv("VDI_REQUIRE_KVM");
        printf("%s: pam_wrapper/pam_matrix/pam_set_items (libpam-wrapper) or "
               "pam_listfile/pam_debug/pam_faildelay missing\n",
               ci && strcmp(ci, "1") == 0 ? "FAIL" : "SKIP");
        exit(ci && strcmp(ci, "1") == 0 ? 1 : 77);
    }
    char tmpl[] = "/tmp/vdi-test-pam.XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) {
        perror("mkdtemp");
        exit(1);
    }
    write_file(dir, "passdb",
               "alice:secret:vdi-test\nbob:hunter2:vdi-test\ncarol:pw:other-service\n"
               "olduser:oldpw:vdi-test\n");
    write_file(dir, "expired.list", "olduser\n");
    write_file(dir, "vdi-test",
               "auth required %s passdb=%s/passdb\n"
               "account [success=ok default=1] %s item=user sense=allow file=%s/expired.list "
               "onerr=fail\n"
               "account requisite %s acct=acct_expired\n"
               "account required %s passdb=%s/passdb\n",
               matrix, dir, listfile, dir, debug, matrix, dir);
    /* Two modules that each ask for a password: the second hidden prompt must be refused. */
    write_file(dir, "vdi-twoprompts",
               "auth required %s passdb=%s/passdb\nauth required %s passdb=%s/passdb\n"
               "account required %s passdb=%s/passdb\n",
               matrix, dir, matrix, dir, matrix, dir);
    write_file(dir, "other", "auth required %s\naccount required %s\n", deny, deny);
    /* A stack that maps every name to the one in $PAM_USER (pam_set_items sets PAM items from
     * the environment), the way a directory service maps "ALICE" to "alice". */
    write_file(dir, "vdi-map",
               "auth required %s\nauth required %s passdb=%s/passdb-map\n"
               "account required %s\naccount required %s passdb=%s/passdb-map\n",
               setitems, matrix, dir, setitems, matrix, dir);
    write_file(dir, "passdb-map", "alice:secret:vdi-map\n");
    /* pam_faildelay asks libpam to sleep 3 s after a failure, as pam_unix asks for 2 s. */
    write_file(dir, "vdi-delay",
               "auth optional %s delay=3000000\nauth required %s passdb=%s/passdb-delay\n"
               "account required %s passdb=%s/passdb-delay\n",
               faildelay, matrix, dir, matrix, dir);
    write_file(dir, "passdb-delay", "alice:secret:vdi-delay\n");
    /* A module that asks with echo on: we never answer that. */
    write_file(dir, "vdi-echo", "auth required %s passdb=%s/passdb echo\n", matrix, dir);
    write_file(dir, "passwd",
               "alice:x:1001:1001:Alice:/nonexistent:/bin/false\n"
               "bob:x:1002:1002:Bob:/nonexistent:/bin/false\n");
    write_file(dir, "group",
               "alice:x:1001:\nbob:x:1002:\nvdi-admin:x:2000:alice\nstaff:x:2001:alice,bob\n");
    char *preload = nssw ? vdi_xasprintf("%s:%s", pamw, nssw) : vdi_xstrdup(pamw);
    setenv("LD_PRELOAD", preload, 1);
    setenv("PAM_WRAPPER", "1", 1);
    setenv("PAM_WRAPPER_SERVICE_DIR", dir, 1);
    if (nssw) {
        char *p = vdi_xasprintf("%s/passwd", dir), *g = vdi_xasprintf("%s/group", dir);
        setenv("NSS_WRAPPER_PASSWD", p, 1);
        setenv("NSS_WRAPPER_GROUP", g, 1);
    }
    setenv("VDI_TEST_PAM_DIR", dir, 1);
    /* Under ASan: the wrappers dlopen with RTLD_DEEPBIND, which ASan cannot work with, unless
     * told not to (pam_wrapper 1.1.4 reads its switch under uid_wrapper's name); and ASan wants
     * to be first in the library list, where the preloaded wrappers are instead. */
    setenv("UID_WRAPPER_DISABLE_DEEPBIND", "1", 1);
    setenv("PAM_WRAPPER_DISABLE_DEEPBIND", "1", 1);
    setenv("NSS_WRAPPER_DISABLE_DEEPBIND", "1", 1);
    const char *asan = getenv("ASAN_OPTIONS");
    char *asan2 = vdi_xasprintf("%s%sverify_asan_link_order=0", asan ? asan : "", asan ? ":" : "");
    setenv("ASAN_OPTIONS", asan2, 1);
    execv("/proc/self/exe", argv);
    perror("execv /proc/self/exe");
    exit(1);
}

static void cleanup_dir(void)
{
    const char *dir = getenv("VDI_TEST_PAM_DIR");
    const char *files[] = {"passdb",   "expired.list", "vdi-test",   "vdi-twoprompts",
                           "vdi-echo", "passwd",       "group",      "other",
                           "vdi-map",  "vdi-delay",    "passdb-map", "passdb-delay"};
    if (!dir)
        return;
    for (size_t i = 0; i < VDI_ARRAY_SIZE(files); i++) {
        char *p = vdi_xasprintf("%s/%s", dir, files[i]);
        unlink(p);
        free(p);
    }
    char *p = vdi_xasprintf("%s/tls/cert.pem", dir);
    unlink(p);
    free(p);
    p = vdi_xasprintf("%s/tls/key.pem", dir);
    unlink(p);
    free(p);
    p = vdi_xasprintf("%s/tls", dir);
    rmdir(p);
    free(p);
    rmdir(dir);
}

static int check(const char *service, const char *user, const char *pass, auth_identity_t **id,
                 const char **reason)
{
    *id = NULL;
    *reason = NULL;
    char *canon = NULL;
    int rc =
        auth__pam_check_blocking(service, "vdi-admin", user, pass, "192.0.2.1", id, &canon, reason);
    assert_non_null(canon);
    free(canon);
    return rc;
}

static void test_right_password(void **state)
{
    (void)state;
    auth_identity_t *id;
    const char *reason;
    assert_int_equal(check("vdi-test", "alice", "secret", &id, &reason), 0);
    assert_non_null(id);
    assert_string_equal(id->username, "alice");
    if (have_nss) {
        assert_int_equal(id->ngroups, 3);
        assert_string_equal(id->groups[0], "alice"); /* the primary group first */
        assert_true(id->is_admin);
    }
    auth_identity_free(id);
    assert_int_equal(check("vdi-test", "bob", "hunter2", &id, &reason), 0);
    if (have_nss) {
        assert_int_equal(id->ngroups, 2);
        assert_false(id->is_admin);
    }
    auth_identity_free(id);
}

static void test_wrong_password(void **state)
{
    (void)state;
    auth_identity_t *id;
    const char *reason;
    assert_int_equal(check("vdi-test", "alice", "Secret", &id, &reason), VDI_EAUTH);
    assert_null(id);
    assert_string_equal(reason, "authentication failed");
    assert_int_equal(check("vdi-test", "alice", "secret ", &id, &reason), VDI_EAUTH);
}

static void test_unknown_user(void **state)
{
    (void)state;
    auth_identity_t *id;
    const char *reason;
    /* Same answer as a wrong password: the client learns nothing about which names exist. */
    assert_int_equal(check("vdi-test", "mallory", "secret", &id, &reason), VDI_EAUTH);
    assert_string_equal(reason, "authentication failed");
}

static void test_expired_account(void **state)
{
    (void)state;
    auth_identity_t *id;
    const char *reason;
    assert_int_equal(check("vdi-test", "olduser", "oldpw", &id, &reason), VDI_EAUTH);
    assert_string_equal(reason, "account expired");
    /* With the wrong password, nothing about the account is revealed. */
    assert_int_equal(check("vdi-test", "olduser", "nope", &id, &reason), VDI_EAUTH);
    assert_string_equal(reason, "authentication failed");
    /* pam_matrix's account stage refuses a user registered for another service. */
    assert_int_equal(check("vdi-test", "carol", "pw", &id, &reason), VDI_EAUTH);
    assert_string_equal(reason, "account not permitted to log in");
}

static void test_conversation_answers_one_hidden_prompt(void **state)
{
    (void)state;
    auth_identity_t *id;
    const char *reason;
    assert_int_equal(check("vdi-twoprompts", "alice", "secret", &id, &reason), VDI_EAUTH);
    assert_int_equal(check("vdi-echo", "alice", "secret", &id, &reason), VDI_EAUTH);
    assert_int_equal(check("no-such-service", "alice", "secret", &id, &reason), VDI_EAUTH);
}

/* The identity, and the name the limits count under, is PAM_USER after the stack ran: a stack
 * that maps "ALICE" to "alice" logs in "alice", and reports "alice" for a failure too. */
static void test_name_is_what_pam_resolved(void **state)
{
    (void)state;
    auth_identity_t *id = NULL;
    const char *reason;
    char *canon = NULL;
    setenv("PAM_USER", "alice", 1);
    assert_int_equal(auth__pam_check_blocking("vdi-map", NULL, "ALICE", "secret", "192.0.2.1", &id,
                                              &canon, &reason),
                     0);
    assert_string_equal(id->username, "alice");
    assert_string_equal(canon, "alice");
    auth_identity_free(id);
    free(canon);
    id = NULL;
    assert_int_equal(auth__pam_check_blocking("vdi-map", NULL, "Alice", "wrong", "192.0.2.1", &id,
                                              &canon, &reason),
                     VDI_EAUTH);
    assert_null(id);
    assert_string_equal(canon, "alice");
    free(canon);
    unsetenv("PAM_USER");
    /* A stack that leaves the name alone reports it as given. */
    assert_int_equal(auth__pam_check_blocking("vdi-test", NULL, "Alice", "secret", "192.0.2.1", &id,
                                              &canon, &reason),
                     VDI_EAUTH);
    assert_string_equal(canon, "Alice");
    free(canon);
}

/* PAM's failure delay is off: a wrong password through a stack whose module asks for 3 s comes
 * back at once (the limits hold attempts back on the loop, not in a pool thread). */
static void test_no_pam_fail_delay(void **state)
{
    (void)state;
    auth_identity_t *id;
    const char *reason;
    uint64_t t0 = vdi_now_ms();
    assert_int_equal(check("vdi-delay", "alice", "wrong", &id, &reason), VDI_EAUTH);
    assert_true(vdi_now_ms() - t0 < 1000);
    assert_int_equal(check("vdi-delay", "alice", "secret", &id, &reason), 0);
    auth_identity_free(id);
}

/* The queue: at most max_running checks in the pool, max_queued waiting, -EBUSY beyond. */
struct qstate {
    auth__pam_t *pam;
    int done, ok, failed;
    uint32_t max_seen;
};

static void on_done(int status, auth_identity_t *id, const char *user, const char *reason,
                    void *ctx)
{
    struct qstate *q = ctx;
    (void)reason;
    assert_non_null(user);
    q->done++;
    if (status == 0)
        q->ok++;
    else
        q->failed++;
    /* This job has left the pool; at most max_running - 1 others are in it plus a new one. */
    q->max_seen = VDI_MAX(q->max_seen, auth__pam_running(q->pam));
    auth_identity_free(id);
}

static void test_queue_cap(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct qstate q = {0};
    q.pam = auth__pam_create(&loop, "vdi-test", "vdi-admin", 2, 5);
    int busy = 0;
    for (int i = 0; i < 10; i++) {
        int err = auth__pam_submit(q.pam, i % 2 ? "alice" : "bob", i % 2 ? "secret" : "wrong",
                                   "192.0.2.9", on_done, &q);
        if (err == -EBUSY)
            busy++;
        else
            assert_int_equal(err, 0);
        assert_true(auth__pam_running(q.pam) <= 2);
    }
    assert_int_equal(busy, 3);
    assert_int_equal(auth__pam_running(q.pam), 2);
    assert_int_equal(auth__pam_queued(q.pam), 5);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(q.done, 7);
    assert_int_equal(q.ok, 3); /* submissions 1, 3, 5 */
    assert_int_equal(q.failed, 4);
    assert_true(q.max_seen <= 2);
    assert_int_equal(auth__pam_running(q.pam), 0);
    auth__pam_destroy(q.pam);
    uv_loop_close(&loop);
}

/* auth_check_password: limits around PAM, the per-address cap, audit events. */
struct cstate {
    int done, ok, eauth, ebusy, elock;
    int audit[4];
    uint64_t last_ms;
};

static void on_checked(int status, auth_identity_t *id, const char *reason, void *ctx)
{
    struct cstate *c = ctx;
    c->done++;
    c->last_ms = vdi_now_ms();
    if (status == 0)
        c->ok++;
    else if (status == VDI_EAUTH)
        c->eauth++;
    else if (status == -EBUSY)
        c->ebusy++;
    else if (status == VDI_ELOCKOUT)
        c->elock++;
    assert_non_null(reason);
    assert_null(strstr(reason, "hunter2"));
    auth_identity_free(id);
}

static void on_audit(const auth_audit_event_t *ev, void *ctx)
{
    struct cstate *c = ctx;
    assert_true(ev->kind <= AUTH_AUDIT_LOCKED);
    assert_string_equal(ev->service, "web");
    c->audit[ev->kind]++;
}

static void test_check_password_limits(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    auth_config_t cfg;
    auth_config_defaults(&cfg);
    cfg.pam_service = "vdi-test";
    cfg.state_dir = getenv("VDI_TEST_PAM_DIR");
    cfg.limit_user = (auth_limit_config_t){.free_failures = 1,
                                           .backoff_base_ms = 200,
                                           .backoff_max_ms = 1000,
                                           .lockout_failures = 3,
                                           .lockout_ms = 60000,
                                           .max_entries = 100};
    cfg.max_checks_per_addr = 4;
    auth_t *a;
    assert_int_equal(auth_create(&loop, &cfg, &a), 0);
    struct cstate c = {0};
    auth_set_audit(a, on_audit, &c);

    /* Six guesses in parallel from one address: four run, two are refused at once. */
    for (int i = 0; i < 6; i++)
        assert_int_equal(auth_check_password(a, "web", "bob", "wrong", "192.0.2.5", on_checked, &c),
                         0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(c.done, 6);
    assert_int_equal(c.ebusy, 2);
    assert_int_equal(c.eauth, 4);
    assert_int_equal(c.audit[AUTH_AUDIT_LOGIN_FAILED], 4);
    assert_true(c.audit[AUTH_AUDIT_LOCKOUT] >= 1);
    /* bob is locked out for that address now: even the right password is refused, without
     * PAM. From another address he logs in. */
    assert_int_equal(auth_check_password(a, "web", "bob", "hunter2", "192.0.2.5", on_checked, &c),
                     0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(c.elock, 1);
    assert_int_equal(c.audit[AUTH_AUDIT_LOCKED], 1);
    assert_int_equal(auth_check_password(a, "web", "bob", "hunter2", "192.0.2.6", on_checked, &c),
                     0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(c.ok, 1);
    c.ok = 0;
    c.audit[AUTH_AUDIT_LOGIN_OK] = 0;

    /* Backoff: after two failures the next attempt is held ~200 ms; a success resets. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(
            auth_check_password(a, "web", "alice", "nope", "192.0.2.7", on_checked, &c), 0);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uint64_t w0 = 0;
    const char *why;
    assert_int_equal(
        auth__limits_check(a->limits, "alice", "192.0.2.7", auth__wall_ms(a), &w0, &why), 0);
    assert_true(w0 > 0 && w0 <= 200);
    uint64_t t0 = vdi_now_ms();
    assert_int_equal(auth_check_password(a, "web", "alice", "secret", "192.0.2.7", on_checked, &c),
                     0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(c.ok, 1);
    assert_true(c.last_ms - t0 >= 150);
    uint64_t wait = 1;
    assert_int_equal(
        auth__limits_check(a->limits, "alice", "192.0.2.7", auth__wall_ms(a), &wait, &why), 0);
    assert_int_equal(wait, 0); /* the success reset alice's count */
    assert_int_equal(c.audit[AUTH_AUDIT_LOGIN_OK], 1);

    /* Bad input is refused synchronously and never reaches PAM. */
    assert_int_equal(auth_check_password(a, "web", "", "x", "p", on_checked, &c), -EINVAL);
    assert_int_equal(auth_check_password(a, "web", "a\nb", "x", "p", on_checked, &c), -EINVAL);
    assert_int_equal(auth_check_password(a, "web", "alice", "", "p", on_checked, &c), -EINVAL);
    auth_destroy(a);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Spellings that PAM maps to one account share its counters, before PAM (a spelling seen
 * before) and after it (a new spelling is refused once PAM has said whom it means). */
static void test_check_password_canonical_names(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    auth_config_t cfg;
    auth_config_defaults(&cfg);
    cfg.pam_service = "vdi-map";
    cfg.state_dir = getenv("VDI_TEST_PAM_DIR");
    cfg.limit_user = (auth_limit_config_t){.lockout_failures = 3, .lockout_ms = 60000};
    auth_t *a;
    assert_int_equal(auth_create(&loop, &cfg, &a), 0);
    struct cstate c = {0};
    setenv("PAM_USER", "alice", 1);
    const char *spellings[] = {"ALICE", "Alice", "aLiCe"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            auth_check_password(a, "web", spellings[i], "wrong", "192.0.2.9", on_checked, &c), 0);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    assert_int_equal(c.eauth, 3);
    uint64_t wait;
    const char *why;
    assert_int_equal(
        auth__limits_check(a->limits, "alice", "192.0.2.9", auth__wall_ms(a), &wait, &why),
        VDI_ELOCKOUT);
    /* The right password, as "alice" or in a fourth spelling, is refused: the counter is one. */
    assert_int_equal(auth_check_password(a, "web", "alice", "secret", "192.0.2.9", on_checked, &c),
                     0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(auth_check_password(a, "web", "ALIce", "secret", "192.0.2.9", on_checked, &c),
                     0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(c.elock, 2);
    assert_int_equal(c.ok, 0);
    /* From another address the mapped name logs in, as "alice". */
    assert_int_equal(auth_check_password(a, "web", "ALICE", "secret", "192.0.2.10", on_checked, &c),
                     0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(c.ok, 1);
    unsetenv("PAM_USER");
    auth_destroy(a);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    if (!getenv("PAM_WRAPPER"))
        reexec(argv);
    have_nss = getenv("NSS_WRAPPER_PASSWD") != NULL;
    if (!have_nss)
        printf("# nss_wrapper (libnss-wrapper) not installed: group checks skipped\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_right_password),
        cmocka_unit_test(test_wrong_password),
        cmocka_unit_test(test_unknown_user),
        cmocka_unit_test(test_expired_account),
        cmocka_unit_test(test_conversation_answers_one_hidden_prompt),
        cmocka_unit_test(test_name_is_what_pam_resolved),
        cmocka_unit_test(test_no_pam_fail_delay),
        cmocka_unit_test(test_queue_cap),
        cmocka_unit_test(test_check_password_limits),
        cmocka_unit_test(test_check_password_canonical_names),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cleanup_dir();
    return rc;
}
