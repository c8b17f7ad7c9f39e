/* server/desktop.c: one desktop at run time, from its record to its end. Every desktop that is
 * not gone or failed has a srv_vm_t mirroring its stored state. Its VMM is followed through two
 * channels: the process (vmm-proc.c, when this vdid started it) and the control socket
 * (vmm-ctl.c: always; after a vdid restart it is the only one). Either one ending means the VMM
 * is gone: a process exit carries the status; a control socket EOF without a process handle is
 * confirmed by polling the pid (supervisor.c's tick). What an end means for the desktop (failed
 * or not, and why) is the broker's policy (brk_vmm_exit_failed).
 */
#define VDI_LOG_TAG "vm"
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/img.h"
#include "server/desktop-internal.h"

#define CONNECT_RETRY_MS 10    /* a connect to a socket not there yet fails at once: cheap */
#define SPARE_BACKOFF_MS 30000 /* after a spare failed to start: no image, a broken VMM... */
#define KILL_GRACE_S     5     /* after the VMM's own shutdown deadline */

/* ---- lookups and records ------------------------------------------------------------------- */
srv_vm_t *srv__vm_find(srv_t *s, int64_t id)
{
    vdi_list_t *it;
    for (it = s->vms.next; it != &s->vms; it = it->next) {
        srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        if (vm->id == id)
            return vm;
    }
    return NULL;
}

int64_t srv__vm_id(const srv_vm_t *vm)
{
    return vm->id;
}

const char *srv__vm_display(const srv_vm_t *vm)
{
    return vm->dpy_path;
}

const brk_pool_config_t *srv__desktop_pool(const srv_vm_t *vm)
{
    return brk_config_pool(vm->s->cfg, vm->pool);
}

int srv__desktop_set_state(srv_vm_t *vm, brk_desktop_state_t to, const char *reason)
{
    int rc = brk_store_desktop_set_state(vm->s->store, vm->id, to, reason);
    if (rc < 0) {
        VDI_LOG_ERR("desktop=%" PRId64 " cannot go from %s to %s: %s", vm->id,
                    brk_desktop_state_name(vm->state), brk_desktop_state_name(to),
                    vdi_strerror(rc));
        return rc;
    }
    VDI_LOG_INFO("desktop=%" PRId64 " pool=%s owner=%s %s -> %s%s%s", vm->id, vm->pool,
                 vm->owner[0] ? vm->owner : "-", brk_desktop_state_name(vm->state),
                 brk_desktop_state_name(to), reason ? " reason=" : "", reason ? reason : "");
    vm->state = to;
    return 0;
}

srv_vm_t *srv__desktop_new(srv_t *s, const brk_desktop_t *d)
{
    srv_vm_t *vm = vdi_xcalloc(1, sizeof(*vm));
    vm->s = s;
    vm->id = d->id;
    snprintf(vm->pool, sizeof(vm->pool), "%s", d->pool);
    snprintf(vm->owner, sizeof(vm->owner), "%s", d->owner);
    snprintf(vm->image, sizeof(vm->image), "%s", d->image);
    vm->image_version = (uint32_t)d->image_version;
    vm->state = d->state;
    vm->memory = d->memory;
    vm->pid = (pid_t)d->vmm_pid;
    vm->rundir = vdi_xasprintf("%s/vm/%" PRId64, s->cfg->run_dir, d->id);
    vm->datadir = vdi_xasprintf("%s/desktops/%" PRId64, s->cfg->state_dir, d->id);
    snprintf(vm->mac, sizeof(vm->mac), "%s", d->mac);
    snprintf(vm->ip, sizeof(vm->ip), "%s", d->ip);
    const brk_pool_config_t *pool = brk_config_pool(s->cfg, d->pool);
    if (d->mac[0] && pool && pool->net != BRK_NET_NONE && s->net)
        srv__net_tap_name(s, d->id, vm->tap); /* a running desktop's tap (after a restart) */
    vm->ctl_path = vdi_xasprintf("%s/control.sock", vm->rundir);
    vm->dpy_path = vdi_xasprintf("%s/display.sock", vm->rundir);
    vdi_list_push_tail(&s->vms, &vm->link);
    return vm;
}

