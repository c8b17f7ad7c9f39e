/* auth/auth.h: the security core of vdid. Everything here takes untrusted bytes.
 *
 *  - auth_rfbsec_*: a sans-IO RFB security handshake (RFB 3.7/3.8, VeNCrypt 0.2 with X509Plain and
 *    optionally TLSPlain). It never touches a socket: feed it bytes, send what it outputs.
 *  - auth_t: the long-lived context (TLS certificates, PAM service, brute-force limits, audit).
 *  - auth_rfb_login_*: the whole RFB login on an accepted TCP connection: the handshake above,
 *    TLS, PAM, limits and audit. On success the caller gets the user, its groups and the TLS
 *    stream, positioned right after SecurityResult (the client's ClientInit comes next).
 *  - auth_tls_*: a server-side TLS stream over a libuv TCP handle (OpenSSL memory BIOs), also
 *    used on its own by the HTTPS listener (auth_tls_accept).
 *  - auth_check_password: limits + PAM + audit for the web portal's login form.
 *  - auth_tokens_*: one-time console tokens and web session tokens, stored hashed.
 *
 * Threads: every function here is for the loop thread only (the one running the uv_loop_t given
 * to auth_create), except auth_rfbsec_* and auth_tokens_*, which have no thread affinity but are
 * not internally locked. PAM runs in libuv's thread pool; its results come back on the loop.
 *
 * Errors: 0 or a negative code (-errno, UV_* where libuv reported it, or VDI_E*): VDI_EAUTH
 * (wrong credentials), VDI_ELOCKOUT (too many failures), VDI_ETLS, VDI_EPROTOCOL, VDI_ETIMEOUT,
 * VDI_ETOKEN, VDI_EDENIED, VDI_ECONFIG, -EBUSY (PAM queue full, or too many checks from one
 * address), -ECANCELED (aborted). vdi_strerror() names them all.
 * Passwords are never logged and are wiped from memory once PAM is done with them.
 *
 * The program must ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)): a client that disconnects while
 * a refusal or close_notify is being written would otherwise kill it.
 */
#ifndef VDI_AUTH_AUTH_H
#define VDI_AUTH_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* ==== Limits and configuration ============================================================== */

/* RFB security type and VeNCrypt subtypes (RFB 6143 §7.1.2; the VeNCrypt extension). */
#define AUTH_RFB_SECTYPE_VENCRYPT 19
#define AUTH_VENCRYPT_TLSPLAIN    259
#define AUTH_VENCRYPT_X509PLAIN   262
/* Hard upper bounds for the Plain credentials; the configured limits may only be lower. */
#define AUTH_USERNAME_MAX 256
#define AUTH_PASSWORD_MAX 1024

/* Brute-force limits for one kind of key (a user name from one address, a user name from
 * anywhere, or a source address; docs/auth.md). Consecutive failures are counted per key. After
 * @free_failures failures each further attempt waits backoff_base_ms * 2^(n - free_failures - 1),
 * at most backoff_max_ms, counted from the last failure (the attempt is held, then checked). At
 * @lockout_failures failures the key is locked out for @lockout_ms: attempts are refused without
 * asking PAM. A key with no failure for @forget_ms is forgotten; at most @max_entries keys are
 * tracked (the stalest go first). */
typedef struct {
    uint32_t free_failures;
    uint32_t backoff_base_ms;
    uint32_t backoff_max_ms;
    uint32_t lockout_failures;
    uint32_t lockout_ms;
    uint32_t forget_ms;
    uint32_t max_entries;
} auth_limit_config_t;

