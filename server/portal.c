/* server/portal.c: the web portal's routes (docs/api.md): static pages and noVNC (loaded into
 * memory at start, so serving them never touches the disk), the JSON API (login through PAM,
 * session cookie, CSRF token, desktops, connect, disconnect, logout, admin calls) and the
 * WebSocket entry /ws.
 *
 * Web sessions: the cookie `vdi_session` (HttpOnly, Secure, SameSite=Strict) holds an auth/
 * session token (only its digest is stored; idle and absolute lifetimes from the config). Each
 * session also has a CSRF token, returned by login and /api/me, which every POST but login must
 * carry in X-CSRF-Token; a POST whose Origin is present must be our own origin. Login itself
 * needs a JSON body (no cross-site form can send one) and the same Origin rule.
 *
 * auth/'s token store decides when a session ends (logout, idle or absolute expiry, the per-user
 * and global caps) and tells us (on_session_gone); our record of it goes at that moment, and a
 * console token minted for a session dies with it.
 *
 * Sessions survive a restart of vdid: each is written to the state database when it starts
 * (digest of the cookie, user, groups, CSRF token, lifetimes), its last use at most once a minute
 * (so a restored session may end up to a minute early, never late), and deleted when it ends;
 * srv__portal_create() puts back those still valid.
 */
#define VDI_LOG_TAG "portal"
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "common/vdi.h"
#include "golden-images/img.h"
#include "server/internal-web.h"
#include "server/internal.h"

#define COOKIE_NAME      "vdi_session"
#define TOUCH_EVERY_MS   60000 /* a session's last use reaches the database this often at most */
#define MAX_FILE_BYTES   (4u << 20)
#define MAX_STATIC_BYTES (64u << 20)
#define MAX_STATIC_FILES 2048

struct sfile {
    char *path; /* URL path */
    uint8_t *data;
    size_t len;
    const char *ctype;
    char etag[40];
    bool immutable_ish; /* scripts and styles: cache an hour; pages: revalidate */
};

struct wsess {
    vdi_list_t link;
    uint8_t digest[SHA256_DIGEST_LENGTH]; /* of the cookie token */
    char id[40];                          /* tags consoles; not a secret */
    char csrf[AUTH_TOKEN_LEN + 1];
    auth_identity_t *who;
    uint64_t saved_ms; /* the last use recorded in the database (Unix ms) */
};

struct srv_portal {
    srv_t *s;
    auth_tokens_t *tokens;
    vdi_list_t sessions; /* struct wsess */
    size_t n_sessions;
    vdi_list_t consoles; /* srv_console_t, portal-console.c */
    struct sfile *files;
    size_t n_files;
    size_t static_bytes;
};

srv_t *srv__portal_srv(srv_portal_t *p)
{
    return p->s;
}

vdi_list_t *srv__portal_consoles(srv_portal_t *p)
{
    return &p->consoles;
}

/* ---- static files ----------------------------------------------------------------------------- */
static const char *mime_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".json", "application/json"},
        {".txt", "text/plain; charset=utf-8"},
        {".woff2", "font/woff2"},
    };
    const char *dot = strrchr(path, '.');
    if (dot)
        for (size_t i = 0; i < VDI_ARRAY_SIZE(types); i++)
            if (strcmp(dot, types[i].ext) == 0)
                return types[i].type;
    return NULL; /* not served */
}

static int load_file(srv_portal_t *p, const char *fs, const char *url)
{
    const char *ctype = mime_type(url);
    if (!ctype)
        return 0;
    int fd = open(fs, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE_BYTES ||
        p->static_bytes + (size_t)st.st_size > MAX_STATIC_BYTES || p->n_files >= MAX_STATIC_FILES) {
        close(fd);
        VDI_LOG_ERR("web file %s: not a regular file, or over the size limits", fs);
        return -EFBIG;
    }
    uint8_t *data = vdi_xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
        if (n <= 0) {
            int err = n < 0 ? -errno : -EIO;
            close(fd);
            free(data);
            return err;
        }
        got += (size_t)n;
    }
    close(fd);
    p->files = vdi_xrealloc(p->files, (p->n_files + 1) * sizeof(*p->files));
    struct sfile *f = &p->files[p->n_files++];
    f->path = vdi_xstrdup(url);
    f->data = data;
    f->len = got;
    f->ctype = ctype;
    uint8_t d[SHA256_DIGEST_LENGTH];
    SHA256(data, got, d);
    snprintf(f->etag, sizeof(f->etag), "\"%02x%02x%02x%02x%02x%02x%02x%02x\"", d[0], d[1], d[2],
             d[3], d[4], d[5], d[6], d[7]);
    f->immutable_ish = strcmp(ctype, mime_type("x.html")) != 0;
    p->static_bytes += got;
    return 0;
}

/* Load @dir recursively under the URL prefix @url ("" or "/novnc"). */
static int load_dir(srv_portal_t *p, const char *dir, const char *url, int depth)
{
    if (depth > 8)
        return 0;
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *fs = vdi_xasprintf("%s/%s", dir, e->d_name);
        char *u = vdi_xasprintf("%s/%s", url, e->d_name);
        struct stat st;
        if (stat(fs, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                rc = load_dir(p, fs, u, depth + 1);
            else if (S_ISREG(st.st_mode))
                rc = load_file(p, fs, u);
        }
        free(fs);
        free(u);
    }
    closedir(d);
    return rc;
}

