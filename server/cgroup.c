/* server/cgroup.c: a cgroup per desktop, behind one small interface over both hierarchies.
 *
 * cgroup v2 (Debian 12's default): one directory per desktop under vdid's own cgroup, with
 * memory.max (+ memory.swap.max 0), pids.max, cpu.weight and cpu.max. A v2 cgroup that holds
 * processes cannot hand controllers to children, so vdid first moves itself into a leaf
 * (OWN/vdid) and enables memory, pids and cpu in OWN/cgroup.subtree_control; desktops are
 * OWN/vdi-HASH/desktop-ID (HASH: of vdid's state directory, one directory per instance). Under systemd the unit needs Delegate=yes (deploy/vdid.service).
 * cgroup v1 (still mounted on some hosts: memory, pids and cpu hierarchies, and a unified one with
 * no controllers): one directory per controller, OWN/vdi-HASH/desktop-ID in each, with
 * memory.limit_in_bytes (+ memsw when the kernel accounts swap), pids.max, cpu.shares and the CFS
 * quota. v1 is used when the v2 hierarchy has no memory controller to offer.
 *
 * A VMM joins its cgroups itself, in its jail before exec (server/jail.c writes 0 to each
 * cgroup.procs file), so that it never runs a single instruction outside its limits. The kernel
 * kills a VMM that exceeds its memory limit and nothing else; srv__cgroup_oom_killed() tells
 * vdid that this is why it died.
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
#include "server/desktop-internal.h"

#define CGROOT "/sys/fs/cgroup"

enum {
    CG_MEM,
    CG_PIDS,
    CG_CPU,
    CG_N
};
static const char *const v1_names[CG_N] = {"memory", "pids", "cpu"};

struct srv_cgroups {
    int version;       /* 1 or 2 */
    char instance[24]; /* vdi-HASH of the state directory */
    char *base[CG_N];  /* v2: base[0] only; v1: MOUNT/OWN/vdi-HASH per controller */
    char *self;        /* vdid's own memory cgroup (its leaf) */
};

struct srv_cgroup {
    const srv_cgroups_t *cgs;
    char *dir[CG_N]; /* v2: dir[0] only */
};

static int write_file(const char *dir, const char *name, const char *text)
{
    char *p = vdi_xasprintf("%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CLOEXEC), rc = 0;
    if (fd < 0 || write(fd, text, strlen(text)) < 0)
        rc = -errno;
    if (fd >= 0)
        close(fd);
    free(p);
    return rc;
}

/* This process's cgroup path in hierarchy @ctrl ("" for v2's "0::" line), from /proc/self/cgroup. */
static char *own_path(const char *ctrl)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    char line[512], *out = NULL;
    if (!f)
        return NULL;
    while (!out && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = 0;
        const char *list = c1 + 1;
        if (!*ctrl) {
            if (!*list)
                out = vdi_xstrdup(c2 + 1);
            continue;
        }
        for (char *save = NULL, *tok = strtok_r((char *)list, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save))
            if (!strcmp(tok, ctrl))
                out = vdi_xstrdup(c2 + 1);
    }
    fclose(f);
    return out;
}

static bool file_has_word(const char *path, const char *word)
{
    FILE *f = fopen(path, "re");
    char buf[512];
    bool found = false;
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    for (char *save = NULL, *tok = strtok_r(buf, " \n", &save); tok && !found;
         tok = strtok_r(NULL, " \n", &save))
        found = !strcmp(tok, word);
    return found;
}

static int mkdir_p(const char *path)
{
    char *p = vdi_xstrdup(path);
    int rc = 0;
    for (char *s = p + 1; rc == 0; s++) {
        if (*s && *s != '/')
            continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            rc = -errno;
        *s = c;
        if (!c)
            break;
    }
    free(p);
    return rc;
}

