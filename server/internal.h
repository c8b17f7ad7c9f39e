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
/* Bind the admin socket at cfg->admin_socket (a stale socket file is replaced), mode 0600 or
 * 0660 with group cfg->admin_group. Returns 0 or -errno/VDI_ECONFIG (logged). */
int srv__admin_start(srv_t *s, srv_admin_t **out);
/* Close the listener and every connection; frees @a once libuv is done with it. */
void srv__admin_close(srv_admin_t *a);
/* Run one request (a parsed JSON object) and return the reply object (new reference):
 * {"ok":true,"result":...} or {"ok":false,"error":"message"}. Never fails. */
json_t *srv__admin_dispatch(srv_t *s, json_t *req);

#endif /* VDI_SERVER_INTERNAL_H */
