/* server/patch.c: `image patch` in vdid (patch-internal.h; docs/images.md).
 *
 * One patch, start to end:
 *   prep (worker)    STATE/patches/ID/: disk.qcow2, an overlay on the image's current version
 *                    (a catalogue reference "patch-ID" keeps that version while we work), and
 *                    bundle.tar, the bundle as a disk; job.json says what a later vdid must undo
 *   run (loop)       the maintenance VM, jailed like a desktop's VMM, with no network (with
 *                    --network POOL: a port of its own on that pool's network, made by the
 *                    worker, removed when the VM ends): its serial console (stdout) comes to
 *                    us through a pipe and is kept (the last 256 KiB in memory); a deadline
 *                    timer kills it
 *   finish (worker)  exit 0 + clean power-off + a disk that passes check: publish (an overlay
 *                    version, or with flatten a standalone one) and make it current; always:
 *                    drop the reference, keep output.log and result.json, remove the disks
 * One patch per image at a time. A patch does not outlive vdid: stopping vdid kills its VM and
 * the next start records it as failed.
 *
 * Thread: loop, except the *_work functions (the patch worker, s->patchq).
 */
#define VDI_LOG_TAG "patch"
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/img.h"
#include "server/desktop-internal.h"
#include "server/patch-internal.h"

#define OUT_MAX      (256U << 10) /* output kept in memory */
#define BUNDLE_LIMIT (4ULL << 30)
#define EOF_GRACE_MS 2000 /* after the VM exits, how long its last output may take */
#define KEEP_DONE    32   /* finished patches listed */
#define TAIL_LINES   8    /* output lines quoted in a failure's reason */

enum pstate {
    P_PREPARING,
    P_RUNNING,
    P_PUBLISHING,
    P_PUBLISHED,
    P_FAILED
};
static const char *const state_names[] = {"preparing", "running", "publishing", "published",
                                          "failed"};

struct srv_patch {
    vdi_list_t link; /* s->patches, newest first */
    srv_t *s;
    char id[SRV_PATCH_ID_MAX];
    char image[64];
    char holder[SRV_PATCH_ID_MAX + 8];
    char *script, *bundle, *script_text, *notes, *actor;
    struct srv_reader reader;
    char *dir, *rundir, *overlay, *bundle_img, *kernel, *initrd;
    char cmdline[2048];
    uint32_t deadline_s, base, version;
    uint64_t memory;
    unsigned vcpus;
    bool flatten;
    char network[64];        /* the pool whose network it joins; "" none */
    struct srv_net_desk net; /* its port there (net.on) */
    int tap_fd;              /* the worker's open tap, until the VMM has it */
    enum pstate state;
    bool publish; /* finish: publish (else only clean up) */
    bool have_exit, timed_out, vm_exited, eof, oom;
    int exit_code;
    int64_t vm_status;
    int vm_sig;
    char why[1024];
    char *out; /* sanitised output: printable ASCII, \n, \t; NUL-terminated */
    size_t out_len;
    uint64_t out_base; /* stream offset of out[0] */
    char cur[64];      /* the current line's start, for "PATCH EXIT N" */
    size_t cur_len;
    uv_pipe_t pipe;
    uv_timer_t timer;
    unsigned handles; /* open uv handles; freed only at 0 */
    bool timer_init, pipe_init;
    srv_vmmproc_t *proc;
    pid_t pid;
    uid_t uid;
    srv_cgroup_t *cgroup;
    int64_t started, ended; /* unix seconds */
    srv_catq_job_t *job;
    int rc; /* a worker's result */
};

static void set_why(struct srv_patch *p, const char *fmt, ...) VDI_PRINTF(2, 3);
static void set_why(struct srv_patch *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why, sizeof(p->why), fmt, ap);
    va_end(ap);
}

static bool id_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static void patch_free(struct srv_patch *p)
{
    free(p->script);
    free(p->bundle);
    free(p->script_text);
    free(p->notes);
    free(p->actor);
    free(p->dir);
    free(p->rundir);
    free(p->overlay);
    free(p->bundle_img);
    free(p->kernel);
    free(p->initrd);
    free(p->out);
    free(p);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct srv_patch *p = h->data;
    if (--p->handles == 0 && !p->link.next)
        patch_free(p);
}

/* Unlink and free @p once its handles are closed. */
static void patch_drop(struct srv_patch *p)
{
    vdi_list_remove(&p->link);
    p->link.next = p->link.prev = NULL;
    if (p->handles == 0) {
        patch_free(p);
        return;
    }
    if (p->timer_init && !uv_is_closing((uv_handle_t *)&p->timer))
        uv_close((uv_handle_t *)&p->timer, on_handle_closed);
    if (p->pipe_init && !uv_is_closing((uv_handle_t *)&p->pipe))
        uv_close((uv_handle_t *)&p->pipe, on_handle_closed);
}

/* Keep KEEP_DONE finished patches. */
static void prune(srv_t *s)
{
    unsigned done = 0;
    for (vdi_list_t *it = s->patches.next, *nx; it != &s->patches; it = nx) {
        nx = it->next;
        struct srv_patch *p = vdi_list_entry(it, struct srv_patch, link);
        if ((p->state == P_PUBLISHED || p->state == P_FAILED) && ++done > KEEP_DONE)
            patch_drop(p);
    }
}

