/* display/input.c: RFB pointer events to absolute tablet coordinates, buttons and wheel clicks. */
#include "common/vdi.h"
#include "display/internal.h"

uint32_t dpy__scale_abs(uint32_t pos, uint32_t size)
{
    if (size <= 1)
        return 0;
    if (pos >= size - 1)
        return DPY_ABS_MAX;
    /* Round up: a guest that scales back with a floor (Linux input consumers, QEMU, testdesk:
     * v * (size - 1) / max) then lands on exactly @pos, and so does one that rounds. */
    return (uint32_t)(((uint64_t)pos * DPY_ABS_MAX + (size - 2)) / (size - 1));
}

struct dpy__pointer_event dpy__pointer_decode(uint32_t prev_mask, uint32_t mask)
{
    struct dpy__pointer_event ev = {.buttons = mask & 0x7};
    uint32_t pressed = mask & ~prev_mask;

    /* RFB 7.5.5: wheel up/down are buttons 4 and 5 (bits 3, 4), sent as press then release;
     * bits 5 and 6 are the horizontal wheel (left, right) in common clients. */
    if (pressed & (1u << 3))
        ev.wheel_v++;
    if (pressed & (1u << 4))
        ev.wheel_v--;
    if (pressed & (1u << 5))
        ev.wheel_h--;
    if (pressed & (1u << 6))
        ev.wheel_h++;
    return ev;
}
