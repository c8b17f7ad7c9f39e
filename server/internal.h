/* server/internal.h: what vdid's files share (prefix srv__). vdid is a program, not a library:
 * nothing outside server/ and tests/unit/server/ includes this file.
 *
 * Thread: everything here runs on vdid's loop thread unless a comment says otherwise.
 */
#ifndef VDI_SERVER_INTERNAL_H
#define VDI_SERVER_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "broker/brk.h"

typedef struct srv_admin srv_admin_t;
typedef struct srv_vm srv_vm_t;
typedef struct srv_login srv_login_t;
typedef struct srv_session srv_session_t;
typedef struct srv_gateway srv_gateway_t;
struct auth;

/* Listeners (listen.c). Parse a configured "HOST:PORT", "[V6]:PORT" or "localhost:PORT" (config
 * key @key, for the message) into @ss with vdi_hostport_addr(), as the config check does, with the
 * host part in @host for logs. Returns 0 or VDI_ECONFIG (logged). */
int srv__listen_addr(const char *key, const char *listen, struct sockaddr_storage *ss, char *host,
                     size_t hostlen);
/* The port @tcp is bound to (0 if unknown). */
int srv__bound_port(const uv_tcp_t *tcp);

/* The gate in front of a listener: connections that have not logged in yet, at most @max_total
 * in all and @max_per_addr from one source address (IPv4 address, IPv6 /64); [vdid]
 * preauth_max and preauth_max_per_addr. Each admitted connection holds a slot until its owner
 * gives it back (logged in, or closed). @name ("rfb", "web") names the listener in logs. */
typedef struct srv_gate srv_gate_t;           /* opaque; one per listener */
typedef struct srv_gate_slot srv_gate_slot_t; /* one admitted connection's place */
typedef struct {
    uint32_t open;          /* slots held now */
    uint32_t addrs;         /* distinct source addresses (IPv6: /64s) holding them */
    uint64_t accepted;      /* admitted since start */
    uint64_t refused_addr;  /* refused: their address was at max_per_addr */
    uint64_t refused_total; /* refused: the listener was at max_total */
} srv_gate_stats_t;

/* A new gate (0 caps count as 1). The caller owns it: srv__gate_destroy() once every slot is
 * back. */
srv_gate_t *srv__gate_create(const char *name, uint32_t max_total, uint32_t max_per_addr);
void srv__gate_destroy(srv_gate_t *g); /* NULL: nothing */
/* Accept the connection @server signalled and admit it. 0: *out is the connected handle
 * (allocated with malloc, not reading; the caller owns it) and *slot its place. Otherwise the
 * connection was reset at once and freed: -EBUSY (a cap was reached; counted and logged,
 * rate-limited), or the error of accepting it. Thread: loop only. */
int srv__gate_accept(srv_gate_t *g, uv_stream_t *server, uv_tcp_t **out, srv_gate_slot_t **slot);
/* The counting part of srv__gate_accept() for a connection from @peer (sockaddr_in or _in6):
 * 0 with *slot, -EBUSY (refused, counted, logged) or -EAFNOSUPPORT. */
int srv__gate_admit(srv_gate_t *g, const struct sockaddr *peer, srv_gate_slot_t **slot);
/* Give a slot back (the connection logged in or closed). NULL: nothing. */
void srv__gate_release(srv_gate_slot_t *slot);
void srv__gate_stats(const srv_gate_t *g, srv_gate_stats_t *out);

/* ---- splice.c: a client's TLS stream joined to a desktop's display socket ------------------ */
/* Bytes from the client go to the display and back, with backpressure both ways: when more than
 * SRV_SPLICE_HIGH_WATER bytes wait to be written to one side, reading the other side stops until
 * that backlog is below SRV_SPLICE_LOW_WATER. Without framing hooks bytes pass as they are (the
 * RFB gateway); with them the client side carries frames (the browser console's WebSocket). */
#define SRV_SPLICE_HIGH_WATER (1024 * 1024)
#define SRV_SPLICE_LOW_WATER  (256 * 1024)

typedef struct srv_splice srv_splice_t;
struct auth_tls;

