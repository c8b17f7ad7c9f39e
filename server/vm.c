/* server/vm.c: desktops at run time: the supervisor of their VMMs, spares, logins and sessions.
 *
 * Every desktop that is not gone or failed has a srv_vm_t mirroring its stored state. Its VMM is
 * followed through two channels: the process (uv_process_t, when this vdid started it) and the
 * control socket (always; after a vdid restart it is the only one). Either one ending means the
 * VMM is gone: a process exit carries the status; a control socket EOF without a process handle
 * is confirmed by polling kill(pid, 0).
 *
 * Time-driven work (control socket connect retries, ready and shutdown deadlines, disconnect and
 * idle timeouts, exit polls, spares) runs from one periodic timer (TICK_MS) that scans the
 * desktops: a few hundred desktops cost microseconds per tick, and no per-desktop timers means
 * no per-desktop handle lifetimes to get wrong.
 */
#define VDI_LOG_TAG "vm"
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/img.h"
#include "server/internal.h"

#define TICK_MS          100
#define SPARES_EVERY_MS  2000
#define CTL_MAX_LINE     (64 * 1024)
#define CONNECT_RETRY_MS 50
#define SPARE_BACKOFF_MS 30000 /* after a spare failed to start: no image, a broken VMM... */

struct ctl_conn;
struct vmproc;
struct prep;

struct srv_vm {
    srv_t *s;
    int64_t id;
    char pool[64];
    char owner[64];
    char image[64];
    uint32_t image_version; /* 0 until cloned */
    brk_desktop_state_t state;
    uint64_t memory;
    pid_t pid;
    struct vmproc *proc;   /* NULL when we did not start it (re-attached) or it was reaped */
    struct ctl_conn *ctl;  /* NULL between connection attempts */
    struct prep *prep;     /* disk being made in the thread pool */
    bool ctl_up;           /* connected at least once */
    uint64_t next_connect; /* ms: next control connect attempt (0: none wanted) */
    uint64_t deadline;     /* ms: ready / shutdown deadline for the current state (0: none) */
    uint64_t disconnect_at;
    bool exit_poll; /* control socket gone and no process handle: poll the pid */
    bool guest_off; /* the guest powered off (shutdown event): its exit is a logout */
    bool killed;    /* we sent SIGKILL */
    char crash[96]; /* from a crashed event */
    char off[96];   /* from a shutdown event: how the VM stopped */
    char *rundir;   /* RUN_DIR/vm/ID */
    char *datadir;  /* STATE_DIR/desktops/ID */
    char *ctl_path;
    char *dpy_path;
    srv_session_t *session;
    vdi_list_t link;
};

struct vmproc {
    uv_process_t h;
    srv_vm_t *vm; /* NULL once the desktop no longer follows it */
};

struct ctl_conn {
    uv_pipe_t pipe;
    uv_connect_t req;
    srv_vm_t *vm; /* NULL once the desktop no longer follows it */
    vdi_buf_t in;
    bool closing;
};

struct srv_login {
    srv_t *s;
    vdi_list_t link;
    char user[64];
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
};

static void vm_gone(srv_vm_t *vm, bool failed, const char *reason);
static void ctl_close(srv_vm_t *vm);
static void deliver_soon(srv_t *s);

/* ---- small helpers --------------------------------------------------------------------------- */
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

static const brk_pool_config_t *vm_pool(const srv_vm_t *vm)
{
    return brk_config_pool(vm->s->cfg, vm->pool);
}

static int vm_set_state(srv_vm_t *vm, brk_desktop_state_t to, const char *reason)
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

static srv_vm_t *vm_new(srv_t *s, const brk_desktop_t *d)
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
    vm->ctl_path = vdi_xasprintf("%s/control.sock", vm->rundir);
    vm->dpy_path = vdi_xasprintf("%s/display.sock", vm->rundir);
    vdi_list_push_tail(&s->vms, &vm->link);
    return vm;
}

static void prep_abandon(struct prep *p, bool stopping);

static void vm_free(srv_vm_t *vm)
{
    vdi_list_remove(&vm->link);
    if (vm->prep) {
        prep_abandon(vm->prep, vm->s->stopping);
        vm->prep = NULL;
    }
    ctl_close(vm);
    if (vm->proc) {
        vm->proc->vm = NULL; /* its exit callback frees it */
        vm->proc = NULL;
    }
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

/* Is @pid a live process? A zombie is not (our parent may not reap the VMMs it inherited). */
static bool pid_alive(pid_t pid)
{
    if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH))
        return false;
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return errno != ENOENT;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
    return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

static void kill_group(srv_vm_t *vm, int sig)
{
    if (vm->pid <= 0)
        return;
    /* The VMM leads its own process group (setsid at spawn): this reaches its helpers too. */
    if (kill(-vm->pid, sig) < 0 && errno == ESRCH)
        kill(vm->pid, sig);
    if (sig == SIGKILL)
        vm->killed = true;
}

/* ---- the control socket ---------------------------------------------------------------------- */
static void ctl_send(srv_vm_t *vm, const char *line);

static void on_ctl_closed(uv_handle_t *h)
{
    struct ctl_conn *c = vdi_container_of((uv_pipe_t *)h, struct ctl_conn, pipe);
    vdi_buf_free(&c->in);
    free(c);
}

static void ctl_close(srv_vm_t *vm)
{
    struct ctl_conn *c = vm->ctl;
    if (!c)
        return;
    vm->ctl = NULL;
    c->vm = NULL;
    if (!c->closing) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->pipe, on_ctl_closed);
    }
}

