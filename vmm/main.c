/* vmm/main.c: the vdi-vmm entry point: options, then the virtual machine, then the exit status
 * that says how it ended (docs/vmm-control.md). */
#define VDI_LOG_TAG "vmm"
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/vdi.h"
#include "display/dpy.h"
#include "golden-images/img.h"
#include "vmm/internal.h"

#define MIN_MEM_MIB 16ULL
#define MAX_MEM_MIB (1ULL << 20) /* 1 TiB */

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: vdi-vmm --kernel FILE [OPTION]...\n"
        "Run one desktop virtual machine on KVM.\n"
        "\n"
        "  -k, --kernel FILE         a PVH ELF kernel or a Linux bzImage\n"
        "  -i, --initrd FILE         initial ramdisk (PVH: module 0)\n"
        "  -c, --cmdline STR         kernel command line\n"
        "      --guest-decompress    let a bzImage decompress itself in the guest (default:\n"
        "                            decompress on the host, cached)\n"
        "  -m, --mem MIB             guest memory in MiB, or with a K/M/G suffix (default 512)\n"
        "  -n, --vcpus N             virtual CPUs, 1 to %d (default 1)\n"
        "      --serial-log FILE     write the guest's COM1 output to FILE (default: stdout);\n"
        "                            control characters are written as \\xNN, at most 64 KiB/s\n"
        "      --serial-log-max SIZE cap the serial log at SIZE bytes (K/M/G suffix; default\n"
        "                            1M): FILE is then renamed FILE.1 and a new FILE begun;\n"
        "                            on stdout, further output is suppressed and counted\n"
        "      --serial-in FILE|-    feed COM1 input from FILE (a FIFO, or a file) or stdin\n"
        "      --control PATH        serve the control socket (JSON lines) at PATH\n"
        "      --on-reboot ACTION    exit (default: exit status 3) or restart\n"
        "      --disk PATH[,ro]      a virtio-blk disk: a raw or qcow2 image, or a block device;\n"
        "                            ro: read-only (repeatable, up to %d)\n"
        "      --backing-root DIR    every backing file of a qcow2 disk must lie under DIR\n"
        "                            (default: anywhere); backing files must always be\n"
        "                            regular files\n"
        "      --net tap=NAME[,mac=M]  a virtio-net device on tap interface NAME\n"
        "      --net tapfd=N[,mac=M]   ... on the tap already open at fd N (vdid passes one)\n"
        "      --no-rng              no virtio-rng device\n"
        "      --no-agent            no port for a guest agent (virtio-console, port\n"
        "                            " VMM_AGENT_PORT_NAME ")\n"
        "      --fb WxH|none         the display's preferred mode, up to 3840x2160 (default\n"
        "                            1280x800); none: no display or input devices\n"
        "      --display PATH        serve the screen as RFB on the unix socket PATH (mode 0600)\n"
        "      --display-tcp [HOST:]PORT  also serve RFB on TCP (HOST defaults to 127.0.0.1;\n"
        "                            no authentication: anything but loopback is logged)\n"
        "      --display-hz N        screen update ticks per second (default 60, 1 to 240)\n"
        "      --log-level LEVEL     err, warn, info (default) or debug\n"
        "  -h, --help                show this help and exit\n"
        "  -V, --version             show the version and exit\n"
        "\n"
        "Exit status: 0 the guest powered off, 1 the VMM failed, 2 bad input, 3 the guest\n"
        "rebooted, 4 the guest crashed, 5 stopped by the control socket or a signal.\n",
        VMM_MAX_VCPUS, VMM_MAX_DISKS);
}

