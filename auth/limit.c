/* auth/limit.c: brute-force limits. Two layers:
 *
 *  - auth__limiter_*: consecutive failures per key, exponential backoff, then lockout. Entries
 *    live in a chained hash table plus an LRU list; at most max_entries are kept, so a flood of
 *    made-up keys costs bounded memory (the stalest entry goes first). After a lockout ends the
 *    key keeps lockout_failures - 1 failures: one more failure locks it again at once, so a
 *    guesser gets one attempt per lockout period. A key with no failure for forget_ms is dropped,
 *    unless it remembers a success (below): then only its failures are forgotten.
 *
 *  - auth__limits_*: the policy over three limiters (docs/auth.md):
 *      "user-addr"  failures of one user name from one address (an IPv6 /64): the limit an
 *                   attacker at one address meets; its lockout touches nobody else. It also
 *                   remembers the last success, for the clean-record rule.
 *      "user"       failures of one user name from everywhere: far higher, against guessing
 *                   spread over many addresses.
 *      "addr"       failures from one address for any user name: against one address trying
 *                   many names. A success from the address clears it.
 *    Clean record: the user logged in successfully from this address within known_addr_days and
 *    the user-addr counter is at zero (no failure since, or the failures were forgotten). Such an
 *    attempt is not held back or refused by the "user" limit, so guessing from other addresses
 *    cannot lock the user out of the places they really log in from; the other two limits still
 *    apply. A guesser cannot earn a clean record without the password.
 *
 * The user name of every key is the one PAM resolved (PAM_USER), so spellings that PAM maps to
 * one account share the counters. Times are Unix milliseconds (the records outlive vdid: each
 * change goes to a sink, vdid's state database, and comes back through auth__limits_restore).
 */
#include <stdlib.h>
#include <string.h>

#include "auth/internal.h"

struct entry {
    vdi_list_t bucket; /* in the hash chain */
    vdi_list_t lru;    /* least recently changed first */
    uint32_t failures;
    uint64_t last_fail;
    uint64_t locked_until;
    uint64_t last_ok; /* remembered successes (known_ms > 0 only) */
    char key[];
};

