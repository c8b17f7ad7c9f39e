/* golden-images/testdesk/input.c: virtio-input (virtio 1.2 §5.8): the keyboard and the tablet.
 * Events are Linux input events; each one is echoed on serial (keys and buttons as they come,
 * pointer moves and wheel turns at SYN_REPORT, the tablet's axes mapped to framebuffer pixels
 * with the ranges the device reports in its ABS_INFO config). */
#include "golden-images/testdesk/desk.h"

#define CFG_ID_NAME  0x01
#define CFG_EV_BITS  0x11
#define CFG_ABS_INFO 0x12
#define EV_SYN       0
#define EV_KEY       1
#define EV_REL       2
#define EV_ABS       3
#define REL_HWHEEL   6
#define REL_WHEEL    8
#define QSIZE        64

struct ev {
    uint16_t type, code;
    uint32_t value;
};

struct input {
    struct td_virtio v;
    bool present;
    struct ev *evs;
    int32_t amin[2], amax[2]; /* ABS_X, ABS_Y ranges */
    int32_t ax, ay;           /* last absolute position (device units) */
    bool moved;
    int32_t wheel_v, wheel_h, rel_x, rel_y;
};

static struct input kbd, tablet;
static bool shift_l, shift_r;

bool td_have_keyboard(void)
{
    return kbd.present;
}

bool td_have_tablet(void)
{
    return tablet.present;
}

/* Select a config item; returns its size (0: not there). */
static uint8_t cfg_select(struct td_virtio *v, uint8_t sel, uint8_t sub)
{
    wr8(v->devcfg + 0, sel);
    wr8(v->devcfg + 1, sub);
    return rd8(v->devcfg + 2);
}

static uint32_t cfg_u32(struct td_virtio *v, unsigned off)
{
    return rd32(v->devcfg + 8 + off);
}

void td_input_probe(const struct td_pci_dev *d)
{
    struct td_virtio probe;
    if (td_virtio_init(&probe, d, "virtio-input", 0, 1, QSIZE) < 0)
        return;
    if (!probe.devcfg) {
        td_printf("TESTDESK FAIL virtio-input no device config\n");
        return;
    }
    char name[33];
    uint8_t n = cfg_select(&probe, CFG_ID_NAME, 0);
    if (n > 32)
        n = 32;
    for (uint8_t i = 0; i < n; i++)
        name[i] = (char)rd8(probe.devcfg + 8 + i);
    name[n] = 0;
    bool is_abs = cfg_select(&probe, CFG_EV_BITS, EV_ABS) > 0;
    bool is_key = cfg_select(&probe, CFG_EV_BITS, EV_KEY) > 0;
    struct input *in = is_abs ? &tablet : &kbd;
    if (in->present || (!is_abs && !is_key)) {
        td_printf("testdesk: virtio-input \"%s\" not used (%s)\n", name,
                  in->present ? "already have one" : "neither keys nor axes");
        td_virtio_driver_ok(&probe);
        return;
    }
    in->v = probe;
    in->v.name = is_abs ? "tablet" : "keyboard";
    if (is_abs) {
        for (uint8_t axis = 0; axis < 2; axis++) {
            if (cfg_select(&in->v, CFG_ABS_INFO, axis) < 8) {
                td_printf("TESTDESK FAIL tablet no ABS_INFO for axis %u\n", axis);
                return;
            }
            in->amin[axis] = (int32_t)cfg_u32(&in->v, 0);
            in->amax[axis] = (int32_t)cfg_u32(&in->v, 4);
        }
        if (in->amax[0] <= in->amin[0] || in->amax[1] <= in->amin[1]) {
            td_printf("TESTDESK FAIL tablet bad axis ranges x=%d..%d y=%d..%d\n", in->amin[0],
                      in->amax[0], in->amin[1], in->amax[1]);
            return;
        }
    }
    struct td_vq *q = &in->v.vq[0];
    in->evs = td_alloc(sizeof(struct ev) * q->size, 8);
    if (!in->evs) {
        td_printf("TESTDESK FAIL %s out of memory\n", in->v.name);
        return;
    }
    for (uint16_t i = 0; i < q->size; i++) {
        uint64_t a = (uint64_t)(uintptr_t)&in->evs[i];
        uint32_t l = sizeof(struct ev);
        bool w = true;
        td_vq_post(q, &a, &l, &w, 1);
    }
    td_virtio_driver_ok(&in->v);
    td_vq_kick(q);
    in->present = true;
    if (is_abs)
        td_printf("testdesk: tablet \"%s\" x=%d..%d y=%d..%d\n", name, in->amin[0], in->amax[0],
                  in->amin[1], in->amax[1]);
    else
        td_printf("testdesk: keyboard \"%s\"\n", name);
}

