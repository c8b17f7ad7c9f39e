/* Unit tests for auth/token.c: console tokens (TTL, single use, binding to a desktop and to a
 * web session) and web session tokens (idle and absolute lifetimes, revocation, restore), and the
 * caps (per user, and a full store that refuses only the account filling it), on a fake clock. */
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
    if (auth_tokens_create(8, 0, fake_clock, NULL, &t) < 0)
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
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-1", NULL, 0, a), 0);
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-1", NULL, 0, b), 0);
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
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-1", NULL, 0, tok), 0);
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
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-A", NULL, 0, tok), 0);
    assert_int_equal(auth_console_token_redeem(t, tok, "desk-B", &user), VDI_EDENIED);
    assert_null(user);
    /* Burnt by the wrong-desktop attempt: not usable for desk-A any more either. */
    assert_int_equal(auth_console_token_redeem(t, tok, "desk-A", &user), VDI_ETOKEN);
    /* A session token is not a console token, and vice versa. */
    assert_int_equal(auth_session_create(t, "alice", 1000, 5000, tok), 0);
    assert_int_equal(auth_console_token_redeem(t, tok, "desk-A", &user), VDI_ETOKEN);
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-A", NULL, 0, tok), 0);
    assert_int_equal(auth_session_check(t, tok, NULL), VDI_ETOKEN);
}

static void test_console_expiry(void **state)
{
    auth_tokens_t *t = *state;
    char tok[AUTH_TOKEN_LEN + 1], tok2[AUTH_TOKEN_LEN + 1];
    char *user = NULL;
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-1", NULL, 0, tok), 0);
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-1", NULL, 0, tok2), 0);
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
    assert_int_equal(auth_console_token_issue(t, "alice", "desk-1", NULL, 0, tok), 0);
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
    assert_int_equal(auth_console_token_issue(t, "", "desk-1", NULL, 0, tok), -EINVAL);
    assert_int_equal(auth_console_token_issue(t, "alice", NULL, NULL, 0, tok), -EINVAL);
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
        assert_int_equal(auth_console_token_issue(t, "u", "d", NULL, 0, tok), 0);
    assert_int_equal(auth_console_token_issue(t, "u", "d", NULL, 0, tok), -ENOSPC);
    fake_now += AUTH_CONSOLE_TOKEN_TTL_MS; /* expired ones make room */
    assert_int_equal(auth_console_token_issue(t, "u", "d", NULL, 0, tok), 0);
}