enum srv_splice_end {
    SRV_SPLICE_CLIENT_CLOSED,  /* the client closed (TLS close_notify or TCP EOF) */
    SRV_SPLICE_CLIENT_ERROR,   /* reading or writing the client failed, or its framing did */
    SRV_SPLICE_DISPLAY_CLOSED, /* the display socket closed, failed or refused a write */
    SRV_SPLICE_NOMEM,          /* no memory for bytes in flight */
};

typedef struct {
    /* Required. The splice ended: @why, with @err the cause (0 for an orderly close). Nothing
     * more is read from either side; the owner calls srv__splice_close() (from here or later).
     * Runs at most once, possibly from inside a srv__splice_* call. */
    void (*end)(void *ctx, enum srv_splice_end why, int err);
    /* Optional. Bytes came from the client (@data, @len: borrowed), before any framing hook. */
    void (*client_input)(void *ctx, const uint8_t *data, size_t len);
    /* Framing of the client side: both or neither. from_client gets what the client sent
     * (borrowed) and passes the payload on with srv__splice_to_display(); from_display gets what
     * the display sent (borrowed) and sends it framed with srv__splice_to_client(). Each returns
     * 0, or a negative error that ends the splice (SRV_SPLICE_CLIENT_ERROR). Either may call
     * srv__splice_close(). */
    int (*from_client)(void *ctx, const uint8_t *data, size_t len);
    int (*from_display)(void *ctx, const uint8_t *data, size_t len);
} srv_splice_ops_t;

/* Join @tls (handshake done) and @display (connected; allocated with malloc) and start reading
 * both; whatever read callbacks the caller had on them are replaced. On success *out holds the
 * splice, which owns both sides from then on (srv__splice_close() closes them and frees
 * @display); it borrows @ops (static) and @ctx. Returns 0, or the error of starting to read a
 * side (then nothing was taken over and no callback runs). */
int srv__splice_start(struct auth_tls *tls, uv_pipe_t *display, const srv_splice_ops_t *ops,
                      void *ctx, srv_splice_t **out);
/* Bytes that came from the client / the display before the splice started: they take the same
 * way as bytes read later (framing, the other side, backpressure). */
void srv__splice_client_bytes(srv_splice_t *sp, const uint8_t *data, size_t len);
void srv__splice_display_bytes(srv_splice_t *sp, const uint8_t *data, size_t len);
/* For the framing hooks (and a close frame before srv__splice_close()): write @len bytes
 * (copied) to the display / the client. Returns 0, or a negative error, which has already ended
 * the splice (or -EPIPE once it is closing). */
int srv__splice_to_display(srv_splice_t *sp, const uint8_t *data, size_t len);
int srv__splice_to_client(srv_splice_t *sp, const uint8_t *data, size_t len);
/* Stop, close the display socket at once and the client once its queued bytes are out (at most
 * auth_tls_close()'s 5 s), then free @sp and call @cb(@ctx) (@cb may be NULL). No ops callback
 * runs after this call. NULL @sp, or a second call: nothing. */
void srv__splice_close(srv_splice_t *sp, void (*cb)(void *ctx), void *ctx);

