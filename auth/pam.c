/* auth/pam.c: PAM authenticate + account checks in libuv's thread pool, at most N at a time.
 *
 * PAM blocks (password hashing, LDAP, pam_faildelay), so each check runs as a uv_queue_work job.
 * The pool has only a few threads that the rest of vdid shares, hence the cap: at most
 * max_running checks in the pool, up to max_queued more waiting here, and beyond that -EBUSY, so a
 * flood of logins cannot occupy every pool thread.
 *
 * The conversation function answers exactly one hidden prompt (PAM_PROMPT_ECHO_OFF) with the
 * password and refuses everything else that wants an answer: a second hidden prompt means the
 * stack wants something we do not have (a new password, a one-time code), and answering it with
 * the same password would be wrong. Informational messages are logged at debug level only.
 *
 * PAM_FAIL_DELAY is set to a function that does nothing: pam_unix (and pam_faildelay) ask libpam
 * to sleep about 2 s after a failure, which would hold a pool thread, and with it one of the few
 * PAM slots, for every wrong guess. The limits in auth.c/limit.c hold attempts back on the loop
 * instead, where waiting costs a timer. The name PAM resolved (PAM_USER after the stack, which a
 * module may have rewritten, e.g. to the account's canonical spelling) is what we report.
 */
#define VDI_LOG_TAG "auth"

#include <grp.h>
#include <pwd.h>
#include <security/pam_appl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/internal.h"

struct conv_data {
    const char *password;
    bool answered;
};

static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *appdata)
{
    struct conv_data *cd = appdata;
    if (n <= 0 || n > PAM_MAX_NUM_MSG)
        return PAM_CONV_ERR;
    struct pam_response *r = calloc((size_t)n, sizeof(*r));
    if (!r)
        return PAM_BUF_ERR;
    for (int i = 0; i < n; i++) {
        switch (msg[i]->msg_style) {
        case PAM_PROMPT_ECHO_OFF:
            if (cd->answered || !cd->password)
                goto refuse;
            r[i].resp = strdup(cd->password);
            if (!r[i].resp)
                goto refuse;
            cd->answered = true;
            break;
        case PAM_ERROR_MSG:
        case PAM_TEXT_INFO:
            VDI_LOG_DEBUG("pam says: %s", msg[i]->msg ? msg[i]->msg : "");
            break;
        default: /* PAM_PROMPT_ECHO_ON and anything unknown: we have no answer to give */
            goto refuse;
        }
    }
    *resp = r;
    return PAM_SUCCESS;
refuse:
    for (int i = 0; i < n; i++) {
        if (r[i].resp) {
            vdi_wipe(r[i].resp, strlen(r[i].resp));
            free(r[i].resp);
        }
    }
    free(r);
    return PAM_CONV_ERR;
}

/* PAM_FAIL_DELAY: called by libpam instead of its own sleep after a failure. */
static void no_fail_delay(int retval, unsigned usec, void *appdata)
{
    (void)retval;
    (void)usec;
    (void)appdata;
}

/* A name we can use as an identity: 1..AUTH_USERNAME_MAX bytes, no control characters. */
static bool plain_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f || n >= AUTH_USERNAME_MAX)
            return false;
    return n > 0;
}

void auth_identity_free(auth_identity_t *id)
{
    if (!id)
        return;
    for (size_t i = 0; i < id->ngroups; i++)
        free(id->groups[i]);
    free(id->groups);
    free(id->username);
    free(id);
}

