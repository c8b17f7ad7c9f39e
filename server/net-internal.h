/* server/net-internal.h: what vdid's network files share (net.c, net-link.c, net-nft.c,
 * net-dnsmasq.c). The rest of server/ sees desktop networks through server/internal.h
 * (srv__net_*). docs/network.md says what vdid changes on the host, and why.
 *
 * Threads: net-link.c and net-nft.c may be called from any thread (each call stands alone;
 * net-nft.c serialises its nftables context); net-dnsmasq.c and net.c's srv__net_* functions
 * run on vdid's loop thread, except srv__net_desktop_up(), which runs on the catalogue worker.
 */
#ifndef VDI_SERVER_NET_INTERNAL_H
#define VDI_SERVER_NET_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "broker/brk.h"
#include "common/vdi.h"

/* ---- net-link.c: rtnetlink and the tun device ----------------------------------------------- */
int srv__link_index(const char *name);                 /* its ifindex, or -ENODEV */
bool srv__link_is_bridge(const char *name);            /* exists and is a bridge */
int srv__link_bridge_add(const char *name);            /* 0 also when that bridge exists already */
int srv__link_add(const char *name, const char *kind); /* "bridge", "ifb"; 0 if it exists */
int srv__link_del(const char *name);                   /* 0 also when it does not exist */
int srv__link_up(const char *name);
int srv__link_set_master(const char *name, const char *bridge);
int srv__link_port_isolated(const char *name, bool on); /* a bridge port's isolation flag */
/* Make bridge port @name carry VLAN @vid only, untagged towards the desktop (the bridge needs
 * vlan_filtering on: srv__link_vlan_filtering()). */
int srv__link_port_vlan(const char *name, uint16_t vid);
bool srv__link_vlan_filtering(const char *bridge);
int srv__link_addr_add(const char *name, uint32_t ip, unsigned prefix); /* host order */
/* Create tap @name (not persistent: it lives while a process holds it open) with the virtio-net
 * header and no offloads, as vdi-vmm wants it; *out gets the open file (O_CLOEXEC; the caller
 * owns it). Returns 0 or -errno. */
int srv__tap_create(const char *name, int *out);

/* ---- net-tc.c: a desktop's bandwidth cap ---------------------------------------------------- */
/* Cap what tap @tap sends to the desktop and what the desktop sends at @bps bits/s each, with
 * tc(8): a token bucket on the tap, and the tap's ingress redirected through ifb device @ifb
 * with a token bucket of its own. 0, or a negative code with tc's message in @why. Any thread. */
int srv__tc_cap(const char *tap, const char *ifb, uint64_t bps, char *why, size_t whylen);
/* The ifb name that goes with @tap ("vdq..." for "vdt..."). */
void srv__tc_ifb_name(const char *tap, char out[BRK_NET_IFNAMSIZ]);

/* ---- net-nft.c: the nftables rules (libnftables) -------------------------------------------- */
/* One pool's network as the rules see it. */
struct srv_netpool {
    char name[64];
    brk_net_mode_t mode;
    char bridge[BRK_NET_IFNAMSIZ]; /* nat: vdid's bridge; bridge: the admin's */
    uint32_t subnet, prefix;       /* nat */
    bool isolate, allow_host;
    uint16_t vlan;
};
/* One desktop's port, as the rules see it. */
struct srv_netport {
    char tap[BRK_NET_IFNAMSIZ];
    char mac[BRK_NET_MAC_LEN];
    char ip[BRK_NET_IP_LEN]; /* "" when vdid does not give the address (bridge pools) */
    bool allow_host;
};
/* The whole ruleset of instance @table ("vdi_XXXXXXXX") for @n pools (and nat's uplink
 * @uplink, NULL: any), the ports of running desktops included; replaces whatever the tables held,
 * in one transaction. @n 0: the tables are removed. */
int srv__nft_apply(const char *table, const struct srv_netpool *pools, size_t n, const char *uplink,
                   const struct srv_netport *ports, size_t n_ports, char *why, size_t whylen);
int srv__nft_port_add(const char *table, const struct srv_netport *p, char *why, size_t whylen);
void srv__nft_port_del(const char *table, const struct srv_netport *p); /* what is there */

/* ---- net-dnsmasq.c: a nat pool's DHCP and DNS ----------------------------------------------- */
typedef struct srv_dnsmasq srv_dnsmasq_t; /* loop thread */
struct srv_dnsmasq_spec {
    const char *program, *pool, *bridge;
    uint32_t subnet, prefix;         /* host order */
    const char *hostsdir;            /* one "MAC,IP" file per desktop */
    const char *leasefile, *pidfile; /* the pid file also finds an earlier vdid's instance */
};
/* Start (and keep running: restarted with a back-off if it exits) dnsmasq for one pool, after
 * stopping the one an earlier vdid left (found by its pid file). Returns 0 or a negative code
 * with the reason in @why. */
int srv__dnsmasq_start(uv_loop_t *loop, const struct srv_dnsmasq_spec *spec, srv_dnsmasq_t **out,
                       char *why, size_t whylen);
void srv__dnsmasq_reload(srv_dnsmasq_t *d); /* SIGHUP: re-read the hosts (a desktop left) */
/* Stop following it; @kill: stop the process too (its pool is gone), else it keeps serving the
 * desktops while vdid restarts. Frees @d. NULL is fine. */
void srv__dnsmasq_close(srv_dnsmasq_t *d, bool kill);
/* Stop the instance an earlier vdid left for a pool that no longer exists (by its pid file). */
void srv__dnsmasq_kill_stale(const char *pidfile);

#endif
