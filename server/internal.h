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

/* Listeners (listen.c). Parse a configured "HOST:PORT" or "[V6]:PORT" (config key @key, for the
 * message) into @ss, with the host part in @host for logs. Returns 0 or VDI_ECONFIG (logged). */
int srv__listen_addr(const char *key, const char *listen, struct sockaddr_storage *ss, char *host,
                     size_t hostlen);
/* The port @tcp is bound to (0 if unknown). */
int srv__bound_port(const uv_tcp_t *tcp);

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
    srv_gateway_t *gateway;
    struct srv_web *web;      /* the web portal (internal-web.h); NULL when web_listen = off */
    vdi_list_t vms;           /* srv_vm_t: every desktop that is not gone or failed */
    vdi_list_t logins;        /* srv_login_t waiting for a desktop */
    uv_timer_t tick_timer;    /* supervisor.c: deadlines, retries, polls, spares */
    uv_timer_t deliver_timer; /* login.c: login results, delivered from the loop */
    uint64_t last_spares;
    uint64_t *spare_retry_at; /* per pool (config order): no new spare before this (ms) */
    bool spares_wanted;
    char *vmm_path; /* cfg->vmm, or vdi-vmm next to vdid */
    bool vms_started;
    int lock_fd;
    bool stopping;
} srv_t;

/* ---- daemon.c ----------------------------------------------------------------------------- */
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
/* Run one request (a parsed JSON object) and return the reply object (new reference):
 * {"ok":true,"result":...} or {"ok":false,"error":"message"}. Never fails. */
json_t *srv__admin_dispatch(srv_t *s, json_t *req);

/* ---- gateway.c: the RFB listener ------------------------------------------------------------ */
/* Listen on cfg->listen; logins go through s->auth, then the broker, then the desktop's display.
 * Returns 0 or a uv/VDI_ECONFIG error (logged). */
int srv__gateway_start(srv_t *s, srv_gateway_t **out);
/* Stop listening, abort logins in progress, close every connection (their sessions end). */
void srv__gateway_close(srv_gateway_t *gw);
/* The port actually bound (listen = HOST:0 picks one). */
int srv__gateway_port(const srv_gateway_t *gw);

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
srv_vm_t *srv__vm_find(srv_t *s, int64_t id);
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
/* Admin: kick session @id. Returns 0 or -ENOENT (not open in this vdid). */
int srv__session_kick(srv_t *s, int64_t id, const char *reason);

#endif /* VDI_SERVER_INTERNAL_H */
