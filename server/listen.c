/* server/listen.c: what vdid's TCP listeners (the RFB gateway, the web portal) share: turning a
 * configured "HOST:PORT" or "[V6]:PORT" into a socket address, and reading back the bound port. */
#define VDI_LOG_TAG "vdid"
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"
#include "server/internal.h"

int srv__listen_addr(const char *key, const char *listen, struct sockaddr_storage *ss, char *host,
                     size_t hostlen)
{
    /* The config parser checked the form; only the address itself is left to check here. */
    const char *colon = strrchr(listen, ':');
    if (!colon) {
        VDI_LOG_ERR("%s=%s: not HOST:PORT", key, listen);
        return VDI_ECONFIG;
    }
    size_t hl = (size_t)(colon - listen);
    const char *h = listen;
    if (h[0] == '[' && hl >= 2) {
        h++;
        hl -= 2;
    }
    snprintf(host, hostlen, "%.*s", (int)hl, h);
    int port = atoi(colon + 1);
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) != 0) {
        VDI_LOG_ERR("%s=%s: '%s' is not an IPv4 or IPv6 address", key, listen, host);
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
