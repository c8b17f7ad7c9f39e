/* Unit tests for auth/login.c and auth/tls.c in one process: the login runs on a libuv loop in
 * the main thread; a blocking OpenSSL client in a second thread speaks RFB/VeNCrypt to it over
 * loopback TCP, in whole messages or one byte per write. PAM is real (pam_wrapper + pam_matrix,
 * re-executed like test_pam), so this also runs the whole path under the sanitizers.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/auth.h"
#include "common/vdi.h"

static char *find_lib(const char *rel)
{
    static const char *const dirs[] = {"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                                       "/usr/lib64", "/usr/lib", NULL};
    for (int i = 0; dirs[i]; i++) {
        char *p = vdi_xasprintf("%s/%s", dirs[i], rel);
        if (access(p, R_OK) == 0)
            return p;
        free(p);
    }
    return NULL;
}

static char g_dir[64];

static void put_file(const char *name, const char *text)
{
    char *p = vdi_xasprintf("%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    VDI_ASSERT(f);
    fputs(text, f);
    fclose(f);
    free(p);
}

static void reexec(char **argv)
{
    char *pamw = find_lib("libpam_wrapper.so"), *matrix = find_lib("pam_wrapper/pam_matrix.so");
    char *deny = find_lib("security/pam_deny.so");
    if (!pamw || !matrix || !deny) {
        const char *ci = getenv("VDI_REQUIRE_DEPS");
        if (!ci || strcmp(ci, "1") != 0)
            ci = getenv("VDI_REQUIRE_KVM");
        bool must = ci && strcmp(ci, "1") == 0;
        printf("%s: libpam-wrapper (pam_wrapper, pam_matrix) missing\n", must ? "FAIL" : "SKIP");
        exit(must ? 1 : 77);
    }
    snprintf(g_dir, sizeof(g_dir), "/tmp/vdi-test-login.XXXXXX");
    VDI_ASSERT(mkdtemp(g_dir));
    put_file("passdb", "alice:secret:vdi-login\n");
    char *svc = vdi_xasprintf("auth required %s passdb=%s/passdb\n"
                              "account required %s passdb=%s/passdb\n",
                              matrix, g_dir, matrix, g_dir);
    put_file("vdi-login", svc);
    char *other = vdi_xasprintf("auth required %s\naccount required %s\n", deny, deny);
    put_file("other", other);
    setenv("LD_PRELOAD", pamw, 1);
    setenv("PAM_WRAPPER", "1", 1);
    setenv("PAM_WRAPPER_SERVICE_DIR", g_dir, 1);
    setenv("VDI_TEST_LOGIN_DIR", g_dir, 1);
    setenv("UID_WRAPPER_DISABLE_DEEPBIND", "1", 1); /* see test_pam.c */
    setenv("PAM_WRAPPER_DISABLE_DEEPBIND", "1", 1);
    const char *asan = getenv("ASAN_OPTIONS");
    setenv("ASAN_OPTIONS",
           vdi_xasprintf("%s%sverify_asan_link_order=0", asan ? asan : "", asan ? ":" : ""), 1);
    execv("/proc/self/exe", argv);
    perror("execv");
    exit(1);
}

/* ---- The client thread ------------------------------------------------------------------------ */
enum misbehave {
    GOOD,
    STALL_BEFORE_TLS,
    GARBAGE_TLS,
    HANG_UP_IN_TLS
};

struct client {
    int port;
    const char *user, *pass;
    bool bytewise;
    enum misbehave how;
    /* results */
    int result; /* SecurityResult, -1 if none */
    char reason[128];
    char reply[64]; /* what the server sent after a successful login */
    bool got_eof;
};

static int g_fd;
static SSL *g_ssl;

static void c_send(struct client *c, const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t step = c->bytewise ? 1 : n;
    for (size_t off = 0; off < n; off += step) {
        size_t k = VDI_MIN(step, n - off);
        if (g_ssl)
            SSL_write(g_ssl, b + off, (int)k);
        else if (write(g_fd, b + off, k) < 0)
            return;
        if (c->bytewise)
            usleep(200);
    }
}