static struct srv_patch *find(srv_t *s, const char *id)
{
    for (vdi_list_t *it = s->patches.next; it != &s->patches; it = it->next) {
        struct srv_patch *p = vdi_list_entry(it, struct srv_patch, link);
        if (!strcmp(p->id, id))
            return p;
    }
    return NULL;
}

/* ---- output ---------------------------------------------------------------------------------- */

static void out_byte(struct srv_patch *p, char c)
{
    if (c == '\r')
        return;
    if (c != '\n' && c != '\t' && (c < 0x20 || c > 0x7e))
        c = '?';
    if (p->out_len == OUT_MAX) { /* drop the older half */
        size_t drop = OUT_MAX / 2;
        memmove(p->out, p->out + drop, OUT_MAX - drop);
        p->out_len -= drop;
        p->out_base += drop;
    }
    p->out[p->out_len++] = c;
    p->out[p->out_len] = 0; /* out has OUT_MAX + 1 bytes: always a string */
    if (c != '\n') {
        if (p->cur_len < sizeof(p->cur) - 1)
            p->cur[p->cur_len++] = c;
        return;
    }
    p->cur[p->cur_len] = 0;
    p->cur_len = 0;
    int code;
    char tail;
    if (sscanf(p->cur, "PATCH EXIT %d%c", &code, &tail) == 1 && code >= 0 && code <= 255 &&
        !p->have_exit) {
        p->have_exit = true;
        p->exit_code = code;
        VDI_LOG_INFO("patch=%s image=%s: the patch exited %d", p->id, p->image, code);
    }
}

/* The last @n lines of the output, for a failure's reason. */
static const char *out_tail(const struct srv_patch *p, unsigned n)
{
    if (!p->out_len)
        return "";
    size_t i = p->out_len;
    if (p->out[i - 1] == '\n')
        i--;
    for (unsigned lines = 0; i > 0; i--)
        if (p->out[i - 1] == '\n' && ++lines == n)
            break;
    return p->out + i;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char b[16384]; /* the loop reads one handle at a time */
    VDI_UNUSED(h);
    VDI_UNUSED(suggested);
    *buf = uv_buf_init(b, sizeof(b));
}

static void maybe_finish(struct srv_patch *p);
static void on_deadline(uv_timer_t *t);

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct srv_patch *p = st->data;
    for (ssize_t i = 0; i < n; i++)
        out_byte(p, buf->base[i]);
    if (n < 0) {
        uv_read_stop(st);
        p->eof = true;
        maybe_finish(p);
    }
}

/* ---- the worker's side ------------------------------------------------------------------------ */

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600), rc = 0;
    if (fd < 0)
        return -errno;
    size_t len = strlen(text);
    for (size_t done = 0; done < len && rc == 0;) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno != EINTR)
            rc = -errno;
        else if (w > 0)
            done += (size_t)w;
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

