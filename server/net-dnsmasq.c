/* server/net-dnsmasq.c: a nat pool's DHCP and DNS: one dnsmasq per pool, bound to the pool's
 * bridge only, started and kept running by vdid. Addresses are vdid's: each desktop has a file
 * "MAC,IP" in the pool's hosts directory (dnsmasq reads new files there by itself; a removed one
 * is forgotten at SIGHUP), and the range is "static", so dnsmasq gives nothing else away.
 * dnsmasq outlives a vdid restart (desktops keep renewing meanwhile); the next vdid stops it by
 * its pid file and starts its own.
 */
#define VDI_LOG_TAG "net"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/net-internal.h"

#define RESTART_MIN_MS 1000
#define RESTART_MAX_MS 30000

struct srv_dnsmasq {
    uv_loop_t *loop;
    char **argv;
    char *pool, *pidfile;
    uv_process_t *proc; /* NULL while not running */
    uv_timer_t restart;
    uint32_t backoff_ms;
    uint64_t started_ms;
    bool closing;
};

static void proc_closed(uv_handle_t *h)
{
    free(h);
}

static void free_argv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static int spawn(srv_dnsmasq_t *d);

static void on_restart(uv_timer_t *t)
{
    srv_dnsmasq_t *d = t->data;
    if (spawn(d) < 0) {
        d->backoff_ms = d->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : d->backoff_ms * 2;
        uv_timer_start(&d->restart, on_restart, d->backoff_ms, 0);
    }
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    srv_dnsmasq_t *d = p->data;
    uv_close((uv_handle_t *)p, proc_closed);
    if (!d) /* closed meanwhile */
        return;
    d->proc = NULL;
    /* A run that lasted a while starts the back-off again. */
    if (vdi_now_ms() - d->started_ms > 60000)
        d->backoff_ms = RESTART_MIN_MS;
    VDI_LOG_WARN("pool=%s dnsmasq ended (%s %d); starting it again in %u ms", d->pool,
                 sig ? "signal" : "exit status", sig ? sig : (int)status, d->backoff_ms);
    uv_timer_start(&d->restart, on_restart, d->backoff_ms, 0);
    d->backoff_ms = d->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : d->backoff_ms * 2;
}

static int spawn(srv_dnsmasq_t *d)
{
    uv_process_t *p = vdi_xcalloc(1, sizeof(*p));
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = 2}, /* vdid's log (journald) */
        {.flags = UV_INHERIT_FD, .data.fd = 2},
    };
    uv_process_options_t o = {
        .file = d->argv[0],
        .args = d->argv,
        .flags = UV_PROCESS_DETACHED, /* own session: it outlives a vdid restart */
        .stdio_count = 3,
        .stdio = stdio,
        .exit_cb = on_exit_cb,
    };
    p->data = d;
    int rc = uv_spawn(d->loop, p, &o);
    if (rc < 0) {
        uv_close((uv_handle_t *)p, proc_closed);
        VDI_LOG_ERR("pool=%s cannot start %s: %s", d->pool, d->argv[0], uv_strerror(rc));
        return rc;
    }
    d->proc = p;
    d->started_ms = vdi_now_ms();
    VDI_LOG_INFO("pool=%s dnsmasq pid=%d serves DHCP and DNS", d->pool, p->pid);
    return 0;
}

/* The pid in @pidfile, if that process is a dnsmasq started with this very pid file. */
static pid_t stale_pid(const char *pidfile)
{
    char buf[32] = "", path[64], cmd[4096];
    int fd = open(pidfile, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
    if (pid <= 1)
        return 0;
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, cmd, sizeof(cmd) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    cmd[n] = 0;
    /* NUL-separated arguments: look for ours. */
    char want[4200];
    snprintf(want, sizeof(want), "--pid-file=%s", pidfile);
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(cmd + i) + 1)
        if (strcmp(cmd + i, want) == 0)
            return (pid_t)pid;
    return 0;
}

void srv__dnsmasq_kill_stale(const char *pidfile)
{
    pid_t pid = stale_pid(pidfile);
    if (pid > 0) {
        VDI_LOG_INFO("stopping dnsmasq pid=%d that an earlier vdid started (%s)", (int)pid,
                     pidfile);
        kill(pid, SIGTERM);
        for (int i = 0; i < 100 && kill(pid, 0) == 0; i++)
            usleep(10000); /* its sockets must be free before ours binds */
    }
    unlink(pidfile);
}

