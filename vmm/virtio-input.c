/* vmm/virtio-input.c: virtio input devices (virtio 1.2 §5.8): a keyboard and an absolute tablet,
 * fed by the display through struct dpy_input_sink.
 *
 * The display thread calls vmm__virtio_input_send(); events go straight into the buffers the
 * guest posted on the event queue. When it has posted none, up to RING events wait here (whole
 * SYN_REPORT groups only) and go out when the guest posts more; beyond that new groups are
 * dropped, as a real device's FIFO would. Events sent before the driver is up are dropped too.
 * The status queue (LEDs from the guest) is consumed and ignored.
 */
#define VDI_LOG_TAG "vmm"
#include <stdlib.h>
#include <string.h>

#include "display/dpy.h"
#include "vmm/pci-internal.h"

#define VIRTIO_ID_INPUT            18

#define VIRTIO_INPUT_CFG_UNSET     0x00
#define VIRTIO_INPUT_CFG_ID_NAME   0x01
#define VIRTIO_INPUT_CFG_ID_SERIAL 0x02
#define VIRTIO_INPUT_CFG_ID_DEVIDS 0x03
#define VIRTIO_INPUT_CFG_PROP_BITS 0x10
#define VIRTIO_INPUT_CFG_EV_BITS   0x11
#define VIRTIO_INPUT_CFG_ABS_INFO  0x12

/* linux/input-event-codes.h */
#define EV_SYN     0x00
#define EV_KEY     0x01
#define EV_REL     0x02
#define EV_ABS     0x03
#define EV_LED     0x11
#define EV_REP     0x14
#define SYN_REPORT 0
#define REL_HWHEEL 0x06
#define REL_WHEEL  0x08
#define ABS_X      0x00
#define ABS_Y      0x01
#define BTN_LEFT   0x110
#define BTN_RIGHT  0x111
#define BTN_MIDDLE 0x112
/* The keyboard's keys: KEY_ESC..255 and 0x160..0x2ff (0x100..0x15f are BTN_* codes, which
 * would make the guest treat the keyboard as a pointer or joystick). */
#define KEY_MAX_SENT 0x2ff
#define BTN_CODES_LO 0x100
#define BTN_CODES_HI 0x15f

#define RING         512

struct input_event_le {
    uint16_t type, code;
    int32_t value;
};

struct vinput {
    struct vmm_virtio_dev vd;
    enum vmm_input_kind kind;
    uint8_t select, subsel;
    struct input_event_le ring[RING];
    unsigned head, count;
};

static struct vinput *vin_of(struct vmm_virtio_dev *vd)
{
    return vdi_container_of(vd, struct vinput, vd);
}

static void set_bit(uint8_t *bm, unsigned bit)
{
    bm[bit / 8] |= 1u << (bit % 8);
}

/* Fill @u (128 bytes) for the current select/subsel; return its size. */
static uint8_t cfg_payload(const struct vinput *in, uint8_t *u)
{
    bool kbd = in->kind == VMM_INPUT_KEYBOARD;
    uint8_t size = 0;

    memset(u, 0, 128);
    switch (in->select) {
    case VIRTIO_INPUT_CFG_ID_NAME: {
        const char *name = kbd ? "vdi virtio keyboard" : "vdi virtio tablet";
        size = strlen(name);
        memcpy(u, name, size);
        break;
    }
    case VIRTIO_INPUT_CFG_ID_SERIAL:
        memcpy(u, kbd ? "kbd0" : "tablet0", kbd ? 4 : 7);
        size = kbd ? 4 : 7;
        break;
    case VIRTIO_INPUT_CFG_ID_DEVIDS: {
        uint16_t ids[4] = {0x06 /* BUS_VIRTUAL */, 0x0627, kbd ? 1 : 3, 1};
        memcpy(u, ids, sizeof(ids));
        size = sizeof(ids);
        break;
    }
    case VIRTIO_INPUT_CFG_EV_BITS:
        if (kbd && in->subsel == EV_KEY) {
            for (unsigned k = 1; k <= KEY_MAX_SENT; k++)
                if (k < BTN_CODES_LO || k > BTN_CODES_HI)
                    set_bit(u, k);
            size = (KEY_MAX_SENT + 1) / 8;
        } else if (kbd && in->subsel == EV_LED) {
            u[0] = 0x07; /* NUML, CAPSL, SCROLLL */
            size = 1;
        } else if (kbd && in->subsel == EV_REP) {
            size = 1;
        } else if (!kbd && in->subsel == EV_KEY) {
            set_bit(u, BTN_LEFT);
            set_bit(u, BTN_RIGHT);
            set_bit(u, BTN_MIDDLE);
            size = BTN_MIDDLE / 8 + 1;
        } else if (!kbd && in->subsel == EV_REL) {
            set_bit(u, REL_HWHEEL);
            set_bit(u, REL_WHEEL);
            size = 2;
        } else if (!kbd && in->subsel == EV_ABS) {
            set_bit(u, ABS_X);
            set_bit(u, ABS_Y);
            size = 1;
        }
        break;
    case VIRTIO_INPUT_CFG_ABS_INFO:
        if (!kbd && (in->subsel == ABS_X || in->subsel == ABS_Y)) {
            uint32_t info[5] = {0, DPY_ABS_MAX, 0, 0, 0}; /* min, max, fuzz, flat, res */
            memcpy(u, info, sizeof(info));
            size = sizeof(info);
        }
        break;
    default:
        break;
    }
    return size;
}

