/* golden-images/testdesk/netstack.c: the minimal IPv4 stack of netstack.h. Frames are built in a
 * buffer on the stack and handed to the tx callback; everything is big-endian on the wire and
 * host order in struct netstack. RFC 826 (ARP), RFC 2131/2132 (DHCP), RFC 792 (ICMP), RFC 768
 * (UDP), RFC 9293 (TCP: the SYN and what answers it, nothing more).
 */
#if __STDC_HOSTED__
#include <string.h>
#else
#include "golden-images/testdesk/td.h"
#endif
#include "golden-images/testdesk/netstack.h"

#define ETH_IP   0x0800
#define ETH_ARP  0x0806
#define IP_ICMP  1
#define IP_TCP   6
#define IP_UDP   17
#define ETH_HLEN 14
#define IP_HLEN  20
#define UDP_HLEN 8
#define DHCP_LEN 240 /* the fixed part and the magic cookie */
#define BCAST    0xffffffffu

static const uint8_t bcast_mac[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += get16(p + i);
    if (len & 1)
        sum += (uint32_t)p[len - 1] << 8;
    return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

char *ns_ip_str(uint32_t ip, char *out)
{
    char *o = out;
    for (int i = 3; i >= 0; i--) {
        unsigned v = (ip >> (8 * i)) & 255;
        if (v >= 100)
            *o++ = (char)('0' + v / 100);
        if (v >= 10)
            *o++ = (char)('0' + v / 10 % 10);
        *o++ = (char)('0' + v % 10);
        if (i)
            *o++ = '.';
    }
    *o = 0;
    return out;
}

int ns_ip_parse(const char *s, uint32_t *out)
{
    uint32_t ip = 0;
    for (int part = 0; part < 4; part++) {
        unsigned v = 0, digits = 0;
        while (*s >= '0' && *s <= '9' && digits < 4) {
            v = v * 10 + (unsigned)(*s++ - '0');
            digits++;
        }
        if (!digits || v > 255 || (part < 3 && *s++ != '.'))
            return -1;
        ip = ip << 8 | v;
    }
    if (*s)
        return -1;
    *out = ip;
    return 0;
}

void ns_init(struct netstack *ns, const uint8_t mac[6], ns_tx_fn tx, void *ctx)
{
    memset(ns, 0, sizeof(*ns));
    memcpy(ns->mac, mac, 6);
    ns->tx = tx;
    ns->ctx = ctx;
    ns->xid = get32(mac + 2) ^ 0x5644490a;
    ns->dhcp = 1;
}

bool ns_bound(const struct netstack *ns)
{
    return ns->dhcp == 3;
}

static void send_frame(struct netstack *ns, uint8_t *f, size_t len)
{
    if (len < 60) { /* Ethernet's minimum, without the FCS */
        memset(f + len, 0, 60 - len);
        len = 60;
    }
    ns->tx_frames++;
    ns->tx(ns->ctx, f, len);
}

static void eth_hdr(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint16_t type)
{
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    put16(f + 12, type);
}

/* ---- ARP ------------------------------------------------------------------------------------ */
static const uint8_t *arp_lookup(const struct netstack *ns, uint32_t ip)
{
    for (int i = 0; i < NS_ARP_SLOTS; i++)
        if (ns->arp[i].valid && ns->arp[i].ip == ip)
            return ns->arp[i].mac;
    return 0;
}

static void arp_learn(struct netstack *ns, uint32_t ip, const uint8_t *mac)
{
    for (int i = 0; i < NS_ARP_SLOTS; i++)
        if (ns->arp[i].valid && ns->arp[i].ip == ip) {
            memcpy(ns->arp[i].mac, mac, 6);
            return;
        }
    struct ns_arp *a = &ns->arp[ns->arp_next++ % NS_ARP_SLOTS];
    a->ip = ip;
    memcpy(a->mac, mac, 6);
    a->valid = true;
}

static void arp_send(struct netstack *ns, uint16_t op, const uint8_t *tha, uint32_t tpa,
                     const uint8_t *eth_dst)
{
    uint8_t f[64];
    eth_hdr(f, eth_dst, ns->mac, ETH_ARP);
    uint8_t *a = f + ETH_HLEN;
    put16(a, 1);
    put16(a + 2, ETH_IP);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, op);
    memcpy(a + 8, ns->mac, 6);
    put32(a + 14, ns->ip);
    memcpy(a + 18, tha, 6);
    put32(a + 24, tpa);
    send_frame(ns, f, ETH_HLEN + 28);
}

