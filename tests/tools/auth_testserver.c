/* tests/tools/auth_testserver.c: a loopback RFB server for the auth tests. It runs vdi's login
 * (auth_rfb_login_accept: VeNCrypt, TLS, PAM, limits) on a TCP port and, after a successful
 * login, serves a tiny RFB session on the TLS stream it was handed: ServerInit, then a 64x48
 * framebuffer with a known pattern in raw encoding, in the pixel format the client asks for.
 * With --https-port it also runs a bare TLS listener (auth_tls_accept) that answers one line.
 *
 * Prints "listening port=N [https=M]" on stdout when ready, one line per login and audit event,
 * and runs until SIGTERM or SIGINT.
 */
#define VDI_LOG_TAG "testserver"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "common/vdi.h"

#define FB_W 64
#define FB_H 48

static auth_t *g_auth;
static uv_loop_t *g_loop;
static uv_tcp_t g_rfb, g_https;
static bool g_have_https;
static uv_signal_t g_sigterm, g_sigint;
static int g_sessions;

static vdi_list_t g_session_list;

struct session {
    vdi_list_t link;
    auth_tls_t *tls;
    vdi_buf_t in;
    bool inited;
    uint8_t bpp, big_endian;
    uint16_t rmax, gmax, bmax;
    uint8_t rshift, gshift, bshift;
    char user[AUTH_USERNAME_MAX + 1];
};

static void on_session_closed(void *ctx)
{
    struct session *s = ctx;
    vdi_buf_free(&s->in);
    free(s);
    g_sessions--;
}

static void session_end(struct session *s, const char *why)
{
    vdi_list_remove(&s->link);
    printf("session end user=%s: %s\n", s->user, why);
    fflush(stdout);
    auth_tls_close(s->tls, on_session_closed, s);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static void send_server_init(struct session *s)
{
    static const char name[] = "vdi-auth-test";
    uint8_t m[24 + sizeof(name) - 1] = {0};
    put16(m, FB_W);
    put16(m + 2, FB_H);
    m[4] = 32, m[5] = 24, m[6] = 0, m[7] = 1; /* bpp, depth, big-endian, true colour */
    put16(m + 8, 255), put16(m + 10, 255), put16(m + 12, 255);
    m[14] = 16, m[15] = 8, m[16] = 0;
    put32(m + 20, sizeof(name) - 1);
    memcpy(m + 24, name, sizeof(name) - 1);
    auth_tls_write(s->tls, m, sizeof(m), NULL, NULL);
}

/* The pattern the client tool checks: red = 4x, green = 5y, blue = 0x80. */
static void send_frame(struct session *s)
{
    size_t bytes = s->bpp / 8;
    size_t len = 4 + 12 + (size_t)FB_W * FB_H * bytes;
    uint8_t *m = vdi_xcalloc(1, len);
    put16(m + 2, 1);
    put16(m + 8, FB_W);
    put16(m + 10, FB_H); /* x = y = 0, encoding 0 = raw */
    uint8_t *p = m + 16;
    for (int y = 0; y < FB_H; y++) {
        for (int x = 0; x < FB_W; x++) {
            uint32_t r = (uint32_t)(x * 4) * s->rmax / 255, g = (uint32_t)(y * 5) * s->gmax / 255,
                     b = 0x80u * s->bmax / 255;
            uint32_t px = r << s->rshift | g << s->gshift | b << s->bshift;
            for (size_t i = 0; i < bytes; i++)
                p[i] = (uint8_t)(px >> (8 * (s->big_endian ? bytes - 1 - i : i)));
            p += bytes;
        }
    }
    auth_tls_write(s->tls, m, len, NULL, NULL);
    free(m);
}

/* Returns bytes consumed by one complete client message, 0 if more are needed, -1 if bad. */
static long handle_msg(struct session *s, const uint8_t *d, size_t n)
{
    if (!s->inited) { /* ClientInit: shared flag */
        if (n < 1)
            return 0;
        s->inited = true;
        send_server_init(s);
        return 1;
    }
    if (n < 1)
        return 0;
    switch (d[0]) {
    case 0: /* SetPixelFormat */
        if (n < 20)
            return 0;
        if (d[4 + 0] != 8 && d[4 + 0] != 16 && d[4 + 0] != 32)
            return -1;
        if (!d[4 + 3])
            return -1; /* colour maps are not served */
        s->bpp = d[4];
        s->big_endian = d[6];
        s->rmax = (uint16_t)(d[8] << 8 | d[9]);
        s->gmax = (uint16_t)(d[10] << 8 | d[11]);
        s->bmax = (uint16_t)(d[12] << 8 | d[13]);
        s->rshift = d[14], s->gshift = d[15], s->bshift = d[16];
        return 20;
    case 2: /* SetEncodings */
        if (n < 4)
            return 0;
        if (n < 4 + 4u * (d[2] << 8 | d[3]))
            return 0;
        return 4 + 4 * (d[2] << 8 | d[3]);
    case 3: /* FramebufferUpdateRequest */
        if (n < 10)
            return 0;
        send_frame(s);
        return 10;
    case 4:
        return n < 8 ? 0 : 8;
    case 5:
        return n < 6 ? 0 : 6;
    case 6: {
        if (n < 8)
            return 0;
        uint32_t l = (uint32_t)d[4] << 24 | (uint32_t)d[5] << 16 | (uint32_t)d[6] << 8 | d[7];
        if (l > 65536)
            return -1;
        return n < 8 + l ? 0 : 8 + (long)l;
    }
    default:
        return -1;
    }
}

static void on_session_read(auth_tls_t *t, ssize_t n, const uint8_t *data, void *ctx)
{
    struct session *s = ctx;
    (void)t;
    if (n < 0) {
        session_end(s, n == UV_EOF ? "end of stream" : vdi_strerror((int)n));
        return;
    }
    if (vdi_buf_append(&s->in, data, (size_t)n) < 0) {
        session_end(s, "out of memory");
        return;
    }
    for (;;) {
        long used = handle_msg(s, s->in.data, s->in.len);
        if (used < 0) {
            session_end(s, "bad client message");
            return;
        }
        if (used == 0)
            return;
        vdi_buf_consume(&s->in, (size_t)used);
    }
}

static void on_login(auth_rfb_login_t *l, int status, auth_rfb_login_result_t *res, void *ctx)
{
    (void)l, (void)ctx;
    if (status < 0) {
        printf("login failed: %s\n", vdi_strerror(status));
        fflush(stdout);
        return;
    }
    struct session *s = vdi_xcalloc(1, sizeof(*s));
    vdi_list_push_tail(&g_session_list, &s->link);
    s->tls = res->tls;
    s->bpp = 32, s->rmax = s->gmax = s->bmax = 255, s->rshift = 16, s->gshift = 8;
    snprintf(s->user, sizeof(s->user), "%s", res->id->username);
    printf("login ok user=%s admin=%d groups=", res->id->username, res->id->is_admin);
    for (size_t i = 0; i < res->id->ngroups; i++)
        printf("%s%s", i ? "," : "", res->id->groups[i]);
    printf(" rfb=3.%d subtype=%u tls=%s cipher=%s peer=%s\n", res->rfb_minor, res->vencrypt_subtype,
           auth_tls_version(res->tls), auth_tls_cipher(res->tls), res->peer);
    fflush(stdout);
    auth_identity_free(res->id);
    g_sessions++;
    if (auth_tls_read_start(s->tls, on_session_read, s) < 0)
        session_end(s, "read_start failed");
}

static void on_rfb_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    int err = auth_rfb_login_accept(g_auth, server, on_login, NULL, NULL);
    if (err < 0)
        VDI_LOG_WARN("accept failed: %s", vdi_strerror(err));
}

