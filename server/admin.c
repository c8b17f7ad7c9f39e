/* server/admin.c: the admin socket. A unix stream socket (mode 0600, or 0660 for the admin
 * group) speaking JSON lines: each request is one object on one line,
 *
 *   {"cmd": "desktops.list", "args": {"pool": "lab"}}
 *
 * and each gets exactly one reply line, {"ok": true, "result": ...} or
 * {"ok": false, "error": "what went wrong"}. Bad input gets an error reply, never a crash; a line
 * longer than MAX_LINE closes the connection after the reply. A client that does not read its
 * replies stops being read once MAX_QUEUED bytes wait for it (backpressure).
 *
 * The file mode is not the only gate: each connecting peer's credentials (SO_PEERCRED) are
 * checked before a byte of it is read. Root, vdid's own uid, and members of the admin group (the
 * peer's gid, or the group list of its uid's account) get in; anyone else gets one error line and
 * the connection is closed, and the refusal is logged and audited (both rate-limited). The group
 * list comes from NSS (getpwuid_r, getgrouplist), which may block, so it is looked up on libuv's
 * thread pool; the connection is not read until the answer is back.
 *
 * The audit log the admin reads (audit.tail) is also kept here: a timer applies the limits of
 * [vdid] audit_keep, audit_max_rows and audit_coalesce (brk_store_audit_maintain) every
 * AUDIT_UPKEEP_MS, deleting at most AUDIT_BATCH rows a turn and coming back after
 * AUDIT_CATCHUP_MS while there are more, so a long backlog never holds the loop.
 */
#define VDI_LOG_TAG "admin"
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/vdi.h"
#include "server/internal.h"

#define MAX_LINE   (64 * 1024)
#define MAX_QUEUED (4 * 1024 * 1024)
#define MAX_CONNS  64

/* Refusals audited per minute at most (the log line has its own limit). */
#define AUDIT_BURST      10

#define AUDIT_UPKEEP_MS  10000
#define AUDIT_CATCHUP_MS 50
#define AUDIT_BATCH      500

struct srv_admin {
    srv_t *s;
    uv_pipe_t listener;
    vdi_list_t conns;
    unsigned n_conns;
    unsigned open_handles; /* listener + conns not yet closed: free when it reaches 0 */
    bool closing;
    gid_t admin_gid; /* (gid_t)-1: no admin group (root and our own uid only) */
    vdi_ratelimit_t audit_rl;
    uv_timer_t audit_timer; /* the audit log's upkeep */
};

struct peer_check;

struct conn {
    uv_pipe_t pipe;
    srv_admin_t *a;
    vdi_list_t link;
    vdi_buf_t in;
    size_t queued; /* reply bytes not yet written */
    struct ucred peer;
    struct peer_check *check; /* group lookup in flight, or NULL */
    bool allowed;             /* the peer passed the credential check */
    bool reading;
    bool closing;
    bool close_after_write;
};

/* A group-membership lookup on the thread pool. Owned by itself: freed in check_done(). */
struct peer_check {
    uv_work_t req;
    struct conn *c; /* NULL once the connection went away */
    uid_t uid;
    gid_t admin_gid;
    bool member; /* out */
};

struct wreq {
    uv_write_t req;
    struct conn *c;
    size_t len;
    char data[];
};

static void admin_unref(srv_admin_t *a)
{
    VDI_ASSERT(a->open_handles > 0);
    if (--a->open_handles == 0)
        free(a);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = vdi_container_of((uv_pipe_t *)h, struct conn, pipe);
    srv_admin_t *a = c->a;
    vdi_buf_free(&c->in);
    free(c);
    admin_unref(a);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->check) {
        c->check->c = NULL; /* the lookup finishes on its own and finds nobody waiting */
        c->check = NULL;
    }
    vdi_list_remove(&c->link);
    c->a->n_conns--;
    uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    VDI_UNUSED(h);
    VDI_UNUSED(suggested);
    static char chunk[16384]; /* the loop thread reads one connection at a time */
    *buf = uv_buf_init(chunk, sizeof(chunk));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = vdi_container_of(req, struct wreq, req);
    struct conn *c = w->c;
    c->queued -= w->len;
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->close_after_write && c->queued == 0) {
        conn_close(c);
        return;
    }
    if (c->allowed && !c->reading && c->queued < MAX_QUEUED / 2 && !c->close_after_write) {
        c->reading = true;
        uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
    }
}

