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
    /* Set bit i of @bitmap for each 4 KiB page i of the framebuffer written since the last call
     * (and clear the record). @bitmap holds ceil(npages/64) words, zeroed by the caller.
     * Returns 0 or -errno (then the caller treats every page as dirty). */
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

#endif /* VDI_DISPLAY_DPY_H */