/* The daemon. One per process; it borrows nothing and owns everything below. */
typedef struct srv {
    uv_loop_t *loop;
    brk_config_t *cfg;
    brk_store_t *store;
    char *config_path;
    uint64_t started_ms;
    uint64_t memory_budget; /* resolved: bytes desktops may use, overcommit included */
    uv_signal_t sig_term, sig_int;
    srv_admin_t *admin;
    struct auth *auth;           /* auth/: TLS, PAM, VeNCrypt */
    struct img_catalog *catalog; /* golden-images/: STATE_DIR/images */
    struct srv_catq *catq;       /* catq.c: the catalogue worker (srv__daemon_run() to its close) */
    struct srv_catq *patchq;     /* another, for image patches (patch.c): their copies and checks
                                  * take long and must not hold up desktops' clones */
    vdi_list_t patches;          /* patch.c: struct srv_patch, newest first */
    uint32_t patch_seq;          /* the last patch id's number (pN) */
    struct srv_rollout *rollouts; /* rollout.c: one per pool, in config order */
    bool rollout_polling;         /* a read of the images' current versions is on its way */
    uint64_t rollout_polled;      /* ms: when the last one was asked for */
    uint64_t rollout_stepped;     /* ms: when the rollouts last advanced */
    uint64_t rollout_gen;         /* bumped at each rollback: older reads are stale */
    srv_gateway_t *gateway;
    struct srv_web *web;         /* the web portal (internal-web.h); NULL when web_listen = off */
    struct srv_metrics *metrics; /* metrics.c: NULL when metrics_listen = off (or not bound) */
    vdi_list_t vms;              /* srv_vm_t: every desktop that is not gone or failed */
    vdi_list_t logins;           /* srv_login_t waiting for a desktop */
    uv_timer_t tick_timer;       /* supervisor.c: deadlines, retries, polls, spares */
    uv_timer_t connect_timer;    /* supervisor.c: the next VMM control-socket connect that is due */
    uint64_t connect_due;        /* ms: when connect_timer fires (0: not armed) */
    uv_timer_t deliver_timer;    /* login.c: login results, delivered from the loop */
    uint64_t last_spares;
    uint64_t *spare_retry_at; /* per pool (config order): no new spare before this (ms) */
    bool spares_wanted;
    char *vmm_path;              /* cfg->vmm, or vdi-vmm next to vdid */
    char *jail_path;             /* vdi-jail next to vdid (or in ../lib/vdi/), when jail = yes */
    struct srv_cgroups *cgroups; /* cgroup.c: the hierarchy desktops' cgroups live in (jail) */
    unsigned kvm_gid;            /* /dev/kvm's group, a jailed VMM's supplementary group */
    struct srv_net *net;         /* net.c: desktop networks (bridges, rules, dnsmasq) */
    bool vms_started;
    int lock_fd;
    bool stopping;
} srv_t;

/* ---- daemon.c ----------------------------------------------------------------------------- */
/* ---- Desktop networks (net.c; docs/network.md) ---------------------------------------------- */
typedef struct srv_net srv_net_t;
/* Does this host have what @cfg's pools' networks need (their bridges, the uplink, dnsmasq,
 * /dev/net/tun)? 0, or VDI_ECONFIG with the reason in @why. For --check-config and start. */
int srv__net_check(const brk_config_t *cfg, char *why, size_t whylen);
/* Set the host up for the pools' networks and remove what vdid made for pools that are gone
 * (s->net). Blocking; at start, before the desktops are re-attached. 0, or a negative code
 * (logged). */
int srv__net_init(srv_t *s);
/* Stop following the dnsmasq instances (they keep serving) and free s->net. */
void srv__net_close(srv_t *s);

/* Create the state and run directories, take the state lock, open the store and sync the pools.
 * Takes ownership of @cfg. Blocking (before the loop runs). Errors are logged. */
int srv__daemon_init(srv_t *s, uv_loop_t *loop, brk_config_t *cfg, const char *config_path);
/* Start the listeners and the admin socket, tell systemd we are ready, run until SIGTERM or
 * SIGINT, then close everything. VMMs keep running: a restarted vdid re-attaches to them. */
int srv__daemon_run(srv_t *s);
void srv__daemon_fini(srv_t *s);
/* Stop the loop (from a signal or an admin command). */
void srv__daemon_stop(srv_t *s, const char *why);
/* sd_notify() when built with libsystemd and run by systemd; otherwise nothing. */
void srv__notify(const char *state);
/* Host memory (MemTotal) in bytes, or -errno. */
int srv__host_memory(uint64_t *out);

/* ---- admin.c: the admin socket (JSON lines) ------------------------------------------------ */
/* Bind the admin socket at cfg->admin_socket (a stale socket file is replaced), mode 0660 with
 * group cfg->admin_group, or 0600 when that group is the default and does not exist. Each peer
 * must be root, vdid's uid or a member of the group (SO_PEERCRED, then its account's groups,
 * looked up on the thread pool); others get one error line and are disconnected. Returns 0 or
 * -errno/VDI_ECONFIG (logged). Thread: loop only. */
