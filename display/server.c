/* display/server.c: the display thread: libvncserver serving the guest's screen, and RFB input
 * forwarded to the virtual keyboard and tablet.
 *
 * One thread owns everything here: the libvncserver screen, its clients, the listening sockets
 * and the shadow copy of the screen. It never uses libvncserver's own threads. Its loop:
 *   - at each damage tick (DPY_DEFAULT_HZ), read the guest's mode and the framebuffer's dirty
 *     pages, narrow them to changed rectangles against the shadow (damage.c) and mark those
 *     modified; a mode change swaps in a new shadow (clients get DesktopSize). After 1/8 s
 *     without a change the tick slows to 8 Hz, until the next change or client input: each
 *     wake-up costs more than the idle tick's work;
 *   - rfbProcessEvents(screen, 0): read what clients sent, send what they asked for;
 *   - ppoll() on the listeners, the clients and a stop eventfd until the next tick.
 * We accept connections ourselves (libvncserver's accept path counts every possible fd) and hand
 * them over with rfbNewClient(), so the unix socket and TCP work the same way.
 *
 * The shadow keeps the guest's pixel layout (x8r8g8b8 little-endian: bytes B, G, R, X), which we
 * declare as the server pixel format, so damage detection is a plain memcmp/memcpy.
 */
#define VDI_LOG_TAG "display"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/input-event-codes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <rfb/rfb.h>
#include <rfb/rfbregion.h>

#include "common/vdi.h"
#include "display/dpy.h"
#include "display/internal.h"

#define QEMU_EXT_KEY_ENCODING   (-258) /* rfbEncodingQemuExtendedKeyEvent */
#define QEMU_CLIENT_MSG         255
#define QEMU_EXT_KEY_SUBTYPE    0
#define CLIENT_WRITE_TIMEOUT_MS 10000
/* After an eighth of a second without a change, tick at this period until the next change or
 * client input: an idle desktop then wakes us 8 times a second instead of 60 (a desktop clock
 * that changes once a second costs about 15 wake-ups). */
#define IDLE_PERIOD_NS 125000000ull
#define LISTEN_BACKLOG 16

struct client_state {
    dpy_display_t *d;
    uint32_t last_mask;
    uint32_t abs_x, abs_y;
    bool ext_key_ack;                   /* the QEMU extended key event acknowledgement is due */
    uint64_t keys[(KEY_CNT + 63) / 64]; /* keys this client holds down */
};

struct dpy_display {
    char *unix_path, *tcp, *name;
    unsigned hz;
    void (*ready_cb)(void *ctx);
    void *ready_ctx;

    const struct dpy_fb_source *src;
    void *src_ctx;
    const struct dpy_input_sink *sink;
    void *sink_ctx;

    rfbScreenInfoPtr screen;
    dpy__damage_t *dmg;
    bool have_mode;
    uint64_t generation;
    uint32_t width, height;
    uint64_t *pages;
    size_t pages_words;
    bool ready;
    bool active; /* client input or a new client since the last loop: tick at full rate */

    int listen_fd[2];
    int stop_fd;
    pthread_t thread;

    pthread_mutex_t stats_lock;
    struct dpy_stats stats;
};

/* ---- libvncserver's WebSocket sniffing ---------------------------------------------------- */
/* libvncserver 0.9.14 calls webSocketsCheck() (through its PLT) for every new client: it waits up
 * to 100 ms for the client to speak first, and if the bytes look like TLS or an HTTP GET it runs
 * a TLS or WebSocket handshake. Our sockets speak plain RFB only (vdid terminates TLS and
 * WebSockets), and RFB clients wait for the server's version, so the check only ever stalled this
 * thread for 100 ms per connection and exposed two more parsers. This definition takes its place
 * in the process (the library's own is interposed); the name is libvncserver's, not ours. */
rfbBool webSocketsCheck(rfbClientPtr cl);
rfbBool webSocketsCheck(rfbClientPtr cl)
{
    VDI_UNUSED(cl);
    return TRUE; /* a plain RFB connection */
}

