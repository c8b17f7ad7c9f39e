/* server/daemon.c: vdid's life cycle: directories, the state lock, the store, the memory budget,
 * the image catalogue and its worker, auth/ (TLS, PAM, limits: the auth_config_t the config parser filled),
 * then the listeners, signals, systemd readiness, and the orderly stop. Runs in the foreground
 * and logs to stderr. */
#define VDI_LOG_TAG "vdid"
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef VDI_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "auth/auth.h"
#include "common/vdi.h"
#include "golden-images/img.h"
#include "server/internal-web.h"
#include "server/desktop-internal.h"
#include "server/patch-internal.h"

void srv__notify(const char *state)
{
#ifdef VDI_HAVE_SYSTEMD
    /* Returns 0 when NOTIFY_SOCKET is unset (not under systemd): nothing to do then. */
    int rc = sd_notify(0, state);
    if (rc < 0)
        VDI_LOG_WARN("sd_notify(%s): %s", state, vdi_strerror(rc));
#else
    VDI_UNUSED(state);
#endif
}

int srv__host_memory(uint64_t *out)
{
    FILE *f = fopen("/proc/meminfo", "re");
    char line[256];
    if (!f)
        return -errno;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long kib;
        if (sscanf(line, "MemTotal: %llu kB", &kib) == 1) {
            fclose(f);
            *out = (uint64_t)kib * 1024;
            return 0;
        }
    }
    fclose(f);
    return -ENOENT;
}