static void vm_ready(srv_vm_t *vm)
{
    if (vm->state != BRK_DS_PROVISIONING)
        return;
    vm->deadline = 0;
    if (vm_set_state(vm, BRK_DS_READY, NULL) < 0)
        return;
    /* Logins waiting for this desktop get it now. */
    vdi_list_t *it;
    for (it = vm->s->logins.next; it != &vm->s->logins; it = it->next) {
        srv_login_t *l = vdi_list_entry(it, srv_login_t, link);
        if (!l->done && l->desktop == vm->id) {
            l->done = true;
            l->status = 0;
        }
    }
    deliver_soon(vm->s);
    srv__spares_kick(vm->s);
}

static void ctl_event(srv_vm_t *vm, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, 0, &jerr);
    if (!json_is_object(msg)) {
        VDI_LOG_WARN_RL("desktop=%" PRId64 " control: not a JSON object: %s", vm->id, jerr.text);
        json_decref(msg);
        return;
    }
    const char *ev = json_string_value(json_object_get(msg, "event"));
    if (ev) {
        VDI_LOG_DEBUG("desktop=%" PRId64 " event=%s", vm->id, ev);
        if (strcmp(ev, "ready") == 0) {
            vm_ready(vm);
        } else if (strcmp(ev, "shutdown") == 0) {
            const char *why = json_string_value(json_object_get(msg, "reason"));
            vm->guest_off = true;
            snprintf(vm->off, sizeof(vm->off), "guest stopped%s%s", why ? ": " : "",
                     why ? why : "");
        } else if (strcmp(ev, "reboot") == 0) {
            snprintf(vm->crash, sizeof(vm->crash), "guest rebooted");
        } else if (strcmp(ev, "crashed") == 0) {
            const char *why = json_string_value(json_object_get(msg, "reason"));
            snprintf(vm->crash, sizeof(vm->crash), "guest crashed%s%s", why ? ": " : "",
                     why ? why : "");
        }
    } else {
        /* A reply. To our status request after (re-)attaching: a VMM already showing its
         * first frame will not send `ready` again. */
        json_t *r = json_object_get(msg, "result");
        json_t *ready = json_object_get(r ? r : msg, "ready");
        const char *state = json_string_value(json_object_get(r ? r : msg, "state"));
        if (json_is_true(ready) || (state && strcmp(state, "ready") == 0))
            vm_ready(vm);
    }
    json_decref(msg);
}

static void ctl_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    VDI_UNUSED(h);
    VDI_UNUSED(suggested);
    static char chunk[8192];
    *buf = uv_buf_init(chunk, sizeof(chunk));
}

/* The control socket closed: the VMM is exiting (or exited). */
static void ctl_lost(srv_vm_t *vm)
{
    ctl_close(vm);
    if (!vm->proc && vm->pid > 0) {
        vm->exit_poll = true; /* not our child: poll until the pid is gone */
    } else if (!vm->proc) {
        vm_gone(vm, vm->state != BRK_DS_RECYCLING, "control socket closed");
    }
}

static void ctl_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct ctl_conn *c = vdi_container_of((uv_pipe_t *)st, struct ctl_conn, pipe);
    srv_vm_t *vm = c->vm;
    if (!vm)
        return;
    if (nread < 0) {
        VDI_LOG_DEBUG("desktop=%" PRId64 " control socket: %s", vm->id, uv_strerror((int)nread));
        ctl_lost(vm);
        return;
    }
    if (vdi_buf_append(&c->in, buf->base, (size_t)nread) < 0) {
        ctl_lost(vm);
        return;
    }
    size_t start = 0;
    for (size_t i = 0; i < c->in.len; i++) {
        if (c->in.data[i] != '\n')
            continue;
        ctl_event(vm, (const char *)c->in.data + start, i - start);
        start = i + 1;
        if (c->vm != vm)
            return; /* the desktop went away while handling the event */
    }
    vdi_buf_consume(&c->in, start);
    if (c->in.len > CTL_MAX_LINE) {
        VDI_LOG_WARN_RL("desktop=%" PRId64 " control: line longer than %d bytes", vm->id,
                        CTL_MAX_LINE);
        vdi_buf_reset(&c->in);
    }
}

/* Ask the guest to shut down (ACPI power button); the VMM itself stops the VM when
 * shutdown_timeout passes, and we kill the VMM if it is still there 5 s after that. */
static void vm_send_shutdown(srv_vm_t *vm)
{
    char line[96];
    snprintf(line, sizeof(line), "{\"cmd\":\"shutdown\",\"timeout_ms\":%u}\n",
             vm->s->cfg->shutdown_timeout_s * 1000);
    ctl_send(vm, line);
    vm->deadline = vdi_now_ms() + ((uint64_t)vm->s->cfg->shutdown_timeout_s + 5) * 1000;
}

static void on_ctl_connect(uv_connect_t *req, int status)
{
    struct ctl_conn *c = vdi_container_of(req, struct ctl_conn, req);
    srv_vm_t *vm = c->vm;
    if (!vm)
        return; /* abandoned; already closing */
    if (status < 0) {
        /* Not listening yet (the VMM is starting): try again on a later tick. */
        ctl_close(vm);
        /* Re-attached (not our child): a missing socket or pid means the VMM is gone; a
         * recycled pid cannot fake the socket. */
        if (!vm->ctl_up && !vm->proc &&
            (status == UV_ENOENT || status == UV_ECONNREFUSED || !pid_alive(vm->pid))) {
            vm_gone(vm, vm->state != BRK_DS_RECYCLING, "vmm not running");
            return;
        }
        vm->next_connect = vdi_now_ms() + CONNECT_RETRY_MS;
        return;
    }
    vm->ctl_up = true;
    vm->next_connect = 0;
    VDI_LOG_DEBUG("desktop=%" PRId64 " control socket connected", vm->id);
    uv_read_start((uv_stream_t *)&c->pipe, ctl_alloc, ctl_on_read);
    ctl_send(vm, "{\"cmd\":\"status\"}\n");
    if (vm->state == BRK_DS_RECYCLING)
        vm_send_shutdown(vm);
}

