/* auth/rfbsec.c: the server side of the RFB security handshake as a sans-IO state machine.
 *
 * Wire sequence (RFC 6143 §7.1, and the VeNCrypt extension as TigerVNC, QEMU and libvncclient
 * speak it):
 *   S: "RFB 003.008\n"              C: "RFB 003.00x\n"  (x = 7 or 8; 3.3 is refused)
 *   S: u8 1, u8 19 (VeNCrypt)       C: u8 19
 *   S: u8 0, u8 2 (VeNCrypt 0.2)    C: u8 0, u8 2
 *   S: u8 0 (version accepted), u8 n, n x u32 subtypes
 *   C: u32 subtype                  S: u8 1 (accepted)
 *   --- TLS handshake; everything below inside TLS ---
 *   C: u32 ulen, u32 plen, username, password   (VeNCrypt Plain)
 *   S: SecurityResult u32 0 | u32 1 [+ u32 len + reason for 3.8]
 * Each field is collected into a small buffer, so input may arrive in pieces of any size.
 */
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "common/vdi.h"

enum state {
    ST_VERSION,    /* 12 bytes: "RFB xxx.yyy\n" */
    ST_SECTYPE,    /* 1 byte: the chosen security type */
    ST_VC_VERSION, /* 2 bytes: the client's VeNCrypt version */
    ST_VC_SUBTYPE, /* 4 bytes: the chosen subtype */
    ST_PLAIN_HDR,  /* 8 bytes inside TLS: username and password lengths */
    ST_PLAIN_BODY, /* ulen + plen bytes */
    ST_CHECKING,   /* waiting for auth_rfbsec_finish() */
    ST_DONE,
    ST_FAILED,
};

struct auth_rfbsec {
    enum state st;
    uint32_t max_user, max_pass;
    bool allow_tlsplain, allow_x509plain;
    int minor;
    uint32_t subtype;
    uint8_t field[12]; /* the fixed-size field being collected */
    size_t have;       /* bytes of the current field (or body) collected */
    uint32_t ulen, plen;
    char *body; /* username NUL password NUL, ulen + plen + 2 bytes */
    vdi_buf_t out;
    bool oom; /* a refusal or result could not be queued: the caller just closes */
    const char *error;
};

static const char server_version[12] = {'R', 'F', 'B', ' ', '0', '0',
                                        '3', '.', '0', '0', '8', '\n'};

static void put_u8(auth_rfbsec_t *s, uint8_t v)
{
    if (vdi_buf_append(&s->out, &v, 1) < 0)
        s->oom = true;
}

static void put_u32(auth_rfbsec_t *s, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    if (vdi_buf_append(&s->out, b, 4) < 0)
        s->oom = true;
}

static uint32_t get_u32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void put_reason(auth_rfbsec_t *s, const char *reason)
{
    size_t n = strlen(reason);
    put_u32(s, (uint32_t)n);
    if (vdi_buf_append(&s->out, reason, n) < 0)
        s->oom = true;
}

static void wipe_body(auth_rfbsec_t *s)
{
    if (s->body) {
        vdi_wipe(s->body, (size_t)s->ulen + s->plen + 2);
        free(s->body);
        s->body = NULL;
    }
}

/* Fail with @why in the log; the caller has queued whatever refusal the protocol allows. */
static enum auth_rfbsec_event fail(auth_rfbsec_t *s, const char *why)
{
    s->st = ST_FAILED;
    s->error = why;
    wipe_body(s);
    return AUTH_RFBSEC_FAILED;
}

/* SecurityResult "failed" (RFC 6143 §7.1.3): the reason string exists from 3.8 on. */
static void put_security_failed(auth_rfbsec_t *s, const char *reason)
{
    put_u32(s, 1);
    if (s->minor >= 8)
        put_reason(s, reason);
}

