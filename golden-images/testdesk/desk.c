/* golden-images/testdesk/desk.c: READY, the command interpreter (serial console and
 * testdesk.run) and the desktop loop: poll the devices, draw, sleep in ring 0 until the next
 * interrupt or timer deadline (one of which may be the data area's request to crash). */
#include "golden-images/testdesk/desk.h"

#define VEC_SERIAL 0x24
#define MAX_ARGS   8

static const char *run_next; /* the rest of testdesk.run */
static uint64_t wait_until;  /* `sleep`: no further testdesk.run command before this */
static char line[256];
static size_t line_len;

static void result(bool ok, const char *what, const char *detail)
{
    td_printf("TESTDESK %s %s%s%s\n", ok ? "OK" : "FAIL", what, *detail ? " " : "", detail);
}

static bool arg_u64(int argc, char **argv, int i, uint64_t *v)
{
    return i < argc && td_parse_u64(argv[i], v);
}

/* One command: words separated by spaces, ':', ',' or '=' ("anim=50" is "anim 50"). */
static void exec(char *s)
{
    char *argv[MAX_ARGS];
    int argc = 0;
    char detail[160];
    uint64_t a;
    for (char *p = s; *p;) {
        while (*p == ' ' || *p == ':' || *p == ',' || *p == '=' || *p == '\t')
            *p++ = 0;
        if (!*p)
            break;
        if (argc == MAX_ARGS) {
            result(false, "command", "too many words");
            return;
        }
        argv[argc++] = p;
        while (*p && *p != ' ' && *p != ':' && *p != ',' && *p != '=' && *p != '\t')
            p++;
    }
    if (!argc)
        return;
    const char *cmd = argv[0];
    detail[0] = 0;
    if (!strcmp(cmd, "poweroff")) {
        td_poweroff();
    } else if (!strcmp(cmd, "reboot")) {
        td_reboot();
    } else if (!strcmp(cmd, "sleep")) {
        if (!arg_u64(argc, argv, 1, &a) || a > 600000) {
            result(false, "sleep", "usage: sleep MILLISECONDS");
            return;
        }
        wait_until = td_now_us() + a * 1000;
        td_snprintf(detail, sizeof(detail), "ms=%lu", a);
        result(true, "sleep", detail);
    } else if (!strcmp(cmd, "anim")) {
        if (!arg_u64(argc, argv, 1, &a) || a > 100) {
            result(false, "anim", "usage: anim PERCENT (0..100)");
            return;
        }
        td_opt.anim = (unsigned)a;
        td_snprintf(detail, sizeof(detail), "percent=%lu", a);
        result(true, "anim", detail);
    } else if (!strcmp(cmd, "idle")) {
        td_opt.anim = 0;
        result(true, "idle", "");
    } else if (!strncmp(cmd, "disk-", 5)) {
        const char *op = cmd + 5;
        if (strcmp(op, "write") && strcmp(op, "read") && strcmp(op, "verify") &&
            strcmp(op, "flush")) {
            td_snprintf(detail, sizeof(detail), "unknown command \"%s\"", cmd);
            result(false, "command", detail);
            return;
        }
        td_blk_cmd(op, argc, argv);
    } else if (!strcmp(cmd, "flush")) {
        td_blk_cmd("flush", argc, argv);
    } else if (!strncmp(cmd, "net-", 4)) {
        td_net_cmd(cmd + 4, argc, argv);
    } else if (!strcmp(cmd, "agent-hang") || !strcmp(cmd, "agent-resume")) {
        td_console_cmd(cmd + 6);
    } else if (!strcmp(cmd, "rng")) {
        td_rng_cmd(argc, argv);
    } else if (!strcmp(cmd, "echo")) {
        size_t n = 0;
        for (int i = 1; i < argc && n < sizeof(detail) - 1; i++)
            n += (size_t)td_snprintf(detail + n, sizeof(detail) - n, "%s%s", i > 1 ? " " : "",
                                     argv[i]);
        result(true, "echo", detail);
    } else {
        td_snprintf(detail, sizeof(detail), "unknown command \"%s\"", cmd);
        result(false, "command", detail);
    }
}

static void poll_serial(void)
{
    int c;
    while ((c = td_serial_getc()) >= 0) {
        if (c == '\r' || c == '\n') {
            line[line_len] = 0;
            line_len = 0;
            exec(line);
        } else if (c == 0x7f || c == 0x08) {
            if (line_len)
                line_len--;
        } else if (line_len < sizeof(line) - 1 && c >= 0x20 && c < 0x7f) {
            line[line_len++] = (char)c;
        }
    }
}

/* The next testdesk.run command, once any `sleep` has passed. */
static void run_pending(void)
{
    while (run_next && *run_next && td_now_us() >= wait_until) {
        char buf[256];
        size_t n = 0;
        while (run_next[n] && run_next[n] != ';')
            n++;
        size_t m = n < sizeof(buf) - 1 ? n : sizeof(buf) - 1;
        memcpy(buf, run_next, m);
        buf[m] = 0;
        run_next += n + (run_next[n] == ';');
        exec(buf);
    }
}

