/* server/vdictl.c: the admin command line. status, pools, desktops, sessions and audit are
 * requests to vdid's admin socket (one JSON line each way, docs/admin.md); image runs the golden
 * image catalogue itself (golden-images/, img_cli_main). Each command group is one entry of
 * commands[]; exit status 0 on success, 1 when the request failed, 2 for a usage error. */
#define VDI_LOG_TAG "vdictl"
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/img.h"

static const char *opt_socket; /* --socket PATH */

struct vdictl_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
};

/* ---- talking to vdid ---------------------------------------------------------------------- */
static const char *admin_socket(void)
{
    if (opt_socket)
        return opt_socket;
    const char *env = getenv("VDI_ADMIN_SOCKET");
    return env && *env ? env : "/run/vdi/vdid.sock";
}

/* Send {"cmd":@cmd,"args":@args} (steals @args) and return the result (new reference), or NULL
 * after printing the error. */
static json_t *request(const char *cmd, json_t *args)
{
    const char *path = admin_socket();
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    json_t *req = json_pack("{s:s, s:o}", "cmd", cmd, "args", args ? args : json_object());
    char *line = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    json_t *result = NULL;
    int fd = -1;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "vdictl: admin socket path too long: %s\n", path);
        goto out;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "vdictl: cannot reach vdid at %s: %s (is vdid running? --socket PATH)\n",
                path, strerror(errno));
        goto out;
    }
    size_t len = strlen(line);
    line[len] = '\n'; /* json_dumps left room for the NUL */
    for (size_t off = 0; off < len + 1;) {
        ssize_t n = send(fd, line + off, len + 1 - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EPIPE)
            break; /* vdid closed first (it refused us): its reply is still there to read */
        if (n <= 0) {
            fprintf(stderr, "vdictl: %s: write: %s\n", path, strerror(errno));
            goto out;
        }
        off += (size_t)n;
    }
    vdi_buf_t in = VDI_BUF_INIT;
    for (;;) {
        char chunk[65536];
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "vdictl: %s: read: %s\n", path, strerror(errno));
            vdi_buf_free(&in);
            goto out;
        }
        if (n == 0)
            break;
        if (vdi_buf_append(&in, chunk, (size_t)n) < 0) {
            fprintf(stderr, "vdictl: out of memory\n");
            vdi_buf_free(&in);
            goto out;
        }
        if (memchr(chunk, '\n', (size_t)n))
            break;
    }
    json_error_t jerr;
    json_t *reply = json_loadb((const char *)in.data, in.len, JSON_DISABLE_EOF_CHECK, &jerr);
    vdi_buf_free(&in);
    if (!reply) {
        fprintf(stderr, "vdictl: vdid sent a reply that is not JSON: %s\n", jerr.text);
        goto out;
    }
    if (!json_is_true(json_object_get(reply, "ok"))) {
        const char *e = json_string_value(json_object_get(reply, "error"));
        fprintf(stderr, "vdictl: %s: %s\n", cmd, e ? e : "failed (no reason given)");
    } else {
        result = json_incref(json_object_get(reply, "result"));
    }
    json_decref(reply);
out:
    if (fd >= 0)
        close(fd);
    free(line);
    return result;
}

