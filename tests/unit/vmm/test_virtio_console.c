/* tests/unit/vmm/test_virtio_console.c: the guest agent's port (vmm/virtio-console.c) and its
 * protocol (vmm/agent.c, vmm/agent-wire.c), driven as a Linux virtio_console driver drives them
 * over the fake VM: the multiport control exchange names port 0 org.vdi.agent.0 and opens it;
 * the host's hello waits until the guest opens the port; the agent's hello, heartbeats, lines cut
 * across buffers and over-long lines; messages for the guest and why they are refused; the
 * heartbeat watchdog's agent-lost and agent events; a broken control chain; base64 and fields. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tests/unit/vmm/virtio_drv.h"

#define RXQ     0
#define TXQ     1
#define CRXQ    2
#define CTXQ    3
#define CRXBUF  0x40000 /* 8 control receive buffers of 64 bytes */
#define CTXBUF  0x41000
#define RXBUF   0x50000 /* port receive buffers of 4 KiB */
#define TXBUF   0x60000 /* port transmit data, up to 64 KiB */
#define MULTI   (1ull << 1)
#define DEV_RDY 0
#define DEV_ADD 1
#define P_READY 3
#define P_OPEN  6
#define P_NAME  7

struct cctx {
    vmm_vm_t *vm;
    struct drv d;
    struct vmm_virtio_dev *vd;
    unsigned crx_seen, rx_seen;
};

static void post_ctrl_rx(struct cctx *c, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        unsigned slot = c->d.avail_idx[CRXQ] % QSZ;
        set_desc(&c->d, CRXQ, slot, CRXBUF + 64 * slot, 64, F_WRITE, 0);
        submit(&c->d, CRXQ, (uint16_t)slot);
    }
}

static void post_rx(struct cctx *c, unsigned n, uint32_t len)
{
    for (unsigned i = 0; i < n; i++) {
        unsigned slot = c->d.avail_idx[RXQ] % QSZ;
        set_desc(&c->d, RXQ, slot, RXBUF + 4096 * slot, len, F_WRITE, 0);
        submit(&c->d, RXQ, (uint16_t)slot);
    }
}

static void send_ctrl(struct cctx *c, uint32_t id, uint16_t event, uint16_t value)
{
    unsigned slot = c->d.avail_idx[CTXQ] % QSZ;
    uint8_t *m = c->vm->ram + CTXBUF + 16 * slot;
    memcpy(m, &id, 4);
    memcpy(m + 4, &event, 2);
    memcpy(m + 6, &value, 2);
    set_desc(&c->d, CTXQ, slot, CTXBUF + 16 * slot, 8, 0, 0);
    submit(&c->d, CTXQ, (uint16_t)slot);
}

/* The next control message the device wrote: its event and value, the name after it. */
static void next_ctrl(struct cctx *c, uint16_t *event, uint16_t *value, char *name)
{
    assert_true(used_idx(&c->d, CRXQ) > c->crx_seen);
    uint8_t *used = c->vm->ram + c->d.ring[CRXQ] + 0x200 + 4 + 8 * (c->crx_seen % QSZ);
    uint32_t head, len, id;
    memcpy(&head, used, 4);
    memcpy(&len, used + 4, 4);
    const uint8_t *m = c->vm->ram + CRXBUF + 64 * head;
    assert_true(len >= 8);
    memcpy(&id, m, 4);
    assert_int_equal(id, 0);
    memcpy(event, m + 4, 2);
    memcpy(value, m + 6, 2);
    if (name) {
        memcpy(name, m + 8, len - 8);
        name[len - 8] = 0;
    }
    c->crx_seen++;
}

