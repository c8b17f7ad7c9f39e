/* tests/tools/auth_rawclient.c: scripted (mostly hostile) RFB clients for the auth tests. Each
 * scenario speaks the RFB/VeNCrypt handshake by hand (TLS with OpenSSL, certificate not
 * checked) up to the point where it misbehaves, then reports what the server did.
 *
 *   auth_rawclient PORT version STRING    send STRING + "\n" as the ProtocolVersion
 *   auth_rawclient PORT sectype N MINOR   choose security type N (RFB 3.MINOR)
 *   auth_rawclient PORT stall STAGE       go quiet at STAGE: version | tls | plain
 *   auth_rawclient PORT plain ULEN PLEN   send a Plain header with these lengths inside TLS
 *   auth_rawclient PORT early             send credentials in clear where TLS should start
 *   auth_rawclient PORT tls10             offer only TLS 1.0 after VeNCrypt
 *   auth_rawclient PORT pipelined USER PASS   credentials and ClientInit in one TLS record
 *
 * Prints one line saying what happened; exit 0 when the server refused as expected (closed the
 * connection; for pipelined: accepted and sent ServerInit), 1 otherwise, 2 on usage errors.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int g_fd = -1;
static SSL *g_ssl;
static SSL_CTX *g_ctx;

static void die(const char *msg)
{
    printf("rawclient: %s\n", msg);
    exit(1);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void connect_to(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    g_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (g_fd < 0 || connect(g_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        die("cannot connect");
    int one = 1;
    setsockopt(g_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void send_all(const void *p, size_t n)
{
    if (g_ssl) {
        if (SSL_write(g_ssl, p, (int)n) != (int)n)
            die("TLS write failed");
        return;
    }
    if (write(g_fd, p, n) != (ssize_t)n)
        die("write failed");
}

/* Read up to @n bytes within @ms; returns the count (0 = EOF, -1 = timeout/error). */
static long recv_some(void *p, size_t n, int ms)
{
    if (g_ssl && SSL_pending(g_ssl) == 0) {
        struct pollfd pfd = {.fd = g_fd, .events = POLLIN};
        if (poll(&pfd, 1, ms) <= 0)
            return -1;
    } else if (!g_ssl) {
        struct pollfd pfd = {.fd = g_fd, .events = POLLIN};
        if (poll(&pfd, 1, ms) <= 0)
            return -1;
    }
    if (g_ssl) {
        int r = SSL_read(g_ssl, p, (int)n);
        if (r > 0)
            return r;
        int e = SSL_get_error(g_ssl, r);
        return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? 0 : -1;
    }
    ssize_t r = read(g_fd, p, n);
    return r < 0 ? 0 : r; /* a reset counts as closed */
}

static void recv_exact(void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        long r = recv_some((uint8_t *)p + got, n - got, 10000);
        if (r <= 0)
            die("connection ended early");
        got += (size_t)r;
    }
}

/* Everything until EOF (within @ms); returns the byte count, or -1 if still open. */
static long drain(uint8_t *buf, size_t cap, int ms)
{
    size_t got = 0;
    long deadline = now_ms() + ms;
    for (;;) {
        long left = deadline - now_ms();
        if (left <= 0)
            return -1;
        uint8_t tmp[512];
        long r = recv_some(tmp, sizeof(tmp), (int)left);
        if (r == 0)
            return (long)got;
        if (r < 0)
            return -1;
        size_t k = (size_t)r < cap - got ? (size_t)r : cap - got;
        memcpy(buf + got, tmp, k);
        got += k;
    }
}