static char *read_text(const char *path, size_t max)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = vdi_xmalloc(max + 1);
    size_t n = fread(buf, 1, max, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void prep_work(void *arg) /* Thread: the patch worker */
{
    struct srv_patch *p = arg;
    char *parent = vdi_xasprintf("%s/patches", p->s->cfg->state_dir);
    char *rparent = vdi_xasprintf("%s/patch", p->s->cfg->run_dir);
    p->rc = 0;
    const char *dirs[] = {parent, p->dir, rparent, p->rundir};
    for (size_t i = 0; i < VDI_ARRAY_SIZE(dirs) && p->rc == 0; i++)
        if (mkdir(dirs[i], 0700) < 0 && errno != EEXIST) {
            p->rc = -errno;
            set_why(p, "cannot create %s: %s", dirs[i], vdi_strerror(p->rc));
        }
    free(parent);
    free(rparent);
    if (p->rc < 0)
        return;
    img_catalog_t *cat = p->s->catalog;
    p->rc = img_catalog_clone(cat, p->image, 0, p->overlay, p->holder, &p->base);
    if (p->rc < 0) {
        set_why(p, "cannot make the next version of image %s: %s", p->image,
                p->rc == -ENOENT ? "no such image in the catalogue" : vdi_strerror(p->rc));
        return;
    }
    json_t *job = json_pack("{s:s, s:s, s:i, s:s}", "id", p->id, "image", p->image, "base",
                            (int)p->base, "holder", p->holder);
    char *text = json_dumps(job, JSON_COMPACT);
    char *path = vdi_xasprintf("%s/job.json", p->dir);
    p->rc = text ? write_text(path, text) : -ENOMEM;
    if (p->rc < 0)
        set_why(p, "cannot write %s: %s", path, vdi_strerror(p->rc));
    free(path);
    free(text);
    json_decref(job);
    if (p->rc < 0)
        return;
    p->rc = srv__bundle_write(p->bundle_img, p->script, p->script_text, p->bundle, &p->reader,
                              BUNDLE_LIMIT, p->why, sizeof(p->why));
    if (p->rc < 0)
        return;
    p->rc = img_catalog_path(cat, p->image, p->base, "kernel", &p->kernel);
    if (p->rc < 0) {
        set_why(p, "image %s version %u has no kernel", p->image, p->base);
        return;
    }
    if (img_catalog_path(cat, p->image, p->base, "initrd", &p->initrd) < 0)
        p->initrd = NULL;
    char *cl = NULL;
    if (img_catalog_path(cat, p->image, p->base, "cmdline", &cl) == 0) {
        char *t = read_text(cl, sizeof(p->cmdline) - 1);
        if (t) {
            snprintf(p->cmdline, sizeof(p->cmdline), "%s", t);
            p->cmdline[strcspn(p->cmdline, "\r\n")] = 0;
        }
        free(t);
    }
    free(cl);
    if (p->net.on)
        p->rc = srv__net_desktop_up(&p->net, &p->tap_fd, p->why, sizeof(p->why));
}

/* Publish (when asked and the disk is sound), then always: drop the reference, write
 * output.log and result.json, remove the disks. */
static void finish_work(void *arg) /* Thread: the patch worker */
{
    struct srv_patch *p = arg;
    img_catalog_t *cat = p->s->catalog;
    p->rc = 0;
    if (p->publish) {
        struct img_check_result cr;
        p->rc = img_check(p->overlay, false, &cr);
        if (p->rc < 0) {
            set_why(p, "the patched disk cannot be checked: %s", vdi_strerror(p->rc));
        } else if (cr.errors) {
            p->rc = VDI_ECORRUPT;
            set_why(p, "the patched disk fails check: %" PRIu64 " errors", cr.errors);
        }
    }
    char *notes = p->notes ? vdi_xstrdup(p->notes) : vdi_xasprintf("patch %s", p->id);
    char *flat = vdi_xasprintf("%s/flat.qcow2", p->dir);
    if (p->publish && p->rc == 0) {
        /* out[] may have lost its start (OUT_MAX): the manifest keeps the tail anyway */
        char *output = vdi_xmalloc(p->out_len + 1);
        memcpy(output, p->out, p->out_len);
        output[p->out_len] = 0;
        struct img_import_opts o = {
            .notes = notes,
            .patch_id = p->id,
            .patch_output = output,
            .patch_exit = p->exit_code,
            .make_current = true,
        };
        if (p->flatten) {
            struct img_convert_opts co = {.format = "qcow2", .allow_backing_outside = true};
            p->rc = img_convert(p->overlay, flat, &co);
            if (p->rc < 0) {
                set_why(p, "cannot flatten the patched disk: %s", vdi_strerror(p->rc));
            } else {
                o.disk = flat;
                o.kernel = p->kernel;
                o.initrd = p->initrd;
                o.cmdline = p->cmdline[0] ? p->cmdline : NULL;
                p->rc = img_catalog_import(cat, p->image, &o, &p->version);
            }
        } else {
            p->rc = img_catalog_publish(cat, p->image, p->overlay, &o, &p->version);
        }
        if (p->rc < 0 && !p->why[0])
            set_why(p, "cannot publish the new version of %s: %s", p->image, vdi_strerror(p->rc));
        free(output);
    }
    free(notes);
    if (p->base) {
        int rc = img_catalog_unref(cat, p->image, p->base, p->holder);
        if (rc < 0 && rc != -ENOENT)
            VDI_LOG_WARN("patch=%s: cannot drop reference %s on %s v%u: %s", p->id, p->holder,
                         p->image, p->base, vdi_strerror(rc));
    }
    unlink(p->overlay);
    unlink(p->bundle_img);
    unlink(flat);
    free(flat);
    char *sock = vdi_xasprintf("%s/control.sock", p->rundir);
    unlink(sock);
    free(sock);
    sock = vdi_xasprintf("%s/display.sock", p->rundir);
    unlink(sock);
    free(sock);
    rmdir(p->rundir);
    char *path = vdi_xasprintf("%s/output.log", p->dir);
    char *output = vdi_xmalloc(p->out_len + 1);
    memcpy(output, p->out, p->out_len);
    output[p->out_len] = 0;
    write_text(path, output);
    free(output);
    free(path);
}

/* ---- the loop's side ---------------------------------------------------------------------------- */

/* @s as a JSON string; bytes that would not make valid UTF-8 (a path in a reason) become '?'. */
static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *c = vdi_xstrdup(s);
    for (char *q = c; *q; q++)
        if ((unsigned char)*q >= 0x80)
            *q = '?';
    j = json_string(c);
    free(c);
    return j;
}

static void write_result(struct srv_patch *p)
{
    json_t *r = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:o, s:I, s:I}", "id", p->id, "image",
                          p->image, "state", state_names[p->state], "base_version", (int)p->base,
                          "version", (int)p->version, "exit", p->have_exit ? p->exit_code : -1,
                          "reason", json_text(p->why), "started", (json_int_t)p->started, "ended",
                          (json_int_t)p->ended);
    char *text = r ? json_dumps(r, JSON_COMPACT) : NULL;
    char *path = vdi_xasprintf("%s/result.json", p->dir);
    /* Small, once per patch: as the store's writes, it is done on the loop. */
    if (text && write_text(path, text) < 0)
        VDI_LOG_WARN("patch=%s: cannot write %s", p->id, path);
    free(path);
    free(text);
    json_decref(r);
}