/* Device units -> framebuffer pixels (or the raw value without a framebuffer). */
static uint32_t to_px(const struct input *in, int axis, int32_t v, uint32_t size)
{
    if (!size)
        return (uint32_t)v;
    if (v < in->amin[axis])
        v = in->amin[axis];
    if (v > in->amax[axis])
        v = in->amax[axis];
    uint64_t span = (uint64_t)((int64_t)in->amax[axis] - in->amin[axis]);
    return (uint32_t)((uint64_t)(v - in->amin[axis]) * (size - 1) / span);
}

static void handle(struct input *in, const struct ev *e)
{
    switch (e->type) {
    case EV_KEY:
        if (e->code >= 0x100) {
            td_printf("INPUT btn code=%u down=%u\n", e->code, e->value);
        } else {
            td_printf("INPUT key code=%u down=%u\n", e->code, e->value);
            if (e->code == 42)
                shift_l = e->value;
            else if (e->code == 54)
                shift_r = e->value;
            else if (e->value)
                td_fb_key(e->code, shift_l || shift_r);
        }
        break;
    case EV_ABS:
        if (e->code == 0)
            in->ax = (int32_t)e->value;
        else if (e->code == 1)
            in->ay = (int32_t)e->value;
        in->moved = true;
        break;
    case EV_REL:
        if (e->code == REL_WHEEL)
            in->wheel_v += (int32_t)e->value;
        else if (e->code == REL_HWHEEL)
            in->wheel_h += (int32_t)e->value;
        else if (e->code == 0)
            in->rel_x += (int32_t)e->value;
        else if (e->code == 1)
            in->rel_y += (int32_t)e->value;
        break;
    case EV_SYN:
        if (in->moved) {
            uint32_t x = to_px(in, 0, in->ax, td_fb_width());
            uint32_t y = to_px(in, 1, in->ay, td_fb_height());
            td_printf("INPUT abs x=%u y=%u\n", x, y);
            td_fb_pointer(x, y);
            in->moved = false;
        }
        if (in->wheel_v || in->wheel_h) {
            td_printf("INPUT wheel v=%d h=%d\n", in->wheel_v, in->wheel_h);
            in->wheel_v = in->wheel_h = 0;
        }
        if (in->rel_x || in->rel_y) {
            td_printf("INPUT rel dx=%d dy=%d\n", in->rel_x, in->rel_y);
            in->rel_x = in->rel_y = 0;
        }
        break;
    default:
        break;
    }
}

static bool poll_one(struct input *in)
{
    if (!in->present)
        return false;
    struct td_vq *q = &in->v.vq[0];
    uint16_t head;
    uint32_t len;
    bool any = false;
    while (td_vq_take(q, &head, &len)) {
        if (head < q->size && len >= sizeof(struct ev)) {
            struct ev e = in->evs[head];
            handle(in, &e);
        }
        td_vq_repost(q, head);
        any = true;
    }
    if (any)
        td_vq_kick(q);
    return any;
}

bool td_input_poll(void)
{
    bool a = poll_one(&kbd);
    bool b = poll_one(&tablet);
    return a || b;
}