/* The HTTPS-style listener: after the handshake, answer one line with the TLS version. */
static void on_https_written(auth_tls_t *t, int status, void *ctx)
{
    (void)status, (void)ctx;
    auth_tls_close(t, NULL, NULL);
}

static void on_https_read(auth_tls_t *t, ssize_t n, const uint8_t *data, void *ctx)
{
    (void)data, (void)ctx;
    auth_tls_read_stop(t);
    if (n < 0) {
        auth_tls_close(t, NULL, NULL);
        return;
    }
    char line[128];
    int len = snprintf(line, sizeof(line), "hello %s\n", auth_tls_version(t));
    if (auth_tls_write(t, line, (size_t)len, on_https_written, NULL) < 0)
        auth_tls_close(t, NULL, NULL);
}

static void on_https_handshake(auth_tls_t *t, int status, void *ctx)
{
    (void)ctx;
    if (status < 0) {
        printf("https handshake failed: %s\n", vdi_strerror(status));
        fflush(stdout);
        return;
    }
    printf("https handshake ok %s %s\n", auth_tls_version(t), auth_tls_cipher(t));
    fflush(stdout);
    auth_tls_read_start(t, on_https_read, NULL);
}

static void on_https_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    int err = auth_tls_accept(g_auth, server, on_https_handshake, NULL);
    if (err < 0)
        VDI_LOG_WARN("https accept failed: %s", vdi_strerror(err));
}