/* ---- libvncserver's log ------------------------------------------------------------------- */
static void VDI_PRINTF(2, 0) rfb_vlog(int level, const char *fmt, va_list ap)
{
    char line[512];
    if (level > vdi_log_threshold)
        return;
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == ' '))
        line[--n] = '\0';
    /* rfbNewClient tries TCP_NODELAY on every socket; on the unix socket that fails, harmlessly */
    if (n == 0 || strstr(line, "TCP_NODELAY"))
        return;
    if (level == VDI_LOG_LEVEL_DEBUG)
        VDI_LOG_DEBUG("libvncserver: %s", line);
    else
        VDI_LOG_RL(VDI_LOG_LEVEL_INFO, "libvncserver: %s", line); /* client-triggerable */
}

static void VDI_PRINTF(1, 2) rfb_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rfb_vlog(VDI_LOG_LEVEL_DEBUG, fmt, ap);
    va_end(ap);
}

static void VDI_PRINTF(1, 2) rfb_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rfb_vlog(VDI_LOG_LEVEL_INFO, fmt, ap);
    va_end(ap);
}

/* ---- Input -------------------------------------------------------------------------------- */
static dpy_display_t *display_of(rfbClientPtr cl)
{
    return cl->screen->screenData;
}

static void send_key(dpy_display_t *d, struct client_state *cs, uint16_t code, bool down)
{
    d->active = true;
    if (code >= KEY_CNT)
        return;
    if (down)
        cs->keys[code / 64] |= 1ull << (code % 64);
    else
        cs->keys[code / 64] &= ~(1ull << (code % 64));
    if (d->sink && d->sink->key)
        d->sink->key(d->sink_ctx, code, down);
}

static void on_key(rfbBool down, rfbKeySym keysym, rfbClientPtr cl)
{
    struct client_state *cs = cl->clientData;
    uint16_t code = dpy__keysym_to_linux(keysym);

    if (!cs)
        return;
    if (code == 0) {
        VDI_LOG_RL(VDI_LOG_LEVEL_DEBUG, "client=%s keysym=0x%x has no key", cl->host,
                   (unsigned)keysym);
        return;
    }
    send_key(cs->d, cs, code, down);
}

static void on_pointer(int mask, int x, int y, rfbClientPtr cl)
{
    struct client_state *cs = cl->clientData;
    dpy_display_t *d = display_of(cl);
    struct dpy__pointer_event ev;

    if (!cs)
        return;
    d->active = true;
    x = x < 0 ? 0 : VDI_MIN((uint32_t)x, d->width - 1);
    y = y < 0 ? 0 : VDI_MIN((uint32_t)y, d->height - 1);
    ev = dpy__pointer_decode(cs->last_mask, (uint32_t)mask);
    cs->last_mask = (uint32_t)mask;
    cs->abs_x = dpy__scale_abs((uint32_t)x, d->width);
    cs->abs_y = dpy__scale_abs((uint32_t)y, d->height);
    if (d->sink && d->sink->pointer)
        d->sink->pointer(d->sink_ctx, cs->abs_x, cs->abs_y, ev.buttons);
    if ((ev.wheel_v || ev.wheel_h) && d->sink && d->sink->wheel)
        d->sink->wheel(d->sink_ctx, ev.wheel_v, ev.wheel_h);
    rfbDefaultPtrAddEvent(mask, x, y, cl); /* cursor position bookkeeping */
}

/* ---- QEMU extended key events (a libvncserver protocol extension) ------------------------- */
static int qemu_ext_encodings[] = {QEMU_EXT_KEY_ENCODING, 0};

static rfbBool qemu_ext_enable(rfbClientPtr cl, void **data, int encoding)
{
    struct client_state *cs = cl->clientData;

    VDI_UNUSED(data);
    if (encoding != QEMU_EXT_KEY_ENCODING)
        return FALSE;
    if (cs)
        cs->ext_key_ack = true; /* sent by send_ext_key_ack() */
    return TRUE;
}

/* The server acknowledges the QEMU extended key event pseudo-encoding with a FramebufferUpdate
 * holding one empty rectangle of that encoding (as QEMU does); clients send extended key events
 * only after it. We send it once libvncserver has sent the SupportedMessages pseudo-rectangle a
 * client asked for, because libvncclient replaces its idea of what the server supports with that
 * rectangle, ack included. Between our loop's calls no update is half-written. */
