/* tests/integration/test_display.c: the display library against a synthetic framebuffer,
 * probed by tests/tools/vncprobe (libvncclient, a real RFB client).
 *
 * The synthetic source draws colour bars (top half), a gradient (bottom left) and a box that
 * the test recolours (bottom right), and reports the pages it writes as a KVM dirty log would.
 * The sink records every input event as a line of text.
 */
#include <errno.h>
#include <linux/input-event-codes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/vdi.h"
#include "display/dpy.h"

#define MAX_W  1024
#define MAX_H  768
#define PAGE   4096
#define BOX_X  600
#define BOX_Y  400
#define BOX_W  100
#define BOX_H  100
#define GRAD_Y 300
#define GRAD_W 256
#define GRAD_H 256

static const uint32_t bars[8] = {0xffffff, 0xffff00, 0x00ffff, 0x00ff00,
                                 0xff00ff, 0xff0000, 0x0000ff, 0x000000};

/* ---- Synthetic framebuffer ---------------------------------------------------------------- */
struct fake_fb {
    pthread_mutex_t lock;
    uint32_t w, h, stride;
    uint8_t *mem;
    uint64_t generation;
    uint64_t dirty[(MAX_W * 2 * 4 * MAX_H / PAGE + 64) / 64];
    int get_dirty_calls;
};

static void mark(struct fake_fb *f, size_t from, size_t to)
{
    for (size_t p = from / PAGE; p <= (to - 1) / PAGE; p++)
        f->dirty[p / 64] |= 1ull << (p % 64);
}

static void fill(struct fake_fb *f, uint32_t x, uint32_t y, uint32_t w, uint32_t h, uint32_t rgb)
{
    pthread_mutex_lock(&f->lock);
    for (uint32_t yy = y; yy < y + h; yy++) {
        uint32_t *row = (uint32_t *)(f->mem + (size_t)yy * f->stride);
        for (uint32_t xx = x; xx < x + w; xx++)
            row[xx] = rgb;
        mark(f, (size_t)yy * f->stride + x * 4, (size_t)yy * f->stride + (x + w) * 4);
    }
    pthread_mutex_unlock(&f->lock);
}

static void draw_scene(struct fake_fb *f)
{
    uint32_t bw = f->w / 8;
    for (int i = 0; i < 8; i++)
        fill(f, (uint32_t)i * bw, 0, bw, f->h / 2, bars[i]);
    pthread_mutex_lock(&f->lock);
    for (uint32_t y = 0; y < GRAD_H; y++) {
        uint32_t *row = (uint32_t *)(f->mem + (size_t)(GRAD_Y + y) * f->stride);
        for (uint32_t x = 0; x < GRAD_W; x++)
            row[x] = (255 * x / (GRAD_W - 1)) << 16 | (255 * y / (GRAD_H - 1)) << 8 | 0x80;
        mark(f, (size_t)(GRAD_Y + y) * f->stride, (size_t)(GRAD_Y + y) * f->stride + GRAD_W * 4);
    }
    pthread_mutex_unlock(&f->lock);
    fill(f, BOX_X, BOX_Y, BOX_W, BOX_H, 0x404040);
}

static void set_mode(struct fake_fb *f, uint32_t w, uint32_t h, uint32_t stride)
{
    pthread_mutex_lock(&f->lock);
    f->w = w;
    f->h = h;
    f->stride = stride;
    memset(f->mem, 0, (size_t)MAX_W * 2 * 4 * MAX_H);
    f->generation++;
    pthread_mutex_unlock(&f->lock);
    draw_scene(f);
}

static bool fake_get_mode(void *ctx, struct dpy_mode *m)
{
    struct fake_fb *f = ctx;
    pthread_mutex_lock(&f->lock);
    *m = (struct dpy_mode){.width = f->w,
                           .height = f->h,
                           .stride = f->stride,
                           .pixels = f->mem,
                           .generation = f->generation};
    pthread_mutex_unlock(&f->lock);
    return f->w != 0;
}

