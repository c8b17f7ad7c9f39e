/* server/listen.c: what vdid's TCP listeners (the RFB gateway, the web portal) share: turning a
 * configured "HOST:PORT" or "[V6]:PORT" into a socket address (vdi_hostport_addr(), the reading
 * the config check uses too), and reading back the bound port. */
#define VDI_LOG_TAG "vdid"
#include <arpa/inet.h>

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
