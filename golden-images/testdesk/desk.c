/* golden-images/testdesk/desk.c: READY, the command interpreter (serial console and
 * testdesk.run) and the desktop loop: poll the devices, draw, sleep in ring 0 until the next
 * interrupt or timer deadline. */
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

void td_desk_run(unsigned cpus)
{
    td_ioapic_route(4, VEC_SERIAL);
    td_printf("TESTDESK READY cpus=%u fb=none disks=0\n", cpus);
    run_next = td_opt.run;
    for (;;) {
        uint64_t seen = td_irq_count;
        poll_serial();
        run_pending();
        uint64_t now = td_now_us();
        uint64_t next = now + 1000000;
        if (wait_until > now && wait_until < next)
            next = wait_until;
        td_timer_arm(next - now);
        td_sleep(seen);
    }
}