static int setup_v2(srv_cgroups_t *cg, char *why, size_t n)
{
    char *own = own_path("");
    char *dir = own ? vdi_xasprintf(CGROOT "%s", strcmp(own, "/") ? own : "") : NULL;
    int rc = -ENOTSUP;
    free(own);
    if (!dir)
        goto out;
    char *ctl = vdi_xasprintf("%s/cgroup.controllers", dir);
    bool ok = file_has_word(ctl, "memory") && file_has_word(ctl, "pids");
    free(ctl);
    if (!ok)
        goto out;
    /* No internal processes: vdid itself moves into a leaf, unless it is at the root. */
    if (strcmp(dir, CGROOT) != 0) {
        char *leaf = vdi_xasprintf("%s/vdid", dir);
        rc = mkdir(leaf, 0755) < 0 && errno != EEXIST ? -errno : 0;
        if (rc == 0)
            rc = write_file(leaf, "cgroup.procs", "0");
        free(leaf);
        if (rc < 0) {
            snprintf(why, n, "cannot move vdid into %s/vdid: %s", dir, vdi_strerror(rc));
            goto out;
        }
    }
    rc = write_file(dir, "cgroup.subtree_control", "+memory +pids");
    if (rc == 0 && write_file(dir, "cgroup.subtree_control", "+cpu") < 0)
        VDI_LOG_WARN("%s: no cpu controller: desktops get no CPU weight or cap", dir);
    if (rc < 0) {
        snprintf(why, n, "cannot enable the memory and pids controllers in %s: %s", dir,
                 vdi_strerror(rc));
        goto out;
    }
    char *base = vdi_xasprintf("%s/%s", dir, cg->instance);
    rc = mkdir(base, 0755) < 0 && errno != EEXIST ? -errno : 0;
    if (rc == 0)
        rc = write_file(base, "cgroup.subtree_control", "+memory +pids");
    if (rc == 0)
        write_file(base, "cgroup.subtree_control", "+cpu");
    if (rc < 0) {
        snprintf(why, n, "cannot set up %s: %s", base, vdi_strerror(rc));
        free(base);
        goto out;
    }
    cg->version = 2;
    cg->base[0] = base;
out:
    free(dir);
    return rc;
}

static int setup_v1(srv_cgroups_t *cg, char *why, size_t n)
{
    for (int i = 0; i < CG_N; i++) {
        char *own = own_path(v1_names[i]);
        char *mnt = vdi_xasprintf(CGROOT "/%s", v1_names[i]);
        struct stat st;
        int rc = 0;
        if (!own || stat(mnt, &st) < 0) {
            rc = -ENOTSUP;
            snprintf(why, n, "no cgroup v1 %s hierarchy at %s", v1_names[i], mnt);
        } else {
            cg->base[i] = vdi_xasprintf("%s%s/%s", mnt, strcmp(own, "/") ? own : "", cg->instance);
            rc = mkdir_p(cg->base[i]);
            if (rc < 0)
                snprintf(why, n, "cannot create %s: %s", cg->base[i], vdi_strerror(rc));
        }
        free(own);
        free(mnt);
        if (rc < 0)
            return rc;
    }
    cg->version = 1;
    return 0;
}

/* vdid itself into the leaf LEAF of the memory hierarchy, with memory limit @max (0: none). v2
 * made the leaf already (no internal processes); v1 makes it here beside the desktops. */
static int self_limit(srv_cgroups_t *cg, uint64_t max, char *why, size_t n)
{
    char *leaf;
    char num[32];
    int rc = 0;
    if (cg->version == 2) {
        char *own = own_path("");
        leaf = own ? vdi_xasprintf(CGROOT "%s", strcmp(own, "/") ? own : "") : NULL;
        free(own);
        if (!leaf)
            return 0; /* at the root: nothing of its own to cap */
        snprintf(num, sizeof(num), "%" PRIu64, max);
        rc = max ? write_file(leaf, "memory.max", num) : 0;
    } else {
        leaf = vdi_xasprintf("%s/vdid", cg->base[CG_MEM]);
        rc = mkdir(leaf, 0755) < 0 && errno != EEXIST ? -errno : 0;
        if (rc == 0)
            rc = write_file(leaf, "cgroup.procs", "0");
        snprintf(num, sizeof(num), "%" PRIu64, max);
        if (rc == 0 && max)
            rc = write_file(leaf, "memory.limit_in_bytes", num);
    }
    if (rc < 0)
        snprintf(why, n, "cannot cap vdid's own memory in %s: %s", leaf, vdi_strerror(rc));
    else
        cg->self = leaf, leaf = NULL;
    free(leaf);
    return rc;
}