/* A console token dies with its session: logout, expiry, a cap or revoke_user. */
static void test_console_dies_with_session(void **state)
{
    auth_tokens_t *t = *state;
    char s1[AUTH_TOKEN_LEN + 1], c1[AUTH_TOKEN_LEN + 1], c2[AUTH_TOKEN_LEN + 1];
    uint8_t d1[AUTH_TOKEN_DIGEST_LEN];
    char *user = NULL;
    /* logout */
    assert_int_equal(auth_session_create(t, "alice", 60000, 600000, s1), 0);
    auth_token_digest(s1, d1);
    assert_int_equal(auth_console_token_issue(t, "alice", "7", d1, 0, c1), 0);
    assert_int_equal(auth_console_token_issue(t, "alice", "7", d1, 0, c2), 0);
    assert_int_equal(auth_session_revoke(t, s1), 0);
    assert_int_equal(auth_console_token_redeem(t, c1, "7", &user), VDI_ETOKEN);
    assert_int_equal(auth_console_token_redeem(t, c2, "7", &user), VDI_ETOKEN);
    assert_int_equal(auth_tokens_count(t), 0);
    /* a session that is gone takes no new console token */
    assert_int_equal(auth_console_token_issue(t, "alice", "7", d1, 0, c1), VDI_ETOKEN);
    /* idle expiry, with the console token's own TTL not yet over */
    assert_int_equal(auth_session_create(t, "alice", 10000, 600000, s1), 0);
    auth_token_digest(s1, d1);
    fake_now += 9000;
    assert_int_equal(auth_console_token_issue(t, "alice", "7", d1, 0, c1), 0);
    fake_now += 1000;
    assert_int_equal(auth_console_token_redeem(t, c1, "7", &user), VDI_ETOKEN);
    /* revoke by digest, and revoke_user */
    assert_int_equal(auth_session_create(t, "alice", 60000, 600000, s1), 0);
    auth_token_digest(s1, d1);
    assert_int_equal(auth_console_token_issue(t, "alice", "7", d1, 0, c1), 0);
    assert_int_equal(auth_session_revoke_digest(t, d1), 0);
    assert_int_equal(auth_console_token_redeem(t, c1, "7", &user), VDI_ETOKEN);
    assert_int_equal(auth_session_create(t, "alice", 60000, 600000, s1), 0);
    auth_token_digest(s1, d1);
    assert_int_equal(auth_console_token_issue(t, "alice", "7", d1, 0, c1), 0);
    assert_int_equal(auth_tokens_revoke_user(t, "alice"), 2);
    assert_int_equal(auth_tokens_count(t), 0);
    /* a token minted for a session that is still there works once */
    assert_int_equal(auth_session_create(t, "alice", 60000, 600000, s1), 0);
    auth_token_digest(s1, d1);
    assert_int_equal(auth_console_token_issue(t, "alice", "7", d1, 0, c1), 0);
    assert_int_equal(auth_console_token_redeem(t, c1, "7", &user), 0);
    assert_string_equal(user, "alice");
    free(user);
}

struct gone {
    int n;
    uint8_t last[AUTH_TOKEN_DIGEST_LEN];
};
static void on_gone(const uint8_t digest[AUTH_TOKEN_DIGEST_LEN], void *ctx)
{
    struct gone *g = ctx;
    g->n++;
    memcpy(g->last, digest, AUTH_TOKEN_DIGEST_LEN);
}

/* Each user holds at most 3 tokens of each kind here: one more drops that user's oldest, and a
 * session dropped so takes its console tokens along and is reported gone. */
