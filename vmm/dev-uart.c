/* vmm/dev-uart.c: an 8250/16550A UART on COM1 (0x3f8, IRQ 4), transmit only: what the guest
 * writes goes to --serial-log or stdout, line-buffered. Reads of the receiver find it empty.
 * The transmitter is always ready; a THR-empty interrupt is raised when enabled (Linux's 8250
 * driver transmits from that interrupt once the console is a tty). */
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

struct uart {
    vmm_vm_t *vm;
    pthread_mutex_t lock;
    int fd;
    bool own_fd, saw_line;
    uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
    bool thre_pending, loop_rx;
    bool irq_level; /* what we last told KVM: KVM_IRQ_LINE is costly, call it on changes only */
    uint8_t loop_byte;
    char buf[512];
    size_t len;
};

static void flush_locked(struct uart *u)
{
    size_t off = 0;
    while (off < u->len) {
        ssize_t w = write(u->fd, u->buf + off, u->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            VDI_LOG_WARN_RL("vm=%s serial output lost: %s", vmm__vm_name(u->vm),
                            w < 0 ? strerror(errno) : "short write");
            break;
        }
        off += (size_t)w;
    }
    u->len = 0;
}

static void update_irq(struct uart *u)
{
    bool level = ((u->ier & IER_THRI) && u->thre_pending) || ((u->ier & 1) && u->loop_rx);
    if (level == u->irq_level)
        return;
    u->irq_level = level;
    vmm__irq_line(u->vm, VMM_UART_IRQ, level);
}

static void uart_rw(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct uart *u = opaque;
    uint8_t *d = data;
    bool line_done = false;
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
            }
            break;
        case 1:
            d[0] = dlab ? u->dlm : u->ier;
            break;
        case 2: {
            uint8_t fifo = (u->fcr & 1) ? 0xc0 : 0;
            if ((u->ier & 1) && u->loop_rx) {
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
            d[0] = LSR_THRE | LSR_TEMT | (u->loop_rx ? LSR_DR : 0);
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
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
    if (line_done)
        vmm__vm_event(u->vm, "booted", NULL);
}

static void uart_free(void *p)
{
    struct uart *u = p;
    pthread_mutex_lock(&u->lock);
    flush_locked(u);
    pthread_mutex_unlock(&u->lock);
    if (u->own_fd)
        close(u->fd);
    pthread_mutex_destroy(&u->lock);
    free(u);
}

int vmm__uart_setup(vmm_vm_t *vm, const struct vmm_config *cfg)
{
    struct uart *u = vdi_xcalloc(1, sizeof(*u));
    int err;
    u->vm = vm;
    pthread_mutex_init(&u->lock, NULL);
    u->fd = STDOUT_FILENO;
    if (cfg->serial_log) {
        u->fd = open(cfg->serial_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (u->fd < 0) {
            err = -errno;
            pthread_mutex_destroy(&u->lock);
            free(u);
            return err;
        }
        u->own_fd = true;
    }
    vmm__vm_own(vm, u, uart_free);
    return vmm__io_add(vm, VMM_IO_PIO, COM1_BASE, 8, uart_rw, u, NULL);
}
