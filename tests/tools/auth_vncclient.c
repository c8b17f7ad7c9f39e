/* tests/tools/auth_vncclient.c: a real RFB client for the auth tests, built on libvncclient (which
 * does VeNCrypt with GnuTLS, its own TLS library). Connects, logs in with VeNCrypt Plain, waits
 * for the first framebuffer update and checks the test server's pattern.
 *
 *   auth_vncclient HOST PORT USER PASSWORD [CAFILE]
 *
 * With CAFILE the server certificate must chain to it (and match HOST); without one, the
 * system's trust store is used (so our test certificates are refused). Exit 0 when the frame
 * arrived and matched, 1 when the connection or login failed (libvncclient logs why, including
 * the server's SecurityResult reason), 2 on usage errors, 3 on a wrong picture.
 */
#include <rfb/rfbclient.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *g_user, *g_pass, *g_ca;
static int g_frames;

static rfbCredential *get_credential(rfbClient *cl, int type)
{
    (void)cl;
    rfbCredential *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (type == rfbCredentialTypeX509) {
        c->x509Credential.x509CACertFile = g_ca ? strdup(g_ca) : NULL;
        return c;
    }
    if (type == rfbCredentialTypeUser) {
        c->userCredential.username = strdup(g_user);
        c->userCredential.password = strdup(g_pass);
        return c;
    }
    free(c);
    return NULL;
}

static void on_update_done(rfbClient *cl)
{
    (void)cl;
    g_frames++;
}

/* Read the pixel at (x, y) back as 8-bit r, g, b using the client's own pixel format. */
static void pixel(rfbClient *cl, int x, int y, unsigned *r, unsigned *g, unsigned *b)
{
    const rfbPixelFormat *f = &cl->format;
    int bytes = f->bitsPerPixel / 8;
    const uint8_t *p = cl->frameBuffer + (y * cl->width + x) * bytes;
    uint32_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint32_t)p[i] << (8 * i); /* the client's framebuffer is host (little) endian */
    *r = ((v >> f->redShift) & f->redMax) * 255 / f->redMax;
    *g = ((v >> f->greenShift) & f->greenMax) * 255 / f->greenMax;
    *b = ((v >> f->blueShift) & f->blueMax) * 255 / f->blueMax;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "Usage: auth_vncclient HOST PORT USER PASSWORD [CAFILE]\n");
        return 2;
    }
    g_user = argv[3];
    g_pass = argv[4];
    g_ca = argc == 6 ? argv[5] : NULL;
    rfbClient *cl = rfbGetClient(8, 3, 4);
    if (!cl)
        return 1;
    cl->serverHost = strdup(argv[1]);
    cl->serverPort = atoi(argv[2]);
    cl->GetCredential = get_credential;
    cl->FinishedFrameBufferUpdate = on_update_done;
    cl->canHandleNewFBSize = FALSE;
    if (!rfbInitClient(cl, NULL, NULL)) { /* frees cl */
        printf("vncclient: connection or login failed\n");
        return 1;
    }
    printf("vncclient: connected desktop=\"%s\" %dx%d\n", cl->desktopName, cl->width, cl->height);
    int rc = 1;
    for (int i = 0; i < 100 && g_frames == 0; i++) {
        int n = WaitForMessage(cl, 100000);
        if (n < 0 || (n > 0 && !HandleRFBServerMessage(cl)))
            break;
    }
    if (g_frames > 0) {
        unsigned r, g, b;
        pixel(cl, 10, 7, &r, &g, &b);
        if (cl->width == 64 && cl->height == 48 && r == 40 && g == 35 && b == 0x80) {
            printf("vncclient: frame ok\n");
            rc = 0;
        } else {
            printf("vncclient: wrong picture %dx%d pixel(10,7)=%u,%u,%u\n", cl->width, cl->height,
                   r, g, b);
            rc = 3;
        }
    } else {
        printf("vncclient: no framebuffer update arrived\n");
    }
    rfbClientCleanup(cl);
    return rc;
}
