/* auth/tls.c: server-side TLS over a libuv TCP handle, with OpenSSL memory BIOs.
 *
 * OpenSSL never touches the socket: ciphertext read by libuv goes into the read BIO, and whatever
 * OpenSSL writes into the write BIO is sent with uv_write. Plaintext comes out of SSL_read only
 * while the owner is reading; otherwise the socket read is stopped too, so a slow consumer pushes
 * back on the client instead of growing a buffer here.
 *
 * Policy: TLS 1.2 and 1.3 (1.3 preferred by OpenSSL's version negotiation), AEAD suites with
 * forward secrecy for 1.2, server cipher order, no compression, no renegotiation (TLS 1.2
 * clients asking for it get a no_renegotiation alert), no session tickets. The TLSPlain context
 * is separate: TLS 1.2 only (1.3 has no anonymous suites) with anonymous DH suites, which need
 * OpenSSL's security level 0.
 *
 * Certificates: from the config, or made at first start into <state_dir>/tls/ (EC P-256,
 * self-signed, 10 years) and reused afterwards. Its SHA-256 fingerprint is logged at each start
 * so users can pin it.
 */
#define VDI_LOG_TAG "auth"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/internal.h"

#define CLOSE_DEADLINE_MS 5000

/* ---- Contexts -------------------------------------------------------------------------------- */

static const char *ssl_err(void)
{
    static __thread char buf[256];
    unsigned long e = ERR_peek_last_error();
    if (!e)
        return "unknown error";
    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return buf;
}

static void fingerprint_of(X509 *x, char out[96])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (!X509_digest(x, EVP_sha256(), md, &n))
        return;
    for (unsigned i = 0; i < n && i < 32; i++)
        snprintf(out + i * 3, 4, i + 1 < n ? "%02X:" : "%02X", md[i]);
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* Write @pkey or @x to @path atomically (temporary file, fsync, rename) with @mode. */
static int write_pem(const char *path, mode_t mode, EVP_PKEY *pkey, X509 *x)
{
    char *tmp = vdi_xasprintf("%s.tmp", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        int err = -errno;
        VDI_LOG_ERR("tls: cannot create %s: %s", tmp, vdi_strerror(err));
        free(tmp);
        return err;
    }
    BIO *b = BIO_new_fd(fd, BIO_NOCLOSE);
    int ok = b && (pkey ? PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL)
                        : PEM_write_bio_X509(b, x));
    ok = ok && BIO_flush(b) == 1;
    BIO_free(b);
    int err = 0;
    if (!ok)
        err = VDI_ETLS;
    else if (fsync(fd) < 0)
        err = -errno;
    close(fd);
    if (!err && rename(tmp, path) < 0)
        err = -errno;
    if (err) {
        VDI_LOG_ERR("tls: cannot write %s: %s", path, vdi_strerror(err));
        unlink(tmp);
    }
    free(tmp);
    return err;
}

/* A self-signed EC P-256 certificate for this host (and localhost). */
static int generate_cert(const char *cert_path, const char *key_path)
{
    int err = VDI_ETLS;
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    for (char *c = host; *c; c++) /* only hostname characters go into the SAN string */
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '.'))
            *c = '-';
    char *san = vdi_xasprintf("DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", host);
    if (!pkey || !x || !bn)
        goto out;
    if (!BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) || !X509_set_version(x, 2) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 24 * 3600) || !X509_set_pubkey(x, pkey))
        goto out;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"vdi", -1, -1,
                                    0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)host, -1, -1,
                                    0) ||
        !X509_set_issuer_name(x, name))
        goto out;
    if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
        add_ext(x, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(x, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(x, NID_subject_alt_name, san) < 0)
        goto out;
    if (!X509_sign(x, pkey, EVP_sha256()))
        goto out;
    err = write_pem(key_path, 0600, pkey, NULL);
    if (!err)
        err = write_pem(cert_path, 0644, NULL, x);
out:
    if (err == VDI_ETLS)
        VDI_LOG_ERR("tls: generating a self-signed certificate failed: %s", ssl_err());
    free(san);
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return err;
}

