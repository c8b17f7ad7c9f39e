/* server/desktop-prep.c: getting a desktop's disk and boot files ready, then starting its VMM.
 * The disk work runs on the catalogue worker (catq.c), not on the loop and not in libuv's pool
 * (PAM's): a clone writes and syncs a small qcow2 header and a reference file and takes the
 * image's catalogue lock, none of which the loop may wait for. Back on the
 * loop, the VMM is spawned (vmm-proc.c) and the desktop waits for its control socket and its
 * `ready` event (desktop.c).
 */
#define VDI_LOG_TAG "vm"
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/img.h"
#include "server/desktop-internal.h"
#include "server/patch-internal.h"

/* The VMM makes its control socket first thing; through the jail that is ~5 ms after spawn. */
#define FIRST_CONNECT_MS 5

struct srv_prep {
    srv_catq_job_t *job;
    srv_vm_t *vm; /* NULL once abandoned (the desktop went away, or vdid is stopping) */
    srv_t *s;
    const brk_pool_config_t *pool;
    img_catalog_t *cat;
    char image[64];
    char holder[32];
    uint32_t version; /* in: the version of a kept disk (0: clone a new one); out: the version */
    uint32_t want;    /* the version to clone (0: the current one) */
    uint32_t renew;   /* the kept disk on this version is replaced by a new clone */
    bool cloned;      /* out: a new overlay was made */
    bool stopping;    /* abandoned because vdid is stopping */
    char *datadir, *rundir, *overlay;
    char *kernel, *initrd;
    char cmdline[2048];
    char *userdir, *userdisk; /* the owner's data disk (pool user_disk) and its directory */
    uint64_t userdisk_size;
    bool userdisk_made;      /* out: made now (the first desktop of this user) */
    struct srv_net_desk net; /* in: the desktop's network (net.on false: none) */
    int tap_fd;              /* out: its tap, open (-1: none) */
    int rc;
    char why[200];
};

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

static int make_dir(struct srv_prep *p, const char *dir)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        p->rc = -errno;
        snprintf(p->why, sizeof(p->why), "cannot create %s: %s", dir, vdi_strerror(p->rc));
        return p->rc;
    }
    return 0;
}

/* The owner's data disk, made the first time (as a temporary file renamed into place: a crash
 * leaves no half disk). Never touched again here: its contents are the user's. */
static int user_disk_make(struct srv_prep *p) /* Thread: the catalogue worker */
{
    char *users = vdi_xasprintf("%s/users", p->s->cfg->state_dir);
    int rc = make_dir(p, users);
    free(users);
    if (rc < 0 || make_dir(p, p->userdir) < 0)
        return p->rc;
    if (access(p->userdisk, F_OK) == 0)
        return 0;
    char *tmp = vdi_xasprintf("%s.new", p->userdisk);
    struct img_create_opts o = {.size = p->userdisk_size, .format = "qcow2", .overwrite = true};
    p->rc = img_create(tmp, &o);
    if (p->rc == 0 && rename(tmp, p->userdisk) < 0)
        p->rc = -errno;
    if (p->rc < 0) {
        unlink(tmp);
        snprintf(p->why, sizeof(p->why), "cannot make the data disk %s: %s", p->userdisk,
                 vdi_strerror(p->rc));
    } else {
        p->userdisk_made = true;
    }
    free(tmp);
    return p->rc;
}

static void prep_work(void *arg) /* Thread: the catalogue worker */
{
    struct srv_prep *p = arg;
    if (make_dir(p, p->rundir) < 0 || make_dir(p, p->datadir) < 0)
        return;
    if (p->renew) {
        /* A dedicated desktop moving to a new version at its start: its old system disk goes
         * (its user's files are on their data disk), and with it its reference. */
        if (unlink(p->overlay) < 0 && errno != ENOENT) {
            p->rc = -errno;
            snprintf(p->why, sizeof(p->why), "cannot replace %s: %s", p->overlay,
                     vdi_strerror(p->rc));
            return;
        }
        img_catalog_unref(p->cat, p->image, p->renew, p->holder);
    }
    if (!p->version || access(p->overlay, F_OK) != 0) {
        p->rc = img_catalog_clone(p->cat, p->image, p->want, p->overlay, p->holder, &p->version);
        if (p->rc < 0) {
            if (p->want && p->rc == -ENOENT)
                snprintf(p->why, sizeof(p->why), "cannot clone image %s: it has no version %u",
                         p->image, p->want);
            else
                snprintf(p->why, sizeof(p->why), "cannot clone image %s: %s", p->image,
                         p->rc == -ENOENT ? "no such image in the catalogue" : vdi_strerror(p->rc));
            return;
        }
        p->cloned = true;
    }
    /* else: a dedicated desktop started again on its own disk, on the version it came from */
    if (p->userdisk && user_disk_make(p) < 0)
        return;
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
    if (p->net.on)
        p->rc = srv__net_desktop_up(&p->net, &p->tap_fd, p->why, sizeof(p->why));
}