struct auth__limiter {
    auth_limit_config_t cfg;
    uint64_t known_ms; /* how long a success is remembered; 0: successes forget the key */
    const char *scope;
    auth_limit_sink_fn sink;
    void *sink_ctx;
    vdi_list_t *buckets;
    size_t nbuckets;
    vdi_list_t lru;
    size_t count;
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

auth__limiter_t *auth__limiter_create(const auth_limit_config_t *cfg, const char *scope,
                                      uint64_t known_ms)
{
    auth__limiter_t *l = vdi_xcalloc(1, sizeof(*l));
    l->cfg = *cfg;
    l->scope = scope;
    l->known_ms = known_ms;
    if (!l->cfg.max_entries)
        l->cfg.max_entries = 65536;
    if (!l->cfg.lockout_failures)
        l->cfg.lockout_failures = UINT32_MAX;
    if (l->cfg.backoff_base_ms && !l->cfg.backoff_max_ms)
        l->cfg.backoff_max_ms = 30000;
    l->nbuckets = 64;
    while (l->nbuckets < l->cfg.max_entries / 4 && l->nbuckets < (1u << 20))
        l->nbuckets *= 2;
    l->buckets = vdi_xcalloc(l->nbuckets, sizeof(*l->buckets));
    for (size_t i = 0; i < l->nbuckets; i++)
        vdi_list_init(&l->buckets[i]);
    vdi_list_init(&l->lru);
    return l;
}

void auth__limiter_set_sink(auth__limiter_t *l, auth_limit_sink_fn fn, void *ctx)
{
    l->sink = fn;
    l->sink_ctx = ctx;
}

static bool remembers(const auth__limiter_t *l, const struct entry *e, uint64_t now)
{
    return l->known_ms && e->last_ok && now - e->last_ok < l->known_ms;
}

static void save(auth__limiter_t *l, const struct entry *e)
{
    if (!l->sink)
        return;
    auth_limit_record_t r = {
        .failures = e->failures,
        .last_fail = e->last_fail,
        .locked_until = e->locked_until,
        .last_ok = e->last_ok,
    };
    r.expires = r.locked_until;
    if (r.failures)
        r.expires = VDI_MAX(r.expires, r.last_fail + l->cfg.forget_ms);
    if (l->known_ms && r.last_ok)
        r.expires = VDI_MAX(r.expires, r.last_ok + l->known_ms);
    l->sink(l->scope, e->key, &r, l->sink_ctx);
}

static void entry_free(auth__limiter_t *l, struct entry *e, bool tell)
{
    if (tell && l->sink)
        l->sink(l->scope, e->key, NULL, l->sink_ctx);
    vdi_list_remove(&e->bucket);
    vdi_list_remove(&e->lru);
    free(e);
    l->count--;
}

void auth__limiter_destroy(auth__limiter_t *l)
{
    if (!l)
        return;
    while (!vdi_list_empty(&l->lru))
        entry_free(l, vdi_list_entry(l->lru.next, struct entry, lru), false);
    free(l->buckets);
    free(l);
}

size_t auth__limiter_count(const auth__limiter_t *l)
{
    return l->count;
}

/* Find @key. Failures quiet for forget_ms (and not locked) are forgotten: the whole entry, or
 * only its failures when it still remembers a success. */
static struct entry *lookup(auth__limiter_t *l, const char *key, uint64_t now)
{
    vdi_list_t *b = &l->buckets[hash(key) & (l->nbuckets - 1)];
    for (vdi_list_t *it = b->next; it != b; it = it->next) {
        struct entry *e = vdi_list_entry(it, struct entry, bucket);
        if (strcmp(e->key, key) != 0)
            continue;
        bool quiet = now >= e->locked_until &&
                     (!e->failures || (l->cfg.forget_ms && now - e->last_fail >= l->cfg.forget_ms));
        if (!quiet)
            return e;
        if (!remembers(l, e, now)) {
            entry_free(l, e, true);
            return NULL;
        }
        if (e->failures || e->locked_until) {
            e->failures = 0;
            e->last_fail = e->locked_until = 0;
            save(l, e);
        }
        return e;
    }
    return NULL;
}

static struct entry *lookup_or_add(auth__limiter_t *l, const char *key, uint64_t now)
{
    struct entry *e = lookup(l, key, now);
    if (!e) {
        if (l->count >= l->cfg.max_entries)
            entry_free(l, vdi_list_entry(l->lru.next, struct entry, lru), true);
        size_t n = strlen(key);
        e = vdi_xcalloc(1, sizeof(*e) + n + 1);
        memcpy(e->key, key, n + 1);
        vdi_list_push_tail(&l->buckets[hash(key) & (l->nbuckets - 1)], &e->bucket);
        vdi_list_init(&e->lru);
        l->count++;
    }
    vdi_list_remove(&e->lru);
    vdi_list_push_tail(&l->lru, &e->lru);
    return e;
}

/* The wait owed after @failures consecutive failures. */
static uint64_t backoff(const auth_limit_config_t *c, uint32_t failures)
{
    if (failures <= c->free_failures || !c->backoff_base_ms)
        return 0;
    uint32_t n = failures - c->free_failures - 1;
    uint64_t d = n >= 32 ? UINT64_MAX : (uint64_t)c->backoff_base_ms << n;
    return c->backoff_max_ms && d > c->backoff_max_ms ? c->backoff_max_ms : d;
}

int auth__limiter_check(auth__limiter_t *l, const char *key, uint64_t now, uint64_t *wait_ms)
{
    *wait_ms = 0;
    struct entry *e = lookup(l, key, now);
    if (!e)
        return 0;
    if (now < e->locked_until) {
        *wait_ms = e->locked_until - now;
        return VDI_ELOCKOUT;
    }
    uint64_t ready = e->last_fail + backoff(&l->cfg, e->failures);
    if (now < ready)
        *wait_ms = ready - now;
    return 0;
}

bool auth__limiter_fail(auth__limiter_t *l, const char *key, uint64_t now)
{
    struct entry *e = lookup_or_add(l, key, now);
    if (e->failures < UINT32_MAX)
        e->failures++;
    e->last_fail = now;
    bool locked = false;
    if (e->failures >= l->cfg.lockout_failures) {
        e->failures = l->cfg.lockout_failures - 1;
        e->locked_until = now + l->cfg.lockout_ms;
        locked = true;
    }
    save(l, e);
    return locked;
}

void auth__limiter_success(auth__limiter_t *l, const char *key, uint64_t now)
{
    if (!l->known_ms) {
        struct entry *e = lookup(l, key, now);
        if (e)
            entry_free(l, e, true);
        return;
    }
    struct entry *e = lookup_or_add(l, key, now);
    e->failures = 0;
    e->last_fail = e->locked_until = 0;
    e->last_ok = now;
    save(l, e);
}

bool auth__limiter_clean(auth__limiter_t *l, const char *key, uint64_t now)
{
    struct entry *e = lookup(l, key, now);
    return e && e->failures == 0 && now >= e->locked_until && remembers(l, e, now);
}

int auth__limiter_restore(auth__limiter_t *l, const char *key, const auth_limit_record_t *r,
                          uint64_t now)
{
    if (!*key)
        return -EINVAL;
    struct entry *e = lookup_or_add(l, key, now);
    /* The limits may have been lowered since: a count at or past the lockout means "locked". */
    e->failures = VDI_MIN(r->failures, l->cfg.lockout_failures - 1);
    e->last_fail = r->last_fail;
    e->locked_until = r->locked_until;
    e->last_ok = l->known_ms ? r->last_ok : 0;
    /* Stale records (vdid was down past their end) go at once, and tell the sink so. */
    lookup(l, key, now);
    return 0;
}

/* ---- The policy ------------------------------------------------------------------------------ */
struct auth__limits {
    auth__limiter_t *pair, *user, *addr;
};

#define DAY_MS (24ull * 3600 * 1000)

auth__limits_t *auth__limits_create(const auth_config_t *cfg)
{
    auth__limits_t *L = vdi_xcalloc(1, sizeof(*L));
    L->pair = auth__limiter_create(&cfg->limit_user, "user-addr",
                                   (uint64_t)cfg->known_addr_days * DAY_MS);
    L->user = auth__limiter_create(&cfg->limit_user_global, "user", 0);
    L->addr = auth__limiter_create(&cfg->limit_addr, "addr", 0);
    return L;
}

void auth__limits_destroy(auth__limits_t *L)
{
    if (!L)
        return;
    auth__limiter_destroy(L->pair);
    auth__limiter_destroy(L->user);
    auth__limiter_destroy(L->addr);
    free(L);
}

void auth__limits_set_sink(auth__limits_t *L, auth_limit_sink_fn fn, void *ctx)
{
    auth__limiter_set_sink(L->pair, fn, ctx);
    auth__limiter_set_sink(L->user, fn, ctx);
    auth__limiter_set_sink(L->addr, fn, ctx);
}

/* The user-addr key: the address key has no space, the user name comes after the first one. */
static char *pair_key(const char *user, const char *addr_key)
{
    return vdi_xasprintf("%s %s", addr_key, user);
}

int auth__limits_check(auth__limits_t *L, const char *user, const char *addr_key, uint64_t now,
                       uint64_t *wait_ms, const char **why)
{
    uint64_t wp, wu = 0, wa;
    char *pk = pair_key(user, addr_key);
    int ep = auth__limiter_check(L->pair, pk, now, &wp);
    bool clean = ep == 0 && auth__limiter_clean(L->pair, pk, now);
    free(pk);
    int ea = auth__limiter_check(L->addr, addr_key, now, &wa);
    int eu = clean ? 0 : auth__limiter_check(L->user, user, now, &wu);
    *why = NULL;
    if (ea == VDI_ELOCKOUT || ep == VDI_ELOCKOUT || eu == VDI_ELOCKOUT) {
        *why = ea == VDI_ELOCKOUT   ? "source address locked out"
               : ep == VDI_ELOCKOUT ? "username locked out for this address"
                                    : "username locked out";
        *wait_ms = VDI_MAX(VDI_MAX(wa, wp), wu);
        return VDI_ELOCKOUT;
    }
    *wait_ms = VDI_MAX(VDI_MAX(wa, wp), wu);
    if (*wait_ms)
        *why = *wait_ms == wa   ? "source address backoff"
               : *wait_ms == wp ? "username backoff for this address"
                                : "username backoff";
    return 0;
}

unsigned auth__limits_fail(auth__limits_t *L, const char *user, const char *addr_key, uint64_t now)
{
    char *pk = pair_key(user, addr_key);
    unsigned locked = 0;
    if (auth__limiter_fail(L->pair, pk, now))
        locked |= AUTH__LOCKED_PAIR;
    free(pk);
    if (auth__limiter_fail(L->user, user, now))
        locked |= AUTH__LOCKED_USER;
    if (auth__limiter_fail(L->addr, addr_key, now))
        locked |= AUTH__LOCKED_ADDR;
    return locked;
}

void auth__limits_success(auth__limits_t *L, const char *user, const char *addr_key, uint64_t now)
{
    char *pk = pair_key(user, addr_key);
    auth__limiter_success(L->pair, pk, now);
    free(pk);
    auth__limiter_success(L->addr, addr_key, now);
    /* The "user" count stays: a success here says nothing about guesses from elsewhere. */
}

bool auth__limits_clean(auth__limits_t *L, const char *user, const char *addr_key, uint64_t now)
{
    char *pk = pair_key(user, addr_key);
    bool clean = auth__limiter_clean(L->pair, pk, now);
    free(pk);
    return clean;
}

int auth__limits_restore(auth__limits_t *L, const char *scope, const char *key,
                         const auth_limit_record_t *rec, uint64_t now)
{
    if (strcmp(scope, "user-addr") == 0)
        return strchr(key, ' ') ? auth__limiter_restore(L->pair, key, rec, now) : -EINVAL;
    if (strcmp(scope, "user") == 0)
        return auth__limiter_restore(L->user, key, rec, now);
    if (strcmp(scope, "addr") == 0)
        return auth__limiter_restore(L->addr, key, rec, now);
    return -EINVAL;
}

size_t auth__limits_count(const auth__limits_t *L)
{
    return auth__limiter_count(L->pair) + auth__limiter_count(L->user) +
           auth__limiter_count(L->addr);
}
