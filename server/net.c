/* server/net.c: desktop networks (docs/network.md). At start vdid checks what the pools need
 * (an admin's bridge exists; the uplink exists; /dev/net/tun), makes a bridge with the gateway
 * address for each nat pool, turns IPv4 forwarding on, loads its nftables rules (net-nft.c) with
 * the ports of the desktops still running, starts a dnsmasq per nat pool (net-dnsmasq.c), and
 * removes the bridges, rules and dnsmasq of pools that are gone. For each desktop it picks a MAC
 * and (nat) an address on the loop, makes the tap on the catalogue worker (the VMM receives it
 * opened and never creates one), and removes the desktop's rules and DHCP entry when it ends; the
 * tap itself goes with the VMM that holds it.
 *
 * Thread: the loop, except srv__net_desktop_up() (catalogue worker: it touches nothing of vdid's
 * but its argument).
 */
#define VDI_LOG_TAG "net"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/vdi.h"
#include "server/desktop-internal.h"

struct netpool_rt {
    struct srv_netpool p;
    srv_dnsmasq_t *dns; /* nat */
    char *hostsdir;     /* nat: RUN_DIR/net/POOL.hosts */
    uint32_t last_ip;   /* nat: the address given last (the next is picked after it) */
};

struct srv_net {
    uint32_t instance;
    char table[24];
    struct netpool_rt *pools; /* cfg->pools' order */
    size_t n;
    char *dir;         /* RUN_DIR/net */
    uint32_t *claimed; /* the nat addresses of maintenance VMs' ports */
    size_t n_claimed;
};

/* ---- checks ------------------------------------------------------------------------------- */
int srv__net_check(const brk_config_t *cfg, char *why, size_t whylen)
{
    bool any = false;
    for (size_t i = 0; i < cfg->n_pools; i++) {
        const brk_pool_config_t *pl = &cfg->pools[i];
        if (pl->net == BRK_NET_NONE)
            continue;
        any = true;
        if (pl->net == BRK_NET_BRIDGE && !srv__link_is_bridge(pl->net_bridge)) {
            snprintf(why, whylen, "[pool %s] network = bridge:%s: %s", pl->name, pl->net_bridge,
                     srv__link_index(pl->net_bridge) < 0 ? "no such interface on this host"
                                                         : "that interface is not a bridge");
            return VDI_ECONFIG;
        }
        if (pl->vlan && !srv__link_vlan_filtering(pl->net_bridge)) {
            snprintf(why, whylen,
                     "[pool %s] vlan = %u: bridge %s does not filter VLANs (turn vlan_filtering "
                     "on; the kernel needs CONFIG_BRIDGE_VLAN_FILTERING)",
                     pl->name, pl->vlan, pl->net_bridge);
            return VDI_ECONFIG;
        }
        if (pl->net == BRK_NET_NAT && access(cfg->dnsmasq, X_OK) < 0) {
            snprintf(why, whylen, "[pool %s] network = nat needs dnsmasq: %s: %s", pl->name,
                     cfg->dnsmasq, strerror(errno));
            return VDI_ECONFIG;
        }
    }
    if (any && cfg->nat_uplink && srv__link_index(cfg->nat_uplink) < 0) {
        snprintf(why, whylen, "nat_uplink = %s: no such interface on this host", cfg->nat_uplink);
        return VDI_ECONFIG;
    }
    if (any && access("/dev/net/tun", R_OK | W_OK) < 0) {
        snprintf(why, whylen, "desktop networks need /dev/net/tun: %s", strerror(errno));
        return VDI_ECONFIG;
    }
    return 0;
}

/* ---- start ------------------------------------------------------------------------------- */
static bool live_state(brk_desktop_state_t st)
{
    return st != BRK_DS_GONE && st != BRK_DS_FAILED;
}

struct collect {
    srv_net_t *n;
    const brk_config_t *cfg;
    struct srv_netport *ports;
    size_t n_ports;
};

