/* vmm/dev-uart.c: an 8250/16550A UART on COM1 (0x3f8, IRQ 4). What the guest writes goes,
 * line-buffered, through the serial sink (serial-sink.c: escapes neutralised, rate-limited,
 * capped) to --serial-log or stdout. The transmitter is always ready, so a guest that floods the
 * port is never slowed down: what the sink does not take is only counted. A THR-empty interrupt
 * is raised when enabled (Linux's 8250 driver transmits from that interrupt once the console is a
 * tty). Input comes from --serial-in (stdin, a FIFO or a file) through the I/O thread into a
 * 4 KiB receive buffer; while the buffer is full the input fd is left unpolled, so a fast
 * producer waits instead of losing bytes. */
#define VDI_LOG_TAG "vmm"
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/internal.h"

#define COM1_BASE 0x3f8
#define LCR_DLAB  0x80
#define LSR_DR    0x01
#define LSR_THRE  0x20
#define LSR_TEMT  0x40
#define IER_THRI  0x02
#define MCR_LOOP  0x10
#define RX_SIZE   4096

struct uart {
    vmm_vm_t *vm;
    pthread_mutex_t lock;
    vmm_serial_sink_t *sink;
    bool own_sink, saw_line;
    uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
    bool thre_pending, loop_rx;
    bool irq_level; /* what we last told KVM: KVM_IRQ_LINE is costly, call it on changes only */
    uint8_t loop_byte;
    char buf[512];
    size_t len;
    /* Receive side: a ring fed by the I/O thread from in_fd. */
    int in_fd;
    bool own_in_fd, in_polled;
    uint8_t rx[RX_SIZE];
    size_t rx_head, rx_count;
};

static void flush_locked(struct uart *u)
{
    if (u->len)
        vmm__serial_sink_write(u->sink, u->buf, u->len, vdi_now_ms());
    u->len = 0;
}

static void update_irq(struct uart *u)
{
    bool rx = u->loop_rx || u->rx_count;
    bool level = ((u->ier & IER_THRI) && u->thre_pending) || ((u->ier & 1) && rx);
    if (level == u->irq_level)
        return;
    u->irq_level = level;
    vmm__irq_line(u->vm, VMM_UART_IRQ, level);
}

/* Read into the ring (the caller holds the lock): one read when @once (the fd was polled
 * readable and may be blocking, e.g. stdin), else until full or end of file. Returns false at
 * end of input. */
static bool fill_rx_locked(struct uart *u, bool once)
{
    while (u->rx_count < RX_SIZE) {
        size_t tail = (u->rx_head + u->rx_count) % RX_SIZE;
        size_t room = VDI_MIN(RX_SIZE - u->rx_count, RX_SIZE - tail);
        ssize_t r = read(u->in_fd, u->rx + tail, room);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (r <= 0)
            return false;
        u->rx_count += (size_t)r;
        if (once)
            return true;
    }
    return true;
}

/* I/O thread: input is readable. */
static void uart_input(void *opaque)
{
    struct uart *u = opaque;
    pthread_mutex_lock(&u->lock);
    bool more = fill_rx_locked(u, true);
    if (!more || u->rx_count == RX_SIZE) {
        /* End of input, or full: stop polling (level-triggered epoll would spin). */
        vmm__iothread_del_fd(u->vm, u->in_fd);
        u->in_polled = false;
        if (!more) {
            if (u->own_in_fd)
                close(u->in_fd);
            u->in_fd = -1;
        }
    }
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
}