void srv__desktop_free(srv_vm_t *vm)
{
    vdi_list_remove(&vm->link);
    if (vm->prep) {
        srv__prep_abandon(vm->prep, vm->s->stopping);
        vm->prep = NULL;
    }
    srv__vmmctl_close(vm->ctl);
    srv__vmmproc_forget(vm->proc);
    srv__cgroup_close(vm->cgroup);
    free(vm->rundir);
    free(vm->datadir);
    free(vm->ctl_path);
    free(vm->dpy_path);
    free(vm);
}

/* rm -r of a desktop's own directory (flat: sockets, overlay, log). */
static void remove_dir(const char *dir)
{
    static const char *const files[] = {"control.sock", "display.sock", "disk.qcow2", "vmm.log"};
    for (size_t i = 0; i < VDI_ARRAY_SIZE(files); i++) {
        char *p = vdi_xasprintf("%s/%s", dir, files[i]);
        unlink(p);
        free(p);
    }
    if (rmdir(dir) < 0 && errno != ENOENT)
        VDI_LOG_WARN("dir=%s cannot remove: %s", dir, strerror(errno));
}

static void holder_of(int64_t id, char *buf, size_t n)
{
    snprintf(buf, n, "desktop-%" PRId64, id);
}

/* ---- image references, taken and dropped on the catalogue worker -------------------------- */
struct ref_job {
    img_catalog_t *cat;
    char image[64];
    char holder[80];
    uint32_t version;
    bool take;
    int rc;
};

static void ref_work(void *arg) /* Thread: the catalogue worker */
{
    struct ref_job *j = arg;
    j->rc = j->take ? img_catalog_ref(j->cat, j->image, j->version, j->holder)
                    : img_catalog_unref(j->cat, j->image, j->version, j->holder);
}

static void ref_done(void *arg, int status)
{
    struct ref_job *j = arg;
    if (status == 0 && j->rc < 0 && (j->take || j->rc != -ENOENT))
        VDI_LOG_WARN("%s image=%s version=%u: cannot %s its reference: %s", j->holder, j->image,
                     j->version, j->take ? "take" : "drop", vdi_strerror(j->rc));
    free(j);
}

static void ref_submit(srv_t *s, const char *image, uint32_t version, const char *holder, bool take)
{
    if (!version || !s->catalog)
        return;
    struct ref_job *j = vdi_xcalloc(1, sizeof(*j));
    j->cat = s->catalog;
    snprintf(j->image, sizeof(j->image), "%s", image);
    snprintf(j->holder, sizeof(j->holder), "%s", holder);
    j->version = version;
    j->take = take;
    int rc = srv__catq_submit(s->catq, ref_work, ref_done, j, NULL);
    if (rc < 0) {
        /* vdid is stopping: a reference to drop stays (`vdictl image verify` reports it stale). */
        VDI_LOG_WARN("%s image=%s version=%u: reference %s: %s", holder, image, version,
                     take ? "not taken" : "kept", vdi_strerror(rc));
        free(j);
    }
}

void srv__image_ref(srv_t *s, const char *image, uint32_t version, const char *holder)
{
    ref_submit(s, image, version, holder, true);
}

void srv__image_unref(srv_t *s, const char *image, uint32_t version, const char *holder)
{
    ref_submit(s, image, version, holder, false);
}

/* ---- the control socket ---------------------------------------------------------------------- */
static void vm_ready(srv_vm_t *vm)
{
    if (vm->state != BRK_DS_PROVISIONING)
        return;
    vm->deadline = 0;
    if (srv__desktop_set_state(vm, BRK_DS_READY, NULL) < 0)
        return;
    vm->ready_at = vdi_now_ms();
    srv__logins_desktop_ready(vm);
    srv__spares_kick(vm->s);
}