static void input_cfg_read(struct vmm_virtio_dev *vd, uint32_t off, void *data, uint32_t len)
{
    struct vinput *in = vin_of(vd);
    uint8_t c[136] = {0};
    c[0] = in->select;
    c[1] = in->subsel;
    c[2] = cfg_payload(in, c + 8);
    memcpy(data, c + off, len);
}

static void input_cfg_write(struct vmm_virtio_dev *vd, uint32_t off, const void *data, uint32_t len)
{
    struct vinput *in = vin_of(vd);
    const uint8_t *p = data;
    for (uint32_t k = 0; k < len; k++) {
        if (off + k == 0)
            in->select = p[k];
        else if (off + k == 1)
            in->subsel = p[k];
    }
}

/* Move queued events into guest buffers. Device lock held. */
static void flush(struct vinput *in)
{
    struct vmm_virtio_dev *vd = &in->vd;
    struct vmm_virtq_req req;
    bool any = false;

    while (in->count > 0 && vmm__virtio_queue_live(vd, 0)) {
        int r = vmm__virtq_pop(&vd->q[0].vq, &req);
        if (r == 0)
            break;
        if (r < 0) {
            vmm__virtio_fail(vd, "virtio-input: malformed descriptor chain");
            break;
        }
        const struct input_event_le *ev = &in->ring[in->head];
        uint32_t n = (uint32_t)vmm__virtq_req_write(&req, 0, ev, sizeof(*ev));
        vmm__virtq_push(&vd->q[0].vq, req.head, n);
        in->head = (in->head + 1) % RING;
        in->count--;
        any = true;
    }
    if (any)
        vmm__virtio_notify(vd, 0);
}

static void input_queue_notify(struct vmm_virtio_dev *vd, unsigned qi)
{
    struct vinput *in = vin_of(vd);
    if (qi == 0) {
        flush(in);
        return;
    }
    /* Status queue: LED state from the guest; we have no LEDs to light. */
    struct vmm_virtq_req req;
    bool any = false;
    int r;
    while ((r = vmm__virtq_pop(&vd->q[1].vq, &req)) != 0) {
        if (r < 0) {
            vmm__virtio_fail(vd, "virtio-input: malformed status chain");
            break;
        }
        vmm__virtq_push(&vd->q[1].vq, req.head, 0);
        any = true;
    }
    if (any)
        vmm__virtio_notify(vd, 1);
}

static void input_reset(struct vmm_virtio_dev *vd)
{
    struct vinput *in = vin_of(vd);
    in->head = in->count = 0;
    in->select = in->subsel = 0;
}

static void input_destroy(struct vmm_virtio_dev *vd)
{
    free(vin_of(vd));
}

static const struct vmm_virtio_ops input_ops = {
    .name = "virtio-input",
    .device_id = VIRTIO_ID_INPUT,
    .class_code = 0x098000,
    .nqueues = 2,
    .cfg_size = 136,
    .cfg_read = input_cfg_read,
    .cfg_write = input_cfg_write,
    .queue_notify = input_queue_notify,
    .reset = input_reset,
    .destroy = input_destroy,
};