static void finish_done(void *arg, int status)
{
    struct srv_patch *p = arg;
    srv_t *s = p->s;
    p->job = NULL;
    if (status == -ECANCELED) /* vdid is stopping: the next start cleans up (job.json) */
        set_why(p, "vdid stopped before the patch was finished");
    if (p->publish && p->rc == 0 && status != -ECANCELED) {
        p->state = P_PUBLISHED;
        p->why[0] = 0;
    } else {
        p->state = P_FAILED;
        if (!p->why[0])
            set_why(p, "failed");
    }
    p->ended = (int64_t)time(NULL);
    write_result(p);
    if (p->state == P_PUBLISHED) {
        char d[160];
        snprintf(d, sizeof(d), "patch %s: image %.64s version %u published from v%u", p->id,
                 p->image, p->version, p->base);
        VDI_LOG_INFO("patch=%s image=%s: version %u published (on v%u) and made current", p->id,
                     p->image, p->version, p->base);
        brk_store_audit(s->store, p->actor, "image.patch.published", 0, NULL, d);
        srv__rollouts_kick(s); /* pools of the image start moving to it */
    } else {
        char d[512];
        snprintf(d, sizeof(d), "patch %s of image %s: %.160s", p->id, p->image, p->why);
        VDI_LOG_WARN("patch=%s image=%s failed: %s", p->id, p->image, p->why);
        brk_store_audit(s->store, p->actor, "image.patch.failed", 0, NULL, d);
    }
    prune(s);
}

/* Decide the outcome and hand the rest to the worker. */
static void conclude(struct srv_patch *p, bool publish)
{
    if (p->tap_fd >= 0) {
        close(p->tap_fd);
        p->tap_fd = -1;
    }
    if (p->net.on) {
        srv__net_maint_down(p->s, brk_config_pool(p->s->cfg, p->network), &p->net);
        p->net.on = false;
    }
    p->publish = publish;
    p->state = publish ? P_PUBLISHING : P_FAILED;
    int rc = srv__catq_submit(p->s->patchq, finish_work, finish_done, p, &p->job);
    if (rc < 0) {
        set_why(p, "%s%svdid is stopping", p->why, p->why[0] ? "; " : "");
        p->state = P_FAILED;
        p->ended = (int64_t)time(NULL);
    }
}

static void fail(struct srv_patch *p, const char *fmt, ...) VDI_PRINTF(2, 3);
static void fail(struct srv_patch *p, const char *fmt, ...)
{
    char head[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof(head), fmt, ap);
    va_end(ap);
    const char *tail = out_tail(p, TAIL_LINES);
    if (*tail)
        set_why(p, "%s; the last lines of its output:\n%s", head, tail);
    else
        set_why(p, "%s; it printed nothing", head);
    conclude(p, false);
}

static void maybe_finish(struct srv_patch *p)
{
    if (p->state != P_RUNNING || !p->vm_exited)
        return;
    if (!p->eof) {
        uv_timer_start(&p->timer, on_deadline, EOF_GRACE_MS, 0);
        p->eof = true; /* next time round, whatever came has come */
        return;
    }
    uv_timer_stop(&p->timer);
    if (p->pipe_init && !uv_is_closing((uv_handle_t *)&p->pipe))
        uv_read_stop((uv_stream_t *)&p->pipe);
    char how[96];
    if (p->vm_sig)
        snprintf(how, sizeof(how), "killed by signal %d", p->vm_sig);
    else
        snprintf(how, sizeof(how), "vmm exit status %" PRId64, p->vm_status);
    if (p->timed_out)
        fail(p, "did not finish within its deadline of %u s; the maintenance VM was stopped",
             p->deadline_s);
    else if (p->oom)
        fail(p, "the maintenance VM ran out of memory (memory %" PRIu64 " MiB)", p->memory >> 20);
    else if (!p->have_exit)
        fail(p, "the maintenance VM stopped without a PATCH EXIT line (%s)", how);
    else if (p->exit_code != 0)
        fail(p, "the patch exited %d", p->exit_code);
    else if (p->vm_sig || p->vm_status != VMM_EXIT_POWEROFF)
        fail(p, "the patch exited 0 but the maintenance VM did not power off (%s)", how);
    else
        conclude(p, true);
}

static void on_deadline(uv_timer_t *t)
{
    struct srv_patch *p = t->data;
    if (p->state == P_RUNNING && !p->vm_exited) {
        p->timed_out = true;
        VDI_LOG_WARN(
            "patch=%s image=%s: deadline of %u s passed; stopping the maintenance VM pid=%d", p->id,
            p->image, p->deadline_s, (int)p->pid);
        srv__kill_group(p->pid, SIGKILL);
    } else {
        maybe_finish(p);
    }
}

static void on_exit_cb(void *ctx, int64_t status, int sig)
{
    struct srv_patch *p = ctx;
    p->proc = NULL;
    p->vm_exited = true;
    p->vm_status = status;
    p->vm_sig = sig;
    if (sig == SIGKILL && !p->timed_out && p->cgroup && srv__cgroup_oom_killed(p->cgroup))
        p->oom = true;
    srv__cgroup_destroy(p->cgroup);
    p->cgroup = NULL;
    p->uid = 0;
    VDI_LOG_INFO("patch=%s image=%s: maintenance VM pid=%d ended (status %" PRId64 ", signal %d)",
                 p->id, p->image, (int)p->pid, status, sig);
    maybe_finish(p);
}