static int common_options(SSL_CTX *ctx)
{
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0); /* no resumption: no TLS 1.3 tickets to send either */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ? 0 : -1;
}

int auth__tls_ctx_create(const auth_config_t *cfg, SSL_CTX **x509_out, SSL_CTX **anon_out,
                         char fingerprint[96])
{
    char *gen_cert = NULL, *gen_key = NULL;
    const char *cert = cfg->tls_cert, *key = cfg->tls_key;
    SSL_CTX *x509 = NULL, *anon = NULL;
    int err = VDI_ECONFIG;
    if (!cert != !key) {
        VDI_LOG_ERR("tls: configure both the certificate and the key, or neither");
        return VDI_ECONFIG;
    }
    if (!cert) {
        if (!cfg->state_dir) {
            VDI_LOG_ERR("tls: no certificate configured and no state directory to make one in");
            return VDI_ECONFIG;
        }
        char *dir = vdi_xasprintf("%s/tls", cfg->state_dir);
        gen_cert = vdi_xasprintf("%s/cert.pem", dir);
        gen_key = vdi_xasprintf("%s/key.pem", dir);
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
            err = -errno;
            VDI_LOG_ERR("tls: cannot create %s: %s", dir, vdi_strerror(err));
            free(dir);
            goto out;
        }
        free(dir);
        cert = gen_cert;
        key = gen_key;
        if (access(cert, F_OK) != 0 || access(key, F_OK) != 0) {
            err = generate_cert(cert, key);
            if (err < 0)
                goto out;
            VDI_LOG_INFO("tls: generated a self-signed certificate path=%s", cert);
        }
    }
    err = VDI_ETLS;
    x509 = SSL_CTX_new(TLS_server_method());
    if (!x509 || common_options(x509) < 0)
        goto out_ssl;
    /* TLS 1.2: ECDHE with AES-GCM or ChaCha20-Poly1305 only. TLS 1.3 suites are OpenSSL's
     * defaults (all AEAD). */
    if (!SSL_CTX_set_cipher_list(x509,
                                 "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                 "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                 "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") ||
        !SSL_CTX_set1_groups_list(x509, "X25519:P-256:P-384"))
        goto out_ssl;
    if (SSL_CTX_use_certificate_chain_file(x509, cert) != 1) {
        VDI_LOG_ERR("tls: cannot load certificate %s: %s", cert, ssl_err());
        err = VDI_ECONFIG;
        goto out;
    }
    if (SSL_CTX_use_PrivateKey_file(x509, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(x509) != 1) {
        VDI_LOG_ERR("tls: cannot load private key %s (or it does not match %s): %s", key, cert,
                    ssl_err());
        err = VDI_ECONFIG;
        goto out;
    }
    fingerprint_of(SSL_CTX_get0_certificate(x509), fingerprint);
    VDI_LOG_INFO("tls: certificate path=%s sha256=%s", cert, fingerprint);

    if (cfg->allow_tlsplain || cfg->tlsplain_only) {
        anon = SSL_CTX_new(TLS_server_method());
        if (!anon || common_options(anon) < 0 ||
            !SSL_CTX_set_max_proto_version(anon, TLS1_2_VERSION) ||
            !SSL_CTX_set_cipher_list(anon, "ADH-AES256-GCM-SHA384:ADH-AES128-GCM-SHA256:"
                                           "AECDH-AES256-SHA:@SECLEVEL=0") ||
            !SSL_CTX_set_dh_auto(anon, 1))
            goto out_ssl;
        VDI_LOG_WARN("tls: VeNCrypt TLSPlain (anonymous TLS) is enabled: it cannot detect a man "
                     "in the middle");
    }
    *x509_out = x509;
    *anon_out = anon;
    free(gen_cert);
    free(gen_key);
    return 0;
out_ssl:
    VDI_LOG_ERR("tls: setting up the TLS context failed: %s", ssl_err());
out:
    SSL_CTX_free(anon);
    SSL_CTX_free(x509);
    free(gen_cert);
    free(gen_key);
    return err;
}