/* Ask the guest to shut down (ACPI power button); the VMM itself stops the VM when
 * shutdown_timeout passes, and the tick kills the VMM if it is still there KILL_GRACE_S after. */
static void send_shutdown(srv_vm_t *vm)
{
    uint32_t t = vm->s->cfg->shutdown_timeout_s;
    srv__vmmctl_send(vm->ctl, VMM_CMD_SHUTDOWN, t * 1000);
    vm->deadline = vdi_now_ms() + ((uint64_t)t + KILL_GRACE_S) * 1000;
}

static void ctl_connected(void *ctx)
{
    srv_vm_t *vm = ctx;
    vm->ctl_up = true;
    vm->next_connect = 0;
    VDI_LOG_DEBUG("desktop=%" PRId64 " control socket connected", vm->id);
    /* A VMM that became ready before we (re)connected will not send `ready` again: ask. */
    srv__vmmctl_send(vm->ctl, VMM_CMD_STATUS, 0);
    if (vm->state == BRK_DS_RECYCLING)
        send_shutdown(vm);
}

static void ctl_failed(void *ctx, int status)
{
    srv_vm_t *vm = ctx;
    vm->ctl = NULL;
    /* Re-attached (not our child): a missing socket or pid means the VMM is gone; a recycled pid
     * cannot fake the socket. Our own child: it is still starting; try again on a later tick. */
    if (!vm->ctl_up && !vm->proc &&
        (status == UV_ENOENT || status == UV_ECONNREFUSED || !srv__pid_alive(vm->pid))) {
        srv__desktop_gone(vm, vm->state != BRK_DS_RECYCLING, "vmm not running");
        return;
    }
    srv__desktop_connect_at(vm, vdi_now_ms() + CONNECT_RETRY_MS);
}

static void ctl_msg(void *ctx, const struct vmm_msg *m)
{
    srv_vm_t *vm = ctx;
    if (m->kind == VMM_MSG_REPLY) {
        if (m->has_status && m->status.ready)
            vm_ready(vm);
        if (m->has_status && m->status.agent.up && !vm->agent_up) {
            /* Re-attached (vdid restarted): the agent's hello went out before we connected. */
            vm->agent_up = true;
            snprintf(vm->agent, sizeof(vm->agent), "%s heartbeat=%us caps=%s", m->status.agent.name,
                     m->status.agent.heartbeat_s,
                     m->status.agent.caps[0] ? m->status.agent.caps : "none");
        }
        if (!m->ok)
            VDI_LOG_WARN("desktop=%" PRId64 " the vmm refused a request: %s", vm->id, m->error);
        return;
    }
    const char *name = vmm_event_name(m->event);
    const char *sep = m->reason[0] ? ": " : "";
    VDI_LOG_DEBUG("desktop=%" PRId64 " event=%s", vm->id, name ? name : "(unknown)");
    switch (m->event) {
    case VMM_EVENT_READY:
        vm_ready(vm);
        break;
    case VMM_EVENT_SHUTDOWN:
        snprintf(vm->off, sizeof(vm->off), "guest stopped%s%s", sep, m->reason);
        break;
    case VMM_EVENT_REBOOT:
        snprintf(vm->crash, sizeof(vm->crash), "guest rebooted");
        break;
    case VMM_EVENT_CRASHED:
        snprintf(vm->crash, sizeof(vm->crash), "guest crashed%s%s", sep, m->reason);
        break;
    case VMM_EVENT_AGENT:
        vm->agent_up = true;
        snprintf(vm->agent, sizeof(vm->agent), "%s", m->reason);
        VDI_LOG_INFO("desktop=%" PRId64 " guest agent up: %s", vm->id, m->reason);
        break;
    case VMM_EVENT_AGENT_LOST: {
        vm->agent_up = false;
        snprintf(vm->agent, sizeof(vm->agent), "lost: %s", m->reason);
        VDI_LOG_WARN("desktop=%" PRId64 " guest agent lost: %s", vm->id, m->reason);
        char why[260];
        snprintf(why, sizeof(why), "guest agent lost: %s", m->reason);
        srv__rollout_desktop_failed(vm, why);
        break;
    }
    case VMM_EVENT_BOOTED:
    case VMM_EVENT_UNKNOWN:
        break;
    }
}

