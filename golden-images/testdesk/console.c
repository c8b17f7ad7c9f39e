/* golden-images/testdesk/console.c: testdesk's guest agent (docs/agent-protocol.md) on the
 * virtio console port named org.vdi.agent.0 (virtio 1.2 §5.3, VIRTIO_CONSOLE_F_MULTIPORT).
 *
 * The driver side of the control exchange: DEVICE_READY; for each DEVICE_ADD, PORT_READY; the
 * port whose PORT_NAME is the agent's is ours; once the host end is open (PORT_OPEN from the
 * device: vdi-vmm opens it at once, QEMU when a program connects to its chardev) we open ours
 * (PORT_OPEN 1) and say hello, and say it again each time the host end opens anew. The agent
 * then sends a heartbeat every testdesk.hb seconds, and shows `message`s from the host on screen
 * (a band under the title bar) and on serial (TESTDESK MESSAGE ...) for their seconds.
 * `agent-hang` stops the agent (no heartbeat, no answer: a hung guest), `agent-resume` restarts
 * it. Ports 0..MAX_PORTS-1 are served (vdi-vmm has one, port 0; QEMU's named ports start at 1).
 * The wire helpers are vdi-vmm's own (vmm/agent-wire.c), built into testdesk too.
 */
#include "golden-images/testdesk/desk.h"
#include "vmm/vmm.h"

#define F_MULTIPORT   (1ULL << 1)
#define MAX_PORTS     4
#define CTRL_BUFS     8
#define CTRL_BUF      64
#define RX_BUFS       4
#define RX_BUF        4096
#define TX_BUF        512
#define LINE_MAX      8192 /* longer lines from the host are dropped */
#define TX_TIMEOUT_US 1000000
#define CTRLQ_RX      2
#define CTRLQ_TX      3

#define DEVICE_READY  0
#define DEVICE_ADD    1
#define PORT_READY    3
#define PORT_OPEN     6
#define PORT_NAME     7

static struct td_virtio dev;
static bool present, hung;
static unsigned nports;
static uint8_t *ctrl_bufs, *rx_bufs, *tx_buf;
static int agent = -1;  /* our port's id, once named */
static bool host_open;  /* the host end of our port is open */
static bool said_hello; /* since the host end last opened */
static uint64_t next_hb, hb_seq, message_until;
static char line[LINE_MAX + 1];
static size_t line_len;
static bool line_skip;

bool td_have_agent(void)
{
    return present && agent >= 0;
}

static unsigned rxq_of(unsigned port)
{
    return port == 0 ? 0 : 2 + 2 * port;
}

static unsigned txq_of(unsigned port)
{
    return rxq_of(port) + 1;
}

/* Post @len bytes from @buf on queue @q and wait until the device took them. */
static bool send_on(unsigned q, const void *buf, uint32_t len)
{
    struct td_vq *vq = &dev.vq[q];
    if (len > TX_BUF)
        return false;
    memcpy(tx_buf, buf, len);
    uint64_t a = (uint64_t)(uintptr_t)tx_buf;
    bool w = false;
    if (!td_vq_post(vq, &a, &len, &w, 1))
        return false;
    td_vq_kick(vq);
    uint16_t head;
    uint32_t got;
    if (!td_vq_wait(vq, TX_TIMEOUT_US))
        return false;
    return td_vq_take(vq, &head, &got);
}

static void send_ctrl(uint32_t id, uint16_t event, uint16_t value)
{
    uint8_t m[8];
    memcpy(m, &id, 4);
    memcpy(m + 4, &event, 2);
    memcpy(m + 6, &value, 2);
    if (!send_on(CTRLQ_TX, m, sizeof(m)))
        td_printf("testdesk: agent: control message %u for port %u not taken\n", event, id);
}

static void send_line(const char *s)
{
    if (agent < 0 || !host_open || hung)
        return;
    if (!send_on(txq_of((unsigned)agent), s, (uint32_t)strlen(s)))
        td_printf("testdesk: agent: the host did not take a line\n");
}

static void say_hello(void)
{
    char h[96];
    td_snprintf(h, sizeof(h), "hello v=%d agent=testdesk hb=%u caps=message\n", VMM_AGENT_VERSION,
                td_opt.hb);
    send_line(h);
    said_hello = true;
    next_hb = td_now_us() + (uint64_t)td_opt.hb * 1000000;
}