/* ---- Streams --------------------------------------------------------------------------------- */

struct auth_tls {
    uv_tcp_t *tcp;
    uv_timer_t timer; /* handshake timeout, later the close deadline */
    uv_timer_t kick;  /* deferred work: the first handshake step, delivering buffered data */
    int open_handles;
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    char peer[64];
    bool hs_done, reading, tcp_reading, tcp_eof, closing;
    bool ended, end_reported, fatal; /* the stream ended (EOF or error); reported; by an error */
    int end_status;
    auth__tls_handshake_cb hs_cb;
    void *hs_ctx;
    auth_tls_read_cb read_cb;
    void *read_ctx;
    auth_tls_close_cb close_cb;
    void *close_ctx;
    vdi_buf_t pending; /* plaintext handed back with auth__tls_unread */
    size_t write_queue;
    uv_shutdown_t shutdown_req;
    uint8_t buf[16384];
};

struct wreq {
    uv_write_t req;
    auth_tls_t *t;
    auth_tls_write_cb cb;
    void *ctx;
    size_t len;
    char data[];
};

static void fail(auth_tls_t *t, int err);
static void pump(auth_tls_t *t);

static void on_handle_closed(uv_handle_t *h)
{
    auth_tls_t *t = h->data;
    if (--t->open_handles > 0)
        return;
    auth_tls_close_cb cb = t->close_cb;
    void *ctx = t->close_ctx;
    SSL_free(t->ssl);
    vdi_buf_free(&t->pending);
    free(t->tcp);
    free(t);
    if (cb)
        cb(ctx);
}

static void close_handles(auth_tls_t *t)
{
    if (!uv_is_closing((uv_handle_t *)t->tcp))
        uv_close((uv_handle_t *)t->tcp, on_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&t->timer))
        uv_close((uv_handle_t *)&t->timer, on_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&t->kick))
        uv_close((uv_handle_t *)&t->kick, on_handle_closed);
}

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = vdi_container_of(req, struct wreq, req);
    auth_tls_t *t = w->t;
    t->write_queue -= w->len;
    if (status < 0 && !t->closing)
        VDI_LOG_DEBUG("tls peer=%s write failed: %s", t->peer, uv_strerror(status));
    if (w->cb && !t->closing)
        w->cb(t, status, w->ctx);
    free(w);
}