static int collect_port(const brk_desktop_t *d, void *ctx)
{
    struct collect *c = ctx;
    if (!live_state(d->state) || !d->mac[0])
        return 0;
    const brk_pool_config_t *pl = brk_config_pool(c->cfg, d->pool);
    if (!pl || pl->net == BRK_NET_NONE)
        return 0; /* its pool lost its network: the desktop is recycled, its port not kept */
    struct netpool_rt *rt = &c->n->pools[pl - c->cfg->pools];
    c->ports = vdi_xrealloc(c->ports, (c->n_ports + 1) * sizeof(*c->ports));
    struct srv_netport *p = &c->ports[c->n_ports++];
    memset(p, 0, sizeof(*p));
    brk_net_tap_name(c->n->instance, d->id, p->tap);
    snprintf(p->mac, sizeof(p->mac), "%s", d->mac);
    if (pl->net == BRK_NET_NAT) {
        snprintf(p->ip, sizeof(p->ip), "%s", d->ip);
        uint32_t ip;
        if (brk_net_ip_parse(d->ip, &ip) == 0)
            rt->last_ip = ip; /* records come by id: the newest last */
    }
    p->allow_host = pl->allow_host;
    return 0;
}

static void remove_tree(const char *dir)
{
    DIR *dp = opendir(dir);
    if (!dp)
        return;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = vdi_xasprintf("%s/%s", dir, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(dp);
    rmdir(dir);
}

static char *pool_file(const srv_net_t *n, const char *pool, const char *suffix)
{
    return vdi_xasprintf("%s/%s.%s", n->dir, pool, suffix);
}

struct sweep {
    srv_t *s;
    srv_net_t *n;
};

/* A bridge vdid made for a pool that no longer is a nat pool: remove it, its dnsmasq, its hosts. */
static int sweep_obj(const char *kind, const char *name, const char *pool, int64_t desktop,
                     void *ctx)
{
    struct sweep *sw = ctx;
    VDI_UNUSED(desktop);
    if (strcmp(kind, "bridge") != 0)
        return 0;
    for (size_t i = 0; i < sw->n->n; i++)
        if (sw->n->pools[i].p.mode == BRK_NET_NAT && !strcmp(sw->n->pools[i].p.bridge, name))
            return 0;
    char *pid = pool_file(sw->n, pool, "pid"), *hosts = pool_file(sw->n, pool, "hosts");
    char *leases = vdi_xasprintf("%s/net/%s.leases", sw->s->cfg->state_dir, pool);
    srv__dnsmasq_kill_stale(pid);
    remove_tree(hosts);
    unlink(leases);
    int rc = srv__link_del(name);
    if (rc < 0)
        VDI_LOG_WARN("pool=%s cannot remove bridge %s: %s", pool, name, vdi_strerror(rc));
    else
        VDI_LOG_INFO("pool=%s is no longer a nat pool: removed its bridge %s and dnsmasq", pool,
                     name);
    brk_store_netobj_del(sw->s->store, kind, name);
    free(pid);
    free(hosts);
    free(leases);
    return 0;
}

/* Write @path whole, through a temporary file beside it that is a dotfile, which dnsmasq's
 * hosts directory watch ignores. */
static int write_file(const char *path, const char *text, mode_t mode)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char *tmp = vdi_xasprintf("%.*s.%s.tmp", (int)(base - path), path, base);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    int rc = 0;
    if (fd < 0) {
        rc = -errno;
    } else {
        size_t len = strlen(text);
        if (write(fd, text, len) != (ssize_t)len)
            rc = -EIO;
        if (fchmod(fd, mode) < 0 && !rc)
            rc = -errno;
        close(fd);
        if (!rc && rename(tmp, path) < 0)
            rc = -errno;
        if (rc)
            unlink(tmp);
    }
    free(tmp);
    return rc;
}

/* The ifb devices of bandwidth caps whose desktops ended while vdid was not there to remove them
 * (this instance's: "vdq" and its 4 hex digits). */
static void sweep_ifbs(const srv_net_t *n, const struct srv_netport *ports, size_t n_ports)
{
    char prefix[BRK_NET_IFNAMSIZ], tap[BRK_NET_IFNAMSIZ];
    brk_net_tap_name(n->instance, 0, tap);
    srv__tc_ifb_name(tap, prefix);
    prefix[7] = 0; /* "vdq" + 4 hex digits */
    struct if_nameindex *ifs = if_nameindex();
    for (struct if_nameindex *i = ifs; i && i->if_index; i++) {
        if (strncmp(i->if_name, prefix, 7) != 0)
            continue;
        bool live = false;
        for (size_t k = 0; k < n_ports && !live; k++)
            live = !strcmp(ports[k].tap + 3, i->if_name + 3);
        if (!live && srv__link_del(i->if_name) == 0)
            VDI_LOG_INFO("removed %s, the bandwidth cap of a desktop that ended", i->if_name);
    }
    if (ifs)
        if_freenameindex(ifs);
}