static void send_ext_key_ack(rfbClientPtr cl)
{
    struct client_state *cs = cl->clientData;
    uint8_t msg[sz_rfbFramebufferUpdateMsg + sz_rfbFramebufferUpdateRectHeader] = {0};
    uint32_t enc = htonl((uint32_t)QEMU_EXT_KEY_ENCODING);

    if (!cs || !cs->ext_key_ack || cl->enableSupportedMessages || cl->state != RFB_NORMAL ||
        cl->ublen > 0)
        return;
    cs->ext_key_ack = false;
    msg[0] = rfbFramebufferUpdate;
    msg[3] = 1; /* one rectangle; x, y, w, h all 0 */
    memcpy(msg + sz_rfbFramebufferUpdateMsg + 8, &enc, 4);
    if (rfbWriteExact(cl, (char *)msg, sizeof(msg)) < 0)
        rfbCloseClient(cl);
}

static rfbBool qemu_ext_message(rfbClientPtr cl, void *data, const rfbClientToServerMsg *msg)
{
    struct client_state *cs = cl->clientData;
    uint8_t buf[sz_rfbQemuExtendedKeyEventMsg];
    int n;

    VDI_UNUSED(data);
    if (msg->type != QEMU_CLIENT_MSG)
        return FALSE;
    n = rfbReadExact(cl, (char *)buf + 1, 1);
    if (n > 0 && buf[1] != QEMU_EXT_KEY_SUBTYPE) {
        VDI_LOG_RL(VDI_LOG_LEVEL_INFO, "client=%s unknown QEMU message subtype %u, dropping it",
                   cl->host, buf[1]);
        rfbCloseClient(cl);
        return TRUE;
    }
    if (n > 0)
        n = rfbReadExact(cl, (char *)buf + 2, sizeof(buf) - 2);
    if (n <= 0) {
        rfbCloseClient(cl); /* truncated message or error; libvncserver logged the cause */
        return TRUE;
    }
    uint16_t down;
    uint32_t keysym, keycode;
    memcpy(&down, buf + 2, 2);
    memcpy(&keysym, buf + 4, 4);
    memcpy(&keycode, buf + 8, 4);
    down = ntohs(down);
    keysym = ntohl(keysym);
    keycode = ntohl(keycode);
    uint16_t code = dpy__xtkbd_to_linux(keycode);
    if (code == 0)
        code = dpy__keysym_to_linux(keysym);
    if (code == 0) {
        VDI_LOG_RL(VDI_LOG_LEVEL_DEBUG, "client=%s keycode=0x%x keysym=0x%x has no key", cl->host,
                   keycode, keysym);
        return TRUE;
    }
    if (cs)
        send_key(cs->d, cs, code, down != 0);
    return TRUE;
}

static rfbProtocolExtension qemu_ext = {
    .pseudoEncodings = qemu_ext_encodings,
    .enablePseudoEncoding = qemu_ext_enable,
    .handleMessage = qemu_ext_message,
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    rfbLog = rfb_log;
    rfbErr = rfb_err;
    rfbMaxClientWait = CLIENT_WRITE_TIMEOUT_MS;
    rfbRegisterProtocolExtension(&qemu_ext);
}

/* ---- Clients ------------------------------------------------------------------------------ */
static bool channel_ok(unsigned max, unsigned shift, unsigned bpp)
{
    /* max must be 2^n - 1 with n >= 1, and the channel must fit in the pixel */
    if (max == 0 || (max & (max + 1)) != 0 || shift >= bpp)
        return false;
    return shift + (unsigned)__builtin_popcount(max) <= bpp;
}

/* Every SetPixelFormat ends here: refuse nonsense before libvncserver builds tables from it. */
static rfbBool on_set_format(rfbClientPtr cl)
{
    const rfbPixelFormat *f = &cl->format;
    unsigned bpp = f->bitsPerPixel;
    bool ok = (bpp == 8 || bpp == 16 || bpp == 32) && f->depth >= 1 && f->depth <= bpp;

    if (ok && f->trueColour)
        ok = channel_ok(f->redMax, f->redShift, bpp) &&
             channel_ok(f->greenMax, f->greenShift, bpp) &&
             channel_ok(f->blueMax, f->blueShift, bpp);
    else if (ok)
        ok = bpp == 8; /* colour maps only at 8 bpp */
    if (!ok) {
        VDI_LOG_RL(VDI_LOG_LEVEL_INFO,
                   "client=%s bad pixel format bpp=%u depth=%u true-colour=%u max=%u/%u/%u "
                   "shift=%u/%u/%u, dropping it",
                   cl->host, bpp, f->depth, f->trueColour ? 1 : 0, f->redMax, f->greenMax,
                   f->blueMax, f->redShift, f->greenShift, f->blueShift);
        rfbCloseClient(cl);
        return FALSE;
    }
    return rfbSetTranslateFunction(cl);
}

