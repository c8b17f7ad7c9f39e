// fuzz-srcs: golden-images/testdesk/netstack.c
// fuzz-libs:
/* libFuzzer target for golden-images/testdesk/netstack.c, the test guest's IPv4 stack: the input
 * is a run of Ethernet frames as a hostile network would send them ([len hi][len lo][frame]),
 * fed to a stack that is bound (it has an address, gateway and a ping and TCP probe in flight)
 * or still asking DHCP (the first byte chooses). Every frame it sends in answer must fit an
 * Ethernet frame, and carry our MAC as its source. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "golden-images/testdesk/netstack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t mac[6] = {0x02, 0x76, 0x64, 0x01, 0x02, 0x03};

static void tx(void *ctx, const void *frame, size_t len)
{
    (void)ctx;
    if (len < 60 || len > NS_FRAME_MAX || memcmp((const uint8_t *)frame + 6, mac, 6) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct netstack ns;
    if (size < 1)
        return 0;
    ns_init(&ns, mac, tx, NULL);
    uint64_t now = 0;
    if (data[0] & 1) {
        ns.dhcp = 3;
        ns.ip = 0x0ad50e02;
        ns.mask = 0xffffff00;
        ns.gw = 0x0ad50e01;
        ns.renew_ms = 1u << 30;
        ns_ping(&ns, 0x0ad50e03);
        ns_tcp_probe(&ns, 0x0a630002, 8080);
    }
    data++;
    size--;
    while (size >= 2) {
        size_t n = (size_t)data[0] << 8 | data[1];
        if (n > size - 2)
            n = size - 2;
        ns_rx(&ns, data + 2, n, now);
        now += 100;
        ns_tick(&ns, now);
        data += 2 + n;
        size -= 2 + n;
    }
    return 0;
}