static int spawn(struct srv_patch *p, char *why, size_t whylen)
{
    srv_t *s = p->s;
    const brk_config_t *cfg = s->cfg;
    struct srv_jail jail = {0};
    struct srv_jail_bufs jb = {0};
    int rc, fds[2] = {-1, -1};
    if (cfg->jail) {
        p->uid = srv__jail_uid_alloc(s);
        if (!p->uid) {
            snprintf(why, whylen, "no free uid in vmm_uid_first=%u vmm_uid_count=%u",
                     cfg->vmm_uid_first, cfg->vmm_uid_count);
            return -EAGAIN;
        }
        struct srv_jail_req r = {
            .uid = p->uid,
            .image = p->image,
            .datadir = p->dir,
            .rundir = p->rundir,
            .disk = p->overlay,
            .limits = {.memory_max = p->memory + cfg->vmm_memory_overhead,
                       .pids_max = cfg->vmm_pids_max,
                       .cpu_weight = 100},
        };
        snprintf(r.name, sizeof(r.name), "patch-%s", p->id);
        snprintf(r.cgroup, sizeof(r.cgroup), "patch-%s", p->id);
        rc = srv__jail_build(s, &r, &jail, &jb, &p->cgroup, why, whylen);
        if (rc == 0 && chmod(p->bundle_img, 0644) < 0)
            rc = -errno;
        if (rc < 0) {
            srv__jail_bufs_free(&jb);
            p->uid = 0;
            return rc;
        }
    }
    if (pipe2(fds, O_CLOEXEC) < 0) {
        rc = -errno;
        snprintf(why, whylen, "cannot make a pipe for the serial console: %s", vdi_strerror(rc));
        srv__jail_bufs_free(&jb);
        return rc;
    }
    char *log = vdi_xasprintf("%s/vmm.log", p->dir);
    char *images = vdi_xasprintf("%s/images", cfg->state_dir);
    char *ctl = vdi_xasprintf("%s/control.sock", p->rundir);
    char *dpy = vdi_xasprintf("%s/display.sock", p->rundir);
    struct srv_vmm_spec spec = {
        .vmm_path = s->vmm_path,
        .kernel = p->kernel,
        .initrd = p->initrd,
        .cmdline = p->cmdline,
        .disk = p->overlay,
        .disk_ro = p->bundle_img,
        .backing_root = images,
        .control = ctl,
        .display = dpy,
        .log_path = log,
        .memory = p->memory,
        .vcpus = p->vcpus,
        .fb_width = 1024,
        .fb_height = 768,
        .jail = cfg->jail ? &jail : NULL,
        .mac = p->tap_fd >= 0 ? p->net.port.mac : NULL,
        .tap_fd = p->tap_fd,
        .stdout_fd = fds[1],
    };
    jail.keep_fds = p->tap_fd >= 0 ? 1 : 0;
    rc = srv__vmmproc_spawn(s->loop, &spec, on_exit_cb, p, &p->proc, &p->pid, why, whylen);
    close(fds[1]);
    if (p->tap_fd >= 0) {
        close(p->tap_fd); /* the VMM has its own: the tap goes with it */
        p->tap_fd = -1;
    }
    free(log);
    free(images);
    free(ctl);
    free(dpy);
    srv__jail_bufs_free(&jb);
    if (rc < 0) {
        close(fds[0]);
        return rc;
    }
    uv_pipe_init(s->loop, &p->pipe, 0);
    p->pipe.data = p;
    p->pipe_init = true;
    p->handles++;
    if ((rc = uv_pipe_open(&p->pipe, fds[0])) < 0 ||
        (rc = uv_read_start((uv_stream_t *)&p->pipe, alloc_cb, on_read)) < 0) {
        VDI_LOG_ERR("patch=%s: cannot read the serial console: %s", p->id, uv_strerror(rc));
        p->eof = true;
    }
    char pidtext[32];
    snprintf(pidtext, sizeof(pidtext), "%d\n", (int)p->pid);
    char *pidfile = vdi_xasprintf("%s/pid", p->dir);
    write_text(pidfile, pidtext);
    free(pidfile);
    uv_timer_start(&p->timer, on_deadline, (uint64_t)p->deadline_s * 1000, 0);
    return 0;
}

static void prep_done(void *arg, int status)
{
    struct srv_patch *p = arg;
    p->job = NULL;
    char why[512];
    if (status < 0 || p->s->stopping) {
        set_why(p, "vdid stopped before the maintenance VM started");
        conclude(p, false);
        return;
    }
    if (p->rc < 0) {
        conclude(p, false);
        return;
    }
    int rc = spawn(p, why, sizeof(why));
    if (rc < 0) {
        set_why(p, "cannot start the maintenance VM: %s", why);
        conclude(p, false);
        return;
    }
    p->state = P_RUNNING;
    VDI_LOG_INFO("patch=%s image=%s: maintenance VM pid=%d uid=%u on v%u, deadline %u s", p->id,
                 p->image, (int)p->pid, (unsigned)p->uid, p->base, p->deadline_s);
}