static void ctl_connect(srv_vm_t *vm)
{
    struct ctl_conn *c = vdi_xcalloc(1, sizeof(*c));
    c->vm = vm;
    uv_pipe_init(vm->s->loop, &c->pipe, 0);
    vm->ctl = c;
    vm->next_connect = 0;
    uv_pipe_connect(&c->req, &c->pipe, vm->ctl_path, on_ctl_connect);
}

static void on_ctl_written(uv_write_t *req, int status)
{
    VDI_UNUSED(status);
    free(req);
}

static void ctl_send(srv_vm_t *vm, const char *line)
{
    if (!vm->ctl || !vm->ctl_up)
        return;
    size_t n = strlen(line);
    uv_write_t *req = vdi_xmalloc(sizeof(*req) + n);
    memcpy(req + 1, line, n);
    uv_buf_t b = uv_buf_init((char *)(req + 1), (unsigned)n);
    if (uv_write(req, (uv_stream_t *)&vm->ctl->pipe, &b, 1, on_ctl_written) < 0)
        free(req);
}

/* ---- the VMM process ------------------------------------------------------------------------- */
static void on_proc_closed(uv_handle_t *h)
{
    free(vdi_container_of((uv_process_t *)h, struct vmproc, h));
}

static void on_proc_exit(uv_process_t *h, int64_t status, int sig)
{
    struct vmproc *p = vdi_container_of(h, struct vmproc, h);
    srv_vm_t *vm = p->vm;
    uv_close((uv_handle_t *)h, on_proc_closed);
    if (!vm)
        return;
    vm->proc = NULL;
    char reason[160];
    bool failed;
    if (sig) {
        snprintf(reason, sizeof(reason), "vmm killed by signal %d (%s)%s", sig, strsignal(sig),
                 vm->killed ? " by vdid" : "");
        failed = !vm->killed;
    } else if (status == 0) {
        snprintf(reason, sizeof(reason), "guest powered off");
        failed = false;
    } else if (status == 5) {
        /* docs/vmm-control.md: stopped from outside (our shutdown's deadline, quit, a signal). */
        snprintf(reason, sizeof(reason), "vmm stopped the guest (%s)",
                 vm->off[0] ? vm->off : "exit status 5");
        failed = vm->state != BRK_DS_RECYCLING;
    } else {
        static const char *const meaning[] = {"", "the vmm failed", "bad vmm arguments",
                                              "the guest rebooted", "the guest crashed"};
        snprintf(reason, sizeof(reason), "vmm exited with status %" PRId64 "%s%s%s%s", status,
                 status < 5 ? " (" : "", status < 5 ? meaning[status] : "", status < 5 ? ")" : "",
                 vm->crash[0] ? ", " : "");
        snprintf(reason + strlen(reason), sizeof(reason) - strlen(reason), "%s", vm->crash);
        failed = true;
    }
    if (vm->state == BRK_DS_RECYCLING)
        failed = false;
    if (failed && vm->crash[0] && !strstr(reason, vm->crash)) {
        char both[288];
        snprintf(both, sizeof(both), "%s (%s)", vm->crash, reason);
        vm_gone(vm, failed, both);
        return;
    }
    vm_gone(vm, failed, reason);
}

/* Read a small text file (a version's cmdline) into @buf; "" when absent. */
static void read_small(const char *path, char *buf, size_t n)
{
    buf[0] = 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    size_t got = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[got] = 0;
    while (got && (buf[got - 1] == '\n' || buf[got - 1] == '\r'))
        buf[--got] = 0;
}

/* Getting a desktop's disk and boot files ready runs in libuv's thread pool: the clone writes
 * and syncs a small qcow2 header and a reference file, which the loop must not wait for. */
struct prep {
    uv_work_t req;
    srv_vm_t *vm; /* NULL once abandoned (the desktop went away, or vdid is stopping) */
    const brk_pool_config_t *pool;
    img_catalog_t *cat;
    char image[64];
    char holder[32];
    uint32_t version; /* in: the version of a kept disk (0: clone a new one); out: the version */
    bool cloned;      /* out: a new overlay was made */
    bool cat_closing; /* abandoned because vdid is stopping */
    char *datadir, *rundir, *overlay;
    char *kernel, *initrd;
    char cmdline[2048];
    int rc;
    char why[200];
};

static void prep_work(uv_work_t *req) /* Thread: pool */
{
    struct prep *p = vdi_container_of(req, struct prep, req);
    if (mkdir(p->rundir, 0700) < 0 && errno != EEXIST) {
        p->rc = -errno;
        snprintf(p->why, sizeof(p->why), "cannot create %s: %s", p->rundir, vdi_strerror(p->rc));
        return;
    }
    if (mkdir(p->datadir, 0700) < 0 && errno != EEXIST) {
        p->rc = -errno;
        snprintf(p->why, sizeof(p->why), "cannot create %s: %s", p->datadir, vdi_strerror(p->rc));
        return;
    }
    if (!p->version || access(p->overlay, F_OK) != 0) {
        p->rc = img_catalog_clone(p->cat, p->image, 0, p->overlay, p->holder, &p->version);
        if (p->rc < 0) {
            snprintf(p->why, sizeof(p->why), "cannot clone image %s: %s", p->image,
                     p->rc == -ENOENT ? "no such image in the catalogue" : vdi_strerror(p->rc));
            return;
        }
        p->cloned = true;
    }
    /* else: a dedicated desktop started again on its own disk, on the version it came from */
    p->rc = img_catalog_path(p->cat, p->image, p->version, "kernel", &p->kernel);
    if (p->rc < 0) {
        snprintf(p->why, sizeof(p->why), "image %s version %u has no kernel", p->image, p->version);
        return;
    }
    if (img_catalog_path(p->cat, p->image, p->version, "initrd", &p->initrd) < 0)
        p->initrd = NULL;
    char *cl = NULL;
    if (img_catalog_path(p->cat, p->image, p->version, "cmdline", &cl) == 0)
        read_small(cl, p->cmdline, sizeof(p->cmdline));
    free(cl);
}

