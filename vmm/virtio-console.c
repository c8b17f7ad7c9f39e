/* vmm/virtio-console.c: the guest agent's port, a virtio console device (virtio 1.2 §5.3) with
 * VIRTIO_CONSOLE_F_MULTIPORT and one port, id 0, named VMM_AGENT_PORT_NAME (Linux gives it
 * /dev/virtio-ports/org.vdi.agent.0). The agent's protocol is agent.c's; this file moves bytes.
 *
 * Queues (§5.3.2 with MULTIPORT and max_nr_ports 1): 0 the port's receiveq (to the guest), 1 its
 * transmitq (from the guest), 2 the control receiveq, 3 the control transmitq. The control
 * exchange (§5.3.6.2): the driver says DEVICE_READY; we answer DEVICE_ADD for port 0; it says
 * PORT_READY; we send PORT_NAME and PORT_OPEN (the host end is always open); it says PORT_OPEN
 * when a program in the guest opens the port, and again with 0 when it closes it.
 *
 * What the guest sends is read through the chain's buffers at most CHAIN_MAX bytes a chain
 * (agent.c bounds lines); what we send waits in the agent's ->out until the guest posts receive
 * buffers, and only while the port is open, as a Linux guest drops data for a closed port. A
 * timerfd on the I/O thread runs the agent's heartbeat watchdog, armed only while an agent is
 * up. Everything here runs under the device lock: vCPU threads (through the transport), the I/O
 * thread (queues, the timer) and the control thread (vmm__vm_agent_message).
 */
#define VDI_LOG_TAG "vmm"
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "vmm/pci-internal.h"

#define VIRTIO_ID_CONSOLE          3
#define VIRTIO_CONSOLE_F_MULTIPORT 1
#define RXQ                        0
#define TXQ                        1
#define CRXQ                       2
#define CTXQ                       3
#define CHAIN_MAX                  (256u << 10)

/* §5.3.6.2 control events */
#define VIRTIO_CONSOLE_DEVICE_READY 0
#define VIRTIO_CONSOLE_DEVICE_ADD   1
#define VIRTIO_CONSOLE_PORT_READY   3
#define VIRTIO_CONSOLE_PORT_OPEN    6
#define VIRTIO_CONSOLE_PORT_NAME    7
#define CTRL_HDR                    8
#define CTRL_QUEUE                  8 /* control messages waiting for the guest's buffers */
#define CTRL_MSG_MAX                (CTRL_HDR + sizeof(VMM_AGENT_PORT_NAME))

struct ctrl_msg {
    uint8_t bytes[CTRL_MSG_MAX];
    uint32_t len;
};

struct vcons {
    struct vmm_virtio_dev vd;
    uint8_t config[12]; /* cols, rows, max_nr_ports, emerg_wr */
    bool added;         /* DEVICE_ADD sent since the last reset */
    struct ctrl_msg ctrl[CTRL_QUEUE];
    unsigned ctrl_head, ctrl_count;
    struct vmm_agent agent;
    int timer_fd;
    bool timer_polled;
    struct vmm_virtq_req req;
    uint8_t scratch[4096];
};

static struct vcons *vc_of(struct vmm_virtio_dev *vd)
{
    return vdi_container_of(vd, struct vcons, vd);
}

static void cons_cfg_read(struct vmm_virtio_dev *vd, uint32_t off, void *data, uint32_t len)
{
    memcpy(data, vc_of(vd)->config + off, len);
}

/* Arm the watchdog for when agent.c next needs it (or disarm it). */
static void rearm(struct vcons *c, uint64_t now)
{
    uint64_t ms = vmm__agent_tick(&c->agent, now);
    struct itimerspec its = {0};
    if (c->timer_fd < 0)
        return;
    if (ms) {
        its.it_value.tv_sec = (time_t)(ms / 1000);
        its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
    }
    if (timerfd_settime(c->timer_fd, 0, &its, NULL) < 0)
        VDI_LOG_WARN_RL("vm=%s virtio-console: watchdog timer: %s", vmm__vm_name(c->vd.pci.vm),
                        vdi_strerror(-errno));
}