static int ip_forward_on(char *why, size_t whylen)
{
    static const char path[] = "/proc/sys/net/ipv4/ip_forward";
    char v[4] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, v, sizeof(v) - 1);
        close(fd);
        if (r > 0 && v[0] == '1')
            return 0;
    }
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "1\n", 2) != 2) {
        int rc = -errno;
        if (fd >= 0)
            close(fd);
        snprintf(why, whylen, "nat pools need IPv4 forwarding; cannot turn on %s: %s", path,
                 vdi_strerror(rc));
        return rc;
    }
    close(fd);
    VDI_LOG_INFO("turned IPv4 forwarding on (%s) for the nat pools", path);
    return 0;
}

static int nat_bridge_up(srv_t *s, struct netpool_rt *rt, char *why, size_t whylen)
{
    const struct srv_netpool *p = &rt->p;
    int rc = srv__link_bridge_add(p->bridge);
    if (rc == 0) {
        brk_store_netobj_add(s->store, "bridge", p->bridge, p->name, 0);
        rc = srv__link_addr_add(p->bridge, p->subnet + 1, p->prefix);
    }
    if (rc == 0)
        rc = srv__link_up(p->bridge);
    if (rc < 0) {
        snprintf(why, whylen, "[pool %s] cannot set up bridge %s: %s", p->name, p->bridge,
                 vdi_strerror(rc));
        return rc;
    }
    return 0;
}