static void prep_abandon(struct prep *p, bool stopping)
{
    p->vm = NULL;
    p->cat_closing = stopping;
    uv_cancel((uv_req_t *)&p->req); /* not started yet: prep_done runs with UV_ECANCELED */
}

static void prep_free(struct prep *p)
{
    free(p->datadir);
    free(p->rundir);
    free(p->overlay);
    free(p->kernel);
    free(p->initrd);
    free(p);
}

static void vm_unref_image(srv_vm_t *vm)
{
    if (!vm->image_version || !vm->s->catalog)
        return;
    char holder[32];
    snprintf(holder, sizeof(holder), "desktop-%" PRId64, vm->id);
    int rc = img_catalog_unref(vm->s->catalog, vm->image, vm->image_version, holder);
    if (rc < 0 && rc != -ENOENT)
        VDI_LOG_WARN("desktop=%" PRId64 " image=%s version=%u: cannot drop its reference: %s",
                     vm->id, vm->image, vm->image_version, vdi_strerror(rc));
    vm->image_version = 0;
}

/* Start the VMM once the disk is ready (loop). */
static int vm_exec(srv_vm_t *vm, struct prep *pr, char *why, size_t whylen)
{
    srv_t *s = vm->s;
    const brk_pool_config_t *pool = pr->pool;
    char mem[32], vcpus[16], fb[32];
    char *overlay = pr->overlay, *kernel = pr->kernel, *initrd = pr->initrd;
    char *cmdline = pr->cmdline;
    char *log = NULL;
    int logfd = -1, rc;

    vm->image_version = pr->version;
    unlink(vm->ctl_path);
    unlink(vm->dpy_path);
    log = vdi_xasprintf("%s/vmm.log", vm->datadir);
    logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0) {
        rc = -errno;
        snprintf(why, whylen, "cannot open %s: %s", log, vdi_strerror(rc));
        goto out;
    }
    snprintf(mem, sizeof(mem), "%" PRIu64 "M", pool->memory >> 20);
    snprintf(vcpus, sizeof(vcpus), "%u", pool->vcpus);
    snprintf(fb, sizeof(fb), "%ux%u", pool->fb_width, pool->fb_height);
    const char *argv_c[24];
    size_t n = 0;
    argv_c[n++] = s->vmm_path;
    argv_c[n++] = "--kernel";
    argv_c[n++] = kernel;
    if (initrd) {
        argv_c[n++] = "--initrd";
        argv_c[n++] = initrd;
    }
    if (cmdline[0]) {
        argv_c[n++] = "--cmdline";
        argv_c[n++] = cmdline;
    }
    argv_c[n++] = "--mem";
    argv_c[n++] = mem;
    argv_c[n++] = "--vcpus";
    argv_c[n++] = vcpus;
    argv_c[n++] = "--fb";
    argv_c[n++] = fb;
    argv_c[n++] = "--disk";
    argv_c[n++] = overlay;
    argv_c[n++] = "--control";
    argv_c[n++] = vm->ctl_path;
    argv_c[n++] = "--display";
    argv_c[n++] = vm->dpy_path;
    VDI_ASSERT(n < VDI_ARRAY_SIZE(argv_c));
    char *args[VDI_ARRAY_SIZE(argv_c) + 1];
    for (size_t i = 0; i < n; i++)
        args[i] = vdi_xstrdup(argv_c[i]); /* uv_process_options_t wants char ** */
    args[n] = NULL;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = logfd},
        {.flags = UV_INHERIT_FD, .data.fd = logfd},
    };
    uv_process_options_t o = {
        .file = s->vmm_path,
        .args = args,
        .flags = UV_PROCESS_DETACHED, /* setsid: own session and process group */
        .stdio_count = 3,
        .stdio = stdio,
        .exit_cb = on_proc_exit,
    };
    struct vmproc *p = vdi_xcalloc(1, sizeof(*p));
    p->vm = vm;
    rc = uv_spawn(s->loop, &p->h, &o);
    for (size_t i = 0; i < n; i++)
        free(args[i]);
    if (rc < 0) {
        /* libuv wants the handle closed even when spawn failed. */
        p->vm = NULL;
        uv_close((uv_handle_t *)&p->h, on_proc_closed);
        snprintf(why, whylen, "cannot start %s: %s", s->vmm_path, uv_strerror(rc));
        goto out;
    }
    vm->proc = p;
    vm->pid = p->h.pid;
    vm->next_connect = vdi_now_ms() + CONNECT_RETRY_MS;
    vm->deadline = vdi_now_ms() + (uint64_t)s->cfg->ready_timeout_s * 1000;
    rc = brk_store_desktop_set_vmm(s->store, vm->id, vm->pid, overlay, vm->image_version);
    if (rc < 0)
        VDI_LOG_ERR("desktop=%" PRId64 " cannot record vmm pid %d: %s", vm->id, (int)vm->pid,
                    vdi_strerror(rc));
    VDI_LOG_INFO("desktop=%" PRId64 " pool=%s image=%s version=%u vmm pid=%d started", vm->id,
                 pool->name, vm->image, vm->image_version, (int)vm->pid);
    rc = 0;