static void stats_add_clients(dpy_display_t *d, int delta)
{
    pthread_mutex_lock(&d->stats_lock);
    d->stats.clients = (uint32_t)((int)d->stats.clients + delta);
    if (delta > 0)
        d->stats.clients_total++;
    pthread_mutex_unlock(&d->stats_lock);
}

static void on_client_gone(rfbClientPtr cl)
{
    struct client_state *cs = cl->clientData;
    dpy_display_t *d = display_of(cl);

    if (!cs)
        return;
    /* Release what this client held, so the guest does not see a stuck key or button. */
    for (uint16_t code = 0; code < KEY_CNT; code++)
        if (cs->keys[code / 64] >> (code % 64) & 1)
            send_key(d, cs, code, false);
    if ((cs->last_mask & 7) && d->sink && d->sink->pointer)
        d->sink->pointer(d->sink_ctx, cs->abs_x, cs->abs_y, 0);
    /* libvncserver 0.9.14 frees neither its per-client extension records nor (through
     * rfbDisableExtension) unlinked ones: free ours here. */
    for (rfbExtensionData **pp = &cl->extensions; *pp;) {
        rfbExtensionData *e = *pp;
        if (e->extension == &qemu_ext) {
            *pp = e->next;
            free(e);
        } else {
            pp = &e->next;
        }
    }
    VDI_LOG_DEBUG("client=%s disconnected", cl->host);
    free(cs);
    cl->clientData = NULL;
    stats_add_clients(d, -1);
}

/* Called by libvncserver before each update it sends a client (before any DesktopSize). */
static void on_update(rfbClientPtr cl)
{
    /* Tight JPEG: libvncserver follows TurboVNC's table, where quality levels 6-9 mean 4:4:4
     * chroma. Tight only uses JPEG for regions of many colours (pictures, video), where 4:2:0
     * looks the same and costs about a third less; QEMU's VNC server sends 4:2:0 too. A client
     * that wants 4:2:2 or greyscale still gets it (subsampling levels 2 and 3). */
    if (cl->turboSubsampLevel == TURBO_DEFAULT_SUBSAMP)
        cl->turboSubsampLevel = 1; /* libvncserver's index for 4:2:0 */
    /* Mode changes go out as plain DesktopSize to clients that know both: a libvncclient 0.9.14
     * Tight client that got ExtendedDesktopSize while an update request of the old size was
     * outstanding sometimes stalled; after DesktopSize it asks for the whole new screen. We do
     * not support client-requested resizes (the guest picks the mode), so nothing is lost. */
    if (cl->useNewFBSize)
        cl->useExtDesktopSize = FALSE;
}

static enum rfbNewClientAction on_new_client(rfbClientPtr cl)
{
    dpy_display_t *d = display_of(cl);
    struct client_state *cs = calloc(1, sizeof(*cs));

    if (!cs)
        return RFB_CLIENT_REFUSE;
    cs->d = d;
    cl->clientData = cs;
    cl->clientGoneHook = on_client_gone;
    d->active = true;
    stats_add_clients(d, +1);
    VDI_LOG_DEBUG("client=%s connected", cl->host);
    return RFB_CLIENT_ACCEPT;
}

static void accept_clients(dpy_display_t *d, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                VDI_LOG_WARN_RL("accept on the display listener failed: %s", strerror(errno));
            return;
        }
        uint32_t n;
        pthread_mutex_lock(&d->stats_lock);
        n = d->stats.clients;
        pthread_mutex_unlock(&d->stats_lock);
        if (n >= DPY_MAX_CLIENTS || fd >= FD_SETSIZE) {
            /* libvncserver select()s on its clients: no fd beyond FD_SETSIZE */
            VDI_LOG_WARN_RL("refusing RFB client: %s",
                            n >= DPY_MAX_CLIENTS ? "too many clients" : "fd beyond FD_SETSIZE");
            close(fd);
            continue;
        }
        rfbNewClient(d->screen, fd); /* takes the fd; closes it itself on failure */
    }
}