/* Send @len bytes of @data from the guest on the port, cut into chains of @piece bytes. */
static void guest_write(struct cctx *c, const char *data, size_t len, size_t piece)
{
    for (size_t off = 0; off < len; off += piece) {
        size_t n = VDI_MIN(piece, len - off);
        unsigned slot = c->d.avail_idx[TXQ] % QSZ;
        memcpy(c->vm->ram + TXBUF, data + off, n);
        set_desc(&c->d, TXQ, slot, TXBUF, (uint32_t)n, 0, 0);
        submit(&c->d, TXQ, (uint16_t)slot);
    }
}

static void guest_say(struct cctx *c, const char *line)
{
    guest_write(c, line, strlen(line), strlen(line));
}

/* What the device put in the port's receive buffers since the last call, as one string. */
static char *guest_read(struct cctx *c)
{
    static char buf[65536];
    size_t o = 0;
    while (used_idx(&c->d, RXQ) > c->rx_seen) {
        uint8_t *used = c->vm->ram + c->d.ring[RXQ] + 0x200 + 4 + 8 * (c->rx_seen % QSZ);
        uint32_t head, len;
        memcpy(&head, used, 4);
        memcpy(&len, used + 4, 4);
        assert_true(o + len < sizeof(buf));
        memcpy(buf + o, c->vm->ram + RXBUF + 4096 * head, len);
        o += len;
        c->rx_seen++;
    }
    buf[o] = 0;
    return buf;
}

static struct cctx *cons_attach(void)
{
    struct cctx *c = calloc(1, sizeof(*c));
    c->vm = fake_vm_new(RAM);
    assert_int_equal(vmm__pci_bus_create(c->vm), 0);
    assert_int_equal(vmm__virtio_console_create(c->vm, &c->vd), 0);
    drv_attach(&c->d, c->vm, 1);
    assert_int_equal(cfg_read(c->vm, 1, 0x02, 2), 0x1043);
    assert_int_equal(drv_offered(&c->d), MULTI | 1ull << 28 | 1ull << 32 | 1ull << 40);
    assert_int_equal(drv_init(&c->d, MULTI, 4, false), 0x0f);
    return c;
}

/* Attach, then the whole control exchange; the guest's agent has not opened the port yet. */
static struct cctx *cons_ready(void)
{
    struct cctx *c = cons_attach();
    uint16_t ev, val;
    char name[64];
    post_ctrl_rx(c, 8);
    send_ctrl(c, 0, DEV_RDY, 1);
    next_ctrl(c, &ev, &val, NULL);
    assert_int_equal(ev, DEV_ADD);
    send_ctrl(c, 0, P_READY, 1);
    next_ctrl(c, &ev, &val, name);
    assert_int_equal(ev, P_NAME);
    assert_string_equal(name, "org.vdi.agent.0");
    next_ctrl(c, &ev, &val, NULL);
    assert_int_equal(ev, P_OPEN);
    assert_int_equal(val, 1);
    assert_int_equal(used_idx(&c->d, CRXQ), c->crx_seen); /* nothing else */
    return c;
}

static void cons_detach(struct cctx *c)
{
    vmm__pci_teardown(c->vm);
    assert_int_equal(c->vm->nfds, 0);
    fake_vm_free(c->vm);
    free(c);
}

static void test_config_and_handshake(void **state)
{
    (void)state;
    struct cctx *c = cons_attach();
    /* cols, rows, max_nr_ports = 1 */
    uint32_t ports;
    fake_io(c->vm, VMM_IO_MMIO, c->d.bar4 + 0x2000 + 4, &ports, 4, false);
    assert_int_equal(ports, 1);
    /* DEVICE_READY with a failure value adds nothing; a second READY adds the port once. */
    post_ctrl_rx(c, 4);
    send_ctrl(c, 0, DEV_RDY, 0);
    assert_int_equal(used_idx(&c->d, CRXQ), 0);
    send_ctrl(c, 0, DEV_RDY, 1);
    send_ctrl(c, 0, DEV_RDY, 1);
    assert_int_equal(used_idx(&c->d, CRXQ), 1);
    /* A port id that does not exist is ignored. */
    send_ctrl(c, 5, P_READY, 1);
    assert_int_equal(used_idx(&c->d, CRXQ), 1);
    cons_detach(c);
}

