/* tests/tools/vncprobe.c: a scriptable RFB client built on libvncclient (a real client, not
 * ours), for the display tests and benchmarks.
 *
 *   vncprobe [-s SOCKET | -t HOST:PORT] [-e ENCODINGS] [-q QUALITY] [-c COMPRESS] [-n]
 *            [-T TIMEOUT_S] [-v] COMMAND...
 *
 * -e takes libvncclient's encodings string ("raw", "tight", "zrle", "hextile copyrect" ...); -q
 * turns on JPEG for Tight at that quality (0-9); -n asks for a non-shared session. Commands run
 * in order; each "wait" fails the run after TIMEOUT_S (default 10):
 *   pixel X Y RRGGBB [TOL]       wait until the pixel matches (each channel within TOL)
 *   gradient X Y W H TOL MODE    wait until the region matches r=255*dx/(W-1), g=255*dy/(H-1),
 *                                b=0x80 within TOL; MODE "exact" then needs every pixel exact,
 *                                "lossy" at least one pixel off (proof JPEG was used), "any"
 *   size W H                     wait for the framebuffer size
 *   frames N                     wait for N more framebuffer updates
 *   key KEYSYM down|up|press     a KeyEvent (KEYSYM in hex or decimal)
 *   type STRING                  KeyEvents typing STRING (with Shift for capitals, symbols)
 *   xkey XTCODE KEYSYM           press and release through QEMU extended key events
 *   ptr X Y MASK                 a PointerEvent
 *   sleep MS                     keep handling server messages for MS milliseconds
 *   raw HEX                      write these bytes to the server as they are
 *   shutwr                       half-close: the server sees end of stream
 *   closed                       wait until the server closes the connection
 *   drop                         ask for a full non-incremental update, read a little, exit 0
 *   bench SECONDS                count updates and bytes; prints "frames=N bytes=N secs=S"
 *   cells X Y CW CH N RRGGBB K   text cells: wait until the first K of N cells (CW x CH each,
 *                                left to right from X,Y) hold a pixel of colour RRGGBB, then print
 *                                "cells S1 ... SN", Si a hash of the cell's RRGGBB pixels ("-" if
 *                                none): equal glyphs give equal hashes
 *   dump FILE                    write the framebuffer as a PPM
 *   print                        print "size WxH" and flush (a sync point for scripts)
 * Exit status: 0 all commands succeeded, 1 a check failed or timed out, 2 usage or connection.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <rfb/rfbclient.h>
#include <turbojpeg.h>

static int timeout_s = 10;
static int verbose;
static unsigned long frames_seen;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void __attribute__((format(printf, 1, 2))) quiet_log(const char *fmt, ...)
{
    if (!verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

static void on_rect(rfbClient *c, int x, int y, int w, int h)
{
    (void)c;
    if (verbose)
        fprintf(stderr, "vncprobe: rect %d,%d %dx%d\n", x, y, w, h);
}

static void on_finished(rfbClient *c)
{
    (void)c;
    frames_seen++;
}

/* Handle server messages for up to @ms; returns 0, or -1 when the connection is gone. */
static int pump(rfbClient *c, int ms)
{
    double end = now_s() + ms / 1000.0;
    do {
        double left = end - now_s();
        int r = WaitForMessage(c, left > 0 ? (unsigned)(left * 1e6) : 0);
        if (r < 0)
            return -1;
        if (r > 0 && !HandleRFBServerMessage(c))
            return -1;
    } while (now_s() < end);
    return 0;
}

static uint32_t px(rfbClient *c, int x, int y)
{
    uint32_t p;
    memcpy(&p, c->frameBuffer + ((size_t)y * c->width + x) * 4, 4);
    return p; /* bytes R, G, B, X (libvncclient's default 32-bit format) */
}

static int chan_diff(uint32_t p, uint32_t rgb, int shift_p, int shift_rgb)
{
    return abs((int)((p >> shift_p) & 0xff) - (int)((rgb >> shift_rgb) & 0xff));
}

static int rgb_diff(uint32_t p, uint32_t rgb)
{
    int dr = chan_diff(p, rgb, 0, 16), dg = chan_diff(p, rgb, 8, 8), db = chan_diff(p, rgb, 16, 0);
    int m = dr > dg ? dr : dg;
    return m > db ? m : db;
}

static int pixel_ok(rfbClient *c, int x, int y, uint32_t rgb, int tol)
{
    if (x < 0 || y < 0 || x >= c->width || y >= c->height)
        return 0;
    return rgb_diff(px(c, x, y), rgb) <= tol;
}

/* Returns the largest channel error in the region, or 1000 if it lies outside the screen;
 * *exact_count gets the number of pixels that match exactly. */