int srv__admin_start(srv_t *s, srv_admin_t **out);
/* Close the listener and every connection; frees @a once libuv is done with it. */
void srv__admin_close(srv_admin_t *a);
/* The groups of @uid's account, as getgrouplist() gives them (its primary group included): their
 * count, with *groups malloc'd (NULL and 0 when the uid has no account or NSS fails). Blocks on
 * NSS: never on the loop. */
int srv__uid_groups(uid_t uid, gid_t **groups);
/* Who sent an admin request: a peer of the admin socket, by its credentials (files it names,
 * like a patch's script, are read only where that uid could read them). The web view's admin
 * passes NULL: no identity on this host, so no host paths. */
struct srv_caller {
    uid_t uid;
    gid_t gid;
};
/* Run one request (a parsed JSON object) from @who and return the reply object (new reference):
 * {"ok":true,"result":...} or {"ok":false,"error":"message"}. Never fails. */
json_t *srv__admin_dispatch(srv_t *s, json_t *req, const struct srv_caller *who);

/* ---- gateway.c: the RFB listener ------------------------------------------------------------ */
/* Listen on cfg->listen; logins go through s->auth, then the broker, then the desktop's display.
 * Returns 0 or a uv/VDI_ECONFIG error (logged). */
int srv__gateway_start(srv_t *s, srv_gateway_t **out);
/* Stop listening, abort logins in progress, close every connection (their sessions end). */
void srv__gateway_close(srv_gateway_t *gw);
/* The port actually bound (listen = HOST:0 picks one). */
int srv__gateway_port(const srv_gateway_t *gw);
/* Its gate (connections before login), for the counters; NULL with a NULL @gw. */
const srv_gate_t *srv__gateway_gate(const srv_gateway_t *gw);

/* ---- Desktops and their VMMs (supervisor.c, desktop.c, desktop-prep.c, login.c; their shared
 * parts in desktop-internal.h) ------------------------------------------------------------------ */
/* The VMM of a desktop is `vdi-vmm --control RUN_DIR/vm/ID/control.sock --display
 * RUN_DIR/vm/ID/display.sock ...`, started with uv_spawn in its own session and process group
 * (so it outlives vdid), its output in STATE_DIR/desktops/ID/vmm.log. vdid follows it through
 * the control socket (vmm/vmm.h: the `status` reply, events ready, shutdown, reboot, crashed)
 * and its exit. */

/* Re-attach to the desktops in the store (VMMs that kept running while vdid was down), mark the
 * ones whose VMM is gone failed, close sessions that died with the previous vdid, and start
 * keeping spares. Returns 0 or a store error. */
int srv__vms_start(srv_t *s);
/* Stop following the VMMs (they keep running) and fail waiting logins. */
void srv__vms_stop(srv_t *s);
/* ---- rfb-input.c: which of a viewer's RFB bytes are a person's input (idle_timeout) --------- */
typedef struct {
    uint8_t hdr[12]; /* the current message's first bytes */
    size_t have;     /* ... how many */
    uint64_t skip;   /* bytes still to pass over (a handshake, the rest of a message) */
    bool lost;       /* a message type we cannot frame came: everything counts from then on */
    bool have_ptr;   /* the last pointer event: */
    uint16_t px, py;
    uint8_t pb;
} srv_rfbin_t;
/* Start on a stream whose first @handshake bytes are not messages (the gateway splices from
 * ClientInit on: 1; the browser console from the protocol version on: 12 + 1 + 1). */
void srv__rfbin_init(srv_rfbin_t *f, size_t handshake);
/* Follow @len more bytes; true when they finished a key event, a pointer event that moved or
 * clicked, a cut text or a QEMU key event (or when the framing was lost). Thread: any (one
 * stream each). */
bool srv__rfbin_feed(srv_rfbin_t *f, const uint8_t *data, size_t len);

