/* server/vmm-proc.c: a desktop's VMM as a process: start it (uv_spawn, in a session and process
 * group of its own so that it outlives vdid; its output appended to the desktop's vmm.log; in
 * its jail, server/jail.c, when vdid jails VMMs),
 * report its exit, stop following it without killing it, signal its group, and tell whether a
 * pid that an earlier vdid started is still alive. It knows nothing about desktops.
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
#include "server/desktop-internal.h"

struct srv_vmmproc {
    uv_process_t h;
    srv_vmmproc_exit_cb cb; /* NULL once forgotten */
    void *ctx;
};

static void on_closed(uv_handle_t *h)
{
    free(vdi_container_of((uv_process_t *)h, srv_vmmproc_t, h));
}

static void on_exit_cb(uv_process_t *h, int64_t status, int sig)
{
    srv_vmmproc_t *p = vdi_container_of(h, srv_vmmproc_t, h);
    srv_vmmproc_exit_cb cb = p->cb;
    uv_close((uv_handle_t *)h, on_closed);
    if (cb)
        cb(p->ctx, status, sig);
}

void srv__vmmproc_forget(srv_vmmproc_t *p)
{
    if (!p)
        return;
    p->cb = NULL;
    if (!uv_is_closing((uv_handle_t *)&p->h))
        uv_close((uv_handle_t *)&p->h, on_closed);
}

int srv__vmmproc_spawn(uv_loop_t *loop, const struct srv_vmm_spec *spec, srv_vmmproc_exit_cb cb,
                       void *ctx, srv_vmmproc_t **out, pid_t *pid, char *why, size_t whylen)
{
    char mem[32], vcpus[16], fb[32], net[64];
    int rc;
    /* O_NOFOLLOW: the directory is the (jailed, untrusted) VMM's; a symlink it left there must
     * not make vdid append to a file of its choosing. */
    int logfd = open(spec->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (logfd < 0) {
        rc = -errno;
        snprintf(why, whylen, "cannot open %s: %s", spec->log_path, vdi_strerror(rc));
        return rc;
    }
    snprintf(mem, sizeof(mem), "%" PRIu64 "M", spec->memory >> 20);
    snprintf(vcpus, sizeof(vcpus), "%u", spec->vcpus);
    snprintf(fb, sizeof(fb), "%ux%u", spec->fb_width, spec->fb_height);
    const char *argv_c[32];
    size_t n = 0;
    argv_c[n++] = spec->vmm_path;
    argv_c[n++] = "--kernel";
    argv_c[n++] = spec->kernel;
    if (spec->initrd) {
        argv_c[n++] = "--initrd";
        argv_c[n++] = spec->initrd;
    }
    if (spec->cmdline && spec->cmdline[0]) {
        argv_c[n++] = "--cmdline";
        argv_c[n++] = spec->cmdline;
    }
    if (spec->backing_root) {
        argv_c[n++] = "--backing-root";
        argv_c[n++] = spec->backing_root;
    }
    const char *rest[] = {"--mem",     mem,          "--vcpus",  vcpus,       "--fb",
                          fb,          "--disk",     spec->disk, "--control", spec->control,
                          "--display", spec->display};
    for (size_t i = 0; i < VDI_ARRAY_SIZE(rest); i++)
        argv_c[n++] = rest[i];
    if (spec->disk_data) {
        argv_c[n++] = "--disk";
        argv_c[n++] = spec->disk_data;
    }
    char *disk_ro = spec->disk_ro ? vdi_xasprintf("%s,ro", spec->disk_ro) : NULL;
    if (disk_ro) {
        argv_c[n++] = "--disk";
        argv_c[n++] = disk_ro;
    }
    bool tap = spec->mac && spec->tap_fd >= 0;
    if (tap) {
        snprintf(net, sizeof(net), "tapfd=3,mac=%s", spec->mac);
        argv_c[n++] = "--net";
        argv_c[n++] = net;
    }
    VDI_ASSERT(n < VDI_ARRAY_SIZE(argv_c));
    argv_c[n] = NULL;
    char **args;
    if (spec->jail) {
        args = srv__jail_argv(spec->jail, argv_c);
    } else {
        args = vdi_xcalloc(n + 1, sizeof(*args)); /* uv_process_options_t wants char ** */
        for (size_t i = 0; i < n; i++)
            args[i] = vdi_xstrdup(argv_c[i]);
    }
    uv_stdio_container_t stdio[4] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = spec->stdout_fd > 0 ? spec->stdout_fd : logfd},
        {.flags = UV_INHERIT_FD, .data.fd = logfd},
        {.flags = UV_INHERIT_FD, .data.fd = spec->tap_fd}, /* fd 3: the tap */
    };
    /* vdi-jail runs as root until it drops to the VMM's uid: it gets the environment the VMM gets
     * (srv__jail_build()), not vdid's (an LD_PRELOAD, systemd's variables...). Without a jail
     * the VMM inherits vdid's, as any program the admin runs would. */
    char **env = NULL;
    if (spec->jail) {
        env = vdi_xcalloc(spec->jail->n_env + 1, sizeof(*env));
        for (size_t i = 0; i < spec->jail->n_env; i++)
            env[i] = (char *)spec->jail->env[i];
    }
    uv_process_options_t o = {
        .file = args[0],
        .args = args,
        .env = env,
        .flags = UV_PROCESS_DETACHED, /* setsid: own session and process group */
        .stdio_count = tap ? 4 : 3,
        .stdio = stdio,
        .exit_cb = on_exit_cb,
    };
    srv_vmmproc_t *p = vdi_xcalloc(1, sizeof(*p));
    p->cb = cb;
    p->ctx = ctx;
    rc = uv_spawn(loop, &p->h, &o);
    free(env);
    srv__jail_argv_free(args);
    free(disk_ro);
    close(logfd);
    if (rc < 0) {
        /* libuv wants the handle closed even when spawn failed. */
        p->cb = NULL;
        uv_close((uv_handle_t *)&p->h, on_closed);
        snprintf(why, whylen, "cannot start %s: %s", spec->vmm_path, uv_strerror(rc));
        return rc;
    }
    *pid = p->h.pid;
    *out = p;
    return 0;
}

bool srv__pid_alive(pid_t pid)
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

void srv__kill_group(pid_t pid, int sig)
{
    if (pid <= 0)
        return;
    if (kill(-pid, sig) < 0 && errno == ESRCH)
        kill(pid, sig);
}