int srv__net_init(srv_t *s)
{
    const brk_config_t *cfg = s->cfg;
    char why[512] = "";
    srv_net_t *n = vdi_xcalloc(1, sizeof(*n));
    n->instance = brk_net_instance(cfg->state_dir);
    snprintf(n->table, sizeof(n->table), "vdi_%08" PRIx32, n->instance);
    n->dir = vdi_xasprintf("%s/net", cfg->run_dir);
    n->n = cfg->n_pools;
    n->pools = vdi_xcalloc(n->n ? n->n : 1, sizeof(*n->pools));
    size_t active = 0;
    for (size_t i = 0; i < n->n; i++) {
        const brk_pool_config_t *pl = &cfg->pools[i];
        struct srv_netpool *p = &n->pools[i].p;
        snprintf(p->name, sizeof(p->name), "%s", pl->name);
        p->mode = pl->net;
        p->subnet = pl->subnet;
        p->prefix = pl->subnet_prefix;
        p->isolate = pl->isolate;
        p->allow_host = pl->allow_host;
        p->vlan = (uint16_t)pl->vlan;
        if (pl->net == BRK_NET_NAT)
            brk_net_bridge_name(n->instance, pl->name, p->bridge);
        else if (pl->net == BRK_NET_BRIDGE)
            snprintf(p->bridge, sizeof(p->bridge), "%s", pl->net_bridge);
        active += pl->net != BRK_NET_NONE;
    }
    s->net = n;
    int rc = 0;
    if (active) {
        rc = srv__net_check(cfg, why, sizeof(why));
        if (rc < 0)
            goto fail;
        char *state_net = vdi_xasprintf("%s/net", cfg->state_dir);
        if ((mkdir(n->dir, 0755) < 0 && errno != EEXIST) ||
            (mkdir(state_net, 0700) < 0 && errno != EEXIST)) {
            rc = -errno;
            snprintf(why, sizeof(why), "cannot create %s or %s: %s", n->dir, state_net,
                     vdi_strerror(rc));
            free(state_net);
            goto fail;
        }
        free(state_net);
        /* dnsmasq drops to nobody before it reads the hosts directory: every parent must be
         * searchable by others (/run/vdi is, 0755). */
        char *dir = vdi_xstrdup(n->dir);
        for (char *slash = dir + strlen(dir); slash > dir; slash = strrchr(dir, '/')) {
            *slash = 0;
            struct stat st;
            if (dir[0] && stat(dir, &st) == 0 && !(st.st_mode & S_IXOTH)) {
                snprintf(why, sizeof(why),
                         "nat pools' dnsmasq runs as nobody and cannot reach %s: %s is mode %03o "
                         "(make it searchable by others, or move run_dir)",
                         n->dir, dir, (unsigned)(st.st_mode & 0777));
                free(dir);
                rc = VDI_ECONFIG;
                goto fail;
            }
        }
        free(dir);
    }
    /* What earlier runs made for pools that are gone. */
    struct sweep sw = {s, n};
    brk_store_netobj_foreach(s->store, sweep_obj, &sw);
    if (!active && access(n->dir, F_OK) == 0)
        rmdir(n->dir);

    bool nat = false;
    for (size_t i = 0; i < n->n; i++) {
        if (n->pools[i].p.mode != BRK_NET_NAT)
            continue;
        nat = true;
        if ((rc = nat_bridge_up(s, &n->pools[i], why, sizeof(why))) < 0)
            goto fail;
    }
    if (nat && (rc = ip_forward_on(why, sizeof(why))) < 0)
        goto fail;

    /* The rules, with the ports of the desktops that kept running. */
    struct collect c = {.n = n, .cfg = cfg};
    brk_store_desktop_foreach(s->store, false, collect_port, &c);
    struct srv_netpool *pools = vdi_xcalloc(active ? active : 1, sizeof(*pools));
    size_t k = 0;
    for (size_t i = 0; i < n->n; i++)
        if (n->pools[i].p.mode != BRK_NET_NONE)
            pools[k++] = n->pools[i].p;
    rc = srv__nft_apply(n->table, pools, k, cfg->nat_uplink, c.ports, c.n_ports, why, sizeof(why));
    free(pools);
    sweep_ifbs(n, c.ports, c.n_ports);
    if (rc < 0 && !active) {
        /* Nothing to remove, and no nftables to remove it with: not a reason to stop. */
        VDI_LOG_DEBUG("no desktop networks; %s", why);
        rc = 0;
    }
    if (rc < 0) {
        free(c.ports);
        goto fail;
    }

    /* DHCP: each nat pool's hosts from the records, then its dnsmasq. */
    for (size_t i = 0; i < n->n; i++) {
        struct netpool_rt *rt = &n->pools[i];
        if (rt->p.mode != BRK_NET_NAT)
            continue;
        rt->hostsdir = pool_file(n, rt->p.name, "hosts");
        char *pid = pool_file(n, rt->p.name, "pid");
        srv__dnsmasq_kill_stale(pid); /* before its hosts change under it */
        remove_tree(rt->hostsdir);
        if (mkdir(rt->hostsdir, 0755) < 0) {
            rc = -errno;
            snprintf(why, sizeof(why), "cannot create %s: %s", rt->hostsdir, vdi_strerror(rc));
            free(c.ports);
            goto fail;
        }
        for (size_t j = 0; j < c.n_ports; j++) {
            if (!c.ports[j].ip[0])
                continue;
            uint32_t ip;
            if (brk_net_ip_parse(c.ports[j].ip, &ip) < 0 ||
                (ip & (~0u << (32 - rt->p.prefix))) != rt->p.subnet)
                continue;
            char *f = vdi_xasprintf("%s/%s", rt->hostsdir, c.ports[j].tap);
            char *line = vdi_xasprintf("%s,%s\n", c.ports[j].mac, c.ports[j].ip);
            write_file(f, line, 0644);
            free(f);
            free(line);
        }
        char *leases = vdi_xasprintf("%s/net/%s.leases", cfg->state_dir, rt->p.name);
        struct srv_dnsmasq_spec sp = {
            .program = cfg->dnsmasq,
            .pool = rt->p.name,
            .bridge = rt->p.bridge,
            .subnet = rt->p.subnet,
            .prefix = rt->p.prefix,
            .hostsdir = rt->hostsdir,
            .leasefile = leases,
            .pidfile = pid,
        };
        rc = srv__dnsmasq_start(s->loop, &sp, &rt->dns, why, sizeof(why));
        free(pid);
        free(leases);
        if (rc < 0) {
            free(c.ports);
            goto fail;
        }
    }
    free(c.ports);
    for (size_t i = 0; i < n->n; i++) {
        const struct srv_netpool *p = &n->pools[i].p;
        char net[BRK_NET_IP_LEN];
        brk_net_ip_str(p->subnet, net);
        if (p->mode == BRK_NET_NAT)
            VDI_LOG_INFO("pool=%s network=nat bridge=%s subnet=%s/%u isolate=%s allow_host=%s",
                         p->name, p->bridge, net, p->prefix, p->isolate ? "yes" : "no",
                         p->allow_host ? "yes" : "no");
        else if (p->mode == BRK_NET_BRIDGE)
            VDI_LOG_INFO("pool=%s network=bridge:%s vlan=%u isolate=%s allow_host=%s", p->name,
                         p->bridge, p->vlan, p->isolate ? "yes" : "no",
                         p->allow_host ? "yes" : "no");
    }
    return 0;
fail:
    VDI_LOG_ERR("desktop networks: %s", why);
    return rc < 0 ? rc : VDI_ECONFIG;
}

