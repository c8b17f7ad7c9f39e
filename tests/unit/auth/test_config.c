/* Unit tests for auth/config.c: auth_config_defaults() gives the defaults docs/auth.md and
 * docs/config.md state. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "auth/auth.h"

static void test_documented_defaults(void **state)
{
    (void)state;
    auth_config_t c;
    memset(&c, 0x5a, sizeof(c)); /* nothing is left from before */
    auth_config_defaults(&c);
    assert_string_equal(c.pam_service, "vdi");
    assert_string_equal(c.admin_group, "vdi");
    assert_null(c.tls_cert);
    assert_null(c.tls_key);
    assert_null(c.state_dir);
    assert_false(c.allow_tlsplain);
    assert_false(c.tlsplain_only);
    assert_int_equal(c.handshake_timeout_ms, 10000);
    assert_int_equal(c.pam_max_concurrent, 2);
    assert_int_equal(c.pam_max_queued, 64);
    assert_int_equal(c.max_checks_per_addr, 4);
    assert_int_equal(c.max_username_len, 256);
    assert_int_equal(c.max_password_len, 1024);
    /* limit_user: 3 free, 1 s..30 s, lock at 10 for 15 min; limit_addr: 5 free, lock at 30. */
    assert_int_equal(c.limit_user.free_failures, 3);
    assert_int_equal(c.limit_user.backoff_base_ms, 1000);
    assert_int_equal(c.limit_user.backoff_max_ms, 30000);
    assert_int_equal(c.limit_user.lockout_failures, 10);
    assert_int_equal(c.limit_user.lockout_ms, 900000);
    assert_int_equal(c.limit_addr.free_failures, 5);
    assert_int_equal(c.limit_addr.backoff_base_ms, 1000);
    assert_int_equal(c.limit_addr.backoff_max_ms, 30000);
    assert_int_equal(c.limit_addr.lockout_failures, 30);
    assert_int_equal(c.limit_addr.lockout_ms, 900000);
    assert_int_equal(c.limit_user.forget_ms, 3600000);
    /* limit_user_global: 30 free, lock at 100; a clean record lasts 30 days. */
    assert_int_equal(c.limit_user_global.free_failures, 30);
    assert_int_equal(c.limit_user_global.lockout_failures, 100);
    assert_int_equal(c.limit_user_global.lockout_ms, 900000);
    assert_int_equal(c.known_addr_days, 30);
    assert_int_equal(c.limit_addr.max_entries, 65536);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_documented_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