out:
    if (logfd >= 0)
        close(logfd);
    free(log);
    return rc;
}

static void prep_done(uv_work_t *req, int status)
{
    struct prep *p = vdi_container_of(req, struct prep, req);
    srv_vm_t *vm = p->vm;
    if (status == UV_ECANCELED && p->rc == 0) {
        p->rc = -ECANCELED;
        snprintf(p->why, sizeof(p->why), "cancelled");
    }
    if (!vm) {
        /* The desktop was destroyed meanwhile: take back a disk made for it. With vdid
         * stopping, leave it: the next vdid finds the desktop and decides. */
        if (p->cloned && !p->cat_closing) {
            unlink(p->overlay);
            rmdir(p->datadir);
            img_catalog_unref(p->cat, p->image, p->version, p->holder);
        }
        prep_free(p);
        return;
    }
    vm->prep = NULL;
    char why[200];
    int rc = p->rc;
    if (rc == 0) {
        vm->image_version = p->version;
        rc = vm_exec(vm, p, why, sizeof(why));
    } else {
        snprintf(why, sizeof(why), "%s", p->why);
    }
    prep_free(p);
    if (rc < 0) {
        VDI_LOG_ERR("desktop=%" PRId64 " %s", vm->id, why);
        vm_gone(vm, true, why);
    }
}

/* Get the disk ready (thread pool), then start the VMM (prep_done). */
static void vm_spawn(srv_vm_t *vm, const brk_pool_config_t *pool)
{
    struct prep *p = vdi_xcalloc(1, sizeof(*p));
    p->vm = vm;
    p->pool = pool;
    p->cat = vm->s->catalog;
    snprintf(p->image, sizeof(p->image), "%s", vm->image);
    snprintf(p->holder, sizeof(p->holder), "desktop-%" PRId64, vm->id);
    p->version = vm->image_version;
    p->datadir = vdi_xstrdup(vm->datadir);
    p->rundir = vdi_xstrdup(vm->rundir);
    p->overlay = vdi_xasprintf("%s/disk.qcow2", vm->datadir);
    vm->prep = p;
    uv_queue_work(vm->s->loop, &p->req, prep_work, prep_done);
}

/* A new desktop in @pool for @owner ("" for a spare). On failure nothing is left but the
 * record (failed, with the reason). */
static int vm_provision(srv_t *s, const brk_pool_config_t *pool, const char *owner, srv_vm_t **out)
{
    int64_t id;
    int rc = brk_store_desktop_create(s->store, pool->name, owner, pool->image, pool->memory, &id);
    if (rc < 0)
        return rc;
    brk_desktop_t d = {.id = id, .state = BRK_DS_PROVISIONING, .memory = pool->memory};
    snprintf(d.pool, sizeof(d.pool), "%s", pool->name);
    snprintf(d.owner, sizeof(d.owner), "%s", owner);
    snprintf(d.image, sizeof(d.image), "%s", pool->image);
    srv_vm_t *vm = vm_new(s, &d);
    vm_spawn(vm, pool);
    if (out)
        *out = vm;
    return 0;
}

/* Start a failed dedicated desktop again on the disk it kept. */
static int vm_restart(srv_t *s, int64_t id, const brk_pool_config_t *pool, srv_vm_t **out)
{
    brk_desktop_t d;
    int rc = brk_store_desktop_get(s->store, id, &d);
    if (rc < 0)
        return rc;
    srv_vm_t *vm = vm_new(s, &d);
    vm->pid = 0;
    rc = vm_set_state(vm, BRK_DS_PROVISIONING, "started again for its user");
    if (rc < 0) {
        vm_free(vm);
        return rc;
    }
    vm_spawn(vm, pool);
    *out = vm;
    return 0;
}

/* The VMM is gone (or never started): the desktop ends failed or gone; its files go (a
 * dedicated desktop that failed keeps its disk for the admin). Frees @vm. */
static void vm_gone(srv_vm_t *vm, bool failed, const char *reason)
{
    srv_t *s = vm->s;
    const brk_pool_config_t *pool = vm_pool(vm);
    bool keep_disk = failed && pool && pool->type == BRK_POOL_DEDICATED;

    if (vm->state == BRK_DS_RECYCLING && failed)
        failed = false;
    if (failed && !vm->owner[0] && vm->state == BRK_DS_PROVISIONING && pool) {
        /* A spare that never came up: do not make another at once (and another...). */
        size_t i = (size_t)(pool - s->cfg->pools);
        s->spare_retry_at[i] = vdi_now_ms() + SPARE_BACKOFF_MS;
        VDI_LOG_WARN("pool=%s: a spare failed to start (%s); next try in %d s", pool->name, reason,
                     SPARE_BACKOFF_MS / 1000);
    }
    if (!failed && vm->state != BRK_DS_RECYCLING)
        vm_set_state(vm, BRK_DS_RECYCLING, reason);
    vm_set_state(vm, failed ? BRK_DS_FAILED : BRK_DS_GONE, reason);
    brk_store_audit(s->store, NULL, failed ? "vmm.failed" : "vmm.exit", vm->id, vm->owner, reason);
    if (keep_disk) {
        char *disk = vdi_xasprintf("%s/disk.qcow2", vm->datadir);
        brk_store_desktop_set_vmm(s->store, vm->id, 0, disk, vm->image_version);
        free(disk);
    } else {
        brk_store_desktop_set_vmm(s->store, vm->id, 0, "", 0);
    }
    if (vm->session) {
        srv_session_t *se = vm->session;
        vm->session = NULL;
        se->vm = NULL;
        if (!se->kicked) {
            se->kicked = true;
            se->kick(se->ctx, failed ? "your desktop stopped unexpectedly" : "desktop closed");
        }
    }
    /* Logins waiting for it hear why. */
    vdi_list_t *it;
    for (it = s->logins.next; it != &s->logins; it = it->next) {
        srv_login_t *l = vdi_list_entry(it, srv_login_t, link);
        if (!l->done && l->desktop == vm->id) {
            l->done = true;
            l->status = VDI_ECRASHED;
            snprintf(l->msg, sizeof(l->msg), "your desktop failed to start (%s)", reason);
        }
    }
    deliver_soon(s);
    remove_dir(vm->rundir);
    if (!keep_disk) {
        remove_dir(vm->datadir);
        vm_unref_image(vm);
    }
    vm_free(vm);
    srv__spares_kick(s);
}

