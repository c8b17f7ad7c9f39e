/* Unit tests for common/log.c: levels, line format, rate limiting. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>
#include <stdlib.h>

#define VDI_LOG_TAG "testtag"
#include "common/vdi.h"

static char captured[8][2048];
static int ncaptured;
static int evaluated;

static void sink(int level, const char *line, void *ctx)
{
    (void)level;
    (void)ctx;
    if (ncaptured < 8)
        snprintf(captured[ncaptured], sizeof(captured[0]), "%s", line);
    ncaptured++;
}

static int setup(void **state)
{
    (void)state;
    ncaptured = 0;
    evaluated = 0;
    memset(captured, 0, sizeof(captured));
    vdi_log_set_sink(sink, NULL);
    vdi_log_set_program(NULL);
    vdi_log_set_level(VDI_LOG_LEVEL_INFO);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    vdi_log_set_sink(NULL, NULL);
    return 0;
}

static int side_effect(void)
{
    return ++evaluated;
}

static void test_levels_filter(void **state)
{
    (void)state;
    VDI_LOG_DEBUG("hidden %d", side_effect());
    assert_int_equal(ncaptured, 0);
    assert_int_equal(evaluated, 0); /* arguments not evaluated below the threshold */
    VDI_LOG_INFO("shown %d", side_effect());
    VDI_LOG_WARN("warned");
    VDI_LOG_ERR("failed");
    assert_int_equal(ncaptured, 3);
    assert_int_equal(evaluated, 1);
    vdi_log_set_level(VDI_LOG_LEVEL_ERR);
    VDI_LOG_WARN("now hidden");
    assert_int_equal(ncaptured, 3);
    vdi_log_set_level(VDI_LOG_LEVEL_DEBUG);
    VDI_LOG_DEBUG("now shown");
    assert_int_equal(ncaptured, 4);
}

static void test_line_format(void **state)
{
    (void)state;
    vdi_log_set_program("vdid");
    VDI_LOG_WARN("vm=%s vcpu=%u unhandled", "d1", 2u);
    assert_int_equal(ncaptured, 1);
    /* 2026-11-22T11:42:54.256Z W vdid: testtag: vm=d1 vcpu=2 unhandled\n */
    const char *l = captured[0];
    assert_int_equal(strlen(l) > 25, 1);
    assert_int_equal(l[4], '-');
    assert_int_equal(l[10], 'T');
    assert_int_equal(l[23], 'Z');
    assert_string_equal(l + 24, " W vdid: testtag: vm=d1 vcpu=2 unhandled\n");
}

static void test_long_line_truncated(void **state)
{
    (void)state;
    char *big = malloc(5000);
    memset(big, 'x', 4999);
    big[4999] = '\0';
    VDI_LOG_ERR("%s", big);
    free(big);
    size_t n = strlen(captured[0]);
    assert_true(n < 2048);
    assert_memory_equal(captured[0] + n - 4, "...\n", 4);
}

static void test_parse_level(void **state)
{
    (void)state;
    assert_int_equal(vdi_log_parse_level("debug"), VDI_LOG_LEVEL_DEBUG);
    assert_int_equal(vdi_log_parse_level("WARN"), VDI_LOG_LEVEL_WARN);
    assert_int_equal(vdi_log_parse_level("error"), VDI_LOG_LEVEL_ERR);
    assert_int_equal(vdi_log_parse_level("6"), VDI_LOG_LEVEL_INFO);
    assert_int_equal(vdi_log_parse_level("loud"), -EINVAL);
    assert_int_equal(vdi_log_parse_level(NULL), -EINVAL);
}

static void test_env_level(void **state)
{
    (void)state;
    setenv("VDI_LOG_LEVEL", "err", 1);
    vdi_log_init_from_env();
    assert_int_equal(vdi_log_threshold, VDI_LOG_LEVEL_ERR);
    setenv("VDI_LOG_LEVEL", "bogus", 1);
    vdi_log_init_from_env(); /* reports, keeps the level */
    assert_int_equal(vdi_log_threshold, VDI_LOG_LEVEL_ERR);
    assert_int_equal(ncaptured, 1);
    assert_non_null(strstr(captured[0], "VDI_LOG_LEVEL=bogus"));
    unsetenv("VDI_LOG_LEVEL");
}

static void test_ratelimit(void **state)
{
    (void)state;
    for (int i = 0; i < 50; i++)
        VDI_LOG_WARN_RL("guest poked port %d", i);
    assert_int_equal(ncaptured, 10); /* burst of 10 per 5 s */

    vdi_ratelimit_t rl = VDI_RATELIMIT_INIT;
    uint32_t dropped;
    assert_true(vdi_ratelimit_ok(&rl, 2, 1000, &dropped));
    assert_true(vdi_ratelimit_ok(&rl, 2, 1000, &dropped));
    assert_false(vdi_ratelimit_ok(&rl, 2, 1000, &dropped));
    assert_false(vdi_ratelimit_ok(&rl, 2, 1000, &dropped));
    rl.window_start_ms -= 2000; /* pretend the window has passed */
    assert_true(vdi_ratelimit_ok(&rl, 2, 1000, &dropped));
    assert_int_equal(dropped, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_levels_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_line_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratelimit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
