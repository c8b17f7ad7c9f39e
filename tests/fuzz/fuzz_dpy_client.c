// fuzz-srcs: display/*.c common/*.c
// fuzz-libs: -lvncserver
/* libFuzzer target for the display's RFB server (display/server.c on libvncserver): each input is
 * what a client sends after the handshake (RFB 3.8, security None, shared ClientInit) — pixel
 * formats, encodings (with the QEMU extended key event pseudo-encoding), update requests, key and
 * pointer events, cut text, QEMU messages, garbage. One display on a unix socket serves a small
 * synthetic screen for the whole run; each input gets its own connection, then the write side
 * closes and the harness reads until the server hangs up. The server must neither crash nor stop
 * serving: every input starts with a complete handshake. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/vdi.h"
#include "display/dpy.h"

#define W 64
#define H 48

static uint32_t pixels[W * H] __attribute__((aligned(4096)));

static bool get_mode(void *ctx, struct dpy_mode *m)
{
    VDI_UNUSED(ctx);
    *m = (struct dpy_mode){
        .width = W, .height = H, .stride = W * 4, .pixels = pixels, .generation = 1};
    return true;
}

static int get_dirty(void *ctx, uint64_t *bitmap, size_t npages)
{
    VDI_UNUSED(ctx);
    for (size_t i = 0; i < npages; i++)
        bitmap[i / 64] |= 1ull << (i % 64); /* always dirty: the compare runs every tick */
    return 0;
}

static const struct dpy_fb_source src = {
    .name = "fuzz", .get_mode = get_mode, .get_dirty = get_dirty};

static void key(void *ctx, uint16_t code, bool down)
{
    VDI_UNUSED(ctx);
    VDI_ASSERT(code < 0x300);
    VDI_UNUSED(down);
}

static void pointer(void *ctx, uint32_t x, uint32_t y, uint32_t buttons)
{
    VDI_UNUSED(ctx);
    VDI_ASSERT(x <= DPY_ABS_MAX && y <= DPY_ABS_MAX && buttons <= 7);
}

static void wheel(void *ctx, int v, int h)
{
    VDI_UNUSED(ctx);
    VDI_ASSERT(v >= -1 && v <= 1 && h >= -1 && h <= 1);
}

static const struct dpy_input_sink sink = {
    .name = "fuzz", .key = key, .pointer = pointer, .wheel = wheel};

static char sock_path[108];

static void setup(void)
{
    static char dir[] = "/tmp/vdi-fuzz-dpy.XXXXXX";
    dpy_display_t *d;

    signal(SIGPIPE, SIG_IGN);
    vdi_log_set_level(VDI_LOG_LEVEL_ERR);
    for (int i = 0; i < W * H; i++)
        pixels[i] = (uint32_t)i * 0x010203u;
    if (!mkdtemp(dir))
        abort();
    snprintf(sock_path, sizeof(sock_path), "%s/d.sock", dir);
    struct dpy_config cfg = {.unix_path = sock_path, .hz = 240};
    if (dpy_display_create(&cfg, &src, NULL, &sink, NULL, &d) < 0)
        abort();
    /* the display lives until the process ends */
}

/* Read exactly @n bytes within 5 s. */
static int read_n(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1)
            return -1;
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int handshake(int fd)
{
    char buf[256];
    uint32_t n;
    if (read_n(fd, buf, 12) < 0 || memcmp(buf, "RFB 003.008\n", 12) != 0)
        return -1;
    if (write(fd, "RFB 003.008\n", 12) != 12)
        return -1;
    if (read_n(fd, buf, 1) < 0 || buf[0] == 0 || read_n(fd, buf + 1, (uint8_t)buf[0]) < 0)
        return -1;
    if (write(fd, "\x01", 1) != 1 || read_n(fd, &n, 4) < 0 || n != 0)
        return -1; /* security None, result OK */
    if (write(fd, "\x01", 1) != 1 || read_n(fd, buf, 24) < 0)
        return -1; /* shared; ServerInit */
    memcpy(&n, buf + 20, 4);
    n = __builtin_bswap32(n);
    return n < sizeof(buf) ? read_n(fd, buf, n) : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char sink_buf[65536];
    size_t off = 0;

    if (!ready) {
        setup();
        ready = true;
    }
    memcpy(sa.sun_path, sock_path, sizeof(sock_path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || handshake(fd) < 0) {
        fprintf(stderr, "fuzz_dpy_client: the server stopped serving: %s\n", strerror(errno));
        abort();
    }
    /* Write the input while reading whatever the server answers, until it hangs up. */
    if (size == 0)
        shutdown(fd, SHUT_WR);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (off < size ? POLLOUT : 0)};
        if (poll(&p, 1, 15000) != 1) {
            fprintf(stderr, "fuzz_dpy_client: the server neither answered nor hung up\n");
            abort();
        }
        if (p.revents & POLLOUT) {
            ssize_t w = send(fd, data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
            else if (w < 0 && errno != EAGAIN)
                off = size; /* the server closed: stop writing */
            if (off == size)
                shutdown(fd, SHUT_WR);
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(fd, sink_buf, sizeof(sink_buf));
            if (r <= 0)
                break;
        }
    }
    close(fd);
    return 0;
}
