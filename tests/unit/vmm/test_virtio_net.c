/* tests/unit/vmm/test_virtio_net.c: virtio-net (vmm/virtio-net.c) driven like a driver over the
 * fake VM, with a SOCK_DGRAM socketpair standing in for the tap (one frame per datagram behind a
 * 12-byte virtio-net header, as a tap with IFF_VNET_HDR): plain frames pass byte for byte both
 * ways, also with the header in a descriptor of its own; a guest header asking for checksum or
 * segmentation offload (never negotiated) never reaches the tap; the header the guest receives
 * is the plain one whatever the tap sent, and a frame that would need an offload is not
 * delivered. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/socket.h>

#include "tests/unit/vmm/virtio_drv.h"

#define RXQ      0
#define TXQ      1
#define HDR      12
#define TXBUF    0x40000
#define RXBUF    0x50000 /* 8 x 2 KiB */
#define F_CSUM   1       /* VIRTIO_NET_HDR_F_NEEDS_CSUM */
#define F_VALID  2       /* VIRTIO_NET_HDR_F_DATA_VALID */
#define GSO_TCP4 1

struct netctx {
    vmm_vm_t *vm;
    struct drv d;
    int peer; /* the host side of the "tap" */
    uint16_t rx_posted;
};

static struct netctx *net_attach(void)
{
    struct netctx *c = calloc(1, sizeof(*c));
    struct vmm_virtio_dev *vd;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    c->peer = sv[1];
    c->vm = fake_vm_new(RAM);
    assert_int_equal(vmm__pci_bus_create(c->vm), 0);
    assert_int_equal(vmm__virtio_net_create_fd(c->vm, sv[0], NULL, &vd), 0);
    drv_attach(&c->d, c->vm, 1);
    assert_int_equal(cfg_read(c->vm, 1, 0x02, 2), 0x1041);
    /* MAC and STATUS only: no offload is offered, so none can be negotiated. */
    assert_int_equal(drv_offered(&c->d),
                     1ull << 5 | 1ull << 16 | 1ull << 28 | 1ull << 32 | 1ull << 40);
    assert_int_equal(drv_init(&c->d, 1u << 5 | 1u << 16, 2, false), 0x0f);
    return c;
}

static void net_detach(struct netctx *c)
{
    vmm__pci_teardown(c->vm);
    assert_int_equal(c->vm->nfds, 0);
    fake_vm_free(c->vm);
    close(c->peer);
    free(c);
}

/* The next datagram the "tap" got, or -1 if none. */
static ssize_t tap_recv(struct netctx *c, uint8_t *buf, size_t cap)
{
    return recv(c->peer, buf, cap, MSG_DONTWAIT);
}

/* A 60-byte Ethernet frame: broadcast, a MAC, type 0x88b5, a recognisable payload. */
static void make_frame(uint8_t *f, uint8_t tag)
{
    memset(f, 0, 60);
    memset(f, 0xff, 6);
    memcpy(f + 6, "\x52\x54\x00\x12\x34\x56", 6);
    f[12] = 0x88;
    f[13] = 0xb5;
    for (unsigned i = 14; i < 60; i++)
        f[i] = (uint8_t)(tag + i);
}

static void make_hdr(uint8_t *h, uint8_t flags, uint8_t gso, uint16_t hdr_len, uint16_t gso_size,
                     uint16_t csum_start, uint16_t csum_off)
{
    uint16_t v[5] = {hdr_len, gso_size, csum_start, csum_off, 0};
    h[0] = flags;
    h[1] = gso;
    memcpy(h + 2, v, 10);
}

/* Queue one TX chain: the header and the frame in one descriptor, or in two (@split). */
static void guest_send(struct netctx *c, const uint8_t *hdr, const uint8_t *frame, bool split)
{
    static uint16_t slot;
    uint64_t at = TXBUF + 0x200 * (slot % 8);
    memcpy(c->vm->ram + at, hdr, HDR);
    memcpy(c->vm->ram + at + 0x80, frame, 60);
    if (split) {
        set_desc(&c->d, TXQ, 0, at, HDR, F_NEXT, 1);
        set_desc(&c->d, TXQ, 1, at + 0x80, 60, 0, 0);
    } else {
        memmove(c->vm->ram + at + HDR, c->vm->ram + at + 0x80, 60);
        set_desc(&c->d, TXQ, 0, at, HDR + 60, 0, 0);
    }
    uint16_t before = used_idx(&c->d, TXQ);
    submit(&c->d, TXQ, 0);
    /* Every chain comes back used, sent or dropped. */
    assert_int_equal(used_idx(&c->d, TXQ), (uint16_t)(before + 1));
    slot++;
}