static int bad(const char *fmt, ...) VDI_PRINTF(1, 2);
static int bad(const char *fmt, ...)
{
    va_list ap;
    fputs("vdi-vmm: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return VMM_EXIT_BADINPUT;
}

/* "tap=NAME" or "tapfd=N", then optionally ",mac=XX:XX:XX:XX:XX:XX" (a unicast address). */
static int parse_net(char *arg, struct vmm_config *cfg)
{
    char *mac = strstr(arg, ",mac=");
    if (mac) {
        unsigned b[6];
        int used = 0;
        if (sscanf(mac + 5, "%2x:%2x:%2x:%2x:%2x:%2x%n", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                   &used) != 6 ||
            (size_t)used != strlen(mac + 5) || strlen(mac + 5) != 17 || (b[0] & 1))
            return -EINVAL;
        for (int i = 0; i < 6; i++)
            cfg->net_mac[i] = (uint8_t)b[i];
        cfg->net_has_mac = true;
        *mac = 0; /* arg is argv's own copy */
    }
    if (strncmp(arg, "tap=", 4) == 0 && arg[4] && strlen(arg + 4) < 16) {
        cfg->net_tap = arg + 4;
        return 0;
    }
    if (strncmp(arg, "tapfd=", 6) == 0) {
        uint64_t fd;
        if (vdi_parse_u64(arg + 6, 3, 1 << 20, &fd) < 0 || fcntl((int)fd, F_GETFD) < 0)
            return -EINVAL;
        cfg->net_has_fd = true;
        cfg->net_fd = (int)fd;
        return 0;
    }
    return -EINVAL;
}

static int parse_mem(const char *s, uint64_t *out)
{
    uint64_t v;
    size_t n = strlen(s);
    int err;
    if (n && s[n - 1] >= '0' && s[n - 1] <= '9') {
        err = vdi_parse_u64(s, 0, UINT64_MAX >> 20, &v);
        v <<= 20;
    } else {
        err = vdi_parse_size(s, 0, UINT64_MAX, &v);
    }
    if (err < 0)
        return err;
    if (v < (MIN_MEM_MIB << 20) || v > (MAX_MEM_MIB << 20))
        return -ERANGE;
    *out = v;
    return 0;
}

static int parse_disk(struct vmm_config *cfg, char *arg)
{
    char *comma = strchr(arg, ',');
    bool ro = false;
    if (cfg->ndisks == VMM_MAX_DISKS)
        return bad("--disk: at most %d disks", VMM_MAX_DISKS);
    if (comma) {
        *comma = 0;
        if (strcmp(comma + 1, "ro") != 0)
            return bad("--disk %s: unknown flag '%s' (only 'ro')", arg, comma + 1);
        ro = true;
    }
    if (!*arg)
        return bad("--disk: empty path");
    struct stat st;
    if (stat(arg, &st) < 0)
        return bad("--disk %s: %s", arg, strerror(errno));
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return bad("--disk %s: not a regular file or block device", arg);
    if (access(arg, ro ? R_OK : R_OK | W_OK) < 0)
        return bad("--disk %s: %s", arg, strerror(errno));
    cfg->disks[cfg->ndisks].path = arg;
    cfg->disks[cfg->ndisks].read_only = ro;
    cfg->ndisks++;
    return 0;
}

/* Open each image disk's backing chain once, before any KVM set-up, so that a chain that leaves
 * --backing-root or names a device is bad input (exit status 2) with a message naming the disk.
 * The device open (vmm__blk_open) applies the same rules again to what it opens. */
static int check_disk_chains(const struct vmm_config *cfg)
{
    for (unsigned i = 0; i < cfg->ndisks; i++) {
        const char *path = cfg->disks[i].path;
        struct stat st;
        img_disk_t *d;
        if (stat(path, &st) == 0 && S_ISBLK(st.st_mode))
            continue; /* a host block device: raw, no backing file */
        struct img_open_opts o = {.flags = IMG_OPEN_RDONLY | IMG_OPEN_NOLOCK,
                                  .backing_root = cfg->backing_root};
        int err = img_open_ex(path, &o, &d);
        if (err == -EPERM)
            return bad("--disk %s: a backing file lies outside --backing-root %s (see above)", path,
                       cfg->backing_root);
        if (err < 0)
            return bad("--disk %s: %s (see above)", path, vdi_strerror(err));
        img_close(d);
    }
    return 0;
}

static int exit_status(enum vmm_stop_reason r)
{
    switch (r) {
    case VMM_STOP_POWEROFF:
        return VMM_EXIT_POWEROFF;
    case VMM_STOP_REBOOT:
        return VMM_EXIT_REBOOT;
    case VMM_STOP_SHUTDOWN:
        return VMM_EXIT_STOPPED;
    case VMM_STOP_CRASHED:
    default:
        return VMM_EXIT_CRASHED;
    }
}

static void on_vm_event(void *ctx, enum vmm_event ev, const char *reason)
{
    vmm_control_event(ctx, ev, reason);
}

/* The control server's view of the running VM (struct vmm_control_ops, vmm/vmm.h). */
static void ctl_status(void *ctx, struct vmm_status *st)
{
    vmm_vm_t *vm = ctx;
    st->state = vmm__vm_paused(vm) ? VMM_RUN_PAUSED : VMM_RUN_RUNNING;
    st->uptime_ms = vmm__vm_uptime_ms(vm);
    st->vcpus = vmm__vm_vcpus(vm);
    st->memory_mib = vmm__ram_size(vm) >> 20;
}
static void ctl_pause(void *ctx)
{
    vmm__vm_pause(ctx);
}
static void ctl_resume(void *ctx)
{
    vmm__vm_resume(ctx);
}
static bool ctl_paused(void *ctx)
{
    return vmm__vm_paused(ctx);
}
static int ctl_power_button(void *ctx)
{
    return vmm__vm_power_button(ctx);
}
static void ctl_request_stop(void *ctx, const char *why)
{
    vmm__vm_request_stop(ctx, VMM_STOP_SHUTDOWN, why);
}
static void ctl_agent_status(void *ctx, struct vmm_agent_status *st)
{
    vmm__vm_agent_status(ctx, st);
}
static int ctl_agent_message(void *ctx, const char *text, unsigned seconds)
{
    return vmm__vm_agent_message(ctx, text, seconds);
}
static const struct vmm_control_ops ctl_ops = {
    .status = ctl_status,
    .pause = ctl_pause,
    .resume = ctl_resume,
    .paused = ctl_paused,
    .power_button = ctl_power_button,
    .request_stop = ctl_request_stop,
    .agent_status = ctl_agent_status,
    .agent_message = ctl_agent_message,
};

/* The RFB display (display/), if --display or --display-tcp asked for one. */
static struct dpy_config display_cfg;

static void on_display_ready(void *ctx)
{
    vmm__vm_event(ctx, VMM_EVENT_READY, "first frame");
}

static int display_start(const struct vmm_config *cfg, vmm_vm_t *vm, dpy_display_t **out)
{
    void *src_ctx = NULL, *sink_ctx = NULL;
    const struct dpy_fb_source *src = vmm__pci_fb_source(vm, &src_ctx);
    const struct dpy_input_sink *sink = vmm__pci_input_sink(vm, &sink_ctx);
    struct dpy_config dc = display_cfg;

    *out = NULL;
    if (!dc.unix_path && !dc.tcp)
        return 0;
    if (!src) {
        VDI_LOG_WARN("vm=%s no display device (--fb none): not serving RFB", vmm__vm_name(vm));
        return 0;
    }
    dc.initial_width = cfg->fb_width;
    dc.initial_height = cfg->fb_height;
    dc.desktop_name = vmm__vm_name(vm);
    dc.ready = on_display_ready;
    dc.ready_ctx = vm;
    return dpy_display_create(&dc, src, src_ctx, sink, sink_ctx, out);
}

/* Build, run and tear down VMs until one ends for good. */
static int run(const struct vmm_config *cfg)
{
    vmm_control_t *ctl = NULL;
    int err, status;

    err = vmm_control_create(cfg->control_path, &ctl);
    if (err < 0) {
        if (cfg->control_path)
            return bad("--control %s: %s", cfg->control_path, vdi_strerror(err));
        VDI_LOG_ERR("cannot set up signal handling: %s", vdi_strerror(err));
        return VMM_EXIT_FAILURE;
    }
    for (;;) {
        vmm_vm_t *vm = NULL;
        char *why_msg = NULL;
        const char *why;
        err = vmm__vm_create(cfg, &vm, &why_msg);
        if (err < 0) {
            if (err == VDI_ECONFIG || err == VDI_EBADKERNEL) {
                status = bad("%s", why_msg ? why_msg : vdi_strerror(err));
            } else {
                VDI_LOG_ERR("cannot create the virtual machine: %s",
                            why_msg ? why_msg : vdi_strerror(err));
                status = VMM_EXIT_FAILURE;
            }
            free(why_msg);
            break;
        }
        vmm_control_new_machine(ctl);
        vmm__vm_set_event_fn(vm, on_vm_event, ctl);
        dpy_display_t *display = NULL;
        err = display_start(cfg, vm, &display);
        if (err < 0) {
            status = bad("display: %s", vdi_strerror(err));
            vmm__vm_destroy(vm);
            break;
        }
        err = vmm__vm_start(vm);
        if (err < 0)
            VDI_LOG_ERR("vm=%s cannot start: %s", vmm__vm_name(vm), vdi_strerror(err));
        vmm_control_serve(ctl, vmm__vm_stop_fd(vm), &ctl_ops, vm);
        enum vmm_stop_reason reason = vmm__vm_join(vm, &why);
        status = exit_status(reason);
        switch (reason) {
        case VMM_STOP_POWEROFF:
        case VMM_STOP_SHUTDOWN:
            vmm_control_event(ctl, VMM_EVENT_SHUTDOWN, why);
            break;
        case VMM_STOP_REBOOT:
            vmm_control_event(ctl, VMM_EVENT_REBOOT, why);
            break;
        case VMM_STOP_CRASHED:
            vmm_control_event(ctl, VMM_EVENT_CRASHED, why);
            break;
        }
        VDI_LOG_INFO("vm=%s stopped: %s (exit status %d)", vmm__vm_name(vm), why, status);
        dpy_display_destroy(display);
        vmm__vm_destroy(vm);
        vmm_control_flush(ctl, 1000);
        if (reason == VMM_STOP_REBOOT && cfg->restart_on_reboot) {
            if (vmm_control_quit_requested(ctl)) {
                /* The quit raced with the guest's reboot and lost (the first stop reason wins):
                 * it still ends us, as if it had come first. */
                status = exit_status(VMM_STOP_SHUTDOWN);
                break;
            }
            VDI_LOG_INFO("restarting the virtual machine after the guest's reboot");
            continue;
        }
        break;
    }
    vmm_control_destroy(ctl);
    return status;
}

int main(int argc, char **argv)
{
    enum {
        OPT_GUEST_DECOMPRESS = 256,
        OPT_SERIAL_LOG,
        OPT_SERIAL_LOG_MAX,
        OPT_SERIAL_IN,
        OPT_CONTROL,
        OPT_ON_REBOOT,
        OPT_DISK,
        OPT_BACKING_ROOT,
        OPT_NET,
        OPT_NO_RNG,
        OPT_NO_AGENT,
        OPT_FB,
        OPT_DISPLAY,
        OPT_DISPLAY_TCP,
        OPT_DISPLAY_HZ,
        OPT_LOG_LEVEL,
    };
    static const struct option opts[] = {
        {"kernel", required_argument, NULL, 'k'},
        {"initrd", required_argument, NULL, 'i'},
        {"cmdline", required_argument, NULL, 'c'},
        {"guest-decompress", no_argument, NULL, OPT_GUEST_DECOMPRESS},
        {"mem", required_argument, NULL, 'm'},
        {"vcpus", required_argument, NULL, 'n'},
        {"serial-log", required_argument, NULL, OPT_SERIAL_LOG},
        {"serial-log-max", required_argument, NULL, OPT_SERIAL_LOG_MAX},
        {"serial-in", required_argument, NULL, OPT_SERIAL_IN},
        {"control", required_argument, NULL, OPT_CONTROL},
        {"on-reboot", required_argument, NULL, OPT_ON_REBOOT},
        {"disk", required_argument, NULL, OPT_DISK},
        {"backing-root", required_argument, NULL, OPT_BACKING_ROOT},
        {"net", required_argument, NULL, OPT_NET},
        {"no-rng", no_argument, NULL, OPT_NO_RNG},
        {"no-agent", no_argument, NULL, OPT_NO_AGENT},
        {"fb", required_argument, NULL, OPT_FB},
        {"display", required_argument, NULL, OPT_DISPLAY},
        {"display-tcp", required_argument, NULL, OPT_DISPLAY_TCP},
        {"display-hz", required_argument, NULL, OPT_DISPLAY_HZ},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct vmm_config cfg = {
        .mem_bytes = 512ULL << 20,
        .vcpus = 1,
        .rng = true,
        .agent = true,
        .fb_width = 1280,
        .fb_height = 800,
        .input = true,
        .serial_log_max = VMM_SERIAL_LOG_MAX_DEFAULT,
    };
    uint64_t v;
    int c, err, status;

    vdi_log_set_program("vdi-vmm");
    vdi_log_init_from_env();
    while ((c = getopt_long(argc, argv, "k:i:c:m:n:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            cfg.kernel = optarg;
            break;
        case 'i':
            cfg.initrd = optarg;
            break;
        case 'c':
            cfg.cmdline = optarg;
            break;
        case OPT_GUEST_DECOMPRESS:
            cfg.guest_decompress = true;
            break;
        case 'm':
            err = parse_mem(optarg, &cfg.mem_bytes);
            if (err < 0)
                return bad("--mem %s: %s (from %llu MiB to %llu MiB)", optarg,
                           err == -ERANGE ? "out of range" : "not a size",
                           (unsigned long long)MIN_MEM_MIB, (unsigned long long)MAX_MEM_MIB);
            break;
        case 'n':
            if (vdi_parse_u64(optarg, 1, VMM_MAX_VCPUS, &v) < 0)
                return bad("--vcpus %s: not a number from 1 to %d", optarg, VMM_MAX_VCPUS);
            cfg.vcpus = (unsigned)v;
            break;
        case OPT_SERIAL_LOG:
            cfg.serial_log = optarg;
            break;
        case OPT_SERIAL_LOG_MAX:
            if (vdi_parse_size(optarg, VMM_SERIAL_LOG_MAX_MIN, 1ull << 40, &cfg.serial_log_max) < 0)
                return bad("--serial-log-max %s: expected a size from 4K to 1T", optarg);
            break;
        case OPT_SERIAL_IN:
            if (strcmp(optarg, "-") != 0 && access(optarg, R_OK) < 0)
                return bad("--serial-in %s: %s", optarg, strerror(errno));
            cfg.serial_in = optarg;
            break;
        case OPT_CONTROL:
            cfg.control_path = optarg;
            break;
        case OPT_ON_REBOOT:
            if (!strcmp(optarg, "restart"))
                cfg.restart_on_reboot = true;
            else if (!strcmp(optarg, "exit"))
                cfg.restart_on_reboot = false;
            else
                return bad("--on-reboot %s: 'exit' or 'restart'", optarg);
            break;
        case OPT_DISK:
            if ((err = parse_disk(&cfg, optarg)) != 0)
                return err;
            break;
        case OPT_BACKING_ROOT: {
            struct stat st;
            if (stat(optarg, &st) < 0)
                return bad("--backing-root %s: %s", optarg, strerror(errno));
            if (!S_ISDIR(st.st_mode))
                return bad("--backing-root %s: not a directory", optarg);
            cfg.backing_root = optarg;
            break;
        }
        case OPT_NET:
            if (parse_net(optarg, &cfg) < 0)
                return bad("--net %s: expected tap=NAME (at most 15 characters) or tapfd=N, "
                           "optionally followed by ,mac=XX:XX:XX:XX:XX:XX (unicast)",
                           optarg);
            break;
        case OPT_NO_RNG:
            cfg.rng = false;
            break;
        case OPT_NO_AGENT:
            cfg.agent = false;
            break;
        case OPT_FB: {
            unsigned w, h;
            char tail;
            if (!strcmp(optarg, "none")) {
                cfg.fb_width = cfg.fb_height = 0;
                cfg.input = false;
            } else if (sscanf(optarg, "%ux%u%c", &w, &h, &tail) == 2 && w >= 320 && h >= 200 &&
                       w <= DPY_MAX_WIDTH && h <= DPY_MAX_HEIGHT) {
                cfg.fb_width = w;
                cfg.fb_height = h;
            } else {
                return bad("--fb %s: expected WxH (320x200 to %ux%u) or none", optarg,
                           DPY_MAX_WIDTH, DPY_MAX_HEIGHT);
            }
            break;
        }
        case OPT_DISPLAY:
            display_cfg.unix_path = optarg;
            break;
        case OPT_DISPLAY_TCP:
            display_cfg.tcp = optarg;
            break;
        case OPT_DISPLAY_HZ:
            if (vdi_parse_u64(optarg, 1, DPY_MAX_HZ, &v) < 0)
                return bad("--display-hz %s: not a number from 1 to %d", optarg, DPY_MAX_HZ);
            display_cfg.hz = (unsigned)v;
            break;
        case OPT_LOG_LEVEL: {
            int level = vdi_log_parse_level(optarg);
            if (level < 0)
                return bad("--log-level: '%s' is not err, warn, info or debug", optarg);
            vdi_log_set_level(level);
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            vdi_print_version("vdi-vmm");
            return 0;
        default:
            usage(stderr);
            return VMM_EXIT_BADINPUT;
        }
    }
    if (optind < argc)
        return bad("unexpected argument '%s' (see --help)", argv[optind]);
    if (!cfg.kernel)
        return bad("--kernel is required (see --help)");
    if ((err = check_disk_chains(&cfg)) != 0)
        return err;
    if (cfg.serial_log) {
        int fd = open(cfg.serial_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            return bad("--serial-log %s: %s", cfg.serial_log, strerror(errno));
        close(fd);
    }
    /* One sink for the process: its cap holds across guest reboots (--on-reboot restart). */
    struct vmm_serial_sink_opts so = {
        .path = cfg.serial_log,
        .fd = STDOUT_FILENO,
        .max_bytes = cfg.serial_log_max,
        .rate = VMM_SERIAL_RATE,
        .now_ms = vdi_now_ms(),
    };
    if ((err = vmm__serial_sink_create(&so, &cfg.serial_sink)) < 0)
        return bad("--serial-log %s: %s", cfg.serial_log ? cfg.serial_log : "(stdout)",
                   vdi_strerror(err));

    /* No core dumps of guest memory; SIGPIPE is handled per write; SIGTERM and SIGINT are
     * blocked in every thread and read from a signalfd by the control loop. */
    setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0});
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    status = run(&cfg);
    vmm__serial_sink_destroy(cfg.serial_sink, vdi_now_ms());
    return status;
}
