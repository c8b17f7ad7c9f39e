/* server/login.c: logins waiting for a desktop, and sessions on desktops.
 *
 * A login asks the broker where the user goes (brk_pick) and then waits, if it must, for that
 * desktop to become ready. Results are delivered from a zero-delay timer, never from inside the
 * call that produced them, so a caller's callback never runs re-entrantly. A session is one
 * connection (gateway or browser console) on a desktop; it ends from its owner (client closed)
 * or from vdid (reconnect elsewhere, admin, desktop gone, idle): then vdid asks its owner to
 * close (kick), and the owner calls srv__session_close().
 */
#define VDI_LOG_TAG "vm"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"
#include "server/desktop-internal.h"

struct srv_login {
    srv_t *s;
    vdi_list_t link; /* in s->logins */
    char user[BRK_USER_MAX];
    int64_t desktop; /* waiting for this desktop to become ready (0: result already known) */
    int status;
    char msg[160];
    bool done;
    srv_login_cb cb;
    void *ctx;
};

struct srv_session {
    srv_t *s;
    int64_t id;
    srv_vm_t *vm; /* NULL once the desktop went away */
    srv_session_kick_fn kick;
    void *ctx;
    uint64_t last_input;
    bool kicked;
    bool idle_warned; /* the idle warning went to the desktop since the last input */
};

/* ---- logins ---------------------------------------------------------------------------------- */
static void on_deliver(uv_timer_t *t);

static void deliver_soon(srv_t *s)
{
    uv_timer_start(&s->deliver_timer, on_deliver, 0, 0);
}

/* The login's result is known: @status 0 (its desktop is ready), or why not (@msg, words for
 * the user; NULL: none). */
static void login_finish(srv_login_t *l, int status, const char *msg)
{
    l->done = true;
    l->status = status;
    snprintf(l->msg, sizeof(l->msg), "%s", msg ? msg : "");
    deliver_soon(l->s);
}

/* Finish every login still waiting for desktop @id with @status and @msg (NULL: none). */
static void finish_waiting(srv_t *s, int64_t id, int status, const char *msg)
{
    vdi_list_t *it;
    for (it = s->logins.next; it != &s->logins; it = it->next) {
        srv_login_t *l = vdi_list_entry(it, srv_login_t, link);
        if (!l->done && l->desktop == id)
            login_finish(l, status, msg);
    }
}

void srv__logins_desktop_ready(srv_vm_t *vm)
{
    finish_waiting(vm->s, vm->id, 0, NULL);
}

static void on_deliver(uv_timer_t *t)
{
    srv_t *s = t->data;
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &s->logins)
    {
        srv_login_t *l = vdi_list_entry(it, srv_login_t, link);
        if (!l->done)
            continue;
        vdi_list_remove(&l->link);
        srv_vm_t *vm = NULL;
        if (l->status == 0) {
            vm = l->desktop ? srv__vm_find(s, l->desktop) : NULL;
            if (!vm || vm->state == BRK_DS_RECYCLING || vm->state == BRK_DS_PROVISIONING) {
                l->status = VDI_ESTATE;
                snprintf(l->msg, sizeof(l->msg), "your desktop is being recycled; try again");
                vm = NULL;
            } else {
                if (strcmp(vm->owner, l->user) != 0) {
                    brk_store_desktop_set_owner(s->store, vm->id, l->user);
                    snprintf(vm->owner, sizeof(vm->owner), "%s", l->user);
                }
                vm->disconnect_at = 0;
                if (vm->state != BRK_DS_IN_USE)
                    srv__desktop_set_state(vm, BRK_DS_IN_USE, "login");
            }
        }
        l->cb(l->status, vm, l->msg, l->ctx);
        free(l);
    }
}

/* Act on the broker's pick: start, restart or take over a desktop. Returns the desktop the login
 * waits for, or 0 with the login finished. */