/* Send whatever OpenSSL queued in the write BIO; @cb runs when it is written. */
static int flush_out(auth_tls_t *t, auth_tls_write_cb cb, void *ctx)
{
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0) {
        VDI_ASSERT(!cb); /* an SSL_write always produces a record */
        return 0;
    }
    struct wreq *w = vdi_trymalloc(sizeof(*w) + n);
    if (!w)
        return -ENOMEM;
    int got = BIO_read(t->wbio, w->data, (int)n);
    VDI_ASSERT(got == (int)n);
    w->t = t;
    w->cb = cb;
    w->ctx = ctx;
    w->len = n;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    int err = uv_write(&w->req, (uv_stream_t *)t->tcp, &b, 1, on_write);
    if (err < 0) {
        free(w);
        return err;
    }
    t->write_queue += n;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    auth_tls_t *t = h->data;
    (void)hint;
    *b = uv_buf_init((char *)t->buf, sizeof(t->buf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    auth_tls_t *t = s->data;
    if (n < 0) {
        uv_read_stop(s);
        t->tcp_reading = false;
        t->tcp_eof = true;
        if (n != UV_EOF)
            VDI_LOG_DEBUG("tls peer=%s read: %s", t->peer, uv_strerror((int)n));
    } else if (n > 0) {
        if (BIO_write(t->rbio, b->base, (int)n) != (int)n)
            fail(t, -ENOMEM);
    }
    pump(t);
}

/* Socket reads run during the handshake and while the owner reads. */
static void update_tcp_reading(auth_tls_t *t)
{
    bool want = !t->closing && !t->tcp_eof && !t->ended && (!t->hs_done || t->reading);
    if (want && !t->tcp_reading) {
        if (uv_read_start((uv_stream_t *)t->tcp, on_alloc, on_read) == 0)
            t->tcp_reading = true;
    } else if (!want && t->tcp_reading) {
        uv_read_stop((uv_stream_t *)t->tcp);
        t->tcp_reading = false;
    }
}

static void on_timeout(uv_timer_t *tm)
{
    auth_tls_t *t = tm->data;
    if (t->closing) { /* the close deadline: stop waiting for writes to drain */
        close_handles(t);
        return;
    }
    VDI_LOG_WARN_RL("tls peer=%s handshake timed out", t->peer);
    fail(t, VDI_ETIMEOUT);
}

/* During the handshake: report and close. Afterwards: end the stream with an error read. */
static void fail(auth_tls_t *t, int err)
{
    if (!t->hs_done) {
        auth__tls_handshake_cb cb = t->hs_cb;
        t->hs_cb = NULL;
        flush_out(t, NULL, NULL); /* an alert, if OpenSSL produced one */
        auth_tls_close(t, NULL, NULL);
        if (cb)
            cb(t, err, t->hs_ctx);
        return;
    }
    t->ended = true;
    t->end_status = err;
    t->fatal = err != UV_EOF;
    update_tcp_reading(t);
    /* Reported by deliver(), now if the owner reads, else at its next read_start. */
}

static void deliver(auth_tls_t *t)
{
    /* Plaintext handed back first. The callback may stop reading or close. */
    while (t->reading && !t->closing && t->pending.len) {
        size_t n = VDI_MIN(t->pending.len, sizeof(t->buf));
        uint8_t tmp[4096];
        n = VDI_MIN(n, sizeof(tmp));
        memcpy(tmp, t->pending.data, n);
        vdi_buf_consume(&t->pending, n);
        t->read_cb(t, (ssize_t)n, tmp, t->read_ctx);
    }
    while (t->reading && !t->closing && !t->ended) {
        ERR_clear_error();
        uint8_t out[16384];
        int n = SSL_read(t->ssl, out, sizeof(out));
        if (n > 0) {
            t->read_cb(t, n, out, t->read_ctx);
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        flush_out(t, NULL, NULL);
        if (e == SSL_ERROR_WANT_READ) {
            if (t->tcp_eof) {
                VDI_LOG_DEBUG("tls peer=%s closed the connection without close_notify", t->peer);
                fail(t, UV_EOF);
            }
            break;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            VDI_LOG_DEBUG("tls peer=%s sent close_notify", t->peer);
            fail(t, UV_EOF);
            break;
        }
        VDI_LOG_WARN_RL("tls peer=%s read failed: %s", t->peer, ssl_err());
        fail(t, VDI_ETLS);
        break;
    }
    if (t->reading && !t->closing && t->ended && !t->end_reported) {
        t->end_reported = true;
        t->read_cb(t, t->end_status, NULL, t->read_ctx);
    }
}

static void pump(auth_tls_t *t)
{
    if (t->closing)
        return;
    if (!t->hs_done) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (r == 1) {
            t->hs_done = true;
            uv_timer_stop(&t->timer);
            if (flush_out(t, NULL, NULL) < 0) {
                fail(t, -ENOMEM);
                return;
            }
            VDI_LOG_DEBUG("tls peer=%s handshake done %s %s", t->peer, SSL_get_version(t->ssl),
                          SSL_get_cipher_name(t->ssl));
            update_tcp_reading(t);
            auth__tls_handshake_cb cb = t->hs_cb;
            t->hs_cb = NULL;
            cb(t, 0, t->hs_ctx);
            return; /* the owner calls read_start when it wants data */
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ && !t->tcp_eof) {
            if (flush_out(t, NULL, NULL) < 0)
                fail(t, -ENOMEM);
            return;
        }
        if (e == SSL_ERROR_WANT_READ)
            VDI_LOG_WARN_RL("tls peer=%s closed the connection during the handshake", t->peer);
        else
            VDI_LOG_WARN_RL("tls peer=%s handshake failed: %s", t->peer, ssl_err());
        fail(t, VDI_ETLS);
        return;
    }
    deliver(t);
    if (!t->closing)
        update_tcp_reading(t);
}

static void on_kick(uv_timer_t *tm)
{
    pump(tm->data);
}

int auth__tls_start(SSL_CTX *ctx, uv_tcp_t *tcp, const char *peer, const uint8_t *early,
                    size_t early_len, uint32_t timeout_ms, auth__tls_handshake_cb cb, void *cbctx,
                    auth_tls_t **out)
{
    auth_tls_t *t = vdi_xcalloc(1, sizeof(*t));
    t->tcp = tcp;
    tcp->data = t;
    uv_loop_t *loop = tcp->loop;
    uv_timer_init(loop, &t->timer);
    uv_timer_init(loop, &t->kick);
    t->timer.data = t->kick.data = t;
    t->open_handles = 3;
    snprintf(t->peer, sizeof(t->peer), "%s", peer ? peer : "?");
    t->hs_cb = cb;
    t->hs_ctx = cbctx;
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    int err = 0;
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        err = -ENOMEM;
        goto fail;
    }
    BIO_set_mem_eof_return(t->rbio, -1); /* an empty read BIO means "wait", not EOF */
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    if (early_len && BIO_write(t->rbio, early, (int)early_len) != (int)early_len) {
        err = -ENOMEM;
        goto fail;
    }
    if (timeout_ms)
        uv_timer_start(&t->timer, on_timeout, timeout_ms, 0);
    uv_timer_start(&t->kick, on_kick, 0, 0);
    update_tcp_reading(t);
    *out = t;
    return 0;
fail:
    t->hs_cb = NULL;
    t->closing = true;
    close_handles(t);
    return err;
}