int auth__user_groups(const char *user, const char *admin_group, auth_identity_t *id)
{
    struct passwd pw, *pwp = NULL;
    long sz = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t bufsz = sz > 0 ? (size_t)sz : 16384;
    char *buf = vdi_xmalloc(bufsz);
    int err;
    while ((err = getpwnam_r(user, &pw, buf, bufsz, &pwp)) == ERANGE && bufsz < (1u << 24)) {
        bufsz *= 2;
        buf = vdi_xrealloc(buf, bufsz);
    }
    if (err || !pwp) {
        free(buf);
        return err ? -err : -ENOENT;
    }
    gid_t primary = pw.pw_gid;
    int cap = 32, ng = cap;
    gid_t *gids = vdi_xmalloc(sizeof(gid_t) * (size_t)cap);
    while (getgrouplist(user, primary, gids, &ng) < 0) {
        /* glibc set ng to the count needed; beyond 64 Ki groups take what fits. */
        if (ng <= cap || ng > 65536) {
            ng = cap;
            break;
        }
        cap = ng;
        gids = vdi_xrealloc(gids, sizeof(gid_t) * (size_t)cap);
    }
    id->groups = vdi_xcalloc((size_t)ng, sizeof(char *));
    id->ngroups = 0;
    long gsz = sysconf(_SC_GETGR_R_SIZE_MAX);
    size_t gbufsz = gsz > 0 ? (size_t)gsz : 16384;
    char *gbuf = vdi_xmalloc(gbufsz);
    for (int i = 0; i < ng; i++) {
        struct group gr, *grp = NULL;
        int e;
        while ((e = getgrgid_r(gids[i], &gr, gbuf, gbufsz, &grp)) == ERANGE &&
               gbufsz < (1u << 24)) {
            gbufsz *= 2;
            gbuf = vdi_xrealloc(gbuf, gbufsz);
        }
        if (e || !grp)
            continue; /* a gid without a name cannot match an entitlement */
        bool dup = false;
        for (size_t j = 0; j < id->ngroups; j++)
            dup |= strcmp(id->groups[j], grp->gr_name) == 0;
        if (dup)
            continue;
        id->groups[id->ngroups++] = vdi_xstrdup(grp->gr_name);
        if (admin_group && strcmp(grp->gr_name, admin_group) == 0)
            id->is_admin = true;
    }
    free(gbuf);
    free(gids);
    free(buf);
    return 0;
}

int auth__pam_check_blocking(const char *service, const char *admin_group, const char *user,
                             const char *password, const char *rhost, auth_identity_t **idp,
                             char **canon, const char **reason)
{
    struct conv_data cd = {.password = password};
    struct pam_conv pc = {.conv = conv, .appdata_ptr = &cd};
    pam_handle_t *h = NULL;
    int rc = pam_start(service, user, &pc, &h);
    if (rc != PAM_SUCCESS) {
        VDI_LOG_ERR("pam_start service=%s failed: %s", service, pam_strerror(NULL, rc));
        *reason = "authentication service unavailable";
        *canon = vdi_xstrdup(user);
        return VDI_EAUTH;
    }
    if (rhost)
        pam_set_item(h, PAM_RHOST, rhost);
    /* ISO C has no conversion between function and object pointers; PAM's item is a void *. */
    union {
        void (*fn)(int, unsigned, void *);
        const void *item;
    } delay = {.fn = no_fail_delay};
    pam_set_item(h, PAM_FAIL_DELAY, delay.item);
    const int flags = PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK;
    const char *stage = "auth";
    rc = pam_authenticate(h, flags);
    if (rc == PAM_SUCCESS) {
        stage = "account";
        rc = pam_acct_mgmt(h, flags);
    }
    const void *item = NULL;
    if (pam_get_item(h, PAM_USER, &item) == PAM_SUCCESS && item && plain_name(item))
        *canon = vdi_xstrdup(item);
    else
        *canon = vdi_xstrdup(user);
    int ret = 0;
    if (rc != PAM_SUCCESS) {
        /* The client only learns details once its password was right (the account stage). */
        *reason = "authentication failed";
        if (strcmp(stage, "account") == 0 && rc == PAM_ACCT_EXPIRED)
            *reason = "account expired";
        else if (strcmp(stage, "account") == 0 && rc == PAM_NEW_AUTHTOK_REQD)
            *reason = "password expired: change it before logging in";
        else if (strcmp(stage, "account") == 0)
            *reason = "account not permitted to log in";
        /* Clients trigger this: rate-limited (the audit sink sees every failure). */
        VDI_LOG_RL(VDI_LOG_LEVEL_INFO, "pam service=%s user=%s rhost=%s %s refused: %s", service,
                   *canon, rhost ? rhost : "-", stage, pam_strerror(h, rc));
        ret = VDI_EAUTH;
    }
    pam_end(h, rc);
    if (ret < 0)
        return ret;
    auth_identity_t *id = vdi_xcalloc(1, sizeof(*id));
    id->username = vdi_xstrdup(*canon);
    int err = auth__user_groups(id->username, admin_group, id);
    if (err < 0)
        VDI_LOG_WARN("user=%s passed PAM but has no passwd entry (%s): no groups", id->username,
                     vdi_strerror(err));
    *idp = id;
    return 0;
}

