/* Unit tests for broker/state.c: the desktop state machine's names and transitions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "broker/brk.h"
#include "common/vdi.h"

static void test_names_round_trip(void **state)
{
    (void)state;
    for (int s = 0; s < BRK_DS__COUNT; s++)
        assert_int_equal(brk_desktop_state_parse(brk_desktop_state_name(s)), s);
    assert_string_equal(brk_desktop_state_name(BRK_DS_IN_USE), "in-use");
    assert_int_equal(brk_desktop_state_parse("bogus"), -EINVAL);
    assert_string_equal(brk_desktop_state_name(99), "unknown");
}

static void test_lifecycle(void **state)
{
    (void)state;
    /* the path: provisioning -> ready -> in-use -> disconnected -> recycling -> gone */
    assert_true(brk_desktop_transition_ok(BRK_DS_PROVISIONING, BRK_DS_READY));
    assert_true(brk_desktop_transition_ok(BRK_DS_READY, BRK_DS_IN_USE));
    assert_true(brk_desktop_transition_ok(BRK_DS_IN_USE, BRK_DS_DISCONNECTED));
    assert_true(brk_desktop_transition_ok(BRK_DS_DISCONNECTED, BRK_DS_IN_USE));
    assert_true(brk_desktop_transition_ok(BRK_DS_DISCONNECTED, BRK_DS_RECYCLING));
    assert_true(brk_desktop_transition_ok(BRK_DS_RECYCLING, BRK_DS_GONE));
    /* every live state can fail; failed goes away */
    for (int s = BRK_DS_PROVISIONING; s <= BRK_DS_RECYCLING; s++)
        assert_true(brk_desktop_transition_ok(s, BRK_DS_FAILED));
    assert_true(brk_desktop_transition_ok(BRK_DS_FAILED, BRK_DS_GONE));
    assert_true(brk_desktop_transition_ok(BRK_DS_FAILED, BRK_DS_PROVISIONING));
}

static void test_forbidden(void **state)
{
    (void)state;
    for (int s = 0; s < BRK_DS__COUNT; s++) {
        assert_false(brk_desktop_transition_ok(BRK_DS_GONE, s)); /* gone is final */
        if (s != BRK_DS_FAILED) /* only a failed (dedicated) desktop is started again */
            assert_false(brk_desktop_transition_ok(s, BRK_DS_PROVISIONING));
        assert_false(brk_desktop_transition_ok(s, s));
    }
    assert_false(brk_desktop_transition_ok(BRK_DS_FAILED, BRK_DS_READY));
    assert_false(brk_desktop_transition_ok(BRK_DS_RECYCLING, BRK_DS_IN_USE));
    assert_false(brk_desktop_transition_ok(BRK_DS_PROVISIONING, BRK_DS_GONE));
    assert_false(brk_desktop_transition_ok(BRK_DS_READY, BRK_DS_DISCONNECTED));
    assert_false(brk_desktop_transition_ok(BRK_DS__COUNT, BRK_DS_READY));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_round_trip),
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_forbidden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