static int fake_get_dirty(void *ctx, uint64_t *bitmap, size_t npages)
{
    struct fake_fb *f = ctx;
    pthread_mutex_lock(&f->lock);
    for (size_t p = 0; p < npages; p++)
        if (f->dirty[p / 64] >> (p % 64) & 1)
            bitmap[p / 64] |= 1ull << (p % 64);
    memset(f->dirty, 0, sizeof(f->dirty));
    f->get_dirty_calls++;
    pthread_mutex_unlock(&f->lock);
    return 0;
}

static const struct dpy_fb_source fake_source = {
    .name = "fake",
    .get_mode = fake_get_mode,
    .get_dirty = fake_get_dirty,
};

/* ---- Recording sink ----------------------------------------------------------------------- */
static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static char ev_log[65536];
static size_t ev_len;

static void ev_add(const char *fmt, ...) VDI_PRINTF(1, 2);
static void ev_add(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&ev_lock);
    va_start(ap, fmt);
    int n = vsnprintf(ev_log + ev_len, sizeof(ev_log) - ev_len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(ev_log) - ev_len)
        ev_len += (size_t)n;
    pthread_mutex_unlock(&ev_lock);
}

static void sink_key(void *ctx, uint16_t code, bool down)
{
    VDI_UNUSED(ctx);
    ev_add("key %u %d\n", code, down);
}
static void sink_pointer(void *ctx, uint32_t x, uint32_t y, uint32_t buttons)
{
    VDI_UNUSED(ctx);
    ev_add("ptr %u %u %u\n", x, y, buttons);
}
static void sink_wheel(void *ctx, int v, int h)
{
    VDI_UNUSED(ctx);
    ev_add("wheel %d %d\n", v, h);
}
static const struct dpy_input_sink rec_sink = {
    .name = "recorder", .key = sink_key, .pointer = sink_pointer, .wheel = sink_wheel};

static void ev_reset(void)
{
    pthread_mutex_lock(&ev_lock);
    ev_len = 0;
    ev_log[0] = '\0';
    pthread_mutex_unlock(&ev_lock);
}

/* @want: lines that must appear in this order (others may come between). */
static bool ev_has_sequence(const char *const *want, size_t n)
{
    bool ok = true;
    pthread_mutex_lock(&ev_lock);
    const char *pos = ev_log;
    for (size_t i = 0; i < n && ok; i++) {
        const char *hit = strstr(pos, want[i]);
        if (!hit) {
            fprintf(stderr, "event \"%s\" missing (in order) from:\n%s", want[i], ev_log);
            ok = false;
        } else {
            pos = hit + strlen(want[i]);
        }
    }
    pthread_mutex_unlock(&ev_lock);
    return ok;
}

/* ---- Probes ------------------------------------------------------------------------------- */
static char probe_path[512];
static char sock_path[512];
static int checks, failures;
static int ready_calls;

static void on_ready(void *ctx)
{
    VDI_UNUSED(ctx);
    __atomic_add_fetch(&ready_calls, 1, __ATOMIC_SEQ_CST);
}

static void check(bool ok, const char *what)
{
    checks++;
    if (ok) {
        printf("ok %d - %s\n", checks, what);
    } else {
        printf("not ok %d - %s\n", checks, what);
        failures++;
    }
    fflush(stdout);
}