typedef struct {
    const char *pam_service; /* default "vdi" (deploy/pam.d/vdi) */
    const char *tls_cert;    /* PEM certificate (chain) file; NULL: generated, see state_dir */
    const char *tls_key;     /* PEM private key; set both or neither */
    const char *state_dir;   /* with no cert configured: <state_dir>/tls/{cert,key}.pem are made
                                 at first start (EC P-256, self-signed) and reused afterwards */
    const char *admin_group; /* members get is_admin; default VDI_ADMIN_GROUP_DEFAULT */
    /* Offer VeNCrypt TLSPlain (anonymous TLS) after X509Plain. Off by default, see docs/auth.md:
     * the server is not authenticated, so a man in the middle reads the passwords. */
    bool allow_tlsplain;
    /* Offer TLSPlain alone (implies allow_tlsplain), for viewers that cannot check a certificate
     * at all and take the first subtype offered. */
    bool tlsplain_only;
    uint32_t handshake_timeout_ms; /* accept until credentials (RFB + TLS); default 10000 */
    uint32_t pam_max_concurrent;   /* PAM checks running at once; default 2 */
    uint32_t pam_max_queued;       /* checks waiting for a slot; beyond: -EBUSY; default 64 */
    uint32_t max_checks_per_addr;  /* checks in progress (held, queued or in PAM) from one
                                       address; beyond: -EBUSY; default 4; 0: no cap */
    uint32_t max_username_len;     /* Plain username bytes, 1..AUTH_USERNAME_MAX; default 256 */
    uint32_t max_password_len;     /* Plain password bytes, 1..AUTH_PASSWORD_MAX; default 1024 */
    /* Per user name from one address (an IPv6 /64): 3 free, 1 s..30 s, lock at 10 for 15 min. */
    auth_limit_config_t limit_user;
    /* Per user name from every address together: 30 free, 1 s..30 s, lock at 100 for 15 min.
     * Not applied to an address with a clean record for the user (docs/auth.md). */
    auth_limit_config_t limit_user_global;
    auth_limit_config_t limit_addr; /* per address: 5 free, 1 s..30 s, lock at 30 for 15 min */
    /* A successful login keeps its address's clean record for the user this long (0: no
     * address ever has one; the global user limit then applies to all); default 30. */
    uint32_t known_addr_days;
} auth_config_t;

/* Fill @cfg with the defaults above (strings are static). The only place they are written
 * (auth/config.c): vdid's config parser starts the [auth] section from them. */
void auth_config_defaults(auth_config_t *cfg);

/* ==== The RFB security handshake, sans IO ==================================================== */
/* Server side of RFB 3.8/3.7 up to SecurityResult, offering only VeNCrypt (19) version 0.2 with
 * X509Plain (262) and, if enabled, TLSPlain (259). Never None or VNC authentication. Usage:
 *
 *   create → send output → loop { feed(bytes) → send output; act on the event }
 *
 *   AUTH_RFBSEC_NEED_MORE    all bytes consumed; feed more when they arrive.
 *   AUTH_RFBSEC_START_TLS    send the pending output in clear, then run a TLS server handshake
 *                            (anonymous if auth_rfbsec_subtype() is TLSPlain); the input bytes
 *                            not consumed are the first TLS bytes. From now on feed plaintext
 *                            that came out of TLS and send output through TLS.
 *   AUTH_RFBSEC_CREDENTIALS  auth_rfbsec_credentials() has the username/password; check them
 *                            and call auth_rfbsec_finish().
 *   AUTH_RFBSEC_FAILED       the client broke the protocol; send the pending output (a refusal
 *                            the client can show), then close. auth_rfbsec_error() says why.
 *   AUTH_RFBSEC_DONE         after a successful finish(): bytes not consumed belong to the next
 *                            phase (ClientInit).
 * feed() stops at each event: call it again with the rest. Input may come in pieces of any size.
 */
typedef struct auth_rfbsec auth_rfbsec_t;

enum auth_rfbsec_event {
    AUTH_RFBSEC_NEED_MORE,
    AUTH_RFBSEC_START_TLS,
    AUTH_RFBSEC_CREDENTIALS,
    AUTH_RFBSEC_FAILED,
    AUTH_RFBSEC_DONE,
};

typedef struct {
    bool allow_tlsplain;       /* offer [X509Plain, TLSPlain] instead of [X509Plain] */
    bool tlsplain_only;        /* offer [TLSPlain] alone */
    uint32_t max_username_len; /* 0 means AUTH_USERNAME_MAX; capped at it */
    uint32_t max_password_len; /* 0 means AUTH_PASSWORD_MAX; capped at it */
} auth_rfbsec_config_t;

/* A new handshake whose output already holds the ProtocolVersion "RFB 003.008\n". Borrows @cfg
 * for the call. Returns 0 or -ENOMEM. */