/* ---- The queue ------------------------------------------------------------------------------- */
struct req {
    uv_work_t work;
    vdi_list_t link;
    auth__pam_t *pam;
    char *user, *password, *rhost;
    char *canon; /* the name PAM resolved */
    size_t password_len;
    int status;
    const char *reason;
    auth_identity_t *id;
    auth__pam_cb cb;
    void *ctx;
};

struct auth__pam {
    uv_loop_t *loop;
    char *service, *admin_group;
    uint32_t max_running, max_queued;
    uint32_t running, queued;
    vdi_list_t waiting;
};

auth__pam_t *auth__pam_create(uv_loop_t *loop, const char *service, const char *admin_group,
                              uint32_t max_running, uint32_t max_queued)
{
    auth__pam_t *p = vdi_xcalloc(1, sizeof(*p));
    p->loop = loop;
    p->service = vdi_xstrdup(service);
    p->admin_group = admin_group ? vdi_xstrdup(admin_group) : NULL;
    p->max_running = max_running ? max_running : 1;
    p->max_queued = max_queued;
    vdi_list_init(&p->waiting);
    return p;
}

void auth__pam_destroy(auth__pam_t *p)
{
    if (!p)
        return;
    VDI_ASSERT(p->running == 0 && p->queued == 0);
    free(p->service);
    free(p->admin_group);
    free(p);
}

uint32_t auth__pam_running(const auth__pam_t *p)
{
    return p->running;
}

uint32_t auth__pam_queued(const auth__pam_t *p)
{
    return p->queued;
}

static void req_free(struct req *r)
{
    if (r->password) {
        vdi_wipe(r->password, r->password_len);
        free(r->password);
    }
    free(r->user);
    free(r->canon);
    free(r->rhost);
    free(r);
}

static void work(uv_work_t *w) /* Thread: pool */
{
    struct req *r = vdi_container_of(w, struct req, work);
    r->status = auth__pam_check_blocking(r->pam->service, r->pam->admin_group, r->user, r->password,
                                         r->rhost, &r->id, &r->canon, &r->reason);
    vdi_wipe(r->password, r->password_len);
}

static void after_work(uv_work_t *w, int status);

static void start(auth__pam_t *p, struct req *r)
{
    p->running++;
    int err = uv_queue_work(p->loop, &r->work, work, after_work);
    VDI_ASSERT(err == 0); /* only fails for a NULL work callback */
}

static void after_work(uv_work_t *w, int status)
{
    struct req *r = vdi_container_of(w, struct req, work);
    auth__pam_t *p = r->pam;
    VDI_ASSERT(status == 0); /* we never uv_cancel */
    p->running--;
    vdi_list_t *next = vdi_list_pop_head(&p->waiting);
    if (next) {
        p->queued--;
        start(p, vdi_list_entry(next, struct req, link));
    }
    r->cb(r->status, r->id, r->canon, r->reason, r->ctx);
    req_free(r);
}

int auth__pam_submit(auth__pam_t *p, const char *user, const char *password, const char *rhost,
                     auth__pam_cb cb, void *ctx)
{
    if (p->running >= p->max_running && p->queued >= p->max_queued)
        return -EBUSY;
    struct req *r = vdi_xcalloc(1, sizeof(*r));
    r->pam = p;
    r->user = vdi_xstrdup(user);
    r->password_len = strlen(password);
    r->password = vdi_xstrdup(password);
    r->rhost = rhost ? vdi_xstrdup(rhost) : NULL;
    r->cb = cb;
    r->ctx = ctx;
    vdi_list_init(&r->link);
    if (p->running < p->max_running) {
        start(p, r);
    } else {
        vdi_list_push_tail(&p->waiting, &r->link);
        p->queued++;
    }
    return 0;
}
