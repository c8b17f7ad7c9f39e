/* vmm/serial-sink.c: where the guest's COM1 output goes, and how much of it.
 *
 * The threat: the guest writes whatever it likes, as fast as it likes, into a file an admin will
 * read with a pager or cat, on the volume that holds vdid's database. So every byte passes three
 * gates before it reaches the log:
 *  1. Sanitising: printable ASCII, \n and \t pass; \r is dropped (CRLF consoles); every other
 *     byte (ESC, BEL, the rest of C0, DEL, all of 0x80-0xff, which holds the C1 controls such as
 *     the 8-bit CSI 0x9b) is written as the four characters \xNN. No terminal escape sequence
 *     survives, whatever the guest sends.
 *  2. A rate limit: a token bucket of @rate bytes per second with a burst of VMM_SERIAL_BURST_S
 *     seconds' worth (a boot's messages fit). Output over it is dropped and counted; the count
 *     goes into the log as one "[vdi-vmm: serial output suppressed: N bytes ...]" line at most
 *     once per VMM_SERIAL_REPORT_MS.
 *  3. A cap on the log's size. With a log file (--serial-log, a regular file) the file is rotated
 *     when the next write would take it past @max_bytes: FILE becomes FILE.1 (replacing the old
 *     FILE.1) and a new FILE starts, so the output on disk never exceeds two files of @max_bytes.
 *     Anything else (stdout, which vdid points at the desktop's vmm.log, or a device) cannot be
 *     rotated: once this sink has written @max_bytes there (what others wrote to the file does
 *     not count) a notice says so and further output is only counted, and reported by one line
 *     per VMM_SERIAL_CAP_REPORT_MS while the guest keeps writing.
 * The guest never waits for any of this: the UART accepts every byte at once and the bytes that
 * do not pass are only counted. Counts are in guest bytes (before \xNN expansion).
 */
#define VDI_LOG_TAG "vmm"
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/internal.h"

#define CHUNK_IN       1024           /* guest bytes escaped per round */
#define NOTICE_RESERVE 256            /* room kept under the cap for the cap notice */
#define ESCAPED_MAX    (4 * CHUNK_IN) /* worst case of one round */

struct vmm_serial_sink {
    int fd;
    bool own_fd;
    char *path;         /* NULL: an fd we borrowed */
    bool rotate;        /* @path is a regular file: rotate at the cap */
    bool capped;        /* no rotation and the cap was reached: output is only counted now */
    uint64_t max, size; /* the cap; bytes in the current file (rotating) or in all (capped) */
    uint64_t rate, burst, milli_tokens, last_refill_ms;
    uint64_t pending; /* guest bytes suppressed since the last report */
    bool pending_rate, pending_cap;
    uint64_t last_report_ms;
    bool at_line_start;
    struct vmm_serial_stats st;
};

/* Raw write of all of @buf; a failure is logged (rate-limited) and the rest is lost. */
static void put(vmm_serial_sink_t *s, const char *buf, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(s->fd, buf + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            VDI_LOG_WARN_RL("serial log %s: write failed: %s; output lost",
                            s->path ? s->path : "(stdout)",
                            w < 0 ? strerror(errno) : "short write");
            break;
        }
        off += (size_t)w;
    }
    s->size += n;
    s->st.written += n;
    if (n)
        s->at_line_start = buf[n - 1] == '\n';
}

/* FILE -> FILE.1, a new FILE. On failure the sink stops rotating and caps instead. */
static void rotate(vmm_serial_sink_t *s)
{
    char *old = vdi_xasprintf("%s.1", s->path);
    int fd = -1, err = 0;
    if (rename(s->path, old) < 0)
        err = -errno;
    else if ((fd = open(s->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
                        0644)) < 0)
        err = -errno;
    if (err < 0) {
        VDI_LOG_WARN("serial log %s: cannot rotate to %s: %s; capping the log at %" PRIu64
                     " bytes instead",
                     s->path, old, vdi_strerror(err), s->max);
        s->rotate = false;
        free(old);
        return;
    }
    close(s->fd);
    s->fd = fd;
    s->size = 0;
    s->st.rotations++;
    free(old);
}

/* Make room for @n more bytes in a rotating log. */
static void room_for(vmm_serial_sink_t *s, size_t n)
{
    if (s->rotate && s->size + n > s->max && s->size > 0)
        rotate(s);
}

static void report(vmm_serial_sink_t *s, uint64_t now_ms)
{
    char line[200];
    int n = snprintf(
        line, sizeof(line), "%s[vdi-vmm: serial output suppressed: %" PRIu64 " bytes (%s%s%s)]\n",
        s->at_line_start ? "" : "\n", s->pending, s->pending_rate ? "over the rate limit" : "",
        s->pending_rate && s->pending_cap ? ", " : "", s->pending_cap ? "the log is full" : "");
    if (n < 0 || (size_t)n >= sizeof(line))
        return;
    if (!s->capped)
        room_for(s, (size_t)n);
    put(s, line, (size_t)n);
    s->pending = 0;
    s->pending_rate = s->pending_cap = false;
    s->last_report_ms = now_ms;
}

