/* display/dpy.h: the desktop's screen and input, served as RFB (prefix dpy_).
 *
 * The contract with the VMM: the VMM's display device is a dpy_fb_source the display thread
 * reads, and its virtio keyboard and tablet are a dpy_input_sink the display thread writes.
 */
#ifndef VDI_DISPLAY_DPY_H
#define VDI_DISPLAY_DPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The guest's current scan-out. @pixels is 32 bpp, x8r8g8b8 little-endian (bochs-display's
 * format), @stride bytes per line. Valid until the next get_mode() call. */
struct dpy_mode {
    uint32_t width, height, stride;
    void *pixels;
    uint64_t generation; /* changes whenever the mode (size, stride, base) changes */
};

/* Implemented by the VMM's display device; called on the display thread. */
struct dpy_fb_source {
    const char *name;
    /* Fill @mode; returns false while the guest has no mode enabled. */
    bool (*get_mode)(void *ctx, struct dpy_mode *mode);
    /* Set bit i of @bitmap if any of the framebuffer's bytes [4096 i, 4096 (i + 1)), counted
     * from mode.pixels, was written since the last call (and clear the record). @bitmap holds
     * ceil(npages/64) words, zeroed by the caller. Returns 0 or -errno (then the caller treats
     * every page as dirty). */
    int (*get_dirty)(void *ctx, uint64_t *bitmap, size_t npages);
};

/* Absolute pointer axes run from 0 to DPY_ABS_MAX on both axes, whatever the mode. */
#define DPY_ABS_MAX 32767

/* Implemented by the VMM's virtio keyboard and tablet; called on the display thread. */
struct dpy_input_sink {
    const char *name;
    /* A Linux input key code (KEY_*, BTN_* are not sent here) went down or up. */
    void (*key)(void *ctx, uint16_t code, bool down);
    /* Absolute position in [0, DPY_ABS_MAX] and the buttons held (bit 0 left, 1 middle, 2 right). */
    void (*pointer)(void *ctx, uint32_t x, uint32_t y, uint32_t buttons);
    /* Wheel clicks: positive = up / right. */
    void (*wheel)(void *ctx, int vertical, int horizontal);
};

/* ---- The display server ------------------------------------------------------------------- */
/* The largest mode served; a larger guest mode is treated as no mode (blank, logged). */
#define DPY_MAX_WIDTH   3840
#define DPY_MAX_HEIGHT  2160
#define DPY_DEFAULT_HZ  60
#define DPY_MAX_HZ      240
#define DPY_MAX_CLIENTS 32

struct dpy_config {
    /* Unix socket to serve RFB on (created with mode 0600, replaced if stale); NULL: none. */
    const char *unix_path;
    /* TCP listener "PORT" (127.0.0.1), "HOST:PORT" or "[V6]:PORT"; NULL: none. A host other
     * than loopback must be spelled out and is logged as a warning. */
    const char *tcp;
    unsigned hz;              /* damage tick per second; 0: DPY_DEFAULT_HZ */
    const char *desktop_name; /* ServerInit name; NULL: "vdi" */
    /* Size shown before the guest sets a mode (0: 640x480). */
    uint32_t initial_width, initial_height;
    /* Called once, on the display thread, when the first frame with a non-black pixel is seen. */
    void (*ready)(void *ctx);
    void *ready_ctx;
};

typedef struct dpy_display dpy_display_t; /* opaque */

/* Counters, for tests, stats and benchmarks. */
struct dpy_stats {
    uint64_t ticks;          /* damage ticks run */
    uint64_t dirty_pages;    /* pages the source reported dirty, summed */
    uint64_t lines_compared; /* scanlines compared with the shadow, summed */
    uint64_t rects;          /* changed rectangles found, summed */
    uint64_t updates;        /* ticks that found a change */
    uint64_t mode_changes;   /* modes taken (incl. the first) */
    uint32_t width, height;  /* the size served now */
    uint32_t clients;        /* connected RFB clients */
    uint64_t clients_total;  /* accepted since start */
    bool ready;              /* the ready callback has run */
};

/* Open the listeners named in @cfg and start the display thread, which reads @src (borrowed,
 * with @src_ctx, until dpy_display_destroy() returns) and sends input to @sink (may be NULL: input
 * is dropped). Both are called on the display thread only, as is @cfg->ready (which must not
 * block). @cfg and its strings are copied. Returns 0, -EINVAL (@src lacks a method), VDI_ECONFIG
 * (no listener, a bad TCP address, hz above DPY_MAX_HZ, an initial size above the maximum),
 * -EADDRINUSE (a live server owns the socket path), -EEXIST (something that is not a socket is
 * there), -ENAMETOOLONG or another -errno; *out only on success. Thread: any (not the display
 * thread). */
int dpy_display_create(const struct dpy_config *cfg, const struct dpy_fb_source *src, void *src_ctx,
                       const struct dpy_input_sink *sink, void *sink_ctx, dpy_display_t **out);
/* Stop the thread, disconnect every client, close the listeners and remove the unix socket. NULL
 * does nothing. Thread: any but the display thread. */
void dpy_display_destroy(dpy_display_t *d);
/* Copy the counters. Thread: any. */
void dpy_display_stats(dpy_display_t *d, struct dpy_stats *out);

#endif /* VDI_DISPLAY_DPY_H */
