/* tests/tools/vdid_vncclient.c: a real RFB viewer (libvncclient) for vdid's end-to-end tests and
 * the login benchmark. It logs in over VeNCrypt X509Plain (password from $VDI_TEST_PASSWORD),
 * waits for the first FramebufferUpdate, optionally types keys, and prints what it saw:
 *
 *   name=DESKTOP-NAME width=W height=H first_frame_ms=N [keys=TEXT]
 *
 * Usage: vdid_vncclient HOST:PORT USER [--ca CERT] [--type TEXT] [--hold MS] [--timeout MS]
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
static int got_frame;
static long long t0, t_first;

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
    long long hold = 0, timeout = 10000;
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
    printf(" first_frame_ms=%lld", t_first - t0);
    if (type) {
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
    printf("\n");
    fflush(stdout);
    if (hold)
        pump(cl, hold);
    rfbClientCleanup(cl);
    return 0;
}