/* Begin recycling: ask the guest to shut down; the tick kills it at the deadline. */
static void vm_recycle(srv_vm_t *vm, bool hard, const char *why)
{
    if (vm->state == BRK_DS_RECYCLING) {
        if (hard)
            kill_group(vm, SIGKILL);
        return;
    }
    if (vm_set_state(vm, BRK_DS_RECYCLING, why) < 0)
        return;
    if (vm->session) {
        srv_session_t *se = vm->session;
        if (!se->kicked) {
            se->kicked = true;
            se->kick(se->ctx, why);
        }
    }
    vm->disconnect_at = 0;
    if (vm->pid <= 0 || (!vm->proc && !vm->ctl_up && !pid_alive(vm->pid))) {
        vm_gone(vm, false, why);
        return;
    }
    if (hard) {
        kill_group(vm, SIGKILL);
    } else {
        vm_send_shutdown(vm);
    }
}

int srv__vm_recycle(srv_t *s, int64_t id, bool hard, const char *why)
{
    srv_vm_t *vm = srv__vm_find(s, id);
    if (!vm) {
        brk_desktop_t d;
        int rc = brk_store_desktop_get(s->store, id, &d);
        if (rc < 0)
            return rc;
        if (d.state == BRK_DS_FAILED) {
            /* Clear a failed desktop away (its kept disk and its image reference too). */
            char *dir = vdi_xasprintf("%s/desktops/%" PRId64, s->cfg->state_dir, id);
            remove_dir(dir);
            free(dir);
            if (d.image_version > 0) {
                char holder[32];
                snprintf(holder, sizeof(holder), "desktop-%" PRId64, id);
                img_catalog_unref(s->catalog, d.image, (uint32_t)d.image_version, holder);
            }
            return brk_store_desktop_set_state(s->store, id, BRK_DS_GONE, why);
        }
        return VDI_ESTATE;
    }
    if (vm->state == BRK_DS_RECYCLING && !hard)
        return VDI_ESTATE;
    brk_store_audit(s->store, "admin", hard ? "desktop.destroy" : "desktop.recycle", id, vm->owner,
                    why);
    vm_recycle(vm, hard, why);
    return 0;
}

/* ---- spares ---------------------------------------------------------------------------------- */
void srv__spares_kick(srv_t *s)
{
    s->spares_wanted = true;
}

static void spares_check(srv_t *s)
{
    s->spares_wanted = false;
    s->last_spares = vdi_now_ms();
    for (size_t i = 0; i < s->cfg->n_pools; i++) {
        const brk_pool_config_t *p = &s->cfg->pools[i];
        unsigned spares = 0, live = 0;
        vdi_list_t *it;
        for (it = s->vms.next; it != &s->vms; it = it->next) {
            srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
            if (strcmp(vm->pool, p->name) != 0)
                continue;
            live++;
            if (!vm->owner[0] && (vm->state == BRK_DS_PROVISIONING || vm->state == BRK_DS_READY))
                spares++;
        }
        if (vdi_now_ms() < s->spare_retry_at[i])
            continue;
        while (spares < p->min_spares && live < p->max_desktops) {
            uint64_t used = 0;
            if (brk_usage(s->store, NULL, &used, NULL) < 0 || used + p->memory > s->memory_budget)
                break; /* no room: logins get the memory first */
            if (vm_provision(s, p, "", NULL) < 0)
                break; /* logged and recorded; try again on the next round */
            spares++;
            live++;
        }
    }
}