/* Print @result as JSON (--json) and release it. */
static int print_json(json_t *result)
{
    char *t = json_dumps(result, JSON_INDENT(2) | JSON_ENCODE_ANY);
    puts(t ? t : "null");
    free(t);
    json_decref(result);
    return 0;
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && *s ? s : "-";
}
static const char *jtext(json_t *o, const char *k) /* "" when absent, for printing as is */
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}
static long long jint(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static void fmt_time(long long t, char *buf, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t <= 0) {
        snprintf(buf, n, "-");
        return;
    }
    localtime_r(&tt, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
}

/* Common options of the listing commands: --json, --all, --pool, --state, -n. Returns the index
 * of the first positional argument, or -EINVAL after printing what was wrong. */
struct lopts {
    bool json, all;
    const char *pool, *state;
    long n;
};

static int parse_opts(int argc, char **argv, const char *usage_line, struct lopts *o)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},       {"all", no_argument, NULL, 'a'},
        {"pool", required_argument, NULL, 'p'}, {"state", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    int c;
    memset(o, 0, sizeof(*o));
    o->n = 20;
    optind = 0;
    while ((c = getopt_long(argc, argv, "jap:s:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            o->json = true;
            break;
        case 'a':
            o->all = true;
            break;
        case 'p':
            o->pool = optarg;
            break;
        case 's':
            o->state = optarg;
            break;
        case 'n': {
            uint64_t v;
            int rc = vdi_parse_u64(optarg, 1, 100000, &v);
            if (rc < 0) {
                fprintf(stderr, "vdictl: -n: '%s' is not a number from 1 to 100000 (%s)\n", optarg,
                        vdi_strerror(rc));
                return rc;
            }
            o->n = (long)v;
            break;
        }
        case 'h':
            printf("Usage: vdictl %s\n", usage_line);
            exit(0);
        default: /* getopt named the bad option */
            fprintf(stderr, "Usage: vdictl %s\n", usage_line);
            return -EINVAL;
        }
    }
    return optind;
}

/* A desktop or session id (1 and up) as the request's {"id": N}. Returns 0, or -EINVAL or
 * -ERANGE after printing what was wrong. */
static int parse_id(const char *s, json_t **args)
{
    uint64_t id;
    int rc = vdi_parse_u64(s, 1, INT64_MAX, &id);
    if (rc < 0) {
        fprintf(stderr, "vdictl: '%s' is not a desktop or session id (a whole number from 1): %s\n",
                s, vdi_strerror(rc));
        return rc;
    }
    *args = json_pack("{s:I}", "id", (json_int_t)id);
    return 0;
}

/* ---- commands ----------------------------------------------------------------------------- */
static int run_status(int argc, char **argv)
{
    struct lopts o;
    int i = parse_opts(argc, argv, "status [--json]", &o);
    if (i < 0 || i != argc)
        return 2;
    json_t *r = request("status", NULL);
    if (!r)
        return 1;
    if (o.json)
        return print_json(r);
    json_t *mem = json_object_get(r, "memory");
    printf("vdid %s, pid %lld, up %llds, gateway %s\n", jstr(r, "version"), jint(r, "pid"),
           jint(r, "uptime"), jstr(r, "listen"));
    printf("pools: %lld   open sessions: %lld\n", jint(r, "pools"), jint(r, "sessions"));
    printf("desktops:");
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(r, "desktops"), k, v)
        printf(" %s=%lld", k, (long long)json_integer_value(v));
    printf("\nmemory: host %lldM, budget %lldM (overcommit %lld%%), used %lldM, free %lldM\n",
           jint(mem, "host") >> 20, jint(mem, "budget") >> 20, jint(mem, "overcommit"),
           jint(mem, "used") >> 20, jint(mem, "free") >> 20);
    json_t *pre = json_object_get(r, "preauth");
    json_object_foreach(pre, k, v)
    {
        if (!json_is_object(v))
            continue;
        printf("%s before login: %lld open from %lld addresses; refused %lld (per address), %lld "
               "(in all)\n",
               k, jint(v, "open"), jint(v, "addresses"), jint(v, "refused_per_addr"),
               jint(v, "refused_total"));
    }
    json_decref(r);
    return 0;
}

static int run_pools(int argc, char **argv)
{
    struct lopts o;
    int i = parse_opts(argc, argv, "pools [list] [--json]", &o);
    if (i < 0)
        return 2;
    if (i < argc && strcmp(argv[i], "list") == 0)
        i++;
    if (i != argc) {
        fprintf(stderr, "vdictl pools: unexpected argument '%s'\n", argv[i]);
        return 2;
    }
    json_t *r = request("pools.list", NULL);
    if (!r)
        return 1;
    if (o.json)
        return print_json(r);
    printf("%-16s %-16s %-9s %5s %7s %-10s %6s %5s %6s %5s\n", "POOL", "IMAGE", "TYPE", "VCPUS",
           "MEMORY", "FB", "SPARES", "MAX", "IN-USE", "READY");
    size_t idx;
    json_t *p;
    json_array_foreach(r, idx, p)
    {
        printf("%-16s %-16s %-9s %5lld %6lldM %-10s %6lld %5lld %6lld %5lld\n", jstr(p, "name"),
               jstr(p, "image"), jstr(p, "type"), jint(p, "vcpus"), jint(p, "memory") >> 20,
               jstr(p, "framebuffer"), jint(p, "min_spares"), jint(p, "max_desktops"),
               jint(p, "in_use"), jint(p, "ready"));
    }
    json_decref(r);
    return 0;
}

