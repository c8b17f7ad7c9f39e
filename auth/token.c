/* auth/token.c: one-time console tokens and web session tokens.
 *
 * A token is 32 bytes from OpenSSL's CSPRNG, written as unpadded base64url (43 characters). The
 * store keeps only SHA-256(token text), so a dump of it (or of the database the broker may copy
 * it into) opens nothing. Lookups hash the presented text and compare digests with
 * CRYPTO_memcmp, so the time taken does not depend on how much of a digest matched.
 *
 * Caps, so that no account can crowd out the others: each user holds at most max_per_user
 * tokens of each kind (issuing one more drops that user's oldest of the kind), and when the whole
 * store is full the account holding the most tokens pays: its oldest token goes, or, if the
 * account asking is that one, its request is refused. A console token issued for a session lives
 * no longer than that session, however the session ends (logout, expiry, a cap, revoke_user).
 */
#define VDI_LOG_TAG "auth"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "common/vdi.h"

enum kind {
    KIND_CONSOLE,
    KIND_SESSION
};

struct user {
    vdi_list_t link; /* in auth_tokens.users */
    size_t n[2];     /* tokens held, per kind */
    char name[];
};

struct tok {
    vdi_list_t link; /* oldest first */
    enum kind kind;
    uint8_t digest[SHA256_DIGEST_LENGTH];
    char *user;
    struct user *u;
    char *desktop;       /* console tokens */
    struct tok *session; /* console tokens: the session they belong to (NULL: none) */
    vdi_list_t children; /* sessions: their console tokens (linked by sib) */
    vdi_list_t sib;
    uint64_t expires;   /* absolute expiry */
    uint64_t last_used; /* sessions: idle timer */
    uint32_t idle_ms;
};

struct auth_tokens {
    vdi_list_t toks;
    vdi_list_t users; /* struct user, those holding at least one token */
    size_t count, max, max_per_user;
    auth_clock_fn clock;
    void *clock_ctx;
    auth_session_gone_fn gone;
    void *gone_ctx;
};

static uint64_t now(const auth_tokens_t *t)
{
    return t->clock ? t->clock(t->clock_ctx) : vdi_now_ms();
}

static struct user *user_get(auth_tokens_t *t, const char *name)
{
    for (vdi_list_t *it = t->users.next; it != &t->users; it = it->next) {
        struct user *u = vdi_list_entry(it, struct user, link);
        if (strcmp(u->name, name) == 0)
            return u;
    }
    size_t n = strlen(name);
    struct user *u = vdi_xcalloc(1, sizeof(*u) + n + 1);
    memcpy(u->name, name, n + 1);
    vdi_list_push_tail(&t->users, &u->link);
    return u;
}

static void tok_free(auth_tokens_t *t, struct tok *k)
{
    vdi_list_remove(&k->link);
    vdi_list_remove(&k->sib);
    if (k->kind == KIND_SESSION) {
        while (!vdi_list_empty(&k->children))
            tok_free(t, vdi_list_entry(k->children.next, struct tok, sib));
        if (t->gone)
            t->gone(k->digest, t->gone_ctx);
    }
    if (--k->u->n[k->kind] == 0 && k->u->n[!k->kind] == 0) {
        vdi_list_remove(&k->u->link);
        free(k->u);
    }
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
    /* Console tokens first (the expired ones and those of expired sessions), then sessions: a
     * session freed in the second pass has no console token left that the walk could be on. */
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, &t->toks)
    {
        struct tok *k = vdi_list_entry(it, struct tok, link);
        if (k->kind == KIND_CONSOLE && (expired(k, ms) || (k->session && expired(k->session, ms))))
            tok_free(t, k);
    }
    vdi_list_foreach_safe(it, tmp, &t->toks)
    {
        struct tok *k = vdi_list_entry(it, struct tok, link);
        if (expired(k, ms))
            tok_free(t, k);
    }
}