/* ---- metrics.c: the Prometheus endpoint (docs/metrics.md) ---------------------------------------- */
typedef struct srv_metrics srv_metrics_t;
enum srv_logon_phase {
    SRV_LOGON_AUTH,    /* TCP accept to the password checked */
    SRV_LOGON_DESKTOP, /* then a desktop: placement, clone, boot (or a spare at once) */
    SRV_LOGON_DISPLAY, /* then the desktop's RFB handshake, up to the splice */
    SRV_LOGON_TOTAL,
    SRV_LOGON__COUNT,
};
enum srv_metric {
    SRV_METRIC_LOGONS, /* counted by srv__metrics_logon() */
    SRV_METRIC_LOGON_REFUSED,
    SRV_METRIC_AUTH_FAILED,
    SRV_METRIC_AUTH_LOCKOUT,
    SRV_METRIC__COUNT,
};
/* Listen on [vdid] metrics_listen (NULL *out when off, or when the address cannot be bound: that
 * is logged, not fatal). Returns 0 or VDI_ECONFIG. Thread: loop. */
int srv__metrics_start(srv_t *s, srv_metrics_t **out);
void srv__metrics_close(srv_metrics_t *m); /* NULL is fine; frees it once its handles closed */
int srv__metrics_port(const srv_metrics_t *m);
/* One successful RFB logon's phases in ms; a count of @c. No-ops while metrics are off. */
void srv__metrics_logon(srv_t *s, const uint64_t ms[SRV_LOGON__COUNT]);
void srv__metrics_count(srv_t *s, enum srv_metric c);
/* Append the exposition text to @b (s->metrics must be set). 0 or a store error. */
int srv__metrics_render(srv_t *s, vdi_buf_t *b);

srv_vm_t *srv__vm_find(srv_t *s, int64_t id);
/* What the desktop's VMM last said of its guest agent ("" before anything), and whether it is up
 * (*up). Valid until the next loop turn. */
const char *srv__vm_agent(const srv_vm_t *vm, bool *up);
int64_t srv__vm_id(const srv_vm_t *vm);
/* The desktop's display socket (RFB 3.8, security None). Owned by @vm. */
const char *srv__vm_display(const srv_vm_t *vm);
/* Admin: recycle (graceful: shutdown, then kill after shutdown_timeout) or destroy (@hard: kill
 * the VMM's process group now) desktop @id; its sessions are closed. Returns 0, -ENOENT or
 * VDI_ESTATE (already going). */
int srv__vm_recycle(srv_t *s, int64_t id, bool hard, const char *why);
/* Schedule a check that every pool has its min_spares ready or coming (soon, not now). */
void srv__spares_kick(srv_t *s);

/* ---- Logins ----------------------------------------------------------------------------------- */
/* @status 0: @vm is the user's desktop, running and marked in-use; open a session on it now.
 * Otherwise @msg says why, in words for the user ("no desktop available: the host is full"). */
typedef void (*srv_login_cb)(int status, srv_vm_t *vm, const char *msg, void *ctx);
/* Find or make @user's desktop (see brk_pick()). @cb runs exactly once, later, unless the login
 * is cancelled first. Returns 0 or -errno (then @cb never runs). */
int srv__login(srv_t *s, const char *user, const char *const *groups, size_t n_groups,
               srv_login_cb cb, void *ctx, srv_login_t **out);
/* The client went away while waiting: @cb will not run. The desktop, if one is being made, is
 * kept (it becomes the user's on their next login, or is recycled after the disconnect timeout). */
void srv__login_cancel(srv_login_t *l);

/* ---- Sessions ---------------------------------------------------------------------------------- */
/* A session ends from inside vdid (reconnect elsewhere, admin, desktop gone, idle): @kick asks its
 * owner (the gateway) to close the connection, then the owner calls srv__session_close(). */
typedef void (*srv_session_kick_fn)(void *ctx, const char *reason);
/* Open a session of @user from @peer on @vm (which srv_login_cb handed over). An earlier session
 * on the same desktop is kicked ("reconnected from PEER"). Returns 0 or a store error. */
int srv__session_open(srv_vm_t *vm, const char *user, const char *peer, srv_session_kick_fn kick,
                      void *ctx, srv_session_t **out);
/* The session ended (@reason: "client closed", "logout", ...): the record is closed and the
 * desktop becomes disconnected (its disconnect timeout starts). Frees @se. */
void srv__session_close(srv_session_t *se, const char *reason);
/* Client input seen now (for idle_timeout). */
void srv__session_activity(srv_session_t *se);
/* Rollouts (rollout.c): seconds until @vm is recycled to move to its pool's new image version
 * (logoff = force: its user is being warned), 0 when no such move is planned. */