static void ctrl_queue(struct vcons *c, uint32_t id, uint16_t event, uint16_t value,
                       const char *name)
{
    if (c->ctrl_count == CTRL_QUEUE) {
        VDI_LOG_WARN_RL("vm=%s virtio-console: guest not taking control messages; one dropped",
                        vmm__vm_name(c->vd.pci.vm));
        return;
    }
    struct ctrl_msg *m = &c->ctrl[(c->ctrl_head + c->ctrl_count++) % CTRL_QUEUE];
    memcpy(m->bytes, &id, 4);
    memcpy(m->bytes + 4, &event, 2);
    memcpy(m->bytes + 6, &value, 2);
    m->len = CTRL_HDR;
    if (name) {
        size_t n = strlen(name); /* our own constant, no NUL sent (§5.3.6.2.1) */
        memcpy(m->bytes + CTRL_HDR, name, n);
        m->len += (uint32_t)n;
    }
}

/* Hand queued control messages to the guest's control receive buffers, one a buffer. */
static void ctrl_flush(struct vcons *c)
{
    struct vmm_virtio_dev *vd = &c->vd;
    bool any = false;
    while (c->ctrl_count && vmm__virtio_queue_live(vd, CRXQ)) {
        int r = vmm__virtq_pop(&vd->q[CRXQ].vq, &c->req);
        if (r < 0) {
            vmm__virtio_fail(vd, "virtio-console: malformed control receive chain");
            return;
        }
        if (r == 0)
            break;
        struct ctrl_msg *m = &c->ctrl[c->ctrl_head];
        size_t n = vmm__virtq_req_write(&c->req, 0, m->bytes, m->len);
        vmm__virtq_push(&vd->q[CRXQ].vq, c->req.head, (uint32_t)n);
        c->ctrl_head = (c->ctrl_head + 1) % CTRL_QUEUE;
        c->ctrl_count--;
        any = true;
    }
    if (any)
        vmm__virtio_notify(vd, CRXQ);
}

/* Move what the agent has for the guest into its receive buffers (only while it is open). */
static void rx_flush(struct vcons *c)
{
    struct vmm_virtio_dev *vd = &c->vd;
    vdi_buf_t *out = &c->agent.out;
    bool any = false;
    while (c->agent.open && out->len && vmm__virtio_queue_live(vd, RXQ)) {
        int r = vmm__virtq_pop(&vd->q[RXQ].vq, &c->req);
        if (r < 0) {
            vmm__virtio_fail(vd, "virtio-console: malformed receive chain");
            return;
        }
        if (r == 0)
            break;
        size_t n = vmm__virtq_req_write(&c->req, 0, out->data, out->len);
        vmm__virtq_push(&vd->q[RXQ].vq, c->req.head, (uint32_t)n);
        vdi_buf_consume(out, n);
        any = true;
    }
    if (any)
        vmm__virtio_notify(vd, RXQ);
}

static void on_control(struct vcons *c, const uint8_t *m, size_t len, uint64_t now)
{
    uint32_t id;
    uint16_t event, value;
    if (len < CTRL_HDR)
        return;
    memcpy(&id, m, 4);
    memcpy(&event, m + 4, 2);
    memcpy(&value, m + 6, 2);
    if (event == VIRTIO_CONSOLE_DEVICE_READY) {
        if (value == 1 && !c->added) {
            c->added = true;
            ctrl_queue(c, 0, VIRTIO_CONSOLE_DEVICE_ADD, 0, NULL);
        }
        return;
    }
    if (id != 0) {
        VDI_LOG_WARN_RL("vm=%s virtio-console: control event %u for port %u, which does not exist",
                        vmm__vm_name(c->vd.pci.vm), event, id);
        return;
    }
    switch (event) {
    case VIRTIO_CONSOLE_PORT_READY:
        if (value == 1) {
            ctrl_queue(c, 0, VIRTIO_CONSOLE_PORT_NAME, 0, VMM_AGENT_PORT_NAME);
            ctrl_queue(c, 0, VIRTIO_CONSOLE_PORT_OPEN, 1, NULL);
        }
        break;
    case VIRTIO_CONSOLE_PORT_OPEN:
        vmm__agent_opened(&c->agent, value != 0, now);
        rx_flush(c);
        rearm(c, now);
        break;
    default:
        break; /* nothing else is for the device to act on */
    }
}

