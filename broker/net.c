/* broker/net.c: the pure parts of desktop networks: the names of the host objects vdid makes
 * (bridges, taps), MAC addresses, a nat pool's subnet and the address each desktop gets. server/
 * makes the objects (server/net*.c); docs/network.md says what they are for.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "broker/brk.h"
#include "common/vdi.h"

#define DEFAULT_NET  0x0ad50000u /* 10.213.0.0/16: nat pools' default /24s come from here */
#define DEFAULT_PREF 24

const char *brk_net_mode_name(brk_net_mode_t m)
{
    switch (m) {
    case BRK_NET_NAT:
        return "nat";
    case BRK_NET_BRIDGE:
        return "bridge";
    default:
        return "none";
    }
}

static uint32_t fnv1a(uint32_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

uint32_t brk_net_instance(const char *state_dir)
{
    return fnv1a(2166136261u, state_dir);
}

void brk_net_bridge_name(uint32_t instance, const char *pool, char out[BRK_NET_IFNAMSIZ])
{
    char seed[16];
    snprintf(seed, sizeof(seed), "%08" PRIx32 "/", instance);
    snprintf(out, BRK_NET_IFNAMSIZ, "vdn%08" PRIx32, fnv1a(fnv1a(2166136261u, seed), pool));
}

static void tap_name(const char *prefix, uint32_t instance, int64_t id, char out[BRK_NET_IFNAMSIZ])
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char b36[16];
    size_t n = 0;
    uint64_t v = id > 0 ? (uint64_t)id : 0;
    do {
        b36[n++] = digits[v % 36];
        v /= 36;
    } while (v && n < 8); /* 36^8: far more desktops than a host makes */
    char name[BRK_NET_IFNAMSIZ];
    int k = snprintf(name, sizeof(name), "%s%04" PRIx32, prefix,
                     (instance ^ (instance >> 16)) & 0xffff);
    while (n && k < BRK_NET_IFNAMSIZ - 1)
        name[k++] = b36[--n];
    name[k] = 0;
    memcpy(out, name, BRK_NET_IFNAMSIZ);
}

void brk_net_tap_name(uint32_t instance, int64_t id, char out[BRK_NET_IFNAMSIZ])
{
    tap_name("vdt", instance, id, out);
}

void brk_net_maint_tap_name(uint32_t instance, unsigned seq, char out[BRK_NET_IFNAMSIZ])
{
    tap_name("vdm", instance, seq, out);
}

void brk_net_mac(const uint8_t rnd[3], char out[BRK_NET_MAC_LEN])
{
    snprintf(out, BRK_NET_MAC_LEN, "02:76:64:%02x:%02x:%02x", rnd[0], rnd[1], rnd[2]);
}