static void uart_rw(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct uart *u = opaque;
    uint8_t *d = data;
    bool line_done = false, resume_input = false;
    if (len != 1) {
        VDI_LOG_WARN_RL("vm=%s uart: %u-byte access at offset %u ignored", vmm__vm_name(u->vm), len,
                        (unsigned)off);
        return;
    }
    pthread_mutex_lock(&u->lock);
    bool dlab = u->lcr & LCR_DLAB;
    if (is_write) {
        uint8_t v = d[0];
        switch (off) {
        case 0:
            if (dlab) {
                u->dll = v;
            } else if (u->mcr & MCR_LOOP) {
                u->loop_rx = true;
                u->loop_byte = v;
                u->thre_pending = true;
            } else {
                u->buf[u->len++] = (char)v;
                if (v == '\n') {
                    line_done = !u->saw_line;
                    u->saw_line = true;
                }
                if (v == '\n' || u->len == sizeof(u->buf))
                    flush_locked(u);
                u->thre_pending = true;
            }
            break;
        case 1:
            if (dlab) {
                u->dlm = v;
            } else {
                /* Enabling the THR interrupt with an empty THR raises it at once. */
                if (!(u->ier & IER_THRI) && (v & IER_THRI))
                    u->thre_pending = true;
                u->ier = v & 0x0f;
            }
            break;
        case 2:
            u->fcr = v;
            break;
        case 3:
            u->lcr = v;
            break;
        case 4:
            u->mcr = v & 0x1f;
            break;
        case 7:
            u->scr = v;
            break;
        default:
            break;
        }
    } else {
        switch (off) {
        case 0:
            if (dlab) {
                d[0] = u->dll;
            } else if (u->loop_rx) {
                d[0] = u->loop_byte;
                u->loop_rx = false;
            } else if (u->rx_count) {
                d[0] = u->rx[u->rx_head];
                u->rx_head = (u->rx_head + 1) % RX_SIZE;
                u->rx_count--;
                resume_input = u->in_fd >= 0 && !u->in_polled && u->rx_count <= RX_SIZE / 2;
            }
            break;
        case 1:
            d[0] = dlab ? u->dlm : u->ier;
            break;
        case 2: {
            uint8_t fifo = (u->fcr & 1) ? 0xc0 : 0;
            if ((u->ier & 1) && (u->loop_rx || u->rx_count)) {
                d[0] = fifo | 0x04;
            } else if ((u->ier & IER_THRI) && u->thre_pending) {
                d[0] = fifo | 0x02;
                u->thre_pending = false; /* reading IIR clears the THRE source */
            } else {
                d[0] = fifo | 0x01;
            }
            break;
        }
        case 3:
            d[0] = u->lcr;
            break;
        case 4:
            d[0] = u->mcr;
            break;
        case 5:
            d[0] = LSR_THRE | LSR_TEMT | (u->loop_rx || u->rx_count ? LSR_DR : 0);
            break;
        case 6:
            /* In loopback, the modem outputs appear on the inputs; otherwise DCD, DSR, CTS. */
            if (u->mcr & MCR_LOOP)
                d[0] = (uint8_t)(((u->mcr & 0x0c) << 4) | ((u->mcr & 0x01) << 5) |
                                 ((u->mcr & 0x02) << 3));
            else
                d[0] = 0xb0;
            break;
        case 7:
            d[0] = u->scr;
            break;
        default:
            break;
        }
    }
    if (resume_input)
        u->in_polled = vmm__iothread_add_fd(u->vm, u->in_fd, uart_input, u) == 0;
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
    if (line_done)
        vmm__vm_event(u->vm, VMM_EVENT_BOOTED, NULL);
}

static void uart_free(void *p)
{
    struct uart *u = p;
    pthread_mutex_lock(&u->lock);
    flush_locked(u);
    pthread_mutex_unlock(&u->lock);
    if (u->own_sink)
        vmm__serial_sink_destroy(u->sink, vdi_now_ms());
    else
        vmm__serial_sink_flush(u->sink, vdi_now_ms());
    if (u->in_fd >= 0 && u->own_in_fd)
        close(u->in_fd);
    pthread_mutex_destroy(&u->lock);
    free(u);
}

int vmm__uart_setup(vmm_vm_t *vm, const struct vmm_config *cfg)
{
    struct uart *u = vdi_xcalloc(1, sizeof(*u));
    int err;
    u->vm = vm;
    pthread_mutex_init(&u->lock, NULL);
    u->sink = cfg->serial_sink;
    if (!u->sink) {
        struct vmm_serial_sink_opts o = {
            .path = cfg->serial_log,
            .fd = STDOUT_FILENO,
            .max_bytes = cfg->serial_log_max ? cfg->serial_log_max : VMM_SERIAL_LOG_MAX_DEFAULT,
            .rate = VMM_SERIAL_RATE,
            .now_ms = vdi_now_ms(),
        };
        err = vmm__serial_sink_create(&o, &u->sink);
        if (err < 0) {
            pthread_mutex_destroy(&u->lock);
            free(u);
            return err;
        }
        u->own_sink = true;
    }
    u->in_fd = -1;
    if (cfg->serial_in) {
        if (!strcmp(cfg->serial_in, "-")) {
            u->in_fd = STDIN_FILENO;
        } else {
            /* O_RDWR on a FIFO: we never see EOF when writers come and go. */
            u->in_fd = open(cfg->serial_in, O_RDWR | O_NONBLOCK | O_CLOEXEC);
            if (u->in_fd < 0)
                u->in_fd = open(cfg->serial_in, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
            if (u->in_fd < 0) {
                err = -errno;
                uart_free(u);
                return err;
            }
            u->own_in_fd = true;
        }
    }
    vmm__vm_own(vm, u, uart_free);
    if (u->in_fd >= 0) {
        err = vmm__iothread_add_fd(vm, u->in_fd, uart_input, u);
        if (err == -EPERM) {
            /* A regular file cannot be polled: take what fits now. */
            pthread_mutex_lock(&u->lock);
            fill_rx_locked(u, false);
            pthread_mutex_unlock(&u->lock);
        } else if (err < 0) {
            return err;
        } else {
            u->in_polled = true;
        }
    }
    return vmm__io_add(vm, VMM_IO_PIO, COM1_BASE, 8, uart_rw, u, NULL);
}