int srv__patch_start(srv_t *s, const struct srv_patch_req *r, char *id, size_t idlen, char *why,
                     size_t whylen)
{
    if (!r->image || !r->image[0] || strlen(r->image) >= 64) {
        snprintf(why, whylen, "an image name is required");
        return -EINVAL;
    }
    for (const char *c = r->image; *c; c++)
        if (!id_char_ok(*c)) {
            snprintf(why, whylen, "image name '%s' is not valid ([A-Za-z0-9._-])", r->image);
            return -EINVAL;
        }
    if ((r->script != NULL) + (r->bundle != NULL) + (r->script_text != NULL) != 1) {
        snprintf(why, whylen, "give one of a script, a bundle directory or a script's text");
        return -EINVAL;
    }
    if (r->script_text && strlen(r->script_text) > SRV_PATCH_TEXT_MAX) {
        snprintf(why, whylen, "the script's text is longer than %d KiB", SRV_PATCH_TEXT_MAX >> 10);
        return -EINVAL;
    }
    const char *path = r->script ? r->script : r->bundle ? r->bundle : "(text)";
    if (!r->script_text && path[0] != '/') {
        snprintf(why, whylen, "%s: give an absolute path (vdid does not share your directory)",
                 path);
        return -EINVAL;
    }
    if (!r->deadline_s) {
        snprintf(why, whylen, "the deadline must be at least 1 s");
        return -EINVAL;
    }
    if (s->stopping || !s->patchq) {
        snprintf(why, whylen, "vdid is stopping");
        return -ESHUTDOWN;
    }
    const brk_pool_config_t *netpool = NULL;
    if (r->network) {
        netpool = brk_config_pool(s->cfg, r->network);
        if (!netpool) {
            snprintf(why, whylen, "--network %.64s: no such pool", r->network);
            return -ENOENT;
        }
        if (netpool->net == BRK_NET_NONE) {
            snprintf(why, whylen,
                     "--network %s: that pool has no network (network = none); give a pool with "
                     "network = nat or bridge:NAME",
                     netpool->name);
            return -EINVAL;
        }
    }
    for (vdi_list_t *it = s->patches.next; it != &s->patches; it = it->next) {
        struct srv_patch *o = vdi_list_entry(it, struct srv_patch, link);
        if (!strcmp(o->image, r->image) && o->state != P_PUBLISHED && o->state != P_FAILED) {
            snprintf(why, whylen, "image %s: patch %s is already running (one patch per image)",
                     r->image, o->id);
            return -EBUSY;
        }
    }
    struct srv_patch *p = vdi_xcalloc(1, sizeof(*p));
    p->s = s;
    snprintf(p->id, sizeof(p->id), "p%u", ++s->patch_seq);
    snprintf(p->image, sizeof(p->image), "%s", r->image);
    snprintf(p->holder, sizeof(p->holder), "patch-%s", p->id);
    p->script = r->script ? vdi_xstrdup(r->script) : NULL;
    p->bundle = r->bundle ? vdi_xstrdup(r->bundle) : NULL;
    p->script_text = r->script_text ? vdi_xstrdup(r->script_text) : NULL;
    p->reader = r->reader;
    p->notes = r->notes ? vdi_xstrdup(r->notes) : NULL;
    p->actor = vdi_xstrdup(r->actor ? r->actor : "admin");
    p->dir = vdi_xasprintf("%s/patches/%s", s->cfg->state_dir, p->id);
    p->rundir = vdi_xasprintf("%s/patch/%s", s->cfg->run_dir, p->id);
    p->overlay = vdi_xasprintf("%s/disk.qcow2", p->dir);
    p->bundle_img = vdi_xasprintf("%s/bundle.tar", p->dir);
    p->deadline_s = r->deadline_s;
    p->memory = r->memory ? r->memory : SRV_PATCH_MEMORY;
    p->vcpus = r->vcpus ? r->vcpus : 1;
    p->flatten = r->flatten;
    p->tap_fd = -1;
    p->out = vdi_xcalloc(1, OUT_MAX + 1);
    p->started = (int64_t)time(NULL);
    p->state = P_PREPARING;
    uv_timer_init(s->loop, &p->timer);
    p->timer.data = p;
    p->timer_init = true;
    p->handles = 1;
    vdi_list_push_head(&s->patches, &p->link);
    int rc = 0;
    if (netpool) {
        snprintf(p->network, sizeof(p->network), "%s", netpool->name);
        rc = srv__net_maint_plan(s, netpool, s->patch_seq, &p->net, why, whylen);
    }
    if (rc == 0) {
        rc = srv__catq_submit(s->patchq, prep_work, prep_done, p, &p->job);
        if (rc < 0)
            snprintf(why, whylen, "vdid is stopping");
    }
    if (rc < 0) {
        if (p->net.on)
            srv__net_maint_down(s, netpool, &p->net);
        patch_drop(p);
        return rc;
    }
    char d[640], net[160] = "";
    if (p->net.on)
        snprintf(net, sizeof(net), " on the network of pool %s (tap %s mac %s%s%s)", p->network,
                 p->net.port.tap, p->net.port.mac, p->net.port.ip[0] ? " address " : "",
                 p->net.port.ip);
    snprintf(d, sizeof(d), "patch %s of image %s with %s %.160s%s", p->id, p->image,
             p->script   ? "script"
             : p->bundle ? "bundle"
                         : "script text",
             path, net[0] ? net : " (no network)");
    brk_store_audit(s->store, p->actor, "image.patch.start", 0, NULL, d);
    VDI_LOG_INFO("patch=%s image=%s: started (%s %s, deadline %u s%s)%s", p->id, p->image,
                 p->script   ? "script"
                 : p->bundle ? "bundle"
                             : "script text",
                 path, p->deadline_s, p->flatten ? ", flatten" : "", net[0] ? net : ", no network");
    snprintf(id, idlen, "%s", p->id);
    return 0;
}