static void show_message(const char *ln, size_t len)
{
    static uint8_t text[VMM_AGENT_TEXT_MAX + 1];
    char shown[161], serial[4 * 160 + 1];
    const char *v;
    size_t vlen;
    uint32_t secs;
    long n;
    if (vmm_agent_field_uint(ln, len, "secs", 1, VMM_AGENT_MESSAGE_MAX_S, &secs) < 0 ||
        !vmm_agent_field(ln, len, "text64", &v, &vlen) ||
        (n = vmm_b64_decode(v, vlen, text, VMM_AGENT_TEXT_MAX)) <= 0) {
        td_printf("TESTDESK FAIL agent message malformed\n");
        return;
    }
    /* The screen's font is ASCII: anything else shows as '?'. Serial gets \xNN escapes. */
    size_t s = 0, o = 0;
    for (long i = 0; i < n && s < sizeof(shown) - 1; i++)
        shown[s++] = text[i] >= 0x20 && text[i] < 0x7f ? (char)text[i] : '?';
    shown[s] = 0;
    for (long i = 0; i < n && o + 5 < sizeof(serial); i++) {
        if (text[i] >= 0x20 && text[i] < 0x7f && text[i] != '\\')
            serial[o++] = (char)text[i];
        else
            o += (size_t)td_snprintf(serial + o, sizeof(serial) - o, "\\x%02x", text[i]);
    }
    serial[o] = 0;
    td_printf("TESTDESK MESSAGE secs=%u bytes=%ld text=%s\n", secs, n, serial);
    td_fb_message(shown);
    message_until = td_now_us() + (uint64_t)secs * 1000000;
}

static void on_line(const char *ln, size_t len)
{
    if (vmm_agent_is(ln, len, "hello")) {
        const char *v;
        size_t vl;
        char host[33] = "?";
        if (vmm_agent_field(ln, len, "host", &v, &vl) && vl < sizeof(host)) {
            for (size_t i = 0; i < vl; i++)
                host[i] = v[i] > 0x20 && v[i] < 0x7f ? v[i] : '?';
            host[vl] = 0;
        }
        td_printf("TESTDESK AGENT hello host=%s\n", host);
    } else if (vmm_agent_is(ln, len, "message")) {
        show_message(ln, len);
    }
    /* Other verbs are for later versions: ignored. */
}

static void on_rx_bytes(const uint8_t *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        char c = (char)b[i];
        if (c == '\n') {
            if (!line_skip)
                on_line(line, line_len);
            line_len = 0;
            line_skip = false;
        } else if (line_len == LINE_MAX) {
            line_skip = true;
        } else if (!line_skip) {
            line[line_len++] = c;
        }
    }
}

static void on_ctrl(const uint8_t *m, uint32_t len)
{
    uint32_t id;
    uint16_t event, value;
    if (len < 8)
        return;
    memcpy(&id, m, 4);
    memcpy(&event, m + 4, 2);
    memcpy(&value, m + 6, 2);
    if (id >= nports)
        return;
    switch (event) {
    case DEVICE_ADD:
        send_ctrl(id, PORT_READY, 1);
        break;
    case PORT_NAME: {
        uint32_t n = len - 8; /* QEMU sends a NUL after the name, vdi-vmm does not */
        if (n && m[8 + n - 1] == 0)
            n--;
        if (n == sizeof(VMM_AGENT_PORT_NAME) - 1 && !memcmp(m + 8, VMM_AGENT_PORT_NAME, n)) {
            agent = (int)id;
            td_printf("testdesk: agent: %s is port %u\n", VMM_AGENT_PORT_NAME, id);
            send_ctrl(id, PORT_OPEN, 1); /* our end is open from now on */
        }
        break;
    }
    case PORT_OPEN:
        if ((int)id != agent)
            break;
        host_open = value != 0;
        said_hello = false;
        if (host_open && !hung)
            say_hello();
        break;
    default:
        break;
    }
}

static void post(unsigned q, uint8_t *buf, uint32_t len)
{
    uint64_t a = (uint64_t)(uintptr_t)buf;
    bool w = true;
    td_vq_post(&dev.vq[q], &a, &len, &w, 1);
}

