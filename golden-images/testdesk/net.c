/* golden-images/testdesk/net.c: virtio-net (virtio 1.2 §5.1) under the test guest's IPv4 stack
 * (netstack.c): MAC and STATUS only, no offloads, so every frame carries the plain 12-byte header.
 * Receive keeps RX_BUFS buffers posted; transmit sends one frame at a time and waits for it. The
 * stack gets a lease by DHCP at start; once bound, testdesk prints "testdesk: net lease ..." and
 * shows the address on screen, and answers ping and UDP echo (port 7) from the desktop loop.
 * Commands: `net-ping IP|gw` and `net-udp IP PORT TEXT`; the patch agent's `fetch` (patch.h) is
 * td_net_fetch(). */
#include "golden-images/testdesk/desk.h"
#include "golden-images/testdesk/netstack.h"

#define VIRTIO_NET_F_MAC (1ULL << 5)
#define HDR              12
#define BUF              (HDR + NS_FRAME_MAX)
#define RX_BUFS          8
#define TX_TIMEOUT_US    1000000

static struct td_virtio nic;
static bool present, shown;
static uint8_t *rx_bufs, *tx_buf;
static struct netstack ns;

bool td_have_net(void)
{
    return present;
}

static void tx(void *ctx, const void *frame, size_t len)
{
    (void)ctx;
    struct td_vq *q = &nic.vq[1];
    if (len > NS_FRAME_MAX)
        return;
    memset(tx_buf, 0, HDR);
    memcpy(tx_buf + HDR, frame, len);
    uint64_t a = (uint64_t)(uintptr_t)tx_buf;
    uint32_t l = (uint32_t)(HDR + len);
    bool w = false;
    if (!td_vq_post(q, &a, &l, &w, 1))
        return;
    td_vq_kick(q);
    uint16_t head;
    uint32_t got;
    if (td_vq_wait(q, TX_TIMEOUT_US))
        td_vq_take(q, &head, &got);
}

void td_net_probe(const struct td_pci_dev *d)
{
    if (present) {
        td_printf("testdesk: virtio-net %02x:%02x.%x not used (one NIC already)\n", d->bus, d->dev,
                  d->fn);
        return;
    }
    if (td_virtio_init(&nic, d, "virtio-net", VIRTIO_NET_F_MAC, 2, 16) < 0)
        return;
    rx_bufs = td_alloc((uint64_t)BUF * RX_BUFS, 64);
    tx_buf = td_alloc(BUF, 64);
    if (!nic.devcfg || !rx_bufs || !tx_buf || !(nic.features & VIRTIO_NET_F_MAC)) {
        td_printf("TESTDESK FAIL virtio-net %s\n", !nic.devcfg ? "no device config"
                                                   : !(nic.features & VIRTIO_NET_F_MAC)
                                                       ? "no MAC offered"
                                                       : "out of memory");
        return;
    }
    uint8_t mac[6];
    for (int i = 0; i < 6; i++)
        mac[i] = rd8(nic.devcfg + (uint64_t)i);
    for (unsigned i = 0; i < RX_BUFS; i++) {
        uint64_t a = (uint64_t)(uintptr_t)(rx_bufs + (uint64_t)i * BUF);
        uint32_t l = BUF;
        bool w = true;
        td_vq_post(&nic.vq[0], &a, &l, &w, 1);
    }
    td_virtio_driver_ok(&nic);
    td_vq_kick(&nic.vq[0]);
    ns_init(&ns, mac, tx, NULL);
    present = true;
    td_printf("testdesk: net mac=%02x:%02x:%02x:%02x:%02x:%02x\n", mac[0], mac[1], mac[2], mac[3],
              mac[4], mac[5]);
}