static int gradient_err(rfbClient *c, int x0, int y0, int w, int h, long *exact_count)
{
    int worst = 0;
    *exact_count = 0;
    if (x0 + w > c->width || y0 + h > c->height || w < 2 || h < 2)
        return 1000;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint32_t want =
                (uint32_t)(255 * x / (w - 1)) << 16 | (uint32_t)(255 * y / (h - 1)) << 8 | 0x80;
            int e = rgb_diff(px(c, x0 + x, y0 + y), want);
            if (e == 0)
                (*exact_count)++;
            if (e > worst)
                worst = e;
        }
    return worst;
}

/* FNV-1a over the positions of the pixels of colour @rgb in a cell; 0 if there are none. */
static uint32_t cell_hash(rfbClient *c, int x0, int y0, int cw, int ch, uint32_t rgb)
{
    uint32_t h = 2166136261u;
    int n = 0;
    for (int y = y0; y < y0 + ch && y < c->height; y++)
        for (int x = x0; x < x0 + cw && x < c->width; x++)
            if (rgb_diff(px(c, x, y), rgb) == 0) {
                uint32_t pos = (uint32_t)((y - y0) * cw + (x - x0));
                for (int k = 0; k < 4; k++)
                    h = (h ^ ((pos >> (8 * k)) & 0xff)) * 16777619u;
                n++;
            }
    return n ? h : 0;
}

static unsigned long long rchar(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    unsigned long long v = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "rchar: %llu", &v) == 1)
            break;
    fclose(f);
    return v;
}

static int fail(const char *what)
{
    fprintf(stderr, "vncprobe: %s\n", what);
    return 1;
}

/* US layout: which characters need Shift. */
static int needs_shift(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || strchr("~!@#$%^&*()_+{}|:\"<>?", ch) != NULL;
}

static int send_key(rfbClient *c, uint32_t sym, int down)
{
    return SendKeyEvent(c, sym, down ? TRUE : FALSE) ? 0 : -1;
}