/* ---- the tick -------------------------------------------------------------------------------- */
static void on_tick(uv_timer_t *t)
{
    srv_t *s = t->data;
    uint64_t now = vdi_now_ms();
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &s->vms)
    {
        srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        if (vm->exit_poll) {
            if (!pid_alive(vm->pid)) {
                vm_gone(vm, vm->state != BRK_DS_RECYCLING,
                        vm->crash[0] ? vm->crash
                                     : (vm->off[0] ? vm->off
                                                   : "vmm exited (status unknown: it was started "
                                                     "by an earlier vdid)"));
                continue;
            }
        } else if (vm->next_connect && now >= vm->next_connect && !vm->ctl) {
            ctl_connect(vm);
        }
        if (vm->deadline && now >= vm->deadline) {
            vm->deadline = 0;
            if (vm->state == BRK_DS_PROVISIONING) {
                char why[96];
                snprintf(why, sizeof(why), "not ready after %us", s->cfg->ready_timeout_s);
                VDI_LOG_WARN("desktop=%" PRId64 " %s: killing its vmm", vm->id, why);
                snprintf(vm->crash, sizeof(vm->crash), "%s", why);
                brk_store_audit(s->store, NULL, "desktop.timeout", vm->id, vm->owner, why);
                kill_group(vm, SIGKILL);
                vm->killed = false; /* this kill is a failure, not a recycle */
                if (!vm->proc && vm->pid > 0)
                    vm->exit_poll = true;
            } else if (vm->state == BRK_DS_RECYCLING) {
                VDI_LOG_WARN("desktop=%" PRId64 " vmm did not exit within %us: killing it", vm->id,
                             s->cfg->shutdown_timeout_s + 5);
                kill_group(vm, SIGKILL);
                if (!vm->proc && vm->pid > 0)
                    vm->exit_poll = true;
            }
        }
        if (vm->disconnect_at && now >= vm->disconnect_at) {
            vm->disconnect_at = 0;
            if (vm->state == BRK_DS_DISCONNECTED)
                vm_recycle(vm, false, "disconnect timeout");
        }
        if (vm->session && !vm->session->kicked) {
            const brk_pool_config_t *p = vm_pool(vm);
            srv_session_t *se = vm->session;
            if (p && p->idle_timeout_s &&
                now - se->last_input >= (uint64_t)p->idle_timeout_s * 1000) {
                se->kicked = true;
                brk_store_audit(s->store, NULL, "session.idle", vm->id, vm->owner, NULL);
                se->kick(se->ctx, "idle timeout");
            }
        }
    }
    if (!s->stopping && (s->spares_wanted || now - s->last_spares >= SPARES_EVERY_MS))
        spares_check(s);
}

/* ---- logins ---------------------------------------------------------------------------------- */
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
                    vm_set_state(vm, BRK_DS_IN_USE, "login");
            }
        }
        l->cb(l->status, vm, l->msg, l->ctx);
        free(l);
    }
}

static void deliver_soon(srv_t *s)
{
    uv_timer_start(&s->deliver_timer, on_deliver, 0, 0);
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
    if (rc == VDI_EDENIED) {
        l->done = true;
        l->status = rc;
        snprintf(l->msg, sizeof(l->msg), "user %s is not entitled to any desktop pool", user);
    } else if (rc == VDI_ECAPACITY) {
        l->done = true;
        l->status = rc;
        snprintf(l->msg, sizeof(l->msg),
                 "no desktop available: the server is at capacity; try again later");
    } else if (rc < 0) {
        l->done = true;
        l->status = rc;
        snprintf(l->msg, sizeof(l->msg), "internal error; the administrator was told");
        VDI_LOG_ERR("user=%s placement failed: %s", user, vdi_strerror(rc));
    } else if (pick.kind == BRK_PICK_RESTART) {
        srv_vm_t *vm;
        rc = vm_restart(s, pick.desktop, pick.pool, &vm);
        if (rc < 0) {
            l->done = true;
            l->status = rc;
            snprintf(l->msg, sizeof(l->msg), "your desktop could not be started");
        } else {
            l->desktop = vm->id;
            VDI_LOG_INFO("user=%s desktop=%" PRId64 " pool=%s: dedicated desktop restarted", user,
                         vm->id, pick.pool->name);
        }
    } else if (pick.kind == BRK_PICK_NEW) {
        srv_vm_t *vm;
        rc = vm_provision(s, pick.pool, user, &vm);
        if (rc < 0) {
            l->done = true;
            l->status = rc;
            snprintf(l->msg, sizeof(l->msg), "your desktop could not be started");
        } else {
            l->desktop = vm->id;
            VDI_LOG_INFO("user=%s desktop=%" PRId64 " pool=%s: new desktop", user, vm->id,
                         pick.pool->name);
        }
    } else {
        srv_vm_t *vm = srv__vm_find(s, pick.desktop);
        l->desktop = pick.desktop;
        if (!vm) {
            l->done = true;
            l->status = VDI_ESTATE;
            snprintf(l->msg, sizeof(l->msg), "your desktop is not running; try again");
        } else {
            if (pick.kind == BRK_PICK_SPARE) {
                /* Claim it now so that a parallel login cannot take the same spare. */
                brk_store_desktop_set_owner(s->store, vm->id, user);
                snprintf(vm->owner, sizeof(vm->owner), "%s", user);
                srv__spares_kick(s);
            }
            VDI_LOG_INFO("user=%s desktop=%" PRId64 " pool=%s: %s", user, vm->id, vm->pool,
                         pick.kind == BRK_PICK_SPARE ? "spare" : "own desktop");
            if (vm->state != BRK_DS_PROVISIONING)
                l->done = true;
        }
    }
    if (l->done)
        deliver_soon(s);
    return 0;
}

void srv__login_cancel(srv_login_t *l)
{
    vdi_list_remove(&l->link);
    free(l);
}

