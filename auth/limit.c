/* auth/limit.c: brute-force limits: consecutive failures per key (a username or a source
 * address), exponential backoff, then lockout.
 *
 * Entries live in a chained hash table plus an LRU list; at most max_entries are kept, so a flood
 * of made-up usernames costs bounded memory (the stalest entry goes first). After a lockout ends
 * the key keeps lockout_failures - 1 failures: one more failure locks it again at once, so a
 * guesser gets one attempt per lockout period. A key with no failure for forget_ms is dropped.
 */
#include <stdlib.h>
#include <string.h>

#include "auth/internal.h"

struct entry {
    vdi_list_t bucket; /* in the hash chain */
    vdi_list_t lru;    /* least recently failed first */
    uint32_t failures;
    uint64_t last_fail;
    uint64_t locked_until;
    char key[];
};

struct auth__limiter {
    auth_limit_config_t cfg;
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

auth__limiter_t *auth__limiter_create(const auth_limit_config_t *cfg)
{
    auth__limiter_t *l = vdi_xcalloc(1, sizeof(*l));
    l->cfg = *cfg;
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

static void entry_free(auth__limiter_t *l, struct entry *e)
{
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
        entry_free(l, vdi_list_entry(l->lru.next, struct entry, lru));
    free(l->buckets);
    free(l);
}

size_t auth__limiter_count(const auth__limiter_t *l)
{
    return l->count;
}

/* Find @key; forget it (and return NULL) if it went quiet for forget_ms and is not locked. */
static struct entry *lookup(auth__limiter_t *l, const char *key, uint64_t now)
{
    vdi_list_t *b = &l->buckets[hash(key) & (l->nbuckets - 1)];
    for (vdi_list_t *it = b->next; it != b; it = it->next) {
        struct entry *e = vdi_list_entry(it, struct entry, bucket);
        if (strcmp(e->key, key) != 0)
            continue;
        if (l->cfg.forget_ms && now >= e->locked_until && now - e->last_fail >= l->cfg.forget_ms) {
            entry_free(l, e);
            return NULL;
        }
        return e;
    }
    return NULL;
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
    struct entry *e = lookup(l, key, now);
    if (!e) {
        if (l->count >= l->cfg.max_entries)
            entry_free(l, vdi_list_entry(l->lru.next, struct entry, lru));
        size_t n = strlen(key);
        e = vdi_xcalloc(1, sizeof(*e) + n + 1);
        memcpy(e->key, key, n + 1);
        vdi_list_push_tail(&l->buckets[hash(key) & (l->nbuckets - 1)], &e->bucket);
        vdi_list_init(&e->lru);
        l->count++;
    }
    vdi_list_remove(&e->lru);
    vdi_list_push_tail(&l->lru, &e->lru);
    if (e->failures < UINT32_MAX)
        e->failures++;
    e->last_fail = now;
    if (e->failures >= l->cfg.lockout_failures) {
        e->failures = l->cfg.lockout_failures - 1;
        e->locked_until = now + l->cfg.lockout_ms;
        return true;
    }
    return false;
}

void auth__limiter_success(auth__limiter_t *l, const char *key)
{
    vdi_list_t *b = &l->buckets[hash(key) & (l->nbuckets - 1)];
    for (vdi_list_t *it = b->next; it != b; it = it->next) {
        struct entry *e = vdi_list_entry(it, struct entry, bucket);
        if (strcmp(e->key, key) == 0) {
            entry_free(l, e);
            return;
        }
    }
}
