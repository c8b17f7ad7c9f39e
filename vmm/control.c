/* vmm/control.c: the server side of the control socket (vmm/vmm.h, docs/vmm-control.md): a unix
 * stream socket speaking one JSON object per line both ways. Requests carry "cmd" (status, pause,
 * resume, shutdown, quit) and an optional "id" echoed in the reply; events ({"event": ...}) go to
 * every client.
 *
 * It runs on the main thread in a poll() loop that also watches the machine's stop fd, the
 * event queue's eventfd (events come from any thread) and a signalfd for SIGTERM/SIGINT (a quit).
 * Clients are non-blocking; one that does not read its replies is dropped; a malformed or
 * over-long line gets an error object. The machine is reached only through struct
 * vmm_control_ops, so vdid's tests run this very file in front of a stand-in machine.
 */
#define VDI_LOG_TAG "vmm"
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/vdi.h"
#include "vmm/internal.h"

#define MAX_CLIENTS 32
#define MAX_LINE    VMM_CONTROL_MAX_LINE
#define MAX_OUTBUF  (1024 * 1024)

struct client {
    vdi_list_t link;
    int fd;
    vdi_buf_t in, out;
    bool dead, skipping; /* skipping: the rest of an over-long line */
};

struct vmm_control {
    char *path;
    int listen_fd, ev_fd, sig_fd;
    vdi_list_t clients;
    unsigned nclients;
    pthread_mutex_t ev_lock;
    vdi_buf_t events; /* queued event lines, each ending in \n */
    uint64_t shutdown_deadline;
    bool quit;  /* a quit or a signal came: no restart after this VM, whatever it stopped for */
    bool ready; /* the current machine's `ready` event went out (written by any thread) */
};

int vmm_control_create(const char *path, vmm_control_t **out)
{
    vmm_control_t *c = vdi_xcalloc(1, sizeof(*c));
    sigset_t set;
    int err;

    c->listen_fd = c->ev_fd = c->sig_fd = -1;
    vdi_list_init(&c->clients);
    pthread_mutex_init(&c->ev_lock, NULL);
    c->ev_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->ev_fd < 0)
        goto fail_errno;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    c->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (c->sig_fd < 0)
        goto fail_errno;
    if (path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof(sa.sun_path)) {
            err = -ENAMETOOLONG;
            goto fail;
        }
        strcpy(sa.sun_path, path);
        c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (c->listen_fd < 0)
            goto fail_errno;
        unlink(path); /* a stale socket of an earlier run */
        /* Owner-only from the start: bind under a tight umask, so there is no window in which
         * another user could connect (the supervisor runs as the VMM's user). */
        mode_t old_mask = umask(0177);
        int r = bind(c->listen_fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old_mask);
        if (r < 0 || listen(c->listen_fd, 8) < 0)
            goto fail_errno;
        c->path = vdi_xstrdup(path);
    }
    *out = c;
    return 0;
fail_errno:
    err = -errno;
fail:
    if (c->listen_fd >= 0)
        close(c->listen_fd);
    if (c->ev_fd >= 0)
        close(c->ev_fd);
    if (c->sig_fd >= 0)
        close(c->sig_fd);
    pthread_mutex_destroy(&c->ev_lock);
    free(c);
    return err;
}

static void client_free(vmm_control_t *c, struct client *cl)
{
    vdi_list_remove(&cl->link);
    close(cl->fd);
    vdi_buf_free(&cl->in);
    vdi_buf_free(&cl->out);
    free(cl);
    c->nclients--;
}

static void client_flush(struct client *cl)
{
    while (cl->out.len && !cl->dead) {
        ssize_t w = send(cl->fd, cl->out.data, cl->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w <= 0) {
            cl->dead = true;
            break;
        }
        vdi_buf_consume(&cl->out, (size_t)w);
    }
}

