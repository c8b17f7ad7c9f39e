/* auth/auth.c: the auth context (config, TLS contexts, PAM queue, limiters, audit) and password
 * checks: limits first, then PAM in the pool, then the limiters learn the outcome.
 *
 * A check whose username or address is in backoff is held on a timer until the backoff has
 * passed, then re-checked; one whose key is locked out is refused without asking PAM. Both the
 * username and the source address count failures; a success clears both.
 */
#define VDI_LOG_TAG "auth"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "auth/internal.h"

void auth_config_defaults(auth_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->pam_service = "vdi";
    cfg->admin_group = VDI_ADMIN_GROUP_DEFAULT;
    cfg->handshake_timeout_ms = 10000;
    cfg->pam_max_concurrent = 2;
    cfg->pam_max_queued = 64;
    cfg->max_checks_per_addr = 4;
    cfg->max_username_len = AUTH_USERNAME_MAX;
    cfg->max_password_len = AUTH_PASSWORD_MAX;
    cfg->limit_user = (auth_limit_config_t){
        .free_failures = 3,
        .backoff_base_ms = 1000,
        .backoff_max_ms = 30000,
        .lockout_failures = 10,
        .lockout_ms = 15 * 60 * 1000,
        .forget_ms = 60 * 60 * 1000,
        .max_entries = 65536,
    };
    cfg->limit_addr = cfg->limit_user;
    cfg->limit_addr.free_failures = 5;
    cfg->limit_addr.lockout_failures = 30;
}

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
    a->lim_user = auth__limiter_create(&cfg->limit_user);
    a->lim_addr = auth__limiter_create(&cfg->limit_addr);
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
    auth__limiter_destroy(a->lim_user);
    auth__limiter_destroy(a->lim_addr);
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
    /* The outcome, when delivered from the timer (refusals are never delivered synchronously). */
    int status;
    const char *reason;
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

static void on_pam_done(int status, auth_identity_t *id, const char *reason, void *ctx)
{
    struct check *c = ctx;
    auth_t *a = c->a;
    uint64_t now = vdi_now_ms();
    if (status == 0) {
        auth__limiter_success(a->lim_user, c->user);
        auth__limiter_success(a->lim_addr, c->addr_key);
        auth__audit(a, AUTH_AUDIT_LOGIN_OK, c->service, c->user, c->peer,
                    id->is_admin ? "ok (admin)" : "ok");
        check_finish(c, 0, id, "ok");
        return;
    }
    auth__audit(a, AUTH_AUDIT_LOGIN_FAILED, c->service, c->user, c->peer, reason);
    if (auth__limiter_fail(a->lim_user, c->user, now))
        auth__audit(a, AUTH_AUDIT_LOCKOUT, c->service, c->user, c->peer, "username locked out");
    if (auth__limiter_fail(a->lim_addr, c->addr_key, now))
        auth__audit(a, AUTH_AUDIT_LOCKOUT, c->service, c->user, c->peer,
                    "source address locked out");
    check_finish(c, status, NULL, reason);
}

static void on_deliver(uv_timer_t *tm)
{
    struct check *c = tm->data;
    check_finish(c, c->status, NULL, c->reason);
}

/* Refuse from the loop, not from inside auth_check_password(). */
static void refuse_later(struct check *c, int status, const char *reason)
{
    c->status = status;
    c->reason = reason;
    uv_timer_start(&c->timer, on_deliver, 0, 0);
}

static void run_check(uv_timer_t *tm)
{
    struct check *c = tm->data;
    auth_t *a = c->a;
    uint64_t now = vdi_now_ms(), wu, wa;
    int eu = auth__limiter_check(a->lim_user, c->user, now, &wu);
    int ea = auth__limiter_check(a->lim_addr, c->addr_key, now, &wa);
    if (eu == VDI_ELOCKOUT || ea == VDI_ELOCKOUT) {
        auth__audit(a, AUTH_AUDIT_LOCKED, c->service, c->user, c->peer,
                    eu == VDI_ELOCKOUT ? "username locked out" : "source address locked out");
        refuse_later(c, VDI_ELOCKOUT, reason_locked);
        return;
    }
    uint64_t wait = VDI_MAX(wu, wa);
    if (wait > MAX_HOLD_MS) { /* a backoff this long is as good as a lockout */
        auth__audit(a, AUTH_AUDIT_LOCKED, c->service, c->user, c->peer, "backoff");
        refuse_later(c, VDI_ELOCKOUT, reason_locked);
        return;
    }
    if (wait > 0) {
        VDI_LOG_DEBUG("user=%s peer=%s attempt held %" PRIu64 " ms (backoff)", c->user, c->peer,
                      wait);
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
