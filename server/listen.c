/* server/listen.c: what vdid's TCP listeners (the RFB gateway, the web portal) share: turning a
 * configured "HOST:PORT" or "[V6]:PORT" into a socket address (vdi_hostport_addr(), the reading
 * the config check uses too), reading back the bound port, and the gate in front of each
 * listener that caps connections which have not logged in yet.
 *
 * The gate: every accepted connection takes a slot before anything is spent on it (no TLS
 * state, no read buffer), counted per listener and per source address (IPv4 addresses one by
 * one, v4-mapped IPv6 as IPv4, other IPv6 by /64, since one host usually owns a whole /64).
 * A connection beyond either cap is reset at once (SO_LINGER 0: no FIN_WAIT or TIME_WAIT left
 * behind), counted and logged rate-limited; the listener keeps accepting, so a flood costs an
 * accept and a close per connection and never fills the kernel's backlog for everyone else.
 * The owner gives the slot back when the connection has logged in or closed. Addresses live
 * in a chained hash table with a random seed (the bucket is not the attacker's choice).
 */
#define VDI_LOG_TAG "vdid"
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/vdi.h"
#include "server/internal.h"

int srv__listen_addr(const char *key, const char *listen, struct sockaddr_storage *ss, char *host,
                     size_t hostlen)
{
    /* The config check read it with the same function; this refuses only what bypassed it. */
    int rc = vdi_hostport_addr(listen, ss, host, hostlen);
    if (rc < 0) {
        VDI_LOG_ERR("%s: '%s' is not " VDI_HOSTPORT_FORM, key, listen);
        return VDI_ECONFIG;
    }
    return 0;
}

int srv__bound_port(const uv_tcp_t *tcp)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

/* ---- the gate ---------------------------------------------------------------------------------- */
#define GATE_BUCKETS_MIN 64u
#define GATE_BUCKETS_MAX 65536u

struct srv_gate_slot {
    srv_gate_t *g;
    vdi_list_t link; /* in its bucket */
    uint8_t key[16];
    uint32_t n; /* slots taken from this address (the entry goes at 0) */
};

struct srv_gate {
    char name[16];
    uint32_t max_total, max_per_addr;
    uint32_t open, addrs;
    uint64_t accepted, refused_addr, refused_total;
    uint64_t seed;
    vdi_list_t *buckets;
    uint32_t nbuckets; /* a power of two */
    vdi_ratelimit_t log_rl;
};

srv_gate_t *srv__gate_create(const char *name, uint32_t max_total, uint32_t max_per_addr)
{
    srv_gate_t *g = vdi_xcalloc(1, sizeof(*g));
    snprintf(g->name, sizeof(g->name), "%s", name);
    g->max_total = max_total ? max_total : 1;
    g->max_per_addr = max_per_addr ? max_per_addr : 1;
    g->nbuckets = GATE_BUCKETS_MIN;
    while (g->nbuckets < g->max_total && g->nbuckets < GATE_BUCKETS_MAX)
        g->nbuckets *= 2;
    g->buckets = vdi_xcalloc(g->nbuckets, sizeof(*g->buckets));
    for (uint32_t i = 0; i < g->nbuckets; i++)
        vdi_list_init(&g->buckets[i]);
    if (getrandom(&g->seed, sizeof(g->seed), GRND_NONBLOCK) != (ssize_t)sizeof(g->seed))
        g->seed = uv_hrtime() ^ ((uint64_t)getpid() << 32); /* still not the client's choice */
    g->log_rl = (vdi_ratelimit_t)VDI_RATELIMIT_INIT;
    return g;
}

void srv__gate_destroy(srv_gate_t *g)
{
    if (!g)
        return;
    VDI_ASSERT(g->open == 0); /* every slot is given back before its listener goes */
    free(g->buckets);
    free(g);
}

/* The address group of @sa: IPv4 as ::ffff:a.b.c.d (v4-mapped IPv6 is the same), IPv6 its /64. */
static bool addr_key(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            memcpy(key, a->s6_addr, 16);
        else
            memcpy(key, a->s6_addr, 8);
        return true;
    }
    return false;
}