/* Receive what came, run the stack's timers; returns when the stack next wants to run (us). */
uint64_t td_net_poll(void)
{
    if (!present)
        return ~0ULL;
    struct td_vq *q = &nic.vq[0];
    uint16_t head;
    uint32_t len;
    uint64_t now_ms = td_now_us() / 1000;
    bool any = false;
    while (td_vq_take(q, &head, &len)) {
        const uint8_t *b = (const uint8_t *)(uintptr_t)nic.vq[0].desc[head].addr;
        if (len > HDR)
            ns_rx(&ns, b + HDR, len - HDR, now_ms);
        td_vq_repost(q, head);
        any = true;
    }
    if (any)
        td_vq_kick(q);
    ns_tick(&ns, now_ms);
    if (ns_bound(&ns) && !shown) {
        char ip[16], gw[16], line[80];
        td_printf("testdesk: net lease %s gw %s\n", ns_ip_str(ns.ip, ip), ns_ip_str(ns.gw, gw));
        td_snprintf(line, sizeof(line), "NET %s  GW %s", ip, gw);
        td_fb_net(line);
        shown = true;
    }
    /* While asking DHCP, every 100 ms; bound, once a second (the renewal timer). */
    return td_now_us() + (ns_bound(&ns) ? 1000000 : 100000);
}

static bool addr_arg(const char *s, uint32_t *ip)
{
    if (!strcmp(s, "gw")) {
        *ip = ns.gw;
        return ns.gw != 0;
    }
    return ns_ip_parse(s, ip) == 0;
}

/* Wait (10 s at most) for the lease; is there one? */
static bool lease_wait(void)
{
    for (uint64_t end = td_now_us() + 10000000; present && !ns_bound(&ns) && td_now_us() < end;) {
        td_vq_wait(&nic.vq[0], 100000);
        td_net_poll();
    }
    return present && ns_bound(&ns);
}

int td_net_fetch(void *ctx, const char *host, unsigned port, const char *name, void *buf,
                 size_t cap, size_t *len, char *why, size_t whylen)
{
    (void)ctx;
    uint32_t ip;
    if (!lease_wait()) {
        td_snprintf(why, whylen, "%s", present ? "no address from DHCP within 10 s" : "no NIC");
        return -1;
    }
    if (!addr_arg(host, &ip)) {
        td_snprintf(why, whylen, "not an address (nor gw)");
        return -1;
    }
    for (int t = 0; t < 3; t++) {
        ns_fetch_start(&ns, ip, (uint16_t)port, name);
        uint64_t end = td_now_us() + 1000000;
        while (!ns.reply_ready && td_now_us() < end) {
            td_vq_wait(&nic.vq[0], 10000);
            td_net_poll();
        }
        if (ns.reply_ready) {
            size_t n = ns.reply_len < cap ? ns.reply_len : cap;
            memcpy(buf, ns.reply, n < NS_REPLY_MAX ? n : NS_REPLY_MAX);
            *len = ns.reply_len;
            return 0;
        }
    }
    td_snprintf(why, whylen, "no reply (three tries)");
    return -1;
}

void td_net_cmd(const char *op, int argc, char **argv)
{
    char detail[96], ip_s[16];
    uint32_t ip;
    uint64_t port;
    /* A command that comes before the lease waits for it (10 s at most). */
    if (!lease_wait()) {
        td_printf("TESTDESK FAIL net-%s %s\n", op, present ? "no address yet" : "no NIC");
        return;
    }
    if (!strcmp(op, "ping")) {
        if (argc < 2 || !addr_arg(argv[1], &ip)) {
            td_printf("TESTDESK FAIL net-ping usage: net-ping IP|gw\n");
            return;
        }
        for (int t = 0; t < 3 && !ns.ping_answered; t++) {
            ns_ping(&ns, ip);
            uint64_t end = td_now_us() + 1000000;
            while (!ns.ping_answered && td_now_us() < end) {
                td_vq_wait(&nic.vq[0], 10000);
                td_net_poll();
            }
        }
        td_snprintf(detail, sizeof(detail), "%s %s", ns_ip_str(ip, ip_s),
                    ns.ping_answered ? "answered" : "no reply");
        td_printf("TESTDESK %s net-ping %s\n", ns.ping_answered ? "OK" : "FAIL", detail);
    } else if (!strcmp(op, "udp")) {
        if (argc < 4 || !addr_arg(argv[1], &ip) || !td_parse_u64(argv[2], &port) || port > 65535) {
            td_printf("TESTDESK FAIL net-udp usage: net-udp IP PORT TEXT\n");
            return;
        }
        ns_udp_send(&ns, ip, (uint16_t)port, 40000, argv[3], strlen(argv[3]), 0, NULL);
        td_printf("TESTDESK OK net-udp %s %lu\n", ns_ip_str(ip, ip_s), port);
    } else {
        td_printf("TESTDESK FAIL command unknown command \"net-%s\"\n", op);
    }
}
