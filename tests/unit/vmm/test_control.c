/* Unit tests for vmm/control.c's request handling without a VM: replies to bad lines, and that a
 * quit is remembered for the restart loop (a quit that races with a guest reboot must still end
 * vdi-vmm instead of being lost when the VM restarts). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"

static int setup(void **state)
{
    vmm_control_t *c = NULL;
    if (vmm__control_create(NULL, &c) < 0)
        return -1;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    vmm__control_destroy(*state);
    return 0;
}

static char *handle(vmm_control_t *c, const char *line)
{
    char *reply = NULL;
    vmm__control_handle(c, NULL, line, &reply);
    assert_non_null(reply);
    return reply;
}

static void test_quit_is_remembered(void **state)
{
    vmm_control_t *c = *state;
    assert_false(vmm__control_quit_requested(c));
    char *r = handle(c, "{\"cmd\":\"quit\",\"id\":7}");
    assert_non_null(strstr(r, "\"ok\":true"));
    assert_non_null(strstr(r, "\"id\":7"));
    free(r);
    assert_true(vmm__control_quit_requested(c));
}

static void test_bad_lines_do_not_quit(void **state)
{
    vmm_control_t *c = *state;
    static const char *const bad[] = {
        "not json",
        "[1,2]",
        "{\"cmd\":42}",
        "{}",
        "{\"cmd\":\"quit\",\"cmd\":\"quit\"}",
        "{\"cmd\":\"frobnicate\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *r = handle(c, bad[i]);
        assert_non_null(strstr(r, "\"ok\":false"));
        assert_non_null(strstr(r, "\"error\":"));
        free(r);
    }
    assert_false(vmm__control_quit_requested(c));
}

static void test_commands_need_a_vm(void **state)
{
    vmm_control_t *c = *state;
    char *r = handle(c, "{\"cmd\":\"shutdown\"}");
    assert_non_null(strstr(r, "no virtual machine is running"));
    free(r);
    assert_false(vmm__control_quit_requested(c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_quit_is_remembered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_lines_do_not_quit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commands_need_a_vm, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