static bool c_recv(void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        long r = g_ssl ? SSL_read(g_ssl, (uint8_t *)p + got, (int)(n - got))
                       : read(g_fd, (uint8_t *)p + got, n - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    c->result = -1;
    g_ssl = NULL;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    g_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(g_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return NULL;
    int one = 1;
    setsockopt(g_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {.tv_sec = 10};
    setsockopt(g_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint8_t b[64];
    SSL_CTX *ctx = NULL;
    if (!c_recv(b, 12))
        goto out;
    c_send(c, "RFB 003.008\n", 12);
    if (c->how == STALL_BEFORE_TLS) {
        c_recv(b, 2); /* the security types */
        c_recv(b, 1); /* then nothing until the server gives up */
        goto out;
    }
    if (!c_recv(b, 2))
        goto out;
    c_send(c, "\x13", 1);
    if (!c_recv(b, 2))
        goto out;
    c_send(c, "\0\2", 2);
    if (!c_recv(b, 2 + 4)) /* ok, one subtype: X509Plain */
        goto out;
    c_send(c, "\0\0\1\6", 4);
    if (!c_recv(b, 1) || b[0] != 1)
        goto out;
    if (c->how == GARBAGE_TLS) {
        c_send(c, "this is not a ClientHello\r\n", 27);
        c_recv(b, sizeof(b)); /* an alert, then EOF */
        goto out;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    g_ssl = SSL_new(ctx);
    SSL_set_fd(g_ssl, g_fd);
    if (SSL_connect(g_ssl) != 1)
        goto out;
    if (c->how == HANG_UP_IN_TLS)
        goto out; /* no close_notify: the server sees a TCP EOF */
    uint32_t ul = (uint32_t)strlen(c->user), pl = (uint32_t)strlen(c->pass);
    uint8_t m[256] = {0, 0, 0, (uint8_t)ul, 0, 0, 0, (uint8_t)pl};
    memcpy(m + 8, c->user, ul);
    memcpy(m + 8 + ul, c->pass, pl);
    c_send(c, m, 8 + ul + pl);
    if (!c_recv(b, 4))
        goto out;
    c->result = b[3];
    if (c->result) {
        uint8_t l[4];
        if (c_recv(l, 4) && l[3] < sizeof(c->reason))
            c_recv(c->reason, l[3]);
    } else {
        c_send(c, "\1", 1); /* ClientInit */
        c_recv(c->reply, 5);
        c_send(c, "bye", 3);
    }
    /* The server ends with close_notify. */
    int r = SSL_read(g_ssl, b, sizeof(b));
    c->got_eof = r <= 0 && SSL_get_error(g_ssl, r) == SSL_ERROR_ZERO_RETURN;
out:
    if (g_ssl) {
        SSL_shutdown(g_ssl);
        SSL_free(g_ssl);
    }
    SSL_CTX_free(ctx);
    close(g_fd);
    return NULL;
}

/* ---- The server side ------------------------------------------------------------------------- */
struct server {
    auth_t *a;
    auth_rfb_login_t *login;
    uv_timer_t abort_timer;
    bool abort_after_ms; /* abort the login 100 ms after accepting it */
    bool in_abort;
    uv_tcp_t listener;
    int status;
    bool done;
    char user[64];
    int audits;
    uint8_t got[16];
    size_t ngot;
};

static void on_tls_closed(void *ctx)
{
    struct server *s = ctx;
    s->done = true;
}

static void on_session_read(auth_tls_t *t, ssize_t n, const uint8_t *data, void *ctx)
{
    struct server *s = ctx;
    if (n < 0) {
        auth_tls_close(t, on_tls_closed, s);
        return;
    }
    size_t k = VDI_MIN((size_t)n, sizeof(s->got) - s->ngot);
    memcpy(s->got + s->ngot, data, k);
    s->ngot += k;
    if (s->ngot == 1) /* ClientInit: answer, as the gateway would with ServerInit */
        auth_tls_write(t, "hello", 5, NULL, NULL);
    if (s->ngot >= 4)
        auth_tls_close(t, on_tls_closed, s);
}

static void on_login(auth_rfb_login_t *l, int status, auth_rfb_login_result_t *res, void *ctx)
{
    struct server *s = ctx;
    (void)l;
    assert_false(s->in_abort); /* never from inside auth_rfb_login_abort() */
    s->status = status;
    uv_close((uv_handle_t *)&s->listener, NULL);
    if (status < 0) {
        s->done = true;
        return;
    }
    snprintf(s->user, sizeof(s->user), "%s", res->id->username);
    auth_identity_free(res->id);
    assert_int_equal(auth_tls_read_start(res->tls, on_session_read, s), 0);
}

static void on_abort_timer(uv_timer_t *tm)
{
    struct server *s = vdi_container_of(tm, struct server, abort_timer);
    s->in_abort = true;
    auth_rfb_login_abort(s->login);
    auth_rfb_login_abort(s->login); /* a second abort does nothing */
    s->in_abort = false;
    assert_int_equal(s->status, 1); /* not reported yet */
    uv_close((uv_handle_t *)tm, NULL);
}

static void on_conn(uv_stream_t *srv, int status)
{
    struct server *s = vdi_container_of((uv_tcp_t *)srv, struct server, listener);
    assert_int_equal(status, 0);
    assert_int_equal(auth_rfb_login_accept(s->a, srv, on_login, s, &s->login), 0);
    if (s->abort_after_ms)
        uv_timer_start(&s->abort_timer, on_abort_timer, 100, 0);
}

static void on_audit(const auth_audit_event_t *ev, void *ctx)
{
    struct server *s = ctx;
    assert_null(strstr(ev->reason, "secret"));
    s->audits++;
}

static void run(struct client *c, struct server *s, uint32_t timeout_ms, bool abort)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    auth_config_t cfg;
    auth_config_defaults(&cfg);
    cfg.state_dir = getenv("VDI_TEST_LOGIN_DIR");
    cfg.pam_service = "vdi-login";
    cfg.handshake_timeout_ms = timeout_ms;
    memset(s, 0, sizeof(*s));
    s->status = 1;
    s->abort_after_ms = abort;
    uv_timer_init(&loop, &s->abort_timer);
    assert_int_equal(auth_create(&loop, &cfg, &s->a), 0);
    auth_set_audit(s->a, on_audit, s);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&loop, &s->listener);
    assert_int_equal(uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 4, on_conn), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
    c->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    pthread_t th;
    pthread_create(&th, NULL, client_main, c);
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    if (!abort) { /* the unused abort timer */
        uv_close((uv_handle_t *)&s->abort_timer, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    assert_true(s->done);
    assert_int_equal(auth_rfb_login_count(s->a), 0);
    auth_destroy(s->a);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_good_login(void **state)
{
    (void)state;
    for (int bytewise = 0; bytewise <= 1; bytewise++) {
        struct client c = {.user = "alice", .pass = "secret", .bytewise = bytewise};
        struct server s;
        run(&c, &s, 10000, false);
        assert_int_equal(s.status, 0);
        assert_string_equal(s.user, "alice");
        assert_int_equal(c.result, 0);
        /* ClientInit reached the new owner of the stream, and its answer the client. */
        assert_int_equal(s.ngot, 4);
        assert_memory_equal(s.got, "\1bye", 4);
        assert_string_equal(c.reply, "hello");
        assert_true(c.got_eof); /* close_notify */
        assert_int_equal(s.audits, 1);
    }
}

static void test_wrong_password(void **state)
{
    (void)state;
    struct client c = {.user = "alice", .pass = "wrong", .bytewise = true};
    struct server s;
    run(&c, &s, 10000, false);
    assert_int_equal(s.status, VDI_EAUTH);
    assert_int_equal(c.result, 1);
    assert_string_equal(c.reason, "authentication failed");
    assert_true(c.got_eof);
}

static void test_stall_times_out(void **state)
{
    (void)state;
    struct client c = {.user = "alice", .pass = "secret", .how = STALL_BEFORE_TLS};
    struct server s;
    run(&c, &s, 300, false);
    assert_int_equal(s.status, VDI_ETIMEOUT);
}

static void test_garbage_instead_of_tls(void **state)
{
    (void)state;
    struct client c = {.user = "alice", .pass = "secret", .how = GARBAGE_TLS, .bytewise = true};
    struct server s;
    run(&c, &s, 5000, false);
    assert_int_equal(s.status, VDI_ETLS);
}

static void test_hang_up_in_tls(void **state)
{
    (void)state;
    struct client c = {.user = "alice", .pass = "secret", .how = HANG_UP_IN_TLS};
    struct server s;
    run(&c, &s, 5000, false);
    assert_int_equal(s.status, VDI_EPROTOCOL);
}

static void test_abort(void **state)
{
    (void)state;
    struct client c = {.user = "alice", .pass = "secret", .how = STALL_BEFORE_TLS};
    struct server s;
    run(&c, &s, 10000, true);
    assert_int_equal(s.status, -ECANCELED);
}

static void cleanup(void)
{
    const char *dir = getenv("VDI_TEST_LOGIN_DIR");
    if (!dir)
        return;
    const char *files[] = {"passdb", "vdi-login", "other", "tls/cert.pem", "tls/key.pem", "tls"};
    for (size_t i = 0; i < VDI_ARRAY_SIZE(files); i++) {
        char *p = vdi_xasprintf("%s/%s", dir, files[i]);
        if (unlink(p) < 0)
            rmdir(p);
        free(p);
    }
    rmdir(dir);
}

int main(int argc, char **argv)
{
    (void)argc;
    if (!getenv("VDI_TEST_LOGIN_DIR"))
        reexec(argv);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_login),      cmocka_unit_test(test_wrong_password),
        cmocka_unit_test(test_stall_times_out), cmocka_unit_test(test_garbage_instead_of_tls),
        cmocka_unit_test(test_hang_up_in_tls),  cmocka_unit_test(test_abort),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cleanup();
    return rc;
}