int vmm__virtio_input_create(vmm_vm_t *vm, enum vmm_input_kind kind, struct vmm_virtio_dev **out)
{
    struct vinput *in = vdi_xcalloc(1, sizeof(*in));
    in->kind = kind;
    int err = vmm__virtio_pci_init(&in->vd, &input_ops, 0, vm);
    if (err < 0) {
        free(in);
        return err;
    }
    *out = &in->vd;
    return 0;
}

void vmm__virtio_input_send(struct vmm_virtio_dev *vd, const uint16_t *type, const uint16_t *code,
                            const int32_t *value, unsigned n)
{
    struct vinput *in = vin_of(vd);
    pthread_mutex_lock(&vd->lock);
    if (!vmm__virtio_queue_live(vd, 0)) {
        pthread_mutex_unlock(&vd->lock);
        return; /* no driver yet (or a broken one): nobody to tell */
    }
    if (in->count + n > RING) {
        VDI_LOG_WARN_RL("vm=%s virtio-input: guest not taking events; dropped %u",
                        vmm__vm_name(vd->pci.vm), n);
    } else {
        for (unsigned i = 0; i < n; i++) {
            struct input_event_le *ev = &in->ring[(in->head + in->count) % RING];
            ev->type = type[i];
            ev->code = code[i];
            ev->value = value[i];
            in->count++;
        }
    }
    flush(in);
    pthread_mutex_unlock(&vd->lock);
}

/* ---- struct dpy_input_sink ---------------------------------------------------------------- */
static void sink_key(void *ctx, uint16_t code, bool down)
{
    struct vmm_input_pair *p = ctx;
    if (!p->kbd || code == 0 || code > KEY_MAX_SENT ||
        (code >= BTN_CODES_LO && code <= BTN_CODES_HI))
        return;
    uint16_t t[2] = {EV_KEY, EV_SYN}, c[2] = {code, SYN_REPORT};
    int32_t v[2] = {down, 0};
    vmm__virtio_input_send(p->kbd, t, c, v, 2);
}

static void sink_pointer(void *ctx, uint32_t x, uint32_t y, uint32_t buttons)
{
    static const uint16_t btn[3] = {BTN_LEFT, BTN_MIDDLE, BTN_RIGHT};
    struct vmm_input_pair *p = ctx;
    uint16_t t[6], c[6];
    int32_t v[6];
    unsigned n = 0;

    if (!p->tablet)
        return;
    t[n] = EV_ABS, c[n] = ABS_X, v[n++] = (int32_t)VDI_MIN(x, (uint32_t)DPY_ABS_MAX);
    t[n] = EV_ABS, c[n] = ABS_Y, v[n++] = (int32_t)VDI_MIN(y, (uint32_t)DPY_ABS_MAX);
    for (unsigned b = 0; b < 3; b++) {
        if (((buttons ^ p->buttons) >> b) & 1) {
            t[n] = EV_KEY, c[n] = btn[b], v[n++] = (buttons >> b) & 1;
        }
    }
    t[n] = EV_SYN, c[n] = SYN_REPORT, v[n++] = 0;
    p->buttons = buttons & 7;
    vmm__virtio_input_send(p->tablet, t, c, v, n);
}

static void sink_wheel(void *ctx, int vertical, int horizontal)
{
    struct vmm_input_pair *p = ctx;
    uint16_t t[3], c[3];
    int32_t v[3];
    unsigned n = 0;
    if (!p->tablet || (vertical == 0 && horizontal == 0))
        return;
    if (vertical)
        t[n] = EV_REL, c[n] = REL_WHEEL, v[n++] = vertical;
    if (horizontal)
        t[n] = EV_REL, c[n] = REL_HWHEEL, v[n++] = horizontal;
    t[n] = EV_SYN, c[n] = SYN_REPORT, v[n++] = 0;
    vmm__virtio_input_send(p->tablet, t, c, v, n);
}

const struct dpy_input_sink vmm__input_sink = {
    .name = "virtio-input",
    .key = sink_key,
    .pointer = sink_pointer,
    .wheel = sink_wheel,
};
