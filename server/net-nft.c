/* server/net-nft.c: the nftables rules that keep desktops apart, honest and away from the host,
 * and NAT for nat pools, in three tables of vdid's own (one per family, all named vdi_XXXXXXXX
 * after the instance) so that they never touch an admin's rules. The rules (docs/network.md):
 *
 *   bridge: every frame from a desktop's tap must carry that desktop's MAC (also as the ARP
 *           sender) and its own address (0.0.0.0 only to ask DHCP): in nat pools the one vdid
 *           gave it, in bridge pools the one the LAN's DHCP gave it (learned from the DHCP answer
 *           on its way to the tap, for that tap's MAC); desktops send no DHCP answers; nat
 *           desktops send no IPv6. Frames from desktops are marked (BRK_NET_MARK), unless their pool
 *           allows the host.
 *   inet:   a marked packet for the host itself is dropped, except replies, DHCP, DNS and ping
 *           to a nat pool's own gateway; nat pools' bridges do not route to each other.
 *   ip:     nat pools are masqueraded out of the uplink.
 * Desktop-to-desktop isolation is the bridge's own port isolation (net-link.c). Ports come and go
 * as set elements, so a desktop's start or end changes a few elements, not the ruleset.
 */
#define VDI_LOG_TAG "net"
#include <errno.h>
#include <nftables/libnftables.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "server/net-internal.h"

static pthread_mutex_t nft_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nft_ctx *nft; /* under nft_lock; made on first use, kept for the process */

/* Run @cmds in one transaction. 0, or -EIO with nft's first error line in @why. */
static int run(const char *cmds, char *why, size_t whylen)
{
    int rc = 0;
    pthread_mutex_lock(&nft_lock);
    if (!nft) {
        nft = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!nft) {
            pthread_mutex_unlock(&nft_lock);
            snprintf(why, whylen, "nftables: cannot make a context");
            return -ENOMEM;
        }
        nft_ctx_buffer_output(nft);
        nft_ctx_buffer_error(nft);
    }
    if (nft_run_cmd_from_buffer(nft, cmds) != 0) {
        const char *e = nft_ctx_get_error_buffer(nft);
        size_t len = e ? strcspn(e, "\n") : 0;
        snprintf(why, whylen, "nftables: %.*s", (int)len, e ? e : "failed");
        rc = -EIO;
    } else {
        nft_ctx_get_error_buffer(nft); /* reading a buffer empties it */
    }
    nft_ctx_get_output_buffer(nft);
    pthread_mutex_unlock(&nft_lock);
    return rc;
}

static void port_elements(vdi_buf_t *b, const char *verb, const char *table,
                          const struct srv_netport *p)
{
    char raw[16];
    size_t k = 0;
    for (const char *c = p->mac; *c && k < sizeof(raw) - 1; c++)
        if (*c != ':')
            raw[k++] = *c;
    raw[k] = 0;
    vdi_buf_printf(b, "%s element bridge %s taps { \"%s\" }\n", verb, table, p->tap);
    vdi_buf_printf(b, "%s element bridge %s mac_ok { \"%s\" . %s }\n", verb, table, p->tap, p->mac);
    if (p->ip[0]) {
        vdi_buf_printf(b, "%s element bridge %s taps_ip { \"%s\" }\n", verb, table, p->tap);
        vdi_buf_printf(b, "%s element bridge %s ip_ok { \"%s\" . %s }\n", verb, table, p->tap,
                       p->ip);
    } else {
        /* The address comes from the organisation's DHCP: learned from its answers. */
        vdi_buf_printf(b, "%s element bridge %s taps_learn { \"%s\" }\n", verb, table, p->tap);
        vdi_buf_printf(b, "%s element bridge %s mac_raw { \"%s\" . 0x%s }\n", verb, table, p->tap,
                       raw);
    }
    if (p->allow_host)
        vdi_buf_printf(b, "%s element bridge %s taps_host { \"%s\" }\n", verb, table, p->tap);
}

