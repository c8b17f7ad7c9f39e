/* server/desktop-prep.c: getting a desktop's disk and boot files ready, then starting its VMM.
 * The disk work runs off the loop: a clone writes and syncs a small qcow2 header and a reference
 * file and takes the image's catalogue lock, none of which the loop may wait for. Back on the
 * loop, the VMM is spawned (vmm-proc.c) and the desktop waits for its control socket and its
 * `ready` event (desktop.c).
 */
#define VDI_LOG_TAG "vm"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/img.h"
#include "server/desktop-internal.h"

#define CONNECT_RETRY_MS 50

struct srv_prep {
    uv_work_t req;
    srv_vm_t *vm; /* NULL once abandoned (the desktop went away, or vdid is stopping) */
    srv_t *s;
    const brk_pool_config_t *pool;
    img_catalog_t *cat;
    char image[64];
    char holder[32];
    uint32_t version; /* in: the version of a kept disk (0: clone a new one); out: the version */
    bool cloned;      /* out: a new overlay was made */
    bool stopping;    /* abandoned because vdid is stopping */
    char *datadir, *rundir, *overlay;
    char *kernel, *initrd;
    char cmdline[2048];
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

static void prep_work(uv_work_t *req) /* Thread: worker */
{
    struct srv_prep *p = vdi_container_of(req, struct srv_prep, req);
    if (make_dir(p, p->rundir) < 0 || make_dir(p, p->datadir) < 0)
        return;
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

void srv__prep_abandon(struct srv_prep *p, bool stopping)
{
    p->vm = NULL;
    p->stopping = stopping;
    uv_cancel((uv_req_t *)&p->req); /* not started yet: prep_done runs with UV_ECANCELED */
}

static void prep_free(struct srv_prep *p)
{
    free(p->datadir);
    free(p->rundir);
    free(p->overlay);
    free(p->kernel);
    free(p->initrd);
    free(p);
}

/* Start the VMM on the disk the worker made (loop). */
static int vm_exec(srv_vm_t *vm, struct srv_prep *pr, char *why, size_t whylen)
{
    srv_t *s = vm->s;
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
    };
    vm->image_version = pr->version;
    unlink(vm->ctl_path);
    unlink(vm->dpy_path);
    int rc = srv__vmmproc_spawn(s->loop, &spec, srv__desktop_on_exit, vm, &vm->proc, &vm->pid, why,
                                whylen);
    free(images);
    free(log);
    if (rc < 0)
        return rc;
    vm->next_connect = vdi_now_ms() + CONNECT_RETRY_MS;
    vm->deadline = vdi_now_ms() + (uint64_t)s->cfg->ready_timeout_s * 1000;
    rc = brk_store_desktop_set_vmm(s->store, vm->id, vm->pid, pr->overlay, vm->image_version);
    if (rc < 0)
        VDI_LOG_ERR("desktop=%" PRId64 " cannot record vmm pid %d: %s", vm->id, (int)vm->pid,
                    vdi_strerror(rc));
    VDI_LOG_INFO("desktop=%" PRId64 " pool=%s image=%s version=%u vmm pid=%d started", vm->id,
                 pr->pool->name, vm->image, vm->image_version, (int)vm->pid);
    return 0;
}

static void prep_done(uv_work_t *req, int status)
{
    struct srv_prep *p = vdi_container_of(req, struct srv_prep, req);
    srv_vm_t *vm = p->vm;
    if (status == UV_ECANCELED && p->rc == 0) {
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

void srv__prep_start(srv_vm_t *vm, const brk_pool_config_t *pool)
{
    struct srv_prep *p = vdi_xcalloc(1, sizeof(*p));
    p->vm = vm;
    p->s = vm->s;
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
