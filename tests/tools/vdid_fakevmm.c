/* tests/tools/vdid_fakevmm.c: a stand-in for vdi-vmm in vdid's tests on machines without KVM. It
 * takes vdi-vmm's command line and runs vdi-vmm's own control server (vmm_control_*, vmm/vmm.h),
 * so the control socket speaks exactly the real protocol: the same replies, the same `status`
 * fields (`ready` included), the same events and the same exit statuses. Only the machine behind
 * it is pretend: a "guest" thread that becomes ready after a while and powers off when the power
 * button is pressed, and a libvncserver display on --display that paints the keys it receives.
 * Environment knobs, inherited through vdid:
 *   FAKEVMM_READY_MS=N        `booted` and `ready` N ms after start (default 100)
 *   FAKEVMM_NEVER_READY=1     never ready
 *   FAKEVMM_IGNORE_SHUTDOWN=1 a hung VMM: the guest ignores the power button and the machine does
 *                             not stop on quit or at the shutdown deadline (vdid must kill it)
 *   FAKEVMM_EXIT_MS=N         the guest crashes N ms after start (`crashed` event, exit status 4)
 *   FAKEVMM_NO_AGENT=1        the guest runs no guest agent (by default testdesk's agent is up
 *                             from `ready`: the `agent` event, heartbeats every testdesk.hb
 *                             seconds (default 5) in `status`, `message`s printed on stdout as
 *                             "TESTDESK MESSAGE secs=N bytes=B text=T" the way testdesk does)
 *   FAKEVMM_TRIGGERS=1        hostile acts on request, for the jail's tests: when a file named
 *                             `alloc` appears next to the control socket, allocate and touch
 *                             FAKEVMM_ALLOC_MB MiB (default 1024) in a loop; when `syscall`
 *                             appears, call mount(2), which no VMM may; when `peek` appears, try
 *                             to open each path it lists (one a line) and write what happened
 *                             to `peek.out` beside it
 *   FAKEVMM_NET=SCRIPT        with --net tapfd=N,mac=M (vdid's tap): a guest on that tap, on the
 *                             test guest's own stack (golden-images/testdesk/netstack.c), that
 *                             answers ARP, ping and UDP echo (port 7) and runs SCRIPT, actions
 *                             separated by ';', writing one line per result to stderr (the
 *                             desktop's vmm.log), each starting "fakevmm-net: ":
 *                               dhcp                  get a lease (10 s at most)
 *                               ping IP|gw            three tries, one second each
 *                               tcp IP|gw PORT        a SYN: open, closed or filtered (1 s)
 *                               udp IP PORT TEXT      send TEXT
 *                               spoof-mac IP PORT TEXT  ... from a MAC that is not ours
 *                               spoof-ip IP PORT TEXT SRC  ... from address SRC
 *                               scan FIRST-LAST       ping those hosts of our subnet (not us)
 *                               sleep MS
 *                               flood IP PORT MS      1000-byte datagrams ("FROM <our address> x...")
 *                                                     as fast as they go
 *                               count MS              frames received in the next MS
 *                             then "script done", and it goes on answering
 * Disks (--disk PATH[,ro], any number) are opened as vdi-vmm opens them (golden-images/, with its
 * locks: a disk another VMM writes is refused). The stand-in then does what testdesk does with
 * them (golden-images/testdesk/agent.c, on the same code, patch.c): it prints disk 0's data area
 * on stdout ("testdesk: file NAME size=N", "TESTDESK BANNER TEXT"), and when a read-only disk
 * holds a patch bundle it runs it as testdesk's patch agent (its output and "PATCH EXIT N" on
 * stdout, the data area written back to disk 0) and powers off. When the area holds a `crash`
 * file of MS milliseconds (an image version broken on purpose) it prints "TESTDESK CRASH in MS
 * ms", and MS ms after `ready` "TESTDESK CRASH now", and stops as FAKEVMM_EXIT_MS does (the
 * `crashed` event, exit status 4); as in testdesk, not in a maintenance VM (one with a bundle). A
 * `hang` file of MS milliseconds stops the guest agent MS ms after `ready` ("TESTDESK AGENT hang
 * now"), and VMM_AGENT_HB_MISSED heartbeat periods later the `agent-lost` event follows, as
 * vdi-vmm's watchdog would send it.
 *   FAKEVMM_FLOOD=1           the display does the RFB handshake itself (security None, a 0x0
 *                             ServerInit), then sends empty FramebufferUpdates (zero bytes) as
 *                             fast as the socket takes them: a source that never waits, for
 *                             tests of the gateway's backpressure
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <rfb/rfb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "golden-images/img.h"
#include "golden-images/testdesk/netstack.h"
#include "golden-images/testdesk/patch.h"

#include "vmm/vmm.h"

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static long long env_ms(const char *name, long long def)
{
    const char *v = getenv(name);
    return v ? atoll(v) : def;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    strcpy(sa.sun_path, path);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0)
        return -1;
    return fd;
}

/* ---- the pretend machine ---------------------------------------------------------------------- */
enum stop {
    STOP_NONE,
    STOP_POWEROFF,
    STOP_STOPPED,
    STOP_CRASHED
};