static void drop_tables(vdi_buf_t *b, const char *table)
{
    /* "add" is a no-op on a table that exists, so the delete never fails. */
    static const char *const fams[] = {"bridge", "inet", "ip"};
    for (size_t i = 0; i < VDI_ARRAY_SIZE(fams); i++)
        vdi_buf_printf(b, "add table %s %s\ndelete table %s %s\n", fams[i], table, fams[i], table);
}

int srv__nft_apply(const char *table, const struct srv_netpool *pools, size_t n, const char *uplink,
                   const struct srv_netport *ports, size_t n_ports, char *why, size_t whylen)
{
    vdi_buf_t b = VDI_BUF_INIT;
    drop_tables(&b, table);
    size_t n_nat = 0;
    for (size_t i = 0; i < n; i++)
        n_nat += pools[i].mode == BRK_NET_NAT;
    if (n) {
        vdi_buf_printf(
            &b,
            "table bridge %s {\n"
            "  set taps { type ifname; }\n"
            "  set taps_ip { type ifname; }\n"
            "  set taps_host { type ifname; }\n"
            "  set mac_ok { type ifname . ether_addr; }\n"
            "  set ip_ok { type ifname . ipv4_addr; }\n"
            "  set taps_learn { type ifname; }\n"
            "  set mac_raw { typeof oifname . @ih,224,48; }\n"
            "  set learned { typeof oifname . @ih,128,32; flags dynamic, timeout; "
            "timeout 30d; }\n"
            "  chain learn_leases {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            "    ether type ip udp sport 67 udp dport 68 oifname @taps_learn oifname . "
            "@ih,224,48 @mac_raw update @learned { oifname . @ih,128,32 } comment "
            "\"the LAN's DHCP gave this desktop that address\"\n"
            "  }\n"
            "  chain from_desktops {\n"
            "    type filter hook prerouting priority -300; policy accept;\n"
            "    iifname != @taps accept\n"
            "    iifname . ether saddr != @mac_ok counter drop comment \"forged MAC\"\n"
            "    ether type arp iifname . arp saddr ether != @mac_ok counter drop "
            "comment \"forged ARP sender MAC\"\n"
            "    ether type arp iifname @taps_ip arp saddr ip != 0.0.0.0 iifname . arp "
            "saddr ip != @ip_ok counter drop comment \"forged ARP sender address\"\n"
            "    ether type ip iifname @taps_ip ip saddr != 0.0.0.0 iifname . ip saddr "
            "!= @ip_ok counter drop comment \"forged source address\"\n"
            "    ether type ip iifname @taps_ip ip saddr 0.0.0.0 udp dport != 67 counter "
            "drop comment \"no address yet: DHCP only\"\n"
            "    ether type ip iifname @taps_ip ip saddr 0.0.0.0 meta l4proto != udp "
            "counter drop comment \"no address yet: DHCP only\"\n"
            "    ether type ip udp sport 67 counter drop comment \"desktops serve no "
            "DHCP\"\n"
            "    ether type arp iifname @taps_learn arp saddr ip != 0.0.0.0 iifname . "
            "@nh,112,32 != @learned counter drop comment \"ARP from an address the "
            "LAN's DHCP did not give\"\n"
            "    ether type ip iifname @taps_learn ip saddr != 0.0.0.0 iifname . "
            "@nh,96,32 != @learned counter drop comment \"an address the LAN's DHCP "
            "did not give\"\n"
            "    ether type ip6 iifname @taps_ip counter drop comment \"nat pools: no "
            "IPv6\"\n"
            "    iifname @taps_host accept\n"
            "    meta mark set meta mark | 0x%08x\n"
            "  }\n"
            "}\n",
            table, BRK_NET_MARK);
        vdi_buf_printf(&b, "table inet %s {\n  set nat_bridges { type ifname; ", table);
        if (n_nat) {
            vdi_buf_printf(&b, "elements = {");
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                if (pools[i].mode == BRK_NET_NAT)
                    vdi_buf_printf(&b, "%s \"%s\"", k++ ? "," : "", pools[i].bridge);
            vdi_buf_printf(&b, " }; ");
        }
        vdi_buf_printf(&b,
                       "}\n"
                       "  chain to_host {\n"
                       "    type filter hook input priority -10; policy accept;\n"
                       "    meta mark & 0x%08x == 0 accept\n"
                       "    ct state established,related accept\n"
                       "    iifname @nat_bridges udp dport { 53, 67 } accept\n"
                       "    iifname @nat_bridges tcp dport 53 accept\n"
                       "    iifname @nat_bridges icmp type echo-request accept\n"
                       "    counter drop comment \"desktops do not reach the host\"\n"
                       "  }\n"
                       "  chain between_pools {\n"
                       "    type filter hook forward priority -10; policy accept;\n",
                       BRK_NET_MARK);
        /* Frames bridged within one pool come through here too when the kernel passes bridged
         * traffic to the IP hooks (br_netfilter): only routing between bridges is dropped. */
        for (size_t i = 0; i < n; i++)
            if (pools[i].mode == BRK_NET_NAT)
                vdi_buf_printf(&b,
                               "    iifname \"%s\" oifname @nat_bridges oifname != \"%s\" counter "
                               "drop comment \"nat pools do not route to each other\"\n",
                               pools[i].bridge, pools[i].bridge);
        vdi_buf_printf(&b, "  }\n}\n");
        if (n_nat) {
            vdi_buf_printf(&b,
                           "table ip %s {\n  chain nat_out {\n    type nat hook postrouting "
                           "priority srcnat; policy accept;\n",
                           table);
            for (size_t i = 0; i < n; i++) {
                const struct srv_netpool *p = &pools[i];
                if (p->mode != BRK_NET_NAT)
                    continue;
                char net[BRK_NET_IP_LEN];
                brk_net_ip_str(p->subnet, net);
                if (uplink)
                    vdi_buf_printf(&b, "    ip saddr %s/%u oifname \"%s\" masquerade\n", net,
                                   p->prefix, uplink);
                else
                    vdi_buf_printf(&b, "    ip saddr %s/%u oifname != \"%s\" masquerade\n", net,
                                   p->prefix, p->bridge);
            }
            vdi_buf_printf(&b, "  }\n}\n");
        }
        for (size_t i = 0; i < n_ports; i++)
            port_elements(&b, "add", table, &ports[i]);
    }
    if (vdi_buf_append(&b, "", 1) < 0) {
        vdi_buf_free(&b);
        return -ENOMEM;
    }
    int rc = run((const char *)b.data, why, whylen);
    vdi_buf_free(&b);
    return rc;
}

int srv__nft_port_add(const char *table, const struct srv_netport *p, char *why, size_t whylen)
{
    vdi_buf_t b = VDI_BUF_INIT;
    port_elements(&b, "add", table, p);
    int rc = vdi_buf_append(&b, "", 1);
    if (rc == 0)
        rc = run((const char *)b.data, why, whylen);
    vdi_buf_free(&b);
    return rc;
}

void srv__nft_port_del(const char *table, const struct srv_netport *p)
{
    /* One element per transaction: an element that is not there (never added, or removed by an
     * earlier try) fails alone, and the others still go. */
    vdi_buf_t b = VDI_BUF_INIT;
    port_elements(&b, "delete", table, p);
    if (vdi_buf_append(&b, "", 1) < 0) {
        vdi_buf_free(&b);
        return;
    }
    char *line = (char *)b.data, *save = NULL, why[160];
    for (char *l = strtok_r(line, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        run(l, why, sizeof(why));
    vdi_buf_free(&b);
}
