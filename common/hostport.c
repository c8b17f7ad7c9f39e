/* common/hostport.c: listen addresses, "HOST:PORT" or "[IPv6]:PORT", as the config check and
 * vdid's listeners both read them, so that an address the config accepts is one vdid can bind.
 *
 * HOST is a numeric IPv4 address, a numeric IPv6 address in brackets, or "localhost" (bound as
 * 127.0.0.1). Other names are refused, not looked up: a listener binds a local address, DNS at
 * start-up would block and could answer differently from the config check a moment earlier.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/vdi.h"

static bool host_chars_ok(const char *h, size_t n, bool v6)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        bool ok = v6 ? isxdigit(c) || c == ':' || c == '.' : isalnum(c) || c == '.' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

int vdi_hostport_parse(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    if (!s)
        return -EINVAL;
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -EINVAL;
    const char *p = colon + 1;
    size_t digits = strspn(p, "0123456789");
    if (digits == 0 || p[digits] != '\0')
        return -EINVAL; /* no sign, no hex, no spaces, no service names */
    if (digits > 5)
        return -ERANGE;
    unsigned long v = strtoul(p, NULL, 10);
    if (v > 65535)
        return -ERANGE;

    const char *h = s;
    size_t hl = (size_t)(colon - s);
    bool v6 = s[0] == '[';
    if (v6) {
        /* "[V6]:PORT": the bracket closes right before the port's colon. */
        if (hl < 3 || s[hl - 1] != ']')
            return -EINVAL;
        h++;
        hl -= 2;
        if (!memchr(h, ':', hl))
            return -EINVAL; /* brackets are for IPv6 addresses only */
    }
    if (!host_chars_ok(h, hl, v6))
        return -EINVAL; /* an unbracketed IPv6 address lands here too (its colons) */
    if (hl >= hostlen)
        return -ENAMETOOLONG;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)v;
    return 0;
}

int vdi_hostport_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    if (strcasecmp(host, "localhost") == 0) {
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in4->sin_port = htons(port);
        return 0;
    }
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        return 0;
    }
    memset(ss, 0, sizeof(*ss));
    return -EINVAL;
}

int vdi_hostport_addr(const char *s, struct sockaddr_storage *ss, char *host, size_t hostlen)
{
    uint16_t port;
    int rc = vdi_hostport_parse(s, host, hostlen, &port);
    if (rc < 0)
        return rc;
    /* The parse already keeps each family in its place: a bracketed host holds a colon (so it
     * can only be IPv6), an unbracketed one holds none (so it cannot be). */
    return vdi_hostport_resolve(host, port, ss);
}
