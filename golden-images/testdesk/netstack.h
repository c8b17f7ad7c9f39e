/* golden-images/testdesk/netstack.h: a minimal IPv4 stack for a test guest (prefix `ns_`): ARP,
 * a DHCP client, ICMP echo (answering, and pinging), a UDP echo service on port 7, a TCP SYN
 * probe, raw UDP sends (also with a forged source, for the anti-spoofing tests) and one awaited
 * UDP reply at a time (the patch agent's `fetch`, ns_fetch_start). It works on
 * whole Ethernet frames through one callback and keeps no clock of its own, so that the same code
 * runs freestanding in testdesk and hosted in vdid's stand-in VMM (tests/tools/vdid_fakevmm.c),
 * where it drives a real tap on a real bridge.
 *
 * Not thread-safe: one caller at a time. Needs memcpy, memset, memcmp and strlen.
 */
#ifndef VDI_TESTDESK_NETSTACK_H
#define VDI_TESTDESK_NETSTACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NS_ARP_SLOTS   16
#define NS_FRAME_MAX   1514
#define NS_REPLY_MAX   2048  /* bytes of an awaited UDP reply kept (ns_fetch_start) */
#define NS_FETCH_SPORT 40007 /* our port for `fetch` */

typedef void (*ns_tx_fn)(void *ctx, const void *frame, size_t len);

enum ns_tcp_result {
    NS_TCP_PENDING = 0,
    NS_TCP_OPEN,
    NS_TCP_CLOSED
};

struct ns_arp {
    uint32_t ip;
    uint8_t mac[6];
    bool valid;
};

struct netstack {
    uint8_t mac[6];
    ns_tx_fn tx;
    void *ctx;
    /* DHCP: 0 idle, 1 discovering, 2 requesting, 3 bound */
    int dhcp;
    uint32_t xid, offered, server;
    uint64_t dhcp_next_ms, renew_ms;
    uint32_t ip, mask, gw, dns, lease_s; /* host byte order */
    struct ns_arp arp[NS_ARP_SLOTS];
    unsigned arp_next;
    /* One frame waiting for its next hop's MAC. */
    uint8_t pend[NS_FRAME_MAX];
    size_t pend_len;
    uint32_t pend_hop;
    /* The ping and TCP probe in flight (one each). */
    uint32_t ping_ip;
    uint16_t ping_seq;
    bool ping_answered;
    uint32_t tcp_ip;
    uint16_t tcp_port, tcp_sport;
    enum ns_tcp_result tcp_result;
    uint8_t tcp_flags; /* of the answer */
    /* The UDP reply awaited (ns_fetch_start): from reply_ip:reply_sport to our NS_FETCH_SPORT. */
    uint32_t reply_ip;
    uint16_t reply_sport;
    bool reply_waiting, reply_ready;
    size_t reply_len; /* its full length (more than NS_REPLY_MAX: only that much was kept) */
    uint8_t reply[NS_REPLY_MAX];
    uint32_t rx_frames, tx_frames, udp_echoed, icmp_echoed;
};

void ns_init(struct netstack *ns, const uint8_t mac[6], ns_tx_fn tx, void *ctx);
/* A frame from the wire. */
void ns_rx(struct netstack *ns, const void *frame, size_t len, uint64_t now_ms);
/* Timers: DHCP (re)transmits and renewal. Call often (every 100 ms or so). */
void ns_tick(struct netstack *ns, uint64_t now_ms);
bool ns_bound(const struct netstack *ns);
/* Send an ICMP echo request to @ip; ping_answered turns true when its reply comes. */
void ns_ping(struct netstack *ns, uint32_t ip);
/* Send a TCP SYN to @ip:@port; tcp_result tells what came back (nothing: PENDING). */
void ns_tcp_probe(struct netstack *ns, uint32_t ip, uint16_t port);
/* Send a UDP datagram; @src_ip (0: ours) and @src_mac (NULL: ours) forge the source. */
void ns_udp_send(struct netstack *ns, uint32_t ip, uint16_t dport, uint16_t sport, const void *data,
                 size_t len, uint32_t src_ip, const uint8_t *src_mac);
/* Send "GET @name\n" to @ip:@port from port NS_FETCH_SPORT and await one reply from there:
 * reply_ready turns true with its bytes in reply[] (reply_len). A later call forgets an earlier
 * reply. */
void ns_fetch_start(struct netstack *ns, uint32_t ip, uint16_t port, const char *name);
/* "a.b.c.d" of @ip into @out (16 bytes); returns @out. */
char *ns_ip_str(uint32_t ip, char *out);
/* Parse "a.b.c.d"; 0 on success, -1 otherwise. */
int ns_ip_parse(const char *s, uint32_t *out);

#endif