static void maybe_report(vmm_serial_sink_t *s, uint64_t now_ms)
{
    uint64_t every = s->capped ? VMM_SERIAL_CAP_REPORT_MS : VMM_SERIAL_REPORT_MS;
    if (s->pending && now_ms - s->last_report_ms >= every)
        report(s, now_ms);
}

/* The bucket counts thousandths of a byte, so a refill every millisecond at any rate adds up. */
static void refill(vmm_serial_sink_t *s, uint64_t now_ms)
{
    if (now_ms <= s->last_refill_ms)
        return;
    uint64_t dt = now_ms - s->last_refill_ms, cap = s->burst * 1000;
    s->milli_tokens = dt >= cap / s->rate ? cap : VDI_MIN(cap, s->milli_tokens + dt * s->rate);
    s->last_refill_ms = now_ms;
}

static void suppress(vmm_serial_sink_t *s, uint64_t n, bool by_cap)
{
    s->pending += n;
    if (by_cap) {
        s->pending_cap = true;
        s->st.dropped_cap += n;
    } else {
        s->pending_rate = true;
        s->st.dropped_rate += n;
    }
}

/* Escape one byte into @out (room for 4); returns the characters written. */
static size_t escape(uint8_t c, char *out)
{
    static const char hex[] = "0123456789abcdef";
    if ((c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t') {
        out[0] = (char)c;
        return 1;
    }
    if (c == '\r')
        return 0;
    out[0] = '\\';
    out[1] = 'x';
    out[2] = hex[c >> 4];
    out[3] = hex[c & 15];
    return 4;
}

void vmm__serial_sink_write(vmm_serial_sink_t *s, const void *data, size_t len, uint64_t now_ms)
{
    const uint8_t *in = data;
    char out[ESCAPED_MAX];
    s->st.guest_bytes += len;
    refill(s, now_ms);
    maybe_report(s, now_ms);
    while (len) {
        size_t take = VDI_MIN(len, (size_t)CHUNK_IN), used = 0, n = 0;
        if (s->capped) {
            suppress(s, len, true);
            break;
        }
        /* Room under the cap, for a log we cannot rotate; the notice has its reserve. */
        uint64_t room = UINT64_MAX;
        if (!s->rotate)
            room = s->size + NOTICE_RESERVE < s->max ? s->max - NOTICE_RESERVE - s->size : 0;
        uint64_t tokens = s->milli_tokens / 1000, budget = VDI_MIN(tokens, room);
        while (used < take) {
            char e[4];
            size_t k = escape(in[used], e);
            if (n + k > budget)
                break;
            memcpy(out + n, e, k);
            n += k;
            used++;
        }
        if (n) {
            room_for(s, n);
            put(s, out, n);
            s->milli_tokens -= 1000 * (uint64_t)n;
        }
        if (used < take) {
            /* Out of budget: the rest of this write is dropped and counted. */
            bool by_cap = room < tokens;
            suppress(s, len - used, by_cap);
            if (by_cap && !s->rotate) {
                char note[160];
                int m = snprintf(note, sizeof(note),
                                 "%s[vdi-vmm: serial log reached its cap of %" PRIu64
                                 " bytes; further output is suppressed]\n",
                                 s->at_line_start ? "" : "\n", s->max);
                if (m > 0 && (size_t)m < sizeof(note))
                    put(s, note, (size_t)m);
                s->capped = true;
                s->last_report_ms = now_ms;
            }
            break;
        }
        in += take;
        len -= take;
    }
}

void vmm__serial_sink_flush(vmm_serial_sink_t *s, uint64_t now_ms)
{
    if (s->pending)
        report(s, now_ms);
}

void vmm__serial_sink_stats(const vmm_serial_sink_t *s, struct vmm_serial_stats *st)
{
    *st = s->st;
}

int vmm__serial_sink_create(const struct vmm_serial_sink_opts *o, vmm_serial_sink_t **out)
{
    struct stat sb;
    if (o->max_bytes < VMM_SERIAL_LOG_MAX_MIN || o->rate == 0)
        return -EINVAL;
    vmm_serial_sink_t *s = vdi_xcalloc(1, sizeof(*s));
    s->fd = o->fd;
    if (o->path) {
        s->fd = open(o->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (s->fd < 0) {
            int err = -errno;
            free(s);
            return err;
        }
        s->own_fd = true;
        s->path = vdi_xstrdup(o->path);
    }
    /* Only a regular file can be renamed aside; a device, a FIFO or an inherited fd is capped. */
    if (s->path && fstat(s->fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
        s->rotate = true;
        s->size = (uint64_t)sb.st_size;
    }
    s->max = o->max_bytes;
    s->rate = o->rate;
    s->burst = o->rate * VMM_SERIAL_BURST_S;
    s->milli_tokens = s->burst * 1000;
    s->last_refill_ms = o->now_ms;
    s->last_report_ms = o->now_ms;
    s->at_line_start = true;
    *out = s;
    return 0;
}

void vmm__serial_sink_destroy(vmm_serial_sink_t *s, uint64_t now_ms)
{
    if (!s)
        return;
    vmm__serial_sink_flush(s, now_ms);
    if (s->own_fd)
        close(s->fd);
    free(s->path);
    free(s);
}