static void print_desktop_row(json_t *d)
{
    printf("%6lld %-16s %-13s %-16s %-16s %8lld %6lldM %s\n", jint(d, "id"), jstr(d, "pool"),
           jstr(d, "state"), jstr(d, "owner"), jstr(d, "image"), jint(d, "vmm_pid"),
           jint(d, "memory") >> 20,
           json_string_length(json_object_get(d, "reason")) ? jstr(d, "reason") : "");
}

static int run_desktops(int argc, char **argv)
{
    static const char *usage_line =
        "desktops list [--pool P] [--state S] [--all] [--json] | show ID [--json] | "
        "destroy ID | recycle ID";
    struct lopts o;
    int i = parse_opts(argc, argv, usage_line, &o);
    if (i < 0)
        return 2;
    const char *sub = i < argc ? argv[i++] : "list";
    json_t *args = NULL;
    if (strcmp(sub, "list") == 0) {
        if (i != argc) {
            fprintf(stderr, "Usage: vdictl %s\n", usage_line);
            return 2;
        }
        args = json_object();
        if (o.pool)
            json_object_set_new(args, "pool", json_string(o.pool));
        if (o.state)
            json_object_set_new(args, "state", json_string(o.state));
        if (o.all)
            json_object_set_new(args, "all", json_true());
        json_t *r = request("desktops.list", args);
        if (!r)
            return 1;
        if (o.json)
            return print_json(r);
        printf("%6s %-16s %-13s %-16s %-16s %8s %7s %s\n", "ID", "POOL", "STATE", "OWNER", "IMAGE",
               "VMM-PID", "MEMORY", "REASON");
        size_t idx;
        json_t *d;
        json_array_foreach(r, idx, d) print_desktop_row(d);
        json_decref(r);
        return 0;
    }
    if (strcmp(sub, "show") == 0 || strcmp(sub, "destroy") == 0 || strcmp(sub, "recycle") == 0) {
        if (i + 1 != argc) {
            fprintf(stderr, "Usage: vdictl desktops %s ID\n", sub);
            return 2;
        }
        if (parse_id(argv[i], &args) < 0)
            return 2;
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "desktops.%s", sub);
        json_t *r = request(cmd, args);
        if (!r)
            return 1;
        if (o.json)
            return print_json(r);
        if (strcmp(sub, "show") == 0) {
            char c[32], u[32];
            fmt_time(jint(r, "created"), c, sizeof(c));
            fmt_time(jint(r, "updated"), u, sizeof(u));
            const char *mac = jstr(r, "mac"), *ip = jstr(r, "ip");
            printf("desktop %lld\n  pool:     %s\n  state:    %s\n  owner:    %s\n"
                   "  image:    %s (version %lld)\n  overlay:  %s\n  vmm pid:  %lld\n"
                   "  memory:   %lldM\n  network:  %s%s%s\n  agent:    %s\n  created:  %s\n"
                   "  updated:  %s\n  reason:   %s\n",
                   jint(r, "id"), jstr(r, "pool"), jstr(r, "state"), jstr(r, "owner"),
                   jstr(r, "image"), jint(r, "image_version"), jstr(r, "overlay"),
                   jint(r, "vmm_pid"), jint(r, "memory") >> 20, *mac ? mac : "none",
                   *mac ? "  address " : "", *mac ? (*ip ? ip : "from the bridge's DHCP") : "",
                   *jstr(r, "agent") ? jstr(r, "agent") : "none seen", c, u, jstr(r, "reason"));
        } else {
            printf("desktop %lld: %s\n", jint(r, "id"), jstr(r, "state"));
        }
        json_decref(r);
        return 0;
    }
    fprintf(stderr, "vdictl desktops: unknown subcommand '%s'\nUsage: vdictl %s\n", sub,
            usage_line);
    return 2;
}

