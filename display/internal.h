/* display/internal.h: what the files of display/ share (and its unit tests). Not for other
 * modules (make check-includes).
 *
 *  - damage.c: the shadow copy of the screen and the narrowing of dirty pages to changed
 *    rectangles;
 *  - keymap.c: X keysyms and XT scan codes to Linux input key codes;
 *  - input.c: pointer scaling and button/wheel decoding;
 *  - server.c: the display thread, libvncserver and the listening sockets.
 */
#ifndef VDI_DISPLAY_INTERNAL_H
#define VDI_DISPLAY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "display/dpy.h"

/* ---- Damage (damage.c) -------------------------------------------------------------------- */
/* Pixels are compared in columns of this many pixels (64 bytes, one cache line). */
#define DPY_DAMAGE_COL 16

typedef struct dpy__damage dpy__damage_t;

/* A shadow of a @width x @height, 32 bpp screen (stride width*4, zero-filled). Returns 0,
 * -EINVAL (a dimension is 0 or above DPY_MAX_WIDTH/HEIGHT) or -ENOMEM; *out only on success. */
int dpy__damage_create(uint32_t width, uint32_t height, dpy__damage_t **out);
void dpy__damage_destroy(dpy__damage_t *d);
/* The shadow pixels (what the RFB server encodes from); valid for @d's life. */
uint32_t *dpy__damage_shadow(dpy__damage_t *d);

/* Which lines of a screen of @height lines, @stride bytes each, the dirty pages cover: sets bit y
 * of @lines (ceil(height/64) words, zeroed by the caller) for every line that shares a byte with a
 * page whose bit is set in @pages (@npages 4 KiB pages; page 0 starts @page_off bytes before the
 * first pixel, 0 <= page_off < 4096). Returns the number of lines marked. */
uint32_t dpy__pages_to_lines(const uint64_t *pages, size_t npages, uint32_t page_off,
                             uint32_t stride, uint32_t height, uint64_t *lines);
/* Pages (from the one holding the first pixel) that a screen of @stride * @height bytes whose
 * first pixel sits @page_off bytes into its page spans. */
size_t dpy__fb_pages(uint32_t page_off, uint32_t stride, uint32_t height);

typedef void (*dpy__rect_fn)(void *ctx, uint32_t x, uint32_t y, uint32_t w, uint32_t h);

struct dpy__damage_stats {
    uint32_t lines_compared; /* lines read from the source and compared with the shadow */
    uint32_t rects;          /* rectangles reported */
    bool nonblank;           /* a pixel other than black has been seen (ever) */
};

/* Compare the lines of @src (the guest's screen, same size as the shadow, @stride bytes a line)
 * that @pages marks dirty (NULL: every line; see dpy__pages_to_lines for @page_off) with the shadow, copy what changed into the shadow
 * and report the changed area as rectangles through @fn (columns of DPY_DAMAGE_COL pixels, exact
 * lines). Lines no page touches are not read. Fills @st if not NULL. Thread: the caller's; @d is
 * not shared. */
void dpy__damage_update(dpy__damage_t *d, const void *src, uint32_t stride, const uint64_t *pages,
                        size_t npages, uint32_t page_off, dpy__rect_fn fn, void *ctx,
                        struct dpy__damage_stats *st);

/* ---- Key maps (keymap.c) ------------------------------------------------------------------ */
/* The Linux key code (KEY_*) for an X keysym on a US keyboard, or 0 if it has none. Shifted
 * symbols map to their key ('A' and 'a' are KEY_A, '!' is KEY_1): RFB clients send the Shift
 * key themselves. */
uint16_t dpy__keysym_to_linux(uint32_t keysym);
/* The Linux key code for a QEMU extended key event key code (an XT set 1 make code; 0xE0-prefixed
 * codes have bit 7 set, e.g. 0x9d for right Ctrl), or 0 if unknown. */
uint16_t dpy__xtkbd_to_linux(uint32_t keycode);

/* ---- Pointer (input.c) -------------------------------------------------------------------- */
/* Scale a pixel coordinate @pos on an axis of @size pixels to [0, DPY_ABS_MAX]: 0 -> 0,
 * size-1 -> DPY_ABS_MAX, positions beyond the screen are clamped; rounded up, so
 * that v * (size - 1) / DPY_ABS_MAX gives @pos back with a floor or rounding. */
uint32_t dpy__scale_abs(uint32_t pos, uint32_t size);

/* RFB button mask bits: 0 left, 1 middle, 2 right, 3 wheel up, 4 wheel down, 5 wheel left,
 * 6 wheel right. */
struct dpy__pointer_event {
    uint32_t buttons; /* held buttons for the sink: bit 0 left, 1 middle, 2 right */
    int wheel_v;      /* +1 up, -1 down, 0 */
    int wheel_h;      /* +1 right, -1 left, 0 */
};
/* Decode a PointerEvent's button mask given the previous mask from the same client: wheel
 * "buttons" count on press only. */
struct dpy__pointer_event dpy__pointer_decode(uint32_t prev_mask, uint32_t mask);

#endif /* VDI_DISPLAY_INTERNAL_H */
