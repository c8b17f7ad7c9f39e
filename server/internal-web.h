/* server/internal-web.h: what the web portal's files share (prefix srv__): the HTTP request
 * parser (http-parse.c), the WebSocket framing (ws.c), the HTTPS server (http.c) and the portal
 * itself (portal*.c). Like server/internal.h, only server/ and its tests include this file.
 *
 * Layers, bottom up:
 *  - srv_httpreq_t: one HTTP/1.1 request at a time, parsed by http-parser (libhttp-parser) from
 *    plaintext bytes, with our size limits. Sans IO: feed bytes, get a request.
 *  - srv_ws_t: RFC 6455 framing by wslay on plaintext bytes. Sans IO: feed bytes, get binary
 *    messages; what it wants to send goes to a callback.
 *  - srv_web_t: the HTTPS listener (auth_tls_accept_tcp behind the gate), connections, keep-alive, responses with
 *    the security headers; each request goes to the portal.
 *  - the portal: static files, the JSON API (docs/api.md), browser consoles (WebSocket ↔ the
 *    desktop's display socket).
 *
 * Thread: the loop thread only, like the rest of vdid.
 */
#ifndef VDI_SERVER_INTERNAL_WEB_H
#define VDI_SERVER_INTERNAL_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/vdi.h"

struct srv;

/* ---- http-parse.c: one request ---------------------------------------------------------------- */
#define SRV_HTTP_MAX_HEAD  8192  /* request line + headers, bytes */
#define SRV_HTTP_MAX_URL   2048  /* request target, bytes */
#define SRV_HTTP_MAX_BODY  16384 /* body bytes (JSON API calls are small) */
#define SRV_HTTP_MAX_FIELD 1024  /* one header value we keep (Cookie: 4096) */

enum srv_http_method {
    SRV_HTTP_OTHER = 0,
    SRV_HTTP_GET,
    SRV_HTTP_HEAD,
    SRV_HTTP_POST,
};

/* A parsed request. Strings are NUL-terminated, owned by the parser, valid until the next
 * srv__httpreq_reset() or _destroy(); absent headers are "". */
typedef struct {
    enum srv_http_method method;
    const char *method_name;          /* as sent, e.g. "PUT" */
    char path[SRV_HTTP_MAX_URL + 1];  /* the request target's path ("/api/login") */
    char query[SRV_HTTP_MAX_URL + 1]; /* after '?', without it; "" when none */
    char host[256];
    char origin[256];
    char cookie[4096];
    char content_type[128];
    char csrf[128]; /* X-CSRF-Token */
    char if_none_match[128];
    char upgrade[64];
    char connection[256];
    char ws_key[64];
    char ws_version[16];
    char ws_protocol[256];
    bool keep_alive; /* HTTP/1.1 without Connection: close */
    bool is_upgrade; /* the parser stopped at an Upgrade request; what follows is not HTTP */
    const uint8_t *body;
    size_t body_len;
} srv_httpreq_info_t;

typedef struct srv_httpreq srv_httpreq_t;

/* Returns a new parser (vdi_xcalloc). */
srv_httpreq_t *srv__httpreq_create(void);
void srv__httpreq_destroy(srv_httpreq_t *r); /* NULL: nothing */
/* Forget the request parsed so far and expect a new one. */
void srv__httpreq_reset(srv_httpreq_t *r);
/* Feed @len bytes. Returns 0 (all consumed, the request is not complete yet), 1 (a whole request:
 * *consumed bytes were used; the rest belong to the next request, or to the WebSocket after an
 * upgrade), VDI_EPROTOCOL (the request is malformed or over a limit) or -ENOMEM (no memory for
 * its body). After an error srv__httpreq_status() names the HTTP status to answer with, and
 * feed() keeps returning the error. After 1 or an error, call srv__httpreq_reset() before
 * feeding again. */
int srv__httpreq_feed(srv_httpreq_t *r, const uint8_t *data, size_t len, size_t *consumed);
/* The HTTP status for the error feed() returned: 400 malformed, 413 body too large, 414 target
 * too long, 431 headers too large, 505 not HTTP/1.x, 503 out of memory; 0 while there is none. */