int auth_rfbsec_create(const auth_rfbsec_config_t *cfg, auth_rfbsec_t **out);
/* Wipes the credentials and frees. NULL does nothing. */
void auth_rfbsec_destroy(auth_rfbsec_t *s);
/* Consume bytes from @data until an event; *consumed gets how many were used. */
enum auth_rfbsec_event auth_rfbsec_feed(auth_rfbsec_t *s, const uint8_t *data, size_t len,
                                        size_t *consumed);
/* Bytes to send to the client, valid until the next call on @s; then mark @n of them sent. */
const uint8_t *auth_rfbsec_output(const auth_rfbsec_t *s, size_t *len);
void auth_rfbsec_output_consume(auth_rfbsec_t *s, size_t n);
/* After AUTH_RFBSEC_CREDENTIALS: NUL-terminated username and password, owned by @s, valid until
 * finish() (which wipes the password) or destroy(). Neither contains NUL or (the username)
 * control characters. */
void auth_rfbsec_credentials(const auth_rfbsec_t *s, const char **username, const char **password);
/* Queue SecurityResult: OK, or failed with @reason (sent to 3.8 clients; 3.7 has no reason).
 * Wipes the password. After success the state is DONE; after failure, FAILED (close after
 * sending the output). Returns 0, VDI_ESTATE (not waiting for a result) or -ENOMEM. */
int auth_rfbsec_finish(auth_rfbsec_t *s, bool ok, const char *reason);
/* The negotiated minor version (7 or 8; 0 before the client's version arrived). */
int auth_rfbsec_minor(const auth_rfbsec_t *s);
/* The chosen VeNCrypt subtype (262 or 259; 0 before the choice). */
uint32_t auth_rfbsec_subtype(const auth_rfbsec_t *s);
/* Why the handshake failed (static string; "" if it did not). For logs, not for the client. */
const char *auth_rfbsec_error(const auth_rfbsec_t *s);

/* ==== The context ============================================================================= */
/* A clock in milliseconds; where one is taken, NULL means the default. Tests pass a fake one. */
typedef uint64_t (*auth_clock_fn)(void *ctx);

typedef struct auth auth_t;

enum auth_audit_kind {
    AUTH_AUDIT_LOGIN_OK,     /* credentials accepted by PAM (auth + account) */
    AUTH_AUDIT_LOGIN_FAILED, /* refused by PAM, or bad input; reason says which */
    AUTH_AUDIT_LOCKOUT,      /* this failure locked the username or address out */
    AUTH_AUDIT_LOCKED,       /* an attempt refused, unchecked, because of a lockout (or a
                                backoff longer than a minute) */
};
/* One audit event. Strings are borrowed for the callback. Never holds a password. */
typedef struct {
    enum auth_audit_kind kind;
    const char *service;  /* "rfb" or "web" (what the caller of auth_check_password said) */
    const char *username; /* as the client sent it (may not exist) */
    const char *peer;     /* source address, e.g. "192.0.2.7" or "2001:db8::1" */
    const char *reason;   /* e.g. "authentication failed", "account expired", "locked out" */
} auth_audit_event_t;
typedef void (*auth_audit_fn)(const auth_audit_event_t *ev, void *ctx);

/* One record of the brute-force limits, for keeping them across restarts. Times are Unix ms. */
typedef struct {
    uint32_t failures;     /* consecutive failures counted */
    uint64_t last_fail;    /* 0: none */
    uint64_t locked_until; /* 0: not locked */
    uint64_t last_ok;      /* the last success (scope "user-addr" only; 0: none) */
    uint64_t expires;      /* after this the record means nothing and may be deleted */
} auth_limit_record_t;
/* A record of scope "user-addr" (key "ADDRKEY USER": the address key, a space, the user name),
 * "user" (key: the user name) or "addr" (key: the address, "2001:db8::/64" for IPv6) changed;
 * @rec NULL: it is gone. Strings and @rec are borrowed for the call. Runs on the loop thread,
 * inside auth's own calls: it must not call back into auth. */
typedef void (*auth_limit_sink_fn)(const char *scope, const char *key,
                                   const auth_limit_record_t *rec, void *ctx);

/* Load (or generate) the TLS certificate, set up the TLS contexts and the PAM queue. Borrows
 * @cfg for the call (strings are copied). The loop must outlive the context. Logs the
 * certificate's SHA-256 fingerprint. Returns 0, VDI_ECONFIG (bad config; logged with the cause),
 * VDI_ETLS or -errno. */