int auth__tls_unread(auth_tls_t *t, const uint8_t *data, size_t len)
{
    vdi_buf_t b = VDI_BUF_INIT;
    if (vdi_buf_append(&b, data, len) < 0 ||
        vdi_buf_append(&b, t->pending.data, t->pending.len) < 0) {
        vdi_buf_free(&b);
        return -ENOMEM;
    }
    vdi_buf_free(&t->pending);
    t->pending = b;
    return 0;
}

int auth_tls_read_start(auth_tls_t *t, auth_tls_read_cb cb, void *ctx)
{
    if (t->closing || !t->hs_done)
        return VDI_ESTATE;
    t->read_cb = cb;
    t->read_ctx = ctx;
    t->reading = true;
    /* Deliver what is already buffered from the loop, not from inside this call. */
    uv_timer_start(&t->kick, on_kick, 0, 0);
    update_tcp_reading(t);
    return 0;
}

void auth_tls_read_stop(auth_tls_t *t)
{
    t->reading = false;
    if (!t->closing)
        update_tcp_reading(t);
}

int auth_tls_write(auth_tls_t *t, const void *data, size_t len, auth_tls_write_cb cb, void *ctx)
{
    if (t->closing || !t->hs_done || t->ended)
        return VDI_ESTATE;
    if (len == 0)
        return -EINVAL;
    const uint8_t *p = data;
    while (len) {
        int chunk = (int)VDI_MIN(len, (size_t)1 << 30);
        ERR_clear_error();
        int n = SSL_write(t->ssl, p, chunk);
        if (n <= 0) {
            VDI_LOG_WARN_RL("tls peer=%s write failed: %s", t->peer, ssl_err());
            return VDI_ETLS;
        }
        p += n;
        len -= (size_t)n;
    }
    return flush_out(t, cb, ctx);
}