static void client_send(struct client *cl, const char *line, size_t len)
{
    if (cl->dead)
        return;
    if (cl->out.len + len > MAX_OUTBUF || vdi_buf_append(&cl->out, line, len) < 0) {
        VDI_LOG_WARN_RL("control client does not read its replies; dropping it");
        cl->dead = true;
        return;
    }
    client_flush(cl);
}

/* Move queued events to every client's output. */
static void deliver_events(vmm_control_t *c)
{
    uint64_t n;
    vdi_buf_t ev = VDI_BUF_INIT;
    if (read(c->ev_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        VDI_LOG_WARN("control: event queue read failed: %s", strerror(errno));
    pthread_mutex_lock(&c->ev_lock);
    ev = c->events;
    c->events = (vdi_buf_t)VDI_BUF_INIT;
    pthread_mutex_unlock(&c->ev_lock);
    if (ev.len) {
        vdi_list_t *it, *tmp;
        vdi_list_foreach_safe(it, tmp, &c->clients)
        {
            client_send(vdi_list_entry(it, struct client, link), (const char *)ev.data, ev.len);
        }
    }
    vdi_buf_free(&ev);
}

void vmm_control_event(vmm_control_t *c, enum vmm_event ev, const char *reason)
{
    const char *event = vmm_event_name(ev);
    VDI_ASSERT(event);
    if (ev == VMM_EVENT_READY)
        __atomic_store_n(&c->ready, true, __ATOMIC_RELEASE);
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string(event));
    if (reason)
        json_object_set_new(o, "reason", json_string(reason));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        return;
    pthread_mutex_lock(&c->ev_lock);
    if (vdi_buf_append(&c->events, s, strlen(s)) < 0 || vdi_buf_append(&c->events, "\n", 1) < 0)
        VDI_LOG_WARN_RL("control: event %s lost (out of memory)", event);
    pthread_mutex_unlock(&c->ev_lock);
    free(s);
    uint64_t one = 1;
    if (write(c->ev_fd, &one, sizeof(one)) < 0)
        VDI_LOG_WARN_RL("control: cannot wake the event queue: %s", strerror(errno));
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    long size = 0, res = 0;
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2)
        res = -1;
    fclose(f);
    return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

static json_t *error_reply(const char *fmt, ...) VDI_PRINTF(1, 2);
static json_t *error_reply(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_object_set_new(o, "ok", json_false());
    json_object_set_new(o, "error", json_string(buf));
    return o;
}

void vmm_control_new_machine(vmm_control_t *c)
{
    __atomic_store_n(&c->ready, false, __ATOMIC_RELEASE);
}

static void status_reply(vmm_control_t *c, const struct vmm_control_ops *ops, void *ctx,
                         json_t *rep)
{
    struct vmm_status st = {.state = VMM_RUN_STOPPED};
    if (ops)
        ops->status(ctx, &st);
    st.ready = __atomic_load_n(&c->ready, __ATOMIC_ACQUIRE);
    json_object_set_new(rep, "state", json_string(vmm__run_state_name(st.state)));
    json_object_set_new(rep, "ready", json_boolean(st.ready));
    if (ops) {
        json_object_set_new(rep, "uptime_ms", json_integer((json_int_t)st.uptime_ms));
        json_object_set_new(rep, "vcpus", json_integer(st.vcpus));
        json_object_set_new(rep, "memory_mib", json_integer((json_int_t)st.memory_mib));
    }
    json_object_set_new(rep, "rss_kib", json_integer(rss_kib()));
    if (ops && ops->agent_status)
        ops->agent_status(ctx, &st.agent);
    if (!st.agent.present) {
        json_object_set_new(rep, "agent", json_null());
        return;
    }
    json_object_set_new(rep, "agent",
                        json_pack("{s:b, s:b, s:s, s:s, s:i, s:I}", "connected", st.agent.connected,
                                  "up", st.agent.up, "name", st.agent.name, "caps", st.agent.caps,
                                  "heartbeat_s", (int)st.agent.heartbeat_s, "last_ms_ago",
                                  (json_int_t)st.agent.last_ms_ago));
}

/* `message`: the guest agent shows a text to the user. */
static json_t *message_request(json_t *req, const struct vmm_control_ops *ops, void *ctx)
{
    json_t *t = json_object_get(req, "text"), *sec = json_object_get(req, "seconds");
    json_int_t secs = 30;
    if (!json_is_string(t) || json_string_length(t) == 0 ||
        json_string_length(t) > VMM_AGENT_TEXT_MAX ||
        memchr(json_string_value(t), 0, json_string_length(t)))
        return error_reply("\"text\" must be a string of 1 to %d bytes (UTF-8, no NUL)",
                           VMM_AGENT_TEXT_MAX);
    if (sec && (!json_is_integer(sec) || json_integer_value(sec) < 1 ||
                json_integer_value(sec) > VMM_AGENT_MESSAGE_MAX_S))
        return error_reply("\"seconds\" must be an integer from 1 to %d", VMM_AGENT_MESSAGE_MAX_S);
    if (sec)
        secs = json_integer_value(sec);
    if (!ops)
        return error_reply("no virtual machine is running");
    int err = ops->agent_message ? ops->agent_message(ctx, json_string_value(t), (unsigned)secs)
                                 : -ENOTCONN;
    switch (err) {
    case 0: {
        json_t *rep = json_object();
        json_object_set_new(rep, "ok", json_true());
        return rep;
    }
    case -ENOTCONN:
        return error_reply("no guest agent is connected");
    case -EOPNOTSUPP:
        return error_reply("the guest agent does not show messages");
    case -ENOBUFS:
        return error_reply("the guest agent is not reading what it is sent");
    default:
        return error_reply("message not sent: %s", vdi_strerror(err));
    }
}

void vmm_control_handle(vmm_control_t *c, const struct vmm_control_ops *ops, void *ctx,
                        const char *line, char **reply)
{
    json_error_t jerr;
    json_t *req = json_loads(line, JSON_REJECT_DUPLICATES, &jerr), *rep;
    const char *cmd;

    if (!req) {
        rep = error_reply("malformed JSON: %s", jerr.text);
        goto out;
    }
    if (!json_is_object(req)) {
        rep = error_reply("a request is a JSON object");
        goto out;
    }
    cmd = json_string_value(json_object_get(req, "cmd"));
    if (!cmd) {
        rep = error_reply("the request has no \"cmd\" string");
        goto out;
    }
    rep = json_object();
    json_object_set_new(rep, "ok", json_true());
    if (!strcmp(cmd, vmm_cmd_name(VMM_CMD_STATUS))) {
        status_reply(c, ops, ctx, rep);
    } else if (!strcmp(cmd, vmm_cmd_name(VMM_CMD_PAUSE)) ||
               !strcmp(cmd, vmm_cmd_name(VMM_CMD_RESUME))) {
        if (!ops) {
            json_decref(rep);
            rep = error_reply("no virtual machine is running");
        } else if (!strcmp(cmd, vmm_cmd_name(VMM_CMD_PAUSE))) {
            ops->pause(ctx);
        } else {
            ops->resume(ctx);
        }
    } else if (!strcmp(cmd, vmm_cmd_name(VMM_CMD_SHUTDOWN))) {
        json_t *t = json_object_get(req, "timeout_ms");
        json_int_t ms = VMM_SHUTDOWN_TIMEOUT_DEFAULT_MS;
        if (t && (!json_is_integer(t) || json_integer_value(t) < 0 ||
                  json_integer_value(t) > VMM_SHUTDOWN_TIMEOUT_MAX_MS)) {
            json_decref(rep);
            rep = error_reply("\"timeout_ms\" must be an integer from 0 to %u",
                              VMM_SHUTDOWN_TIMEOUT_MAX_MS);
            goto out;
        }
        if (t)
            ms = json_integer_value(t);
        if (!ops) {
            json_decref(rep);
            rep = error_reply("no virtual machine is running");
            goto out;
        }
        if (ops->paused(ctx))
            ops->resume(ctx); /* a paused guest cannot answer the power button */
        int err = ops->power_button(ctx);
        json_object_set_new(rep, "guest_notified", json_boolean(err == 0));
        uint64_t deadline = vdi_now_ms() + (uint64_t)ms;
        if (!c->shutdown_deadline || deadline < c->shutdown_deadline)
            c->shutdown_deadline = deadline ? deadline : 1;
        if (ms == 0)
            ops->request_stop(ctx, "shutdown requested with no deadline");
    } else if (!strcmp(cmd, vmm_cmd_name(VMM_CMD_MESSAGE))) {
        json_decref(rep);
        rep = message_request(req, ops, ctx);
    } else if (!strcmp(cmd, vmm_cmd_name(VMM_CMD_QUIT))) {
        c->quit = true;
        if (ops)
            ops->request_stop(ctx, "quit from the control socket");
    } else {
        json_decref(rep);
        rep = error_reply("unknown command \"%.64s\"", cmd);
    }
out:
    if (req && json_is_object(req) && json_object_get(req, "id"))
        json_object_set(rep, "id", json_object_get(req, "id"));
    json_decref(req);
    *reply = json_dumps(rep, JSON_COMPACT);
    json_decref(rep);
    if (!*reply)
        *reply = vdi_xstrdup("{\"ok\":false,\"error\":\"internal error\"}");
}

static void client_read(vmm_control_t *c, struct client *cl, const struct vmm_control_ops *ops,
                        void *ctx)
{
    char buf[4096];
    for (;;) {
        ssize_t r = recv(cl->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (r <= 0) {
            cl->dead = true;
            return;
        }
        if (vdi_buf_append(&cl->in, buf, (size_t)r) < 0) {
            cl->dead = true;
            return;
        }
        uint8_t *nl;
        if (cl->skipping) {
            nl = memchr(cl->in.data, '\n', cl->in.len);
            if (!nl) {
                vdi_buf_reset(&cl->in);
                continue;
            }
            vdi_buf_consume(&cl->in, (size_t)(nl - cl->in.data) + 1);
            cl->skipping = false;
        }
        while (!cl->dead && (nl = memchr(cl->in.data, '\n', cl->in.len))) {
            size_t n = (size_t)(nl - cl->in.data);
            char *line = vdi_xmalloc(n + 1), *reply;
            memcpy(line, cl->in.data, n);
            line[n] = 0;
            vdi_buf_consume(&cl->in, n + 1);
            if (n && line[n - 1] == '\r')
                line[n - 1] = 0;
            if (line[0]) {
                vmm_control_handle(c, ops, ctx, line, &reply);
                client_send(cl, reply, strlen(reply));
                client_send(cl, "\n", 1);
                free(reply);
            }
            free(line);
        }
        if (cl->in.len > MAX_LINE) {
            /* Answer once, then drop bytes up to the next newline; the connection stays. */
            static const char e[] = "{\"ok\":false,\"error\":\"line too long\"}\n";
            client_send(cl, e, sizeof(e) - 1);
            vdi_buf_reset(&cl->in);
            cl->skipping = true;
        }
    }
}

static void accept_clients(vmm_control_t *c)
{
    for (;;) {
        int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                VDI_LOG_WARN_RL("control: accept failed: %s", strerror(errno));
            return;
        }
        if (c->nclients >= MAX_CLIENTS) {
            static const char e[] = "{\"ok\":false,\"error\":\"too many clients\"}\n";
            if (send(fd, e, sizeof(e) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                VDI_LOG_DEBUG("control: refusing a client: %s", strerror(errno));
            close(fd);
            continue;
        }
        struct client *cl = vdi_xcalloc(1, sizeof(*cl));
        cl->fd = fd;
        vdi_list_push_tail(&c->clients, &cl->link);
        c->nclients++;
    }
}

static void reap(vmm_control_t *c)
{
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &c->clients)
    {
        struct client *cl = vdi_list_entry(it, struct client, link);
        if (cl->dead)
            client_free(c, cl);
    }
}

int vmm_control_serve(vmm_control_t *c, int stop_fd, const struct vmm_control_ops *ops, void *ctx)
{
    struct pollfd pfd[4 + MAX_CLIENTS];
    struct client *map[4 + MAX_CLIENTS];
    c->shutdown_deadline = 0;
    for (;;) {
        nfds_t n = 0;
        pfd[n++] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = c->ev_fd, .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = c->sig_fd, .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = c->listen_fd, .events = POLLIN};
        vdi_list_t *it, *tmp;
        vdi_list_foreach_safe(it, tmp, &c->clients)
        {
            struct client *cl = vdi_list_entry(it, struct client, link);
            map[n] = cl;
            pfd[n++] = (struct pollfd){
                .fd = cl->fd,
                .events = (short)(POLLIN | (cl->out.len ? POLLOUT : 0)),
            };
        }
        int timeout = -1;
        if (c->shutdown_deadline) {
            uint64_t now = vdi_now_ms();
            timeout = now >= c->shutdown_deadline ? 0 : (int)(c->shutdown_deadline - now);
        }
        int r = poll(pfd, n, timeout);
        if (r < 0 && errno != EINTR) {
            VDI_LOG_ERR("control: poll failed: %s", strerror(errno));
            return -errno;
        }
        if (c->shutdown_deadline && vdi_now_ms() >= c->shutdown_deadline) {
            c->shutdown_deadline = 0;
            if (ops)
                ops->request_stop(ctx, "the guest did not power off before the shutdown deadline");
        }
        if (r <= 0)
            continue;
        if (pfd[2].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(c->sig_fd, &si, sizeof(si)) == sizeof(si)) {
                VDI_LOG_INFO("signal %u: stopping", si.ssi_signo);
                c->quit = true;
                if (ops)
                    ops->request_stop(ctx, "stopped by a signal");
            }
        }
        if (pfd[1].revents & POLLIN)
            deliver_events(c);
        if (pfd[3].revents & POLLIN)
            accept_clients(c);
        for (nfds_t i = 4; i < n; i++) {
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
                client_read(c, map[i], ops, ctx);
            if (pfd[i].revents & POLLOUT)
                client_flush(map[i]);
        }
        reap(c);
        if (pfd[0].revents & POLLIN)
            return 0;
    }
}