/* mkdir -p with @mode for the last component; existing directories are left as they are. */
static int make_dir(const char *path, mode_t mode)
{
    char buf[256];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    struct stat st;
    if (stat(buf, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    return 0;
}

/* Set @path's permission bits to @mode if it exists with others (an older vdid, an admin's cp or
 * tar, a umask): the state holds sessions, token hashes and the audit log. Logs what it changes. */
static int tighten_mode(const char *path, mode_t mode)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if ((st.st_mode & 07777) == mode)
        return 0;
    if (chmod(path, mode) < 0)
        return -errno;
    VDI_LOG_WARN("path=%s mode was %04o: set to %04o", path, (unsigned)(st.st_mode & 07777),
                 (unsigned)mode);
    return 0;
}

/* The state directory 0700, vdi.db and its WAL files 0600, whatever modes they had. SQLite makes
 * a new database 0644 (less the umask) and gives -wal/-shm the database's mode, so a missing
 * vdi.db is created here, empty and 0600, for SQLite to fill. */
static int tighten_state(const char *state_dir)
{
    static const char *const files[] = {"vdi.db", "vdi.db-wal", "vdi.db-shm"};
    int rc = tighten_mode(state_dir, 0700);
    if (rc < 0) {
        VDI_LOG_ERR("state_dir=%s cannot set mode 0700: %s", state_dir, vdi_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < VDI_ARRAY_SIZE(files); i++) {
        char *path = vdi_xasprintf("%s/%s", state_dir, files[i]);
        if (i == 0) {
            int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
            if (fd >= 0)
                close(fd);
        }
        rc = tighten_mode(path, 0600);
        if (rc < 0)
            VDI_LOG_ERR("path=%s cannot set mode 0600: %s", path, vdi_strerror(rc));
        free(path);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* auth/'s login limits live in the state database: read at start, written as they change, so a
 * restart forgets no lockout. */
static int limit_restore(const char *scope, const char *key, const auth_limit_record_t *rec,
                         void *ctx)
{
    srv_t *s = ctx;
    if (auth_limit_restore(s->auth, scope, key, rec) < 0)
        VDI_LOG_WARN("state: a login limit record of scope=%s is malformed: ignored", scope);
    return 0;
}

static void on_limit_change(const char *scope, const char *key, const auth_limit_record_t *rec,
                            void *ctx)
{
    srv_t *s = ctx;
    int rc = rec ? brk_store_limit_put(s->store, scope, key, rec)
                 : brk_store_limit_delete(s->store, scope, key);
    if (rc < 0)
        VDI_LOG_WARN_RL("state: cannot record a login limit change of scope=%s: %s", scope,
                        vdi_strerror(rc));
}

static void on_signal(uv_signal_t *h, int signum)
{
    srv_t *s = h->data;
    srv__daemon_stop(s, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* @name in vdid's own directory (a malloc'd path), or NULL. */
static char *next_to_self(const char *name)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return NULL;
    self[n] = 0;
    *strrchr(self, '/') = 0;
    return vdi_xasprintf("%s/%s", self, name);
}

/* jail = yes: every VMM in its own uid, namespaces, cgroup and seccomp filter (server/jail.c).
 * That takes root and a cgroup hierarchy with a memory controller; say so at start, not at the
 * first login. */
static int jail_init(srv_t *s)
{
    char why[512] = "";
    struct stat st;
    if (!s->cfg->jail) {
        VDI_LOG_WARN("jail = no: desktops' VMMs run unconfined as vdid's user (development only)");
        return 0;
    }
    if (geteuid() != 0) {
        VDI_LOG_ERR("jail = yes needs vdid to run as root (set jail = no for an unconfined "
                    "development run)");
        return VDI_ECONFIG;
    }
    int rc = srv__cgroups_init(s->cfg->state_dir, s->cfg->vdid_memory_max, &s->cgroups, why,
                               sizeof(why));
    if (rc < 0) {
        VDI_LOG_ERR("jail = yes needs cgroups for the desktops' limits: %s", why);
        return rc;
    }
    if (stat("/dev/kvm", &st) == 0) {
        s->kvm_gid = (unsigned)st.st_gid;
        /* A jailed VMM opens /dev/kvm as its own uid, with the device's group as a supplementary
         * group: the group (or everyone) needs read and write. */
        if ((st.st_mode & 060) != 060 && (st.st_mode & 06) != 06)
            VDI_LOG_WARN("/dev/kvm is mode %03o: jailed VMMs cannot open it; give it a group "
                         "(usually kvm) with read and write (mode 0660)",
                         (unsigned)(st.st_mode & 0777));
    }
    /* vdi-jail: next to vdid in a build, in ../lib/vdi/ of vdid's directory when installed. */
    static const char *const where[] = {"vdi-jail", "../lib/vdi/vdi-jail"};
    for (size_t i = 0; i < VDI_ARRAY_SIZE(where) && !s->jail_path; i++) {
        char *p = next_to_self(where[i]);
        if (p && access(p, X_OK) == 0)
            s->jail_path = p;
        else
            free(p);
    }
    if (!s->jail_path) {
        VDI_LOG_ERR("jail = yes: vdi-jail is not installed next to vdid (nor in ../lib/vdi/)");
        return VDI_ECONFIG;
    }
    VDI_LOG_INFO("jail: VMM uids %u-%u, memory limit guest + %" PRIu64 " MiB, seccomp %s",
                 s->cfg->vmm_uid_first, s->cfg->vmm_uid_first + s->cfg->vmm_uid_count - 1,
                 s->cfg->vmm_memory_overhead >> 20, s->cfg->vmm_seccomp_log ? "log" : "kill");
    return 0;
}

int srv__daemon_init(srv_t *s, uv_loop_t *loop, brk_config_t *cfg, const char *config_path)
{
    const struct {
        const char *path;
        mode_t mode;
    } dirs[] = {
        {cfg->state_dir, 0700},
        {cfg->run_dir, 0755},
    };
    char *path = NULL;
    uint64_t host = 0;
    int rc;

    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->cfg = cfg;
    s->config_path = vdi_xstrdup(config_path);
    s->lock_fd = -1;
    s->started_ms = vdi_now_ms();

    for (size_t i = 0; i < VDI_ARRAY_SIZE(dirs); i++) {
        rc = make_dir(dirs[i].path, dirs[i].mode);
        if (rc < 0) {
            VDI_LOG_ERR("dir=%s cannot create: %s", dirs[i].path, vdi_strerror(rc));
            goto err;
        }
    }
    path = vdi_xasprintf("%s/desktops", cfg->state_dir);
    rc = make_dir(path, 0700);
    free(path);
    path = vdi_xasprintf("%s/vm", cfg->run_dir);
    if (rc == 0)
        rc = make_dir(path, 0700);
    if (rc < 0) {
        VDI_LOG_ERR("dir=%s cannot create: %s", path, vdi_strerror(rc));
        goto err;
    }
    free(path);

    /* One vdid per state directory: a second one would fight the first over the VMMs. */
    path = vdi_xasprintf("%s/vdid.lock", cfg->state_dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        rc = -errno;
        VDI_LOG_ERR("lock=%s cannot open: %s", path, vdi_strerror(rc));
        goto err;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = -errno;
        if (rc == -EWOULDBLOCK) {
            VDI_LOG_ERR("state_dir=%s is in use by another vdid (lock %s is held)", cfg->state_dir,
                        path);
            rc = -EBUSY;
        } else {
            VDI_LOG_ERR("lock=%s: %s", path, vdi_strerror(rc));
        }
        goto err;
    }
    free(path);
    path = NULL;

    rc = tighten_state(cfg->state_dir);
    if (rc < 0)
        goto err;
    path = vdi_xasprintf("%s/vdi.db", cfg->state_dir);
    rc = brk_store_open(path, &s->store);
    if (rc < 0) {
        VDI_LOG_ERR("db=%s cannot open the state database: %s", path, vdi_strerror(rc));
        goto err;
    }
    free(path);
    path = NULL;
    rc = brk_store_sync_pools(s->store, cfg);
    if (rc < 0) {
        VDI_LOG_ERR("cannot record the configured pools: %s", vdi_strerror(rc));
        goto err;
    }

    if (cfg->memory_budget) {
        host = cfg->memory_budget;
    } else {
        rc = srv__host_memory(&host);
        if (rc < 0) {
            VDI_LOG_ERR("cannot read MemTotal from /proc/meminfo: %s; set memory_budget",
                        vdi_strerror(rc));
            goto err;
        }
        host = host > cfg->memory_reserve ? host - cfg->memory_reserve : 0;
    }
    s->memory_budget = host * cfg->overcommit_pct / 100; /* host < 2^50, pct <= 1000 */

    if (cfg->vmm) {
        s->vmm_path = vdi_xstrdup(cfg->vmm);
    } else {
        /* vdi-vmm next to vdid: installed together, and build/bin in a checkout. */
        s->vmm_path = next_to_self("vdi-vmm");
        if (!s->vmm_path) {
            rc = -errno;
            VDI_LOG_ERR("cannot find vdid's own path to locate vdi-vmm: %s; set vmm",
                        vdi_strerror(rc));
            goto err;
        }
    }
    if (access(s->vmm_path, X_OK) < 0)
        VDI_LOG_WARN("vmm=%s is not executable: %s; desktops cannot start", s->vmm_path,
                     strerror(errno));
    rc = jail_init(s);
    if (rc < 0)
        goto err;

    rc = img_catalog_open(cfg->state_dir, &s->catalog);
    if (rc < 0) {
        VDI_LOG_ERR("state_dir=%s: cannot open the image catalogue: %s", cfg->state_dir,
                    vdi_strerror(rc));
        goto err;
    }

    rc = auth_create(loop, &cfg->auth, &s->auth); /* [auth] and its [vdid] keys, as parsed */
    if (rc < 0) {
        VDI_LOG_ERR("cannot set up authentication (TLS, PAM): %s", vdi_strerror(rc));
        goto err;
    }
    rc = brk_store_limit_foreach(s->store, (int64_t)time(NULL) * 1000, limit_restore, s);
    if (rc < 0) {
        VDI_LOG_ERR("cannot read the login limits from the state database: %s", vdi_strerror(rc));
        goto err;
    }
    auth_set_limit_sink(s->auth, on_limit_change, s);
    return 0;
err:
    free(path);
    srv__daemon_fini(s);
    return rc;
}

static void on_catq_closed(void *ctx)
{
    srv_t *s = ctx;
    s->catq = NULL;
}

static void on_patchq_closed(void *ctx)
{
    srv_t *s = ctx;
    s->patchq = NULL;
}

void srv__daemon_stop(srv_t *s, const char *why)
{
    if (s->stopping)
        return;
    s->stopping = true;
    VDI_LOG_INFO("stopping (%s); desktops keep running", why);
    srv__notify("STOPPING=1");
    uv_signal_stop(&s->sig_term);
    uv_signal_stop(&s->sig_int);
    if (s->admin) {
        srv__admin_close(s->admin);
        s->admin = NULL;
    }
    if (s->gateway) {
        srv__gateway_close(s->gateway);
        s->gateway = NULL;
    }
    srv__web_close(s->web); /* the web portal */
    s->web = NULL;
    srv__metrics_close(s->metrics);
    s->metrics = NULL;
    if (s->vms_started)
        srv__vms_stop(s);
    s->vms_started = false;
    srv__net_close(s);    /* dnsmasq keeps serving the desktops that keep running */
    srv__patches_stop(s); /* a maintenance VM does not outlive vdid */
    srv__catq_close(s->patchq, on_patchq_closed, s);
    /* Last: the desktops abandoned their catalogue jobs above; what is still queued (dropping
     * references) runs before the worker goes. */
    srv__catq_close(s->catq, on_catq_closed, s);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    VDI_UNUSED(arg);
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int srv__daemon_run(srv_t *s)
{
    int rc;
    uv_signal_init(s->loop, &s->sig_term);
    uv_signal_init(s->loop, &s->sig_int);
    s->sig_term.data = s->sig_int.data = s;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);

    rc = srv__catq_create(s->loop, &s->catq);
    if (rc < 0)
        goto out;
    rc = srv__catq_create(s->loop, &s->patchq);
    if (rc < 0)
        goto out;
    srv__patches_init(s); /* patches an earlier vdid left unfinished are recorded as failed */
    rc = srv__net_init(s);
    if (rc < 0)
        goto out;
    rc = srv__rollouts_init(s);
    if (rc == 0)
        rc = srv__vms_start(s);
    if (rc < 0) {
        VDI_LOG_ERR("cannot read the desktops from the state database: %s", vdi_strerror(rc));
        goto out;
    }
    rc = srv__gateway_start(s, &s->gateway);
    if (rc < 0)
        goto out;
    rc = srv__web_start(s, &s->web); /* the web portal */
    if (rc < 0)
        goto out;
    rc = srv__metrics_start(s, &s->metrics); /* the Prometheus endpoint */
    if (rc < 0)
        goto out;
    rc = srv__admin_start(s, &s->admin);
    if (rc < 0)
        goto out;

    VDI_LOG_INFO("ready: rfb_port=%d admin=%s pools=%zu memory_budget=%" PRIu64 "M",
                 srv__gateway_port(s->gateway), s->cfg->admin_socket, s->cfg->n_pools,
                 s->memory_budget >> 20);
    srv__notify("READY=1\nSTATUS=serving");
    uv_run(s->loop, UV_RUN_DEFAULT);
    rc = 0;
out:
    if (!s->stopping && rc < 0)
        srv__daemon_stop(s, "start-up failed");
    /* Close whatever is left (signal handles), then let libuv finish the close callbacks. */
    uv_walk(s->loop, close_walk, NULL);
    uv_run(s->loop, UV_RUN_DEFAULT);
    return rc;
}

void srv__daemon_fini(srv_t *s)
{
    srv__patches_fini(s);
    srv__rollouts_fini(s);
    auth_destroy(s->auth);
    s->auth = NULL;
    img_catalog_close(s->catalog);
    s->catalog = NULL;
    brk_store_close(s->store);
    s->store = NULL;
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    s->lock_fd = -1;
    brk_config_free(s->cfg);
    s->cfg = NULL;
    free(s->config_path);
    s->config_path = NULL;
    free(s->vmm_path);
    s->vmm_path = NULL;
    free(s->jail_path);
    s->jail_path = NULL;
    srv__cgroups_fini(s->cgroups);
    s->cgroups = NULL;
}