static uint32_t key_hash(const srv_gate_t *g, const uint8_t key[16])
{
    uint64_t h = 14695981039346656037ull ^ g->seed; /* FNV-1a, seeded */
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    h ^= h >> 29;
    return (uint32_t)h & (g->nbuckets - 1);
}

static void key_text(const uint8_t key[16], char *buf, size_t n)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(key, v4mapped, 12) == 0) {
        inet_ntop(AF_INET, key + 12, buf, (socklen_t)n);
        return;
    }
    char a[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, key, a, sizeof(a));
    snprintf(buf, n, "%s/64", a);
}

int srv__gate_admit(srv_gate_t *g, const struct sockaddr *peer, srv_gate_slot_t **out)
{
    uint8_t key[16];
    if (!addr_key(peer, key))
        return -EAFNOSUPPORT;
    vdi_list_t *b = &g->buckets[key_hash(g, key)];
    srv_gate_slot_t *e = NULL;
    for (vdi_list_t *it = b->next; it != b; it = it->next) {
        srv_gate_slot_t *x = vdi_list_entry(it, srv_gate_slot_t, link);
        if (memcmp(x->key, key, 16) == 0) {
            e = x;
            break;
        }
    }
    const char *cap = NULL;
    uint32_t limit = 0;
    if (e && e->n >= g->max_per_addr) {
        g->refused_addr++;
        cap = "preauth_max_per_addr";
        limit = g->max_per_addr;
    } else if (g->open >= g->max_total) {
        g->refused_total++;
        cap = "preauth_max";
        limit = g->max_total;
    }
    if (cap) {
        uint32_t dropped;
        if (vdi_log_threshold >= VDI_LOG_LEVEL_WARN &&
            vdi_ratelimit_ok(&g->log_rl, 10, 5000, &dropped)) {
            char a[INET6_ADDRSTRLEN + 4];
            key_text(key, a, sizeof(a));
            VDI_LOG_WARN("listener=%s peer=%s refused before TLS: %u connections not logged in "
                         "from it, %u in all (%s = %u)%s",
                         g->name, a, e ? e->n : 0, g->open, cap, limit,
                         dropped ? " (and more refusals not logged)" : "");
        }
        return -EBUSY;
    }
    if (!e) {
        e = vdi_xcalloc(1, sizeof(*e));
        e->g = g;
        memcpy(e->key, key, 16);
        vdi_list_push_tail(b, &e->link);
        g->addrs++;
    }
    e->n++;
    g->open++;
    g->accepted++;
    *out = e;
    return 0;
}

void srv__gate_release(srv_gate_slot_t *slot)
{
    if (!slot)
        return;
    srv_gate_t *g = slot->g;
    VDI_ASSERT(slot->n > 0 && g->open > 0);
    g->open--;
    if (--slot->n == 0) {
        vdi_list_remove(&slot->link);
        g->addrs--;
        free(slot);
    }
}

static void on_refused_closed(uv_handle_t *h)
{
    free(h);
}

int srv__gate_accept(srv_gate_t *g, uv_stream_t *server, uv_tcp_t **out, srv_gate_slot_t **slot)
{
    uv_tcp_t *tcp = vdi_xmalloc(sizeof(*tcp));
    uv_tcp_init(server->loop, tcp);
    int rc = uv_accept(server, (uv_stream_t *)tcp);
    if (rc < 0) {
        uv_close((uv_handle_t *)tcp, on_refused_closed);
        return rc;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    rc = uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len);
    if (rc == 0)
        rc = srv__gate_admit(g, (struct sockaddr *)&ss, slot);
    if (rc < 0) {
        /* A reset, not a FIN: nothing of it lingers here, and the client learns at once. */
        if (uv_tcp_close_reset(tcp, on_refused_closed) < 0)
            uv_close((uv_handle_t *)tcp, on_refused_closed);
        return rc;
    }
    *out = tcp;
    return 0;
}

void srv__gate_stats(const srv_gate_t *g, srv_gate_stats_t *st)
{
    st->open = g->open;
    st->addrs = g->addrs;
    st->accepted = g->accepted;
    st->refused_addr = g->refused_addr;
    st->refused_total = g->refused_total;
}