void srv__net_close(srv_t *s)
{
    srv_net_t *n = s->net;
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++) {
        srv__dnsmasq_close(n->pools[i].dns, false); /* keeps serving while vdid restarts */
        free(n->pools[i].hostsdir);
    }
    free(n->pools);
    free(n->dir);
    free(n->claimed);
    free(n);
    s->net = NULL;
}

/* ---- one desktop ------------------------------------------------------------------------- */
void srv__net_tap_name(srv_t *s, int64_t id, char out[BRK_NET_IFNAMSIZ])
{
    brk_net_tap_name(s->net->instance, id, out);
}

/* Fill @d for port @tap of pool @pool: a MAC (kept when @mac holds one) and, nat, an address
 * (kept when @ip holds a free one of the subnet) that no desktop but @except and no maintenance
 * VM has. @mac and @ip are updated. Loop. */
static int port_plan(srv_t *s, const brk_pool_config_t *pool, const srv_vm_t *except,
                     const char *tap, char mac[BRK_NET_MAC_LEN], char ip_s[BRK_NET_IP_LEN],
                     struct srv_net_desk *d, char *why, size_t whylen)
{
    srv_net_t *n = s->net;
    struct netpool_rt *rt = &n->pools[pool - s->cfg->pools];
    if (!brk_net_mac_valid(mac)) {
        uint8_t rnd[3];
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
            snprintf(why, whylen, "cannot draw a MAC address: %s", strerror(errno));
            return -EIO;
        }
        brk_net_mac(rnd, mac);
    }
    if (pool->net == BRK_NET_NAT) {
        /* The other desktops' addresses (every pool's: subnets do not overlap), and those of
         * maintenance VMs. */
        size_t cnt = 0;
        uint32_t ip = 0,
                 *used = vdi_xcalloc(vdi_list_count(&s->vms) + n->n_claimed + 1, sizeof(*used));
        for (vdi_list_t *it = s->vms.next; it != &s->vms; it = it->next) {
            const srv_vm_t *o = vdi_list_entry(it, srv_vm_t, link);
            if (o != except && brk_net_ip_parse(o->ip, &used[cnt]) == 0)
                cnt++;
        }
        for (size_t k = 0; k < n->n_claimed; k++)
            used[cnt++] = n->claimed[k];
        bool keep = brk_net_ip_parse(ip_s, &ip) == 0 && ip > pool->subnet + 1 &&
                    ip - pool->subnet - 2 < brk_net_hosts(pool);
        for (size_t k = 0; keep && k < cnt; k++)
            keep = used[k] != ip;
        if (!keep) {
            int rc = brk_net_ip_pick(pool, used, cnt, rt->last_ip, &ip);
            if (rc < 0) {
                free(used);
                snprintf(why, whylen, "pool %s: no free address left in its subnet", pool->name);
                return rc;
            }
            brk_net_ip_str(ip, ip_s);
        }
        free(used);
        rt->last_ip = ip;
    } else {
        ip_s[0] = 0;
    }
    memset(d, 0, sizeof(*d));
    d->on = true;
    snprintf(d->table, sizeof(d->table), "%s", n->table);
    snprintf(d->bridge, sizeof(d->bridge), "%s", rt->p.bridge);
    snprintf(d->port.tap, sizeof(d->port.tap), "%s", tap);
    snprintf(d->port.mac, sizeof(d->port.mac), "%s", mac);
    snprintf(d->port.ip, sizeof(d->port.ip), "%s", ip_s);
    d->port.allow_host = pool->allow_host;
    d->isolate = pool->isolate;
    d->vlan = (uint16_t)pool->vlan;
    d->bandwidth_bps = pool->bandwidth_bps;
    if (pool->net == BRK_NET_NAT)
        snprintf(d->hosts_file, sizeof(d->hosts_file), "%s/%s", rt->hostsdir, tap);
    return 0;
}