static void test_hello_and_heartbeat(void **state)
{
    (void)state;
    struct cctx *c = cons_ready();
    struct vmm_agent_status st;
    post_rx(c, 4, 4096);
    /* Closed port: nothing for the guest yet, and no agent. */
    assert_string_equal(guest_read(c), "");
    vmm__virtio_console_status(c->vd, &st);
    assert_true(st.present);
    assert_false(st.connected);
    send_ctrl(c, 0, P_OPEN, 1);
    assert_string_equal(guest_read(c), "hello v=1 host=vdi-vmm\n");
    vmm__virtio_console_status(c->vd, &st);
    assert_true(st.connected);
    assert_false(st.up);
    /* A hello cut in three chains, with a CR. */
    int before = c->vm->nevents;
    const char *h = "hello v=1 agent=testdesk hb=5 caps=message,clipboard\r\n";
    guest_write(c, h, strlen(h), 7);
    assert_int_equal(c->vm->nevents, before + 1);
    assert_int_equal(c->vm->last_event, VMM_EVENT_AGENT);
    assert_string_equal(c->vm->last_reason, "testdesk v=1 heartbeat=5s caps=message,clipboard");
    vmm__virtio_console_status(c->vd, &st);
    assert_true(st.up);
    assert_string_equal(st.name, "testdesk");
    assert_string_equal(st.caps, "message,clipboard");
    assert_int_equal(st.heartbeat_s, 5);
    /* Heartbeats and verbs we do not know raise nothing. */
    guest_say(c, "heartbeat seq=1\n");
    guest_say(c, "frobnicate x=1\nheartbeat seq=2\n");
    assert_int_equal(c->vm->nevents, before + 1);
    /* Closing the port loses the agent. */
    send_ctrl(c, 0, P_OPEN, 0);
    assert_int_equal(c->vm->last_event, VMM_EVENT_AGENT_LOST);
    assert_string_equal(c->vm->last_reason, "the agent closed its port");
    vmm__virtio_console_status(c->vd, &st);
    assert_false(st.connected);
    assert_string_equal(st.name, "");
    cons_detach(c);
}

static void test_bad_hellos_and_long_lines(void **state)
{
    (void)state;
    struct cctx *c = cons_ready();
    post_rx(c, 2, 4096);
    send_ctrl(c, 0, P_OPEN, 1);
    static const char *const bad[] = {
        "hello agent=testdesk hb=5\n",              /* no v */
        "hello v=1 hb=5\n",                         /* no agent */
        "hello v=1 agent=Test hb=5\n",              /* capital letters */
        "hello v=1 agent=testdesk\n",               /* no hb */
        "hello v=1 agent=testdesk hb=0\n",          /* hb out of range */
        "hello v=1 agent=testdesk hb=301\n",        /* ... */
        "hello v=1 agent=testdesk hb=5x\n",         /* not a number */
        "hello v=1 agent=testdesk hb=5 caps=a;b\n", /* caps alphabet */
        "hello v=1 agent=\x1b[2Jx hb=5\n",          /* an escape sequence as a name */
        "hellov=1 agent=testdesk hb=5\n",           /* not the verb */
    };
    for (size_t i = 0; i < VDI_ARRAY_SIZE(bad); i++)
        guest_say(c, bad[i]);
    assert_int_equal(c->vm->nevents, 0);
    /* A line over the limit is dropped whole, also its tail in a later chain; the next one
     * counts. */
    size_t big = VMM_AGENT_MAX_LINE + 100;
    char *junk = malloc(big);
    memset(junk, 'h', big);
    guest_write(c, junk, big, 60000);
    guest_say(c, "ello v=1 agent=x hb=5\n"); /* the over-long line's tail: dropped */
    assert_int_equal(c->vm->nevents, 0);
    guest_say(c, "hello v=2 agent=x hb=5\n");
    assert_int_equal(c->vm->nevents, 1);
    assert_string_equal(c->vm->last_reason, "x v=2 heartbeat=5s caps=none");
    free(junk);
    cons_detach(c);
}

