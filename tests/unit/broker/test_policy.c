/* Unit tests for broker/policy.c: the supervisor's decisions (spares, admission, what a VMM's end
 * means for its desktop, what a refused login is told). */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <signal.h>
#include <string.h>

#include "broker/brk.h"
#include "common/vdi.h"
#include "vmm/vmm.h"

#define MIB (1024ull * 1024)

static brk_pool_config_t pool(unsigned min_spares, unsigned max_desktops, uint64_t memory)
{
    static char name[] = "lab";
    return (brk_pool_config_t){
        .name = name, .min_spares = min_spares, .max_desktops = max_desktops, .memory = memory};
}

static void test_spares_fill_up_to_min(void **state)
{
    (void)state;
    brk_pool_config_t p = pool(3, 10, 256 * MIB);
    brk_spares_t s = brk_spares_plan(&p, 0, 0, 0, 4096 * MIB);
    assert_int_equal(s.make, 3);
    assert_int_equal(s.drop, 0);
    s = brk_spares_plan(&p, 5, 2, 0, 4096 * MIB); /* two already there or coming */
    assert_int_equal(s.make, 1);
    s = brk_spares_plan(&p, 5, 3, 0, 4096 * MIB);
    assert_int_equal(s.make, 0);
    assert_int_equal(s.drop, 0);
}

static void test_spares_respect_max_desktops(void **state)
{
    (void)state;
    brk_pool_config_t p = pool(3, 4, 256 * MIB);
    brk_spares_t s = brk_spares_plan(&p, 3, 0, 0, 4096 * MIB);
    assert_int_equal(s.make, 1);
    s = brk_spares_plan(&p, 4, 0, 0, 4096 * MIB);
    assert_int_equal(s.make, 0);
}

static void test_spares_respect_memory(void **state)
{
    (void)state;
    brk_pool_config_t p = pool(4, 10, 256 * MIB);
    /* 600 MiB left: two more fit, the third would not */
    brk_spares_t s = brk_spares_plan(&p, 0, 0, 424 * MIB, 1024 * MIB);
    assert_int_equal(s.make, 2);
    s = brk_spares_plan(&p, 0, 0, 1024 * MIB, 1024 * MIB);
    assert_int_equal(s.make, 0);
    s = brk_spares_plan(&p, 0, 0, 2048 * MIB, 1024 * MIB); /* overcommitted already */
    assert_int_equal(s.make, 0);
}

static void test_surplus_spares_are_dropped(void **state)
{
    (void)state;
    brk_pool_config_t p = pool(1, 10, 256 * MIB);
    brk_spares_t s = brk_spares_plan(&p, 4, 3, 0, 4096 * MIB);
    assert_int_equal(s.make, 0);
    assert_int_equal(s.drop, 2);
}

static void test_admit(void **state)
{
    (void)state;
    assert_true(brk_admit(256 * MIB, 768 * MIB, 1024 * MIB));
    assert_false(brk_admit(256 * MIB + 1, 768 * MIB, 1024 * MIB));
    assert_false(brk_admit(1, 2048 * MIB, 1024 * MIB));
    assert_false(brk_admit(UINT64_MAX, 1, UINT64_MAX)); /* no overflow */
}

static bool failed(brk_vmm_exit_t e, char *why)
{
    return brk_vmm_exit_failed(&e, why, 256);
}

static void test_vmm_exits(void **state)
{
    (void)state;
    char why[256];
    assert_false(failed((brk_vmm_exit_t){.status = VMM_EXIT_POWEROFF}, why));
    assert_string_equal(why, "guest powered off");

    assert_true(failed((brk_vmm_exit_t){.signalled = true, .sig = SIGKILL}, why));
    assert_non_null(strstr(why, "vmm killed by signal 9"));
    assert_null(strstr(why, "by vdid"));
    assert_false(
        failed((brk_vmm_exit_t){.signalled = true, .sig = SIGKILL, .killed_by_vdid = true}, why));
    assert_non_null(strstr(why, "by vdid"));

    /* a recycle ends the desktop whatever the status */
    assert_false(failed((brk_vmm_exit_t){.status = VMM_EXIT_STOPPED,
                                         .recycling = true,
                                         .off = "guest stopped: the guest did not power off"},
                        why));
    assert_string_equal(why, "vmm stopped the guest (guest stopped: the guest did not power off)");
    assert_true(failed((brk_vmm_exit_t){.status = VMM_EXIT_STOPPED}, why));

    assert_true(failed(
        (brk_vmm_exit_t){.status = VMM_EXIT_CRASHED, .crash = "guest crashed: triple fault"}, why));
    assert_string_equal(
        why, "guest crashed: triple fault (vmm exited with status 4 (the guest crashed))");
    assert_true(failed((brk_vmm_exit_t){.status = 77}, why));
    assert_string_equal(why, "vmm exited with status 77 (unknown exit status)");
    /* a ready timeout: vdid's SIGKILL, but a failure, led by the timeout */
    assert_true(failed(
        (brk_vmm_exit_t){.signalled = true, .sig = SIGKILL, .crash = "not ready after 2s"}, why));
    assert_true(strncmp(why, "not ready after 2s (vmm killed by signal 9", 41) == 0);
}

static void test_refusals(void **state)
{
    (void)state;
    char msg[160];
    brk_pick_refusal(VDI_EDENIED, "eve", msg, sizeof(msg));
    assert_string_equal(msg, "user eve is not entitled to any desktop pool");
    brk_pick_refusal(VDI_ECAPACITY, "eve", msg, sizeof(msg));
    assert_non_null(strstr(msg, "at capacity"));
    brk_pick_refusal(-EIO, "eve", msg, sizeof(msg));
    assert_non_null(strstr(msg, "internal error"));
}

static void test_user_dir_name(void **state)
{
    (void)state;
    char b[64];
    assert_int_equal(brk_user_dir_name("alice", b, sizeof(b)), 0);
    assert_string_equal(b, "alice");
    assert_int_equal(brk_user_dir_name("j.doe-2_x", b, sizeof(b)), 0);
    assert_string_equal(b, "j.doe-2_x");
    assert_int_equal(brk_user_dir_name("..", b, sizeof(b)), 0);
    assert_string_equal(b, "%2E.");
    assert_int_equal(brk_user_dir_name("a/b", b, sizeof(b)), 0);
    assert_string_equal(b, "a%2Fb");
    assert_int_equal(brk_user_dir_name("DOM\\u%", b, sizeof(b)), 0);
    assert_string_equal(b, "DOM%5Cu%25");
    assert_int_equal(brk_user_dir_name("\xc3\xa9", b, sizeof(b)), 0);
    assert_string_equal(b, "%C3%A9");
    assert_int_equal(brk_user_dir_name("", b, sizeof(b)), -EINVAL);
    assert_int_equal(brk_user_dir_name("abcdef", b, 6), -ENAMETOOLONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spares_fill_up_to_min),
        cmocka_unit_test(test_spares_respect_max_desktops),
        cmocka_unit_test(test_spares_respect_memory),
        cmocka_unit_test(test_surplus_spares_are_dropped),
        cmocka_unit_test(test_admit),
        cmocka_unit_test(test_vmm_exits),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_user_dir_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