static int64_t login_place(srv_login_t *l, const brk_pick_t *pick)
{
    srv_t *s = l->s;
    srv_vm_t *vm = NULL;
    int rc;
    switch (pick->kind) {
    case BRK_PICK_RESTART:
    case BRK_PICK_NEW:
        rc = pick->kind == BRK_PICK_NEW ? srv__desktop_provision(s, pick->pool, l->user, &vm)
                                        : srv__desktop_restart(s, pick->desktop, pick->pool, &vm);
        if (rc < 0) {
            login_finish(l, rc, "your desktop could not be started");
            return 0;
        }
        VDI_LOG_INFO("user=%s desktop=%" PRId64 " pool=%s: %s", l->user, vm->id, pick->pool->name,
                     pick->kind == BRK_PICK_NEW ? "new desktop" : "dedicated desktop restarted");
        return vm->id;
    case BRK_PICK_SPARE:
    case BRK_PICK_EXISTING:
        vm = srv__vm_find(s, pick->desktop);
        if (!vm) {
            login_finish(l, VDI_ESTATE, "your desktop is not running; try again");
            return 0;
        }
        if (pick->kind == BRK_PICK_SPARE) {
            /* Claim it now so that a parallel login cannot take the same spare. */
            brk_store_desktop_set_owner(s->store, vm->id, l->user);
            snprintf(vm->owner, sizeof(vm->owner), "%s", l->user);
            srv__spares_kick(s);
        }
        VDI_LOG_INFO("user=%s desktop=%" PRId64 " pool=%s: %s", l->user, vm->id, vm->pool,
                     pick->kind == BRK_PICK_SPARE ? "spare" : "own desktop");
        l->desktop = vm->id;
        if (vm->state != BRK_DS_PROVISIONING)
            login_finish(l, 0, NULL);
        return vm->id;
    }
    VDI_ASSERT(!"unknown pick");
    return 0;
}

int srv__login(srv_t *s, const char *user, const char *const *groups, size_t n_groups,
               srv_login_cb cb, void *ctx, srv_login_t **out)
{
    brk_pick_t pick;
    srv_login_t *l = vdi_xcalloc(1, sizeof(*l));
    l->s = s;
    l->cb = cb;
    l->ctx = ctx;
    snprintf(l->user, sizeof(l->user), "%s", user);
    vdi_list_push_tail(&s->logins, &l->link);
    if (out)
        *out = l;

    int rc = brk_pick(s->store, s->cfg, user, groups, n_groups, s->memory_budget, &pick);
    if (rc < 0) {
        char msg[160];
        brk_pick_refusal(rc, user, msg, sizeof(msg));
        if (rc != VDI_EDENIED && rc != VDI_ECAPACITY)
            VDI_LOG_ERR("user=%s placement failed: %s", user, vdi_strerror(rc));
        login_finish(l, rc, msg);
        return 0;
    }
    l->desktop = login_place(l, &pick);
    return 0;
}

void srv__login_cancel(srv_login_t *l)
{
    vdi_list_remove(&l->link);
    free(l);
}

void srv__logins_init(srv_t *s)
{
    vdi_list_init(&s->logins);
    uv_timer_init(s->loop, &s->deliver_timer);
    s->deliver_timer.data = s;
}

void srv__logins_fini(srv_t *s)
{
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &s->logins)
    {
        srv_login_t *l = vdi_list_entry(it, srv_login_t, link);
        login_finish(l, -ECANCELED, "the server is shutting down");
    }
    on_deliver(&s->deliver_timer);
    uv_close((uv_handle_t *)&s->deliver_timer, NULL);
}

/* ---- sessions -------------------------------------------------------------------------------- */
static void session_kick(srv_session_t *se, const char *reason)
{
    if (se->kicked)
        return;
    se->kicked = true;
    se->kick(se->ctx, reason);
}

void srv__session_kick_vm(srv_vm_t *vm, const char *reason)
{
    if (vm->session)
        session_kick(vm->session, reason);
}

void srv__session_detach(srv_vm_t *vm, const char *reason, bool kick)
{
    srv_session_t *se = vm->session;
    if (!se)
        return;
    vm->session = NULL;
    se->vm = NULL;
    if (kick)
        session_kick(se, reason);
}

void srv__logins_desktop_gone(srv_vm_t *vm, bool failed, const char *reason)
{
    char msg[160];
    srv__session_detach(vm, failed ? "your desktop stopped unexpectedly" : "desktop closed", true);
    snprintf(msg, sizeof(msg), "your desktop failed to start (%s)", reason);
    finish_waiting(vm->s, vm->id, VDI_ECRASHED, msg);
}

