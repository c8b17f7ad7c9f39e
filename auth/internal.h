/* auth/internal.h: what the files of auth/ share with each other (and with tests/unit/auth/).
 * Nothing outside auth/ includes this file. All of it is loop-thread only unless noted. */
#ifndef VDI_AUTH_INTERNAL_H
#define VDI_AUTH_INTERNAL_H

#include <openssl/ssl.h>

#include "auth/auth.h"
#include "common/vdi.h"

/* ---- limit.c: failure counting per key (a username or an address) ---------------------------- */
typedef struct auth__limiter auth__limiter_t;
auth__limiter_t *auth__limiter_create(const auth_limit_config_t *cfg);
void auth__limiter_destroy(auth__limiter_t *l);
/* May an attempt for @key go ahead at @now_ms? Returns 0 with *wait_ms = 0 (go), 0 with
 * *wait_ms > 0 (hold it that long: backoff), or VDI_ELOCKOUT with *wait_ms = time left. */
int auth__limiter_check(auth__limiter_t *l, const char *key, uint64_t now_ms, uint64_t *wait_ms);
/* Count a failure; returns true if it started a lockout. */
bool auth__limiter_fail(auth__limiter_t *l, const char *key, uint64_t now_ms);
/* A success: forget @key. */
void auth__limiter_success(auth__limiter_t *l, const char *key);
size_t auth__limiter_count(const auth__limiter_t *l);

/* ---- pam.c: PAM checks in the thread pool, at most N at once ---------------------------------- */
typedef struct auth__pam auth__pam_t;
/* @status 0 (then *id is the callee's), VDI_EAUTH or -EBUSY; @reason for the client. */
typedef void (*auth__pam_cb)(int status, auth_identity_t *id, const char *reason, void *ctx);
auth__pam_t *auth__pam_create(uv_loop_t *loop, const char *service, const char *admin_group,
                              uint32_t max_running, uint32_t max_queued);
void auth__pam_destroy(auth__pam_t *p);
/* Queue a check; copies everything (the password copy is wiped after use). Returns 0 (cb runs
 * later, on the loop) or -EBUSY (queue full; cb never runs). */
int auth__pam_submit(auth__pam_t *p, const char *user, const char *password, const char *rhost,
                     auth__pam_cb cb, void *ctx);
/* Checks running / waiting right now. */
uint32_t auth__pam_running(const auth__pam_t *p);
uint32_t auth__pam_queued(const auth__pam_t *p);
/* The blocking part, for the worker thread (and tests): authenticate + account for @user, then
 * groups. Returns 0 (with *id) or VDI_EAUTH with *reason set. Thread: any. */
int auth__pam_check_blocking(const char *service, const char *admin_group, const char *user,
                             const char *password, const char *rhost, auth_identity_t **id,
                             const char **reason);
/* Groups of @user via getpwnam_r + getgrouplist (blocking: NSS). Thread: any. */
int auth__user_groups(const char *user, const char *admin_group, auth_identity_t *id);

/* ---- tls.c ----------------------------------------------------------------------------------- */
/* Server contexts: the certificate one (TLS 1.2+) and the anonymous one for TLSPlain (TLS 1.2,
 * anonymous DH suites). */
int auth__tls_ctx_create(const auth_config_t *cfg, SSL_CTX **x509, SSL_CTX **anon,
                         char fingerprint[96]);
typedef void (*auth__tls_handshake_cb)(auth_tls_t *t, int status, void *ctx);
/* Take over @tcp (an accepted, connected handle, not reading; ownership passes even on error)
 * and run a server handshake with @ctx. @early: bytes already read from the socket (the start
 * of the ClientHello), copied. @cb runs once: status 0, or an error after which @t is closing
 * itself (do not touch it). Returns 0 or -ENOMEM/VDI_ETLS (then @tcp is closing, no cb). */
int auth__tls_start(SSL_CTX *ctx, uv_tcp_t *tcp, const char *peer, const uint8_t *early,
                    size_t early_len, uint32_t timeout_ms, auth__tls_handshake_cb cb, void *cbctx,
                    auth_tls_t **out);
/* Put plaintext back in front of what read_start will deliver (copied). */
int auth__tls_unread(auth_tls_t *t, const uint8_t *data, size_t len);

/* ---- login.c / auth.c ------------------------------------------------------------------------ */
struct auth {
    uv_loop_t *loop;
    auth_config_t cfg; /* strings point at the copies below */
    char *pam_service, *admin_group;
    SSL_CTX *tls_x509, *tls_anon;
    char fingerprint[96];
    auth__pam_t *pam;
    auth__limiter_t *lim_user, *lim_addr;
    auth_audit_fn audit;
    void *audit_ctx;
    size_t logins;
    size_t checks;
    vdi_list_t check_list; /* checks in progress, for the per-address cap */
};
/* The address limiter's key for @peer: the address itself for IPv4 (also when v4-mapped), the
 * /64 prefix for IPv6 ("2001:db8::/64"). */
void auth__addr_key(const char *peer, char *key, size_t size);
void auth__audit(auth_t *a, enum auth_audit_kind kind, const char *service, const char *user,
                 const char *peer, const char *reason);
/* Format the peer address of @tcp into @buf. */
void auth__peer_name(uv_tcp_t *tcp, char *buf, size_t size);
/* Close a uv_tcp_t allocated with vdi_xmalloc and free it. */
void auth__tcp_close_free(uv_tcp_t *tcp);

#endif /* VDI_AUTH_INTERNAL_H */