int auth_create(uv_loop_t *loop, const auth_config_t *cfg, auth_t **out);
/* Free the context. Every login, TLS stream and check made from it must be finished first (their
 * callbacks have run); PAM jobs still running in the pool are a bug (asserted). NULL: nothing. */
void auth_destroy(auth_t *a);
/* Receive audit events (on the loop thread). Replaces any earlier sink; NULL turns it off. Each
 * event is also logged at info level. */
void auth_set_audit(auth_t *a, auth_audit_fn fn, void *ctx);
/* Send every change of the brute-force records to @fn (NULL: stop). */
void auth_set_limit_sink(auth_t *a, auth_limit_sink_fn fn, void *ctx);
/* Put back a record the sink was given earlier (at start, before any login). Records already
 * past their end are dropped (and reported to the sink as gone). Returns 0 or -EINVAL (unknown
 * scope or malformed key). */
int auth_limit_restore(auth_t *a, const char *scope, const char *key,
                       const auth_limit_record_t *rec);
/* SHA-256 fingerprint of the server certificate, "AB:CD:..." (95 chars). Owned by @a. */
const char *auth_cert_fingerprint(const auth_t *a);

/* ==== TLS streams ============================================================================= */
typedef struct auth_tls auth_tls_t;

/* @nread > 0: plaintext at @data, borrowed for the call. @nread < 0: the stream ended: UV_EOF
 * (close_notify, or TCP EOF) or an error (VDI_ETLS, UV_*). After an error or EOF no more reads
 * come; call auth_tls_close(). */
typedef void (*auth_tls_read_cb)(auth_tls_t *t, ssize_t nread, const uint8_t *data, void *ctx);
typedef void (*auth_tls_write_cb)(auth_tls_t *t, int status, void *ctx);
typedef void (*auth_tls_close_cb)(void *ctx);
/* Server handshake done (@status 0, @t ready, owned by the callee) or failed (@t NULL, the
 * connection already closed and logged). */
typedef void (*auth_tls_accept_cb)(auth_tls_t *t, int status, void *ctx);

/* Accept a connection on @server (a listening uv_tcp_t that signalled a connection) and run the
 * TLS server handshake, with the handshake timeout from the config. For the HTTPS listener.
 * Returns 0 (the callback runs later, exactly once) or an error (callback never runs). */
int auth_tls_accept(auth_t *a, uv_stream_t *server, auth_tls_accept_cb cb, void *ctx);
/* The same on a connection the caller accepted (a listener that gates connections first): takes
 * @tcp (connected, not reading, allocated with malloc), also on error, when it is closed and
 * freed. Returns 0 (the callback runs later, exactly once) or an error (it never runs). */
int auth_tls_accept_tcp(auth_t *a, uv_tcp_t *tcp, auth_tls_accept_cb cb, void *ctx);
/* Start delivering plaintext; bytes that arrived earlier (e.g. pipelined after the RFB
 * credentials) come first, from the loop, never from inside this call. */
int auth_tls_read_start(auth_tls_t *t, auth_tls_read_cb cb, void *ctx);
/* Stop delivering (backpressure). Data keeps arriving into kernel buffers only. */
void auth_tls_read_stop(auth_tls_t *t);
/* Encrypt and send @len bytes (copied). @cb (may be NULL) runs once the ciphertext was written
 * to the socket or failed. Returns 0 or an error (then @cb does not run). */
int auth_tls_write(auth_tls_t *t, const void *data, size_t len, auth_tls_write_cb cb, void *ctx);
/* Ciphertext bytes queued in libuv and not yet written: for backpressure. */
size_t auth_tls_write_queue_size(const auth_tls_t *t);
/* Send close_notify, let queued writes drain (at most 5 s), close the socket and free @t, then
 * call @cb (may be NULL). No callback of @t runs after this call except @cb. */
void auth_tls_close(auth_tls_t *t, auth_tls_close_cb cb, void *ctx);
/* "TLSv1.3" etc. and the cipher name, owned by @t. */
const char *auth_tls_version(const auth_tls_t *t);
const char *auth_tls_cipher(const auth_tls_t *t);
/* The peer's address as text, owned by @t. */
const char *auth_tls_peer(const auth_tls_t *t);