static int run_sessions(int argc, char **argv)
{
    static const char *usage_line = "sessions list [--all] [--json] | disconnect ID";
    struct lopts o;
    int i = parse_opts(argc, argv, usage_line, &o);
    if (i < 0)
        return 2;
    const char *sub = i < argc ? argv[i++] : "list";
    if (strcmp(sub, "list") == 0 && i == argc) {
        json_t *args = o.all ? json_pack("{s:b}", "all", 1) : NULL;
        json_t *r = request("sessions.list", args);
        if (!r)
            return 1;
        if (o.json)
            return print_json(r);
        printf("%6s %-16s %7s %-22s %-19s %-19s %s\n", "ID", "USER", "DESKTOP", "CLIENT", "STARTED",
               "ENDED", "END-REASON");
        size_t idx;
        json_t *s;
        json_array_foreach(r, idx, s)
        {
            char st[32], en[32];
            fmt_time(jint(s, "started"), st, sizeof(st));
            fmt_time(jint(s, "ended"), en, sizeof(en));
            printf("%6lld %-16s %7lld %-22s %-19s %-19s %s\n", jint(s, "id"), jstr(s, "user"),
                   jint(s, "desktop"), jstr(s, "client"), st, en,
                   jint(s, "ended") ? jstr(s, "end_reason") : "");
        }
        json_decref(r);
        return 0;
    }
    if (strcmp(sub, "disconnect") == 0 && i + 1 == argc) {
        json_t *args;
        if (parse_id(argv[i], &args) < 0)
            return 2;
        json_t *r = request("sessions.disconnect", args);
        if (!r)
            return 1;
        if (o.json)
            return print_json(r);
        printf("session %s: disconnected\n", argv[i]);
        json_decref(r);
        return 0;
    }
    fprintf(stderr, "Usage: vdictl %s\n", usage_line);
    return 2;
}

static int run_audit(int argc, char **argv)
{
    static const char *usage_line = "audit [tail] [-n N] [--json]";
    struct lopts o;
    int i = parse_opts(argc, argv, usage_line, &o);
    if (i < 0)
        return 2;
    if (i < argc && strcmp(argv[i], "tail") == 0)
        i++;
    if (i != argc) {
        fprintf(stderr, "Usage: vdictl %s\n", usage_line);
        return 2;
    }
    json_t *r = request("audit.tail", json_pack("{s:i}", "n", (int)o.n));
    if (!r)
        return 1;
    if (o.json)
        return print_json(r);
    size_t idx;
    json_t *a;
    json_array_foreach(r, idx, a)
    {
        char t[32];
        fmt_time(jint(a, "ts"), t, sizeof(t));
        printf("%s %-8s %-16s", t, jstr(a, "actor"), jstr(a, "event"));
        if (jint(a, "desktop"))
            printf(" desktop=%lld", jint(a, "desktop"));
        if (json_string_length(json_object_get(a, "user")))
            printf(" user=%s", jstr(a, "user"));
        printf(" %s\n", json_string_value(json_object_get(a, "detail")));
    }
    json_decref(r);
    return 0;
}

/* ---- image patch (through vdid) ----------------------------------------------------------- */
static const char patch_usage[] =
    "image patch NAME (--script FILE | --bundle DIR) [--network POOL] [--deadline DURATION]\n"
    "                    [--memory MiB] [--vcpus N] [--flatten] [--notes TEXT] [--no-wait]\n"
    "                    [--json]\n"
    "       vdictl image patches [ID] [--json]";

/* "90", "90s", "30m", "2h" -> seconds; -EINVAL otherwise. */
static int parse_secs(const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    uint64_t mult = 1;
    if (end == v || errno || v[0] == '-')
        return -EINVAL;
    if (*end == 'm')
        mult = 60, end++;
    else if (*end == 'h')
        mult = 3600, end++;
    else if (*end == 's')
        end++;
    if (*end || n == 0 || n > 7ULL * 24 * 3600 / mult)
        return -EINVAL;
    *out = n * mult;
    return 0;
}