void srv__prep_abandon(struct srv_prep *p, bool stopping)
{
    p->vm = NULL;
    p->stopping = stopping;
    srv__catq_abandon(p->job); /* prep_done runs with -ECANCELED or -EOWNERDEAD */
}

static void prep_free(struct srv_prep *p)
{
    if (p->tap_fd >= 0)
        close(p->tap_fd); /* the VMM has its own copy (or none was started): the tap goes with it */
    free(p->datadir);
    free(p->rundir);
    free(p->overlay);
    free(p->kernel);
    free(p->initrd);
    free(p->userdir);
    free(p->userdisk);
    free(p);
}

/* The lowest uid of the range that no desktop's or maintenance VM's VMM has. 0: none left. */
uid_t srv__jail_uid_alloc(srv_t *s)
{
    for (uint32_t i = 0; i < s->cfg->vmm_uid_count; i++) {
        uid_t u = (uid_t)(s->cfg->vmm_uid_first + i);
        bool used = srv__patch_uid_used(s, u);
        for (vdi_list_t *it = s->vms.next; it != &s->vms && !used; it = it->next)
            used = vdi_list_entry(it, srv_vm_t, link)->uid == u;
        if (!used)
            return u;
    }
    return 0;
}

/* Give @path (not following a symlink: the directory may hold what an earlier VMM left) to the
 * jailed VMM's uid, mode @mode. */
static int give(const char *path, uid_t uid, mode_t mode, int flags)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | flags), rc = 0;
    if (fd < 0 || fchown(fd, uid, uid) < 0 || fchmod(fd, mode) < 0)
        rc = -errno;
    if (fd >= 0)
        close(fd);
    return rc;
}

/* The environment a jailed VMM gets: the log level, the sanitizers' options, and what the admin
 * listed in vmm_env. Strings are malloc'd into @env (at most @max). */
static size_t jail_env(const brk_config_t *cfg, char **env, size_t max)
{
    static const char *const always[] = {"VDI_LOG_LEVEL", "ASAN_OPTIONS", "UBSAN_OPTIONS",
                                         "LSAN_OPTIONS", "TSAN_OPTIONS"};
    size_t n = 0;
    for (size_t i = 0; i < VDI_ARRAY_SIZE(always) + cfg->n_vmm_env && n < max; i++) {
        const char *name =
            i < VDI_ARRAY_SIZE(always) ? always[i] : cfg->vmm_env[i - VDI_ARRAY_SIZE(always)];
        const char *v = getenv(name);
        if (v)
            env[n++] = vdi_xasprintf("%s=%s", name, v);
    }
    return n;
}

void srv__jail_bufs_free(struct srv_jail_bufs *b)
{
    free(b->stage);
    free(b->images);
    for (size_t i = 0; i < b->n_procs; i++)
        free(b->cgroup_procs[i]);
    for (size_t i = 0; i < b->n_env; i++)
        free(b->env[i]);
}

int srv__jail_build(srv_t *s, const struct srv_jail_req *r, struct srv_jail *j,
                    struct srv_jail_bufs *b, srv_cgroup_t **cgroup, char *why, size_t whylen)
{
    const brk_config_t *cfg = s->cfg;
    int rc;
    /* The run directory (its sockets) is the VMM's; the state directory stays root's (0711: it
     * may reach its disk, not create files or read vmm.log); the disk is the VMM's. */
    char *jails = vdi_xasprintf("%s/jail", cfg->run_dir);
    b->stage = vdi_xasprintf("%s/%s", jails, r->name);
    rc = (mkdir(jails, 0700) < 0 && errno != EEXIST) ||
                 (mkdir(b->stage, 0700) < 0 && errno != EEXIST)
             ? -errno
             : 0;
    free(jails);
    if (rc == 0)
        rc = give(r->rundir, r->uid, 0700, O_DIRECTORY);
    if (rc == 0 && chmod(r->datadir, 0711) < 0)
        rc = -errno;
    if (rc == 0)
        rc = give(r->disk, r->uid, 0600, 0);
    if (rc == 0 && r->userdir && chmod(r->userdir, 0711) < 0)
        rc = -errno;
    if (rc == 0 && r->userdisk)
        rc = give(r->userdisk, r->uid, 0600, 0);
    if (rc < 0) {
        snprintf(why, whylen, "cannot prepare the jail's files for uid %u: %s", (unsigned)r->uid,
                 vdi_strerror(rc));
        return rc;
    }
    if (s->cgroups) {
        rc = srv__cgroup_create(s->cgroups, r->cgroup, &r->limits, cgroup, why, whylen);
        if (rc < 0)
            return rc;
        b->n_procs = srv__cgroup_procs(*cgroup, b->cgroup_procs, VDI_ARRAY_SIZE(b->cgroup_procs));
    }
    b->images = vdi_xasprintf("%s/images/%s", cfg->state_dir, r->image);
    b->ro[0] = s->vmm_path; /* first: the one read-only mount that may hold a program */
    b->ro[1] = b->images;
    b->rw[0] = r->datadir;
    b->rw[1] = r->rundir;
    b->rw[2] = r->userdir;
    b->n_env = jail_env(cfg, b->env, VDI_ARRAY_SIZE(b->env));
    *j = (struct srv_jail){
        .program = s->jail_path,
        .uid = r->uid,
        .gid = (gid_t)r->uid,
        .kvm_gid = s->kvm_gid,
        .stage = b->stage,
        .ro = b->ro,
        .n_ro = 2,
        .rw = b->rw,
        .n_rw = r->userdir ? 3 : 2,
        .cgroup_procs = b->cgroup_procs,
        .n_cgroup_procs = b->n_procs,
        .env = (const char *const *)b->env,
        .n_env = b->n_env,
        .seccomp_log = cfg->vmm_seccomp_log,
    };
    return 0;
}

