/* server/net-link.c: the kernel's network objects vdid makes for desktops, through rtnetlink and
 * the tun device (no ip(8) or bridge(8) processes): bridges, their address, taps, a port's
 * master, isolation flag and VLAN. Each call is one request and its acknowledgement on a netlink
 * socket of its own, so that any thread may call (vdid calls from the loop at start and from the
 * catalogue worker for each desktop).
 */
#define VDI_LOG_TAG "net"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/vdi.h"
#include "server/net-internal.h"

#define VNET_HDR_LEN 12 /* what vdi-vmm's virtio-net expects (vmm/virtio-net.c) */

struct req {
    struct nlmsghdr h;
    union {
        struct ifinfomsg ifi;
        struct ifaddrmsg ifa;
    };
    uint8_t buf[512];
};

static struct rtattr *attr_put(struct req *r, unsigned short type, const void *data, size_t len)
{
    size_t at = NLMSG_ALIGN(r->h.nlmsg_len), need = RTA_LENGTH(len);
    VDI_ASSERT(at + RTA_ALIGN(need) <= sizeof(*r));
    struct rtattr *a = (struct rtattr *)((uint8_t *)r + at);
    a->rta_type = type;
    a->rta_len = (unsigned short)need;
    if (len)
        memcpy(RTA_DATA(a), data, len);
    r->h.nlmsg_len = (uint32_t)(at + RTA_ALIGN(need));
    return a;
}

static void attr_end(struct req *r, struct rtattr *nest)
{
    nest->rta_len = (unsigned short)((uint8_t *)r + r->h.nlmsg_len - (uint8_t *)nest);
}

/* Send @r and wait for the kernel's acknowledgement: 0 or its -errno. Messages that come before
 * it (a GET's reply) go to @on_msg, when there is one. */
static int talk(struct req *r, void (*on_msg)(const struct nlmsghdr *h, void *ctx), void *ctx)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -errno;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    r->h.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    r->h.nlmsg_seq = 1;
    int rc;
    if (sendto(fd, r, r->h.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        goto out;
    }
    for (;;) {
        static _Thread_local uint8_t buf[32768];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto out;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_ERROR) {
                rc = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
                goto out;
            }
            if (on_msg)
                on_msg(h, ctx);
        }
    }
out:
    close(fd);
    return rc;
}

static void link_req(struct req *r, uint16_t type, uint16_t flags, int family, int index)
{
    memset(r, 0, sizeof(*r));
    r->h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
    r->h.nlmsg_type = type;
    r->h.nlmsg_flags = flags;
    r->ifi.ifi_family = (unsigned char)family;
    r->ifi.ifi_index = index;
}

int srv__link_index(const char *name)
{
    unsigned i = if_nametoindex(name);
    return i ? (int)i : -ENODEV;
}

struct link_info {
    char kind[32];
    bool vlan_filtering;
};

static void on_link(const struct nlmsghdr *h, void *ctx)
{
    struct link_info *li = ctx;
    if (h->nlmsg_type != RTM_NEWLINK)
        return;
    struct ifinfomsg *ifi = NLMSG_DATA(h);
    int len = (int)IFLA_PAYLOAD(h);
    for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if ((a->rta_type & NLA_TYPE_MASK) != IFLA_LINKINFO)
            continue;
        int l2 = (int)RTA_PAYLOAD(a);
        for (struct rtattr *b = RTA_DATA(a); RTA_OK(b, l2); b = RTA_NEXT(b, l2)) {
            if ((b->rta_type & NLA_TYPE_MASK) == IFLA_INFO_KIND) {
                snprintf(li->kind, sizeof(li->kind), "%.*s", (int)RTA_PAYLOAD(b),
                         (char *)RTA_DATA(b));
            } else if ((b->rta_type & NLA_TYPE_MASK) == IFLA_INFO_DATA) {
                int l3 = (int)RTA_PAYLOAD(b);
                for (struct rtattr *c = RTA_DATA(b); RTA_OK(c, l3); c = RTA_NEXT(c, l3))
                    if ((c->rta_type & NLA_TYPE_MASK) == IFLA_BR_VLAN_FILTERING &&
                        RTA_PAYLOAD(c) >= 1)
                        li->vlan_filtering = *(uint8_t *)RTA_DATA(c) != 0;
            }
        }
    }
}

/* Link @name's kind and, for a bridge, whether it filters VLANs: RTM_GETLINK, read from the
 * reply's IFLA_LINKINFO (netlink rather than /sys/class/net, which shows the namespace sysfs was
 * mounted in, not necessarily ours). 0, or -errno (-ENODEV: no such link). */
static int link_info(const char *name, struct link_info *li)
{
    int idx = srv__link_index(name);
    if (idx < 0)
        return idx;
    struct req r;
    link_req(&r, RTM_GETLINK, 0, AF_UNSPEC, idx);
    memset(li, 0, sizeof(*li));
    return talk(&r, on_link, li);
}

bool srv__link_is_bridge(const char *name)
{
    struct link_info li;
    return link_info(name, &li) == 0 && !strcmp(li.kind, "bridge");
}