/* ==== Password checks (limits + PAM + audit) ================================================== */
/* Who logged in. Strings are owned by the identity; free with auth_identity_free(). */
typedef struct {
    char *username;
    char **groups; /* names of the user's groups (getgrouplist), primary group first */
    size_t ngroups;
    bool is_admin; /* member of the configured admin group */
} auth_identity_t;
void auth_identity_free(auth_identity_t *id);

/* @status: 0 (then @id is the caller's to keep: free it), VDI_EAUTH, VDI_ELOCKOUT, -EBUSY or
 * another error; @reason is a short text for the client ("authentication failed", "account
 * expired", "too many failed attempts: try again later", ...), borrowed for the call. */
typedef void (*auth_check_cb)(int status, auth_identity_t *id, const char *reason, void *ctx);

/* Check @username/@password for @service ("web", "rfb", for the audit) from @peer: brute-force
 * limits (an attempt may be held for its backoff), then PAM authenticate + account in the thread
 * pool, then groups. The password is copied and the copy wiped after PAM; the caller wipes its
 * own. Returns 0 (@cb runs exactly once, later, on the loop) or an error (-EINVAL for an empty
 * or oversized username/password or a username with control characters; @cb never runs). */
int auth_check_password(auth_t *a, const char *service, const char *username, const char *password,
                        const char *peer, auth_check_cb cb, void *ctx);

/* ==== The RFB login =========================================================================== */
typedef struct auth_rfb_login auth_rfb_login_t;

/* What a successful RFB login hands over. The callee owns @tls and @id (free each). @tls is
 * read-stopped right after SecurityResult OK; the client's ClientInit comes next (RFB 7.3.1). */
typedef struct {
    auth_identity_t *id;
    auth_tls_t *tls;
    int rfb_minor; /* 7 or 8 */
    uint32_t vencrypt_subtype;
    const char *peer; /* borrowed for the callback */
} auth_rfb_login_result_t;

/* @status 0 with @res, or the failure (@res NULL; the client was told why if the protocol
 * allowed, the connection is closed and the event logged). Runs exactly once per login. */
typedef void (*auth_rfb_login_cb)(auth_rfb_login_t *l, int status, auth_rfb_login_result_t *res,
                                  void *ctx);

/* Accept a connection on @server (a listening uv_tcp_t that signalled one) and run the login on
 * it. *out (may be NULL) gets a handle for auth_rfb_login_abort(), valid until @cb runs.
 * Returns 0 (@cb runs later) or an error from uv_accept (@cb never runs). */
int auth_rfb_login_accept(auth_t *a, uv_stream_t *server, auth_rfb_login_cb cb, void *ctx,
                          auth_rfb_login_t **out);
/* The same on a connection the caller accepted: takes @tcp (connected, not reading, allocated with
 * malloc), also on error, when it is closed and freed. Returns 0 (@cb runs later) or an error
 * (@cb never runs). */
int auth_rfb_login_start(auth_t *a, uv_tcp_t *tcp, auth_rfb_login_cb cb, void *ctx,
                         auth_rfb_login_t **out);
/* Give up on a login in progress (e.g. at shutdown): closes the connection at once; @cb runs
 * later, from the loop, with -ECANCELED (never inside this call). Only valid before @cb has run;
 * a second abort does nothing. */
void auth_rfb_login_abort(auth_rfb_login_t *l);
/* Logins currently in progress on @a. */
size_t auth_rfb_login_count(const auth_t *a);

/* ==== Tokens ================================================================================== */
/* Console tokens: one-time, 256 random bits as base64url (43 chars), bound to a user and a
 * desktop id, default TTL 30 s; only their SHA-256 is stored. Session tokens: the web cookie,
 * same format, with an idle and an absolute lifetime, revocable. Lookups compare digests in
 * constant time. Not thread-safe: use from one thread (the loop). */
#define AUTH_TOKEN_LEN            43 /* characters, without the NUL */
#define AUTH_CONSOLE_TOKEN_TTL_MS 30000u

#define AUTH_TOKEN_DIGEST_LEN     32 /* SHA-256 of the token text: what the store keeps */

typedef struct auth_tokens auth_tokens_t;