/* ---- Damage ------------------------------------------------------------------------------- */
static void set_server_format(rfbScreenInfoPtr s)
{
    /* x8r8g8b8 little-endian, as bochs-display scans out */
    s->serverFormat.redShift = 16;
    s->serverFormat.greenShift = 8;
    s->serverFormat.blueShift = 0;
}

struct rect_acc {
    sraRegionPtr region;
};

static void add_rect(void *ctx, uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
    struct rect_acc *acc = ctx;
    sraRegionPtr r = sraRgnCreateRect((int)x, (int)y, (int)(x + w), (int)(y + h));
    sraRgnOr(acc->region, r);
    sraRgnDestroy(r);
}

static bool mode_valid(const struct dpy_mode *m)
{
    return m->pixels && m->width > 0 && m->height > 0 && m->width <= DPY_MAX_WIDTH &&
           m->height <= DPY_MAX_HEIGHT && m->stride >= m->width * 4 && m->stride % 4 == 0;
}

/* Replace the shadow with one of the new size; clients get DesktopSize. */
static int take_mode(dpy_display_t *d, const struct dpy_mode *m)
{
    dpy__damage_t *nd;
    int err = dpy__damage_create(m->width, m->height, &nd);

    if (err < 0) {
        VDI_LOG_ERR_RL("cannot allocate a %ux%u shadow framebuffer: %s", m->width, m->height,
                       vdi_strerror(err));
        return err;
    }
    rfbNewFramebuffer(d->screen, (char *)dpy__damage_shadow(nd), (int)m->width, (int)m->height, 8,
                      3, 4);
    /* rfbNewFramebuffer resets the format to its own default; put ours back and redo the
     * clients' translation from it. */
    set_server_format(d->screen);
    rfbClientIteratorPtr it = rfbGetClientIterator(d->screen);
    rfbClientPtr cl;
    while ((cl = rfbClientIteratorNext(it)))
        if (cl->sock != RFB_INVALID_SOCKET)
            d->screen->setTranslateFunction(cl);
    rfbReleaseClientIterator(it);
    dpy__damage_destroy(d->dmg);
    d->dmg = nd;
    d->width = m->width;
    d->height = m->height;
    d->generation = m->generation;
    d->have_mode = true;
    VDI_LOG_RL(VDI_LOG_LEVEL_INFO, "mode %ux%u stride=%u", m->width, m->height, m->stride);
    pthread_mutex_lock(&d->stats_lock);
    d->stats.mode_changes++;
    d->stats.width = m->width;
    d->stats.height = m->height;
    pthread_mutex_unlock(&d->stats_lock);
    return 0;
}

