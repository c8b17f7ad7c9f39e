/* Unit tests for auth/token.c: console tokens (TTL, single use, binding to a desktop) and web
 * session tokens (idle and absolute lifetimes, revocation), on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth/auth.h"
#include "common/vdi.h"

static uint64_t fake_now = 1000000;
static uint64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now;
}

static int setup(void **state)
{
    auth_tokens_t *t;
    if (auth_tokens_create(8, fake_clock, NULL, &t) < 0)
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    auth_tokens_destroy(*state);
    return 0;
}

static void test_format_and_uniqueness(void **state)
{
    auth_tokens_t *t = *state;
    char a[AUTH_TOKEN_LEN + 1], b[AUTH_TOKEN_LEN + 1];
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-1", 0, a), 0);
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-1", 0, b), 0);
    assert_int_equal(strlen(a), 43);
    assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     43);
    assert_string_not_equal(a, b);
    assert_int_equal(auth_tokens_count(t), 2);
}

static void test_console_single_use(void **state)
{
    auth_tokens_t *t = *state;
    char tok[AUTH_TOKEN_LEN + 1];
    char *user = NULL;
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-1", 0, tok), 0);
    assert_int_equal(auth_console_token_redeem(t, tok, "desk-1", &user), 0);
    assert_string_equal(user, "alice");
    free(user);
    user = NULL;
    assert_int_equal(auth_console_token_redeem(t, tok, "desk-1", &user), VDI_ETOKEN);
    assert_null(user);
}

static void test_console_binding(void **state)
{
    auth_tokens_t *t = *state;
    char tok[AUTH_TOKEN_LEN + 1];
    char *user = NULL;
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-A", 0, tok), 0);
    assert_int_equal(auth_console_token_redeem(t, tok, "desk-B", &user), VDI_EDENIED);
    assert_null(user);
    /* Burnt by the wrong-desktop attempt: not usable for desk-A any more either. */
    assert_int_equal(auth_console_token_redeem(t, tok, "desk-A", &user), VDI_ETOKEN);
    /* A session token is not a console token, and vice versa. */
    assert_int_equal(auth_session_create(t, "alice", 1000, 5000, tok), 0);
    assert_int_equal(auth_console_token_redeem(t, tok, "desk-A", &user), VDI_ETOKEN);
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-A", 0, tok), 0);
    assert_int_equal(auth_session_check(t, tok, NULL), VDI_ETOKEN);
}

static void test_console_expiry(void **state)
{
    auth_tokens_t *t = *state;
    char tok[AUTH_TOKEN_LEN + 1], tok2[AUTH_TOKEN_LEN + 1];
    char *user = NULL;
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-1", 0, tok), 0);
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-1", 0, tok2), 0);
    fake_now += AUTH_CONSOLE_TOKEN_TTL_MS - 1;
    assert_int_equal(auth_console_token_redeem(t, tok2, "desk-1", &user), 0);
    free(user);
    fake_now += 1;
    assert_int_equal(auth_console_token_redeem(t, tok, "desk-1", &user), VDI_ETOKEN);
    assert_int_equal(auth_tokens_count(t), 0);
}

static void test_malformed(void **state)
{
    auth_tokens_t *t = *state;
    char tok[AUTH_TOKEN_LEN + 1];
    char *user = NULL;
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-1", 0, tok), 0);
    char bad[64];
    const char *cases[] = {"", "short", "=", NULL};
    for (size_t i = 0; i < VDI_ARRAY_SIZE(cases); i++)
        assert_int_equal(auth_console_token_redeem(t, cases[i], "desk-1", &user), VDI_ETOKEN);
    snprintf(bad, sizeof(bad), "%sA", tok); /* too long */
    assert_int_equal(auth_console_token_redeem(t, bad, "desk-1", &user), VDI_ETOKEN);
    memcpy(bad, tok, sizeof(tok));
    bad[10] = bad[10] == 'A' ? 'B' : 'A'; /* one character off */
    assert_int_equal(auth_console_token_redeem(t, bad, "desk-1", &user), VDI_ETOKEN);
    bad[10] = '+'; /* not base64url */
    assert_int_equal(auth_console_token_redeem(t, bad, "desk-1", &user), VDI_ETOKEN);
    assert_int_equal(auth_console_token_issue(t, "", "desk-1", 0, tok), -EINVAL);
    assert_int_equal(auth_console_token_issue(t, "alice", NULL, 0, tok), -EINVAL);
    /* The real one still works: failed lookups did not burn it. */
    assert_int_equal(auth_console_token_redeem(t, tok, "desk-1", &user), 0);
    free(user);
}

static void test_session_lifetimes(void **state)
{
    auth_tokens_t *t = *state;
    char tok[AUTH_TOKEN_LEN + 1];
    const char *user;
    assert_int_equal(auth_session_create(t, "bob", 1000, 2500, tok), 0);
    fake_now += 900;
    assert_int_equal(auth_session_check(t, tok, &user), 0);
    assert_string_equal(user, "bob");
    fake_now += 900; /* 1800 since creation, 900 idle: alive because the check refreshed it */
    assert_int_equal(auth_session_check(t, tok, &user), 0);
    fake_now += 699; /* 2499: still inside the absolute lifetime */
    assert_int_equal(auth_session_check(t, tok, NULL), 0);
    fake_now += 1; /* 2500: absolute lifetime over, however active */
    assert_int_equal(auth_session_check(t, tok, NULL), VDI_ETOKEN);

    assert_int_equal(auth_session_create(t, "bob", 1000, 100000, tok), 0);
    fake_now += 1000; /* idle too long */
    assert_int_equal(auth_session_check(t, tok, NULL), VDI_ETOKEN);
}

static void test_session_revoke(void **state)
{
    auth_tokens_t *t = *state;
    char a[AUTH_TOKEN_LEN + 1], b[AUTH_TOKEN_LEN + 1], c[AUTH_TOKEN_LEN + 1];
    assert_int_equal(auth_session_create(t, "bob", 10000, 100000, a), 0);
    assert_int_equal(auth_session_create(t, "bob", 10000, 100000, b), 0);
    assert_int_equal(auth_session_create(t, "carol", 10000, 100000, c), 0);
    assert_int_equal(auth_session_revoke(t, a), 0);
    assert_int_equal(auth_session_check(t, a, NULL), VDI_ETOKEN);
    assert_int_equal(auth_session_revoke(t, a), VDI_ETOKEN);
    assert_int_equal(auth_session_check(t, b, NULL), 0);
    assert_int_equal(auth_tokens_revoke_user(t, "bob"), 1);
    assert_int_equal(auth_session_check(t, b, NULL), VDI_ETOKEN);
    assert_int_equal(auth_session_check(t, c, NULL), 0);
}

static void test_capacity(void **state)
{
    auth_tokens_t *t = *state;
    char tok[AUTH_TOKEN_LEN + 1];
    for (int i = 0; i < 8; i++)
        assert_int_equal(auth_console_token_issue(t, "u", "d", 0, tok), 0);
    assert_int_equal(auth_console_token_issue(t, "u", "d", 0, tok), -ENOSPC);
    fake_now += AUTH_CONSOLE_TOKEN_TTL_MS; /* expired ones make room */
    assert_int_equal(auth_console_token_issue(t, "u", "d", 0, tok), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_format_and_uniqueness, setup, teardown),
        cmocka_unit_test_setup_teardown(test_console_single_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_console_binding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_console_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_lifetimes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