/* @max_tokens caps stored tokens of both kinds; @max_per_user caps the tokens of each kind one
 * user holds (0: no cap but the global one): one more drops that user's oldest of the kind. When
 * the store is full, the user holding the most tokens loses its oldest one, or is refused
 * (-ENOSPC) if it is the one asking: one account cannot lock the others out. @clock (Unix ms or
 * monotonic, NULL: vdi_now_ms()) is for tests. Returns 0. */
int auth_tokens_create(size_t max_tokens, size_t max_per_user, auth_clock_fn clock, void *clock_ctx,
                       auth_tokens_t **out);
void auth_tokens_destroy(auth_tokens_t *t); /* wipes the digests; NULL does nothing */
/* A web session left the store, for whatever reason (revoked, expired, dropped for a cap, or its
 * user revoked): @digest is borrowed for the call. The callback must not call into @t. Not
 * called from auth_tokens_destroy(). */
typedef void (*auth_session_gone_fn)(const uint8_t digest[AUTH_TOKEN_DIGEST_LEN], void *ctx);
void auth_tokens_set_session_gone(auth_tokens_t *t, auth_session_gone_fn fn, void *ctx);
/* The digest the store keeps for @token (any NUL-terminated text). Thread: any. */
void auth_token_digest(const char *token, uint8_t digest[AUTH_TOKEN_DIGEST_LEN]);

/* Issue a console token for @user on @desktop valid @ttl_ms (0: the default 30 s); the token
 * text goes to @token (AUTH_TOKEN_LEN + 1 bytes). @session (may be NULL): the digest of the web
 * session it is for; the token dies with that session. Returns 0, -ENOSPC, VDI_ETOKEN (no such
 * session) or VDI_ETLS (no random). */
int auth_console_token_issue(auth_tokens_t *t, const char *user, const char *desktop,
                             const uint8_t *session, uint32_t ttl_ms,
                             char token[AUTH_TOKEN_LEN + 1]);
/* Redeem (burn) a console token for @desktop. On success *user gets a copy of the user it was
 * issued to (free it). A token is burnt by any redeem attempt that finds it, even one for the
 * wrong desktop. Returns 0, VDI_ETOKEN (unknown, malformed, expired or used) or VDI_EDENIED (it
 * was for another desktop). */
int auth_console_token_redeem(auth_tokens_t *t, const char *token, const char *desktop,
                              char **user);

/* Create a web session for @user: idle lifetime @idle_ms, absolute @max_ms (both > 0). Returns
 * 0, -EINVAL, -ENOSPC or VDI_ETLS. */
int auth_session_create(auth_tokens_t *t, const char *user, uint32_t idle_ms, uint32_t max_ms,
                        char token[AUTH_TOKEN_LEN + 1]);
/* Put back a session known by its @digest (vdid's state, after a restart): it ends in
 * @max_left_ms, or after @idle_left_ms (<= @idle_ms) unused, and then @idle_ms after each use.
 * Returns 0, -EINVAL, -EEXIST or -ENOSPC. */
int auth_session_restore(auth_tokens_t *t, const uint8_t digest[AUTH_TOKEN_DIGEST_LEN],
                         const char *user, uint32_t idle_ms, uint64_t max_left_ms,
                         uint64_t idle_left_ms);
/* Check a session token and refresh its idle timer. *user (may be NULL) gets a pointer owned by
 * the store, valid until the next call on @t. Returns 0 or VDI_ETOKEN. */
int auth_session_check(auth_tokens_t *t, const char *token, const char **user);
/* Revoke one session (logout), with its console tokens: 0 or VDI_ETOKEN. */
int auth_session_revoke(auth_tokens_t *t, const char *token);
int auth_session_revoke_digest(auth_tokens_t *t, const uint8_t digest[AUTH_TOKEN_DIGEST_LEN]);
/* Revoke every session and console token of @user; returns how many. */
size_t auth_tokens_revoke_user(auth_tokens_t *t, const char *user);
/* Tokens of both kinds currently stored (expired ones are purged first); of @user alone. */
size_t auth_tokens_count(auth_tokens_t *t);
size_t auth_tokens_user_count(auth_tokens_t *t, const char *user);

#endif /* VDI_AUTH_AUTH_H */