void vmm_control_flush(vmm_control_t *c, unsigned timeout_ms)
{
    uint64_t end = vdi_now_ms() + timeout_ms;
    deliver_events(c);
    for (;;) {
        struct pollfd pfd[MAX_CLIENTS];
        nfds_t n = 0;
        vdi_list_t *it, *tmp;
        reap(c);
        vdi_list_foreach_safe(it, tmp, &c->clients)
        {
            struct client *cl = vdi_list_entry(it, struct client, link);
            if (cl->out.len)
                pfd[n++] = (struct pollfd){.fd = cl->fd, .events = POLLOUT};
        }
        uint64_t now = vdi_now_ms();
        if (!n || now >= end)
            return;
        if (poll(pfd, n, (int)(end - now)) <= 0)
            return;
        vdi_list_foreach_safe(it, tmp, &c->clients)
        {
            client_flush(vdi_list_entry(it, struct client, link));
        }
    }
}

void vmm_control_destroy(vmm_control_t *c)
{
    if (!c)
        return;
    vmm_control_flush(c, 1000);
    while (!vdi_list_empty(&c->clients))
        client_free(c, vdi_list_entry(c->clients.next, struct client, link));
    if (c->listen_fd >= 0)
        close(c->listen_fd);
    if (c->path)
        unlink(c->path);
    free(c->path);
    close(c->ev_fd);
    close(c->sig_fd);
    vdi_buf_free(&c->events);
    pthread_mutex_destroy(&c->ev_lock);
    free(c);
}

bool vmm_control_quit_requested(const vmm_control_t *c)
{
    return c->quit;
}
