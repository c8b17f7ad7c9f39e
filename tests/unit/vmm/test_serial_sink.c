/* tests/unit/vmm/test_serial_sink.c: the serial log (vmm/serial-sink.c) with a clock the test
 * moves: escape sequences and control characters never reach the file as they came; the rate
 * limit holds over time and its drops are reported once per interval; a log file rotates to
 * FILE.1 and never holds more than two capped files; stdout (an fd) stops at the cap with one
 * notice and then one report a minute; a device path is capped, not renamed; bad options fail. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/internal.h"

#define BIG_RATE (1ull << 30)

static char dir[64];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/vdi-test-serial.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* @name in the test's directory; valid until the next call. */
static const char *path_of(const char *name)
{
    static char p[128];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return p;
}

/* The whole file at @path (NUL-terminated, *len bytes), or NULL if it does not exist. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 22);
    size_t n = fread(buf, 1, (1 << 22) - 1, f);
    fclose(f);
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

static off_t size_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static vmm_serial_sink_t *open_path(const char *path, uint64_t max, uint64_t rate)
{
    vmm_serial_sink_t *s;
    struct vmm_serial_sink_opts o = {.path = path, .fd = -1, .max_bytes = max, .rate = rate};
    assert_int_equal(vmm__serial_sink_create(&o, &s), 0);
    return s;
}

static vmm_serial_sink_t *open_fd(int fd, uint64_t max, uint64_t rate)
{
    vmm_serial_sink_t *s;
    struct vmm_serial_sink_opts o = {.fd = fd, .max_bytes = max, .rate = rate};
    assert_int_equal(vmm__serial_sink_create(&o, &s), 0);
    return s;
}

static void test_escapes_neutralised(void **state)
{
    (void)state;
    static const char guest[] = "\x1b[2J\x1b]0;owned\x07hi\r\n\tok\x9b\xff\x7f\x01 \\x1b\n";
    static const char want[] = "\\x1b[2J\\x1b]0;owned\\x07hi\n\tok\\x9b\\xff\\x7f\\x01 \\x1b\n";
    char p[128];
    strcpy(p, path_of("esc.log"));
    vmm_serial_sink_t *s = open_path(p, 1 << 20, BIG_RATE);
    vmm__serial_sink_write(s, guest, sizeof(guest) - 1, 0);
    vmm__serial_sink_destroy(s, 0);
    size_t n;
    char *got = slurp(p, &n);
    assert_non_null(got);
    assert_string_equal(got, want);
    /* Whatever the guest sent, the log holds only printable ASCII, \n and \t. */
    for (size_t i = 0; i < n; i++)
        assert_true((got[i] >= 0x20 && got[i] < 0x7f) || got[i] == '\n' || got[i] == '\t');
    free(got);

    /* Every byte value, in one write: nothing but printable ASCII, \n and \t comes out. */
    uint8_t all[256];
    for (unsigned i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    strcpy(p, path_of("all.log"));
    s = open_path(p, 1 << 20, BIG_RATE);
    vmm__serial_sink_write(s, all, sizeof(all), 0);
    vmm__serial_sink_destroy(s, 0);
    got = slurp(p, &n);
    assert_non_null(got);
    for (size_t i = 0; i < n; i++)
        assert_true((got[i] >= 0x20 && got[i] < 0x7f) || got[i] == '\n' || got[i] == '\t');
    assert_non_null(strstr(got, "\\x1b"));
    free(got);
}

static void test_rate_limit(void **state)
{
    (void)state;
    char p[128];
    strcpy(p, path_of("rate.log"));
    int fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0600);
    assert_true(fd >= 0);
    /* 1000 bytes/s: a burst of VMM_SERIAL_BURST_S seconds' worth, then 1000 a second. */
    vmm_serial_sink_t *s = open_fd(fd, 1 << 20, 1000);
    const uint64_t burst = 1000 * VMM_SERIAL_BURST_S;
    char line[100];
    memset(line, 'a', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\n';
    struct vmm_serial_stats st;

    for (unsigned i = 0; i < 100; i++)
        vmm__serial_sink_write(s, line, sizeof(line), 0);
    vmm__serial_sink_stats(s, &st);
    assert_int_equal(st.guest_bytes, 10000);
    assert_int_equal(st.written, burst);
    assert_int_equal(st.dropped_rate, 10000 - burst);
    assert_int_equal(size_of(p), (off_t)burst);

    /* Half a second later: 500 bytes of budget, and no report yet (one per second). */
    for (unsigned i = 0; i < 10; i++)
        vmm__serial_sink_write(s, line, sizeof(line), 500);
    vmm__serial_sink_stats(s, &st);
    assert_int_equal(st.written, burst + 500);
    char *got = slurp(p, NULL);
    assert_null(strstr(got, "suppressed"));
    free(got);

    /* A second on: one report line with the count, then output again. */
    vmm__serial_sink_write(s, "x\n", 2, 1000);
    got = slurp(p, NULL);
    char want[128];
    snprintf(want, sizeof(want),
             "\n[vdi-vmm: serial output suppressed: %llu bytes (over the rate limit)]\nx\n",
             (unsigned long long)(10000 - burst + 500));
    assert_non_null(strstr(got, want));
    free(got);

    /* A sustained flood of 100 KB/s for 20 s logs about 1000 bytes a second, not more. */
    vmm__serial_sink_stats(s, &st);
    uint64_t before = st.written;
    for (uint64_t t = 1000; t < 21000; t += 10)
        vmm__serial_sink_write(s, line, sizeof(line), t);
    vmm__serial_sink_stats(s, &st);
    uint64_t reports = 21 * 100; /* at most one report line (< 100 bytes) a second */
    assert_true(st.written - before <= 20 * 1000 + reports);
    assert_true(st.written - before >= 19 * 1000);
    vmm__serial_sink_destroy(s, 21000);

    /* The program's rate, written to every millisecond for 10 s (a refill per millisecond is a
     * fraction of a byte's worth at low rates and 65 bytes here: both must add up exactly). */
    s = open_fd(fd, 1ull << 30, VMM_SERIAL_RATE);
    char big[1000];
    memset(big, 'b', sizeof(big));
    for (uint64_t t = 0; t < 10000; t++)
        vmm__serial_sink_write(s, big, sizeof(big), 100000 + t);
    vmm__serial_sink_stats(s, &st);
    const uint64_t allowed = (uint64_t)VMM_SERIAL_RATE * (VMM_SERIAL_BURST_S + 10);
    assert_true(st.written <= allowed + 11 * 100);
    assert_true(st.written >= allowed - VMM_SERIAL_RATE / 10);
    assert_true(st.dropped_rate >= 10000 * sizeof(big) - allowed);
    vmm__serial_sink_destroy(s, 110000);
    close(fd);
}