bool srv__link_vlan_filtering(const char *bridge)
{
    struct link_info li;
    return link_info(bridge, &li) == 0 && !strcmp(li.kind, "bridge") && li.vlan_filtering;
}

int srv__link_add(const char *name, const char *kind)
{
    struct req r;
    link_req(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, AF_UNSPEC, 0);
    attr_put(&r, IFLA_IFNAME, name, strlen(name) + 1);
    struct rtattr *info = attr_put(&r, IFLA_LINKINFO, NULL, 0);
    attr_put(&r, IFLA_INFO_KIND, kind, strlen(kind));
    attr_end(&r, info);
    int rc = talk(&r, NULL, NULL);
    struct link_info li;
    if (rc == -EEXIST && link_info(name, &li) == 0 && !strcmp(li.kind, kind))
        return 0;
    return rc;
}

int srv__link_bridge_add(const char *name)
{
    return srv__link_add(name, "bridge");
}

int srv__link_del(const char *name)
{
    int idx = srv__link_index(name);
    if (idx < 0)
        return 0; /* gone already */
    struct req r;
    link_req(&r, RTM_DELLINK, 0, AF_UNSPEC, idx);
    int rc = talk(&r, NULL, NULL);
    return rc == -ENODEV ? 0 : rc;
}

int srv__link_up(const char *name)
{
    int idx = srv__link_index(name);
    if (idx < 0)
        return idx;
    struct req r;
    link_req(&r, RTM_NEWLINK, 0, AF_UNSPEC, idx);
    r.ifi.ifi_flags = IFF_UP;
    r.ifi.ifi_change = IFF_UP;
    return talk(&r, NULL, NULL);
}

int srv__link_set_master(const char *name, const char *bridge)
{
    int idx = srv__link_index(name), br = srv__link_index(bridge);
    if (idx < 0)
        return idx;
    if (br < 0)
        return br;
    struct req r;
    link_req(&r, RTM_NEWLINK, 0, AF_UNSPEC, idx);
    uint32_t m = (uint32_t)br;
    attr_put(&r, IFLA_MASTER, &m, sizeof(m));
    return talk(&r, NULL, NULL);
}

int srv__link_port_isolated(const char *name, bool on)
{
    int idx = srv__link_index(name);
    if (idx < 0)
        return idx;
    struct req r;
    link_req(&r, RTM_SETLINK, 0, AF_BRIDGE, idx);
    struct rtattr *p = attr_put(&r, IFLA_PROTINFO | NLA_F_NESTED, NULL, 0);
    uint8_t v = on;
    attr_put(&r, IFLA_BRPORT_ISOLATED, &v, 1);
    attr_end(&r, p);
    return talk(&r, NULL, NULL);
}

/* One VLAN entry on port @idx: add or delete. */
static int vlan_op(int idx, uint16_t type, uint16_t vid, uint16_t flags)
{
    struct req r;
    link_req(&r, type, 0, AF_BRIDGE, idx);
    struct rtattr *spec = attr_put(&r, IFLA_AF_SPEC, NULL, 0);
    struct bridge_vlan_info vi = {.flags = flags, .vid = vid};
    attr_put(&r, IFLA_BRIDGE_VLAN_INFO, &vi, sizeof(vi));
    attr_end(&r, spec);
    return talk(&r, NULL, NULL);
}

int srv__link_port_vlan(const char *name, uint16_t vid)
{
    int idx = srv__link_index(name);
    if (idx < 0)
        return idx;
    /* The port carries @vid alone, untagged towards the desktop: its frames get the tag. */
    int rc = vlan_op(idx, RTM_SETLINK, vid, BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED);
    if (rc < 0)
        return rc;
    rc = vlan_op(idx, RTM_DELLINK, 1, 0); /* the bridge's default VLAN */
    return rc == -ENOENT || rc == -EINVAL ? 0 : rc;
}

int srv__link_addr_add(const char *name, uint32_t ip, unsigned prefix)
{
    int idx = srv__link_index(name);
    if (idx < 0)
        return idx;
    struct req r;
    memset(&r, 0, sizeof(r));
    r.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
    r.h.nlmsg_type = RTM_NEWADDR;
    r.h.nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
    r.ifa.ifa_family = AF_INET;
    r.ifa.ifa_prefixlen = (unsigned char)prefix;
    r.ifa.ifa_index = (unsigned)idx;
    uint32_t be = htonl(ip), bc = htonl(ip | ~(~0u << (32 - prefix)));
    attr_put(&r, IFA_LOCAL, &be, 4);
    attr_put(&r, IFA_ADDRESS, &be, 4);
    attr_put(&r, IFA_BROADCAST, &bc, 4);
    int rc = talk(&r, NULL, NULL);
    return rc == -EEXIST ? 0 : rc;
}

int srv__tap_create(const char *name, int *out)
{
    struct ifreq ifr;
    int hdr = VNET_HDR_LEN;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    /* Not persistent: the tap lives as long as a process holds it open (vdid until the spawn,
     * then the VMM), so a VMM that ends, however it ends, takes its tap with it. Offloads off:
     * the VMM offers none to the guest. */
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
        ioctl(fd, TUNSETOFFLOAD, 0ul) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}