/* ---- IPv4 ----------------------------------------------------------------------------------- */
/* Fill the IP header at @ip (payload @plen bytes follow) from @src to @dst. */
static void ip_hdr(uint8_t *ip, uint8_t proto, uint32_t src, uint32_t dst, size_t plen)
{
    static uint16_t id;
    memset(ip, 0, IP_HLEN);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(IP_HLEN + plen));
    put16(ip + 4, ++id);
    ip[8] = 64;
    ip[9] = proto;
    put32(ip + 12, src);
    put32(ip + 16, dst);
    put16(ip + 10, csum_fold(csum_add(0, ip, IP_HLEN)));
}

/* Send frame @f (IP packet to @dst from byte ETH_HLEN, @len bytes in all): to the broadcast
 * address as it is, else to the next hop's MAC, resolved first if need be (the frame waits in
 * the one pending slot). @src_mac: the Ethernet source (ours unless forged). */
static void ip_out(struct netstack *ns, uint8_t *f, size_t len, uint32_t dst,
                   const uint8_t *src_mac)
{
    if (dst == BCAST) {
        eth_hdr(f, bcast_mac, src_mac, ETH_IP);
        send_frame(ns, f, len);
        return;
    }
    uint32_t hop = (ns->mask && (dst & ns->mask) != (ns->ip & ns->mask)) ? ns->gw : dst;
    const uint8_t *mac = arp_lookup(ns, hop);
    eth_hdr(f, mac ? mac : bcast_mac, src_mac, ETH_IP);
    if (mac) {
        send_frame(ns, f, len);
        return;
    }
    if (len <= sizeof(ns->pend)) {
        memcpy(ns->pend, f, len);
        ns->pend_len = len;
        ns->pend_hop = hop;
    }
    static const uint8_t zero[6];
    arp_send(ns, 1, zero, hop, bcast_mac);
}

static void udp_out(struct netstack *ns, uint32_t src, const uint8_t *src_mac, uint32_t dst,
                    uint16_t sport, uint16_t dport, const void *data, size_t len)
{
    uint8_t f[NS_FRAME_MAX];
    if (len > sizeof(f) - ETH_HLEN - IP_HLEN - UDP_HLEN)
        return;
    uint8_t *ip = f + ETH_HLEN, *u = ip + IP_HLEN;
    put16(u, sport);
    put16(u + 2, dport);
    put16(u + 4, (uint16_t)(UDP_HLEN + len));
    put16(u + 6, 0); /* no checksum: allowed over IPv4 */
    memcpy(u + UDP_HLEN, data, len);
    ip_hdr(ip, IP_UDP, src, dst, UDP_HLEN + len);
    ip_out(ns, f, ETH_HLEN + IP_HLEN + UDP_HLEN + len, dst, src_mac);
}

void ns_fetch_start(struct netstack *ns, uint32_t ip, uint16_t port, const char *name)
{
    uint8_t req[4 + 200 + 1];
    size_t n = strlen(name);
    if (n > 200)
        n = 200;
    memcpy(req, "GET ", 4);
    memcpy(req + 4, name, n);
    req[4 + n] = '\n';
    ns->reply_ip = ip;
    ns->reply_sport = port;
    ns->reply_waiting = true;
    ns->reply_ready = false;
    ns->reply_len = 0;
    udp_out(ns, ns->ip, ns->mac, ip, NS_FETCH_SPORT, port, req, 5 + n);
}

void ns_udp_send(struct netstack *ns, uint32_t ip, uint16_t dport, uint16_t sport, const void *data,
                 size_t len, uint32_t src_ip, const uint8_t *src_mac)
{
    udp_out(ns, src_ip ? src_ip : ns->ip, src_mac ? src_mac : ns->mac, ip, sport, dport, data, len);
}

static void icmp_echo(struct netstack *ns, uint8_t type, uint32_t dst, uint16_t id, uint16_t seq,
                      const uint8_t *data, size_t len)
{
    uint8_t f[NS_FRAME_MAX];
    if (len > sizeof(f) - ETH_HLEN - IP_HLEN - 8)
        return;
    uint8_t *ip = f + ETH_HLEN, *c = ip + IP_HLEN;
    c[0] = type;
    c[1] = 0;
    put16(c + 2, 0);
    put16(c + 4, id);
    put16(c + 6, seq);
    memcpy(c + 8, data, len);
    put16(c + 2, csum_fold(csum_add(0, c, 8 + len)));
    ip_hdr(ip, IP_ICMP, ns->ip, dst, 8 + len);
    ip_out(ns, f, ETH_HLEN + IP_HLEN + 8 + len, dst, ns->mac);
}