struct machine {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    vmm_control_t *ctl;
    int stop_fd;                                      /* eventfd: written once a stop is decided */
    long long start, ready_at, crash_at, poweroff_at; /* ms; -1: never */
    long long crash_after_ready;                      /* ms; -1: never (the `crash` file) */
    bool crash_on_request;                            /* crash_at comes from that file */
    bool hung, paused;
    enum stop stop;
    char why[128];
    /* The guest agent (docs/agent-protocol.md), as testdesk runs it: up from `ready`, stopped at
     * hang_at (the `hang` file), lost VMM_AGENT_HB_MISSED heartbeats later. */
    bool agent;                        /* the guest runs one (not with FAKEVMM_NO_AGENT) */
    unsigned hb_s;                     /* testdesk.hb on the command line, default 5 */
    long long agent_since, hang_after; /* ms; -1: not up yet / never */
    long long hang_at, lost_at;        /* ms; -1: never */
};

static void stop_locked(struct machine *m, enum stop how, const char *why)
{
    if (m->stop != STOP_NONE)
        return;
    m->stop = how;
    snprintf(m->why, sizeof(m->why), "%s", why);
    uint64_t one = 1;
    if (write(m->stop_fd, &one, sizeof(one)) < 0)
        perror("fakevmm: stop eventfd");
}

static void m_status(void *ctx, struct vmm_status *st)
{
    struct machine *m = ctx;
    pthread_mutex_lock(&m->lock);
    st->state = m->paused ? VMM_RUN_PAUSED : VMM_RUN_RUNNING;
    st->uptime_ms = (uint64_t)(now_ms() - m->start);
    st->vcpus = 1;
    st->memory_mib = 64;
    pthread_mutex_unlock(&m->lock);
}
static void m_pause(void *ctx)
{
    struct machine *m = ctx;
    pthread_mutex_lock(&m->lock);
    m->paused = true;
    pthread_mutex_unlock(&m->lock);
}
static void m_resume(void *ctx)
{
    struct machine *m = ctx;
    pthread_mutex_lock(&m->lock);
    m->paused = false;
    pthread_mutex_unlock(&m->lock);
}
static bool m_paused(void *ctx)
{
    struct machine *m = ctx;
    pthread_mutex_lock(&m->lock);
    bool p = m->paused;
    pthread_mutex_unlock(&m->lock);
    return p;
}
static int m_power_button(void *ctx)
{
    struct machine *m = ctx;
    pthread_mutex_lock(&m->lock);
    if (!m->hung && m->poweroff_at < 0)
        m->poweroff_at = now_ms() + 50; /* the guest takes a moment to shut down */
    pthread_cond_signal(&m->wake);
    pthread_mutex_unlock(&m->lock);
    return m->hung ? -ENOTSUP : 0;
}
static void m_request_stop(void *ctx, const char *why)
{
    struct machine *m = ctx;
    pthread_mutex_lock(&m->lock);
    if (!m->hung)
        stop_locked(m, STOP_STOPPED, why);
    pthread_mutex_unlock(&m->lock);
}
static void m_agent_status(void *ctx, struct vmm_agent_status *st)
{
    struct machine *m = ctx;
    long long now = now_ms();
    pthread_mutex_lock(&m->lock);
    st->present = true; /* vdi-vmm always gives the machine the agent's port */
    st->connected = m->agent && m->agent_since >= 0;
    if (st->connected) {
        bool hung = m->hang_at >= 0 && now >= m->hang_at;
        st->up = m->lost_at < 0 || now < m->lost_at;
        snprintf(st->name, sizeof(st->name), "testdesk");
        snprintf(st->caps, sizeof(st->caps), "message");
        st->heartbeat_s = m->hb_s;
        st->last_ms_ago =
            (uint64_t)(hung ? now - m->hang_at : (now - m->agent_since) % (m->hb_s * 1000LL));
    }
    pthread_mutex_unlock(&m->lock);
}
/* testdesk shows the message and prints it on serial (here: stdout, the desktop's vmm.log). */
static int m_agent_message(void *ctx, const char *text, unsigned seconds)
{
    struct machine *m = ctx;
    long long now = now_ms();
    pthread_mutex_lock(&m->lock);
    int err = !m->agent || m->agent_since < 0 ? -ENOTCONN : 0;
    bool hung = m->hang_at >= 0 && now >= m->hang_at;
    pthread_mutex_unlock(&m->lock);
    if (err || hung)
        return err; /* a hung agent's port takes the line; nobody reads it */
    printf("TESTDESK MESSAGE secs=%u bytes=%zu text=", seconds, strlen(text));
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p >= 0x20 && *p < 0x7f && *p != '\\')
            putchar(*p);
        else
            printf("\\x%02x", *p);
    putchar('\n');
    fflush(stdout);
    return 0;
}
static const struct vmm_control_ops machine_ops = {
    .status = m_status,
    .pause = m_pause,
    .resume = m_resume,
    .paused = m_paused,
    .power_button = m_power_button,
    .request_stop = m_request_stop,
    .agent_status = m_agent_status,
    .agent_message = m_agent_message,
};