bool brk_net_mac_valid(const char *s)
{
    if (strlen(s) != 17)
        return false;
    for (int i = 0; i < 17; i++) {
        char c = s[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (i % 3 == 2 ? c != ':' : !hex)
            return false;
    }
    return true;
}

void brk_net_ip_str(uint32_t ip, char out[BRK_NET_IP_LEN])
{
    snprintf(out, BRK_NET_IP_LEN, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255,
             ip & 255);
}

int brk_net_ip_parse(const char *s, uint32_t *out)
{
    unsigned a[4];
    int used = 0;
    if (sscanf(s, "%3u.%3u.%3u.%3u%n", &a[0], &a[1], &a[2], &a[3], &used) != 4 ||
        (size_t)used != strlen(s) || s[0] < '0' || s[0] > '9')
        return -EINVAL;
    for (int i = 0; i < 4; i++)
        if (a[i] > 255)
            return -EINVAL;
    *out = a[0] << 24 | a[1] << 16 | a[2] << 8 | a[3];
    return 0;
}

uint32_t brk_net_gateway(const brk_pool_config_t *pool)
{
    return pool->subnet + 1;
}

uint32_t brk_net_hosts(const brk_pool_config_t *pool)
{
    if (pool->subnet_prefix < 8 || pool->subnet_prefix > 30)
        return 0;
    /* Less the network, the gateway and the broadcast addresses. */
    return (1u << (32 - pool->subnet_prefix)) - 3;
}

static bool in_use(const uint32_t *used, size_t n, uint32_t ip)
{
    for (size_t i = 0; i < n; i++)
        if (used[i] == ip)
            return true;
    return false;
}

int brk_net_ip_pick(const brk_pool_config_t *pool, const uint32_t *used, size_t n, uint32_t after,
                    uint32_t *out)
{
    uint32_t hosts = brk_net_hosts(pool), first = brk_net_gateway(pool) + 1;
    if (!hosts)
        return -ENOSPC;
    /* Index of @after among the desktop addresses; start at the first one otherwise. */
    uint32_t start = (after >= first && after - first < hosts) ? after - first + 1 : 0;
    for (uint32_t k = 0; k < hosts; k++) {
        uint32_t ip = first + (start + k) % hosts;
        if (!in_use(used, n, ip)) {
            *out = ip;
            return 0;
        }
    }
    return -ENOSPC;
}

static bool overlap(uint32_t a, uint32_t ap, uint32_t b, uint32_t bp)
{
    uint32_t p = ap < bp ? ap : bp;
    uint32_t mask = p ? ~0u << (32 - p) : 0;
    return (a & mask) == (b & mask);
}

int brk_net_resolve(brk_config_t *cfg, char *err, size_t errlen)
{
    /* Explicit subnets first, then defaults around them. */
    for (size_t i = 0; i < cfg->n_pools; i++) {
        brk_pool_config_t *pl = &cfg->pools[i];
        if (pl->net != BRK_NET_NAT || pl->subnet_prefix)
            continue;
        uint32_t h = fnv1a(2166136261u, pl->name) % 256, k;
        for (k = 0; k < 256; k++) {
            uint32_t cand = DEFAULT_NET | ((h + k) % 256) << 8;
            bool clash = false;
            for (size_t j = 0; j < cfg->n_pools && !clash; j++) {
                const brk_pool_config_t *o = &cfg->pools[j];
                clash = j != i && o->net == BRK_NET_NAT && o->subnet_prefix &&
                        overlap(cand, DEFAULT_PREF, o->subnet, o->subnet_prefix);
            }
            if (!clash) {
                pl->subnet = cand;
                pl->subnet_prefix = DEFAULT_PREF;
                break;
            }
        }
        if (k == 256) {
            snprintf(err, errlen,
                     "[pool %s]: no free /24 left in 10.213.0.0/16; set subnet =", pl->name);
            return VDI_ECONFIG;
        }
    }
    for (size_t i = 0; i < cfg->n_pools; i++) {
        const brk_pool_config_t *pl = &cfg->pools[i];
        if (pl->net != BRK_NET_NAT)
            continue;
        char a[BRK_NET_IP_LEN];
        brk_net_ip_str(pl->subnet, a);
        if (brk_net_hosts(pl) < pl->max_desktops) {
            snprintf(err, errlen,
                     "[pool %s]: subnet %s/%u holds %u desktop addresses, fewer than max_desktops "
                     "= %u",
                     pl->name, a, pl->subnet_prefix, brk_net_hosts(pl), pl->max_desktops);
            return VDI_ECONFIG;
        }
        for (size_t j = 0; j < i; j++) {
            const brk_pool_config_t *o = &cfg->pools[j];
            if (o->net == BRK_NET_NAT &&
                overlap(pl->subnet, pl->subnet_prefix, o->subnet, o->subnet_prefix)) {
                snprintf(err, errlen, "[pool %s]: subnet %s/%u overlaps [pool %s]'s", pl->name, a,
                         pl->subnet_prefix, o->name);
                return VDI_ECONFIG;
            }
        }
    }
    return 0;
}
