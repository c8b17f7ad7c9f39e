/* auth/internal.h: what the files of auth/ share with each other (and with tests/unit/auth/).
 * Nothing outside auth/ includes this file. All of it is loop-thread only unless noted. */
#ifndef VDI_AUTH_INTERNAL_H
#define VDI_AUTH_INTERNAL_H

#include <openssl/ssl.h>

#include "auth/auth.h"
#include "common/vdi.h"

/* ---- limit.c: failure counting per key, and the login policy over three such counters ------- */
typedef struct auth__limiter auth__limiter_t;
/* @scope names the records given to the sink ("user-addr", "user", "addr"; static). @known_ms > 0:
 * a success is remembered that long (auth__limiter_clean), else a success forgets the key. */
auth__limiter_t *auth__limiter_create(const auth_limit_config_t *cfg, const char *scope,
                                      uint64_t known_ms);
void auth__limiter_destroy(auth__limiter_t *l);
/* Every change of a key's record goes to @fn (NULL: none), a record that is gone as NULL. */
void auth__limiter_set_sink(auth__limiter_t *l, auth_limit_sink_fn fn, void *ctx);
/* May an attempt for @key go ahead at @now_ms? Returns 0 with *wait_ms = 0 (go), 0 with
 * *wait_ms > 0 (hold it that long: backoff), or VDI_ELOCKOUT with *wait_ms = time left. */
int auth__limiter_check(auth__limiter_t *l, const char *key, uint64_t now_ms, uint64_t *wait_ms);
/* Count a failure; returns true if it started a lockout. */
bool auth__limiter_fail(auth__limiter_t *l, const char *key, uint64_t now_ms);
/* A success: forget @key's failures (and the key, unless successes are remembered). */
void auth__limiter_success(auth__limiter_t *l, const char *key, uint64_t now_ms);
/* Does @key remember a success within known_ms, with no failure counted since? */
bool auth__limiter_clean(auth__limiter_t *l, const char *key, uint64_t now_ms);
/* Put back a record saved earlier (vdid's start); a stale one is dropped. 0 or -EINVAL. */
int auth__limiter_restore(auth__limiter_t *l, const char *key, const auth_limit_record_t *rec,
                          uint64_t now_ms);
size_t auth__limiter_count(const auth__limiter_t *l);

/* The policy (limit.c's opening comment, docs/auth.md): per (user, address), per user and per
 * address, with the clean-record rule. @user is the name PAM resolved; @addr_key comes from
 * auth__addr_key(). Times are Unix milliseconds. */
typedef struct auth__limits auth__limits_t;
auth__limits_t *auth__limits_create(const auth_config_t *cfg);
void auth__limits_destroy(auth__limits_t *L);
void auth__limits_set_sink(auth__limits_t *L, auth_limit_sink_fn fn, void *ctx);
/* As auth__limiter_check over the three; *why (static) names the limit that refused or holds the
 * attempt, NULL when it may go at once. */
int auth__limits_check(auth__limits_t *L, const char *user, const char *addr_key, uint64_t now_ms,
                       uint64_t *wait_ms, const char **why);
#define AUTH__LOCKED_PAIR 1u /* the failure locked the user out for this address */
#define AUTH__LOCKED_USER 2u /* ... the user out everywhere (but clean addresses) */
#define AUTH__LOCKED_ADDR 4u /* ... the address out */
/* Count a failure in all three; returns the AUTH__LOCKED_* lockouts it started. */
unsigned auth__limits_fail(auth__limits_t *L, const char *user, const char *addr_key,
                           uint64_t now_ms);
/* A success: clears the (user, address) and address counters and remembers the address. */
void auth__limits_success(auth__limits_t *L, const char *user, const char *addr_key,
                          uint64_t now_ms);
/* Does @addr_key have a clean record for @user (docs/auth.md)? */
bool auth__limits_clean(auth__limits_t *L, const char *user, const char *addr_key, uint64_t now_ms);
/* auth_limit_restore() for one scope: 0 or -EINVAL (unknown scope, malformed key). */
int auth__limits_restore(auth__limits_t *L, const char *scope, const char *key,
                         const auth_limit_record_t *rec, uint64_t now_ms);
size_t auth__limits_count(const auth__limits_t *L);

/* ---- pam.c: PAM checks in the thread pool, at most N at once ---------------------------------- */
typedef struct auth__pam auth__pam_t;
/* @status 0 (then *id is the callee's), VDI_EAUTH or -EBUSY; @reason for the client. @user: the
 * name PAM resolved (PAM_USER after the stack ran; the name given when PAM said nothing),
 * borrowed for the call, NULL with -EBUSY. */
typedef void (*auth__pam_cb)(int status, auth_identity_t *id, const char *user, const char *reason,
                             void *ctx);
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
 * groups. PAM's failure delay is switched off (PAM_FAIL_DELAY): the limits hold attempts back
 * on the loop instead, and a sleeping pool thread would be one PAM slot less. *canon gets a copy
 * of the name PAM resolved (PAM_USER after the stack; @user if PAM has none), success or not: the
 * caller frees it; the identity carries the same name. Returns 0 (with *id) or VDI_EAUTH with
 * *reason set. Thread: any. */
int auth__pam_check_blocking(const char *service, const char *admin_group, const char *user,
                             const char *password, const char *rhost, auth_identity_t **id,
                             char **canon, const char **reason);
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
    auth__limits_t *limits; /* Unix ms times: the records outlive the process */
    auth_audit_fn audit;
    void *audit_ctx;
    size_t logins;
    size_t checks;
    vdi_list_t check_list; /* checks in progress, for the per-address cap */
};
/* The address limiter's key for @peer: the address itself for IPv4 (also when v4-mapped), the
 * /64 prefix for IPv6 ("2001:db8::/64"). */
void auth__addr_key(const char *peer, char *key, size_t size);
/* Now, in Unix milliseconds (the real-time clock), the limits' time. Tests of the policy pass
 * their own times to auth__limits_*. */
uint64_t auth__wall_ms(const auth_t *a);
void auth__audit(auth_t *a, enum auth_audit_kind kind, const char *service, const char *user,
                 const char *peer, const char *reason);
/* Format the peer address of @tcp into @buf. */
void auth__peer_name(uv_tcp_t *tcp, char *buf, size_t size);
/* Close a uv_tcp_t allocated with vdi_xmalloc and free it. */
void auth__tcp_close_free(uv_tcp_t *tcp);

#endif /* VDI_AUTH_INTERNAL_H */