static void print_patch(json_t *p)
{
    char t[32];
    fmt_time(jint(p, "started"), t, sizeof(t));
    printf("%-6s %-16s %-10s base v%lld", jstr(p, "id"), jstr(p, "image"), jstr(p, "state"),
           jint(p, "base_version"));
    if (jint(p, "version"))
        printf(" -> v%lld", jint(p, "version"));
    if (json_is_integer(json_object_get(p, "exit")))
        printf("  exit %lld", jint(p, "exit"));
    printf("  started %s", t);
    if (json_is_string(json_object_get(p, "network")))
        printf("  network %s (%s%s%s)", jstr(p, "network"), jstr(p, "mac"),
               json_is_string(json_object_get(p, "address")) ? " " : "",
               json_is_string(json_object_get(p, "address")) ? jstr(p, "address") : "");
    printf("\n");
    const char *why = jtext(p, "reason");
    if (why[0])
        printf("       %s\n", why);
}

/* Follow patch @id: print its output as it comes, then the outcome. 0 when published. */
static int follow_patch(const char *id, bool json)
{
    json_int_t from = 0;
    for (;;) {
        json_t *r = request("image.patch-status", json_pack("{s:s, s:I}", "id", id, "from", from));
        if (!r)
            return 1;
        if (!json) {
            fputs(jtext(r, "output"), stdout);
            fflush(stdout);
        }
        from = jint(r, "next");
        const char *st = jstr(r, "state");
        if (!strcmp(st, "published") || !strcmp(st, "failed")) {
            int rc = strcmp(st, "published") ? 1 : 0;
            if (json) {
                print_json(r);
                return rc;
            }
            if (rc == 0)
                printf("vdictl: patch %s: image %s version %lld published and made current\n", id,
                       jstr(r, "image"), jint(r, "version"));
            else
                fprintf(stderr, "vdictl: patch %s of image %s failed: %s\n", id, jstr(r, "image"),
                        jstr(r, "reason"));
            json_decref(r);
            return rc;
        }
        json_decref(r);
        usleep(250 * 1000);
    }
}

static int run_image_patch(int argc, char **argv)
{
    static const struct option opts[] = {
        {"script", required_argument, NULL, 'S'},   {"bundle", required_argument, NULL, 'B'},
        {"deadline", required_argument, NULL, 'D'}, {"memory", required_argument, NULL, 'M'},
        {"vcpus", required_argument, NULL, 'C'},    {"flatten", no_argument, NULL, 'F'},
        {"notes", required_argument, NULL, 'N'},    {"network", required_argument, NULL, 'n'},
        {"no-wait", no_argument, NULL, 'W'},        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    const char *script = NULL, *bundle = NULL, *notes = NULL, *network = NULL;
    uint64_t deadline = 0, mem = 0, vcpus = 0;
    bool flatten = false, nowait = false, json = false;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'S':
            script = optarg;
            break;
        case 'B':
            bundle = optarg;
            break;
        case 'D':
            if (parse_secs(optarg, &deadline) < 0) {
                fprintf(stderr,
                        "vdictl: --deadline %s: expected seconds, or a number with s, m "
                        "or h (at most 7 days)\n",
                        optarg);
                return 2;
            }
            break;
        case 'M':
            if (vdi_parse_u64(optarg, 64, 1 << 20, &mem) < 0) {
                fprintf(stderr, "vdictl: --memory %s: MiB, from 64 to 1048576\n", optarg);
                return 2;
            }
            break;
        case 'C':
            if (vdi_parse_u64(optarg, 1, 16, &vcpus) < 0) {
                fprintf(stderr, "vdictl: --vcpus %s: from 1 to 16\n", optarg);
                return 2;
            }
            break;
        case 'F':
            flatten = true;
            break;
        case 'N':
            notes = optarg;
            break;
        case 'n':
            network = optarg;
            break;
        case 'W':
            nowait = true;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            printf("Usage: vdictl %s\n", patch_usage);
            return 0;
        default:
            fprintf(stderr, "Usage: vdictl %s\n", patch_usage);
            return 2;
        }
    }
    if (optind + 1 != argc || !script == !bundle) {
        fprintf(stderr,
                "vdictl: image patch needs one image NAME and either --script FILE or "
                "--bundle DIR\nUsage: vdictl %s\n",
                patch_usage);
        return 2;
    }
    const char *given = script ? script : bundle;
    char *abs = realpath(given, NULL);
    if (!abs) {
        fprintf(stderr, "vdictl: %s: %s\n", given, strerror(errno));
        return 1;
    }
    json_t *args = json_pack("{s:s, s:s, s:b}", "image", argv[optind], script ? "script" : "bundle",
                             abs, "flatten", flatten);
    free(abs);
    if (notes)
        json_object_set_new(args, "notes", json_string(notes));
    if (network)
        json_object_set_new(args, "network", json_string(network));
    if (deadline)
        json_object_set_new(args, "deadline", json_integer((json_int_t)deadline));
    if (mem)
        json_object_set_new(args, "memory", json_integer((json_int_t)mem));
    if (vcpus)
        json_object_set_new(args, "vcpus", json_integer((json_int_t)vcpus));
    json_t *r = request("image.patch", args);
    if (!r)
        return 1;
    char id[32];
    snprintf(id, sizeof(id), "%s", jstr(r, "id"));
    json_decref(r);
    if (nowait) {
        if (json)
            printf("{\"id\": \"%s\"}\n", id);
        else
            printf("patch %s started (follow it: vdictl image patches %s)\n", id, id);
        return 0;
    }
    if (!json)
        printf("vdictl: patch %s of image %s started; its output follows\n", id, argv[optind]);
    return follow_patch(id, json);
}

