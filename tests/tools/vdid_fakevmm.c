/* tests/tools/vdid_fakevmm.c: a stand-in for vdi-vmm in vdid's supervisor tests: it takes
 * vdi-vmm's command line, serves the control socket protocol (docs/vmm-control.md: JSON lines;
 * commands status, shutdown, quit; events booted, ready, shutdown) and nothing else: no guest.
 * It exercises vdid's process and control-socket handling (spawn, ready, exit, kill -9,
 * re-attach) without KVM. Environment knobs, inherited through vdid:
 *   FAKEVMM_READY_MS=N        send `ready` N ms after start (default 100)
 *   FAKEVMM_NEVER_READY=1     never send `ready`
 *   FAKEVMM_IGNORE_SHUTDOWN=1 ignore the shutdown command (vdid must kill it)
 *   FAKEVMM_EXIT_MS=N         exit with status 3 N ms after start (a crash)
 *   FAKEVMM_FLOOD=1           the display does the RFB handshake itself (security None, a 0x0
 *                             ServerInit), then sends empty FramebufferUpdates (zero bytes) as
 *                             fast as the socket takes them: a source that never waits, for
 *                             tests of the gateway's backpressure
 */
#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <rfb/rfb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 8

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
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
    int flags = 0;
    (void)flags;
    if (write(fd, "RFB 003.008\n", 12) != 12 || read_n(fd, buf, 12) < 0 ||
        write(fd, "\x01\x01", 2) != 2 || read_n(fd, buf, 1) < 0 || write(fd, "\0\0\0\0", 4) != 4 ||
        read_n(fd, buf, 1) < 0 || write(fd, si, 24) != 24)
        _exit(1);
    memset(buf, 0, sizeof(buf));
    for (;;)
        if (write(fd, buf, sizeof(buf)) < 0)
            _exit(0);
}

static int clients[MAX_CLIENTS];
static int n_clients;

static void send_all(const char *line)
{
    for (int i = 0; i < n_clients; i++)
        if (write(clients[i], line, strlen(line)) < 0) {
            /* the reader went away; its EOF is handled by poll */
        }
}

int main(int argc, char **argv)
{
    const char *control = NULL, *display = NULL;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--control") == 0)
            control = argv[++i];
        else if (strcmp(argv[i], "--display") == 0)
            display = argv[++i];
    }
    if (!control) {
        fprintf(stderr, "fakevmm: --control PATH is required\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN); /* flood children reap themselves */
    long long start = now_ms();
    long long ready_at = getenv("FAKEVMM_NEVER_READY") ? -1
                         : getenv("FAKEVMM_READY_MS")  ? start + atoll(getenv("FAKEVMM_READY_MS"))
                                                       : start + 100;
    long long exit_at = getenv("FAKEVMM_EXIT_MS") ? start + atoll(getenv("FAKEVMM_EXIT_MS")) : -1;
    bool ignore_shutdown = getenv("FAKEVMM_IGNORE_SHUTDOWN") != NULL;
    int lfd = listen_unix(control);
    if (lfd < 0) {
        fprintf(stderr, "fakevmm: %s: %s\n", control, strerror(errno));
        return 1;
    }
    int dfd = display ? listen_unix(display) : -1;
    if (dfd >= 0)
        display_init(argc, argv);
    bool ready = false;
    long long quit_at = -1;
    fprintf(stderr, "fakevmm: pid %d control %s\n", (int)getpid(), control);
    for (;;) {
        long long now = now_ms();
        if (!ready && ready_at >= 0 && now >= ready_at) {
            ready = true;
            send_all("{\"event\":\"booted\"}\n{\"event\":\"ready\"}\n");
        }
        if (exit_at >= 0 && now >= exit_at) {
            fprintf(stderr, "fakevmm: crashing on purpose\n");
            return 3;
        }
        if (quit_at >= 0 && now >= quit_at)
            return 0;
        struct pollfd p[MAX_CLIENTS + 2];
        int n = 0;
        p[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = dfd, .events = POLLIN};
        for (int i = 0; i < n_clients; i++)
            p[n++] = (struct pollfd){.fd = clients[i], .events = POLLIN};
        poll(p, (nfds_t)n, 5);
        if (screen)
            rfbProcessEvents(screen, 0);
        if (p[0].revents & POLLIN) {
            int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0 && n_clients < MAX_CLIENTS)
                clients[n_clients++] = c;
            else if (c >= 0)
                close(c);
        }
        if (dfd >= 0 && (p[1].revents & POLLIN)) {
            int c = accept4(dfd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0 && getenv("FAKEVMM_FLOOD")) {
                if (fork() == 0)
                    flood(c);
                close(c);
            } else if (c >= 0) {
                rfbNewClient(screen, c);
            }
        }
        for (int i = 2; i < n; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int fd = p[i].fd;
            char buf[4096];
            ssize_t r = read(fd, buf, sizeof(buf) - 1);
            if (r <= 0) {
                close(fd);
                for (int j = 0; j < n_clients; j++)
                    if (clients[j] == fd)
                        clients[j] = clients[--n_clients];
                continue;
            }
            buf[r] = 0;
            if (strstr(buf, "\"status\"")) {
                char line[128];
                snprintf(line, sizeof(line),
                         "{\"ok\":true,\"result\":{\"state\":\"running\",\"ready\":%s}}\n",
                         ready ? "true" : "false");
                if (write(fd, line, strlen(line)) < 0) {
                }
            }
            if (strstr(buf, "\"shutdown\"") && !ignore_shutdown) {
                send_all("{\"ok\":true}\n{\"event\":\"shutdown\"}\n");
                quit_at = now_ms() + 50;
            }
            if (strstr(buf, "\"quit\""))
                return 0;
        }
    }
}