/* Probe every PCI function we have a driver for. */
static void probe_devices(void)
{
    td_pci_scan();
    for (unsigned i = 0; i < td_pci_ndevs; i++) {
        const struct td_pci_dev *d = &td_pci_devs[i];
        if (d->vendor == 0x1234 && d->device == 0x1111) {
            td_fb_probe(d);
            continue;
        }
        switch (td_virtio_type(d)) {
        case 2:
            td_blk_probe(d);
            break;
        case 1:
            td_net_probe(d);
            break;
        case 3:
            td_console_probe(d);
            break;
        case 4:
            td_rng_probe(d);
            break;
        case 18:
            td_input_probe(d);
            break;
        default:
            break;
        }
    }
}

/* testdesk.require=fb,kbd,tablet,blk,rng: absent devices are reported; required ones fail. */
static void check_required(void)
{
    static const char *const names[] = {"fb", "kbd", "tablet", "blk", "rng", "net", "agent"};
    bool have[] = {td_fb_present(), td_have_keyboard(), td_have_tablet(), td_blk_count() > 0,
                   td_have_rng(),   td_have_net(),      td_have_agent()};
    const char *req = td_opt.require ? td_opt.require : "";
    for (unsigned i = 0; i < TD_ARRAY_SIZE(names); i++) {
        size_t n = strlen(names[i]);
        bool required = false;
        for (const char *p = req; *p;) {
            size_t m = 0;
            while (p[m] && p[m] != ',')
                m++;
            if (m == n && !strncmp(p, names[i], n))
                required = true;
            p += m + (p[m] == ',');
        }
        if (have[i])
            continue;
        if (required)
            td_printf("TESTDESK FAIL require %s missing\n", names[i]);
        else
            td_printf("testdesk: no %s\n", names[i]);
    }
    for (const char *p = req; *p;) {
        size_t m = 0;
        bool known = false;
        while (p[m] && p[m] != ',')
            m++;
        for (unsigned i = 0; i < TD_ARRAY_SIZE(names); i++)
            known |= m == strlen(names[i]) && !strncmp(p, names[i], m);
        if (!known && m)
            td_printf("TESTDESK FAIL require unknown device \"%.*s\"\n", (int)m, p);
        p += m + (p[m] == ',');
    }
}

void td_desk_run(unsigned cpus)
{
    td_ioapic_route(4, VEC_SERIAL);
    probe_devices();
    check_required();
    td_agent_boot();
    td_fb_draw_desktop();
    if (td_fb_present())
        td_printf("TESTDESK READY cpus=%u fb=%ux%u disks=%u\n", cpus, td_fb_width(), td_fb_height(),
                  td_blk_count());
    else
        td_printf("TESTDESK READY cpus=%u fb=none disks=%u\n", cpus, td_blk_count());
    uint64_t ready_us = td_now_us(), crash_ms, crash_at = UINT64_MAX, hang_at = UINT64_MAX;
    td_agent_patch(); /* returns unless this is a maintenance VM */
    if (td_agent_crash_ms(&crash_ms))
        crash_at = ready_us + crash_ms * 1000;
    if (td_agent_hang_ms(&crash_ms))
        hang_at = ready_us + crash_ms * 1000;
    run_next = td_opt.run;
    uint32_t last_clock = ~0u;
    uint64_t next_frame = 0, frame = 0, next_clock = 0;
    unsigned anim_was = 0;
    for (;;) {
        uint64_t seen = td_irq_count;
        if (td_now_us() >= crash_at) { /* before the commands: a due crash wins */
            td_printf("TESTDESK CRASH now\n");
            td_crash();
        }
        if (td_now_us() >= hang_at) {
            td_printf("TESTDESK AGENT hang now\n");
            td_console_hang();
            hang_at = UINT64_MAX;
        }
        uint64_t net_due = td_net_poll();
        uint64_t agent_due = td_console_poll();
        td_input_poll();
        poll_serial();
        run_pending();
        uint64_t now = td_now_us();
        if (now >= next_clock) {
            uint32_t secs = td_rtc_seconds();
            if (secs != last_clock)
                td_fb_clock(secs);
            last_clock = secs;
            next_clock = now + 250000; /* poll the RTC 4 times a second */
        }
        if (td_opt.anim && now >= next_frame) {
            td_fb_anim_frame(td_opt.anim, frame++);
            next_frame = now + 1000000 / td_opt.fps;
        } else if (!td_opt.anim && anim_was) {
            td_fb_anim_frame(0, 0);
        }
        anim_was = td_opt.anim;
        uint64_t next = next_clock;
        if (td_opt.anim && next_frame < next)
            next = next_frame;
        if (wait_until > now && wait_until < next)
            next = wait_until;
        if (net_due < next)
            next = net_due;
        if (agent_due < next)
            next = agent_due;
        if (crash_at < next)
            next = crash_at;
        if (hang_at < next)
            next = hang_at;
        now = td_now_us();
        td_timer_arm(next > now ? next - now : 1);
        td_sleep(seen);
    }
}