uint32_t srv__vm_logoff_in(const srv_vm_t *vm);
/* Admin (rollout.c): each pool's rollout, its desktops per version and (@history) its earlier
 * rollouts, as a JSON array (new reference). */
json_t *srv__rollouts_json(srv_t *s, bool history);

/* Admin: kick session @id. Returns 0 or -ENOENT (not open in this vdid). */
int srv__session_kick(srv_t *s, int64_t id, const char *reason);

/* ---- catq.c: the catalogue worker ------------------------------------------------------------ *
 * One thread that runs vdid's image-catalogue jobs (clones, references, listings: file I/O and
 * flock waits that must neither block the loop nor hold one of libuv's four pool threads, which
 * PAM logins share), like redis bio.c. Jobs run one at a time, in the order they were submitted.
 * A job is a pair: @work runs on the worker thread, then @done runs on the loop.
 *
 * Typical use (the owner keeps the handle to abandon the job if it goes away first):
 *     p->job = NULL;
 *     rc = srv__catq_submit(s->catq, clone_work, clone_done, p, &p->job);  // loop
 *     ...owner destroyed meanwhile: srv__catq_abandon(p->job); p->owner = NULL;
 *     clone_done(p, status): p->job is invalid from here on; free p at the end.
 */
typedef struct srv_catq srv_catq_t;         /* opaque; s->catq in vdid */
typedef struct srv_catq_job srv_catq_job_t; /* opaque; valid until its @done returns */
/* Thread: the catalogue worker. May block. Must not touch loop-owned state (desktops, the store,
 * uv handles): copy what it needs into @arg before submitting, leave results in @arg. */
typedef void (*srv_catq_work_fn)(void *arg);
/* Thread: loop. Runs exactly once per job that srv__catq_submit() accepted, never from inside
 * srv__catq_submit() or srv__catq_abandon() themselves. @status:
 *   0            @work ran and the job was not abandoned: the owner is there, use the results;
 *   -ECANCELED   @work never ran: the job was abandoned before the worker picked it up;
 *   -EOWNERDEAD  @work ran (it was already running when the job was abandoned): undo what it
 *                made for the owner that is gone (e.g. unlink a clone, drop its reference).
 * @done usually frees @arg. It may submit new jobs and abandon other ones. */
typedef void (*srv_catq_done_fn)(void *arg, int status);
typedef void (*srv_catq_closed_fn)(void *ctx);

/* Start the worker thread on @loop. The queue does not keep @loop alive while it has no jobs.
 * Returns 0, or a uv error / -errno (logged). Thread: loop. */
int srv__catq_create(uv_loop_t *loop, srv_catq_t **out);
/* Queue a job. @work and @done are required; @arg is the caller's and passed to both. With @job,
 * *job gets a handle for srv__catq_abandon(), valid until @done returns. Returns 0 (then @done
 * will run exactly once, later) or -ESHUTDOWN once srv__catq_close() was called, or with a NULL
 * @q (vdid's s->catq before srv__daemon_run() made it and after it closed); then nothing runs.
 * Thread: loop only. */
int srv__catq_submit(srv_catq_t *q, srv_catq_work_fn work, srv_catq_done_fn done, void *arg,
                     srv_catq_job_t **job);
/* The job's owner went away. Not started yet: @work will not run and @done runs (soon, from the
 * loop) with -ECANCELED. Running: it finishes, then @done runs with -EOWNERDEAD. Calling it again
 * before @done runs changes nothing; after @done returned, @job is gone (do not call it then).
 * Thread: loop only. */
void srv__catq_abandon(srv_catq_job_t *job);
/* Shut the worker down: new submissions fail with -ESHUTDOWN; jobs already queued still run, in
 * order (abandon those that should not), and every @done runs; then the worker thread is
 * joined, @q is freed and @on_closed(@ctx) runs (optional), all from the loop, which the queue
 * keeps alive until then. Never blocks the loop: the running job is waited for asynchronously.
 * NULL, or a second call, does nothing. Thread: loop only. */
void srv__catq_close(srv_catq_t *q, srv_catq_closed_fn on_closed, void *ctx);

#endif /* VDI_SERVER_INTERNAL_H */