/* One damage pass. Returns true if the guest wrote to the framebuffer or changed mode. */
static bool tick(dpy_display_t *d)
{
    struct dpy_mode m = {0};
    bool full = false, changed = false;
    uint64_t ndirty = 0;

    if (!d->src->get_mode(d->src_ctx, &m) || !mode_valid(&m)) {
        if (d->have_mode)
            VDI_LOG_RL(VDI_LOG_LEVEL_INFO,
                       "guest scan-out off or invalid (%ux%u stride=%u); keeping the last frame",
                       m.width, m.height, m.stride);
        d->have_mode = false;
        goto out;
    }
    if (!d->have_mode || m.generation != d->generation || m.width != d->width ||
        m.height != d->height) {
        if (take_mode(d, &m) < 0)
            goto out;
        full = true;
        changed = true;
    }

    uint32_t page_off = 0; /* the source counts pages from mode.pixels (dpy.h) */
    size_t npages = dpy__fb_pages(page_off, m.stride, m.height);
    size_t words = (npages + 63) / 64;
    if (words > d->pages_words) {
        uint64_t *p = vdi_tryrealloc(d->pages, words * sizeof(uint64_t));
        if (!p) {
            VDI_LOG_ERR_RL("out of memory for the dirty bitmap (%zu pages)", npages);
            goto out;
        }
        d->pages = p;
        d->pages_words = words;
    }
    memset(d->pages, 0, words * sizeof(uint64_t));
    /* Read (and reset) the dirty log before comparing: a write that lands during the compare
     * shows up in the next tick's log. */
    int err = d->src->get_dirty(d->src_ctx, d->pages, npages);
    if (err < 0) {
        VDI_LOG_WARN_RL("source=%s dirty log failed: %s; comparing the whole screen",
                        d->src->name ? d->src->name : "?", vdi_strerror(err));
        full = true;
    }
    if (!full) {
        for (size_t i = 0; i < words; i++)
            ndirty += (uint64_t)__builtin_popcountll(d->pages[i]);
        if (ndirty == 0)
            goto out; /* idle: nothing read, nothing compared */
    }
    changed = true;

    struct rect_acc acc = {.region = sraRgnCreate()};
    struct dpy__damage_stats st;
    dpy__damage_update(d->dmg, m.pixels, m.stride, full ? NULL : d->pages, npages, page_off,
                       add_rect, &acc, &st);
    if (st.rects)
        rfbMarkRegionAsModified(d->screen, acc.region);
    sraRgnDestroy(acc.region);

    pthread_mutex_lock(&d->stats_lock);
    d->stats.dirty_pages += full ? npages : ndirty;
    d->stats.lines_compared += st.lines_compared;
    d->stats.rects += st.rects;
    if (st.rects)
        d->stats.updates++;
    pthread_mutex_unlock(&d->stats_lock);

    if (st.nonblank && !d->ready) {
        d->ready = true;
        pthread_mutex_lock(&d->stats_lock);
        d->stats.ready = true;
        pthread_mutex_unlock(&d->stats_lock);
        VDI_LOG_INFO("first non-blank frame");
        if (d->ready_cb)
            d->ready_cb(d->ready_ctx);
    }
out:
    pthread_mutex_lock(&d->stats_lock);
    d->stats.ticks++;
    pthread_mutex_unlock(&d->stats_lock);
    return changed;
}

/* ---- The thread --------------------------------------------------------------------------- */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *display_thread(void *arg)
{
    dpy_display_t *d = arg;
    uint64_t period = 1000000000ull / d->hz;
    uint64_t idle_period = VDI_MAX(period, IDLE_PERIOD_NS);
    uint64_t next_tick = now_ns();
    unsigned quiet = 0; /* ticks in a row without a change */
    struct pollfd pfd[3 + DPY_MAX_CLIENTS];
    sigset_t pipe_set;

    /* A write to a client that went away raises SIGPIPE in the writing thread; blocked here, it
     * stays pending and write() returns EPIPE, without changing the process's disposition. */
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);

    for (;;) {
        uint64_t now = now_ns();
        if (now >= next_tick) {
            unsigned idle_after = VDI_MAX(d->hz / 8, 1u);
            quiet = tick(d) ? 0 : quiet + (quiet < idle_after);
            uint64_t p = quiet >= idle_after ? idle_period : period;
            next_tick += p;
            if (next_tick <= now)
                next_tick = now + p; /* we fell behind: do not try to catch up */
        }
        rfbProcessEvents(d->screen, 0);
        if (d->active) {
            /* input (or a new client) usually makes the guest draw: look again soon */
            d->active = false;
            quiet = 0;
            next_tick = VDI_MIN(next_tick, now_ns() + period);
        }

        nfds_t n = 0;
        pfd[n++] = (struct pollfd){.fd = d->stop_fd, .events = POLLIN};
        for (int i = 0; i < 2; i++)
            if (d->listen_fd[i] >= 0)
                pfd[n++] = (struct pollfd){.fd = d->listen_fd[i], .events = POLLIN};
        nfds_t first_client = n;
        rfbClientIteratorPtr it = rfbGetClientIterator(d->screen);
        rfbClientPtr cl;
        while ((cl = rfbClientIteratorNext(it)) && n < VDI_ARRAY_SIZE(pfd)) {
            if (cl->sock != RFB_INVALID_SOCKET)
                send_ext_key_ack(cl);
            if (cl->sock != RFB_INVALID_SOCKET)
                pfd[n++] = (struct pollfd){.fd = cl->sock, .events = POLLIN};
        }
        rfbReleaseClientIterator(it);

        now = now_ns();
        uint64_t wait = next_tick > now ? next_tick - now : 0;
        struct timespec ts = {.tv_sec = (time_t)(wait / 1000000000ull),
                              .tv_nsec = (long)(wait % 1000000000ull)};
        int r = ppoll(pfd, n, &ts, NULL);
        if (r < 0 && errno != EINTR) {
            VDI_LOG_ERR("display thread: ppoll failed: %s", strerror(errno));
            break;
        }
        if (r <= 0)
            continue;
        if (pfd[0].revents)
            break;
        for (nfds_t i = 1; i < first_client; i++)
            if (pfd[i].revents & POLLIN)
                accept_clients(d, pfd[i].fd);
    }

    rfbShutdownServer(d->screen, TRUE);
    return NULL;
}