int srv__dnsmasq_start(uv_loop_t *loop, const struct srv_dnsmasq_spec *sp, srv_dnsmasq_t **out,
                       char *why, size_t whylen)
{
    if (access(sp->program, X_OK) < 0) {
        int rc = -errno;
        snprintf(why, whylen, "dnsmasq %s: %s (install dnsmasq-base, or set [vdid] dnsmasq)",
                 sp->program, vdi_strerror(rc));
        return rc;
    }
    srv__dnsmasq_kill_stale(sp->pidfile);
    char gw[BRK_NET_IP_LEN], first[BRK_NET_IP_LEN], mask[BRK_NET_IP_LEN];
    brk_net_ip_str(sp->subnet + 1, gw);
    brk_net_ip_str(sp->subnet + 2, first);
    brk_net_ip_str(~0u << (32 - sp->prefix), mask);
    char *args[] = {
        vdi_xstrdup(sp->program),
        vdi_xstrdup("--keep-in-foreground"),
        vdi_xstrdup("--conf-file=/dev/null"), /* nothing from /etc/dnsmasq.conf */
        vdi_xasprintf("--pid-file=%s", sp->pidfile),
        vdi_xasprintf("--interface=%s", sp->bridge),
        vdi_xstrdup("--bind-interfaces"),
        vdi_xstrdup("--except-interface=lo"),
        vdi_xasprintf("--listen-address=%s", gw),
        vdi_xstrdup("--no-hosts"), /* the host's /etc/hosts is not the desktops' business */
        vdi_xasprintf("--dhcp-range=%s,static,%s,10m", first, mask),
        vdi_xasprintf("--dhcp-hostsdir=%s", sp->hostsdir),
        vdi_xasprintf("--dhcp-leasefile=%s", sp->leasefile),
        vdi_xstrdup("--dhcp-authoritative"),
        vdi_xasprintf("--dhcp-option=option:router,%s", gw),
        vdi_xasprintf("--dhcp-option=option:dns-server,%s", gw),
        vdi_xstrdup("--user=nobody"),
        vdi_xstrdup("--group=nogroup"),
        vdi_xstrdup("--log-facility=-"),
        vdi_xstrdup("--quiet-dhcp"),
        NULL,
    };
    srv_dnsmasq_t *d = vdi_xcalloc(1, sizeof(*d));
    d->loop = loop;
    d->argv = vdi_xcalloc(VDI_ARRAY_SIZE(args), sizeof(char *));
    memcpy(d->argv, args, sizeof(args));
    d->pool = vdi_xstrdup(sp->pool);
    d->pidfile = vdi_xstrdup(sp->pidfile);
    d->backoff_ms = RESTART_MIN_MS;
    uv_timer_init(loop, &d->restart);
    d->restart.data = d;
    int rc = spawn(d);
    if (rc < 0) {
        snprintf(why, whylen, "cannot start %s: %s", sp->program, uv_strerror(rc));
        srv__dnsmasq_close(d, false);
        return rc;
    }
    *out = d;
    return 0;
}

void srv__dnsmasq_reload(srv_dnsmasq_t *d)
{
    if (d && d->proc)
        uv_process_kill(d->proc, SIGHUP);
}

static void timer_closed(uv_handle_t *h)
{
    srv_dnsmasq_t *d = h->data;
    free_argv(d->argv);
    free(d->pool);
    free(d->pidfile);
    free(d);
}

void srv__dnsmasq_close(srv_dnsmasq_t *d, bool kill_it)
{
    if (!d)
        return;
    if (d->proc) {
        if (kill_it) {
            uv_process_kill(d->proc, SIGTERM);
            unlink(d->pidfile);
        }
        d->proc->data = NULL; /* its exit, if it comes, finds no owner */
        if (!kill_it)
            uv_close((uv_handle_t *)d->proc, proc_closed); /* it keeps running */
        d->proc = NULL;
    }
    uv_timer_stop(&d->restart);
    uv_close((uv_handle_t *)&d->restart, timer_closed);
}