int srv__net_desktop_plan(srv_vm_t *vm, const brk_pool_config_t *pool, struct srv_net_desk *d,
                          char *why, size_t whylen)
{
    srv_t *s = vm->s;
    srv_net_t *n = s->net;
    memset(d, 0, sizeof(*d));
    if (pool->net == BRK_NET_NONE || !n) {
        vm->tap[0] = vm->mac[0] = vm->ip[0] = 0;
        return 0;
    }
    brk_net_tap_name(n->instance, vm->id, vm->tap);
    /* A dedicated desktop started again keeps its MAC (and, if still free, its address). */
    int rc = port_plan(s, pool, vm, vm->tap, vm->mac, vm->ip, d, why, whylen);
    if (rc < 0)
        return rc;
    rc = brk_store_desktop_set_net(s->store, vm->id, vm->mac, vm->ip);
    if (rc < 0) {
        snprintf(why, whylen, "cannot record the desktop's MAC and address: %s", vdi_strerror(rc));
        d->on = false;
        return rc;
    }
    return 0;
}

int srv__net_maint_plan(srv_t *s, const brk_pool_config_t *pool, unsigned seq,
                        struct srv_net_desk *d, char *why, size_t whylen)
{
    srv_net_t *n = s->net;
    memset(d, 0, sizeof(*d));
    if (!n || pool->net == BRK_NET_NONE) {
        snprintf(why, whylen, "pool %s has no network (network = none)", pool->name);
        return -EINVAL;
    }
    char tap[BRK_NET_IFNAMSIZ], mac[BRK_NET_MAC_LEN] = "", ip[BRK_NET_IP_LEN] = "";
    brk_net_maint_tap_name(n->instance, seq, tap);
    int rc = port_plan(s, pool, NULL, tap, mac, ip, d, why, whylen);
    if (rc < 0)
        return rc;
    d->bandwidth_bps = 0; /* an admin's patch is not capped (and its tap has no ifb name) */
    uint32_t a;
    if (brk_net_ip_parse(ip, &a) == 0) {
        n->claimed = vdi_xrealloc(n->claimed, (n->n_claimed + 1) * sizeof(*n->claimed));
        n->claimed[n->n_claimed++] = a;
    }
    return 0;
}

int srv__net_desktop_up(const struct srv_net_desk *d, int *tap_fd, char *why, size_t whylen)
{
    const char *tap = d->port.tap, *step;
    int fd = -1, rc;
    *tap_fd = -1;
    step = "create tap";
    if ((rc = srv__tap_create(tap, &fd)) < 0)
        goto fail;
    step = "attach it to the bridge";
    if ((rc = srv__link_set_master(tap, d->bridge)) < 0)
        goto fail;
    step = "isolate its bridge port";
    if (d->isolate && (rc = srv__link_port_isolated(tap, true)) < 0)
        goto fail;
    step = "put its port in the VLAN";
    if (d->vlan && (rc = srv__link_port_vlan(tap, d->vlan)) < 0)
        goto fail;
    if (d->bandwidth_bps) {
        char ifb[BRK_NET_IFNAMSIZ], tc_why[200];
        srv__tc_ifb_name(tap, ifb);
        if ((rc = srv__tc_cap(tap, ifb, d->bandwidth_bps, tc_why, sizeof(tc_why))) < 0) {
            snprintf(why, whylen, "tap %s: cannot cap its bandwidth: %s", tap, tc_why);
            goto undo;
        }
    }
    step = "add its filter rules";
    char nft_why[200];
    if ((rc = srv__nft_port_add(d->table, &d->port, nft_why, sizeof(nft_why))) < 0) {
        snprintf(why, whylen, "tap %s: cannot %s: %s", tap, step, nft_why);
        goto undo;
    }
    step = "bring it up";
    if ((rc = srv__link_up(tap)) < 0)
        goto fail;
    if (d->hosts_file[0]) {
        char line[64];
        snprintf(line, sizeof(line), "%s,%s\n", d->port.mac, d->port.ip);
        step = "give it its DHCP address";
        if ((rc = write_file(d->hosts_file, line, 0644)) < 0)
            goto fail;
    }
    *tap_fd = fd;
    return 0;
fail:
    snprintf(why, whylen, "tap %s: cannot %s: %s", tap, step, vdi_strerror(rc));
undo:
    srv__nft_port_del(d->table, &d->port);
    if (d->bandwidth_bps) {
        char ifb[BRK_NET_IFNAMSIZ];
        srv__tc_ifb_name(tap, ifb);
        srv__link_del(ifb);
    }
    if (fd >= 0)
        close(fd); /* not persistent: the tap goes with its last holder */
    return rc;
}