/* ---- Listeners ---------------------------------------------------------------------------- */
static int listen_unix(const char *path, int *out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    int fd, err;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        err = -errno;
        if (err != -EADDRINUSE)
            goto err_close;
        /* Something is there: replace it only if it is a socket nobody listens on. */
        if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
            err = -EEXIST;
            goto err_close;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0) {
            err = -errno;
            goto err_close;
        }
        int c = connect(probe, (struct sockaddr *)&sa, sizeof(sa));
        int cerr = errno;
        close(probe);
        if (c == 0 || cerr != ECONNREFUSED) {
            err = -EADDRINUSE;
            goto err_close;
        }
        if (unlink(path) < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            err = -errno;
            goto err_close;
        }
    }
    /* Nobody can connect before listen(), so tightening the mode here leaves no window. */
    if (chmod(path, 0600) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        err = -errno;
        unlink(path);
        goto err_close;
    }
    *out = fd;
    return 0;
err_close:
    close(fd);
    return err;
}

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

static int listen_tcp(const char *spec, int *out)
{
    char host[128];
    const char *port;
    const char *colon = strrchr(spec, ':');
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai;
    uint64_t portnum;
    int fd, err, one = 1;

    if (!colon) {
        snprintf(host, sizeof(host), "127.0.0.1");
        port = spec;
    } else {
        size_t hl = (size_t)(colon - spec);
        const char *h = spec;
        if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']') {
            h++;
            hl -= 2;
        }
        if (hl == 0 || hl >= sizeof(host))
            return VDI_ECONFIG;
        memcpy(host, h, hl);
        host[hl] = '\0';
        port = colon + 1;
    }
    if (vdi_parse_u64(port, 1, 65535, &portnum) < 0)
        return VDI_ECONFIG;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return VDI_ECONFIG;
    if (!is_loopback(ai->ai_addr))
        VDI_LOG_WARN("display TCP listener on %s is not loopback-only: anyone who reaches it "
                     "gets the desktop without authentication",
                     spec);
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        err = -errno;
        goto err_free;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        err = -errno;
        close(fd);
        goto err_free;
    }
    freeaddrinfo(ai);
    *out = fd;
    return 0;
err_free:
    freeaddrinfo(ai);
    return err;
}