static void send_reply(struct conn *c, json_t *reply)
{
    char *text = json_dumps(reply, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(reply);
    if (!text) {
        conn_close(c);
        return;
    }
    size_t n = strlen(text);
    struct wreq *w = vdi_xmalloc(sizeof(*w) + n + 1);
    memcpy(w->data, text, n);
    w->data[n] = '\n';
    w->len = n + 1;
    w->c = c;
    free(text);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_written);
    if (rc < 0) {
        free(w);
        conn_close(c);
        return;
    }
    c->queued += w->len;
    if (c->queued >= MAX_QUEUED && c->reading) {
        c->reading = false;
        uv_read_stop((uv_stream_t *)&c->pipe);
    }
}

static json_t *error_reply(const char *fmt, ...) VDI_PRINTF(1, 2);
static json_t *error_reply(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

static void handle_line(struct conn *c, const char *line, size_t len)
{
    json_error_t jerr;
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    if (len == 0)
        return; /* blank lines are allowed (interactive use with socat) */
    json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!req) {
        VDI_LOG_WARN_RL("admin request is not valid JSON: %s", jerr.text);
        send_reply(
            c, error_reply("request is not valid JSON: %s (column %d)", jerr.text, jerr.column));
        return;
    }
    struct srv_caller who = {.uid = c->peer.uid, .gid = c->peer.gid};
    send_reply(c, srv__admin_dispatch(c->a->s, req, &who));
    json_decref(req);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = vdi_container_of((uv_pipe_t *)st, struct conn, pipe);
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0 || c->closing || c->close_after_write)
        return;
    if (vdi_buf_append(&c->in, buf->base, (size_t)nread) < 0) {
        conn_close(c);
        return;
    }
    size_t start = 0;
    for (size_t i = 0; i < c->in.len && !c->closing; i++) {
        if (c->in.data[i] != '\n')
            continue;
        handle_line(c, (const char *)c->in.data + start, i - start);
        start = i + 1;
    }
    if (c->closing)
        return;
    vdi_buf_consume(&c->in, start);
    if (c->in.len > MAX_LINE) {
        VDI_LOG_WARN_RL("admin request longer than %d bytes: closing the connection", MAX_LINE);
        send_reply(c, error_reply("request longer than %d bytes", MAX_LINE));
        c->close_after_write = true;
        uv_read_stop(st);
        c->reading = false;
    }
}

/* ---- who may connect ------------------------------------------------------------------------ */

static const char *admin_group_name(const srv_admin_t *a)
{
    return a->s->cfg->admin_group ? a->s->cfg->admin_group : "";
}