static int jail_prepare(srv_vm_t *vm, struct srv_prep *pr, struct srv_jail *j,
                        struct srv_jail_bufs *b, char *why, size_t whylen)
{
    srv_t *s = vm->s;
    const brk_config_t *cfg = s->cfg;
    vm->uid = srv__jail_uid_alloc(s);
    if (!vm->uid) {
        snprintf(why, whylen, "no free uid in vmm_uid_first=%u vmm_uid_count=%u",
                 cfg->vmm_uid_first, cfg->vmm_uid_count);
        return -EAGAIN;
    }
    struct srv_jail_req r = {
        .uid = vm->uid,
        .image = vm->image,
        .datadir = vm->datadir,
        .rundir = vm->rundir,
        .disk = pr->overlay,
        .userdir = pr->userdir,
        .userdisk = pr->userdisk,
        .limits =
            {
                .memory_max = pr->pool->memory + cfg->vmm_memory_overhead,
                .pids_max = cfg->vmm_pids_max,
                .cpu_weight = pr->pool->cpu_weight,
                .cpu_max_pct = pr->pool->cpu_max_pct,
            },
    };
    snprintf(r.name, sizeof(r.name), "%" PRId64, vm->id);
    snprintf(r.cgroup, sizeof(r.cgroup), "desktop-%" PRId64, vm->id);
    return srv__jail_build(s, &r, j, b, &vm->cgroup, why, whylen);
}

/* Start the VMM on the disk the worker made (loop). */
static int vm_exec(srv_vm_t *vm, struct srv_prep *pr, char *why, size_t whylen)
{
    srv_t *s = vm->s;
    struct srv_jail jail;
    struct srv_jail_bufs jb = {0};
    int rc;
    if (s->cfg->jail && (rc = jail_prepare(vm, pr, &jail, &jb, why, whylen)) < 0) {
        srv__jail_bufs_free(&jb);
        return rc;
    }
    char *log = vdi_xasprintf("%s/vmm.log", vm->datadir);
    /* The overlay's chain is the catalogue's: the VMM follows no backing file outside it. */
    char *images = vdi_xasprintf("%s/images", s->cfg->state_dir);
    struct srv_vmm_spec spec = {
        .vmm_path = s->vmm_path,
        .kernel = pr->kernel,
        .initrd = pr->initrd,
        .cmdline = pr->cmdline,
        .disk = pr->overlay,
        .backing_root = images,
        .control = vm->ctl_path,
        .display = vm->dpy_path,
        .log_path = log,
        .memory = pr->pool->memory,
        .vcpus = pr->pool->vcpus,
        .fb_width = pr->pool->fb_width,
        .fb_height = pr->pool->fb_height,
        .jail = s->cfg->jail ? &jail : NULL,
        .mac = pr->tap_fd >= 0 ? vm->mac : NULL,
        .tap_fd = pr->tap_fd,
        .disk_data = pr->userdisk,
    };
    jail.keep_fds = pr->tap_fd >= 0 ? 1 : 0;
    vm->image_version = pr->version;
    unlink(vm->ctl_path);
    unlink(vm->dpy_path);
    rc = srv__vmmproc_spawn(s->loop, &spec, srv__desktop_on_exit, vm, &vm->proc, &vm->pid, why,
                            whylen);
    free(log);
    free(images);
    srv__jail_bufs_free(&jb);
    if (rc < 0)
        return rc;
    srv__desktop_connect_at(vm, vdi_now_ms() + FIRST_CONNECT_MS);
    vm->deadline = vdi_now_ms() + (uint64_t)s->cfg->ready_timeout_s * 1000;
    rc = brk_store_desktop_set_vmm(s->store, vm->id, vm->pid, pr->overlay, vm->image_version);
    if (rc < 0)
        VDI_LOG_ERR("desktop=%" PRId64 " cannot record vmm pid %d: %s", vm->id, (int)vm->pid,
                    vdi_strerror(rc));
    VDI_LOG_INFO("desktop=%" PRId64 " pool=%s image=%s version=%u vmm pid=%d uid=%u started%s%s%s",
                 vm->id, pr->pool->name, vm->image, vm->image_version, (int)vm->pid,
                 (unsigned)vm->uid, pr->userdisk ? " with data disk " : "",
                 pr->userdisk ? pr->userdisk : "", pr->userdisk_made ? " (new)" : "");
    return 0;
}