struct down_job {
    uv_work_t w;
    srv_t *s;
    size_t pool; /* index, or SIZE_MAX */
    char table[24];
    struct srv_netport port;
    char hosts_file[300];
};

static void down_work(uv_work_t *w) /* Thread: libuv's pool */
{
    struct down_job *j = vdi_container_of(w, struct down_job, w);
    srv__nft_port_del(j->table, &j->port);
    if (j->hosts_file[0])
        unlink(j->hosts_file);
    srv__link_del(j->port.tap); /* normally gone with the VMM already */
    char ifb[BRK_NET_IFNAMSIZ];
    srv__tc_ifb_name(j->port.tap, ifb);
    srv__link_del(ifb); /* its bandwidth cap's, if it had one */
}

static void down_done(uv_work_t *w, int status)
{
    struct down_job *j = vdi_container_of(w, struct down_job, w);
    VDI_UNUSED(status);
    srv_net_t *n = j->s->net;
    /* dnsmasq forgets a removed hosts file only when told. */
    if (n && j->pool < n->n)
        srv__dnsmasq_reload(n->pools[j->pool].dns);
    free(j);
}

/* Remove port @port's rules and DHCP entry (@pool: its pool, NULL when gone) in a worker. */
static void port_down(srv_t *s, const brk_pool_config_t *pool, const struct srv_netport *port)
{
    srv_net_t *n = s->net;
    struct down_job *j = vdi_xcalloc(1, sizeof(*j));
    j->s = s;
    j->pool = SIZE_MAX;
    snprintf(j->table, sizeof(j->table), "%s", n->table);
    j->port = *port;
    if (pool) {
        j->pool = (size_t)(pool - s->cfg->pools);
        j->port.allow_host = pool->allow_host;
        if (pool->net == BRK_NET_NAT && n->pools[j->pool].hostsdir)
            snprintf(j->hosts_file, sizeof(j->hosts_file), "%s/%s", n->pools[j->pool].hostsdir,
                     port->tap);
    } else {
        j->port.allow_host = true; /* delete it from every set it may be in */
    }
    if (uv_queue_work(s->loop, &j->w, down_work, down_done) < 0) {
        down_work(&j->w);
        free(j);
    }
}

void srv__net_desktop_down(srv_vm_t *vm)
{
    srv_t *s = vm->s;
    if (!vm->tap[0] || !s->net)
        return;
    struct srv_netport port = {0};
    snprintf(port.tap, sizeof(port.tap), "%s", vm->tap);
    snprintf(port.mac, sizeof(port.mac), "%s", vm->mac);
    snprintf(port.ip, sizeof(port.ip), "%s", vm->ip);
    vm->tap[0] = 0;
    port_down(s, srv__desktop_pool(vm), &port);
}

void srv__net_maint_down(srv_t *s, const brk_pool_config_t *pool, const struct srv_net_desk *d)
{
    srv_net_t *n = s->net;
    if (!d->on || !n)
        return;
    uint32_t a;
    if (brk_net_ip_parse(d->port.ip, &a) == 0)
        for (size_t i = 0; i < n->n_claimed; i++)
            if (n->claimed[i] == a) {
                n->claimed[i] = n->claimed[--n->n_claimed];
                break;
            }
    port_down(s, pool, &d->port);
}