void ns_ping(struct netstack *ns, uint32_t ip)
{
    static const uint8_t data[] = "vdi testdesk ping";
    ns->ping_ip = ip;
    ns->ping_seq++;
    ns->ping_answered = false;
    icmp_echo(ns, 8, ip, 0x7664, ns->ping_seq, data, sizeof(data));
}

void ns_tcp_probe(struct netstack *ns, uint32_t ip, uint16_t port)
{
    uint8_t f[80];
    uint8_t *iph = f + ETH_HLEN, *t = iph + IP_HLEN;
    ns->tcp_ip = ip;
    ns->tcp_port = port;
    /* A source port and sequence number of this NIC's own, so that guests behind one NAT do not
     * all start from the same ones. */
    uint32_t seed = get32(ns->mac + 2);
    ns->tcp_sport = (uint16_t)(32768 + (seed + ns->tcp_sport + 1) % 28000);
    ns->tcp_result = NS_TCP_PENDING;
    memset(t, 0, 20);
    put16(t, ns->tcp_sport);
    put16(t + 2, port);
    put32(t + 4, seed * 2654435761u + port);
    t[12] = 5 << 4;
    t[13] = 0x02; /* SYN */
    put16(t + 14, 8192);
    uint8_t pseudo[12];
    put32(pseudo, ns->ip);
    put32(pseudo + 4, ip);
    pseudo[8] = 0;
    pseudo[9] = IP_TCP;
    put16(pseudo + 10, 20);
    put16(t + 16, csum_fold(csum_add(csum_add(0, pseudo, 12), t, 20)));
    ip_hdr(iph, IP_TCP, ns->ip, ip, 20);
    ip_out(ns, f, ETH_HLEN + IP_HLEN + 20, ip, ns->mac);
}

/* ---- DHCP ----------------------------------------------------------------------------------- */
static void dhcp_send(struct netstack *ns, uint8_t type)
{
    uint8_t m[DHCP_LEN + 32];
    memset(m, 0, sizeof(m));
    m[0] = 1; /* BOOTREQUEST */
    m[1] = 1;
    m[2] = 6;
    put32(m + 4, ns->xid);
    put16(m + 10, 0x8000); /* answer by broadcast: we have no address yet */
    memcpy(m + 28, ns->mac, 6);
    put32(m + 236, 0x63825363);
    size_t o = DHCP_LEN;
    m[o++] = 53;
    m[o++] = 1;
    m[o++] = type;
    if (type == 3) { /* REQUEST */
        m[o++] = 50;
        m[o++] = 4;
        put32(m + o, ns->offered);
        o += 4;
        m[o++] = 54;
        m[o++] = 4;
        put32(m + o, ns->server);
        o += 4;
    }
    m[o++] = 55; /* what we want to know */
    m[o++] = 3;
    m[o++] = 1;
    m[o++] = 3;
    m[o++] = 6;
    m[o++] = 255;
    udp_out(ns, 0, ns->mac, BCAST, 68, 67, m, o);
}

static void dhcp_rx(struct netstack *ns, const uint8_t *m, size_t len, uint64_t now)
{
    if (len < DHCP_LEN || m[0] != 2 || get32(m + 4) != ns->xid || memcmp(m + 28, ns->mac, 6) ||
        get32(m + 236) != 0x63825363)
        return;
    uint8_t type = 0;
    uint32_t mask = 0, router = 0, dns = 0, server = 0, lease = 600;
    for (size_t o = DHCP_LEN; o < len && m[o] != 255;) {
        if (m[o] == 0) {
            o++;
            continue;
        }
        if (o + 2 > len || o + 2 + m[o + 1] > len)
            break;
        const uint8_t *v = m + o + 2;
        uint8_t l = m[o + 1];
        if (m[o] == 53 && l >= 1)
            type = v[0];
        else if (m[o] == 1 && l >= 4)
            mask = get32(v);
        else if (m[o] == 3 && l >= 4)
            router = get32(v);
        else if (m[o] == 6 && l >= 4)
            dns = get32(v);
        else if (m[o] == 54 && l >= 4)
            server = get32(v);
        else if (m[o] == 51 && l >= 4)
            lease = get32(v);
        o += 2u + l;
    }
    if (type == 2 && ns->dhcp == 1) { /* OFFER */
        ns->offered = get32(m + 16);
        ns->server = server;
        ns->dhcp = 2;
        dhcp_send(ns, 3);
        ns->dhcp_next_ms = now + 1000;
    } else if (type == 5 && ns->dhcp >= 2) { /* ACK */
        ns->ip = get32(m + 16);
        ns->mask = mask;
        ns->gw = router;
        ns->dns = dns;
        ns->lease_s = lease;
        ns->dhcp = 3;
        ns->renew_ms = now + (uint64_t)lease * 500;
    } else if (type == 6) { /* NAK: start again */
        ns->dhcp = 1;
        ns->dhcp_next_ms = now;
    }
}