const char *srv__vm_agent(const srv_vm_t *vm, bool *up)
{
    *up = vm->agent_up;
    return vm->agent;
}

/* The control socket closed: the VMM is exiting (or exited). */
static void ctl_lost(void *ctx)
{
    srv_vm_t *vm = ctx;
    vm->ctl = NULL;
    if (!vm->proc && vm->pid > 0)
        vm->exit_poll = true; /* not our child: the tick polls until the pid is gone */
    else if (!vm->proc)
        srv__desktop_gone(vm, vm->state != BRK_DS_RECYCLING, "control socket closed");
}

static const struct srv_vmmctl_cb ctl_cb = {
    .connected = ctl_connected,
    .failed = ctl_failed,
    .msg = ctl_msg,
    .lost = ctl_lost,
};

void srv__desktop_connect(srv_vm_t *vm)
{
    vm->next_connect = 0;
    int rc = srv__vmmctl_connect(vm->s->loop, vm->ctl_path, &ctl_cb, vm, &vm->ctl);
    if (rc < 0) {
        VDI_LOG_WARN("desktop=%" PRId64 " control socket: %s", vm->id, uv_strerror(rc));
        srv__desktop_connect_at(vm, vdi_now_ms() + CONNECT_RETRY_MS);
    }
}

/* ---- the VMM process -------------------------------------------------------------------------- */
void srv__desktop_kill(srv_vm_t *vm, bool as_failure)
{
    srv__kill_group(vm->pid, SIGKILL);
    vm->killed = !as_failure;
    if (!vm->proc && vm->pid > 0)
        vm->exit_poll = true;
}

/* The last line of the desktop's vmm.log (where the jail writes why it failed) into @buf. */
static void log_tail(const srv_vm_t *vm, char *buf, size_t n)
{
    char *path = vdi_xasprintf("%s/vmm.log", vm->datadir), chunk[512];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    buf[0] = 0;
    free(path);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END),
          at = end > (off_t)sizeof(chunk) - 1 ? end - (off_t)sizeof(chunk) + 1 : 0;
    ssize_t got = pread(fd, chunk, sizeof(chunk) - 1, at);
    close(fd);
    if (got <= 0)
        return;
    chunk[got] = 0;
    while (got && (chunk[got - 1] == '\n' || chunk[got - 1] == '\r'))
        chunk[--got] = 0;
    const char *nl = strrchr(chunk, '\n');
    snprintf(buf, n, "%s", nl ? nl + 1 : chunk);
}

void srv__desktop_on_exit(void *ctx, int64_t status, int sig)
{
    srv_vm_t *vm = ctx;
    vm->proc = NULL;
    if (!sig && status == SRV_JAIL_EXIT_FAILED && vm->uid) {
        char line[512], reason[600];
        log_tail(vm, line, sizeof(line));
        snprintf(reason, sizeof(reason), "the vmm's jail could not be set up: %s",
                 line[0] ? line : "(no message)");
        srv__desktop_gone(vm, true, reason);
        return;
    }
    if (sig == SIGKILL && !vm->killed && vm->cgroup && srv__cgroup_oom_killed(vm->cgroup)) {
        char reason[160];
        const brk_pool_config_t *p = srv__desktop_pool(vm);
        snprintf(reason, sizeof(reason), "vmm killed at its memory limit (%" PRIu64 " MiB)",
                 ((p ? p->memory : vm->memory) + vm->s->cfg->vmm_memory_overhead) >> 20);
        brk_store_audit(vm->s->store, NULL, "desktop.oom", vm->id, vm->owner, reason);
        srv__desktop_gone(vm, true, reason);
        return;
    }
    brk_vmm_exit_t e = {
        .signalled = sig != 0,
        .sig = sig,
        .status = status,
        .killed_by_vdid = vm->killed,
        .recycling = vm->state == BRK_DS_RECYCLING,
        .crash = vm->crash,
        .off = vm->off,
    };
    char reason[512];
    bool failed = brk_vmm_exit_failed(&e, reason, sizeof(reason));
    srv__desktop_gone(vm, failed, reason);
}