static void test_tx(void **state)
{
    (void)state;
    struct netctx *c = net_attach();
    uint8_t hdr[HDR], frame[60], got[256];

    /* A plain frame: the tap gets exactly the guest's bytes, header in one piece or two. */
    make_hdr(hdr, 0, 0, 0, 0, 0, 0);
    make_frame(frame, 1);
    guest_send(c, hdr, frame, false);
    assert_int_equal(tap_recv(c, got, sizeof(got)), HDR + 60);
    assert_memory_equal(got, hdr, HDR);
    assert_memory_equal(got + HDR, frame, 60);
    make_frame(frame, 2);
    guest_send(c, hdr, frame, true);
    assert_int_equal(tap_recv(c, got, sizeof(got)), HDR + 60);
    assert_memory_equal(got, hdr, HDR);
    assert_memory_equal(got + HDR, frame, 60);

    /* Checksum and segmentation offload asked for, never negotiated: nothing reaches the tap. */
    make_hdr(hdr, F_CSUM, GSO_TCP4, 54, 1448, 34, 16);
    make_frame(frame, 3);
    guest_send(c, hdr, frame, false);
    assert_int_equal(tap_recv(c, got, sizeof(got)), -1);
    make_hdr(hdr, F_CSUM, 0, 0, 0, 14, 0xfff0);
    guest_send(c, hdr, frame, true);
    assert_int_equal(tap_recv(c, got, sizeof(got)), -1);
    make_hdr(hdr, 0, GSO_TCP4, 0xffff, 1, 0, 0);
    guest_send(c, hdr, frame, false);
    assert_int_equal(tap_recv(c, got, sizeof(got)), -1);

    /* Junk in the other fields without flags: the frame goes, behind an all-zero header. */
    make_hdr(hdr, 0, 0, 0xffff, 0x1234, 0xfff0, 0xfff0);
    make_frame(frame, 4);
    guest_send(c, hdr, frame, true);
    uint8_t zero[HDR] = {0};
    assert_int_equal(tap_recv(c, got, sizeof(got)), HDR + 60);
    assert_memory_equal(got, zero, HDR);
    assert_memory_equal(got + HDR, frame, 60);

    /* And plain frames still pass afterwards. */
    make_hdr(hdr, 0, 0, 0, 0, 0, 0);
    make_frame(frame, 5);
    guest_send(c, hdr, frame, false);
    assert_int_equal(tap_recv(c, got, sizeof(got)), HDR + 60);
    assert_memory_equal(got + HDR, frame, 60);
    net_detach(c);
}

/* Post RX buffer @i (2 KiB, device-writable) and let the I/O thread run. */
static void post_rx(struct netctx *c, unsigned i)
{
    set_desc(&c->d, RXQ, i, RXBUF + 2048 * i, 2048, F_WRITE, 0);
    memset(c->vm->ram + RXBUF + 2048 * i, 0xee, 2048);
    submit(&c->d, RXQ, (uint16_t)i);
    c->rx_posted++;
}

static void tap_send(struct netctx *c, const uint8_t *hdr, const uint8_t *frame)
{
    uint8_t pkt[HDR + 60];
    memcpy(pkt, hdr, HDR);
    memcpy(pkt + HDR, frame, 60);
    assert_int_equal(send(c->peer, pkt, sizeof(pkt), 0), (ssize_t)sizeof(pkt));
    fake_iothread_run(c->vm);
}

static void test_rx(void **state)
{
    (void)state;
    struct netctx *c = net_attach();
    uint8_t hdr[HDR], frame[60];
    const uint8_t plain[HDR] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}; /* num_buffers 1 */
    post_rx(c, 0);
    post_rx(c, 1);
    assert_int_equal(used_idx(&c->d, RXQ), 0);

    /* A plain frame arrives byte for byte behind a plain header. */
    make_hdr(hdr, 0, 0, 0, 0, 0, 0);
    make_frame(frame, 7);
    tap_send(c, hdr, frame);
    assert_int_equal(used_idx(&c->d, RXQ), 1);
    assert_int_equal(used_len(&c->d, RXQ, 0), HDR + 60);
    assert_memory_equal(c->vm->ram + RXBUF, plain, HDR);
    assert_memory_equal(c->vm->ram + RXBUF + HDR, frame, 60);

    /* DATA_VALID and stray fields from the tap: the guest did not negotiate GUEST_CSUM, so its
     * header is the plain one. */
    make_hdr(hdr, F_VALID, 0, 99, 98, 97, 96);
    make_frame(frame, 8);
    tap_send(c, hdr, frame);
    assert_int_equal(used_idx(&c->d, RXQ), 2);
    assert_memory_equal(c->vm->ram + RXBUF + 2048, plain, HDR);
    assert_memory_equal(c->vm->ram + RXBUF + 2048 + HDR, frame, 60);

    /* Frames that would need an offload the guest cannot do are not delivered... */
    post_rx(c, 2);
    make_hdr(hdr, F_CSUM, 0, 0, 0, 34, 16);
    tap_send(c, hdr, frame);
    make_hdr(hdr, 0, GSO_TCP4, 54, 1448, 0, 0);
    tap_send(c, hdr, frame);
    assert_int_equal(used_idx(&c->d, RXQ), 2);
    /* ...and the buffer they did not use takes the next plain frame. */
    make_hdr(hdr, 0, 0, 0, 0, 0, 0);
    make_frame(frame, 9);
    tap_send(c, hdr, frame);
    assert_int_equal(used_idx(&c->d, RXQ), 3);
    assert_int_equal(used_len(&c->d, RXQ, 2), HDR + 60);
    assert_memory_equal(c->vm->ram + RXBUF + 4096, plain, HDR);
    assert_memory_equal(c->vm->ram + RXBUF + 4096 + HDR, frame, 60);
    net_detach(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tx),
        cmocka_unit_test(test_rx),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