int srv__httpreq_status(const srv_httpreq_t *r);
/* The request, after feed() returned 1. Owned by @r. */
const srv_httpreq_info_t *srv__httpreq_info(const srv_httpreq_t *r);
/* The value of cookie @name in the Cookie header @header (the first one), copied to @out (@n
 * bytes). False (and @out "") when absent, empty or longer than @n - 1. */
bool srv__http_cookie(const char *header, const char *name, char *out, size_t n);
/* The value of @key in the query string @query (the first one, not percent-decoded: our values
 * are base64url and digits), copied to @out (@n bytes). False (and @out "") when absent or too
 * long. */
bool srv__http_query(const char *query, const char *key, char *out, size_t n);

/* ---- ws.c: WebSocket framing -------------------------------------------------------------------- */
#define SRV_WS_MAX_MSG (1024 * 1024) /* a client message larger than this closes with 1009 */

/* Close codes of our own (RFC 6455 §7.4.2: 4000-4999 are for applications); the viewer page
 * turns them into messages. */
#define SRV_WS_CLOSE_TOKEN    4401 /* console token unknown, expired or already used */
#define SRV_WS_CLOSE_GONE     4404 /* the desktop is gone or its display closed */
#define SRV_WS_CLOSE_TAKEOVER 4409 /* the session ended: reconnected elsewhere, admin, logout */
#define SRV_WS_CLOSE_ERROR    4500 /* vdid could not reach the desktop */

typedef struct srv_ws srv_ws_t;
typedef struct {
    /* A whole binary (or text) message from the client, borrowed for the call. */
    void (*message)(void *ctx, const uint8_t *data, size_t len);
    /* Bytes to send to the client (frames), borrowed for the call. Returns 0 or < 0 (then the
     * WebSocket is broken: srv__ws_feed/_send report it). */
    int (*output)(void *ctx, const uint8_t *data, size_t len);
} srv_ws_ops_t;

/* A server-side WebSocket on an already upgraded connection. Borrows @ops (static). Returns 0 or
 * -ENOMEM. */
int srv__ws_create(const srv_ws_ops_t *ops, void *ctx, srv_ws_t **out);
void srv__ws_destroy(srv_ws_t *w); /* NULL: nothing */
/* Bytes from the client. Returns 0 while the WebSocket is open, 1 once it is finished (close
 * handshake done or a protocol error answered with a close frame: close the connection after
 * the output drains), or a negative error (output failed: close now). */
int srv__ws_feed(srv_ws_t *w, const uint8_t *data, size_t len);
/* Send @len bytes as one binary message. Returns 0 or < 0. */
int srv__ws_send(srv_ws_t *w, const uint8_t *data, size_t len);
/* Start the close handshake with @code and @reason (at most 123 bytes). Returns 0 or < 0. */
int srv__ws_close(srv_ws_t *w, uint16_t code, const char *reason);
/* The close code the client sent (0 if none yet). */
uint16_t srv__ws_peer_close_code(const srv_ws_t *w);
/* Sec-WebSocket-Accept for @key (RFC 6455 §4.2.2): base64(SHA-1(key GUID)), 28 chars + NUL.
 * Returns 0, or -EINVAL when @key is not base64 of 16 bytes. */
int srv__ws_accept_key(const char *key, char out[29]);

/* ---- http.c: the HTTPS server ------------------------------------------------------------------- */
typedef struct srv_web srv_web_t;
typedef struct srv_httpx srv_httpx_t; /* one request/response exchange */
struct auth_tls;

/* Start the portal on cfg->web_listen (nothing when it is off: *out = NULL, returns 0): load the
 * pages and noVNC into memory, bind, listen. Blocking (file reads): call before the loop runs.
 * Returns 0 or a uv/VDI_ECONFIG/-errno error (logged). */