void srv__desktop_gone(srv_vm_t *vm, bool failed, const char *reason)
{
    srv_t *s = vm->s;
    const brk_pool_config_t *pool = srv__desktop_pool(vm);

    if (vm->state == BRK_DS_RECYCLING)
        failed = false;
    if (vm->orphan) {
        /* Its pool is gone from the config (on purpose, or a typo): the VMM stopped, but a
         * user's disk is not thrown away on a config edit. The admin clears it (vdictl desktops
         * destroy) or brings the pool back. */
        failed = true;
        reason = "its pool is no longer in the configuration; the VMM was stopped, the disk kept";
    }
    bool keep_disk = failed && (vm->orphan || (pool && pool->type == BRK_POOL_DEDICATED));
    if (failed && !vm->owner[0] && vm->state == BRK_DS_PROVISIONING && pool) {
        /* A spare that never came up: do not make another at once (and another...). */
        size_t i = (size_t)(pool - s->cfg->pools);
        s->spare_retry_at[i] = vdi_now_ms() + SPARE_BACKOFF_MS;
        VDI_LOG_WARN("pool=%s: a spare failed to start (%s); next try in %d s", pool->name, reason,
                     SPARE_BACKOFF_MS / 1000);
    }
    if (failed && !vm->orphan)
        srv__rollout_desktop_failed(vm, reason);
    if (!failed && vm->state != BRK_DS_RECYCLING)
        srv__desktop_set_state(vm, BRK_DS_RECYCLING, reason);
    srv__desktop_set_state(vm, failed ? BRK_DS_FAILED : BRK_DS_GONE, reason);
    brk_store_audit(s->store, NULL, failed ? "vmm.failed" : "vmm.exit", vm->id, vm->owner, reason);
    if (keep_disk) {
        char *disk = vdi_xasprintf("%s/disk.qcow2", vm->datadir);
        brk_store_desktop_set_vmm(s->store, vm->id, 0, disk, vm->image_version);
        free(disk);
    } else {
        brk_store_desktop_set_vmm(s->store, vm->id, 0, "", 0);
    }
    srv__logins_desktop_gone(vm, failed, reason);
    remove_dir(vm->rundir);
    if (vm->uid) {
        char *stage = vdi_xasprintf("%s/jail/%" PRId64, s->cfg->run_dir, vm->id);
        rmdir(stage);
        free(stage);
    }
    srv__cgroup_destroy(vm->cgroup);
    vm->cgroup = NULL;
    srv__net_desktop_down(vm);
    if (!keep_disk) {
        char holder[32];
        holder_of(vm->id, holder, sizeof(holder));
        remove_dir(vm->datadir);
        srv__image_unref(s, vm->image, vm->image_version, holder);
    }
    srv__desktop_free(vm);
    srv__spares_kick(s);
}

void srv__desktop_recycle(srv_vm_t *vm, bool hard, const char *why)
{
    if (vm->state == BRK_DS_RECYCLING) {
        if (hard)
            srv__desktop_kill(vm, false);
        return;
    }
    if (srv__desktop_set_state(vm, BRK_DS_RECYCLING, why) < 0)
        return;
    srv__session_kick_vm(vm, why);
    vm->disconnect_at = 0;
    if (vm->pid <= 0 || (!vm->proc && !vm->ctl_up && !srv__pid_alive(vm->pid))) {
        srv__desktop_gone(vm, false, why);
        return;
    }
    if (hard)
        srv__desktop_kill(vm, false);
    else
        send_shutdown(vm);
}

