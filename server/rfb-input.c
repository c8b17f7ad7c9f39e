/* server/rfb-input.c: what in a viewer's byte stream is a person at the keyboard. The gateway and
 * the browser console splice a viewer's RFB bytes to the desktop unparsed; idle_timeout must
 * count only real input (keys, pointer moves and clicks, clipboard), not the update requests
 * every viewer sends on its own. So this follows the client-to-server message framing (RFC 6143
 * §7.5 and the extensions viewers use) without keeping any message, and says which chunks held
 * input.
 *
 * A message type it does not know cannot be framed: from then on every chunk counts as input (a
 * viewer that speaks something new is never timed out for it). Nothing here allocates; a
 * message's payload (a cut text of any length) is skipped as it streams by.
 */
#include <string.h>

#include "common/vdi.h"
#include "server/internal.h"

enum {
    MSG_SET_PIXEL_FORMAT = 0,
    MSG_SET_ENCODINGS = 2,
    MSG_UPDATE_REQUEST = 3,
    MSG_KEY = 4,
    MSG_POINTER = 5,
    MSG_CUT_TEXT = 6,
    MSG_CONTINUOUS_UPDATES = 150,
    MSG_FENCE = 248,
    MSG_XVP = 250,
    MSG_SET_DESKTOP_SIZE = 251,
    MSG_QEMU = 255,
};

void srv__rfbin_init(srv_rfbin_t *f, size_t handshake)
{
    memset(f, 0, sizeof(*f));
    f->skip = handshake;
}

static uint32_t be16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* With hdr[0..have) of a message: 0 and *total set when its length is known, 1 when more header
 * bytes are needed, -1 for a type we cannot frame. */
static int frame(const srv_rfbin_t *f, uint64_t *total)
{
    const uint8_t *h = f->hdr;
    switch (h[0]) {
    case MSG_SET_PIXEL_FORMAT:
        *total = 20;
        return 0;
    case MSG_UPDATE_REQUEST:
    case MSG_CONTINUOUS_UPDATES:
        *total = 10;
        return 0;
    case MSG_KEY:
        *total = 8;
        return 0;
    case MSG_POINTER:
        *total = 6;
        return 0;
    case MSG_XVP:
        *total = 4;
        return 0;
    case MSG_SET_ENCODINGS:
        if (f->have < 4)
            return 1;
        *total = 4 + 4 * (uint64_t)be16(h + 2);
        return 0;
    case MSG_CUT_TEXT: {
        if (f->have < 8)
            return 1;
        int32_t len = (int32_t)be32(h + 4); /* negative: Extended Clipboard, -len bytes */
        *total = 8 + (len < 0 ? (uint64_t) - (int64_t)len : (uint64_t)len);
        return 0;
    }
    case MSG_FENCE:
        if (f->have < 9)
            return 1;
        *total = 9 + (uint64_t)h[8];
        return 0;
    case MSG_SET_DESKTOP_SIZE:
        if (f->have < 8)
            return 1;
        *total = 8 + 16 * (uint64_t)h[6];
        return 0;
    case MSG_QEMU:
        if (f->have < 2)
            return 1;
        if (h[1] == 0) { /* extended key event */
            *total = 12;
            return 0;
        }
        if (h[1] == 1) { /* audio: enable, disable (4 bytes), set format (10) */
            if (f->have < 4)
                return 1;
            uint32_t op = be16(h + 2);
            if (op > 2)
                return -1;
            *total = op == 2 ? 10 : 4;
            return 0;
        }
        return -1;
    default:
        return -1;
    }
}

/* A whole header is in: whether this message is a person's input. */
static bool is_input(srv_rfbin_t *f)
{
    const uint8_t *h = f->hdr;
    switch (h[0]) {
    case MSG_KEY:
    case MSG_CUT_TEXT:
        return true;
    case MSG_QEMU:
        return h[1] == 0;
    case MSG_POINTER: {
        /* A pointer event that neither moves nor clicks is not a person. */
        uint8_t b = h[1];
        uint32_t x = be16(h + 2), y = be16(h + 4);
        bool moved = !f->have_ptr || x != f->px || y != f->py || b != f->pb;
        f->have_ptr = true;
        f->px = (uint16_t)x;
        f->py = (uint16_t)y;
        f->pb = b;
        return moved;
    }
    default:
        return false;
    }
}

bool srv__rfbin_feed(srv_rfbin_t *f, const uint8_t *data, size_t len)
{
    bool input = false;
    if (f->lost)
        return len > 0;
    while (len > 0) {
        if (f->skip) {
            size_t n = f->skip < len ? (size_t)f->skip : len;
            f->skip -= n;
            data += n;
            len -= n;
            continue;
        }
        f->hdr[f->have++] = *data++;
        len--;
        uint64_t total = 0;
        int r = frame(f, &total);
        if (r < 0) {
            f->lost = true;
            return true;
        }
        if (r == 1)
            continue;
        /* Key, pointer and QEMU messages are judged whole (12 bytes at most); the rest as soon
         * as their length is known, and their remaining bytes skipped as they stream by. */
        uint8_t t = f->hdr[0];
        if ((t == MSG_KEY || t == MSG_POINTER || t == MSG_QEMU) && f->have < total)
            continue;
        input |= is_input(f);
        f->skip = total - f->have;
        f->have = 0;
    }
    return input;
}