int srv__cgroups_init(const char *instance, uint64_t self_max, srv_cgroups_t **out, char *why,
                      size_t n)
{
    srv_cgroups_t *cg = vdi_xcalloc(1, sizeof(*cg));
    char why2[256] = "";
    /* One directory per vdid instance (its state directory), so that two vdids on one host (a
     * test beside a real one) never meet in desktop-ID. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *c = instance; *c; c++)
        h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    snprintf(cg->instance, sizeof(cg->instance), "vdi-%016" PRIx64, h);
    int rc = setup_v2(cg, why2, sizeof(why2));
    if (rc < 0)
        rc = setup_v1(cg, why, n);
    if (rc < 0) {
        if (why2[0])
            snprintf(why + strlen(why), n - strlen(why), " (v2: %s)", why2);
        srv__cgroups_fini(cg);
        return rc;
    }
    rc = self_limit(cg, self_max, why, n);
    if (rc < 0) {
        srv__cgroups_fini(cg);
        return rc;
    }
    VDI_LOG_INFO("cgroups: v%d, desktops under %s", cg->version, cg->base[0]);
    *out = cg;
    return 0;
}

void srv__cgroups_fini(srv_cgroups_t *cg)
{
    if (!cg)
        return;
    /* v1: vdid leaves its leaf for the cgroup it came from, so that the leaf can go. */
    if (cg->version == 1 && cg->self) {
        char *up = vdi_xstrdup(cg->base[CG_MEM]);
        *strrchr(up, '/') = 0;
        if (write_file(up, "cgroup.procs", "0") == 0)
            rmdir(cg->self);
        free(up);
    }
    /* Empty once no desktop runs (after a test, or a last stop); desktops that live on keep it. */
    for (int i = 0; i < CG_N; i++)
        if (cg->base[i])
            rmdir(cg->base[i]);
    for (int i = 0; i < CG_N; i++)
        free(cg->base[i]);
    free(cg->self);
    free(cg);
}

int srv__cgroups_version(const srv_cgroups_t *cg)
{
    return cg->version;
}

static srv_cgroup_t *cgroup_new(const srv_cgroups_t *cgs, const char *name)
{
    srv_cgroup_t *g = vdi_xcalloc(1, sizeof(*g));
    g->cgs = cgs;
    for (int i = 0; i < (cgs->version == 2 ? 1 : CG_N); i++)
        g->dir[i] = vdi_xasprintf("%s/%s", cgs->base[i], name);
    return g;
}