static json_t *patch_json(const struct srv_patch *p)
{
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:i, s:i, s:o, s:o, s:I, s:I, s:i, s:b}", "id", p->id, "image",
                  p->image, "state", state_names[p->state], "base_version", (int)p->base, "version",
                  (int)p->version, "exit", p->have_exit ? json_integer(p->exit_code) : json_null(),
                  "reason", json_text(p->why), "started", (json_int_t)p->started, "ended",
                  (json_int_t)p->ended, "deadline", (int)p->deadline_s, "flatten", p->flatten);
    /* Its network: the pool's name, and the MAC and (nat) address its port had. */
    json_object_set_new(j, "network", p->network[0] ? json_string(p->network) : json_null());
    if (p->network[0]) {
        json_object_set_new(j, "mac", json_string(p->net.port.mac));
        json_object_set_new(j, "address",
                            p->net.port.ip[0] ? json_string(p->net.port.ip) : json_null());
    }
    return j;
}

json_t *srv__patch_json(srv_t *s, const char *id, uint64_t from)
{
    struct srv_patch *p = find(s, id);
    if (!p)
        return NULL;
    json_t *j = patch_json(p);
    uint64_t end = p->out_base + p->out_len;
    if (from < p->out_base)
        from = p->out_base;
    if (from > end)
        from = end;
    size_t off = (size_t)(from - p->out_base);
    json_object_set_new(j, "output", json_stringn(p->out + off, p->out_len - off));
    json_object_set_new(j, "next", json_integer((json_int_t)end));
    return j;
}

json_t *srv__patches_json(srv_t *s)
{
    json_t *a = json_array();
    for (vdi_list_t *it = s->patches.next; it != &s->patches; it = it->next)
        json_array_append_new(a, patch_json(vdi_list_entry(it, struct srv_patch, link)));
    return a;
}

bool srv__patch_uid_used(srv_t *s, uid_t uid)
{
    for (vdi_list_t *it = s->patches.next; it != &s->patches; it = it->next)
        if (vdi_list_entry(it, struct srv_patch, link)->uid == uid)
            return true;
    return false;
}

/* ---- start and stop ---------------------------------------------------------------------------- */

/* Is @pid a process whose command line mentions @needle (our maintenance VM, not a reused pid)? */
static bool pid_runs(pid_t pid, const char *needle)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[8192];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    for (ssize_t i = 0; i < n; i++)
        if (!buf[i])
            buf[i] = ' ';
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

/* A patch dir an earlier vdid left without a result: stop its VM, undo, record the failure.
 * Blocking (at start, before the loop runs). */
static void recover(srv_t *s, const char *dir, const char *id)
{
    char *path = vdi_xasprintf("%s/pid", dir);
    char *text = read_text(path, 32);
    free(path);
    char *overlay = vdi_xasprintf("%s/disk.qcow2", dir);
    if (text && atoi(text) > 0 && pid_runs(atoi(text), overlay)) {
        VDI_LOG_WARN("patch=%s: stopping its maintenance VM pid=%d, left by an earlier vdid", id,
                     atoi(text));
        srv__kill_group(atoi(text), SIGKILL);
        for (int i = 0; i < 100 && srv__pid_alive(atoi(text)); i++)
            usleep(10000);
    }
    free(text);
    path = vdi_xasprintf("%s/job.json", dir);
    json_t *job = json_load_file(path, 0, NULL);
    free(path);
    const char *image = json_string_value(json_object_get(job, "image"));
    const char *holder = json_string_value(json_object_get(job, "holder"));
    int base = (int)json_integer_value(json_object_get(job, "base"));
    if (image && holder && base > 0)
        img_catalog_unref(s->catalog, image, (uint32_t)base, holder);
    unlink(overlay);
    free(overlay);
    path = vdi_xasprintf("%s/bundle.tar", dir);
    unlink(path);
    free(path);
    path = vdi_xasprintf("%s/flat.qcow2", dir);
    unlink(path);
    free(path);
    json_t *r =
        json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:I, s:I}", "id", id, "image",
                  image ? image : "", "state", "failed", "base_version", base, "version", 0, "exit",
                  -1, "reason", "vdid stopped while the patch ran; the maintenance VM was stopped",
                  "started", (json_int_t)0, "ended", (json_int_t)time(NULL));
    path = vdi_xasprintf("%s/result.json", dir);
    json_dump_file(r, path, JSON_COMPACT);
    free(path);
    json_decref(r);
    /* @image points into @job: log before letting it go. */
    VDI_LOG_WARN("patch=%s image=%s: recorded as failed (vdid stopped while it ran)", id,
                 image ? image : "?");
    if (image)
        brk_store_audit(s->store, NULL, "image.patch.failed", 0, NULL,
                        "vdid stopped while the patch ran");
    json_decref(job);
}