/* Take every chain the guest offered on @qi: control messages (CTXQ) or the agent's bytes. */
static void drain(struct vcons *c, unsigned qi, const char *what, uint64_t now)
{
    struct vmm_virtio_dev *vd = &c->vd;
    bool any = false;
    int r;
    while (vmm__virtio_queue_live(vd, qi) && (r = vmm__virtq_pop(&vd->q[qi].vq, &c->req)) != 0) {
        if (r < 0) {
            vmm__virtio_fail(vd, what);
            break;
        }
        if (qi == CTXQ) {
            uint8_t m[CTRL_HDR];
            on_control(c, m, vmm__virtq_req_read(&c->req, 0, m, sizeof(m)), now);
        } else {
            size_t total = VDI_MIN(c->req.out_len, (uint64_t)CHAIN_MAX);
            for (size_t off = 0; off < total;) {
                size_t n = vmm__virtq_req_read(&c->req, off, c->scratch,
                                               VDI_MIN(sizeof(c->scratch), total - off));
                if (n == 0)
                    break;
                vmm__agent_input(&c->agent, c->scratch, n, now);
                off += n;
            }
        }
        vmm__virtq_push(&vd->q[qi].vq, c->req.head, 0);
        any = true;
    }
    if (any)
        vmm__virtio_notify(vd, qi);
}

static void cons_queue_notify(struct vmm_virtio_dev *vd, unsigned qi)
{
    struct vcons *c = vc_of(vd);
    uint64_t now = vdi_now_ms();
    if (qi == CTXQ)
        drain(c, CTXQ, "virtio-console: malformed control transmit chain", now);
    else if (qi == TXQ)
        drain(c, TXQ, "virtio-console: malformed transmit chain", now);
    ctrl_flush(c);
    rx_flush(c);
    if (qi == TXQ || qi == CTXQ)
        rearm(c, now);
}

static void cons_reset(struct vmm_virtio_dev *vd)
{
    struct vcons *c = vc_of(vd);
    c->added = false;
    c->ctrl_head = c->ctrl_count = 0;
    vmm__agent_opened(&c->agent, false, vdi_now_ms());
    rearm(c, vdi_now_ms());
}

static void on_timer(void *opaque)
{
    struct vcons *c = opaque;
    uint64_t expirations;
    if (read(c->timer_fd, &expirations, sizeof(expirations)) < 0)
        return; /* not expired after all */
    pthread_mutex_lock(&c->vd.lock);
    rearm(c, vdi_now_ms());
    pthread_mutex_unlock(&c->vd.lock);
}

static void cons_destroy(struct vmm_virtio_dev *vd)
{
    struct vcons *c = vc_of(vd);
    if (c->timer_polled)
        vmm__iothread_del_fd(vd->pci.vm, c->timer_fd);
    if (c->timer_fd >= 0)
        close(c->timer_fd);
    vmm__agent_fini(&c->agent);
    free(c);
}

static const struct vmm_virtio_ops cons_ops = {
    .name = "virtio-console",
    .device_id = VIRTIO_ID_CONSOLE,
    .class_code = 0x078000,
    .nqueues = 4,
    .cfg_size = sizeof(((struct vcons *)0)->config),
    .cfg_read = cons_cfg_read,
    .queue_notify = cons_queue_notify,
    .reset = cons_reset,
    .destroy = cons_destroy,
};

int vmm__virtio_console_create(vmm_vm_t *vm, struct vmm_virtio_dev **out)
{
    struct vcons *c = vdi_xcalloc(1, sizeof(*c));
    uint32_t max_ports = 1;
    int err;

    memcpy(c->config + 4, &max_ports, 4);
    vmm__agent_init(&c->agent, vm);
    c->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (c->timer_fd < 0) {
        err = -errno;
        vmm__agent_fini(&c->agent);
        free(c);
        return err;
    }
    err = vmm__virtio_pci_init(&c->vd, &cons_ops, 1ull << VIRTIO_CONSOLE_F_MULTIPORT, vm);
    if (err < 0) {
        close(c->timer_fd);
        vmm__agent_fini(&c->agent);
        free(c);
        return err;
    }
    err = vmm__iothread_add_fd(vm, c->timer_fd, on_timer, c);
    if (err < 0)
        return err; /* registered on the bus already: the bus tears it down with the VM */
    c->timer_polled = true;
    *out = &c->vd;
    return 0;
}

int vmm__virtio_console_message(struct vmm_virtio_dev *vd, const char *text, unsigned seconds)
{
    struct vcons *c = vc_of(vd);
    pthread_mutex_lock(&vd->lock);
    int err = vmm__agent_queue_message(&c->agent, text, seconds);
    if (err == 0)
        rx_flush(c);
    pthread_mutex_unlock(&vd->lock);
    return err;
}

void vmm__virtio_console_status(struct vmm_virtio_dev *vd, struct vmm_agent_status *st)
{
    struct vcons *c = vc_of(vd);
    pthread_mutex_lock(&vd->lock);
    vmm__agent_status(&c->agent, vdi_now_ms(), st);
    pthread_mutex_unlock(&vd->lock);
}