int srv__session_open(srv_vm_t *vm, const char *user, const char *peer, srv_session_kick_fn kick,
                      void *ctx, srv_session_t **out)
{
    srv_t *s = vm->s;
    int64_t sid;
    if (vm->session) {
        char why[96];
        snprintf(why, sizeof(why), "reconnected from %s", peer);
        brk_store_session_close(s->store, vm->session->id, why);
        srv__session_detach(vm, why, true);
    }
    int rc = brk_store_session_open(s->store, user, vm->id, peer, &sid);
    if (rc < 0)
        return rc;
    srv_session_t *se = vdi_xcalloc(1, sizeof(*se));
    se->s = s;
    se->id = sid;
    se->vm = vm;
    se->kick = kick;
    se->ctx = ctx;
    se->last_input = vdi_now_ms();
    vm->session = se;
    vm->disconnect_at = 0;
    *out = se;
    return 0;
}

void srv__session_close(srv_session_t *se, const char *reason)
{
    srv_vm_t *vm = se->vm;
    srv_t *s = se->s;
    if (vm) {
        brk_store_session_close(s->store, se->id, reason);
        vm->session = NULL;
        /* With vdid stopping, the desktop stays as it is: the next vdid marks it disconnected
         * when it re-attaches. */
        if (!s->stopping && vm->state == BRK_DS_IN_USE) {
            const brk_pool_config_t *p = srv__desktop_pool(vm);
            srv__desktop_set_state(vm, BRK_DS_DISCONNECTED, reason);
            if (p && p->type == BRK_POOL_FLOATING) {
                if (p->disconnect_timeout_s == 0)
                    srv__desktop_recycle(vm, false, "disconnected");
                else
                    vm->disconnect_at = vdi_now_ms() + (uint64_t)p->disconnect_timeout_s * 1000;
            }
        }
    } else {
        /* The desktop went first (or the session was taken over): close the record if open. */
        brk_session_t rec;
        if (brk_store_session_get(s->store, se->id, &rec) == 0 && !rec.ended)
            brk_store_session_close(s->store, se->id, reason);
    }
    free(se);
}

void srv__session_activity(srv_session_t *se)
{
    se->last_input = vdi_now_ms();
    se->idle_warned = false;
}

/* How long before an idle timeout of @idle_s seconds the user is warned: a quarter of it, at
 * most a minute, in ms. */
static uint64_t idle_warn_ms(uint32_t idle_s)
{
    uint64_t q = (uint64_t)idle_s * 1000 / 4;
    return q < 60000 ? q : 60000;
}

int srv__session_kick(srv_t *s, int64_t id, const char *reason)
{
    vdi_list_t *it;
    for (it = s->vms.next; it != &s->vms; it = it->next) {
        srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        if (vm->session && vm->session->id == id) {
            session_kick(vm->session, reason);
            return 0;
        }
    }
    return -ENOENT;
}

void srv__sessions_tick(srv_t *s, uint64_t now)
{
    vdi_list_t *it;
    for (it = s->vms.next; it != &s->vms; it = it->next) {
        srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        srv_session_t *se = vm->session;
        const brk_pool_config_t *p = srv__desktop_pool(vm);
        if (!se || se->kicked || !p || !p->idle_timeout_s)
            continue;
        uint64_t idle_ms = (uint64_t)p->idle_timeout_s * 1000,
                 warn = idle_warn_ms(p->idle_timeout_s);
        if (!se->idle_warned && now - se->last_input >= idle_ms - warn) {
            /* On the desktop itself, through its guest agent: the viewer shows what it shows. */
            char text[160];
            unsigned secs = (unsigned)((warn + 999) / 1000);
            snprintf(text, sizeof(text),
                     "No input for a while: this session closes in %u s unless you use it. Your "
                     "desktop keeps running.",
                     secs);
            se->idle_warned = true;
            int err = srv__vmmctl_message(vm->ctl, text, secs ? secs : 1);
            if (err < 0)
                VDI_LOG_DEBUG("desktop=%" PRId64 " idle warning not sent: %s", vm->id,
                              vdi_strerror(err));
        }
        if (now - se->last_input >= idle_ms) {
            brk_store_audit(s->store, NULL, "session.idle", vm->id, vm->owner, NULL);
            session_kick(se, "idle timeout");
        }
    }
}