/* FAKEVMM_TRIGGERS: the files the test drops into our run directory. */
static char *trigger_dir;

static bool take_trigger(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", trigger_dir, name);
    return unlink(path) == 0;
}

static void peek(void)
{
    char in[512], out[512], line[512];
    snprintf(in, sizeof(in), "%s/peek.list", trigger_dir);
    snprintf(out, sizeof(out), "%s/peek.out", trigger_dir);
    FILE *f = fopen(in, "re"), *o = fopen(out, "we");
    while (f && o && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = 0;
        int fd = open(line, O_RDONLY | O_CLOEXEC);
        fprintf(o, "%s %s\n", line, fd >= 0 ? "opened" : strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    if (f)
        fclose(f);
    if (o)
        fclose(o);
}

static void hostile_acts(void)
{
    if (!trigger_dir)
        return;
    if (take_trigger("peek"))
        peek();
    if (take_trigger("syscall")) {
        fprintf(stderr, "fakevmm: calling mount(2) on purpose\n");
        mount("none", "/tmp", "tmpfs", 0, NULL);
        fprintf(stderr, "fakevmm: mount(2) returned: %s\n", strerror(errno));
    }
    if (take_trigger("alloc")) {
        long long mb = env_ms("FAKEVMM_ALLOC_MB", 1024);
        fprintf(stderr, "fakevmm: allocating %lld MiB on purpose\n", mb);
        for (long long i = 0; i < mb; i++) {
            char *p = malloc(1 << 20);
            if (!p)
                break;
            memset(p, 0x5a, 1 << 20);
        }
        fprintf(stderr, "fakevmm: allocated %lld MiB and still alive\n", mb);
    }
}

/* The "guest": becomes ready, crashes or powers off when its time comes. */
static void *guest_main(void *arg)
{
    struct machine *m = arg;
    pthread_mutex_lock(&m->lock);
    while (m->stop == STOP_NONE) {
        hostile_acts();
        long long now = now_ms(), next = now + (trigger_dir ? 100 : 1000);
        if (m->ready_at >= 0 && now >= m->ready_at) {
            m->ready_at = -1;
            vmm_control_event(m->ctl, VMM_EVENT_BOOTED, NULL);
            vmm_control_event(m->ctl, VMM_EVENT_READY, "first frame");
            long long at = now + m->crash_after_ready;
            if (m->crash_after_ready >= 0 && (m->crash_at < 0 || at < m->crash_at)) {
                m->crash_at = at;
                m->crash_on_request = true;
            }
            if (m->agent) {
                char why[96];
                m->agent_since = now;
                snprintf(why, sizeof(why), "testdesk v=%d heartbeat=%us caps=message",
                         VMM_AGENT_VERSION, m->hb_s);
                vmm_control_event(m->ctl, VMM_EVENT_AGENT, why);
                if (m->hang_after >= 0)
                    m->hang_at = now + m->hang_after;
            }
        }
        if (m->hang_at >= 0 && now >= m->hang_at && m->lost_at < 0) {
            printf("TESTDESK AGENT hang now\n");
            fflush(stdout);
            m->lost_at = m->hang_at + (long long)VMM_AGENT_HB_MISSED * m->hb_s * 1000;
        }
        if (m->lost_at >= 0 && now >= m->lost_at && m->agent) {
            char why[96];
            snprintf(why, sizeof(why), "no heartbeat for %lld s from testdesk (one every %u s)",
                     (now - m->hang_at) / 1000, m->hb_s);
            vmm_control_event(m->ctl, VMM_EVENT_AGENT_LOST, why);
            m->agent = false; /* said once */
        }
        if (m->crash_at >= 0 && now >= m->crash_at) {
            if (m->crash_on_request) {
                printf("TESTDESK CRASH now\n");
                fflush(stdout);
            }
            stop_locked(m, STOP_CRASHED,
                        m->crash_on_request
                            ? "the stand-in guest crashed on request (data area file crash)"
                            : "the stand-in guest crashed on purpose");
            break;
        }
        if (m->poweroff_at >= 0 && now >= m->poweroff_at) {
            stop_locked(m, STOP_POWEROFF, "the guest powered off");
            break;
        }
        const long long due[] = {m->ready_at, m->crash_at, m->poweroff_at,
                                 m->lost_at < 0 ? m->hang_at : (m->agent ? m->lost_at : -1)};
        for (size_t i = 0; i < sizeof(due) / sizeof(due[0]); i++)
            if (due[i] >= 0 && due[i] < next)
                next = due[i];
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long long wait = next > now ? next - now : 0;
        ts.tv_sec += wait / 1000;
        ts.tv_nsec += (wait % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&m->wake, &m->lock, &ts);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

/* ---- the display -------------------------------------------------------------------------------- */
static rfbScreenInfoPtr screen;
static int fb_w = 320, fb_h = 240, n_keys;

static void on_key(rfbBool down, rfbKeySym key, rfbClientPtr cl)
{
    (void)cl;
    if (!down || n_keys >= fb_w)
        return;
    uint32_t *fb = (uint32_t *)screen->frameBuffer;
    fb[n_keys] = key & 0xffffff;
    rfbMarkRectAsModified(screen, n_keys, 0, n_keys + 1, 1);
    n_keys++;
}

static void display_init(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--fb") == 0)
            sscanf(argv[i + 1], "%dx%d", &fb_w, &fb_h);
    int one = 1;
    char *dummy[] = {argv[0], NULL};
    rfbLogEnable(getenv("FAKEVMM_DEBUG") != NULL);
    screen = rfbGetScreen(&one, dummy, fb_w, fb_h, 8, 3, 4);
    screen->frameBuffer = calloc((size_t)fb_w * fb_h, 4);
    for (int i = fb_w; i < fb_w * fb_h; i++) /* a grey desktop below the key row */
        ((uint32_t *)screen->frameBuffer)[i] = 0x404040;
    screen->kbdAddEvent = on_key;
    screen->cursor = NULL; /* no software cursor painted over the key row */
    screen->desktopName = "fakevmm";
    /* No TCP listener: clients come from our unix socket through rfbNewClient(). */
    screen->socketState = RFB_SOCKET_READY;
    screen->port = screen->ipv6port = screen->httpPort = -1;
    rfbInitServer(screen);
}

static int read_n(int fd, void *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* FAKEVMM_FLOOD: a child process per display client. */
static void flood(int fd)
{
    char buf[65536];
    static const uint8_t si[24] = {0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0};
    if (write(fd, "RFB 003.008\n", 12) != 12 || read_n(fd, buf, 12) < 0 ||
        write(fd, "\x01\x01", 2) != 2 || read_n(fd, buf, 1) < 0 || write(fd, "\0\0\0\0", 4) != 4 ||
        read_n(fd, buf, 1) < 0 || write(fd, si, 24) != 24)
        _exit(1);
    memset(buf, 0, sizeof(buf));
    for (;;)
        if (write(fd, buf, sizeof(buf)) < 0)
            _exit(0);
}

/* ---- the guest's NIC: FAKEVMM_NET ------------------------------------------------------------ */
#define VNET_HDR 12
static struct netstack net;
static int tap_fd = -1;
static pthread_mutex_t net_lock = PTHREAD_MUTEX_INITIALIZER; /* net, between the two threads */

static void net_tx(void *ctx, const void *frame, size_t len)
{
    (void)ctx;
    uint8_t hdr[VNET_HDR] = {0};
    struct iovec iov[2] = {{hdr, VNET_HDR}, {(void *)frame, len}};
    if (writev(tap_fd, iov, 2) < 0 && errno != EAGAIN)
        fprintf(stderr, "fakevmm-net: tap write: %s\n", strerror(errno));
}

/* Receive and timers, until the process ends. */
static void *net_rx_main(void *arg)
{
    (void)arg;
    uint8_t buf[VNET_HDR + 65536];
    for (;;) {
        struct pollfd p = {.fd = tap_fd, .events = POLLIN};
        poll(&p, 1, 50);
        pthread_mutex_lock(&net_lock);
        for (;;) {
            ssize_t n = read(tap_fd, buf, sizeof(buf));
            if (n <= VNET_HDR)
                break;
            ns_rx(&net, buf + VNET_HDR, (size_t)n - VNET_HDR, (uint64_t)now_ms());
        }
        ns_tick(&net, (uint64_t)now_ms());
        pthread_mutex_unlock(&net_lock);
    }
    return NULL;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "fakevmm-net: %s\n", line);
}

/* "gw" or an address; 0 when neither. */
static uint32_t addr_of(const char *s)
{
    uint32_t ip = 0;
    if (!strcmp(s, "gw")) {
        pthread_mutex_lock(&net_lock);
        ip = net.gw;
        pthread_mutex_unlock(&net_lock);
        return ip;
    }
    return ns_ip_parse(s, &ip) == 0 ? ip : 0;
}

/* Ping @ip up to @tries times, waiting @wait_ms for each reply. */
static bool ping_ok(uint32_t ip, int tries, int wait_ms)
{
    for (int t = 0; t < tries; t++) {
        pthread_mutex_lock(&net_lock);
        ns_ping(&net, ip);
        pthread_mutex_unlock(&net_lock);
        for (int w = 0; w < wait_ms; w += 10) {
            usleep(10000);
            pthread_mutex_lock(&net_lock);
            bool ok = net.ping_answered;
            pthread_mutex_unlock(&net_lock);
            if (ok)
                return true;
        }
    }
    return false;
}

static void net_action(char *a)
{
    char *w[6] = {0};
    int n = 0;
    for (char *save = NULL, *t = strtok_r(a, " ", &save); t && n < 6;
         t = strtok_r(NULL, " ", &save))
        w[n++] = t;
    if (!n)
        return;
    char ip_s[16], gw_s[16];
    if (!strcmp(w[0], "dhcp")) {
        for (int i = 0; i < 1000; i++) {
            pthread_mutex_lock(&net_lock);
            bool b = ns_bound(&net);
            uint32_t ip = net.ip, gw = net.gw;
            pthread_mutex_unlock(&net_lock);
            if (b) {
                say("lease %s gw %s", ns_ip_str(ip, ip_s), ns_ip_str(gw, gw_s));
                return;
            }
            usleep(10000);
        }
        say("lease none");
    } else if (!strcmp(w[0], "ping") && n >= 2) {
        uint32_t ip = addr_of(w[1]);
        say("ping %s %s", w[1], ip && ping_ok(ip, 3, 1000) ? "ok" : "no reply");
    } else if (!strcmp(w[0], "tcp") && n >= 3) {
        uint32_t ip = addr_of(w[1]);
        pthread_mutex_lock(&net_lock);
        ns_tcp_probe(&net, ip, (uint16_t)atoi(w[2]));
        pthread_mutex_unlock(&net_lock);
        enum ns_tcp_result r = NS_TCP_PENDING;
        for (int i = 0; i < 100 && r == NS_TCP_PENDING; i++) {
            usleep(10000);
            pthread_mutex_lock(&net_lock);
            r = net.tcp_result;
            pthread_mutex_unlock(&net_lock);
        }
        pthread_mutex_lock(&net_lock);
        unsigned flags = net.tcp_flags;
        pthread_mutex_unlock(&net_lock);
        say("tcp %s %s %s (flags 0x%02x)", w[1], w[2],
            r == NS_TCP_OPEN     ? "open"
            : r == NS_TCP_CLOSED ? "closed"
                                 : "filtered",
            flags);
    } else if ((!strcmp(w[0], "udp") || !strcmp(w[0], "spoof-mac") || !strcmp(w[0], "spoof-ip")) &&
               n >= 4) {
        uint32_t ip = addr_of(w[1]), src = 0;
        static const uint8_t forged_mac[6] = {0x02, 0x66, 0x6f, 0x72, 0x67, 0x65};
        if (!strcmp(w[0], "spoof-ip") && (n < 5 || ns_ip_parse(w[4], &src) < 0))
            return;
        pthread_mutex_lock(&net_lock);
        /* Twice: the first may wait for ARP in the stack's one pending slot. */
        for (int i = 0; i < 2; i++) {
            ns_udp_send(&net, ip, (uint16_t)atoi(w[2]), 40000, w[3], strlen(w[3]), src,
                        !strcmp(w[0], "spoof-mac") ? forged_mac : NULL);
            pthread_mutex_unlock(&net_lock);
            usleep(200000);
            pthread_mutex_lock(&net_lock);
        }
        pthread_mutex_unlock(&net_lock);
        say("%s %s %s sent", w[0], w[1], w[2]);
    } else if (!strcmp(w[0], "scan") && n >= 2) {
        unsigned first = 0, last = 0;
        if (sscanf(w[1], "%u-%u", &first, &last) != 2)
            return;
        pthread_mutex_lock(&net_lock);
        uint32_t me = net.ip, mask = net.mask, gw = net.gw;
        pthread_mutex_unlock(&net_lock);
        char found[400] = "";
        size_t k = 0;
        for (unsigned h = first; h <= last && h < 255; h++) {
            uint32_t ip = (me & mask) | h;
            if (ip == me || ip == gw)
                continue;
            if (ping_ok(ip, 1, 300))
                k += (size_t)snprintf(found + k, sizeof(found) - k, " %s", ns_ip_str(ip, ip_s));
        }
        say("scan answered:%s", k ? found : " none");
    } else if (!strcmp(w[0], "flood") && n >= 4) {
        uint32_t ip = addr_of(w[1]);
        static char payload[1000];
        memset(payload, 'x', sizeof(payload));
        pthread_mutex_lock(&net_lock);
        int k = snprintf(payload, sizeof(payload), "FROM %s ", ns_ip_str(net.ip, ip_s));
        pthread_mutex_unlock(&net_lock);
        payload[k] = 'x'; /* the receiver tells senders apart by the first two words */
        int64_t end = now_ms() + atoi(w[3]);
        unsigned long sent = 0;
        while (now_ms() < end) {
            pthread_mutex_lock(&net_lock);
            for (int i = 0; i < 16; i++, sent++)
                ns_udp_send(&net, ip, (uint16_t)atoi(w[2]), 40000, payload, sizeof(payload), 0,
                            NULL);
            pthread_mutex_unlock(&net_lock);
        }
        say("flood %s %s sent %lu", w[1], w[2], sent);
    } else if (!strcmp(w[0], "count") && n >= 2) {
        pthread_mutex_lock(&net_lock);
        uint32_t before = net.rx_frames;
        pthread_mutex_unlock(&net_lock);
        usleep((useconds_t)atoi(w[1]) * 1000);
        pthread_mutex_lock(&net_lock);
        uint32_t got = net.rx_frames - before;
        pthread_mutex_unlock(&net_lock);
        say("count rx %u frames", got);
    } else if (!strcmp(w[0], "sleep") && n >= 2) {
        usleep((useconds_t)atoi(w[1]) * 1000);
    } else {
        say("unknown action '%s'", w[0]);
    }
}

static void *net_script_main(void *arg)
{
    char *script = strdup(arg), *save = NULL;
    for (char *a = strtok_r(script, ";", &save); a; a = strtok_r(NULL, ";", &save)) {
        while (*a == ' ')
            a++;
        net_action(a);
    }
    say("script done");
    free(script);
    return NULL;
}

/* The patch agent's `fetch` (golden-images/testdesk/patch.h) on the guest's NIC, as testdesk's
 * td_net_fetch() does it. Thread: the agent's. */
static int net_fetch(void *ctx, const char *host, unsigned port, const char *name, void *buf,
                     size_t cap, size_t *len, char *why, size_t whylen)
{
    (void)ctx;
    bool bound = false;
    for (int i = 0; i < 1000 && !bound; i++) {
        pthread_mutex_lock(&net_lock);
        bound = ns_bound(&net);
        pthread_mutex_unlock(&net_lock);
        if (!bound)
            usleep(10000);
    }
    if (!bound) {
        snprintf(why, whylen, "no address from DHCP within 10 s");
        return -1;
    }
    uint32_t ip = addr_of(host);
    if (!ip) {
        snprintf(why, whylen, "not an address (nor gw)");
        return -1;
    }
    for (int t = 0; t < 3; t++) {
        pthread_mutex_lock(&net_lock);
        ns_fetch_start(&net, ip, (uint16_t)port, name);
        pthread_mutex_unlock(&net_lock);
        for (int w = 0; w < 100; w++) {
            usleep(10000);
            pthread_mutex_lock(&net_lock);
            bool ready = net.reply_ready;
            if (ready) {
                size_t n = net.reply_len < cap ? net.reply_len : cap;
                *len = net.reply_len;
                memcpy(buf, net.reply, n < NS_REPLY_MAX ? n : NS_REPLY_MAX);
            }
            pthread_mutex_unlock(&net_lock);
            if (ready)
                return 0;
        }
    }
    snprintf(why, whylen, "no reply (three tries)");
    return -1;
}

/* --net tapfd=N,mac=M: start the guest's NIC. */
static int net_start(const char *arg)
{
    unsigned b[6];
    int fd;
    if (sscanf(arg, "tapfd=%d,mac=%x:%x:%x:%x:%x:%x", &fd, &b[0], &b[1], &b[2], &b[3], &b[4],
               &b[5]) != 7) {
        fprintf(stderr, "fakevmm: --net %s: expected tapfd=N,mac=M\n", arg);
        return -1;
    }
    uint8_t mac[6];
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)b[i];
    tap_fd = fd;
    fcntl(tap_fd, F_SETFL, fcntl(tap_fd, F_GETFL) | O_NONBLOCK);
    ns_init(&net, mac, net_tx, NULL);
    pthread_t rx, script;
    if (pthread_create(&rx, NULL, net_rx_main, NULL) != 0)
        return -1;
    const char *sc = getenv("FAKEVMM_NET");
    if (sc && pthread_create(&script, NULL, net_script_main, (void *)sc) != 0)
        return -1;
    fprintf(stderr, "fakevmm: NIC %s on the tap at fd %d\n", arg + strcspn(arg, ",") + 5, fd);
    return 0;
}

/* The display thread: accepts viewers on --display and runs libvncserver for them. */
static void *display_main(void *arg)
{
    int dfd = *(int *)arg;
    bool flooding = getenv("FAKEVMM_FLOOD") != NULL;
    for (;;) {
        struct pollfd p = {.fd = dfd, .events = POLLIN};
        if (poll(&p, 1, 5) > 0 && (p.revents & POLLIN)) {
            int c = accept4(dfd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0 && flooding) {
                if (fork() == 0)
                    flood(c);
                close(c);
            } else if (c >= 0) {
                rfbNewClient(screen, c);
            }
        }
        rfbProcessEvents(screen, 0);
    }
    return NULL;
}

/* ---- disks and testdesk's patch agent ------------------------------------------------------------ */
#define MAX_DISKS 8
static img_disk_t *disks[MAX_DISKS];
static bool disk_ro[MAX_DISKS];
static unsigned n_disks;

static int open_disk(char *arg)
{
    char *comma = strchr(arg, ',');
    bool ro = comma && strcmp(comma, ",ro") == 0;
    if (comma)
        *comma = 0;
    if (n_disks == MAX_DISKS)
        return -E2BIG;
    int err = img_open(arg, ro ? IMG_OPEN_RDONLY : 0, &disks[n_disks]);
    if (err < 0) {
        fprintf(stderr, "fakevmm: --disk %s: %s\n", arg, strerror(-err));
        return err;
    }
    disk_ro[n_disks++] = ro;
    return 0;
}

static int bundle_read(void *ctx, uint64_t off, void *buf, size_t len)
{
    return img_pread(ctx, buf, len, off) < 0 ? -1 : 0;
}

static void serial_line(void *ctx, const char *line)
{
    (void)ctx;
    printf("%s\n", line);
    fflush(stdout);
}

static void agent_sleep(void *ctx, unsigned ms)
{
    (void)ctx;
    usleep(ms * 1000U);
}

static struct tp_area area;
static uint8_t area_buf[TP_AREA_BYTES];
static bool area_ok;
static long long crash_ms = -1; /* the area's `crash` file; -1: none (or not a number) */
static long long hang_ms = -1;  /* ... its `hang` file */

/* testdesk.data=N on the command line: count this boot on the user's data disk N. */
static void data_disk_boot(const char *cmdline)
{
    const char *o = cmdline ? strstr(cmdline, "testdesk.data=") : NULL;
    unsigned dn = o ? (unsigned)atoi(o + 14) : 0;
    uint8_t sec[512];
    if (!dn)
        return;
    if (dn >= n_disks || disk_ro[dn]) {
        printf("TESTDESK FAIL data disk%u %s\n", dn, dn >= n_disks ? "missing" : "is read-only");
    } else if (img_pread(disks[dn], sec, 512, 0) < 0) {
        printf("TESTDESK FAIL data disk%u cannot be read\n", dn);
    } else {
        uint64_t n = tp_data_boot(sec);
        if (!n)
            printf("TESTDESK FAIL data disk%u holds something else; left alone\n", dn);
        else if (img_pwrite(disks[dn], sec, 512, 0) < 0 || img_flush(disks[dn]) < 0)
            printf("TESTDESK FAIL data disk%u cannot be written\n", dn);
        else
            printf("TESTDESK DATA disk=%u boots=%llu\n", dn, (unsigned long long)n);
    }
    fflush(stdout);
}

/* testdesk's boot: show the data area of disk 0. */
static void agent_boot(void)
{
    char why[96];
    if (!n_disks || img_size(disks[0]) < TP_AREA_OFFSET + TP_AREA_BYTES)
        return;
    if (img_pread(disks[0], area_buf, TP_AREA_BYTES, TP_AREA_OFFSET) < 0) {
        printf("TESTDESK FAIL data area cannot be read from disk0\n");
    } else if (tp_area_parse(area_buf, TP_AREA_BYTES, &area, why, sizeof(why)) < 0) {
        printf("TESTDESK FAIL data area damaged: %s\n", why);
    } else {
        area_ok = true;
        for (unsigned i = 0; i < area.n; i++)
            printf("testdesk: file %s size=%u\n", area.f[i].name, area.f[i].len);
        const struct tp_file *b = tp_area_get(&area, "banner");
        if (b)
            printf("TESTDESK BANNER %s\n", b->data);
        uint64_t ms;
        int r = tp_file_ms(&area, "crash", &ms, why, sizeof(why));
        if (r < 0)
            printf("TESTDESK FAIL crash file ignored: %s\n", why);
        if (r > 0) {
            crash_ms = (long long)ms;
            printf("TESTDESK CRASH in %lld ms\n", crash_ms);
        }
        r = tp_file_ms(&area, "hang", &ms, why, sizeof(why));
        if (r < 0)
            printf("TESTDESK FAIL hang file ignored: %s\n", why);
        if (r > 0) {
            hang_ms = (long long)ms;
            printf("TESTDESK AGENT hang in %lld ms\n", hang_ms);
        }
    }
    fflush(stdout);
}

/* A read-only disk with a bundle: the patch runs on a thread of its own, then powers off. */
static struct machine *agent_m;
static unsigned bundle_disk;
static uint64_t run_off, run_size;

static void *agent_main(void *arg)
{
    (void)arg;
    static char script[TP_SCRIPT_MAX];
    img_disk_t *b = disks[bundle_disk];
    int code = 0;
    printf("testdesk: patch agent: bundle on disk%u\n", bundle_disk);
    if (crash_ms >= 0)
        printf("testdesk: patch agent: no crash in a maintenance VM (file crash)\n");
    if (run_size > TP_SCRIPT_MAX || !area_ok ||
        img_pread(b, script, (size_t)run_size, run_off) < 0) {
        printf("patch: cannot run the bundle (run is %llu bytes; data area %s)\n",
               (unsigned long long)run_size, area_ok ? "fine" : "unusable");
        code = 125;
    } else {
        struct tp_env env = {
            .out = serial_line,
            .sleep_ms = agent_sleep,
            .rd = bundle_read,
            .ctx = b,
            .bundle_bytes = img_size(b),
            .fetch = tap_fd >= 0 ? net_fetch : NULL,
        };
        if (tp_script_run(script, (size_t)run_size, &area, &env, &code) == TP_HANG)
            for (;;)
                pause();
        if (tp_area_format(&area, area_buf, TP_AREA_BYTES) < 0 ||
            img_pwrite(disks[0], area_buf, TP_AREA_BYTES, TP_AREA_OFFSET) < 0 ||
            img_flush(disks[0]) < 0) {
            printf("patch: cannot write the data area back to disk0\n");
            code = 125;
        }
    }
    printf("PATCH EXIT %d\n", code);
    fflush(stdout);
    pthread_mutex_lock(&agent_m->lock);
    stop_locked(agent_m, STOP_POWEROFF, "the guest powered off");
    pthread_mutex_unlock(&agent_m->lock);
    return NULL;
}

static bool find_bundle(void)
{
    for (unsigned i = 1; i < n_disks; i++) {
        if (!disk_ro[i])
            continue;
        if (tp_tar_find(bundle_read, disks[i], img_size(disks[i]), "run", &run_off, &run_size) ==
            1) {
            bundle_disk = i;
            return true;
        }
    }
    return false;
}

int main(int argc, char **argv)
{
    const char *control = NULL, *display = NULL, *nic = NULL, *cmdline = NULL;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--control") == 0)
            control = argv[++i];
        else if (strcmp(argv[i], "--display") == 0)
            display = argv[++i];
        else if (strcmp(argv[i], "--net") == 0)
            nic = argv[++i];
        else if (strcmp(argv[i], "--cmdline") == 0)
            cmdline = argv[++i];
        else if (strcmp(argv[i], "--disk") == 0 && open_disk(argv[++i]) < 0)
            return VMM_EXIT_BADINPUT;
    }
    if (!control) {
        fprintf(stderr, "fakevmm: --control PATH is required\n");
        return VMM_EXIT_BADINPUT;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN); /* flood children reap themselves */
    /* As in vdi-vmm: SIGTERM/SIGINT reach the control server's signalfd (a quit). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    static struct machine m = {
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .wake = PTHREAD_COND_INITIALIZER,
        .poweroff_at = -1,
    };
    m.start = now_ms();
    m.ready_at = getenv("FAKEVMM_NEVER_READY") ? -1 : m.start + env_ms("FAKEVMM_READY_MS", 100);
    m.crash_at = getenv("FAKEVMM_EXIT_MS") ? m.start + env_ms("FAKEVMM_EXIT_MS", 0) : -1;
    m.hung = getenv("FAKEVMM_IGNORE_SHUTDOWN") != NULL;
    m.stop_fd = eventfd(0, EFD_CLOEXEC);
    int err = vmm_control_create(control, &m.ctl);
    if (m.stop_fd < 0 || err < 0) {
        fprintf(stderr, "fakevmm: --control %s: %s\n", control, strerror(err < 0 ? -err : errno));
        return VMM_EXIT_BADINPUT;
    }
    static int dfd = -1;
    if (display) {
        dfd = listen_unix(display);
        if (dfd < 0) {
            fprintf(stderr, "fakevmm: --display %s: %s\n", display, strerror(errno));
            return VMM_EXIT_BADINPUT;
        }
        display_init(argc, argv);
    }
    if (getenv("FAKEVMM_TRIGGERS")) {
        trigger_dir = strdup(control);
        char *slash = strrchr(trigger_dir, '/');
        if (slash)
            *slash = 0;
    }
    if (nic && net_start(nic) < 0)
        return VMM_EXIT_BADINPUT;
    /* The disks before the guest thread: it arms the `crash` file's request when it is ready. */
    data_disk_boot(cmdline);
    agent_boot();
    bool patching = find_bundle();
    m.crash_after_ready = patching ? -1 : crash_ms;
    m.agent = !getenv("FAKEVMM_NO_AGENT");
    const char *hb = cmdline ? strstr(cmdline, "testdesk.hb=") : NULL;
    m.hb_s = hb && atoi(hb + 12) >= VMM_AGENT_HB_MIN_S && atoi(hb + 12) <= VMM_AGENT_HB_MAX_S
                 ? (unsigned)atoi(hb + 12)
                 : 5;
    m.agent_since = m.hang_at = m.lost_at = -1;
    m.hang_after = patching ? -1 : hang_ms;
    pthread_t guest, dpy;
    if (pthread_create(&guest, NULL, guest_main, &m) != 0 ||
        (dfd >= 0 && pthread_create(&dpy, NULL, display_main, &dfd) != 0)) {
        fprintf(stderr, "fakevmm: cannot start threads\n");
        return VMM_EXIT_FAILURE;
    }
    agent_m = &m;
    pthread_t agent;
    if (patching && pthread_create(&agent, NULL, agent_main, NULL) != 0) {
        fprintf(stderr, "fakevmm: cannot start the patch agent\n");
        return VMM_EXIT_FAILURE;
    }
    fprintf(stderr, "fakevmm: pid %d control %s\n", (int)getpid(), control);
    vmm_control_serve(m.ctl, m.stop_fd, &machine_ops, &m);

    pthread_mutex_lock(&m.lock);
    enum stop how = m.stop;
    char why[sizeof(m.why)];
    snprintf(why, sizeof(why), "%s", m.why);
    pthread_mutex_unlock(&m.lock);
    int status = how == STOP_POWEROFF  ? VMM_EXIT_POWEROFF
                 : how == STOP_CRASHED ? VMM_EXIT_CRASHED
                                       : VMM_EXIT_STOPPED;
    vmm_control_event(m.ctl, how == STOP_CRASHED ? VMM_EVENT_CRASHED : VMM_EVENT_SHUTDOWN, why);
    fprintf(stderr, "fakevmm: stopped: %s (exit status %d)\n", why, status);
    vmm_control_destroy(m.ctl);
    for (unsigned i = 0; i < n_disks; i++)
        img_close(disks[i]);
    return status;
}
