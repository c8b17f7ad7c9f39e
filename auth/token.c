/* auth/token.c: one-time console tokens and web session tokens.
 *
 * A token is 32 bytes from OpenSSL's CSPRNG, written as unpadded base64url (43 characters). The
 * store keeps only SHA-256(token text), so a dump of it (or of the database the broker may copy
 * it into) opens nothing. Lookups hash the presented text and compare digests with
 * CRYPTO_memcmp, so the time taken does not depend on how much of a digest matched.
 */
#define VDI_LOG_TAG "auth"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "common/vdi.h"

enum kind {
    KIND_CONSOLE,
    KIND_SESSION
};

struct tok {
    vdi_list_t link;
    enum kind kind;
    uint8_t digest[SHA256_DIGEST_LENGTH];
    char *user;
    char *desktop;      /* console tokens */
    uint64_t expires;   /* absolute expiry */
    uint64_t last_used; /* sessions: idle timer */
    uint32_t idle_ms;
};

struct auth_tokens {
    vdi_list_t toks;
    size_t count, max;
    auth_clock_fn clock;
    void *clock_ctx;
};

static uint64_t now(const auth_tokens_t *t)
{
    return t->clock ? t->clock(t->clock_ctx) : vdi_now_ms();
}

static void tok_free(auth_tokens_t *t, struct tok *k)
{
    vdi_list_remove(&k->link);
    vdi_wipe(k->digest, sizeof(k->digest));
    free(k->user);
    free(k->desktop);
    free(k);
    t->count--;
}

static bool expired(const struct tok *k, uint64_t ms)
{
    if (ms >= k->expires)
        return true;
    return k->kind == KIND_SESSION && ms - k->last_used >= k->idle_ms;
}

static void purge(auth_tokens_t *t)
{
    uint64_t ms = now(t);
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &t->toks)
    {
        struct tok *k = vdi_list_entry(it, struct tok, link);
        if (expired(k, ms))
            tok_free(t, k);
    }
}

int auth_tokens_create(size_t max_tokens, auth_clock_fn clock, void *clock_ctx, auth_tokens_t **out)
{
    auth_tokens_t *t = vdi_xcalloc(1, sizeof(*t));
    vdi_list_init(&t->toks);
    t->max = max_tokens ? max_tokens : 100000;
    t->clock = clock;
    t->clock_ctx = clock_ctx;
    *out = t;
    return 0;
}

