/* auth/auth.c: the auth context (config, TLS contexts, PAM queue, limits, audit) and password
 * checks: limits first, then PAM in the pool, then the limits learn the outcome.
 *
 * A check that a limit holds back (backoff) waits on a timer until the backoff has passed, then
 * is re-checked; one that a limit locks out is refused without asking PAM (limit.c has the
 * rules). The limits count under the name PAM resolved. Before PAM only the name as typed is
 * known, so when PAM answers with another spelling the limits are asked again under that one: a
 * lockout refuses the attempt whatever PAM said, and a backoff holds the answer back, so that
 * respelling a name ("ALICE") gains a guesser nothing.
 */
#define VDI_LOG_TAG "auth"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/internal.h"

int auth_create(uv_loop_t *loop, const auth_config_t *cfg, auth_t **out)
{
    if (!cfg->pam_service || !*cfg->pam_service) {
        VDI_LOG_ERR("auth: no PAM service configured");
        return VDI_ECONFIG;
    }
    if (cfg->max_username_len < 1 || cfg->max_username_len > AUTH_USERNAME_MAX ||
        cfg->max_password_len < 1 || cfg->max_password_len > AUTH_PASSWORD_MAX) {
        VDI_LOG_ERR("auth: username/password length limits must be 1..%d / 1..%d",
                    AUTH_USERNAME_MAX, AUTH_PASSWORD_MAX);
        return VDI_ECONFIG;
    }
    if (cfg->pam_max_concurrent < 1) {
        VDI_LOG_ERR("auth: pam_max_concurrent must be at least 1");
        return VDI_ECONFIG;
    }
    auth_t *a = vdi_xcalloc(1, sizeof(*a));
    int err = auth__tls_ctx_create(cfg, &a->tls_x509, &a->tls_anon, a->fingerprint);
    if (err < 0) {
        free(a);
        return err;
    }
    a->loop = loop;
    a->cfg = *cfg;
    a->pam_service = vdi_xstrdup(cfg->pam_service);
    a->admin_group = cfg->admin_group ? vdi_xstrdup(cfg->admin_group) : NULL;
    a->cfg.pam_service = a->pam_service;
    a->cfg.admin_group = a->admin_group;
    a->cfg.tls_cert = a->cfg.tls_key = a->cfg.state_dir = NULL; /* used only above */
    a->pam = auth__pam_create(loop, a->pam_service, a->admin_group, cfg->pam_max_concurrent,
                              cfg->pam_max_queued);
    a->limits = auth__limits_create(cfg);
    vdi_list_init(&a->check_list);
    *out = a;
    return 0;
}

void auth_destroy(auth_t *a)
{
    if (!a)
        return;
    VDI_ASSERT(a->logins == 0 && a->checks == 0);
    auth__pam_destroy(a->pam);
    auth__limits_destroy(a->limits);
    SSL_CTX_free(a->tls_x509);
    SSL_CTX_free(a->tls_anon);
    free(a->pam_service);
    free(a->admin_group);
    free(a);
}

void auth_set_audit(auth_t *a, auth_audit_fn fn, void *ctx)
{
    a->audit = fn;
    a->audit_ctx = ctx;
}