static void on_audit(const auth_audit_event_t *ev, void *ctx)
{
    static const char *const kinds[] = {"login-ok", "login-failed", "lockout", "locked"};
    (void)ctx;
    printf("audit %s service=%s user=%s peer=%s reason=%s\n", kinds[ev->kind], ev->service,
           ev->username, ev->peer, ev->reason);
    fflush(stdout);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    (void)signum, (void)sig;
    VDI_LOG_INFO("stopping: %d logins in progress, %d sessions", (int)auth_rfb_login_count(g_auth),
                 g_sessions);
    uv_signal_stop(&g_sigterm);
    uv_signal_stop(&g_sigint);
    uv_close((uv_handle_t *)&g_rfb, NULL);
    if (g_have_https)
        uv_close((uv_handle_t *)&g_https, NULL);
    uv_close((uv_handle_t *)&g_sigterm, NULL);
    uv_close((uv_handle_t *)&g_sigint, NULL);
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &g_session_list)
    {
        session_end(vdi_list_entry(it, struct session, link), "server stopping");
    }
}

static int listen_on(uv_tcp_t *h, int port, uv_connection_cb cb)
{
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(g_loop, h);
    int err = uv_tcp_bind(h, (struct sockaddr *)&sa, 0);
    if (!err)
        err = uv_listen((uv_stream_t *)h, 64, cb);
    if (err < 0) {
        fprintf(stderr, "auth_testserver: listen on port %d: %s\n", port, uv_strerror(err));
        exit(1);
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(h, (struct sockaddr *)&ss, &len);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void usage(void)
{
    fprintf(stderr,
            "Usage: auth_testserver --state DIR [--port N] [--https-port N] [--cert F --key F]\n"
            "       [--pam-service S] [--tlsplain | --tlsplain-only] [--timeout-ms N]\n"
            "       [--free N] [--backoff-ms N] [--lock-after N] [--lock-ms N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    auth_config_t cfg;
    auth_config_defaults(&cfg);
    int port = 0, https_port = -1;
    static const struct option opts[] = {
        {"state", required_argument, NULL, 's'},      {"port", required_argument, NULL, 'p'},
        {"https-port", required_argument, NULL, 'H'}, {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},        {"pam-service", required_argument, NULL, 'P'},
        {"tlsplain", no_argument, NULL, 't'},         {"tlsplain-only", no_argument, NULL, 'T'},
        {"timeout-ms", required_argument, NULL, 'o'}, {"free", required_argument, NULL, 'f'},
        {"backoff-ms", required_argument, NULL, 'b'}, {"lock-after", required_argument, NULL, 'l'},
        {"lock-ms", required_argument, NULL, 'L'},    {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            cfg.state_dir = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'H':
            https_port = atoi(optarg);
            break;
        case 'c':
            cfg.tls_cert = optarg;
            break;
        case 'k':
            cfg.tls_key = optarg;
            break;
        case 'P':
            cfg.pam_service = optarg;
            break;
        case 't':
            cfg.allow_tlsplain = true;
            break;
        case 'T':
            cfg.tlsplain_only = true;
            break;
        case 'o':
            cfg.handshake_timeout_ms = (uint32_t)atoi(optarg);
            break;
        case 'f':
            cfg.limit_user.free_failures = cfg.limit_addr.free_failures = (uint32_t)atoi(optarg);
            break;
        case 'b':
            cfg.limit_user.backoff_base_ms = cfg.limit_addr.backoff_base_ms =
                (uint32_t)atoi(optarg);
            break;
        case 'l':
            cfg.limit_user.lockout_failures = (uint32_t)atoi(optarg);
            break;
        case 'L':
            cfg.limit_user.lockout_ms = cfg.limit_addr.lockout_ms = (uint32_t)atoi(optarg);
            break;
        default:
            usage();
        }
    }
    vdi_list_init(&g_session_list);
    signal(SIGPIPE, SIG_IGN); /* auth.h: a peer that went away must not kill the process */
    vdi_log_init_from_env();
    vdi_log_set_program("auth_testserver");
    g_loop = uv_default_loop();
    int err = auth_create(g_loop, &cfg, &g_auth);
    if (err < 0) {
        fprintf(stderr, "auth_testserver: auth_create: %s\n", vdi_strerror(err));
        return 1;
    }
    auth_set_audit(g_auth, on_audit, NULL);
    int bound = listen_on(&g_rfb, port, on_rfb_connection);
    int hbound = -1;
    if (https_port >= 0) {
        g_have_https = true;
        hbound = listen_on(&g_https, https_port, on_https_connection);
    }
    uv_signal_init(g_loop, &g_sigterm);
    uv_signal_init(g_loop, &g_sigint);
    uv_signal_start(&g_sigterm, on_signal, SIGTERM);
    uv_signal_start(&g_sigint, on_signal, SIGINT);
    printf("listening port=%d https=%d fingerprint=%s\n", bound, hbound,
           auth_cert_fingerprint(g_auth));
    fflush(stdout);
    uv_run(g_loop, UV_RUN_DEFAULT);
    /* Logins still in progress at the signal end at their handshake timeout at the latest. */
    auth_destroy(g_auth);
    uv_loop_close(g_loop);
    printf("stopped\n");
    return 0;
}