size_t auth_tls_write_queue_size(const auth_tls_t *t)
{
    return t->write_queue;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    close_handles(req->data);
}

void auth_tls_close(auth_tls_t *t, auth_tls_close_cb cb, void *ctx)
{
    if (t->closing) {
        if (cb) { /* an internal close is under way; keep the caller's callback */
            t->close_cb = cb;
            t->close_ctx = ctx;
        }
        return;
    }
    t->closing = true;
    t->close_cb = cb;
    t->close_ctx = ctx;
    t->read_cb = NULL;
    t->reading = false;
    if (t->tcp_reading) {
        uv_read_stop((uv_stream_t *)t->tcp);
        t->tcp_reading = false;
    }
    uv_timer_stop(&t->kick);
    if (t->hs_done && !t->fatal) {
        ERR_clear_error();
        SSL_shutdown(t->ssl); /* queues close_notify; we do not wait for the peer's */
        flush_out(t, NULL, NULL);
    }
    /* Let queued writes (SecurityResult, close_notify, alerts) drain, but not forever. */
    uv_timer_start(&t->timer, on_timeout, CLOSE_DEADLINE_MS, 0);
    t->shutdown_req.data = t;
    if (uv_shutdown(&t->shutdown_req, (uv_stream_t *)t->tcp, on_shutdown) < 0)
        close_handles(t);
}

const char *auth_tls_version(const auth_tls_t *t)
{
    return SSL_get_version(t->ssl);
}

const char *auth_tls_cipher(const auth_tls_t *t)
{
    return SSL_get_cipher_name(t->ssl);
}

const char *auth_tls_peer(const auth_tls_t *t)
{
    return t->peer;
}

/* ---- Accepting for the HTTPS listener -------------------------------------------------------- */

struct accept_ctx {
    auth_tls_accept_cb cb;
    void *ctx;
};

static void on_accept_handshake(auth_tls_t *t, int status, void *ctx)
{
    struct accept_ctx *ac = ctx;
    auth_tls_accept_cb cb = ac->cb;
    void *uctx = ac->ctx;
    free(ac);
    cb(status == 0 ? t : NULL, status, uctx);
}

void auth__tcp_close_free(uv_tcp_t *tcp)
{
    uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
}

void auth__peer_name(uv_tcp_t *tcp, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    snprintf(buf, size, "?");
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, buf, size);
    else if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, buf, size);
}

int auth_tls_accept(auth_t *a, uv_stream_t *server, auth_tls_accept_cb cb, void *ctx)
{
    uv_tcp_t *tcp = vdi_xmalloc(sizeof(*tcp));
    uv_tcp_init(a->loop, tcp);
    int err = uv_accept(server, (uv_stream_t *)tcp);
    if (err < 0) {
        auth__tcp_close_free(tcp);
        return err;
    }
    return auth_tls_accept_tcp(a, tcp, cb, ctx);
}

int auth_tls_accept_tcp(auth_t *a, uv_tcp_t *tcp, auth_tls_accept_cb cb, void *ctx)
{
    uv_tcp_nodelay(tcp, 1);
    char peer[64];
    auth__peer_name(tcp, peer, sizeof(peer));
    struct accept_ctx *ac = vdi_xmalloc(sizeof(*ac));
    ac->cb = cb;
    ac->ctx = ctx;
    auth_tls_t *t;
    /* The handshake deadline (handshake_timeout_ms) bounds a client that connects and then
     * stalls anywhere in the handshake. */
    int err = auth__tls_start(a->tls_x509, tcp, peer, NULL, 0, a->cfg.handshake_timeout_ms,
                              on_accept_handshake, ac, &t);
    if (err < 0)
        free(ac);
    return err;
}