void td_console_probe(const struct td_pci_dev *d)
{
    if (present) {
        td_printf("testdesk: virtio-console %02x:%02x.%x not used (one already)\n", d->bus, d->dev,
                  d->fn);
        return;
    }
    uint64_t cfg = td_virtio_devcfg(d);
    uint32_t max_ports = cfg ? rd32(cfg + 4) : 0;
    nports = max_ports < MAX_PORTS ? max_ports : MAX_PORTS;
    if (nports == 0) {
        td_printf("TESTDESK FAIL virtio-console %02x:%02x.%x no ports (max_nr_ports 0)\n", d->bus,
                  d->dev, d->fn);
        return;
    }
    if (td_virtio_init(&dev, d, "virtio-console", F_MULTIPORT, 2 + 2 * nports, 16) < 0)
        return;
    if (!(dev.features & F_MULTIPORT)) {
        td_printf("TESTDESK FAIL virtio-console no multiport (VIRTIO_CONSOLE_F_MULTIPORT)\n");
        return;
    }
    ctrl_bufs = td_alloc(CTRL_BUFS * CTRL_BUF, 64);
    rx_bufs = td_alloc((uint64_t)nports * RX_BUFS * RX_BUF, 64);
    tx_buf = td_alloc(TX_BUF, 64);
    if (!ctrl_bufs || !rx_bufs || !tx_buf) {
        td_printf("TESTDESK FAIL virtio-console out of memory\n");
        return;
    }
    for (unsigned i = 0; i < CTRL_BUFS; i++)
        post(CTRLQ_RX, ctrl_bufs + i * CTRL_BUF, CTRL_BUF);
    for (unsigned p = 0; p < nports; p++)
        for (unsigned i = 0; i < RX_BUFS; i++)
            post(rxq_of(p), rx_bufs + ((uint64_t)p * RX_BUFS + i) * RX_BUF, RX_BUF);
    td_virtio_driver_ok(&dev);
    td_vq_kick(&dev.vq[CTRLQ_RX]);
    for (unsigned p = 0; p < nports; p++)
        td_vq_kick(&dev.vq[rxq_of(p)]);
    present = true;
    td_printf("testdesk: virtio-console %02x:%02x.%x ports=%u\n", d->bus, d->dev, d->fn, nports);
    send_ctrl(0, DEVICE_READY, 1);
    /* The device names its ports at once: wait a little so that READY can say "agent". */
    uint64_t end = td_now_us() + 200000;
    while (agent < 0 && td_now_us() < end)
        if (td_vq_wait(&dev.vq[CTRLQ_RX], end - td_now_us()))
            td_console_poll();
}

uint64_t td_console_poll(void)
{
    uint16_t head;
    uint32_t len;
    if (!present)
        return UINT64_MAX;
    while (td_vq_take(&dev.vq[CTRLQ_RX], &head, &len)) {
        uint8_t *b = (uint8_t *)(uintptr_t)dev.vq[CTRLQ_RX].desc[head].addr;
        on_ctrl(b, len < CTRL_BUF ? len : CTRL_BUF);
        td_vq_repost(&dev.vq[CTRLQ_RX], head);
        td_vq_kick(&dev.vq[CTRLQ_RX]);
    }
    for (unsigned p = 0; p < nports; p++) {
        struct td_vq *q = &dev.vq[rxq_of(p)];
        bool any = false;
        while (td_vq_take(q, &head, &len)) {
            const uint8_t *b = (const uint8_t *)(uintptr_t)q->desc[head].addr;
            if ((int)p == agent && !hung)
                on_rx_bytes(b, len < RX_BUF ? len : RX_BUF);
            td_vq_repost(q, head);
            any = true;
        }
        if (any)
            td_vq_kick(q);
    }
    uint64_t now = td_now_us(), due = UINT64_MAX;
    if (message_until && now >= message_until) {
        message_until = 0;
        td_fb_message("");
    }
    if (message_until)
        due = message_until;
    if (said_hello && host_open && !hung) {
        if (now >= next_hb) {
            char hb[48];
            td_snprintf(hb, sizeof(hb), "heartbeat seq=%lu\n", ++hb_seq);
            send_line(hb);
            next_hb = now + (uint64_t)td_opt.hb * 1000000;
        }
        if (next_hb < due)
            due = next_hb;
    }
    return due;
}

void td_console_hang(void)
{
    hung = true;
}

void td_console_cmd(const char *op)
{
    if (!td_have_agent()) {
        td_printf("TESTDESK FAIL agent-%s no agent port\n", op);
        return;
    }
    if (!strcmp(op, "hang")) {
        hung = true;
        td_printf("TESTDESK OK agent-hang\n");
    } else if (!strcmp(op, "resume")) {
        hung = false;
        line_len = 0;
        line_skip = false;
        if (host_open)
            say_hello();
        td_printf("TESTDESK OK agent-resume\n");
    } else {
        td_printf("TESTDESK FAIL command unknown command \"agent-%s\"\n", op);
    }
}