static int run_image_patches(int argc, char **argv)
{
    struct lopts o;
    int i = parse_opts(argc, argv, patch_usage, &o);
    if (i < 0 || argc - i > 1)
        return 2;
    if (i < argc) { /* one patch, with its whole output */
        json_t *r = request("image.patch-status", json_pack("{s:s}", "id", argv[i]));
        if (!r)
            return 1;
        if (o.json)
            return print_json(r);
        print_patch(r);
        printf("--- output ---\n%s", jtext(r, "output"));
        json_decref(r);
        return 0;
    }
    json_t *r = request("image.patches", NULL);
    if (!r)
        return 1;
    if (o.json)
        return print_json(r);
    size_t k;
    json_t *p;
    if (!json_array_size(r))
        printf("no patches\n");
    json_array_foreach(r, k, p) print_patch(p);
    json_decref(r);
    return 0;
}

/* ---- image rollouts (through vdid) -------------------------------------------------------- */
static void print_rollout_line(json_t *r)
{
    char t[32];
    fmt_time(jint(r, "started"), t, sizeof(t));
    printf("  #%-4lld v%lld -> v%lld  %-12s wave %lld  healthy %lld  failed %lld  started %s\n",
           jint(r, "id"), jint(r, "from"), jint(r, "to"), jstr(r, "state"), jint(r, "wave"),
           jint(r, "healthy"), jint(r, "failed"), t);
    if (jtext(r, "reason")[0])
        printf("        %s\n", jtext(r, "reason"));
}