/* ---- sessions -------------------------------------------------------------------------------- */
int srv__session_open(srv_vm_t *vm, const char *user, const char *peer, srv_session_kick_fn kick,
                      void *ctx, srv_session_t **out)
{
    srv_t *s = vm->s;
    int64_t sid;
    if (vm->session) {
        srv_session_t *old = vm->session;
        char why[96];
        snprintf(why, sizeof(why), "reconnected from %s", peer);
        vm->session = NULL;
        old->vm = NULL;
        brk_store_session_close(s->store, old->id, why);
        if (!old->kicked) {
            old->kicked = true;
            old->kick(old->ctx, why);
        }
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
    if (vm && s->stopping) {
        /* vdid is stopping, not the desktop: it stays as it is, and the next vdid marks it
         * disconnected when it re-attaches. */
        brk_store_session_close(s->store, se->id, reason);
        vm->session = NULL;
    } else if (vm) {
        brk_store_session_close(s->store, se->id, reason);
        vm->session = NULL;
        if (vm->state == BRK_DS_IN_USE) {
            const brk_pool_config_t *p = vm_pool(vm);
            vm_set_state(vm, BRK_DS_DISCONNECTED, reason);
            if (p && p->type == BRK_POOL_FLOATING) {
                if (p->disconnect_timeout_s == 0)
                    vm_recycle(vm, false, "disconnected");
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
}

int srv__session_kick(srv_t *s, int64_t id, const char *reason)
{
    vdi_list_t *it;
    for (it = s->vms.next; it != &s->vms; it = it->next) {
        srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        if (vm->session && vm->session->id == id) {
            if (!vm->session->kicked) {
                vm->session->kicked = true;
                vm->session->kick(vm->session->ctx, reason);
            }
            return 0;
        }
    }
    return -ENOENT;
}

/* ---- start and stop -------------------------------------------------------------------------- */
struct collect_ctx {
    brk_desktop_t *d;
    size_t n;
};

static int collect_live(const brk_desktop_t *d, void *ctx)
{
    struct collect_ctx *c = ctx;
    if (d->state == BRK_DS_FAILED || d->state == BRK_DS_GONE)
        return 0;
    c->d = vdi_xrealloc(c->d, (c->n + 1) * sizeof(*c->d));
    c->d[c->n++] = *d;
    return 0;
}

static void attach_one(srv_t *s, const brk_desktop_t *d)
{
    srv_vm_t *vm = vm_new(s, d);
    if (!pid_alive(vm->pid)) {
        vm_gone(vm, vm->state != BRK_DS_RECYCLING, "vmm gone while vdid was down");
        return;
    }
    VDI_LOG_INFO("desktop=%" PRId64 " state=%s: re-attaching to vmm pid=%d", vm->id,
                 brk_desktop_state_name(vm->state), (int)vm->pid);
    brk_store_audit(s->store, NULL, "vmm.reattach", vm->id, vm->owner, NULL);
    if (vm->state == BRK_DS_IN_USE)
        vm_set_state(vm, BRK_DS_DISCONNECTED, "vdid restarted");
    if (vm->state == BRK_DS_DISCONNECTED) {
        const brk_pool_config_t *p = vm_pool(vm);
        if (p && p->type == BRK_POOL_FLOATING)
            vm->disconnect_at = vdi_now_ms() + (uint64_t)p->disconnect_timeout_s * 1000;
    }
    if (vm->state == BRK_DS_PROVISIONING)
        vm->deadline = vdi_now_ms() + (uint64_t)s->cfg->ready_timeout_s * 1000;
    if (vm->state == BRK_DS_RECYCLING)
        vm->deadline = vdi_now_ms() + (uint64_t)s->cfg->shutdown_timeout_s * 1000;
    vm->next_connect = vdi_now_ms();
}

struct ids {
    int64_t *v;
    size_t n;
};

static int collect_session(const brk_session_t *se, void *ctx)
{
    struct ids *ids = ctx;
    ids->v = vdi_xrealloc(ids->v, (ids->n + 1) * sizeof(*ids->v));
    ids->v[ids->n++] = se->id;
    return 0;
}

int srv__vms_start(srv_t *s)
{
    vdi_list_init(&s->vms);
    vdi_list_init(&s->logins);
    s->spare_retry_at = vdi_xcalloc(s->cfg->n_pools + 1, sizeof(*s->spare_retry_at));
    /* Sessions are connections: none survives the vdid that carried it. */
    struct ids open = {0};
    int rc = brk_store_session_foreach(s->store, false, collect_session, &open);
    for (size_t i = 0; rc == 0 && i < open.n; i++)
        brk_store_session_close(s->store, open.v[i], "vdid restarted");
    free(open.v);
    if (rc < 0)
        return rc;
    uv_timer_init(s->loop, &s->tick_timer);
    s->tick_timer.data = s;
    uv_timer_init(s->loop, &s->deliver_timer);
    s->deliver_timer.data = s;
    /* Read first, act after: acting writes to the store. */
    struct collect_ctx c = {0};
    rc = brk_store_desktop_foreach(s->store, false, collect_live, &c);
    if (rc == 0)
        for (size_t i = 0; i < c.n; i++)
            attach_one(s, &c.d[i]);
    free(c.d);
    if (rc < 0)
        return rc;
    uv_timer_start(&s->tick_timer, on_tick, 0, TICK_MS);
    s->spares_wanted = true;
    s->vms_started = true;
    return 0;
}

void srv__vms_stop(srv_t *s)
{
    uv_timer_stop(&s->tick_timer);
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &s->logins)
    {
        srv_login_t *l = vdi_list_entry(it, srv_login_t, link);
        l->done = true;
        l->status = -ECANCELED;
        snprintf(l->msg, sizeof(l->msg), "the server is shutting down");
    }
    on_deliver(&s->deliver_timer);
    vdi_list_foreach_safe(it, tmp, &s->vms)
    {
        srv_vm_t *vm = vdi_list_entry(it, srv_vm_t, link);
        if (vm->session) {
            srv_session_t *se = vm->session;
            vm->session = NULL;
            se->vm = NULL;
            if (!se->kicked) {
                se->kicked = true;
                se->kick(se->ctx, "the server is shutting down");
            }
        }
        if (vm->proc) {
            /* Stop watching, do not kill: a restarted vdid re-attaches. */
            struct vmproc *p = vm->proc;
            vm->proc = NULL;
            p->vm = NULL;
            uv_close((uv_handle_t *)&p->h, on_proc_closed);
        }
        vm_free(vm);
    }
    uv_close((uv_handle_t *)&s->tick_timer, NULL);
    uv_close((uv_handle_t *)&s->deliver_timer, NULL);
    free(s->spare_retry_at);
    s->spare_retry_at = NULL;
}