uint64_t auth__wall_ms(const auth_t *a)
{
    (void)a;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void auth_set_limit_sink(auth_t *a, auth_limit_sink_fn fn, void *ctx)
{
    auth__limits_set_sink(a->limits, fn, ctx);
}

int auth_limit_restore(auth_t *a, const char *scope, const char *key,
                       const auth_limit_record_t *rec)
{
    return auth__limits_restore(a->limits, scope, key, rec, auth__wall_ms(a));
}

const char *auth_cert_fingerprint(const auth_t *a)
{
    return a->fingerprint;
}

static const char *const audit_names[] = {
    [AUTH_AUDIT_LOGIN_OK] = "login-ok",
    [AUTH_AUDIT_LOGIN_FAILED] = "login-failed",
    [AUTH_AUDIT_LOCKOUT] = "lockout",
    [AUTH_AUDIT_LOCKED] = "refused-locked",
};

void auth__audit(auth_t *a, enum auth_audit_kind kind, const char *service, const char *user,
                 const char *peer, const char *reason)
{
    /* A flood of failures must not flood the journal; the audit sink sees every event. */
    if (kind == AUTH_AUDIT_LOGIN_OK || kind == AUTH_AUDIT_LOCKOUT)
        VDI_LOG_INFO("audit event=%s service=%s user=%s peer=%s reason=\"%s\"", audit_names[kind],
                     service, user, peer, reason);
    else
        VDI_LOG_RL(VDI_LOG_LEVEL_INFO, "audit event=%s service=%s user=%s peer=%s reason=\"%s\"",
                   audit_names[kind], service, user, peer, reason);
    if (a->audit) {
        auth_audit_event_t ev = {
            .kind = kind, .service = service, .username = user, .peer = peer, .reason = reason};
        a->audit(&ev, a->audit_ctx);
    }
}

/* ---- Password checks --------------------------------------------------------------------------- */

struct check {
    vdi_list_t link; /* in auth->check_list */
    auth_t *a;
    uv_timer_t timer;
    char *service, *user, *password, *peer;
    char addr_key[INET6_ADDRSTRLEN + 4]; /* the address limiter's key for @peer */
    size_t password_len;
    auth_check_cb cb;
    void *ctx;
    /* The outcome, when delivered from the timer (refusals are never delivered synchronously,
     * and answers may be held back). */
    int status;
    const char *reason;
    auth_identity_t *id;
};

static const char reason_locked[] = "too many failed attempts: try again later";
#define MAX_HOLD_MS 60000 /* attempts are held for their backoff at most this long */

static void check_closed(uv_handle_t *h)
{
    struct check *c = h->data;
    free(c->service);
    free(c->user);
    free(c->peer);
    free(c);
}

static void check_finish(struct check *c, int status, auth_identity_t *id, const char *reason)
{
    auth_t *a = c->a;
    if (c->password) {
        vdi_wipe(c->password, c->password_len);
        free(c->password);
        c->password = NULL;
    }
    a->checks--;
    vdi_list_remove(&c->link);
    c->cb(status, id, reason, c->ctx);
    uv_close((uv_handle_t *)&c->timer, check_closed);
}

static void on_deliver(uv_timer_t *tm)
{
    struct check *c = tm->data;
    auth_identity_t *id = c->id;
    c->id = NULL;
    check_finish(c, c->status, id, c->reason);
}

/* Deliver from the loop after @delay_ms, not from inside auth_check_password(). Takes @id. */
static void deliver_later(struct check *c, int status, auth_identity_t *id, const char *reason,
                          uint64_t delay_ms)
{
    c->status = status;
    c->reason = reason;
    c->id = id;
    uv_timer_start(&c->timer, on_deliver, delay_ms, 0);
}

static void refuse_later(struct check *c, int status, const char *reason)
{
    deliver_later(c, status, NULL, reason, 0);
}

static void on_pam_done(int status, auth_identity_t *id, const char *canon, const char *reason,
                        void *ctx)
{
    struct check *c = ctx;
    auth_t *a = c->a;
    uint64_t now = auth__wall_ms(a), hold = 0;
    const char *who = canon && *canon ? canon : c->user;
    if (strcmp(who, c->user) != 0) {
        /* PAM means another name than the one checked before: its limits apply too. */
        const char *why;
        int rc = auth__limits_check(a->limits, who, c->addr_key, now, &hold, &why);
        if (rc == VDI_ELOCKOUT || hold > MAX_HOLD_MS) {
            if (status != 0)
                auth__limits_fail(a->limits, who, c->addr_key, now);
            auth_identity_free(id);
            auth__audit(a, AUTH_AUDIT_LOCKED, c->service, who, c->peer,
                        rc == VDI_ELOCKOUT ? why : "backoff");
            refuse_later(c, VDI_ELOCKOUT, reason_locked);
            return;
        }
    }
    if (status == 0) {
        auth__limits_success(a->limits, who, c->addr_key, now);
        auth__audit(a, AUTH_AUDIT_LOGIN_OK, c->service, who, c->peer,
                    id->is_admin ? "ok (admin)" : "ok");
        deliver_later(c, 0, id, "ok", hold);
        return;
    }
    auth__audit(a, AUTH_AUDIT_LOGIN_FAILED, c->service, who, c->peer, reason);
    unsigned locked = auth__limits_fail(a->limits, who, c->addr_key, now);
    if (locked & AUTH__LOCKED_PAIR)
        auth__audit(a, AUTH_AUDIT_LOCKOUT, c->service, who, c->peer,
                    "username locked out for this address");
    if (locked & AUTH__LOCKED_USER)
        auth__audit(a, AUTH_AUDIT_LOCKOUT, c->service, who, c->peer,
                    "username locked out (but for addresses with a clean record)");
    if (locked & AUTH__LOCKED_ADDR)
        auth__audit(a, AUTH_AUDIT_LOCKOUT, c->service, who, c->peer, "source address locked out");
    deliver_later(c, status, NULL, reason, hold);
}

static void run_check(uv_timer_t *tm)
{
    struct check *c = tm->data;
    auth_t *a = c->a;
    uint64_t wait;
    const char *why;
    int rc = auth__limits_check(a->limits, c->user, c->addr_key, auth__wall_ms(a), &wait, &why);
    if (rc == VDI_ELOCKOUT) {
        auth__audit(a, AUTH_AUDIT_LOCKED, c->service, c->user, c->peer, why);
        refuse_later(c, VDI_ELOCKOUT, reason_locked);
        return;
    }
    if (wait > MAX_HOLD_MS) { /* a backoff this long is as good as a lockout */
        auth__audit(a, AUTH_AUDIT_LOCKED, c->service, c->user, c->peer, "backoff");
        refuse_later(c, VDI_ELOCKOUT, reason_locked);
        return;
    }
    if (wait > 0) {
        VDI_LOG_DEBUG("user=%s peer=%s attempt held %" PRIu64 " ms (%s)", c->user, c->peer, wait,
                      why);
        uv_timer_start(&c->timer, run_check, wait, 0);
        return;
    }
    int err = auth__pam_submit(a->pam, c->user, c->password, c->peer, on_pam_done, c);
    vdi_wipe(c->password, c->password_len);
    free(c->password);
    c->password = NULL;
    if (err < 0) {
        VDI_LOG_WARN_RL("PAM queue full (%u running, %u waiting): refusing user=%s peer=%s",
                        auth__pam_running(a->pam), auth__pam_queued(a->pam), c->user, c->peer);
        refuse_later(c, err, "server busy: try again later");
    }
}

void auth__addr_key(const char *peer, char *key, size_t size)
{
    struct in6_addr a6;
    if (inet_pton(AF_INET6, peer, &a6) == 1) {
        if (IN6_IS_ADDR_V4MAPPED(&a6)) { /* ::ffff:192.0.2.1 is 192.0.2.1 */
            inet_ntop(AF_INET, &a6.s6_addr[12], key, (socklen_t)size);
            return;
        }
        /* One IPv6 host usually owns a whole /64: count failures per /64. */
        memset(&a6.s6_addr[8], 0, 8);
        char buf[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &a6, buf, sizeof(buf));
        snprintf(key, size, "%s/64", buf);
        return;
    }
    snprintf(key, size, "%s", peer);
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

int auth_check_password(auth_t *a, const char *service, const char *username, const char *password,
                        const char *peer, auth_check_cb cb, void *ctx)
{
    size_t ul = username ? strlen(username) : 0, pl = password ? strlen(password) : 0;
    if (!ul || ul > a->cfg.max_username_len || !pl || pl > a->cfg.max_password_len ||
        !printable(username))
        return -EINVAL;
    char key[sizeof(((struct check *)0)->addr_key)];
    auth__addr_key(peer ? peer : "?", key, sizeof(key));
    /* Parallel guesses from one address would all pass the limits before the first failure is
     * counted; cap how many may be in progress at once. */
    size_t same = 0;
    for (vdi_list_t *it = a->check_list.next; it != &a->check_list; it = it->next)
        same += strcmp(vdi_list_entry(it, struct check, link)->addr_key, key) == 0;
    struct check *c = vdi_xcalloc(1, sizeof(*c));
    snprintf(c->addr_key, sizeof(c->addr_key), "%s", key);
    vdi_list_push_tail(&a->check_list, &c->link);
    c->a = a;
    c->service = vdi_xstrdup(service ? service : "?");
    c->user = vdi_xstrdup(username);
    c->password = vdi_xstrdup(password);
    c->password_len = pl;
    c->peer = vdi_xstrdup(peer ? peer : "?");
    c->cb = cb;
    c->ctx = ctx;
    uv_timer_init(a->loop, &c->timer);
    c->timer.data = c;
    a->checks++;
    if (a->cfg.max_checks_per_addr && same >= a->cfg.max_checks_per_addr) {
        VDI_LOG_WARN_RL("peer=%s has %zu password checks in progress: refusing user=%s", c->peer,
                        same, c->user);
        refuse_later(c, -EBUSY, "too many logins in progress from your address");
        return 0;
    }
    /* Start from the loop: limits may refuse, and callbacks never run inside this call. */
    uv_timer_start(&c->timer, run_check, 0, 0);
    return 0;
}