static int run_image_rollouts(int argc, char **argv)
{
    struct lopts o;
    int i = parse_opts(argc, argv, "image rollouts [--pool NAME] [--all] [--json]", &o);
    if (i < 0 || i != argc)
        return 2;
    json_t *r = request("image.rollouts", json_pack("{s:b}", "history", o.all));
    if (!r)
        return 1;
    if (o.pool) { /* only that pool */
        json_t *keep = json_array();
        size_t k;
        json_t *p;
        json_array_foreach(r, k, p) if (!strcmp(jtext(p, "pool"), o.pool))
            json_array_append(keep, p);
        json_decref(r);
        r = keep;
        if (!json_array_size(r)) {
            fprintf(stderr, "vdictl: no pool named %s\n", o.pool);
            json_decref(r);
            return 1;
        }
    }
    if (o.json)
        return print_json(r);
    printf("%-16s %-16s %-8s %-12s %-6s %-8s %-8s %s\n", "POOL", "IMAGE", "ROLLOUT", "STATE",
           "WAVE", "HEALTHY", "FAILED", "DESKTOPS (version:count)");
    size_t k;
    json_t *p;
    json_array_foreach(r, k, p)
    {
        char ro[32] = "-", wave[16] = "-", per[256] = "";
        if (jint(p, "id")) {
            snprintf(ro, sizeof(ro), "v%lld>v%lld", jint(p, "from"), jint(p, "to"));
            snprintf(wave, sizeof(wave), "%lld/%lld", jint(p, "wave"), jint(p, "waves_planned"));
        }
        const char *key;
        json_t *n;
        size_t used = 0;
        json_object_foreach(json_object_get(p, "desktops"), key, n)
        {
            int w = snprintf(per + used, sizeof(per) - used, "%sv%s:%lld", used ? " " : "", key,
                             (long long)json_integer_value(n));
            if (w < 0 || (size_t)w >= sizeof(per) - used)
                break;
            used += (size_t)w;
        }
        printf("%-16s %-16s %-8s %-12s %-6s %-8lld %-8lld %s\n", jtext(p, "pool"),
               jtext(p, "image"), ro, jint(p, "id") ? jtext(p, "state") : "-", wave,
               jint(p, "healthy"), jint(p, "failed"), used ? per : "none");
        if (jint(p, "waiting_for_logout"))
            printf("                 %lld desktop(s) wait for their user's logout\n",
                   jint(p, "waiting_for_logout"));
        if (jint(p, "kept"))
            printf("                 %lld desktop(s) stay on their version (dedicated, no data "
                   "disk: their files are on it)\n",
                   jint(p, "kept"));
        if (jint(p, "id") && jtext(p, "reason")[0])
            printf("                 %s\n", jtext(p, "reason"));
        size_t h;
        json_t *e;
        json_array_foreach(json_object_get(p, "history"), h, e) print_rollout_line(e);
    }
    json_decref(r);
    return 0;
}

/* `vdictl image`: patches go through vdid; the rest is the catalogue itself (img_cli_main). */
static int run_image(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "patch"))
        return run_image_patch(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "patches"))
        return run_image_patches(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "rollouts"))
        return run_image_rollouts(argc - 1, argv + 1);
    return img_cli_main(argc, argv);
}

static const struct vdictl_cmd commands[] = {
    {"status", "host capacity and use, desktops by state", run_status},
    {"pools", "list the pools and their desktops", run_pools},
    {"desktops", "list, show, destroy or recycle desktops", run_desktops},
    {"sessions", "list or disconnect sessions", run_sessions},
    {"audit", "the last entries of the audit log", run_audit},
    {"image", "golden images (catalogue), patches and disk image files", run_image},
    {NULL, NULL, NULL},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: vdictl [OPTION]... COMMAND [ARG]...\n"
               "Administer vdi: pools, desktops, sessions and golden images.\n"
               "\n"
               "  -s, --socket PATH  vdid's admin socket (default $VDI_ADMIN_SOCKET or\n"
               "                     /run/vdi/vdid.sock)\n"
               "  -h, --help      show this help and exit\n"
               "  -V, --version   show the version and exit\n"
               "\n"
               "Commands:\n");
    for (const struct vdictl_cmd *c = commands; c->name; c++)
        fprintf(f, "  %-14s %s\n", c->name, c->summary);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"socket", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    int c;

    vdi_log_set_program("vdictl");
    vdi_log_init_from_env();
    /* '+': stop at the first non-option, so commands parse their own options. */
    while ((c = getopt_long(argc, argv, "+hVs:", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            opt_socket = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            vdi_print_version("vdictl");
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    for (const struct vdictl_cmd *cmd = commands; cmd->name; cmd++)
        if (strcmp(cmd->name, argv[optind]) == 0) {
            int first = optind;
            optind = 0; /* GNU getopt: start afresh for the command's own options */
            return cmd->run(argc - first, argv + first);
        }
    fprintf(stderr, "vdictl: unknown command '%s' (see vdictl --help)\n", argv[optind]);
    return 2;
}