int srv__web_start(struct srv *s, srv_web_t **out);
/* Stop listening, close every connection and console. NULL: nothing. */
void srv__web_close(srv_web_t *w);
/* The port actually bound (0 when off). */
int srv__web_port(const srv_web_t *w);
/* Its gate (connections before login, server/internal.h), for the counters; NULL when off. */
struct srv_gate;
const struct srv_gate *srv__web_gate(const srv_web_t *w);

/* The request of @x, and the peer's address. Owned by @x. */
const srv_httpreq_info_t *srv__httpx_req(const srv_httpx_t *x);
const char *srv__httpx_peer(const srv_httpx_t *x);
/* Answer @x: status, content type, extra header lines (each "Name: value\r\n"; may be NULL),
 * body (copied). Security headers, Content-Length and Connection are added; for API answers
 * (@no_store) also Cache-Control: no-store. HEAD requests get the headers only. @x is finished
 * after the call. */
void srv__httpx_respond(srv_httpx_t *x, int status, const char *content_type, const char *headers,
                        const void *body, size_t len, bool no_store);
/* A JSON answer (takes the reference on @body; no-store). */
void srv__httpx_json(srv_httpx_t *x, int status, const char *headers, json_t *body);
/* {"error": msg} with @status. */
void srv__httpx_error(srv_httpx_t *x, int status, const char *msg);
/* When the client goes away before the answer, @fn(@ctx) runs and @x is gone (never answer it
 * afterwards). Set it before going asynchronous; NULL clears it. */
void srv__httpx_on_abort(srv_httpx_t *x, void (*fn)(void *ctx), void *ctx);
/* Switch the connection to a WebSocket: sends 101 with Sec-WebSocket-Accept (and the chosen
 * protocol, "binary" when offered) and hands over the TLS stream, read-stopped, plus the bytes
 * that came after the request (*early, owned by the caller). @x is finished. Returns 0, or
 * -EINVAL when the upgrade request is malformed (then @x was answered with 400). */
int srv__httpx_upgrade(srv_httpx_t *x, struct auth_tls **tls, vdi_buf_t *early);

/* ---- portal.c ------------------------------------------------------------------------------------ */
typedef struct srv_portal srv_portal_t;
/* Load the static files (web_root, novnc_dir) and set up the session store. Blocking. */
int srv__portal_create(struct srv *s, srv_portal_t **out);
/* Close every console (their sessions end) and free. */
void srv__portal_destroy(srv_portal_t *p);
/* Handle one request; the portal answers @x now or later. */
void srv__portal_handle(srv_portal_t *p, srv_httpx_t *x);

/* ---- portal-console.c: browser consoles ---------------------------------------------------------- */
typedef struct srv_console srv_console_t;
/* A desktop was handed to @user for the browser (after srv__login): open the session now and
 * wait up to the token's lifetime for the WebSocket. @web_session tags the console (logout
 * closes the consoles of its session). Returns 0 or a store error. */
struct srv_vm;
int srv__console_open(srv_portal_t *p, struct srv_vm *vm, const char *user, const char *peer,
                      const char *web_session, uint32_t ttl_ms);
/* The WebSocket for @desktop came with a redeemed token of @user: attach it and splice to the
 * display socket. Takes @tls and @early. */
void srv__console_attach(srv_portal_t *p, int64_t desktop, const char *user, struct auth_tls *tls,
                         vdi_buf_t *early);
/* Refuse a WebSocket after the upgrade: a close frame with @code and @reason, then close.
 * Takes @tls. */
void srv__console_refuse(srv_portal_t *p, struct auth_tls *tls, uint16_t code, const char *reason);
/* End consoles: of @user on @desktop (0: any desktop) or of @web_session (when not NULL).
 * Returns how many. */
unsigned srv__console_kick(srv_portal_t *p, const char *user, int64_t desktop,
                           const char *web_session, const char *reason);
/* Close every console and free their state (portal destroy). */
void srv__consoles_close(srv_portal_t *p);
/* Per-portal console list head and loop, for portal-console.c. */
struct srv *srv__portal_srv(srv_portal_t *p);
vdi_list_t *srv__portal_consoles(srv_portal_t *p);

#endif /* VDI_SERVER_INTERNAL_WEB_H */