static void allow(struct conn *c)
{
    VDI_LOG_DEBUG("admin connection from uid=%u pid=%d", (unsigned)c->peer.uid, (int)c->peer.pid);
    c->allowed = true;
    c->reading = true;
    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

static void refuse(struct conn *c)
{
    srv_admin_t *a = c->a;
    char why[200], detail[240];
    uint32_t dropped;
    if (a->admin_gid != (gid_t)-1)
        snprintf(why, sizeof(why),
                 "permission denied: uid %u is neither root nor a member of the admin group '%s'",
                 (unsigned)c->peer.uid, admin_group_name(a));
    else
        snprintf(why, sizeof(why),
                 "permission denied: uid %u is not root (no admin group exists: admin_group=%s)",
                 (unsigned)c->peer.uid, admin_group_name(a));
    VDI_LOG_WARN_RL("admin socket: refused uid=%u gid=%u pid=%d: not root, not in admin_group=%s",
                    (unsigned)c->peer.uid, (unsigned)c->peer.gid, (int)c->peer.pid,
                    admin_group_name(a));
    if (vdi_ratelimit_ok(&a->audit_rl, AUDIT_BURST, 60000, &dropped)) {
        snprintf(detail, sizeof(detail), "uid=%u gid=%u pid=%d%s", (unsigned)c->peer.uid,
                 (unsigned)c->peer.gid, (int)c->peer.pid,
                 dropped ? " (and earlier refusals not audited)" : "");
        brk_store_audit(a->s->store, "admin-socket", "admin.refused", 0, NULL, detail);
    }
    send_reply(c, error_reply("%s", why));
    c->close_after_write = true;
}

int srv__uid_groups(uid_t uid, gid_t **groups) /* Thread: any but the loop (NSS may block) */
{
    struct passwd pw, *found = NULL;
    size_t blen = 16384;
    char *buf = vdi_xmalloc(blen);
    int rc, n = 0;
    *groups = NULL;
    while ((rc = getpwuid_r(uid, &pw, buf, blen, &found)) == ERANGE && blen < (1u << 20)) {
        blen *= 2;
        buf = vdi_xrealloc(buf, blen);
    }
    if (rc == 0 && found) {
        int cap = 64, got;
        gid_t *g = vdi_xmalloc(sizeof(*g) * (size_t)cap);
        n = cap;
        /* getgrouplist() returns -1 and the needed count in n when the array is too small. */
        while ((got = getgrouplist(pw.pw_name, pw.pw_gid, g, &n)) < 0 && n > cap && n <= 65536) {
            cap = n;
            g = vdi_xrealloc(g, sizeof(*g) * (size_t)cap);
        }
        if (got < 0) {
            free(g);
            n = 0;
        } else {
            *groups = g;
        }
    }
    free(buf);
    return n;
}

static void check_work(uv_work_t *req) /* Thread: worker (NSS may block) */
{
    struct peer_check *pc = vdi_container_of(req, struct peer_check, req);
    gid_t *groups;
    int n = srv__uid_groups(pc->uid, &groups);
    for (int i = 0; i < n && !pc->member; i++)
        pc->member = groups[i] == pc->admin_gid;
    free(groups);
}

static void check_done(uv_work_t *req, int status)
{
    struct peer_check *pc = vdi_container_of(req, struct peer_check, req);
    struct conn *c = pc->c;
    bool member = status == 0 && pc->member;
    free(pc);
    if (!c)
        return; /* the connection was closed meanwhile */
    c->check = NULL;
    if (member)
        allow(c);
    else
        refuse(c);
}

/* Decide whether the peer of the new connection @c may use the socket (see the top comment). */
static void check_peer(struct conn *c)
{
    srv_admin_t *a = c->a;
    socklen_t len = sizeof(c->peer);
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->peer, &len) < 0) {
        VDI_LOG_WARN_RL("admin socket: peer credentials unknown: %s", strerror(errno));
        c->peer.uid = (uid_t)-1;
        c->peer.gid = (gid_t)-1;
        c->peer.pid = 0;
        refuse(c);
        return;
    }
    if (c->peer.uid == 0 || c->peer.uid == geteuid() ||
        (a->admin_gid != (gid_t)-1 && c->peer.gid == a->admin_gid)) {
        allow(c);
        return;
    }
    if (a->admin_gid == (gid_t)-1) {
        refuse(c);
        return;
    }
    struct peer_check *pc = vdi_xcalloc(1, sizeof(*pc));
    pc->c = c;
    pc->uid = c->peer.uid;
    pc->admin_gid = a->admin_gid;
    int rc = uv_queue_work(a->s->loop, &pc->req, check_work, check_done);
    if (rc < 0) {
        free(pc);
        VDI_LOG_WARN_RL("admin socket: cannot look up uid=%u's groups: %s", (unsigned)c->peer.uid,
                        uv_strerror(rc));
        refuse(c);
        return;
    }
    c->check = pc;
}

static void on_connection(uv_stream_t *server, int status)
{
    srv_admin_t *a = server->data;
    if (status < 0 || a->closing) {
        VDI_LOG_WARN_RL("admin accept: %s", uv_strerror(status));
        return;
    }
    struct conn *c = vdi_xcalloc(1, sizeof(*c));
    c->a = a;
    vdi_list_init(&c->link);
    uv_pipe_init(a->s->loop, &c->pipe, 0);
    a->open_handles++;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
        return;
    }
    vdi_list_push_tail(&a->conns, &c->link);
    a->n_conns++;
    if (a->n_conns > MAX_CONNS) {
        VDI_LOG_WARN_RL("admin: more than %d connections; refusing one", MAX_CONNS);
        send_reply(c, error_reply("too many admin connections"));
        c->close_after_write = true;
        return;
    }
    check_peer(c);
}

static void on_listener_closed(uv_handle_t *h)
{
    admin_unref(h->data);
}