void ns_tick(struct netstack *ns, uint64_t now)
{
    if (ns->dhcp == 3 && now >= ns->renew_ms) {
        ns->dhcp = 2; /* renew: ask for the same address again */
        ns->offered = ns->ip;
        ns->dhcp_next_ms = now;
    }
    if ((ns->dhcp == 1 || ns->dhcp == 2) && now >= ns->dhcp_next_ms) {
        dhcp_send(ns, ns->dhcp == 1 ? 1 : 3);
        ns->dhcp_next_ms = now + 1000;
    }
}

/* ---- receive -------------------------------------------------------------------------------- */
static void rx_arp(struct netstack *ns, const uint8_t *a, size_t len)
{
    if (len < 28 || get16(a) != 1 || get16(a + 2) != ETH_IP)
        return;
    uint16_t op = get16(a + 6);
    uint32_t spa = get32(a + 14), tpa = get32(a + 24);
    if (spa)
        arp_learn(ns, spa, a + 8);
    if (op == 1 && ns->ip && tpa == ns->ip)
        arp_send(ns, 2, a + 8, spa, a + 8);
    if (ns->pend_len && spa == ns->pend_hop) {
        memcpy(ns->pend, a + 8, 6);
        size_t l = ns->pend_len;
        ns->pend_len = 0;
        send_frame(ns, ns->pend, l);
    }
}

static void rx_ip(struct netstack *ns, const uint8_t *ip, size_t len, uint64_t now)
{
    if (len < IP_HLEN || (ip[0] >> 4) != 4)
        return;
    size_t hl = (size_t)(ip[0] & 15) * 4, tot = get16(ip + 2);
    if (hl < IP_HLEN || tot < hl || tot > len)
        return;
    uint32_t src = get32(ip + 12), dst = get32(ip + 16);
    const uint8_t *p = ip + hl;
    size_t plen = tot - hl;
    if (ip[9] == IP_UDP && plen >= UDP_HLEN) {
        uint16_t sport = get16(p), dport = get16(p + 2), ulen = get16(p + 4);
        if (ulen < UDP_HLEN || ulen > plen)
            return;
        if (dport == 68)
            dhcp_rx(ns, p + UDP_HLEN, ulen - UDP_HLEN, now);
        else if (dport == 7 && ns->ip && dst == ns->ip) {
            ns->udp_echoed++;
            udp_out(ns, ns->ip, ns->mac, src, 7, sport, p + UDP_HLEN, ulen - UDP_HLEN);
        } else if (dport == NS_FETCH_SPORT && ns->reply_waiting && ns->ip && dst == ns->ip &&
                   src == ns->reply_ip && sport == ns->reply_sport) {
            size_t n = ulen - UDP_HLEN;
            memcpy(ns->reply, p + UDP_HLEN, n < NS_REPLY_MAX ? n : NS_REPLY_MAX);
            ns->reply_len = n;
            ns->reply_waiting = false;
            ns->reply_ready = true;
        }
        return;
    }
    if (!ns->ip || dst != ns->ip)
        return;
    if (ip[9] == IP_ICMP && plen >= 8) {
        if (p[0] == 8) {
            ns->icmp_echoed++;
            icmp_echo(ns, 0, src, get16(p + 4), get16(p + 6), p + 8, plen - 8);
        } else if (p[0] == 0 && src == ns->ping_ip && get16(p + 6) == ns->ping_seq) {
            ns->ping_answered = true;
        }
    } else if (ip[9] == IP_TCP && plen >= 20 && src == ns->tcp_ip && get16(p) == ns->tcp_port &&
               get16(p + 2) == ns->tcp_sport) {
        uint8_t flags = p[13];
        ns->tcp_flags = flags;
        if ((flags & 0x12) == 0x12)
            ns->tcp_result = NS_TCP_OPEN;
        else if (flags & 0x04)
            ns->tcp_result = NS_TCP_CLOSED;
    }
}

void ns_rx(struct netstack *ns, const void *frame, size_t len, uint64_t now)
{
    const uint8_t *f = frame;
    if (len < ETH_HLEN)
        return;
    if (memcmp(f, ns->mac, 6) && memcmp(f, bcast_mac, 6))
        return; /* not for us (multicast included) */
    ns->rx_frames++;
    uint16_t type = get16(f + 12);
    if (type == ETH_ARP)
        rx_arp(ns, f + ETH_HLEN, len - ETH_HLEN);
    else if (type == ETH_IP)
        rx_ip(ns, f + ETH_HLEN, len - ETH_HLEN, now);
}