static void test_messages(void **state)
{
    (void)state;
    struct cctx *c = cons_ready();
    const char *text = "Your desktop moves to a new version in 5 minutes. Grüße";
    char b64[256];
    post_rx(c, 4, 4096);
    assert_int_equal(vmm__virtio_console_message(c->vd, text, 300), -ENOTCONN);
    send_ctrl(c, 0, P_OPEN, 1);
    guest_read(c);
    assert_int_equal(vmm__virtio_console_message(c->vd, text, 300), -ENOTCONN); /* no hello */
    guest_say(c, "hello v=1 agent=a hb=5 caps=clipboard\n");
    assert_int_equal(vmm__virtio_console_message(c->vd, text, 300), -EOPNOTSUPP);
    guest_say(c, "hello v=1 agent=a hb=5 caps=clipboard,message\n");
    assert_int_equal(vmm__virtio_console_message(c->vd, "", 300), -EINVAL);
    assert_int_equal(vmm__virtio_console_message(c->vd, text, 0), -EINVAL);
    assert_int_equal(vmm__virtio_console_message(c->vd, text, 3601), -EINVAL);
    assert_int_equal(vmm__virtio_console_message(c->vd, text, 300), 0);
    b64[vmm_b64_encode(text, strlen(text), b64)] = 0;
    char want[512];
    snprintf(want, sizeof(want), "message secs=300 text64=%s\n", b64);
    assert_string_equal(guest_read(c), want);
    /* A guest that stops reading: messages wait, then are refused; nothing is lost before. */
    int err = 0, n = 0;
    char *big = malloc(VMM_AGENT_TEXT_MAX + 1);
    memset(big, 'm', VMM_AGENT_TEXT_MAX);
    big[VMM_AGENT_TEXT_MAX] = 0;
    while ((err = vmm__virtio_console_message(c->vd, big, 10)) == 0)
        n++;
    assert_int_equal(err, -ENOBUFS);
    assert_true(n > 500);
    free(big);
    cons_detach(c);
}

static void test_watchdog(void **state)
{
    (void)state;
    vmm_vm_t *vm = fake_vm_new(RAM);
    struct vmm_agent a;
    vmm__agent_init(&a, vm);
    vmm__agent_opened(&a, true, 1000);
    assert_int_equal(vmm__agent_tick(&a, 1000), 0); /* no hello: nothing to watch */
    const char *h = "hello v=1 agent=testdesk hb=2\n";
    vmm__agent_input(&a, h, strlen(h), 1000);
    assert_int_equal(vm->last_event, VMM_EVENT_AGENT);
    assert_int_equal(vmm__agent_tick(&a, 1000), 6000);
    vmm__agent_input(&a, "heartbeat\n", 10, 3000);
    assert_int_equal(vmm__agent_tick(&a, 8999), 1);
    assert_int_equal(vm->nevents, 1);
    assert_int_equal(vmm__agent_tick(&a, 9000), 0);
    assert_int_equal(vm->nevents, 2);
    assert_int_equal(vm->last_event, VMM_EVENT_AGENT_LOST);
    assert_string_equal(vm->last_reason, "no heartbeat for 6 s from testdesk (one every 2 s)");
    struct vmm_agent_status st;
    vmm__agent_status(&a, 9500, &st);
    assert_false(st.up);
    assert_int_equal(st.last_ms_ago, 6500);
    assert_int_equal(vmm__agent_tick(&a, 20000), 0); /* said once */
    assert_int_equal(vm->nevents, 2);
    vmm__agent_input(&a, "heartbeat\n", 10, 21000);
    assert_int_equal(vm->nevents, 3);
    assert_int_equal(vm->last_event, VMM_EVENT_AGENT);
    assert_string_equal(vm->last_reason, "testdesk is back");
    vmm__agent_status(&a, 21000, &st);
    assert_true(st.up);
    assert_int_equal(vmm__agent_tick(&a, 21000), 6000);
    vmm__agent_fini(&a);
    fake_vm_free(vm);
}