int srv__cgroup_create(const srv_cgroups_t *cgs, const char *name,
                       const struct srv_cgroup_limits *l, srv_cgroup_t **out, char *why, size_t n)
{
    srv_cgroup_t *g = cgroup_new(cgs, name);
    char num[64];
    int rc = 0;
    for (int i = 0; i < CG_N && g->dir[i] && rc == 0; i++)
        if (mkdir(g->dir[i], 0755) < 0 && errno != EEXIST)
            rc = -errno;
    if (rc < 0) {
        snprintf(why, n, "cannot create cgroup %s: %s", g->dir[0], vdi_strerror(rc));
        goto fail;
    }
    const char *mem = g->dir[CG_MEM];
    const char *pids = cgs->version == 2 ? g->dir[0] : g->dir[CG_PIDS];
    const char *cpu = cgs->version == 2 ? g->dir[0] : g->dir[CG_CPU];
    snprintf(num, sizeof(num), "%" PRIu64, l->memory_max);
    rc = write_file(mem, cgs->version == 2 ? "memory.max" : "memory.limit_in_bytes", num);
    if (rc == -EINVAL && cgs->version == 1) {
        /* v1 wants memory <= memory+swap: a cgroup left with a lower memsw limit (an earlier
         * desktop of this id) takes the new memsw first. */
        write_file(mem, "memory.memsw.limit_in_bytes", num);
        rc = write_file(mem, "memory.limit_in_bytes", num);
    }
    if (rc == 0 && cgs->version == 2)
        write_file(mem, "memory.swap.max", "0"); /* absent without swap accounting */
    else if (rc == 0)
        write_file(mem, "memory.memsw.limit_in_bytes", num); /* likewise */
    if (rc < 0) {
        snprintf(why, n, "%s: cannot set the memory limit: %s", mem, vdi_strerror(rc));
        goto fail;
    }
    snprintf(num, sizeof(num), "%u", l->pids_max);
    rc = write_file(pids, "pids.max", num);
    if (rc < 0) {
        snprintf(why, n, "%s: cannot set pids.max: %s", pids, vdi_strerror(rc));
        goto fail;
    }
    /* CPU: best effort (a host may lack the controller); the weight is relative, 100 = normal. */
    if (cgs->version == 2) {
        snprintf(num, sizeof(num), "%u", l->cpu_weight);
        write_file(cpu, "cpu.weight", num);
        if (l->cpu_max_pct) {
            snprintf(num, sizeof(num), "%u 100000", l->cpu_max_pct * 1000);
            write_file(cpu, "cpu.max", num);
        }
    } else {
        snprintf(num, sizeof(num), "%u", l->cpu_weight * 1024 / 100);
        write_file(cpu, "cpu.shares", num);
        if (l->cpu_max_pct) {
            write_file(cpu, "cpu.cfs_period_us", "100000");
            snprintf(num, sizeof(num), "%u", l->cpu_max_pct * 1000);
            write_file(cpu, "cpu.cfs_quota_us", num);
        }
    }
    *out = g;
    return 0;
fail:
    srv__cgroup_destroy(g);
    return rc;
}

srv_cgroup_t *srv__cgroup_open(const srv_cgroups_t *cgs, const char *name)
{
    return cgroup_new(cgs, name);
}

size_t srv__cgroup_procs(const srv_cgroup_t *g, char **paths, size_t max)
{
    size_t n = 0;
    for (int i = 0; i < CG_N && n < max; i++)
        if (g->dir[i])
            paths[n++] = vdi_xasprintf("%s/cgroup.procs", g->dir[i]);
    return n;
}

bool srv__cgroup_oom_killed(const srv_cgroup_t *g)
{
    char *p = vdi_xasprintf("%s/%s", g->dir[CG_MEM],
                            g->cgs->version == 2 ? "memory.events" : "memory.oom_control");
    FILE *f = fopen(p, "re");
    char key[64];
    unsigned long long v;
    bool killed = false;
    free(p);
    if (!f)
        return false;
    while (fscanf(f, "%63s %llu", key, &v) == 2)
        if (!strcmp(key, "oom_kill") && v > 0)
            killed = true;
    fclose(f);
    return killed;
}

void srv__cgroup_destroy(srv_cgroup_t *g)
{
    if (!g)
        return;
    for (int i = 0; i < CG_N; i++) {
        if (g->dir[i] && rmdir(g->dir[i]) < 0 && errno != ENOENT)
            VDI_LOG_WARN("cannot remove cgroup %s: %s", g->dir[i], strerror(errno));
        free(g->dir[i]);
    }
    free(g);
}

void srv__cgroup_close(srv_cgroup_t *g)
{
    if (!g)
        return;
    for (int i = 0; i < CG_N; i++)
        free(g->dir[i]);
    free(g);
}