int auth_tokens_create(size_t max_tokens, size_t max_per_user, auth_clock_fn clock, void *clock_ctx,
                       auth_tokens_t **out)
{
    auth_tokens_t *t = vdi_xcalloc(1, sizeof(*t));
    vdi_list_init(&t->toks);
    vdi_list_init(&t->users);
    t->max = max_tokens ? max_tokens : 100000;
    t->max_per_user = max_per_user ? max_per_user : SIZE_MAX;
    t->clock = clock;
    t->clock_ctx = clock_ctx;
    *out = t;
    return 0;
}

void auth_tokens_set_session_gone(auth_tokens_t *t, auth_session_gone_fn fn, void *ctx)
{
    t->gone = fn;
    t->gone_ctx = ctx;
}

void auth_tokens_destroy(auth_tokens_t *t)
{
    if (!t)
        return;
    t->gone = NULL; /* the owner is going away too */
    while (!vdi_list_empty(&t->toks))
        tok_free(t, vdi_list_entry(t->toks.prev, struct tok, link));
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

void auth_token_digest(const char *token, uint8_t digest[AUTH_TOKEN_DIGEST_LEN])
{
    SHA256((const unsigned char *)token, strlen(token), digest);
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

static struct tok *find_digest(auth_tokens_t *t, const uint8_t d[SHA256_DIGEST_LENGTH])
{
    struct tok *hit = NULL;
    for (vdi_list_t *it = t->toks.next; it != &t->toks; it = it->next) {
        struct tok *k = vdi_list_entry(it, struct tok, link);
        if (CRYPTO_memcmp(k->digest, d, SHA256_DIGEST_LENGTH) == 0)
            hit = k;
    }
    return hit;
}

static struct tok *oldest_of(auth_tokens_t *t, const struct user *u, int kind)
{
    for (vdi_list_t *it = t->toks.next; it != &t->toks; it = it->next) {
        struct tok *k = vdi_list_entry(it, struct tok, link);
        if (k->u == u && (kind < 0 || (int)k->kind == kind))
            return k;
    }
    return NULL;
}

/* Make room for one more token of @kind for @user: 0, or -ENOSPC (@user is the account that
 * fills the store). */
static int make_room(auth_tokens_t *t, enum kind kind, const char *user)
{
    purge(t);
    struct user *me = NULL;
    for (vdi_list_t *it = t->users.next; it != &t->users; it = it->next) {
        struct user *u = vdi_list_entry(it, struct user, link);
        if (strcmp(u->name, user) == 0)
            me = u;
    }
    if (me && me->n[kind] >= t->max_per_user)
        tok_free(t, oldest_of(t, me, kind));
    if (t->count < t->max)
        return 0;
    struct user *top = NULL;
    for (vdi_list_t *it = t->users.next; it != &t->users; it = it->next) {
        struct user *u = vdi_list_entry(it, struct user, link);
        if (!top || u->n[0] + u->n[1] > top->n[0] + top->n[1])
            top = u;
    }
    if (me && me->n[0] + me->n[1] >= top->n[0] + top->n[1]) {
        VDI_LOG_WARN_RL(
            "token store full (%zu tokens), user=%s holds the most: refusing it one more", t->count,
            user);
        return -ENOSPC;
    }
    VDI_LOG_WARN_RL(
        "token store full (%zu tokens): dropping the oldest token of user=%s, who holds "
        "the most, for user=%s",
        t->count, top->name, user);
    tok_free(t, oldest_of(t, top, -1));
    return 0;
}

static struct tok *insert(auth_tokens_t *t, enum kind kind, const char *user,
                          const uint8_t digest[SHA256_DIGEST_LENGTH])
{
    struct tok *k = vdi_xcalloc(1, sizeof(*k));
    memcpy(k->digest, digest, SHA256_DIGEST_LENGTH);
    k->kind = kind;
    k->user = vdi_xstrdup(user);
    k->u = user_get(t, user);
    k->u->n[kind]++;
    vdi_list_init(&k->children);
    vdi_list_init(&k->sib);
    vdi_list_push_tail(&t->toks, &k->link);
    t->count++;
    return k;
}

static int issue(auth_tokens_t *t, enum kind kind, const char *user, const char *desktop,
                 const uint8_t *session, uint64_t expires_in, uint32_t idle_ms,
                 char token[AUTH_TOKEN_LEN + 1])
{
    if (!user || !*user || (kind == KIND_CONSOLE && (!desktop || !*desktop)))
        return -EINVAL;
    int err = make_room(t, kind, user);
    if (err < 0)
        return err;
    struct tok *parent = NULL;
    if (session) {
        parent = find_digest(t, session);
        if (!parent || parent->kind != KIND_SESSION)
            return VDI_ETOKEN;
    }
    uint8_t raw[32], d[SHA256_DIGEST_LENGTH];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        VDI_LOG_ERR("RAND_bytes failed: no token issued");
        return VDI_ETLS;
    }
    encode(raw, token);
    vdi_wipe(raw, sizeof(raw));
    digest_of(token, d);
    struct tok *k = insert(t, kind, user, d);
    vdi_wipe(d, sizeof(d));
    k->desktop = desktop ? vdi_xstrdup(desktop) : NULL;
    k->session = parent;
    if (parent)
        vdi_list_push_tail(&parent->children, &k->sib);
    uint64_t ms = now(t);
    k->expires = ms + expires_in;
    k->last_used = ms;
    k->idle_ms = idle_ms;
    return 0;
}

int auth_console_token_issue(auth_tokens_t *t, const char *user, const char *desktop,
                             const uint8_t *session, uint32_t ttl_ms,
                             char token[AUTH_TOKEN_LEN + 1])
{
    return issue(t, KIND_CONSOLE, user, desktop, session,
                 ttl_ms ? ttl_ms : AUTH_CONSOLE_TOKEN_TTL_MS, 0, token);
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
    return issue(t, KIND_SESSION, user, NULL, NULL, max_ms, idle_ms, token);
}

int auth_session_restore(auth_tokens_t *t, const uint8_t digest[AUTH_TOKEN_DIGEST_LEN],
                         const char *user, uint32_t idle_ms, uint64_t max_left_ms,
                         uint64_t idle_left_ms)
{
    if (!user || !*user || !idle_ms || !max_left_ms || !idle_left_ms || idle_left_ms > idle_ms)
        return -EINVAL;
    if (find_digest(t, digest))
        return -EEXIST;
    int err = make_room(t, KIND_SESSION, user);
    if (err < 0)
        return err;
    struct tok *k = insert(t, KIND_SESSION, user, digest);
    uint64_t ms = now(t);
    k->expires = ms + max_left_ms;
    k->idle_ms = idle_ms;
    k->last_used = ms > idle_ms - idle_left_ms ? ms - (idle_ms - idle_left_ms) : 0;
    return 0;
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

int auth_session_revoke_digest(auth_tokens_t *t, const uint8_t digest[AUTH_TOKEN_DIGEST_LEN])
{
    struct tok *k = find_digest(t, digest);
    if (!k || k->kind != KIND_SESSION)
        return VDI_ETOKEN;
    tok_free(t, k);
    return 0;
}

size_t auth_tokens_revoke_user(auth_tokens_t *t, const char *user)
{
    size_t before = t->count;
    /* Sessions take their console tokens along: look the next one up afresh each time. */
    for (;;) {
        struct tok *k = NULL;
        for (vdi_list_t *it = t->toks.next; it != &t->toks && !k; it = it->next) {
            struct tok *x = vdi_list_entry(it, struct tok, link);
            if (strcmp(x->user, user) == 0)
                k = x;
        }
        if (!k)
            return before - t->count;
        tok_free(t, k);
    }
}

size_t auth_tokens_user_count(auth_tokens_t *t, const char *user)
{
    purge(t);
    for (vdi_list_t *it = t->users.next; it != &t->users; it = it->next) {
        struct user *u = vdi_list_entry(it, struct user, link);
        if (strcmp(u->name, user) == 0)
            return u->n[0] + u->n[1];
    }
    return 0;
}

size_t auth_tokens_count(auth_tokens_t *t)
{
    purge(t);
    return t->count;
}
