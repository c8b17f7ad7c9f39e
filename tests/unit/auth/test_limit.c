/* Unit tests for auth/limit.c: backoff, lockout, reset on success, forgetting and the bound on
 * tracked keys. Time is passed in explicitly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "auth/internal.h"

static const auth_limit_config_t cfg = {
    .free_failures = 2,
    .backoff_base_ms = 1000,
    .backoff_max_ms = 4000,
    .lockout_failures = 6,
    .lockout_ms = 60000,
    .forget_ms = 3600000,
    .max_entries = 4,
};

static void test_backoff_then_lockout(void **state)
{
    (void)state;
    auth__limiter_t *l = auth__limiter_create(&cfg);
    uint64_t t = 5000, wait;
    assert_int_equal(auth__limiter_check(l, "alice", t, &wait), 0);
    assert_int_equal(wait, 0);
    /* Two free failures: no wait. */
    assert_false(auth__limiter_fail(l, "alice", t));
    assert_false(auth__limiter_fail(l, "alice", t));
    assert_int_equal(auth__limiter_check(l, "alice", t, &wait), 0);
    assert_int_equal(wait, 0);
    /* Then 1 s, 2 s, 4 s, capped at 4 s. */
    uint64_t want[] = {1000, 2000, 4000};
    for (int i = 0; i < 3; i++) {
        assert_false(auth__limiter_fail(l, "alice", t));
        assert_int_equal(auth__limiter_check(l, "alice", t + 10, &wait), 0);
        assert_int_equal(wait, want[i] - 10);
        t += want[i];
        assert_int_equal(auth__limiter_check(l, "alice", t, &wait), 0);
        assert_int_equal(wait, 0);
    }
    /* The sixth failure locks out for 60 s. */
    assert_true(auth__limiter_fail(l, "alice", t));
    assert_int_equal(auth__limiter_check(l, "alice", t + 1, &wait), VDI_ELOCKOUT);
    assert_int_equal(wait, 59999);
    /* Other keys are not affected. */
    assert_int_equal(auth__limiter_check(l, "bob", t + 1, &wait), 0);
    assert_int_equal(wait, 0);
    /* After the lockout one more failure locks again at once. */
    t += 60000;
    assert_int_equal(auth__limiter_check(l, "alice", t, &wait), 0);
    assert_int_equal(wait, 0);
    assert_true(auth__limiter_fail(l, "alice", t));
    assert_int_equal(auth__limiter_check(l, "alice", t, &wait), VDI_ELOCKOUT);
    /* A success resets everything. */
    auth__limiter_success(l, "alice");
    assert_int_equal(auth__limiter_check(l, "alice", t, &wait), 0);
    assert_int_equal(wait, 0);
    auth__limiter_destroy(l);
}

static void test_forget_and_bound(void **state)
{
    (void)state;
    auth__limiter_t *l = auth__limiter_create(&cfg);
    uint64_t wait;
    for (int i = 0; i < 3; i++)
        auth__limiter_fail(l, "alice", 0);
    assert_int_equal(auth__limiter_check(l, "alice", 1, &wait), 0);
    assert_true(wait > 0);
    assert_int_equal(auth__limiter_check(l, "alice", 3600000, &wait), 0);
    assert_int_equal(wait, 0);
    assert_int_equal(auth__limiter_count(l), 0);

    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "user%d", i);
        for (int j = 0; j < 3; j++)
            auth__limiter_fail(l, key, 10);
        assert_true(auth__limiter_count(l) <= 4);
    }
    /* The newest keys are tracked, the oldest were dropped. */
    assert_int_equal(auth__limiter_check(l, "user99", 11, &wait), 0);
    assert_true(wait > 0);
    assert_int_equal(auth__limiter_check(l, "user0", 11, &wait), 0);
    assert_int_equal(wait, 0);
    auth__limiter_destroy(l);
}

static void test_addr_key(void **state)
{
    (void)state;
    char k[64];
    auth__addr_key("192.0.2.7", k, sizeof(k));
    assert_string_equal(k, "192.0.2.7");
    auth__addr_key("::ffff:192.0.2.7", k, sizeof(k));
    assert_string_equal(k, "192.0.2.7");
    auth__addr_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", k, sizeof(k));
    assert_string_equal(k, "2001:db8:1:2::/64");
    auth__addr_key("2001:db8:1:2::1", k, sizeof(k));
    assert_string_equal(k, "2001:db8:1:2::/64");
    auth__addr_key("?", k, sizeof(k));
    assert_string_equal(k, "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_then_lockout),
        cmocka_unit_test(test_forget_and_bound),
        cmocka_unit_test(test_addr_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