/* A finished patch of an earlier vdid, for the list. */
static void load_done(srv_t *s, const char *dir)
{
    char *path = vdi_xasprintf("%s/result.json", dir);
    json_t *r = json_load_file(path, 0, NULL);
    free(path);
    const char *id = json_string_value(json_object_get(r, "id"));
    const char *image = json_string_value(json_object_get(r, "image"));
    const char *state = json_string_value(json_object_get(r, "state"));
    if (id && image && state) {
        struct srv_patch *p = vdi_xcalloc(1, sizeof(*p));
        p->s = s;
        snprintf(p->id, sizeof(p->id), "%s", id);
        snprintf(p->image, sizeof(p->image), "%s", image);
        p->state = strcmp(state, "published") ? P_FAILED : P_PUBLISHED;
        p->base = (uint32_t)json_integer_value(json_object_get(r, "base_version"));
        p->version = (uint32_t)json_integer_value(json_object_get(r, "version"));
        json_int_t ex = json_integer_value(json_object_get(r, "exit"));
        p->have_exit = ex >= 0 && json_object_get(r, "exit");
        p->exit_code = (int)ex;
        snprintf(p->why, sizeof(p->why), "%s",
                 json_string_value(json_object_get(r, "reason")) ?: "");
        p->started = json_integer_value(json_object_get(r, "started"));
        p->ended = json_integer_value(json_object_get(r, "ended"));
        char *op = vdi_xasprintf("%s/output.log", dir);
        p->out = read_text(op, OUT_MAX - 1);
        free(op);
        if (!p->out)
            p->out = vdi_xstrdup("");
        p->out_len = strlen(p->out);
        vdi_list_push_tail(&s->patches, &p->link); /* dirs come in ascending order: see below */
    }
    json_decref(r);
}

static int cmp_seq(const struct dirent **a, const struct dirent **b)
{
    unsigned long x = strtoul((*a)->d_name + 1, NULL, 10), y = strtoul((*b)->d_name + 1, NULL, 10);
    return x < y ? 1 : x > y ? -1 : 0; /* newest first */
}

static int is_patch_dir(const struct dirent *e)
{
    const char *n = e->d_name;
    if (n[0] != 'p' || !n[1])
        return 0;
    for (const char *c = n + 1; *c; c++)
        if (*c < '0' || *c > '9')
            return 0;
    return 1;
}

void srv__patches_init(srv_t *s)
{
    vdi_list_init(&s->patches);
    char *root = vdi_xasprintf("%s/patches", s->cfg->state_dir);
    struct dirent **ents;
    int n = scandir(root, &ents, is_patch_dir, cmp_seq);
    for (int i = 0; i < n; i++) {
        const char *id = ents[i]->d_name;
        unsigned long seq = strtoul(id + 1, NULL, 10);
        if (seq > s->patch_seq && seq < UINT32_MAX)
            s->patch_seq = (uint32_t)seq;
        char *dir = vdi_xasprintf("%s/%s", root, id);
        char *res = vdi_xasprintf("%s/result.json", dir);
        if (access(res, F_OK) != 0)
            recover(s, dir, id);
        if (i < KEEP_DONE)
            load_done(s, dir);
        free(res);
        free(dir);
        free(ents[i]);
    }
    if (n > 0)
        free(ents);
    free(root);
}

void srv__patches_stop(srv_t *s)
{
    for (vdi_list_t *it = s->patches.next; it != &s->patches; it = it->next) {
        struct srv_patch *p = vdi_list_entry(it, struct srv_patch, link);
        if (p->state == P_RUNNING && !p->vm_exited) {
            VDI_LOG_WARN("patch=%s image=%s: vdid is stopping; stopping the maintenance VM pid=%d",
                         p->id, p->image, (int)p->pid);
            srv__kill_group(p->pid, SIGKILL);
            srv__vmmproc_forget(p->proc);
            p->proc = NULL;
        }
        /* Nothing of a patch keeps the loop: the next start finishes the record (job.json). */
        if (p->timer_init && !uv_is_closing((uv_handle_t *)&p->timer))
            uv_close((uv_handle_t *)&p->timer, on_handle_closed);
        if (p->pipe_init && !uv_is_closing((uv_handle_t *)&p->pipe))
            uv_close((uv_handle_t *)&p->pipe, on_handle_closed);
    }
}

/* Free every patch: at the very end, once the loop has closed every handle. */
void srv__patches_fini(srv_t *s)
{
    if (!s->patches.next)
        return;
    while (!vdi_list_empty(&s->patches)) {
        struct srv_patch *p = vdi_list_entry(s->patches.next, struct srv_patch, link);
        vdi_list_remove(&p->link);
        srv__cgroup_close(p->cgroup);
        patch_free(p);
    }
}