/* Start vncprobe with @args (NULL-terminated, after the program name). */
static pid_t probe_start(const char *const *args)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = probe_path;
    for (; *args && n < 63; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execv(probe_path, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Exit status of @pid, or -1 if it outlived @secs (then it is killed). */
static int probe_wait(pid_t pid, int secs)
{
    for (int i = 0; i < secs * 20; i++) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static int probe_run(const char *const *args)
{
    return probe_wait(probe_start(args), 30);
}

static void sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- The checks --------------------------------------------------------------------------- */
static void bar_args(const char **a, int *n, char buf[8][2][16], uint32_t w, uint32_t tol_unused)
{
    VDI_UNUSED(tol_unused);
    for (int i = 0; i < 8; i++) {
        snprintf(buf[i][0], 16, "%u", i * (w / 8) + w / 16);
        snprintf(buf[i][1], 16, "%06x", bars[i]);
        a[(*n)++] = "pixel";
        a[(*n)++] = buf[i][0];
        a[(*n)++] = "100";
        a[(*n)++] = buf[i][1];
    }
}

static void test_encoding(const char *enc, const char *quality, const char *grad_mode,
                          const char *grad_tol)
{
    const char *a[64];
    char buf[8][2][16];
    int n = 0;
    char what[128];

    a[n++] = "-s";
    a[n++] = sock_path;
    a[n++] = "-e";
    a[n++] = enc;
    if (quality) {
        a[n++] = "-q";
        a[n++] = quality;
    }
    bar_args(a, &n, buf, 800, 0);
    a[n++] = "gradient";
    a[n++] = "0";
    a[n++] = "300";
    a[n++] = "256";
    a[n++] = "256";
    a[n++] = grad_tol;
    a[n++] = grad_mode;
    a[n] = NULL;
    snprintf(what, sizeof(what), "%s%s%s: colour bars exact, gradient %s", enc,
             quality ? " quality " : "", quality ? quality : "", grad_mode);
    check(probe_run(a) == 0, what);
}

static void test_two_clients_and_drop(struct fake_fb *f)
{
    /* two clients wait for the box to turn green; it turns green after both connected */
    pid_t a = probe_start(ARGS("-s", sock_path, "-e", "raw", "pixel", "650", "450", "00ff80"));
    pid_t b = probe_start(
        ARGS("-s", sock_path, "-e", "tight", "-q", "7", "pixel", "650", "450", "00ff80", "8"));
    sleep_ms(700);
    fill(f, BOX_X, BOX_Y, BOX_W, BOX_H, 0x00ff80);
    check(probe_wait(a, 20) == 0 && probe_wait(b, 20) == 0,
          "two clients at once both see the box change");

    /* one client drops in the middle of a big raw update; the other goes on */
    pid_t w = probe_start(
        ARGS("-s", sock_path, "-e", "zrle", "-T", "20", "pixel", "650", "450", "8000ff"));
    for (int i = 0; i < 3; i++) {
        pid_t d = probe_start(ARGS("-s", sock_path, "-e", "raw", "drop"));
        check(probe_wait(d, 20) == 0, "a client drops mid-update");
    }
    fill(f, BOX_X, BOX_Y, BOX_W, BOX_H, 0x8000ff);
    check(probe_wait(w, 25) == 0, "the other client still gets updates after the drops");
}

static void test_bad_input(struct fake_fb *f)
{
    static const struct {
        const char *what;
        const char *hex;
        bool shutwr;
    } cases[] = {
        {"garbage bytes", "fe0102030405060708090a0b0c0d0e0f", false},
        {"a truncated FramebufferUpdateRequest", "0300", true},
        {"a truncated QEMU extended key event", "ff0000", true},
        {"an unknown QEMU message subtype", "ff07000000000000000000000000", false},
        {"ClientCutText of 4 GiB", "06000000ffffffff", false},
        {"SetPixelFormat with a mask that is not 2^n-1 and a shift of 200",
         "00000000201800011234"
         "00ff00ffc80800000000",
         false},
        {"SetPixelFormat with 7 bits per pixel",
         "0000000007180001000700070007"
         "000000000000",
         false},
        {"SetPixelFormat with depth 0",
         "0000000020000001"
         "00ff00ff00ff100800000000",
         false},
    };
    pid_t w = probe_start(
        ARGS("-s", sock_path, "-e", "hextile", "-T", "30", "pixel", "650", "450", "123456"));
    sleep_ms(300);
    for (size_t i = 0; i < VDI_ARRAY_SIZE(cases); i++) {
        char what[160];
        int rc;
        if (cases[i].shutwr)
            rc = probe_run(
                ARGS("-s", sock_path, "sleep", "100", "raw", cases[i].hex, "shutwr", "closed"));
        else
            rc = probe_run(ARGS("-s", sock_path, "sleep", "100", "raw", cases[i].hex, "closed"));
        snprintf(what, sizeof(what), "bad input: %s drops the client", cases[i].what);
        check(rc == 0, what);
    }
    fill(f, BOX_X, BOX_Y, BOX_W, BOX_H, 0x123456);
    check(probe_wait(w, 30) == 0, "bad input: another client goes on meanwhile");
    check(probe_run(ARGS("-s", sock_path, "-e", "zrle", "pixel", "50", "100", "ffffff")) == 0,
          "bad input: the server still accepts clients");
}

static void test_input(void)
{
    char l1[64], l2[64];
    ev_reset();
    int rc = probe_run(ARGS("-s", sock_path, "type", "Hi!", "key", "0xff0d", "press", "key",
                            "0xffbe", "press", "key", "0xff8d", "press", "ptr", "0", "0", "0",
                            "ptr", "799", "599", "1", "ptr", "799", "599", "0", "ptr", "400", "300",
                            "4", "ptr", "400", "300", "0", "ptr", "400", "300", "8", "ptr", "400",
                            "300", "0", "ptr", "400", "300", "16", "ptr", "400", "300", "0", "xkey",
                            "0x9d", "0xffe4", "xkey", "0x1e", "0x61", "sleep", "300"));
    check(rc == 0, "input: the client sent its events");
    uint32_t ax = (400 * DPY_ABS_MAX + 798) / 799, ay = (300 * DPY_ABS_MAX + 598) / 599;
    snprintf(l1, sizeof(l1), "ptr %u %u 4\n", ax, ay);
    snprintf(l2, sizeof(l2), "ptr %u %u 0\n", ax, ay);
    const char *keys[] = {
        "key 42 1\n", "key 35 1\n", "key 35 0\n", "key 42 0\n", /* Shift+H */
        "key 23 1\n", "key 23 0\n",                             /* i */
        "key 42 1\n", "key 2 1\n",  "key 2 0\n",  "key 42 0\n", /* Shift+1 */
        "key 28 1\n", "key 28 0\n",                             /* Return */
        "key 59 1\n", "key 59 0\n",                             /* F1 */
        "key 96 1\n", "key 96 0\n",                             /* KP_Enter */
    };
    check(ev_has_sequence(keys, VDI_ARRAY_SIZE(keys)),
          "input: KeyEvents map to Linux key codes (Shift, letters, symbols, Return, F1, keypad)");
    const char *ptr[] = {"ptr 0 0 0\n", "ptr 32767 32767 1\n", "ptr 32767 32767 0\n", l1, l2};
    check(ev_has_sequence(ptr, VDI_ARRAY_SIZE(ptr)),
          "input: pointer positions scale to [0, 32767], buttons pass through");
    const char *wheel[] = {"wheel 1 0\n", "wheel -1 0\n"};
    check(ev_has_sequence(wheel, VDI_ARRAY_SIZE(wheel)), "input: buttons 4 and 5 are the wheel");
    const char *x[] = {"key 97 1\n", "key 97 0\n", "key 30 1\n", "key 30 0\n"};
    check(ev_has_sequence(x, VDI_ARRAY_SIZE(x)),
          "input: QEMU extended key events map XT codes (0x9d right Ctrl, 0x1e A)");

    /* a client that leaves with a key and a button held releases them */
    ev_reset();
    rc = probe_run(
        ARGS("-s", sock_path, "key", "0xffe3", "down", "ptr", "10", "10", "1", "sleep", "200"));
    sleep_ms(300);
    uint32_t hx = (10 * DPY_ABS_MAX + 798) / 799, hy = (10 * DPY_ABS_MAX + 598) / 599;
    snprintf(l1, sizeof(l1), "ptr %u %u 1\n", hx, hy);
    snprintf(l2, sizeof(l2), "ptr %u %u 0\n", hx, hy);
    const char *held[] = {"key 29 1\n", l1, "key 29 0\n", l2};
    check(rc == 0 && ev_has_sequence(held, VDI_ARRAY_SIZE(held)),
          "input: keys and buttons held by a departing client are released");
}

static void test_damage_narrowing(dpy_display_t *d, struct fake_fb *f)
{
    struct dpy_stats s0, s1;
    pid_t idle = probe_start(ARGS("-s", sock_path, "-e", "tight", "sleep", "1500"));
    sleep_ms(500);
    dpy_display_stats(d, &s0);
    sleep_ms(500);
    dpy_display_stats(d, &s1);
    check(s1.ticks - s0.ticks >= 3 && s1.lines_compared == s0.lines_compared &&
              s1.dirty_pages == s0.dirty_pages,
          "idle: ticks run (slowed down) but no line is read while nothing is written");
    fill(f, 700, 200, 10, 10, 0xabcdef);
    sleep_ms(200);
    dpy_display_stats(d, &s0);
    printf("# a 10x10 box: %llu lines compared, %llu rects\n",
           (unsigned long long)(s0.lines_compared - s1.lines_compared),
           (unsigned long long)(s0.rects - s1.rects));
    check(s0.lines_compared - s1.lines_compared <= 16 && s0.rects - s1.rects == 1,
          "damage: a 10x10 box reads only the lines of its pages and yields one rectangle");
    check(probe_wait(idle, 10) == 0, "idle: the client stayed connected");
}

static void test_shared_flag(void)
{
    pid_t shared = probe_start(ARGS("-s", sock_path, "-T", "10", "closed"));
    sleep_ms(500);
    pid_t other = probe_start(ARGS("-s", sock_path, "-T", "10", "sleep", "1500"));
    sleep_ms(300);
    check(probe_run(ARGS("-s", sock_path, "-n", "pixel", "50", "100", "ffffff")) == 0,
          "shared flag: a non-shared client connects");
    check(probe_wait(shared, 15) == 0, "shared flag: a non-shared client disconnects the others");
    check(probe_wait(other, 15) != 0, "shared flag: ... all of them");
    pid_t s1 = probe_start(ARGS("-s", sock_path, "sleep", "1500"));
    sleep_ms(300);
    pid_t s2 = probe_start(ARGS("-s", sock_path, "sleep", "500"));
    check(probe_wait(s2, 10) == 0 && probe_wait(s1, 10) == 0,
          "shared flag: shared clients coexist");
}

static void test_mode_change(struct fake_fb *f)
{
    pid_t p = probe_start(ARGS("-s", sock_path, "-e", "tight", "pixel", "50", "100", "ffffff",
                               "size", "1024", "768", "pixel", "64", "100", "ffffff", "pixel",
                               "832", "100", "0000ff", "pixel", "1000", "100", "000000"));
    pid_t z =
        probe_start(ARGS("-s", sock_path, "-e", "zrle", "size", "1024", "768", "pixel", "64", "100",
                         "ffffff", "size", "800", "600", "pixel", "650", "100", "0000ff"));
    sleep_ms(500);
    set_mode(f, 1024, 768, 1024 * 4);
    check(probe_wait(p, 20) == 0,
          "mode change: a Tight client gets DesktopSize and the new picture");
    sleep_ms(300);
    set_mode(f, 800, 600, 832 * 4);
    check(probe_wait(z, 20) == 0, "mode change: a ZRLE client follows a change and its reversal");
}

static void test_config_errors(void)
{
    dpy_display_t *d2;
    struct dpy_config c = {.unix_path = sock_path};
    struct fake_fb dummy = {0};
    check(dpy_display_create(&c, &fake_source, &dummy, NULL, NULL, &d2) == -EADDRINUSE,
          "config: a live server's socket is not taken over");
    c = (struct dpy_config){.tcp = "localhost:x"};
    check(dpy_display_create(&c, &fake_source, &dummy, NULL, NULL, &d2) == VDI_ECONFIG,
          "config: a bad TCP address is refused");
    c = (struct dpy_config){0};
    check(dpy_display_create(&c, &fake_source, &dummy, NULL, NULL, &d2) == VDI_ECONFIG,
          "config: no listener is refused");
    c = (struct dpy_config){.unix_path = sock_path, .hz = 1000};
    check(dpy_display_create(&c, &fake_source, &dummy, NULL, NULL, &d2) == VDI_ECONFIG,
          "config: an absurd tick rate is refused");
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_tcp(struct fake_fb *f)
{
    char spec[64], addr[64];
    int port = free_port();
    dpy_display_t *d2;
    snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    struct dpy_config c = {.tcp = spec, .hz = 30};
    int err = dpy_display_create(&c, &fake_source, f, NULL, NULL, &d2);
    check(err == 0, "tcp: a loopback listener starts");
    if (err < 0)
        return;
    check(probe_run(ARGS("-t", addr, "-e", "zrle", "pixel", "50", "100", "ffffff")) == 0,
          "tcp: a client over TCP sees the colour bars");
    dpy_display_destroy(d2);
}

int main(void)
{
    const char *build = getenv("VDI_BUILD");
    char dir[] = "/tmp/vdi-dpy.XXXXXX";
    struct fake_fb f = {.lock = PTHREAD_MUTEX_INITIALIZER};
    dpy_display_t *d;
    struct stat st;

    vdi_log_init_from_env();
    snprintf(probe_path, sizeof(probe_path), "%s/tests/tools/vncprobe",
             build ? build : "build/default");
    if (access(probe_path, X_OK) != 0) {
        fprintf(stderr, "FAIL: %s missing (make build-tests)\n", probe_path);
        return 1;
    }
    if (!mkdtemp(dir))
        return 1;
    snprintf(sock_path, sizeof(sock_path), "%s/display.sock", dir);

    f.mem = aligned_alloc(PAGE, (size_t)MAX_W * 2 * 4 * MAX_H);
    /* a stride wider than the picture, as a guest with a larger virtual width has */
    set_mode(&f, 800, 600, 832 * 4);

    struct dpy_config cfg = {
        .unix_path = sock_path,
        .desktop_name = "test",
        .ready = on_ready,
    };
    int err = dpy_display_create(&cfg, &fake_source, &f, &rec_sink, NULL, &d);
    check(err == 0, "the display starts on a unix socket");
    if (err < 0) {
        fprintf(stderr, "dpy_display_create: %s\n", vdi_strerror(err));
        return 1;
    }
    check(stat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600,
          "the socket has mode 0600");

    test_encoding("raw", NULL, "exact", "0");
    test_encoding("zrle", NULL, "exact", "0");
    test_encoding("tight", NULL, "exact", "0");
    test_encoding("tight", "5", "lossy", "40");
    test_encoding("hextile", NULL, "exact", "0");
    test_encoding("zlib", NULL, "exact", "0");
    test_encoding("trle", NULL, "exact", "0");
    test_encoding("corre", NULL, "exact", "0");
    test_encoding("zywrle", NULL, "any", "64");
    check(__atomic_load_n(&ready_calls, __ATOMIC_SEQ_CST) == 1,
          "ready: called once for the first non-blank frame");

    test_two_clients_and_drop(&f);
    test_bad_input(&f);
    test_input();
    test_damage_narrowing(d, &f);
    test_shared_flag();
    test_config_errors();
    test_tcp(&f);
    test_mode_change(&f);

    dpy_display_destroy(d);
    check(access(sock_path, F_OK) != 0, "destroy removes the socket");
    rmdir(dir);
    free(f.mem);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