/* The first of @cands (relative to vdid's own directory) that is a directory, or NULL. */
static char *find_dir(const char *const *cands, size_t n)
{
    char self[512];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (len <= 0)
        return NULL;
    self[len] = 0;
    char *slash = strrchr(self, '/');
    if (!slash)
        return NULL;
    *slash = 0;
    for (size_t i = 0; i < n; i++) {
        char *path = vdi_xasprintf("%s/%s", self, cands[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return path;
        free(path);
    }
    return NULL;
}

static int load_static(srv_portal_t *p)
{
    const brk_config_t *cfg = p->s->cfg;
    /* Installed: PREFIX/share/vdi/{web,novnc}; a checkout: build/bin/ or build/TAG/bin/. */
    static const char *const web_cands[] = {"../share/vdi/web", "../../server/web",
                                            "../../../server/web"};
    static const char *const novnc_cands[] = {
        "../share/vdi/novnc",
        "../../deploy/deps/npm/node_modules/@novnc/novnc",
        "../../../deploy/deps/npm/node_modules/@novnc/novnc",
    };
    char *web =
        cfg->web_root ? vdi_xstrdup(cfg->web_root) : find_dir(web_cands, VDI_ARRAY_SIZE(web_cands));
    if (!web) {
        VDI_LOG_ERR("the portal's pages were not found next to vdid; set web_root");
        return VDI_ECONFIG;
    }
    int rc = load_dir(p, web, "", 0);
    if (rc < 0) {
        VDI_LOG_ERR("web_root=%s: %s", web, vdi_strerror(rc));
        free(web);
        return rc == -ENOENT || rc == -ENOTDIR ? VDI_ECONFIG : rc;
    }
    char *novnc = cfg->novnc_dir ? vdi_xstrdup(cfg->novnc_dir)
                                 : find_dir(novnc_cands, VDI_ARRAY_SIZE(novnc_cands));
    if (novnc) {
        char *core = vdi_xasprintf("%s/core", novnc);
        char *vendor = vdi_xasprintf("%s/vendor", novnc);
        rc = load_dir(p, core, "/novnc/core", 0);
        if (rc == 0)
            rc = load_dir(p, vendor, "/novnc/vendor", 0);
        free(core);
        free(vendor);
    }
    if (!novnc || rc < 0) {
        /* The portal still works (login, desktops, admin); the viewer page says noVNC is
         * missing. Pages are part of the source tree, noVNC comes from npm at install time. */
        VDI_LOG_WARN("novnc_dir=%s: noVNC not found (%s): browser consoles will not work; run "
                     "deploy/install-deps.sh or set novnc_dir",
                     novnc ? novnc : "(auto)", novnc ? vdi_strerror(rc) : "no candidate");
    }
    VDI_LOG_INFO("portal: %zu files (%zu KiB) from %s and %s", p->n_files, p->static_bytes >> 10,
                 web, novnc ? novnc : "(no noVNC)");
    free(web);
    free(novnc);
    return 0;
}

static const struct sfile *find_file(const srv_portal_t *p, const char *path)
{
    for (size_t i = 0; i < p->n_files; i++)
        if (strcmp(p->files[i].path, path) == 0)
            return &p->files[i];
    return NULL;
}

static void serve_static(srv_portal_t *p, srv_httpx_t *x)
{
    const srv_httpreq_info_t *r = srv__httpx_req(x);
    const char *path = strcmp(r->path, "/") == 0 ? "/index.html" : r->path;
    const struct sfile *f = find_file(p, path);
    if (!f) {
        srv__httpx_respond(x, 404, "text/plain; charset=utf-8", NULL, "not found\n", 10, false);
        return;
    }
    char headers[256];
    snprintf(headers, sizeof(headers), "ETag: %s\r\nCache-Control: %s\r\n", f->etag,
             f->immutable_ish ? "public, max-age=3600" : "no-cache");
    if (r->if_none_match[0] && strstr(r->if_none_match, f->etag)) {
        srv__httpx_respond(x, 304, NULL, headers, NULL, 0, false);
        return;
    }
    srv__httpx_respond(x, 200, f->ctype, headers, f->data, f->len, false);
}

/* ---- sessions --------------------------------------------------------------------------------- */
static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void digest_hex(const uint8_t d[SHA256_DIGEST_LENGTH],
                       char out[2 * SHA256_DIGEST_LENGTH + 1])
{
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static bool digest_parse(const char *hex, uint8_t d[SHA256_DIGEST_LENGTH])
{
    if (strlen(hex) != 2 * SHA256_DIGEST_LENGTH)
        return false;
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return false;
        d[i] = (uint8_t)v;
    }
    return true;
}

static void sess_id(struct wsess *ws)
{
    snprintf(ws->id, sizeof(ws->id), "%02x%02x%02x%02x%02x%02x%02x%02x", ws->digest[0],
             ws->digest[1], ws->digest[2], ws->digest[3], ws->digest[4], ws->digest[5],
             ws->digest[6], ws->digest[7]);
}

/* Write a new session through to the state database. */
static void sess_save(srv_portal_t *p, struct wsess *ws)
{
    const brk_config_t *cfg = p->s->cfg;
    char hex[2 * SHA256_DIGEST_LENGTH + 1];
    digest_hex(ws->digest, hex);
    vdi_buf_t groups = VDI_BUF_INIT;
    for (size_t i = 0; i < ws->who->ngroups; i++)
        vdi_buf_printf(&groups, "%s\n", ws->who->groups[i]);
    vdi_buf_append(&groups, "", 1);
    ws->saved_ms = wall_ms();
    brk_web_session_t row = {
        .digest = hex,
        .user = ws->who->username,
        .groups = (const char *)groups.data,
        .is_admin = ws->who->is_admin,
        .csrf = ws->csrf,
        .idle_ms = cfg->web_session_idle_s * 1000u,
        .last_used = (int64_t)ws->saved_ms,
        .expires = (int64_t)ws->saved_ms + (int64_t)cfg->web_session_max_s * 1000,
    };
    int rc = brk_store_web_session_put(p->s->store, &row);
    if (rc < 0)
        VDI_LOG_WARN_RL("user=%s web session not recorded (it ends with this vdid): %s",
                        ws->who->username, vdi_strerror(rc));
    vdi_buf_free(&groups);
}
static struct wsess *sess_find(srv_portal_t *p, const uint8_t digest[SHA256_DIGEST_LENGTH])
{
    struct wsess *found = NULL;
    for (vdi_list_t *it = p->sessions.next; it != &p->sessions; it = it->next) {
        struct wsess *ws = vdi_list_entry(it, struct wsess, link);
        if (CRYPTO_memcmp(ws->digest, digest, SHA256_DIGEST_LENGTH) == 0)
            found = ws;
    }
    return found;
}

/* Forget our record of a session that auth/ no longer has. */
static void sess_drop(srv_portal_t *p, struct wsess *ws)
{
    vdi_list_remove(&ws->link);
    p->n_sessions--;
    auth_identity_free(ws->who);
    vdi_wipe(ws, sizeof(*ws));
    free(ws);
}

/* auth/ ended a session (expired, revoked, or dropped for a cap). */
static void on_session_gone(const uint8_t digest[AUTH_TOKEN_DIGEST_LEN], void *ctx)
{
    srv_portal_t *p = ctx;
    struct wsess *ws = sess_find(p, digest);
    if (ws)
        sess_drop(p, ws);
    char hex[2 * SHA256_DIGEST_LENGTH + 1];
    digest_hex(digest, hex);
    int rc = brk_store_web_session_delete(p->s->store, hex);
    if (rc < 0)
        VDI_LOG_WARN_RL("an ended web session is still in the state database: %s",
                        vdi_strerror(rc));
}

/* End a session: auth/ revokes it with its console tokens, and on_session_gone drops ours. */
static void sess_end(srv_portal_t *p, struct wsess *ws)
{
    if (auth_session_revoke_digest(p->tokens, ws->digest) < 0)
        sess_drop(p, ws);
}

/* The request's web session, or NULL (no cookie, expired, revoked). */
static struct wsess *session_of(srv_portal_t *p, srv_httpx_t *x)
{
    char tok[AUTH_TOKEN_LEN + 1];
    srv__http_cookie(srv__httpx_req(x)->cookie, COOKIE_NAME, tok, sizeof(tok));
    if (!tok[0])
        return NULL;
    uint8_t d[SHA256_DIGEST_LENGTH];
    auth_token_digest(tok, d);
    /* First auth/: a session it finds expired goes (and on_session_gone drops our record). */
    int rc = auth_session_check(p->tokens, tok, NULL);
    vdi_wipe(tok, sizeof(tok));
    struct wsess *ws = rc == 0 ? sess_find(p, d) : NULL;
    vdi_wipe(d, sizeof(d));
    uint64_t now = ws ? wall_ms() : 0;
    if (ws && now - ws->saved_ms >= TOUCH_EVERY_MS) {
        char hex[2 * SHA256_DIGEST_LENGTH + 1];
        digest_hex(ws->digest, hex);
        if (brk_store_web_session_touch(p->s->store, hex, (int64_t)now) == 0)
            ws->saved_ms = now;
    }
    return ws;
}

/* Put back the sessions of the state database that are still valid (vdid's start). */
struct loaded {
    brk_web_session_t *rows;
    size_t n;
};

static int load_row(const brk_web_session_t *ws, void *ctx)
{
    struct loaded *l = ctx;
    l->rows = vdi_xrealloc(l->rows, (l->n + 1) * sizeof(*l->rows));
    brk_web_session_t *r = &l->rows[l->n++];
    *r = *ws;
    r->digest = vdi_xstrdup(ws->digest);
    r->user = vdi_xstrdup(ws->user);
    r->groups = vdi_xstrdup(ws->groups);
    r->csrf = vdi_xstrdup(ws->csrf);
    return 0;
}

static bool restore_one(srv_portal_t *p, const brk_web_session_t *r, uint64_t now)
{
    uint8_t d[SHA256_DIGEST_LENGTH];
    if (!digest_parse(r->digest, d) || !r->user[0] || strlen(r->user) > AUTH_USERNAME_MAX ||
        strlen(r->csrf) != AUTH_TOKEN_LEN || !r->idle_ms)
        return false;
    int64_t max_left = r->expires - (int64_t)now;
    int64_t idle_left =
        VDI_MIN(r->last_used + (int64_t)r->idle_ms - (int64_t)now, (int64_t)r->idle_ms);
    if (max_left <= 0 || idle_left <= 0)
        return false;
    if (auth_session_restore(p->tokens, d, r->user, r->idle_ms, (uint64_t)max_left,
                             (uint64_t)idle_left) < 0)
        return false;
    struct wsess *ws = vdi_xcalloc(1, sizeof(*ws));
    memcpy(ws->digest, d, sizeof(d));
    sess_id(ws);
    snprintf(ws->csrf, sizeof(ws->csrf), "%s", r->csrf);
    ws->saved_ms = (uint64_t)r->last_used;
    ws->who = vdi_xcalloc(1, sizeof(*ws->who));
    ws->who->username = vdi_xstrdup(r->user);
    ws->who->is_admin = r->is_admin;
    for (const char *g = r->groups, *nl; *g && (nl = strchr(g, '\n')); g = nl + 1) {
        ws->who->groups = vdi_xrealloc(ws->who->groups, (ws->who->ngroups + 1) * sizeof(char *));
        ws->who->groups[ws->who->ngroups++] = vdi_xasprintf("%.*s", (int)(nl - g), g);
    }
    vdi_list_push_tail(&p->sessions, &ws->link);
    p->n_sessions++;
    return true;
}

static int sessions_load(srv_portal_t *p)
{
    struct loaded l = {0};
    uint64_t now = wall_ms();
    int rc = brk_store_web_session_foreach(p->s->store, (int64_t)now, load_row, &l);
    size_t kept = 0;
    /* From here on the store follows auth/: one dropped for a cap while restoring is deleted. */
    auth_tokens_set_session_gone(p->tokens, on_session_gone, p);
    for (size_t i = 0; i < l.n; i++) {
        brk_web_session_t *r = &l.rows[i];
        if (rc == 0 && restore_one(p, r, now)) {
            kept++;
        } else if (rc == 0) {
            VDI_LOG_WARN("user=%s web session in the state database cannot be restored: dropped",
                         r->user);
            brk_store_web_session_delete(p->s->store, r->digest);
        }
        free((char *)r->digest);
        free((char *)r->user);
        free((char *)r->groups);
        vdi_wipe((char *)r->csrf, strlen(r->csrf));
        free((char *)r->csrf);
    }
    free(l.rows);
    if (rc < 0) {
        VDI_LOG_ERR("cannot read the web sessions from the state database: %s", vdi_strerror(rc));
        return rc;
    }
    if (kept)
        VDI_LOG_INFO("portal: %zu web sessions restored", kept);
    return 0;
}

/* Same origin: Origin absent (not a browser, or a same-origin GET) or "https://" + Host. */
static bool origin_ok(const srv_httpreq_info_t *r, bool required)
{
    if (!r->origin[0])
        return !required;
    return strncasecmp(r->origin, "https://", 8) == 0 && r->host[0] &&
           strcasecmp(r->origin + 8, r->host) == 0;
}

static bool is_json(const srv_httpreq_info_t *r)
{
    return strncasecmp(r->content_type, "application/json", 16) == 0 &&
           (r->content_type[16] == 0 || r->content_type[16] == ';' || r->content_type[16] == ' ');
}

/* A POST body as a JSON object (empty body: {}), or NULL after answering 400/415. */
static json_t *json_body(srv_httpx_t *x)
{
    const srv_httpreq_info_t *r = srv__httpx_req(x);
    if (r->body_len == 0)
        return json_object();
    if (!is_json(r)) {
        srv__httpx_error(x, 415, "the body must be JSON (Content-Type: application/json)");
        return NULL;
    }
    json_error_t e;
    json_t *j = json_loadb((const char *)r->body, r->body_len, JSON_REJECT_DUPLICATES, &e);
    if (!json_is_object(j)) {
        json_decref(j);
        srv__httpx_error(x, 400, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

static json_t *me_json(const struct wsess *ws)
{
    return json_pack("{s:s, s:b, s:s}", "user", ws->who->username, "admin", ws->who->is_admin,
                     "csrf", ws->csrf);
}

/* ---- login ------------------------------------------------------------------------------------ */
struct login_job {
    srv_portal_t *p;
    srv_httpx_t *x; /* NULL once the client went away */
};

static void login_aborted(void *ctx)
{
    struct login_job *j = ctx;
    j->x = NULL;
}

static void b64url(const uint8_t *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = a[(acc >> bits) & 63];
        }
    }
    if (bits)
        out[o++] = a[(acc << (6 - bits)) & 63];
    out[o] = 0;
}

static void on_checked(int status, auth_identity_t *id, const char *reason, void *ctx)
{
    struct login_job *j = ctx;
    srv_portal_t *p = j->p;
    srv_httpx_t *x = j->x;
    free(j);
    if (!x) {
        auth_identity_free(id);
        return;
    }
    srv__httpx_on_abort(x, NULL, NULL);
    if (status < 0) {
        int code = status == VDI_EAUTH                          ? 401
                   : status == VDI_ELOCKOUT || status == -EBUSY ? 429
                                                                : 500;
        srv__httpx_error(x, code, reason && reason[0] ? reason : vdi_strerror(status));
        return;
    }
    const brk_config_t *cfg = p->s->cfg;
    char tok[AUTH_TOKEN_LEN + 1];
    int rc = auth_session_create(p->tokens, id->username, cfg->web_session_idle_s * 1000u,
                                 cfg->web_session_max_s * 1000u, tok);
    uint8_t rnd[32];
    if (rc == 0 && RAND_bytes(rnd, sizeof(rnd)) != 1)
        rc = VDI_ETLS;
    if (rc < 0) {
        auth_identity_free(id);
        srv__httpx_error(x, 503, "cannot open a session now; try again later");
        return;
    }
    struct wsess *ws = vdi_xcalloc(1, sizeof(*ws));
    auth_token_digest(tok, ws->digest);
    b64url(rnd, sizeof(rnd), ws->csrf);
    sess_id(ws);
    ws->who = id;
    vdi_list_push_tail(&p->sessions, &ws->link);
    p->n_sessions++;
    sess_save(p, ws);
    brk_store_audit(p->s->store, "web", "web.login", 0, id->username, srv__httpx_peer(x));
    char hdr[256];
    snprintf(hdr, sizeof(hdr),
             "Set-Cookie: " COOKIE_NAME "=%s; Path=/; Max-Age=%u; HttpOnly; Secure; "
             "SameSite=Strict\r\n",
             tok, cfg->web_session_max_s);
    vdi_wipe(tok, sizeof(tok));
    srv__httpx_json(x, 200, hdr, me_json(ws));
    vdi_wipe(hdr, sizeof(hdr));
}

static void api_login(srv_portal_t *p, srv_httpx_t *x)
{
    const srv_httpreq_info_t *r = srv__httpx_req(x);
    if (!is_json(r)) {
        srv__httpx_error(x, 415, "the body must be JSON (Content-Type: application/json)");
        return;
    }
    json_t *j = json_body(x);
    if (!j)
        return;
    const char *user = json_string_value(json_object_get(j, "username"));
    const char *pass = json_string_value(json_object_get(j, "password"));
    if (!user || !pass || !user[0] || !pass[0]) {
        json_decref(j);
        srv__httpx_error(x, 400, "username and password are required");
        return;
    }
    struct login_job *job = vdi_xcalloc(1, sizeof(*job));
    job->p = p;
    job->x = x;
    int rc =
        auth_check_password(p->s->auth, "web", user, pass, srv__httpx_peer(x), on_checked, job);
    vdi_wipe((char *)pass, strlen(pass)); /* jansson's copy; the body is wiped by the caller */
    json_decref(j);
    if (rc < 0) {
        free(job);
        srv__httpx_error(x, rc == -EINVAL ? 400 : 503,
                         rc == -EINVAL ? "username or password too long or malformed"
                                       : "cannot check passwords now; try again later");
        return;
    }
    srv__httpx_on_abort(x, login_aborted, job);
}

/* ---- the user's desktops ---------------------------------------------------------------------- */
struct desk_ctx {
    srv_t *s;
    const char *user;
    json_t *list;
};

static int desk_cb(const brk_desktop_t *d, void *ctx)
{
    struct desk_ctx *dc = ctx;
    if (strcmp(d->owner, dc->user) != 0 || d->state == BRK_DS_FAILED)
        return 0;
    json_t *o = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)d->id, "pool", d->pool, "state",
                          brk_desktop_state_name(d->state));
    /* A forced move to a new image version is coming (rollout.c): the viewer warns its user. */
    const srv_vm_t *vm = srv__vm_find(dc->s, d->id);
    uint32_t in = vm ? srv__vm_logoff_in(vm) : 0;
    if (in)
        json_object_set_new(o, "logoff_in", json_integer(in));
    json_array_append_new(dc->list, o);
    return 0;
}

static void api_desktops(srv_portal_t *p, srv_httpx_t *x, struct wsess *ws)
{
    const brk_config_t *cfg = p->s->cfg;
    struct desk_ctx dc = {.s = p->s, .user = ws->who->username, .list = json_array()};
    brk_store_desktop_foreach(p->s->store, false, desk_cb, &dc);
    json_t *pools = json_array();
    for (size_t i = 0; i < cfg->n_pools; i++) {
        const brk_pool_config_t *pl = &cfg->pools[i];
        if (!brk_pool_entitled(pl, ws->who->username, (const char *const *)ws->who->groups,
                               ws->who->ngroups))
            continue;
        json_array_append_new(pools, json_pack("{s:s, s:s, s:s, s:I, s:i, s:i}", "name", pl->name,
                                               "type", brk_pool_type_name(pl->type), "image",
                                               pl->image, "memory", (json_int_t)pl->memory, "width",
                                               (int)pl->fb_width, "height", (int)pl->fb_height));
    }
    srv__httpx_json(x, 200, NULL,
                    json_pack("{s:s, s:o, s:o}", "user", ws->who->username, "desktops", dc.list,
                              "pools", pools));
}

/* ---- connect ---------------------------------------------------------------------------------- */
struct connect_job {
    srv_portal_t *p;
    srv_httpx_t *x;
    srv_login_t *login;
    char user[BRK_USER_MAX];
    char sess[40];
    uint8_t digest[AUTH_TOKEN_DIGEST_LEN]; /* of the session: its console token dies with it */
    char peer[64];
};

static void connect_aborted(void *ctx)
{
    struct connect_job *j = ctx;
    srv__login_cancel(j->login);
    free(j);
}

static void on_desktop(int status, srv_vm_t *vm, const char *msg, void *ctx)
{
    struct connect_job *j = ctx;
    srv_portal_t *p = j->p;
    srv_httpx_t *x = j->x;
    srv__httpx_on_abort(x, NULL, NULL);
    if (status < 0) {
        brk_store_audit_repeated(p->s->store, "web", "login.refused", j->user, j->peer, msg);
        srv__httpx_error(x, status == VDI_ECAPACITY ? 503 : status == VDI_EDENIED ? 403 : 409, msg);
        free(j);
        return;
    }
    int64_t id = srv__vm_id(vm);
    char desk[24], tok[AUTH_TOKEN_LEN + 1];
    snprintf(desk, sizeof(desk), "%" PRId64, id);
    uint32_t ttl_ms = p->s->cfg->web_token_ttl_s * 1000u;
    int rc = srv__console_open(p, vm, j->user, j->peer, j->sess, ttl_ms);
    if (rc == 0)
        rc = auth_console_token_issue(p->tokens, j->user, desk, j->digest, ttl_ms, tok);
    if (rc == VDI_ETOKEN || rc == -ENOSPC) {
        srv__console_kick(p, j->user, id, NULL, "no console token");
        srv__httpx_error(x, rc == VDI_ETOKEN ? 401 : 503,
                         rc == VDI_ETOKEN ? "the session ended meanwhile"
                                          : "too many connections open; try again later");
        free(j);
        return;
    }
    if (rc < 0) {
        srv__console_kick(p, j->user, id, NULL, "internal error");
        srv__httpx_error(x, 500, "internal error; the administrator was told");
        VDI_LOG_ERR("user=%s desktop=%" PRId64 " browser console: %s", j->user, id,
                    vdi_strerror(rc));
        free(j);
        return;
    }
    char ws_url[128];
    snprintf(ws_url, sizeof(ws_url), "/ws?desktop=%" PRId64 "&token=%s", id, tok);
    srv__httpx_json(x, 200, NULL,
                    json_pack("{s:I, s:s, s:s, s:i}", "desktop", (json_int_t)id, "token", tok, "ws",
                              ws_url, "expires_in", (int)(ttl_ms / 1000)));
    vdi_wipe(tok, sizeof(tok));
    vdi_wipe(ws_url, sizeof(ws_url));
    free(j);
}

static void api_connect(srv_portal_t *p, srv_httpx_t *x, struct wsess *ws)
{
    struct connect_job *j = vdi_xcalloc(1, sizeof(*j));
    j->p = p;
    j->x = x;
    snprintf(j->user, sizeof(j->user), "%s", ws->who->username);
    snprintf(j->sess, sizeof(j->sess), "%s", ws->id);
    memcpy(j->digest, ws->digest, sizeof(j->digest));
    snprintf(j->peer, sizeof(j->peer), "%s", srv__httpx_peer(x));
    brk_store_audit(p->s->store, "web", "login", 0, j->user, j->peer);
    int rc = srv__login(p->s, ws->who->username, (const char *const *)ws->who->groups,
                        ws->who->ngroups, on_desktop, j, &j->login);
    if (rc < 0) {
        free(j);
        srv__httpx_error(x, 500, "internal error; the administrator was told");
        return;
    }
    srv__httpx_on_abort(x, connect_aborted, j);
}

/* ---- disconnect, logout ----------------------------------------------------------------------- */
struct kick_ctx {
    const char *user;
    int64_t desktop;
    int64_t ids[64];
    size_t n;
};

static int sess_cb(const brk_session_t *se, void *ctx)
{
    struct kick_ctx *k = ctx;
    if (strcmp(se->user, k->user) == 0 && (k->desktop == 0 || se->desktop == k->desktop) &&
        k->n < VDI_ARRAY_SIZE(k->ids))
        k->ids[k->n++] = se->id;
    return 0;
}

static void api_disconnect(srv_portal_t *p, srv_httpx_t *x, struct wsess *ws)
{
    json_t *j = json_body(x);
    if (!j)
        return;
    json_t *d = json_object_get(j, "desktop");
    if (!json_is_integer(d) || json_integer_value(d) <= 0) {
        json_decref(j);
        srv__httpx_error(x, 400, "\"desktop\" must be a desktop id");
        return;
    }
    struct kick_ctx k = {.user = ws->who->username, .desktop = json_integer_value(d)};
    json_decref(j);
    unsigned n = srv__console_kick(p, k.user, k.desktop, NULL, "disconnected by the user");
    brk_store_session_foreach(p->s->store, false, sess_cb, &k);
    for (size_t i = 0; i < k.n; i++)
        if (srv__session_kick(p->s, k.ids[i], "disconnected by the user") == 0)
            n++;
    srv__httpx_json(x, 200, NULL, json_pack("{s:i}", "disconnected", (int)n));
}

static const char clear_cookie[] =
    "Set-Cookie: " COOKIE_NAME "=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict\r\n";

static void api_logout(srv_portal_t *p, srv_httpx_t *x, struct wsess *ws)
{
    srv__console_kick(p, NULL, 0, ws->id, "logged out");
    brk_store_audit(p->s->store, "web", "web.logout", 0, ws->who->username, srv__httpx_peer(x));
    sess_end(p, ws); /* with the console tokens minted for it */
    srv__httpx_json(x, 200, clear_cookie, json_pack("{s:b}", "ok", 1));
}

/* ---- admin ------------------------------------------------------------------------------------ */
/* The image list reads the catalogue (STATE_DIR/images: directory scans, small files): on the
 * catalogue worker, not the loop, and not in libuv's pool that PAM logins share. */
struct images_job {
    img_catalog_t *cat; /* vdid's, borrowed: it outlives the worker */
    srv_httpx_t *x;     /* NULL once the client went away */
    srv_catq_job_t *job;
    json_t *result;
    char err[160];
};

static void images_aborted(void *ctx)
{
    struct images_job *j = ctx;
    j->x = NULL;
    srv__catq_abandon(j->job);
}

static void images_work(void *arg) /* Thread: the catalogue worker */
{
    struct images_job *j = arg;
    char **names = NULL;
    size_t n = 0;
    int rc = img_catalog_list(j->cat, &names, &n);
    if (rc < 0) {
        snprintf(j->err, sizeof(j->err), "image catalogue: %s", vdi_strerror(rc));
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        uint32_t *vers = NULL, cur = 0;
        size_t nv = 0;
        json_t *v = json_array();
        if (img_catalog_versions(j->cat, names[i], &vers, &nv) == 0)
            for (size_t k = 0; k < nv; k++)
                json_array_append_new(v, json_integer(vers[k]));
        free(vers);
        img_catalog_current(j->cat, names[i], &cur);
        json_array_append_new(list, json_pack("{s:s, s:i, s:o}", "name", names[i], "current",
                                              (int)cur, "versions", v));
        free(names[i]);
    }
    free(names);
    j->result = list;
}

static void images_done(void *arg, int status)
{
    struct images_job *j = arg;
    if (status == 0 && j->x) {
        srv__httpx_on_abort(j->x, NULL, NULL);
        if (j->result)
            srv__httpx_json(j->x, 200, NULL, json_pack("{s:b, s:O}", "ok", 1, "result", j->result));
        else
            srv__httpx_error(j->x, 500, j->err);
    }
    json_decref(j->result);
    free(j);
}

static void api_images(srv_portal_t *p, srv_httpx_t *x)
{
    struct images_job *j = vdi_xcalloc(1, sizeof(*j));
    j->cat = p->s->catalog;
    j->x = x;
    int rc = srv__catq_submit(p->s->catq, images_work, images_done, j, &j->job);
    if (rc < 0) {
        free(j);
        srv__httpx_error(x, 503, "the server is shutting down");
        return;
    }
    srv__httpx_on_abort(x, images_aborted, j);
}

static void api_admin(srv_portal_t *p, srv_httpx_t *x, struct wsess *ws, const char *cmd)
{
    if (!ws->who->is_admin) {
        srv__httpx_error(x, 403, "administrators only");
        return;
    }
    json_t *args = json_body(x);
    if (!args)
        return;
    if (strcmp(cmd, "images.list") == 0) {
        json_decref(args);
        api_images(p, x);
        return;
    }
    char detail[160];
    snprintf(detail, sizeof(detail), "cmd=%.64s peer=%s", cmd, srv__httpx_peer(x));
    if (!strstr(cmd, ".list") && strcmp(cmd, "status") != 0 && !strstr(cmd, ".show") &&
        strcmp(cmd, "audit.tail") != 0)
        brk_store_audit(p->s->store, ws->who->username, "web.admin", 0, ws->who->username, detail);
    json_t *req = json_pack("{s:s, s:o}", "cmd", cmd, "args", args);
    json_t *reply = srv__admin_dispatch(p->s, req, NULL);
    json_decref(req);
    bool ok = json_is_true(json_object_get(reply, "ok"));
    srv__httpx_json(x, ok ? 200 : 400, NULL, reply);
}

/* ---- WebSocket entry -------------------------------------------------------------------------- */
static void ws_entry(srv_portal_t *p, srv_httpx_t *x)
{
    const srv_httpreq_info_t *r = srv__httpx_req(x);
    char desk[24], tok[AUTH_TOKEN_LEN + 8];
    uint64_t id = 0;
    /* Cross-site WebSocket hijacking: browsers always send Origin on WebSockets. */
    if (!origin_ok(r, true)) {
        VDI_LOG_WARN_RL("peer=%s WebSocket from a foreign origin '%.64s' refused",
                        srv__httpx_peer(x), r->origin);
        srv__httpx_error(x, 403, "WebSocket from another origin");
        return;
    }
    if (!r->is_upgrade) {
        srv__httpx_error(x, 426, "this is a WebSocket endpoint");
        return;
    }
    if (!srv__http_query(r->query, "desktop", desk, sizeof(desk)) ||
        vdi_parse_u64(desk, 1, INT64_MAX, &id) < 0 ||
        !srv__http_query(r->query, "token", tok, sizeof(tok))) {
        srv__httpx_error(x, 400, "desktop and token are required");
        return;
    }
    char *user = NULL;
    int rc = auth_console_token_redeem(p->tokens, tok, desk, &user);
    vdi_wipe(tok, sizeof(tok));
    auth_tls_t *tls = NULL;
    vdi_buf_t early = VDI_BUF_INIT;
    if (srv__httpx_upgrade(x, &tls, &early) < 0) {
        free(user);
        return;
    }
    if (rc < 0) {
        VDI_LOG_WARN_RL("desktop=%s console token refused: %s", desk, vdi_strerror(rc));
        vdi_buf_free(&early);
        srv__console_refuse(p, tls, SRV_WS_CLOSE_TOKEN,
                            rc == VDI_EDENIED ? "this token is for another desktop"
                                              : "the connection link expired or was already used");
        return;
    }
    srv__console_attach(p, (int64_t)id, user, tls, &early);
    free(user);
}

/* ---- routing ---------------------------------------------------------------------------------- */
void srv__portal_handle(srv_portal_t *p, srv_httpx_t *x)
{
    const srv_httpreq_info_t *r = srv__httpx_req(x);
    const char *path = r->path;

    if (strcmp(path, "/ws") == 0) {
        ws_entry(p, x);
        return;
    }
    if (strncmp(path, "/api/", 5) != 0) {
        if (r->method != SRV_HTTP_GET && r->method != SRV_HTTP_HEAD) {
            srv__httpx_respond(x, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n",
                               "method not allowed\n", 19, false);
            return;
        }
        serve_static(p, x);
        return;
    }
    /* The API. */
    bool post = r->method == SRV_HTTP_POST;
    if (!post && r->method != SRV_HTTP_GET) {
        srv__httpx_json(x, 405, "Allow: GET, POST\r\n",
                        json_pack("{s:s}", "error", "method not allowed"));
        return;
    }
    if (post && !origin_ok(r, false)) {
        srv__httpx_error(x, 403, "request from another origin");
        return;
    }
    if (strcmp(path, "/api/login") == 0) {
        if (!post)
            srv__httpx_json(x, 405, "Allow: POST\r\n", json_pack("{s:s}", "error", "use POST"));
        else
            api_login(p, x); /* the body is wiped when the request is done (http-parse.c) */
        return;
    }
    struct wsess *ws = session_of(p, x);
    if (!ws) {
        srv__httpx_json(x, 401, clear_cookie,
                        json_pack("{s:s}", "error", "not logged in, or the session expired"));
        return;
    }
    if (post && (strlen(r->csrf) != strlen(ws->csrf) ||
                 CRYPTO_memcmp(r->csrf, ws->csrf, strlen(ws->csrf)) != 0)) {
        srv__httpx_error(x, 403, "missing or wrong X-CSRF-Token");
        return;
    }
    if (strcmp(path, "/api/me") == 0 && !post) {
        srv__httpx_json(x, 200, NULL, me_json(ws));
    } else if (strcmp(path, "/api/desktops") == 0 && !post) {
        api_desktops(p, x, ws);
    } else if (strcmp(path, "/api/connect") == 0 && post) {
        api_connect(p, x, ws);
    } else if (strcmp(path, "/api/disconnect") == 0 && post) {
        api_disconnect(p, x, ws);
    } else if (strcmp(path, "/api/logout") == 0 && post) {
        api_logout(p, x, ws);
    } else if (strncmp(path, "/api/admin/", 11) == 0 && post) {
        api_admin(p, x, ws, path + 11);
    } else if (strncmp(path, "/api/admin/", 11) == 0 || strcmp(path, "/api/me") == 0 ||
               strcmp(path, "/api/desktops") == 0 || strcmp(path, "/api/connect") == 0 ||
               strcmp(path, "/api/disconnect") == 0 || strcmp(path, "/api/logout") == 0) {
        srv__httpx_error(x, 405, "wrong method for this call");
    } else {
        srv__httpx_error(x, 404, "no such API call");
    }
}

/* ---- life cycle ------------------------------------------------------------------------------- */
int srv__portal_create(srv_t *s, srv_portal_t **out)
{
    srv_portal_t *p = vdi_xcalloc(1, sizeof(*p));
    p->s = s;
    vdi_list_init(&p->sessions);
    vdi_list_init(&p->consoles);
    int rc = load_static(p);
    if (rc == 0)
        rc = auth_tokens_create(2 * (size_t)s->cfg->web_max_sessions, s->cfg->web_user_tokens, NULL,
                                NULL, &p->tokens);
    if (rc == 0)
        rc = sessions_load(p);
    if (rc < 0) {
        srv__portal_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

void srv__portal_destroy(srv_portal_t *p)
{
    if (!p)
        return;
    while (!vdi_list_empty(&p->sessions))
        sess_drop(p, vdi_list_entry(p->sessions.next, struct wsess, link));
    auth_tokens_destroy(p->tokens);
    for (size_t i = 0; i < p->n_files; i++) {
        free(p->files[i].path);
        free(p->files[i].data);
    }
    free(p->files);
    free(p);
}