void auth_tokens_destroy(auth_tokens_t *t)
{
    if (!t)
        return;
    while (!vdi_list_empty(&t->toks))
        tok_free(t, vdi_list_entry(t->toks.next, struct tok, link));
    free(t);
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* 32 bytes → 43 characters of unpadded base64url. */
static void encode(const uint8_t raw[32], char out[AUTH_TOKEN_LEN + 1])
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < 32; i++) {
        acc = acc << 8 | raw[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = b64url[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = b64url[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    VDI_ASSERT(o == AUTH_TOKEN_LEN);
}

/* Shape check before hashing: anything that is not 43 base64url characters is unknown. */
static bool well_formed(const char *s)
{
    size_t n = 0;
    for (; s[n] && n <= AUTH_TOKEN_LEN; n++) {
        char c = s[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return n == AUTH_TOKEN_LEN;
}

static void digest_of(const char *token, uint8_t d[SHA256_DIGEST_LENGTH])
{
    SHA256((const unsigned char *)token, AUTH_TOKEN_LEN, d);
}

static struct tok *find(auth_tokens_t *t, const char *token)
{
    if (!token || !well_formed(token))
        return NULL;
    uint8_t d[SHA256_DIGEST_LENGTH];
    digest_of(token, d);
    struct tok *hit = NULL;
    for (vdi_list_t *it = t->toks.next; it != &t->toks; it = it->next) {
        struct tok *k = vdi_list_entry(it, struct tok, link);
        if (CRYPTO_memcmp(k->digest, d, sizeof(d)) == 0)
            hit = k;
    }
    vdi_wipe(d, sizeof(d));
    return hit;
}

static int issue(auth_tokens_t *t, enum kind kind, const char *user, const char *desktop,
                 uint64_t expires_in, uint32_t idle_ms, char token[AUTH_TOKEN_LEN + 1])
{
    if (!user || !*user || (kind == KIND_CONSOLE && (!desktop || !*desktop)))
        return -EINVAL;
    purge(t);
    if (t->count >= t->max) {
        VDI_LOG_WARN_RL("token store full (%zu tokens): refusing to issue one for user=%s",
                        t->count, user);
        return -ENOSPC;
    }
    uint8_t raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        VDI_LOG_ERR("RAND_bytes failed: no token issued");
        return VDI_ETLS;
    }
    struct tok *k = vdi_xcalloc(1, sizeof(*k));
    encode(raw, token);
    vdi_wipe(raw, sizeof(raw));
    digest_of(token, k->digest);
    k->kind = kind;
    k->user = vdi_xstrdup(user);
    k->desktop = desktop ? vdi_xstrdup(desktop) : NULL;
    uint64_t ms = now(t);
    k->expires = ms + expires_in;
    k->last_used = ms;
    k->idle_ms = idle_ms;
    vdi_list_push_tail(&t->toks, &k->link);
    t->count++;
    return 0;
}

int auth_console_token_issue(auth_tokens_t *t, const char *user, const char *desktop,
                             uint32_t ttl_ms, char token[AUTH_TOKEN_LEN + 1])
{
    return issue(t, KIND_CONSOLE, user, desktop, ttl_ms ? ttl_ms : AUTH_CONSOLE_TOKEN_TTL_MS, 0,
                 token);
}

int auth_console_token_redeem(auth_tokens_t *t, const char *token, const char *desktop, char **user)
{
    purge(t);
    struct tok *k = find(t, token);
    if (!k || k->kind != KIND_CONSOLE)
        return VDI_ETOKEN;
    /* Burn it whatever happens next: a token shown for the wrong desktop is compromised. */
    bool match = desktop && strcmp(k->desktop, desktop) == 0;
    if (match)
        *user = vdi_xstrdup(k->user);
    else
        VDI_LOG_WARN_RL("console token of user=%s for desktop=%s presented for desktop=%s: refused "
                        "and burnt",
                        k->user, k->desktop, desktop ? desktop : "(none)");
    tok_free(t, k);
    return match ? 0 : VDI_EDENIED;
}

int auth_session_create(auth_tokens_t *t, const char *user, uint32_t idle_ms, uint32_t max_ms,
                        char token[AUTH_TOKEN_LEN + 1])
{
    if (!idle_ms || !max_ms)
        return -EINVAL;
    return issue(t, KIND_SESSION, user, NULL, max_ms, idle_ms, token);
}

int auth_session_check(auth_tokens_t *t, const char *token, const char **user)
{
    purge(t);
    struct tok *k = find(t, token);
    if (!k || k->kind != KIND_SESSION)
        return VDI_ETOKEN;
    k->last_used = now(t);
    if (user)
        *user = k->user;
    return 0;
}

int auth_session_revoke(auth_tokens_t *t, const char *token)
{
    purge(t);
    struct tok *k = find(t, token);
    if (!k || k->kind != KIND_SESSION)
        return VDI_ETOKEN;
    tok_free(t, k);
    return 0;
}

size_t auth_tokens_revoke_user(auth_tokens_t *t, const char *user)
{
    size_t n = 0;
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &t->toks)
    {
        struct tok *k = vdi_list_entry(it, struct tok, link);
        if (strcmp(k->user, user) == 0) {
            tok_free(t, k);
            n++;
        }
    }
    return n;
}

size_t auth_tokens_count(auth_tokens_t *t)
{
    purge(t);
    return t->count;
}