static int write_ppm(rfbClient *c, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    fprintf(f, "P6\n%d %d\n255\n", c->width, c->height);
    for (int y = 0; y < c->height; y++)
        for (int x = 0; x < c->width; x++) {
            uint32_t p = px(c, x, y);
            uint8_t rgb[3] = {(uint8_t)p, (uint8_t)(p >> 8), (uint8_t)(p >> 16)};
            fwrite(rgb, 1, 3, f);
        }
    return fclose(f) == 0 ? 0 : -1;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

#define NEED(n)                                                                                    \
    do {                                                                                           \
        if (i + (n) >= argc) {                                                                     \
            fprintf(stderr, "vncprobe: %s needs %d arguments\n", cmd, (n));                        \
            return 2;                                                                              \
        }                                                                                          \
    } while (0)

static int run(rfbClient *c, int argc, char **argv, int i)
{
    for (; i < argc; i++) {
        const char *cmd = argv[i];
        double deadline = now_s() + timeout_s;
        if (!strcmp(cmd, "pixel")) {
            NEED(3);
            int x = atoi(argv[i + 1]), y = atoi(argv[i + 2]);
            uint32_t rgb = (uint32_t)strtoul(argv[i + 3], NULL, 16);
            int tol = 0;
            i += 3;
            if (i + 1 < argc && strspn(argv[i + 1], "0123456789") == strlen(argv[i + 1]))
                tol = atoi(argv[++i]);
            while (!pixel_ok(c, x, y, rgb, tol)) {
                if (now_s() > deadline || pump(c, 50) < 0) {
                    char msg[160];
                    snprintf(msg, sizeof(msg), "pixel %d,%d: want %06x, have %06x (fb %dx%d)", x, y,
                             rgb,
                             (x < c->width && y < c->height)
                                 ? ((px(c, x, y) & 0xff) << 16 | (px(c, x, y) & 0xff00) |
                                    (px(c, x, y) >> 16 & 0xff))
                                 : 0,
                             c->width, c->height);
                    return fail(msg);
                }
            }
            printf("pixel %d,%d ok\n", x, y);
        } else if (!strcmp(cmd, "gradient")) {
            NEED(6);
            int x0 = atoi(argv[i + 1]), y0 = atoi(argv[i + 2]), w = atoi(argv[i + 3]),
                h = atoi(argv[i + 4]), tol = atoi(argv[i + 5]);
            const char *mode = argv[i + 6];
            long exact;
            int err;
            i += 6;
            while ((err = gradient_err(c, x0, y0, w, h, &exact)) > tol) {
                if (now_s() > deadline || pump(c, 50) < 0) {
                    fprintf(stderr, "vncprobe: gradient: worst channel error %d > %d\n", err, tol);
                    return 1;
                }
            }
            printf("gradient ok: worst error %d, %ld of %d pixels exact\n", err, exact, w * h);
            if (!strcmp(mode, "exact") && exact != (long)w * h)
                return fail("gradient: not every pixel exact");
            if (!strcmp(mode, "lossy") && exact == (long)w * h)
                return fail("gradient: every pixel exact, so no lossy encoding was used");
        } else if (!strcmp(cmd, "size")) {
            NEED(2);
            int w = atoi(argv[i + 1]), h = atoi(argv[i + 2]);
            i += 2;
            while (c->width != w || c->height != h)
                if (now_s() > deadline || pump(c, 50) < 0)
                    return fail("size: timed out");
            printf("size %dx%d ok\n", w, h);
        } else if (!strcmp(cmd, "frames")) {
            NEED(1);
            unsigned long want = frames_seen + strtoul(argv[++i], NULL, 0);
            while (frames_seen < want)
                if (now_s() > deadline || pump(c, 50) < 0)
                    return fail("frames: timed out");
        } else if (!strcmp(cmd, "key")) {
            NEED(2);
            uint32_t sym = (uint32_t)strtoul(argv[i + 1], NULL, 0);
            const char *how = argv[i + 2];
            i += 2;
            if (strcmp(how, "up") && send_key(c, sym, 1) < 0)
                return fail("key: send failed");
            if (strcmp(how, "down") && send_key(c, sym, 0) < 0)
                return fail("key: send failed");
        } else if (!strcmp(cmd, "type")) {
            NEED(1);
            for (const char *s = argv[++i]; *s; s++) {
                int sh = needs_shift(*s);
                if ((sh && send_key(c, XK_Shift_L, 1) < 0) || send_key(c, (uint8_t)*s, 1) < 0 ||
                    send_key(c, (uint8_t)*s, 0) < 0 || (sh && send_key(c, XK_Shift_L, 0) < 0))
                    return fail("type: send failed");
            }
        } else if (!strcmp(cmd, "xkey")) {
            NEED(2);
            uint32_t code = (uint32_t)strtoul(argv[i + 1], NULL, 0);
            uint32_t sym = (uint32_t)strtoul(argv[i + 2], NULL, 0);
            i += 2;
            /* the server acknowledges the pseudo-encoding with an update; wait for it */
            while (!SendExtendedKeyEvent(c, sym, code, TRUE))
                if (now_s() > deadline || pump(c, 50) < 0)
                    return fail("xkey: the server never acknowledged QEMU extended key events");
            if (!SendExtendedKeyEvent(c, sym, code, FALSE))
                return fail("xkey: send failed");
        } else if (!strcmp(cmd, "ptr")) {
            NEED(3);
            if (!SendPointerEvent(c, atoi(argv[i + 1]), atoi(argv[i + 2]), atoi(argv[i + 3])))
                return fail("ptr: send failed");
            i += 3;
        } else if (!strcmp(cmd, "sleep")) {
            NEED(1);
            if (pump(c, atoi(argv[++i])) < 0)
                return fail("sleep: connection lost");
        } else if (!strcmp(cmd, "raw")) {
            NEED(1);
            const char *hex = argv[++i];
            size_t n = strlen(hex) / 2;
            char *buf = malloc(n + 1);
            for (size_t k = 0; k < n; k++) {
                int hi = hexval(hex[2 * k]), lo = hexval(hex[2 * k + 1]);
                if (hi < 0 || lo < 0) {
                    free(buf);
                    return fail("raw: not hex");
                }
                buf[k] = (char)(hi << 4 | lo);
            }
            rfbBool ok = WriteToRFBServer(c, buf, (unsigned)n);
            free(buf);
            if (!ok)
                return fail("raw: write failed");
        } else if (!strcmp(cmd, "shutwr")) {
            shutdown(c->sock, SHUT_WR);
        } else if (!strcmp(cmd, "closed")) {
            for (;;) {
                if (now_s() > deadline)
                    return fail("closed: the server kept the connection open");
                if (pump(c, 50) < 0)
                    break;
            }
            printf("closed ok\n");
        } else if (!strcmp(cmd, "drop")) {
            char buf[8192];
            struct pollfd pfd = {.fd = c->sock, .events = POLLIN};
            SendFramebufferUpdateRequest(c, 0, 0, c->width, c->height, FALSE);
            if (poll(&pfd, 1, timeout_s * 1000) != 1 || read(c->sock, buf, sizeof(buf)) <= 0)
                return fail("drop: no update arrived");
            printf("dropped\n");
            fflush(stdout);
            _exit(0); /* no orderly close: the server is mid-update */
        } else if (!strcmp(cmd, "bench")) {
            NEED(1);
            double secs = atof(argv[++i]);
            unsigned long f0 = frames_seen;
            unsigned long long b0 = rchar();
            double t0 = now_s();
            if (pump(c, (int)(secs * 1000)) < 0)
                return fail("bench: connection lost");
            double t = now_s() - t0;
            printf("frames=%lu bytes=%llu secs=%.3f\n", frames_seen - f0, rchar() - b0, t);
        } else if (!strcmp(cmd, "cells")) {
            NEED(7);
            int x0 = atoi(argv[i + 1]), y0 = atoi(argv[i + 2]), cw = atoi(argv[i + 3]),
                ch = atoi(argv[i + 4]), n = atoi(argv[i + 5]), k = atoi(argv[i + 7]);
            uint32_t rgb = (uint32_t)strtoul(argv[i + 6], NULL, 16);
            i += 7;
            for (;;) {
                int filled = 0;
                while (filled < k && cell_hash(c, x0 + filled * cw, y0, cw, ch, rgb))
                    filled++;
                if (filled >= k)
                    break;
                if (now_s() > deadline || pump(c, 50) < 0)
                    return fail("cells: the text did not appear");
            }
            printf("cells");
            for (int k2 = 0; k2 < n; k2++) {
                uint32_t hsh = cell_hash(c, x0 + k2 * cw, y0, cw, ch, rgb);
                if (hsh)
                    printf(" %08x", hsh);
                else
                    printf(" -");
            }
            printf("\n");
        } else if (!strcmp(cmd, "dump")) {
            NEED(1);
            if (write_ppm(c, argv[++i]) < 0)
                return fail("dump: cannot write the file");
        } else if (!strcmp(cmd, "print")) {
            printf("size %dx%d\n", c->width, c->height);
        } else {
            fprintf(stderr, "vncprobe: unknown command %s\n", cmd);
            return 2;
        }
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *sock = NULL, *tcp = NULL, *enc = "raw";
    int quality = -1, compress = -1, shared = 1, opt;

    while ((opt = getopt(argc, argv, "+s:t:e:q:c:nT:v")) != -1) {
        switch (opt) {
        case 's':
            sock = optarg;
            break;
        case 't':
            tcp = optarg;
            break;
        case 'e':
            enc = optarg;
            break;
        case 'q':
            quality = atoi(optarg);
            break;
        case 'c':
            compress = atoi(optarg);
            break;
        case 'n':
            shared = 0;
            break;
        case 'T':
            timeout_s = atoi(optarg);
            break;
        case 'v':
            verbose = 1;
            break;
        default:
            fprintf(stderr, "usage: vncprobe [-s SOCKET | -t HOST:PORT] [-e ENC] [-q Q] [-c C] "
                            "[-n] [-T S] [-v] COMMAND...\n");
            return 2;
        }
    }
    if (!sock == !tcp) {
        fprintf(stderr, "vncprobe: give exactly one of -s SOCKET and -t HOST:PORT\n");
        return 2;
    }
    rfbClientLog = quiet_log;
    rfbClientErr = quiet_log;

    rfbClient *c = rfbGetClient(8, 3, 4);
    c->appData.encodingsString = enc;
    c->appData.shareDesktop = shared ? TRUE : FALSE;
    c->appData.enableJPEG = quality >= 0 ? TRUE : FALSE;
    c->appData.qualityLevel = quality >= 0 ? quality : 5;
    if (compress >= 0)
        c->appData.compressLevel = compress;
    c->FinishedFrameBufferUpdate = on_finished;
    c->GotFrameBufferUpdate = on_rect;
    c->canHandleNewFBSize = TRUE;
    free(c->serverHost);
    if (sock) {
        c->serverHost = strdup(sock);
        c->serverPort = 0;
    } else {
        const char *colon = strrchr(tcp, ':');
        if (!colon) {
            fprintf(stderr, "vncprobe: -t wants HOST:PORT\n");
            return 2;
        }
        c->serverHost = strndup(tcp, (size_t)(colon - tcp));
        c->serverPort = atoi(colon + 1);
    }
    if (!rfbInitClient(c, NULL, NULL)) {
        /* rfbInitClient frees the client on failure */
        fprintf(stderr, "vncprobe: cannot connect to %s\n", sock ? sock : tcp);
        return 2;
    }
    int rc = run(c, argc, argv, optind);
    free(c->frameBuffer); /* libvncclient leaves the framebuffer to its user */
    c->frameBuffer = NULL;
    if (c->tjhnd) /* and 0.9.14 forgets its JPEG decompressor */
        tjDestroy(c->tjhnd);
    c->tjhnd = NULL;
    rfbClientCleanup(c);
    return rc;
}
