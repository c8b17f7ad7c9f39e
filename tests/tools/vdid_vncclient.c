/* tests/tools/vdid_vncclient.c: a real RFB viewer (libvncclient) for vdid's end-to-end tests and
 * the login benchmark. It logs in over VeNCrypt X509Plain (password from $VDI_TEST_PASSWORD),
 * waits for the first FramebufferUpdate, optionally types keys, and prints what it saw:
 *
 *   name=DESKTOP-NAME width=W height=H first_frame_ms=N [keys=TEXT]
 *
 * Usage: vdid_vncclient HOST:PORT USER [--ca CERT] [--type TEXT] [--hold MS] [--timeout MS]
 *                      [--region Y H] [--flood N --stall MS] [--watch MS]
 * --flood: after the first frame, ask N times for the whole screen, then read nothing for MS
 * milliseconds; --stall alone: read nothing for MS milliseconds right after ServerInit (slow
 * clients: the gateway must not buffer what it cannot deliver).
 * --watch: after the first frame, keep asking for the whole screen for MS milliseconds and print
 * frames=N (updates received) max_gap_ms=G (the longest wait between two of them): a session
 * that stays live while something else loads the server.
 * --region: also print region=HASH, an FNV-1a hash of rows [Y, Y+H) once the screen settled
 * (after typing, once it changed: a real guest drawing the keys it got).
 * --type: press and release each character, then read back the stand-in VMM's key row (pixel i
 * of row 0 holds the i-th keysym) and print it as keys=. Exit: 0 first frame seen, 3 the login or
 * connection failed, 4 connected but closed before a first frame (a refusal: see name=).
 */
#include <rfb/rfbclient.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *user, *ca;
static int region_y = -1, region_h;

/* With $VDI_TEST_VNC_DUMP: draw the region as text on stderr (debugging the tests). */
static void region_dump(rfbClient *cl, const char *what)
{
    if (!getenv("VDI_TEST_VNC_DUMP"))
        return;
    fprintf(stderr, "%s:\n", what);
    const uint32_t *fb = (const uint32_t *)cl->frameBuffer;
    for (int y = region_y; y < region_y + region_h && y < cl->height; y++) {
        for (int x = 0; x < cl->width && x < 400; x++)
            fputc((fb[(size_t)y * cl->width + x] & 0xffffff) ==
                          (fb[(size_t)y * cl->width + cl->width - 1] & 0xffffff)
                      ? '.'
                      : '#',
                  stderr);
        fputc('\n', stderr);
    }
}

static uint32_t region_hash(rfbClient *cl)
{
    /* Colour bytes only: the fourth byte of a pixel depends on the encoding that carried it. */
    uint32_t h = 2166136261u;
    const uint32_t *fb = (const uint32_t *)cl->frameBuffer;
    for (int y = region_y; y < region_y + region_h && y < cl->height; y++)
        for (int x = 0; x < cl->width; x++) {
            uint32_t px = fb[(size_t)y * cl->width + x] & 0xffffff;
            for (int b = 0; b < 3; b++)
                h = (h ^ ((px >> (8 * b)) & 0xff)) * 16777619u;
        }
    return h;
}
static int got_frame;
static long long t0, t_first, t_last_update, max_gap, n_updates;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static rfbCredential *get_credential(rfbClient *cl, int type)
{
    (void)cl;
    rfbCredential *c = calloc(1, sizeof(*c));
    if (type == rfbCredentialTypeUser) {
        const char *pw = getenv("VDI_TEST_PASSWORD");
        c->userCredential.username = strdup(user);
        c->userCredential.password = strdup(pw ? pw : "");
    } else if (type == rfbCredentialTypeX509) {
        c->x509Credential.x509CACertFile = ca ? strdup(ca) : NULL;
        c->x509Credential.x509CrlVerifyMode = rfbX509CrlVerifyNone;
    } else {
        free(c);
        return NULL;
    }
    return c;
}