/* ---- Public ------------------------------------------------------------------------------- */
int dpy_display_create(const struct dpy_config *cfg, const struct dpy_fb_source *src, void *src_ctx,
                       const struct dpy_input_sink *sink, void *sink_ctx, dpy_display_t **out)
{
    dpy_display_t *d;
    uint32_t w = cfg->initial_width ? cfg->initial_width : 640;
    uint32_t h = cfg->initial_height ? cfg->initial_height : 480;
    int err;

    if (!src || !src->get_mode || !src->get_dirty)
        return -EINVAL;
    if ((!cfg->unix_path && !cfg->tcp) || cfg->hz > DPY_MAX_HZ || w > DPY_MAX_WIDTH ||
        h > DPY_MAX_HEIGHT)
        return VDI_ECONFIG;
    pthread_once(&global_once, global_init);

    d = vdi_xcalloc(1, sizeof(*d));
    d->listen_fd[0] = d->listen_fd[1] = -1;
    d->hz = cfg->hz ? cfg->hz : DPY_DEFAULT_HZ;
    d->ready_cb = cfg->ready;
    d->ready_ctx = cfg->ready_ctx;
    d->src = src;
    d->src_ctx = src_ctx;
    d->sink = sink;
    d->sink_ctx = sink_ctx;
    d->name = vdi_xstrdup(cfg->desktop_name ? cfg->desktop_name : "vdi");
    pthread_mutex_init(&d->stats_lock, NULL);

    err = dpy__damage_create(w, h, &d->dmg);
    if (err < 0)
        goto err_free;
    d->width = w;
    d->height = h;
    d->stats.width = w;
    d->stats.height = h;

    d->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (d->stop_fd < 0) {
        err = -errno;
        goto err_damage;
    }
    if (cfg->unix_path) {
        err = listen_unix(cfg->unix_path, &d->listen_fd[0]);
        if (err < 0) {
            VDI_LOG_ERR("display socket %s: %s", cfg->unix_path, vdi_strerror(err));
            goto err_listen;
        }
        d->unix_path = vdi_xstrdup(cfg->unix_path);
    }
    if (cfg->tcp) {
        err = listen_tcp(cfg->tcp, &d->listen_fd[1]);
        if (err < 0) {
            VDI_LOG_ERR("display TCP listener %s: %s", cfg->tcp,
                        err == VDI_ECONFIG ? "expected PORT, HOST:PORT or [V6]:PORT with a "
                                             "numeric host"
                                           : vdi_strerror(err));
            goto err_listen;
        }
        d->tcp = vdi_xstrdup(cfg->tcp);
    }

    d->screen = rfbGetScreen(NULL, NULL, (int)w, (int)h, 8, 3, 4);
    if (!d->screen) {
        err = -ENOMEM;
        goto err_listen;
    }
    d->screen->screenData = d;
    d->screen->frameBuffer = (char *)dpy__damage_shadow(d->dmg);
    d->screen->desktopName = d->name;
    d->screen->port = 0; /* we listen ourselves */
    d->screen->ipv6port = 0;
    d->screen->httpPort = 0;
    d->screen->autoPort = FALSE;
    d->screen->ignoreSIGPIPE = FALSE;
    d->screen->deferUpdateTime = 0; /* the damage tick already batches */
    d->screen->cursor = NULL;       /* no server-drawn cursor: the guest draws its own */
    d->screen->kbdAddEvent = on_key;
    d->screen->ptrAddEvent = on_pointer;
    d->screen->newClientHook = on_new_client;
    d->screen->displayHook = on_update;
    d->screen->setTranslateFunction = on_set_format;
    set_server_format(d->screen);
    rfbInitServer(d->screen);

    err = -pthread_create(&d->thread, NULL, display_thread, d);
    if (err < 0)
        goto err_screen;
    pthread_setname_np(d->thread, "vdi-display");
    VDI_LOG_INFO("RFB display on%s%s%s%s, %u Hz", d->unix_path ? " unix:" : "",
                 d->unix_path ? d->unix_path : "", d->tcp ? " tcp:" : "", d->tcp ? d->tcp : "",
                 d->hz);
    *out = d;
    return 0;

err_screen:
    rfbScreenCleanup(d->screen);
err_listen:
    for (int i = 0; i < 2; i++)
        if (d->listen_fd[i] >= 0)
            close(d->listen_fd[i]);
    if (d->unix_path)
        unlink(d->unix_path);
    close(d->stop_fd);
err_damage:
    dpy__damage_destroy(d->dmg);
err_free:
    pthread_mutex_destroy(&d->stats_lock);
    free(d->unix_path);
    free(d->tcp);
    free(d->name);
    free(d);
    return err;
}

void dpy_display_destroy(dpy_display_t *d)
{
    uint64_t one = 1;

    if (!d)
        return;
    if (write(d->stop_fd, &one, sizeof(one)) < 0)
        VDI_LOG_ERR("cannot stop the display thread: %s", strerror(errno));
    pthread_join(d->thread, NULL);
    rfbScreenCleanup(d->screen);
    for (int i = 0; i < 2; i++)
        if (d->listen_fd[i] >= 0)
            close(d->listen_fd[i]);
    if (d->unix_path)
        unlink(d->unix_path);
    close(d->stop_fd);
    dpy__damage_destroy(d->dmg);
    free(d->pages);
    pthread_mutex_destroy(&d->stats_lock);
    free(d->unix_path);
    free(d->tcp);
    free(d->name);
    free(d);
}

void dpy_display_stats(dpy_display_t *d, struct dpy_stats *out)
{
    pthread_mutex_lock(&d->stats_lock);
    *out = d->stats;
    pthread_mutex_unlock(&d->stats_lock);
}