static void test_rotation(void **state)
{
    (void)state;
    char p[128], p1[128];
    strcpy(p, path_of("rot.log"));
    strcpy(p1, path_of("rot.log.1"));
    vmm_serial_sink_t *s = open_path(p, 4096, BIG_RATE);
    char line[100];
    for (unsigned i = 0; i < 1000; i++) {
        int n = snprintf(line, sizeof(line), "line %04u %s\n", i,
                         "................................................................");
        vmm__serial_sink_write(s, line, (size_t)n, i);
        assert_true(size_of(p) <= 4096);
    }
    struct vmm_serial_stats st;
    vmm__serial_sink_stats(s, &st);
    vmm__serial_sink_destroy(s, 1000);
    assert_true(st.rotations >= 75000 / 4096 - 1); /* 1000 lines of 75 bytes */
    assert_int_equal(st.dropped_cap + st.dropped_rate, 0);
    /* Two files at most, each under the cap; the newest output is in FILE. */
    assert_true(size_of(p) <= 4096);
    assert_true(size_of(p1) > 0);
    assert_true(size_of(p1) <= 4096);
    assert_int_equal(size_of(path_of("rot.log.2")), -1);
    char *got = slurp(p, NULL);
    assert_non_null(strstr(got, "line 0999"));
    free(got);
    got = slurp(p1, NULL);
    assert_null(strstr(got, "line 0999"));
    assert_null(strstr(got, "line 0000"));
    free(got);
}

static void test_stdout_cap(void **state)
{
    (void)state;
    /* vdid's case: stdout is a file it opened for appending, which we cannot rotate. */
    char p[128];
    strcpy(p, path_of("stdout.log"));
    int fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0600);
    assert_true(fd >= 0);
    vmm_serial_sink_t *s = open_fd(fd, 4096, BIG_RATE);
    char buf[1000];
    memset(buf, 'z', sizeof(buf));
    for (unsigned i = 0; i < 100; i++)
        vmm__serial_sink_write(s, buf, sizeof(buf), 0);
    struct vmm_serial_stats st;
    vmm__serial_sink_stats(s, &st);
    off_t full = size_of(p);
    assert_true(full <= 4096);
    assert_true(full > 3000);
    assert_int_equal(st.guest_bytes, 100000);
    assert_true(st.dropped_cap > 96000);
    char *got = slurp(p, NULL);
    assert_non_null(strstr(got, "[vdi-vmm: serial log reached its cap of 4096 bytes"));
    free(got);

    /* More output within the minute: nothing written. A minute on: one report line. */
    for (uint64_t t = 1000; t < 59000; t += 1000)
        vmm__serial_sink_write(s, buf, sizeof(buf), t);
    assert_int_equal(size_of(p), full);
    vmm__serial_sink_write(s, buf, sizeof(buf), 61000);
    got = slurp(p, NULL);
    assert_non_null(strstr(got, "serial output suppressed: "));
    assert_non_null(strstr(got, "bytes (the log is full)]\n"));
    free(got);
    off_t after = size_of(p);
    assert_true(after > full && after < full + 200);
    vmm__serial_sink_destroy(s, 62000);
    close(fd);
}

static void test_device_is_capped_not_renamed(void **state)
{
    (void)state;
    vmm_serial_sink_t *s = open_path("/dev/null", 4096, BIG_RATE);
    char buf[1000];
    memset(buf, 'q', sizeof(buf));
    for (unsigned i = 0; i < 10; i++)
        vmm__serial_sink_write(s, buf, sizeof(buf), 0);
    struct vmm_serial_stats st;
    vmm__serial_sink_stats(s, &st);
    vmm__serial_sink_destroy(s, 0);
    assert_int_equal(st.rotations, 0);
    assert_true(st.dropped_cap > 0);
    assert_int_equal(access("/dev/null.1", F_OK), -1);
}

static void test_bad_options(void **state)
{
    (void)state;
    vmm_serial_sink_t *s = NULL;
    struct vmm_serial_sink_opts o = {.fd = 1, .max_bytes = 100, .rate = 1000};
    assert_int_equal(vmm__serial_sink_create(&o, &s), -EINVAL);
    o.max_bytes = 4096;
    o.rate = 0;
    assert_int_equal(vmm__serial_sink_create(&o, &s), -EINVAL);
    o.rate = 1000;
    o.path = path_of("no/such/dir/log");
    assert_int_equal(vmm__serial_sink_create(&o, &s), -ENOENT);
    assert_null(s);
    vmm__serial_sink_destroy(NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes_neutralised),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_stdout_cap),
        cmocka_unit_test(test_device_is_capped_not_renamed),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