static void test_per_user_cap(void **state)
{
    (void)state;
    auth_tokens_t *t;
    assert_int_equal(auth_tokens_create(100, 3, fake_clock, NULL, &t), 0);
    struct gone g = {0};
    auth_tokens_set_session_gone(t, on_gone, &g);
    char s[5][AUTH_TOKEN_LEN + 1], c[5][AUTH_TOKEN_LEN + 1];
    uint8_t d0[AUTH_TOKEN_DIGEST_LEN];
    for (int i = 0; i < 5; i++)
        assert_int_equal(auth_session_create(t, "mallory", 60000, 600000, s[i]), 0);
    assert_int_equal(auth_tokens_user_count(t, "mallory"), 3);
    assert_int_equal(g.n, 2);
    assert_int_equal(auth_session_check(t, s[0], NULL), VDI_ETOKEN);
    assert_int_equal(auth_session_check(t, s[1], NULL), VDI_ETOKEN);
    assert_int_equal(auth_session_check(t, s[4], NULL), 0);
    auth_token_digest(s[2], d0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(auth_console_token_issue(t, "mallory", "1", d0, 0, c[i]), 0);
    assert_int_equal(auth_tokens_user_count(t, "mallory"), 6);
    char *user;
    assert_int_equal(auth_console_token_redeem(t, c[0], "1", &user), VDI_ETOKEN);
    /* The next session drops mallory's oldest, s[2], and its console tokens with it. */
    char s5[AUTH_TOKEN_LEN + 1];
    assert_int_equal(auth_session_create(t, "mallory", 60000, 600000, s5), 0);
    assert_memory_equal(g.last, d0, AUTH_TOKEN_DIGEST_LEN);
    assert_int_equal(auth_console_token_redeem(t, c[4], "1", &user), VDI_ETOKEN);
    assert_int_equal(auth_tokens_user_count(t, "mallory"), 3);
    /* Others are untouched. */
    assert_int_equal(auth_session_create(t, "alice", 60000, 600000, s5), 0);
    assert_int_equal(auth_tokens_user_count(t, "alice"), 1);
    auth_tokens_destroy(t);
}

/* A full store refuses only the account that fills it; anyone else gets room at its expense. */
static void test_full_store_refuses_only_the_hog(void **state)
{
    auth_tokens_t *t = *state; /* 8 tokens, no per-user cap */
    char tok[AUTH_TOKEN_LEN + 1], first[AUTH_TOKEN_LEN + 1], s[AUTH_TOKEN_LEN + 1];
    assert_int_equal(auth_session_create(t, "mallory", 60000, 600000, first), 0);
    for (int i = 1; i < 8; i++)
        assert_int_equal(auth_session_create(t, "mallory", 60000, 600000, tok), 0);
    assert_int_equal(auth_session_create(t, "mallory", 60000, 600000, tok), -ENOSPC);
    assert_int_equal(auth_console_token_issue(t, "mallory", "1", NULL, 0, tok), -ENOSPC);
    /* alice logs in and connects: mallory's oldest sessions make the room */
    assert_int_equal(auth_session_create(t, "alice", 60000, 600000, s), 0);
    assert_int_equal(auth_console_token_issue(t, "alice", "2", NULL, 0, tok), 0);
    assert_int_equal(auth_session_check(t, s, NULL), 0);
    assert_int_equal(auth_session_check(t, first, NULL), VDI_ETOKEN);
    assert_int_equal(auth_tokens_user_count(t, "mallory"), 6);
    assert_int_equal(auth_tokens_count(t), 8);
    /* bob too, while mallory keeps trying */
    assert_int_equal(auth_session_create(t, "mallory", 60000, 600000, tok), -ENOSPC);
    assert_int_equal(auth_session_create(t, "bob", 60000, 600000, tok), 0);
}

/* A session put back by its digest (after a restart) is checked, times out and revokes as one
 * that was created here. */
static void test_session_restore(void **state)
{
    auth_tokens_t *t = *state;
    char s[AUTH_TOKEN_LEN + 1];
    uint8_t d[AUTH_TOKEN_DIGEST_LEN];
    assert_int_equal(auth_session_create(t, "alice", 60000, 600000, s), 0);
    auth_token_digest(s, d);
    assert_int_equal(auth_session_restore(t, d, "alice", 60000, 1000, 1000), -EEXIST);
    assert_int_equal(auth_session_revoke(t, s), 0);
    assert_int_equal(auth_session_restore(t, d, "alice", 60000, 0, 1000), -EINVAL);
    assert_int_equal(auth_session_restore(t, d, "alice", 60000, 500000, 70000), -EINVAL);
    assert_int_equal(auth_session_restore(t, d, "alice", 60000, 500000, 20000), 0);
    const char *user = NULL;
    assert_int_equal(auth_session_check(t, s, &user), 0);
    assert_string_equal(user, "alice");
    fake_now += 59999; /* the check refreshed the idle timer to the full 60 s */
    assert_int_equal(auth_session_check(t, s, NULL), 0);
    fake_now += 60000;
    assert_int_equal(auth_session_check(t, s, NULL), VDI_ETOKEN);
    assert_int_equal(auth_session_restore(t, d, "alice", 60000, 500000, 20000), 0);
    fake_now += 20000; /* restored with 20 s of idle time left */
    assert_int_equal(auth_session_check(t, s, NULL), VDI_ETOKEN);
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
        cmocka_unit_test_setup_teardown(test_console_dies_with_session, setup, teardown),
        cmocka_unit_test(test_per_user_cap),
        cmocka_unit_test_setup_teardown(test_full_store_refuses_only_the_hog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_restore, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