static void test_broken_control_chain(void **state)
{
    (void)state;
    struct cctx *c = cons_ready();
    /* A chain that points outside guest RAM. */
    unsigned slot = c->d.avail_idx[CTXQ] % QSZ;
    set_desc(&c->d, CTXQ, slot, RAM + 0x1000, 8, 0, 0);
    submit(&c->d, CTXQ, (uint16_t)slot);
    assert_true(c8(&c->d, 0x14) & 0x40); /* DEVICE_NEEDS_RESET */
    /* A reset brings it back: the exchange starts over. */
    assert_int_equal(drv_init(&c->d, MULTI, 4, false), 0x0f);
    cons_detach(c);
}

static void test_wire(void **state)
{
    (void)state;
    uint8_t out[16];
    char enc[32];
    assert_int_equal(vmm_b64_encode("", 0, enc), 0);
    assert_int_equal(vmm_b64_encode("f", 1, enc), 4);
    assert_memory_equal(enc, "Zg==", 4);
    assert_int_equal(vmm_b64_encode("foobar", 6, enc), 8);
    assert_memory_equal(enc, "Zm9vYmFy", 8);
    assert_int_equal(vmm_b64_len(5), 8);
    assert_int_equal(vmm_b64_decode("Zm9vYg==", 8, out, sizeof(out)), 4);
    assert_memory_equal(out, "foob", 4);
    assert_int_equal(vmm_b64_decode("Zm9vYmE=", 8, out, sizeof(out)), 5);
    static const char *const bad[] = {"Zm9", "Zg=a", "====", "Z===", "Zm9v\nmFy", "Zg==Zg=="};
    for (size_t i = 0; i < VDI_ARRAY_SIZE(bad); i++)
        assert_int_equal(vmm_b64_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -1);
    assert_int_equal(vmm_b64_decode("Zm9vYmFy", 8, out, 5), -1); /* does not fit */

    const char *line = "hello v=1 agent=td hb=5 caps= x=";
    const char *v;
    size_t n;
    uint32_t u;
    size_t len = strlen(line);
    assert_true(vmm_agent_is(line, len, "hello"));
    assert_false(vmm_agent_is(line, len, "hell"));
    assert_false(vmm_agent_is("hello", 5, "helloo"));
    assert_true(vmm_agent_field(line, len, "agent", &v, &n));
    assert_int_equal(n, 2);
    assert_memory_equal(v, "td", 2);
    assert_true(vmm_agent_field(line, len, "caps", &v, &n));
    assert_int_equal(n, 0);
    assert_false(vmm_agent_field(line, len, "hello", &v, &n)); /* the verb is not a field */
    assert_false(vmm_agent_field(line, len, "ag", &v, &n));
    assert_int_equal(vmm_agent_field_uint(line, len, "hb", 1, 300, &u), 0);
    assert_int_equal(u, 5);
    assert_int_equal(vmm_agent_field_uint(line, len, "hb", 6, 300, &u), -1);
    assert_int_equal(vmm_agent_field_uint(line, len, "x", 0, 300, &u), -1);
    assert_int_equal(vmm_agent_field_uint("v x=99999999999", 15, "x", 0, UINT32_MAX, &u), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_and_handshake),
        cmocka_unit_test(test_hello_and_heartbeat),
        cmocka_unit_test(test_bad_hellos_and_long_lines),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_watchdog),
        cmocka_unit_test(test_broken_control_chain),
        cmocka_unit_test(test_wire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