int srv__vm_recycle(srv_t *s, int64_t id, bool hard, const char *why)
{
    srv_vm_t *vm = srv__vm_find(s, id);
    if (!vm) {
        brk_desktop_t d;
        int rc = brk_store_desktop_get(s->store, id, &d);
        if (rc < 0)
            return rc;
        if (d.state != BRK_DS_FAILED)
            return VDI_ESTATE;
        /* Clear a failed desktop away (its kept disk and its image reference too). */
        char *dir = vdi_xasprintf("%s/desktops/%" PRId64, s->cfg->state_dir, id);
        char holder[32];
        remove_dir(dir);
        free(dir);
        holder_of(id, holder, sizeof(holder));
        srv__image_unref(s, d.image, (uint32_t)d.image_version, holder);
        return brk_store_desktop_set_state(s->store, id, BRK_DS_GONE, why);
    }
    if (vm->state == BRK_DS_RECYCLING && !hard)
        return VDI_ESTATE;
    brk_store_audit(s->store, "admin", hard ? "desktop.destroy" : "desktop.recycle", id, vm->owner,
                    why);
    srv__desktop_recycle(vm, hard, why);
    return 0;
}

/* ---- new desktops ------------------------------------------------------------------------------ */
int srv__desktop_provision(srv_t *s, const brk_pool_config_t *pool, const char *owner,
                           srv_vm_t **out)
{
    int64_t id;
    uint32_t version = srv__rollout_version(s, pool);
    int rc = brk_store_desktop_create(s->store, pool->name, owner, pool->image, pool->memory, &id);
    if (rc < 0)
        return rc;
    brk_desktop_t d = {.id = id, .state = BRK_DS_PROVISIONING, .memory = pool->memory};
    snprintf(d.pool, sizeof(d.pool), "%s", pool->name);
    snprintf(d.owner, sizeof(d.owner), "%s", owner);
    snprintf(d.image, sizeof(d.image), "%s", pool->image);
    srv_vm_t *vm = srv__desktop_new(s, &d);
    vm->want_version = version;
    char why[200];
    rc = srv__prep_start(vm, pool, why, sizeof(why));
    if (rc < 0) {
        srv__desktop_gone(vm, true, why);
        return rc;
    }
    if (out)
        *out = vm;
    return 0;
}

int srv__desktop_restart(srv_t *s, int64_t id, const brk_pool_config_t *pool, srv_vm_t **out)
{
    brk_desktop_t d;
    int rc = brk_store_desktop_get(s->store, id, &d);
    if (rc < 0)
        return rc;
    uint32_t version = srv__rollout_version(s, pool);
    srv_vm_t *vm = srv__desktop_new(s, &d);
    vm->pid = 0;
    /* A dedicated desktop moves to the pool's version at its next start, when its user's files
     * are on their data disk: its system disk is made anew. */
    if (pool->user_disk && version && version != vm->image_version) {
        VDI_LOG_INFO("desktop=%" PRId64 " moves from version %u to %u of image %s at this start",
                     vm->id, vm->image_version, version, vm->image);
        vm->want_version = version;
        vm->renew_from = vm->image_version;
        vm->image_version = 0;
    }
    rc = srv__desktop_set_state(vm, BRK_DS_PROVISIONING, "started again for its user");
    if (rc < 0) {
        srv__desktop_free(vm);
        return rc;
    }
    char why[200];
    rc = srv__prep_start(vm, pool, why, sizeof(why));
    if (rc < 0) {
        srv__desktop_gone(vm, true, why);
        return rc;
    }
    *out = vm;
    return 0;
}