static void prep_done(void *arg, int status)
{
    struct srv_prep *p = arg;
    srv_vm_t *vm = p->vm;
    if (status == -ECANCELED) {
        p->rc = -ECANCELED;
        snprintf(p->why, sizeof(p->why), "cancelled");
    }
    if (!vm) {
        /* The desktop was destroyed meanwhile: take back a disk made for it. With vdid
         * stopping, leave it: the next vdid finds the desktop and decides. */
        if (p->cloned && !p->stopping) {
            unlink(p->overlay);
            rmdir(p->datadir);
            srv__image_unref(p->s, p->image, p->version, p->holder);
        }
        prep_free(p);
        return;
    }
    vm->prep = NULL;
    char why[200];
    int rc = p->rc;
    if (rc == 0)
        rc = vm_exec(vm, p, why, sizeof(why));
    else
        snprintf(why, sizeof(why), "%s", p->why);
    prep_free(p);
    if (rc < 0) {
        VDI_LOG_ERR("desktop=%" PRId64 " %s", vm->id, why);
        srv__desktop_gone(vm, true, why);
    }
}

const srv_vm_t *srv__user_disk_holder(srv_t *s, const char *owner, const srv_vm_t *except)
{
    for (vdi_list_t *it = s->vms.next; it != &s->vms; it = it->next) {
        const srv_vm_t *o = vdi_list_entry(it, srv_vm_t, link);
        if (o != except && o->user_disk && !strcmp(o->owner, owner))
            return o;
    }
    return NULL;
}

int srv__prep_start(srv_vm_t *vm, const brk_pool_config_t *pool, char *why, size_t whylen)
{
    struct srv_prep *p = vdi_xcalloc(1, sizeof(*p));
    p->vm = vm;
    p->s = vm->s;
    p->pool = pool;
    p->cat = vm->s->catalog;
    snprintf(p->image, sizeof(p->image), "%s", vm->image);
    snprintf(p->holder, sizeof(p->holder), "desktop-%" PRId64, vm->id);
    p->version = vm->image_version;
    p->want = vm->want_version;
    p->renew = vm->renew_from;
    p->datadir = vdi_xstrdup(vm->datadir);
    p->rundir = vdi_xstrdup(vm->rundir);
    p->overlay = vdi_xasprintf("%s/disk.qcow2", vm->datadir);
    p->tap_fd = -1;
    if (pool->user_disk && vm->owner[0]) {
        char name[3 * BRK_USER_MAX + 1];
        int rc = brk_user_dir_name(vm->owner, name, sizeof(name));
        const srv_vm_t *other = rc == 0 ? srv__user_disk_holder(vm->s, vm->owner, vm) : NULL;
        if (rc < 0 || other) {
            if (other)
                snprintf(why, whylen,
                         "user %s's data disk is in use by desktop %" PRId64 " (pool %s, %s); "
                         "it is never attached to two desktops at once",
                         vm->owner, other->id, other->pool, brk_desktop_state_name(other->state));
            else
                snprintf(why, whylen, "user name %s cannot name a directory", vm->owner);
            VDI_LOG_ERR("desktop=%" PRId64 " %s", vm->id, why);
            prep_free(p);
            return rc < 0 ? rc : -EBUSY;
        }
        p->userdir = vdi_xasprintf("%s/users/%s", vm->s->cfg->state_dir, name);
        p->userdisk = vdi_xasprintf("%s/data.qcow2", p->userdir);
        p->userdisk_size = pool->user_disk_size;
        vm->user_disk = true;
    }
    int rc = srv__net_desktop_plan(vm, pool, &p->net, why, whylen);
    if (rc < 0) {
        VDI_LOG_ERR("desktop=%" PRId64 " %s", vm->id, why);
        prep_free(p);
        return rc;
    }
    vm->prep = p;
    rc = srv__catq_submit(vm->s->catq, prep_work, prep_done, p, &p->job);
    if (rc < 0) {
        snprintf(why, whylen, "vdid is shutting down");
        vm->prep = NULL;
        prep_free(p);
    }
    return rc;
}