static void on_update(rfbClient *cl, int x, int y, int w, int h)
{
    if (getenv("VDI_TEST_VNC_DEBUG"))
        fprintf(stderr, "update %d,%d %dx%d px0=%08x\n", x, y, w, h,
                ((uint32_t *)cl->frameBuffer)[0]);
    if (!got_frame) {
        got_frame = 1;
        t_first = now_ms();
    }
    long long t = now_ms();
    if (t_last_update && t - t_last_update > max_gap)
        max_gap = t - t_last_update;
    t_last_update = t;
    n_updates++;
}

/* Pump messages for @ms milliseconds; returns 0, or -1 when the connection ended. */
static int pump(rfbClient *cl, long long ms)
{
    long long end = now_ms() + ms;
    while (now_ms() < end) {
        int n = WaitForMessage(cl, 20000);
        if (n < 0)
            return -1;
        if (n > 0 && !HandleRFBServerMessage(cl))
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *type = NULL;
    long long hold = 0, timeout = 10000, flood = 0, stall = 0, watch = 0;
    if (argc < 3) {
        fprintf(stderr, "usage: vdid_vncclient HOST:PORT USER [--ca CERT] [--type TEXT] "
                        "[--hold MS] [--timeout MS]\n");
        return 2;
    }
    user = argv[2];
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--ca") == 0)
            ca = argv[i + 1];
        else if (strcmp(argv[i], "--type") == 0)
            type = argv[i + 1];
        else if (strcmp(argv[i], "--hold") == 0)
            hold = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--timeout") == 0)
            timeout = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--flood") == 0)
            flood = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--stall") == 0)
            stall = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--watch") == 0)
            watch = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--region") == 0 && i + 2 < argc) {
            region_y = atoi(argv[i + 1]);
            region_h = atoi(argv[i + 2]);
            i++;
        }
    }
    signal(SIGPIPE, SIG_IGN); /* a server that closes is a result, not a crash */
    rfbEnableClientLogging = getenv("VDI_TEST_VNC_DEBUG") != NULL;
    rfbClient *cl = rfbGetClient(8, 3, 4);
    cl->GetCredential = get_credential;
    cl->GotFrameBufferUpdate = on_update;
    cl->canHandleNewFBSize = TRUE;
    /* Lossless encodings only: --type reads pixel values back. */
    cl->appData.encodingsString =
        getenv("VDI_TEST_VNC_ENC") ? getenv("VDI_TEST_VNC_ENC") : "zrle hextile zlib raw";
    /* VeNCrypt only: libvncclient picks it when the server offers nothing else. */
    char *hp = strdup(argv[1]);
    char *colon = strrchr(hp, ':');
    *colon = 0;
    cl->serverHost = strdup(hp);
    cl->serverPort = atoi(colon + 1);
    free(hp);
    t0 = now_ms();
    char *args[] = {argv[0], NULL};
    int one = 1;
    if (!rfbInitClient(cl, &one, args)) {
        /* rfbInitClient frees the client on failure */
        printf("error=login-or-connect-failed\n");
        return 3;
    }
    long long t_init = now_ms(); /* ServerInit received: login, TLS, PAM, broker done */
    if (stall && !flood) {
        /* A viewer that stops reading right after ServerInit. */
        printf("name=%s init_ms=%lld stalled\n", cl->desktopName ? cl->desktopName : "",
               t_init - t0);
        fflush(stdout);
        struct timespec ts = {(time_t)(stall / 1000), (long)(stall % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        rfbClientCleanup(cl);
        return 0;
    }
    int ended = 0;
    while (!got_frame && now_ms() - t0 < timeout) {
        if (pump(cl, 20) < 0) {
            ended = 1;
            break;
        }
        /* libvncclient waits with select() on the socket, which misses TLS records GnuTLS has
         * already read into its buffer: a message can sit there until more bytes arrive. Ask for
         * one pixel (always answered) so that something does. */
        if (!got_frame)
            SendFramebufferUpdateRequest(cl, 0, 0, 1, 1, FALSE);
    }
    printf("name=%s width=%d height=%d", cl->desktopName ? cl->desktopName : "", cl->width,
           cl->height);
    if (!got_frame) {
        printf(" first_frame_ms=none\n");
        rfbClientCleanup(cl);
        return ended ? 4 : 5;
    }
    printf(" first_frame_ms=%lld init_ms=%lld", t_first - t0, t_init - t0);
    uint32_t before = 0;
    if (region_y >= 0) {
        /* Let the screen settle (the full first frame may come in pieces). */
        for (int i = 0; i < 10; i++) {
            SendFramebufferUpdateRequest(cl, 0, 0, cl->width, cl->height, TRUE);
            pump(cl, 50);
        }
        before = region_hash(cl);
        region_dump(cl, "before");
        printf(" region_before=%08x", before);
    }
    if (type && region_y >= 0) {
        for (const char *c = type; *c; c++) {
            SendKeyEvent(cl, (uint32_t)(unsigned char)*c, TRUE);
            SendKeyEvent(cl, (uint32_t)(unsigned char)*c, FALSE);
        }
        uint32_t h = before;
        long long end = now_ms() + 5000;
        while (now_ms() < end && h == before) {
            SendFramebufferUpdateRequest(cl, 0, 0, cl->width, cl->height, TRUE);
            pump(cl, 50);
            h = region_hash(cl);
        }
        /* The rest of the keys: wait until the region stays the same for 400 ms. */
        long long stable_since = now_ms();
        end = now_ms() + 5000;
        while (now_ms() < end && now_ms() - stable_since < 400) {
            SendFramebufferUpdateRequest(cl, 0, 0, cl->width, cl->height, TRUE);
            pump(cl, 50);
            uint32_t h2 = region_hash(cl);
            if (h2 != h) {
                h = h2;
                stable_since = now_ms();
            }
        }
        printf(" region=%08x", region_hash(cl));
        region_dump(cl, "after");
    } else if (type) {
        for (const char *c = type; *c; c++) {
            SendKeyEvent(cl, (uint32_t)(unsigned char)*c, TRUE);
            SendKeyEvent(cl, (uint32_t)(unsigned char)*c, FALSE);
        }
        size_t n = strlen(type);
        char seen[256] = "";
        long long end = now_ms() + 5000;
        while (now_ms() < end) {
            SendFramebufferUpdateRequest(cl, 0, 0, cl->width, 1, TRUE);
            if (pump(cl, 50) < 0)
                break;
            /* The whole key row (earlier sessions' keys too), until it ends with @type. */
            uint32_t *fb = (uint32_t *)cl->frameBuffer;
            size_t i;
            for (i = 0; i < (size_t)cl->width && i < sizeof(seen) - 1 && (fb[i] & 0xffffff) &&
                        (fb[i] & 0xffffff) < 0x100;
                 i++)
                seen[i] = (char)(fb[i] & 0xff);
            seen[i] = 0;
            if (i >= n && strcmp(seen + i - n, type) == 0)
                break;
        }
        printf(" keys=%s", seen);
        if (strlen(seen) < n)
            printf(" pixel0=0x%08x", ((uint32_t *)cl->frameBuffer)[0]);
    }
    if (watch) {
        fflush(stdout);
        long long end = now_ms() + watch;
        n_updates = 0;
        max_gap = 0;
        t_last_update = now_ms();
        while (now_ms() < end) {
            /* Non-incremental: always answered, whether the screen changed or not. */
            SendFramebufferUpdateRequest(cl, 0, 0, cl->width, cl->height, FALSE);
            if (pump(cl, 20) < 0)
                break;
        }
        if (now_ms() - t_last_update > max_gap)
            max_gap = now_ms() - t_last_update;
        printf(" frames=%lld max_gap_ms=%lld", n_updates, max_gap);
    }
    printf("\n");
    fflush(stdout);
    if (flood) {
        for (long long i = 0; i < flood; i++)
            SendFramebufferUpdateRequest(cl, 0, 0, cl->width, cl->height, FALSE);
        struct timespec ts = {(time_t)(stall / 1000), (long)(stall % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (hold)
        pump(cl, hold);
    rfbClientCleanup(cl);
    return 0;
}