static void on_audit_upkeep(uv_timer_t *t)
{
    srv_admin_t *a = t->data;
    int rc = brk_store_audit_maintain(a->s->store, AUDIT_BATCH);
    if (rc < 0)
        VDI_LOG_WARN_RL("audit log upkeep: %s", vdi_strerror(rc));
    else if (rc > 0)
        VDI_LOG_DEBUG("audit log upkeep: %d old rows deleted", rc);
    uv_timer_start(t, on_audit_upkeep, rc == AUDIT_BATCH ? AUDIT_CATCHUP_MS : AUDIT_UPKEEP_MS, 0);
}

int srv__admin_start(srv_t *s, srv_admin_t **out)
{
    const brk_config_t *cfg = s->cfg;
    srv_admin_t *a = vdi_xcalloc(1, sizeof(*a));
    gid_t gid = (gid_t)-1;
    int rc;

    a->s = s;
    a->admin_gid = (gid_t)-1;
    a->audit_rl = (vdi_ratelimit_t)VDI_RATELIMIT_INIT;
    vdi_list_init(&a->conns);
    if (cfg->admin_group) {
        /* Before the loop runs: getgrnam may block on NSS. */
        struct group *g = getgrnam(cfg->admin_group);
        if (!g && strcmp(cfg->admin_group, VDI_ADMIN_GROUP_DEFAULT) == 0) {
            /* The default need not exist: without it the socket is root's alone. */
            VDI_LOG_WARN("admin_group=%s (the default): no such group; the admin socket is for "
                         "root only",
                         cfg->admin_group);
        } else if (!g) {
            VDI_LOG_ERR("admin_group=%s: no such group", cfg->admin_group);
            free(a);
            return VDI_ECONFIG;
        } else {
            gid = g->gr_gid;
        }
    }
    a->admin_gid = gid;
    uv_pipe_init(s->loop, &a->listener, 0);
    a->listener.data = a;
    a->open_handles = 1;
    /* A socket file left by a vdid that died: we hold the state lock, so nobody serves it. */
    struct stat st;
    if (lstat(cfg->admin_socket, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            VDI_LOG_ERR("admin_socket=%s exists and is not a socket; refusing to replace it",
                        cfg->admin_socket);
            rc = -EEXIST;
            goto err_close;
        }
        unlink(cfg->admin_socket);
    }
    /* Bind under a tight umask so the socket is never reachable with looser permissions. */
    mode_t old = umask(0177);
    rc = uv_pipe_bind(&a->listener, cfg->admin_socket);
    umask(old);
    if (rc < 0) {
        VDI_LOG_ERR("admin_socket=%s cannot bind: %s", cfg->admin_socket, uv_strerror(rc));
        goto err_close;
    }
    if (gid != (gid_t)-1) {
        if (chown(cfg->admin_socket, (uid_t)-1, gid) < 0 || chmod(cfg->admin_socket, 0660) < 0) {
            rc = -errno;
            VDI_LOG_ERR("admin_socket=%s cannot give it to group %s: %s", cfg->admin_socket,
                        cfg->admin_group, vdi_strerror(rc));
            goto err_close;
        }
    }
    rc = uv_listen((uv_stream_t *)&a->listener, 16, on_connection);
    if (rc < 0) {
        VDI_LOG_ERR("admin_socket=%s cannot listen: %s", cfg->admin_socket, uv_strerror(rc));
        goto err_close;
    }
    brk_audit_limits_t lim = {.keep_s = cfg->audit_keep_s,
                              .max_rows = cfg->audit_max_rows,
                              .coalesce_s = cfg->audit_coalesce_s};
    brk_store_audit_set_limits(s->store, &lim);
    uv_timer_init(s->loop, &a->audit_timer);
    a->audit_timer.data = a;
    a->open_handles++;
    uv_timer_start(&a->audit_timer, on_audit_upkeep, AUDIT_CATCHUP_MS, 0);
    *out = a;
    return 0;
err_close:
    a->closing = true;
    uv_close((uv_handle_t *)&a->listener, on_listener_closed);
    return rc;
}

void srv__admin_close(srv_admin_t *a)
{
    if (!a || a->closing)
        return;
    a->closing = true;
    unlink(a->s->cfg->admin_socket);
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &a->conns)
    {
        conn_close(vdi_list_entry(it, struct conn, link));
    }
    uv_close((uv_handle_t *)&a->audit_timer, on_listener_closed);
    uv_close((uv_handle_t *)&a->listener, on_listener_closed);
}