int auth_rfbsec_create(const auth_rfbsec_config_t *cfg, auth_rfbsec_t **out)
{
    auth_rfbsec_t *s = vdi_trycalloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->allow_tlsplain = cfg->allow_tlsplain || cfg->tlsplain_only;
    s->allow_x509plain = !cfg->tlsplain_only;
    s->max_user = cfg->max_username_len && cfg->max_username_len < AUTH_USERNAME_MAX
                      ? cfg->max_username_len
                      : AUTH_USERNAME_MAX;
    s->max_pass = cfg->max_password_len && cfg->max_password_len < AUTH_PASSWORD_MAX
                      ? cfg->max_password_len
                      : AUTH_PASSWORD_MAX;
    s->error = "";
    if (vdi_buf_append(&s->out, server_version, sizeof(server_version)) < 0) {
        free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

void auth_rfbsec_destroy(auth_rfbsec_t *s)
{
    if (!s)
        return;
    wipe_body(s);
    vdi_buf_free(&s->out);
    free(s);
}

const uint8_t *auth_rfbsec_output(const auth_rfbsec_t *s, size_t *len)
{
    *len = s->out.len;
    return s->out.data;
}

void auth_rfbsec_output_consume(auth_rfbsec_t *s, size_t n)
{
    vdi_buf_consume(&s->out, VDI_MIN(n, s->out.len));
}

int auth_rfbsec_minor(const auth_rfbsec_t *s)
{
    return s->minor;
}

uint32_t auth_rfbsec_subtype(const auth_rfbsec_t *s)
{
    return s->subtype;
}

const char *auth_rfbsec_error(const auth_rfbsec_t *s)
{
    return s->error;
}

void auth_rfbsec_credentials(const auth_rfbsec_t *s, const char **username, const char **password)
{
    VDI_ASSERT(s->st == ST_CHECKING && s->body);
    *username = s->body;
    *password = s->body + s->ulen + 1;
}

int auth_rfbsec_finish(auth_rfbsec_t *s, bool ok, const char *reason)
{
    if (s->st != ST_CHECKING)
        return VDI_ESTATE;
    wipe_body(s);
    if (ok) {
        put_u32(s, 0);
        s->st = ST_DONE;
    } else {
        put_security_failed(s, reason && *reason ? reason : "authentication failed");
        s->st = ST_FAILED;
        s->error = "credentials refused";
    }
    return s->oom ? -ENOMEM : 0;
}

/* "RFB 003.008\n": three digits, a dot, three digits. Returns false on anything else. */
static bool parse_version(const uint8_t *v, int *major, int *minor)
{
    if (memcmp(v, "RFB ", 4) != 0 || v[7] != '.' || v[11] != '\n')
        return false;
    int ma = 0, mi = 0;
    for (int i = 4; i < 7; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        ma = ma * 10 + (v[i] - '0');
    }
    for (int i = 8; i < 11; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        mi = mi * 10 + (v[i] - '0');
    }
    *major = ma;
    *minor = mi;
    return true;
}

static enum auth_rfbsec_event on_version(auth_rfbsec_t *s)
{
    int major, minor;
    if (!parse_version(s->field, &major, &minor)) {
        /* Not an RFB client. Answer in the 3.7/3.8 shape (no types, then a reason), which is
         * what a client that sent a garbled but modern version string will parse. */
        put_u8(s, 0);
        put_reason(s, "bad protocol version string");
        return fail(s, "bad protocol version string");
    }
    if (major != 3 || minor < 3) {
        put_u8(s, 0);
        put_reason(s, "unsupported RFB protocol version");
        return fail(s, "unsupported RFB protocol version");
    }
    if (minor < 7) {
        /* RFB 3.3 (and the 3.5 some clients announce): the server picks the security type, and
         * there is no way to offer VeNCrypt. Security type 0 (invalid) plus a reason refuses. */
        put_u32(s, 0);
        put_reason(s, "RFB 3.3 is not supported: use a client with VeNCrypt (RFB 3.7 or 3.8)");
        return fail(s, "RFB 3.3 client refused");
    }
    /* RFC 6143 §7.1.1: a version above 3.8 is answered as 3.8. */
    s->minor = minor >= 8 ? 8 : 7;
    put_u8(s, 1);
    put_u8(s, AUTH_RFB_SECTYPE_VENCRYPT);
    s->st = ST_SECTYPE;
    return AUTH_RFBSEC_NEED_MORE;
}

static enum auth_rfbsec_event on_sectype(auth_rfbsec_t *s)
{
    if (s->field[0] != AUTH_RFB_SECTYPE_VENCRYPT) {
        put_security_failed(s, "security type not offered: this server requires VeNCrypt");
        return fail(s, "client chose a security type that was not offered");
    }
    put_u8(s, 0);
    put_u8(s, 2);
    s->st = ST_VC_VERSION;
    return AUTH_RFBSEC_NEED_MORE;
}

static enum auth_rfbsec_event on_vc_version(auth_rfbsec_t *s)
{
    if (s->field[0] != 0 || s->field[1] != 2) {
        put_u8(s, 0xff); /* VeNCrypt: any non-zero status refuses the client's version */
        return fail(s, "unsupported VeNCrypt version");
    }
    put_u8(s, 0);
    put_u8(s, (uint8_t)(s->allow_x509plain + s->allow_tlsplain));
    if (s->allow_x509plain) /* first: clients take the first subtype they support */
        put_u32(s, AUTH_VENCRYPT_X509PLAIN);
    if (s->allow_tlsplain)
        put_u32(s, AUTH_VENCRYPT_TLSPLAIN);
    s->st = ST_VC_SUBTYPE;
    return AUTH_RFBSEC_NEED_MORE;
}

static enum auth_rfbsec_event on_vc_subtype(auth_rfbsec_t *s)
{
    uint32_t sub = get_u32(s->field);
    if (!(sub == AUTH_VENCRYPT_X509PLAIN && s->allow_x509plain) &&
        !(sub == AUTH_VENCRYPT_TLSPLAIN && s->allow_tlsplain)) {
        put_u8(s, 0); /* VeNCrypt: 0 refuses the subtype */
        return fail(s, "client chose a VeNCrypt subtype that was not offered");
    }
    s->subtype = sub;
    put_u8(s, 1);
    s->st = ST_PLAIN_HDR;
    return AUTH_RFBSEC_START_TLS;
}

static enum auth_rfbsec_event on_plain_hdr(auth_rfbsec_t *s)
{
    s->ulen = get_u32(s->field);
    s->plen = get_u32(s->field + 4);
    const char *why = NULL;
    if (s->ulen == 0)
        why = "empty username";
    else if (s->ulen > s->max_user)
        why = "username too long";
    else if (s->plen == 0)
        why = "empty password";
    else if (s->plen > s->max_pass)
        why = "password too long";
    if (why) {
        s->ulen = s->plen = 0;
        put_security_failed(s, why);
        return fail(s, why);
    }
    s->body = vdi_trymalloc((size_t)s->ulen + s->plen + 2);
    if (!s->body) {
        s->ulen = s->plen = 0;
        put_security_failed(s, "server out of memory");
        return fail(s, "out of memory");
    }
    s->st = ST_PLAIN_BODY;
    return AUTH_RFBSEC_NEED_MORE;
}

static enum auth_rfbsec_event on_plain_body(auth_rfbsec_t *s)
{
    /* The body was read as username+password contiguously; split it with NULs. */
    char *user = s->body, *pass = s->body + s->ulen + 1;
    memmove(pass, s->body + s->ulen, s->plen);
    pass[s->plen] = '\0';
    user[s->ulen] = '\0';
    for (uint32_t i = 0; i < s->ulen; i++) {
        unsigned char c = (unsigned char)user[i];
        if (c < 0x20 || c == 0x7f) {
            put_security_failed(s, "invalid character in username");
            return fail(s, "invalid character in username");
        }
    }
    if (memchr(pass, '\0', s->plen)) {
        put_security_failed(s, "invalid character in password");
        return fail(s, "NUL byte in password");
    }
    s->st = ST_CHECKING;
    return AUTH_RFBSEC_CREDENTIALS;
}

static size_t field_size(const auth_rfbsec_t *s)
{
    switch (s->st) {
    case ST_VERSION:
        return 12;
    case ST_SECTYPE:
        return 1;
    case ST_VC_VERSION:
        return 2;
    case ST_VC_SUBTYPE:
        return 4;
    case ST_PLAIN_HDR:
        return 8;
    default:
        return 0;
    }
}

enum auth_rfbsec_event auth_rfbsec_feed(auth_rfbsec_t *s, const uint8_t *data, size_t len,
                                        size_t *consumed)
{
    size_t used = 0;
    enum auth_rfbsec_event ev = AUTH_RFBSEC_NEED_MORE;
    while (ev == AUTH_RFBSEC_NEED_MORE) {
        if (s->st == ST_CHECKING) {
            ev = AUTH_RFBSEC_CREDENTIALS;
            break;
        }
        if (s->st == ST_DONE) {
            ev = AUTH_RFBSEC_DONE;
            break;
        }
        if (s->st == ST_FAILED) {
            ev = AUTH_RFBSEC_FAILED;
            break;
        }
        if (used == len)
            break;
        if (s->st == ST_PLAIN_BODY) {
            size_t want = (size_t)s->ulen + s->plen - s->have;
            size_t n = VDI_MIN(want, len - used);
            memcpy(s->body + s->have, data + used, n);
            s->have += n;
            used += n;
            if (s->have == (size_t)s->ulen + s->plen) {
                s->have = 0;
                ev = on_plain_body(s);
            }
            continue;
        }
        size_t want = field_size(s) - s->have;
        size_t n = VDI_MIN(want, len - used);
        memcpy(s->field + s->have, data + used, n);
        s->have += n;
        used += n;
        if (s->have < field_size(s))
            continue;
        s->have = 0;
        switch (s->st) {
        case ST_VERSION:
            ev = on_version(s);
            break;
        case ST_SECTYPE:
            ev = on_sectype(s);
            break;
        case ST_VC_VERSION:
            ev = on_vc_version(s);
            break;
        case ST_VC_SUBTYPE:
            ev = on_vc_subtype(s);
            break;
        case ST_PLAIN_HDR:
            ev = on_plain_hdr(s);
            break;
        default:
            VDI_ASSERT(!"unreachable rfbsec state");
        }
    }
    *consumed = used;
    return ev;
}
