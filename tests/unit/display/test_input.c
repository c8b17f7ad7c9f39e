/* tests/unit/display/test_input.c: pointer scaling and button/wheel decoding. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/vdi.h"
#include "display/internal.h"

static void test_scale_ends_and_middle(void **state)
{
    (void)state;
    assert_int_equal(dpy__scale_abs(0, 1280), 0);
    assert_int_equal(dpy__scale_abs(1279, 1280), DPY_ABS_MAX);
    assert_int_equal(dpy__scale_abs(5000, 1280), DPY_ABS_MAX); /* clamped */
    /* the middle pixel of an odd axis maps to the middle */
    assert_int_equal(dpy__scale_abs(400, 801), (DPY_ABS_MAX + 1) / 2);
    assert_int_equal(dpy__scale_abs(0, 1), 0);
    assert_int_equal(dpy__scale_abs(0, 0), 0);
}

static void test_scale_is_monotonic_and_invertible(void **state)
{
    (void)state;
    static const uint32_t sizes[] = {2, 640, 800, 1024, 1920, 2160, 3840};
    for (size_t s = 0; s < VDI_ARRAY_SIZE(sizes); s++) {
        uint32_t n = sizes[s], prev = 0;
        for (uint32_t p = 0; p < n; p++) {
            uint32_t a = dpy__scale_abs(p, n);
            assert_true(a <= DPY_ABS_MAX);
            if (p)
                assert_true(a > prev);
            prev = a;
            /* a guest scaling back (a * (n-1) / MAX, rounded or floored) finds the same pixel */
            uint32_t back = (uint32_t)(((uint64_t)a * (n - 1) + DPY_ABS_MAX / 2) / DPY_ABS_MAX);
            assert_int_equal(back, p);
            assert_int_equal((uint32_t)((uint64_t)a * (n - 1) / DPY_ABS_MAX), p);
        }
    }
}

static void test_buttons_and_wheel(void **state)
{
    (void)state;
    struct dpy__pointer_event ev;

    ev = dpy__pointer_decode(0, 1);
    assert_int_equal(ev.buttons, 1);
    assert_int_equal(ev.wheel_v, 0);
    ev = dpy__pointer_decode(1, 1 | 4);
    assert_int_equal(ev.buttons, 5);
    ev = dpy__pointer_decode(0, 1u << 3); /* button 4: wheel up */
    assert_int_equal(ev.buttons, 0);
    assert_int_equal(ev.wheel_v, 1);
    ev = dpy__pointer_decode(1u << 3, 1u << 3); /* still held: no second click */
    assert_int_equal(ev.wheel_v, 0);
    ev = dpy__pointer_decode(1u << 3, 0); /* release */
    assert_int_equal(ev.wheel_v, 0);
    ev = dpy__pointer_decode(0, 1u << 4); /* button 5: wheel down */
    assert_int_equal(ev.wheel_v, -1);
    ev = dpy__pointer_decode(0, 1u << 5);
    assert_int_equal(ev.wheel_h, -1);
    ev = dpy__pointer_decode(0, 1u << 6);
    assert_int_equal(ev.wheel_h, 1);
    ev = dpy__pointer_decode(0, 0x80 | 2); /* unknown bit 7 ignored */
    assert_int_equal(ev.buttons, 2);
    assert_int_equal(ev.wheel_v, 0);
    assert_int_equal(ev.wheel_h, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scale_ends_and_middle),
        cmocka_unit_test(test_scale_is_monotonic_and_invertible),
        cmocka_unit_test(test_buttons_and_wheel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