static void print_bytes(const char *what, const uint8_t *b, long n)
{
    printf("rawclient: %s %ld bytes:", what, n);
    for (long i = 0; i < n && i < 64; i++)
        printf(" %02x", b[i]);
    printf(" \"");
    for (long i = 0; i < n; i++)
        putchar(b[i] >= 0x20 && b[i] < 0x7f ? b[i] : '.');
    printf("\"\n");
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Version, VeNCrypt, subtype X509Plain (or TLSPlain if the server offers only it): up to the
 * server's "accepted" byte. */
static void pre_tls(int minor)
{
    uint8_t b[64];
    recv_exact(b, 12);
    char v[13];
    snprintf(v, sizeof(v), "RFB 003.%03d\n", minor);
    send_all(v, 12);
    recv_exact(b, 2);
    if (b[0] != 1 || b[1] != 19)
        die("server did not offer exactly VeNCrypt");
    send_all("\x13", 1);
    recv_exact(b, 2);
    send_all("\x00\x02", 2);
    recv_exact(b, 2);
    if (b[0] != 0 || b[1] < 1 || b[1] > 2)
        die("bad VeNCrypt subtype list");
    uint8_t subs[8];
    recv_exact(subs, 4u * b[1]);
    send_all(subs, 4); /* the first one offered */
    recv_exact(b, 1);
    if (b[0] != 1)
        die("subtype refused");
}

static int start_tls(int max_version)
{
    SSL_CTX *ctx = g_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_cipher_list(ctx, "ALL:aNULL:@SECLEVEL=0");
    if (max_version) {
        SSL_CTX_set_min_proto_version(ctx, max_version);
        SSL_CTX_set_max_proto_version(ctx, max_version);
    }
    g_ssl = SSL_new(ctx);
    SSL_set_fd(g_ssl, g_fd);
    if (SSL_connect(g_ssl) != 1) {
        unsigned long e = ERR_get_error();
        char msg[256];
        ERR_error_string_n(e, msg, sizeof(msg));
        printf("rawclient: TLS handshake failed: %s\n", msg);
        SSL_free(g_ssl);
        SSL_CTX_free(g_ctx);
        g_ssl = NULL;
        g_ctx = NULL;
        return -1;
    }
    return 0;
}

static void plain_header(uint32_t ul, uint32_t pl)
{
    uint8_t h[8] = {(uint8_t)(ul >> 24), (uint8_t)(ul >> 16), (uint8_t)(ul >> 8), (uint8_t)ul,
                    (uint8_t)(pl >> 24), (uint8_t)(pl >> 16), (uint8_t)(pl >> 8), (uint8_t)pl};
    send_all(h, 8);
}

/* SecurityResult; returns the result word and prints any reason. */
static uint32_t security_result(void)
{
    uint8_t b[4];
    recv_exact(b, 4);
    uint32_t r = get32(b);
    if (r != 0) {
        recv_exact(b, 4);
        uint32_t n = get32(b);
        char reason[1024] = "";
        if (n < sizeof(reason))
            recv_exact(reason, n);
        printf("rawclient: SecurityResult %u reason=\"%s\"\n", r, reason);
    } else {
        printf("rawclient: SecurityResult ok\n");
    }
    return r;
}

static int expect_closed(int ms)
{
    uint8_t buf[4096];
    long t0 = now_ms();
    long n = drain(buf, sizeof(buf), ms);
    if (n < 0) {
        printf("rawclient: server kept the connection open for %d ms\n", ms);
        return 1;
    }
    if (n > 0)
        print_bytes("then", buf, n);
    printf("rawclient: closed by the server after %ld ms\n", now_ms() - t0);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    const char *sc = argv[2];
    connect_to(atoi(argv[1]));
    uint8_t buf[4096];
    if (strcmp(sc, "version") == 0 && argc == 4) {
        recv_exact(buf, 12);
        send_all(argv[3], strlen(argv[3]));
        send_all("\n", 1);
        long n = drain(buf, sizeof(buf), 10000);
        if (n < 0)
            die("server kept the connection open");
        print_bytes("refusal", buf, n);
        return 0;
    }
    if (strcmp(sc, "sectype") == 0 && argc == 5) {
        recv_exact(buf, 12);
        char v[13];
        snprintf(v, sizeof(v), "RFB 003.%03d\n", atoi(argv[4]));
        send_all(v, 12);
        recv_exact(buf, 2);
        uint8_t t = (uint8_t)atoi(argv[3]);
        send_all(&t, 1);
        long n = drain(buf, sizeof(buf), 10000);
        if (n < 0)
            die("server kept the connection open");
        print_bytes("refusal", buf, n);
        return 0;
    }
    if (strcmp(sc, "stall") == 0 && argc == 4) {
        if (strcmp(argv[3], "version") == 0) {
            recv_exact(buf, 12);
        } else {
            pre_tls(8);
            if (strcmp(argv[3], "plain") == 0 && start_tls(0) < 0)
                return 1;
        }
        return expect_closed(30000);
    }
    if (strcmp(sc, "plain") == 0 && argc == 5) {
        pre_tls(8);
        if (start_tls(0) < 0)
            return 1;
        uint32_t ul = (uint32_t)strtoul(argv[3], NULL, 0), pl = (uint32_t)strtoul(argv[4], NULL, 0);
        plain_header(ul, pl);
        return security_result() == 1 && expect_closed(10000) == 0 ? 0 : 1;
    }
    if (strcmp(sc, "early") == 0) {
        pre_tls(8);
        send_all("\0\0\0\5\0\0\0\6alicesecret", 19);
        return expect_closed(10000);
    }
    if (strcmp(sc, "tls10") == 0) {
        pre_tls(8);
        if (start_tls(TLS1_VERSION) == 0)
            die("the server accepted TLS 1.0");
        return expect_closed(10000);
    }
    if (strcmp(sc, "pipelined") == 0 && argc == 5) {
        pre_tls(8);
        if (start_tls(0) < 0)
            return 1;
        size_t ul = strlen(argv[3]), pl = strlen(argv[4]);
        uint8_t m[600];
        if (ul + pl > 500)
            return 2;
        m[0] = 0, m[1] = 0, m[2] = (uint8_t)(ul >> 8), m[3] = (uint8_t)ul;
        m[4] = 0, m[5] = 0, m[6] = (uint8_t)(pl >> 8), m[7] = (uint8_t)pl;
        memcpy(m + 8, argv[3], ul);
        memcpy(m + 8 + ul, argv[4], pl);
        m[8 + ul + pl] = 1; /* ClientInit, shared */
        send_all(m, 9 + ul + pl);
        if (security_result() != 0)
            return 1;
        recv_exact(buf, 24); /* ServerInit header */
        printf("rawclient: ServerInit %ux%u\n", buf[0] << 8 | buf[1], buf[2] << 8 | buf[3]);
        return 0;
    }
    return 2;
}
