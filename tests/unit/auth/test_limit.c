/* Unit tests for auth/limit.c: one limiter (backoff, lockout, reset on success, forgetting, the
 * bound on tracked keys) and the policy over three of them (per user and address, per user, per
 * address; the clean-record rule; IPv6 /64 groups; records that outlive a restart). Time is
 * passed in explicitly, in Unix milliseconds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

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
    auth__limiter_t *l = auth__limiter_create(&cfg, "test", 0);
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
    auth__limiter_success(l, "alice", t);
    assert_int_equal(auth__limiter_check(l, "alice", t, &wait), 0);
    assert_int_equal(wait, 0);
    auth__limiter_destroy(l);
}

static void test_forget_and_bound(void **state)
{
    (void)state;
    auth__limiter_t *l = auth__limiter_create(&cfg, "test", 0);
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

/* ---- The policy ----------------------------------------------------------------------------- */
#define MIN_MS (60ull * 1000)
#define T0     1700000000000ull /* some Unix time in ms */

static auth__limits_t *limits_new(void)
{
    auth_config_t c;
    auth_config_defaults(&c); /* 3/10 per user and address, 30/100 per user, 5/30 per address */
    return auth__limits_create(&c);
}

/* Check an attempt by @user from @addr at @t: 0 (go at once), 1 (held back) or -1 (locked). */
static int verdict(auth__limits_t *L, const char *user, const char *addr, uint64_t t)
{
    char k[64];
    uint64_t wait;
    const char *why;
    auth__addr_key(addr, k, sizeof(k));
    int rc = auth__limits_check(L, user, k, t, &wait, &why);
    if (rc == VDI_ELOCKOUT)
        return -1;
    assert_int_equal(rc, 0);
    return wait ? 1 : 0;
}

static unsigned bad(auth__limits_t *L, const char *user, const char *addr, uint64_t t)
{
    char k[64];
    auth__addr_key(addr, k, sizeof(k));
    return auth__limits_fail(L, user, k, t);
}

static void ok(auth__limits_t *L, const char *user, const char *addr, uint64_t t)
{
    char k[64];
    auth__addr_key(addr, k, sizeof(k));
    auth__limits_success(L, user, k, t);
}

/* The old hole: one guess every 15 minutes, after each lockout, kept a user locked out for
 * everyone forever. Now the guesser's lockout is its own; the user logs in from elsewhere, and
 * from an address with a clean record even once the guesses (over a day and more) have reached
 * the global limit. */
static void test_rearm_attack_spares_others(void **state)
{
    (void)state;
    auth__limits_t *L = limits_new();
    uint64_t t = T0;
    ok(L, "alice", "198.51.100.20", t); /* her office */
    unsigned locked = 0;
    for (int i = 0; i < 10; i++)
        locked |= bad(L, "alice", "203.0.113.9", t += 40000);
    assert_true(locked & AUTH__LOCKED_PAIR);
    assert_false(locked & AUTH__LOCKED_USER);
    assert_int_equal(verdict(L, "alice", "203.0.113.9", t + 1), -1);
    /* Re-armed every 15 minutes: the attacker stays locked out... */
    bool global = false;
    for (int round = 0; round < 120; round++) {
        t += 15 * MIN_MS;
        assert_int_equal(verdict(L, "alice", "203.0.113.9", t), 0);
        locked = bad(L, "alice", "203.0.113.9", t);
        assert_true(locked & AUTH__LOCKED_PAIR);
        global |= (locked & AUTH__LOCKED_USER) != 0;
        assert_int_equal(verdict(L, "alice", "203.0.113.9", t + 1), -1);
        /* ...alice from her office never is, */
        assert_int_equal(verdict(L, "alice", "198.51.100.20", t + 1), 0);
        /* and a new address only once the global limit (100 failures) is reached. */
        if (!global)
            assert_true(verdict(L, "alice", "192.0.2.77", t + 1) >= 0);
    }
    assert_true(global);
    assert_int_equal(verdict(L, "alice", "192.0.2.77", t + 1), -1);
    assert_int_equal(verdict(L, "alice", "198.51.100.20", t + 1), 0);
    auth__limits_destroy(L);
}

/* Guesses from 200 addresses, three each (under the per-address limits), lock alice out
 * globally; her own clean address still gets in at once, a fresh one does not, and her own
 * address loses the privilege with its first failure. */
static void test_distributed_attack_clean_address(void **state)
{
    (void)state;
    auth__limits_t *L = limits_new();
    uint64_t t = T0;
    ok(L, "alice", "2001:db8:aa:1::5", t);
    char addr[64];
    unsigned locked = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(addr, sizeof(addr), "10.0.%d.%d", i / 250, i % 250 + 1);
        for (int j = 0; j < 3; j++)
            locked |= bad(L, "alice", addr, t += 100);
    }
    assert_true(locked & AUTH__LOCKED_USER);
    assert_false(locked & (AUTH__LOCKED_PAIR | AUTH__LOCKED_ADDR));
    assert_int_equal(verdict(L, "alice", "10.9.9.9", t + 1), -1);
    /* Another host of her /64 is the same address. */
    assert_int_equal(verdict(L, "alice", "2001:db8:aa:1:ffff::77", t + 1), 0);
    assert_true(auth__limits_clean(L, "alice", "2001:db8:aa:1::/64", t + 1));
    /* Her success keeps the record clean; the global count is not cleared by it. */
    ok(L, "alice", "2001:db8:aa:1::5", t + 2);
    assert_int_equal(verdict(L, "alice", "10.9.9.9", t + 3), -1);
    assert_int_equal(verdict(L, "alice", "2001:db8:aa:1::5", t + 3), 0);
    /* Other users are not touched. */
    assert_int_equal(verdict(L, "bob", "10.9.9.9", t + 3), 0);
    /* One failure from her address: no longer clean, so the global lockout applies there too. */
    bad(L, "alice", "2001:db8:aa:1::5", t + 4);
    assert_false(auth__limits_clean(L, "alice", "2001:db8:aa:1::/64", t + 5));
    assert_int_equal(verdict(L, "alice", "2001:db8:aa:1::5", t + 5), -1);
    /* Without a success within known_addr_days there is no clean record. */
    auth__limits_t *L2 = limits_new();
    ok(L2, "carol", "192.0.2.1", T0);
    assert_true(auth__limits_clean(L2, "carol", "192.0.2.1", T0 + 29 * 24 * 60 * MIN_MS));
    assert_false(auth__limits_clean(L2, "carol", "192.0.2.1", T0 + 31 * 24 * 60 * MIN_MS));
    auth__limits_destroy(L2);
    auth__limits_destroy(L);
}

/* The per-(user, address) limit: backoff after 3, lockout at 10 for 15 minutes, for that address
 * alone (a /64 for IPv6); the per-address limit still holds other names from it back. */
static void test_per_address_lockout(void **state)
{
    (void)state;
    auth__limits_t *L = limits_new();
    uint64_t t = T0;
    for (int i = 0; i < 3; i++)
        bad(L, "bob", "2001:db8:1:2::1", t);
    assert_int_equal(verdict(L, "bob", "2001:db8:1:2::1", t), 0);
    bad(L, "bob", "2001:db8:1:2::1", t);
    assert_int_equal(verdict(L, "bob", "2001:db8:1:2:abcd::9", t + 10), 1); /* same /64 */
    unsigned locked = 0;
    for (int i = 4; i < 10; i++)
        locked |= bad(L, "bob", "2001:db8:1:2::1", t += 40000);
    assert_int_equal(locked, AUTH__LOCKED_PAIR);
    assert_int_equal(verdict(L, "bob", "2001:db8:1:2::1", t + 1), -1);
    assert_int_equal(verdict(L, "bob", "2001:db8:1:2::1", t + 15 * MIN_MS - 1), -1);
    assert_int_equal(verdict(L, "bob", "2001:db8:1:3::1", t + 1), 0); /* another /64 */
    assert_int_equal(verdict(L, "bob", "192.0.2.8", t + 1), 0);
    /* Ten failures from the address: other names from it are held back (5 free), not locked. */
    assert_int_equal(verdict(L, "carol", "2001:db8:1:2::1", t + 1), 1);
    /* After the lockout, one more failure locks again (one guess per lockout period). */
    t += 15 * MIN_MS;
    assert_int_equal(verdict(L, "bob", "2001:db8:1:2::1", t), 0);
    assert_true(bad(L, "bob", "2001:db8:1:2::1", t) & AUTH__LOCKED_PAIR);
    assert_int_equal(verdict(L, "bob", "2001:db8:1:2::1", t + 1), -1);
    auth__limits_destroy(L);
}

/* The counters are keyed by the name given to them, which auth.c takes from PAM_USER: two
 * spellings PAM maps to one account reach the same counter because auth.c passes the mapped
 * name (tests/unit/auth/test_pam.c runs that with a real PAM stack). Here: the key is exactly
 * that name, so "ALICE" typed and resolved to "alice" counts where "alice" does. */
static void test_canonical_names_share_a_counter(void **state)
{
    (void)state;
    auth__limits_t *L = limits_new();
    uint64_t t = T0;
    for (int i = 0; i < 10; i++)
        bad(L, "alice", "192.0.2.5", t); /* whatever was typed, PAM said "alice" */
    assert_int_equal(verdict(L, "alice", "192.0.2.5", t + 1), -1);
    assert_true(verdict(L, "ALICE", "192.0.2.5", t + 1) >= 0); /* another account: not locked */
    auth__limits_destroy(L);
}

struct saved {
    char scope[16][16], key[16][96];
    auth_limit_record_t rec[16];
    bool gone[16];
    int n;
};

static void sink(const char *scope, const char *key, const auth_limit_record_t *rec, void *ctx)
{
    struct saved *s = ctx;
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->scope[i], scope) == 0 && strcmp(s->key[i], key) == 0) {
            s->gone[i] = !rec;
            if (rec)
                s->rec[i] = *rec;
            return;
        }
    }
    assert_true(s->n < 16);
    snprintf(s->scope[s->n], sizeof(s->scope[0]), "%s", scope);
    snprintf(s->key[s->n], sizeof(s->key[0]), "%s", key);
    s->gone[s->n] = !rec;
    if (rec)
        s->rec[s->n] = *rec;
    s->n++;
}

/* Every change reaches the sink; a new policy fed the records back (vdid's next start) refuses
 * what the old one refused and knows the clean addresses; stale records are dropped. */
static void test_records_survive_a_restart(void **state)
{
    (void)state;
    struct saved sv = {0};
    auth__limits_t *L = limits_new();
    auth__limits_set_sink(L, sink, &sv);
    uint64_t t = T0;
    ok(L, "alice", "192.0.2.1", t);
    for (int i = 0; i < 10; i++)
        bad(L, "alice", "203.0.113.9", t += 1000);
    assert_int_equal(verdict(L, "alice", "203.0.113.9", t + 1), -1);
    auth__limits_destroy(L);
    assert_int_equal(sv.n, 4); /* user-addr x2, user, addr */
    L = limits_new();
    for (int i = 0; i < sv.n; i++) {
        assert_false(sv.gone[i]);
        assert_true(sv.rec[i].expires > t);
        assert_int_equal(auth__limits_restore(L, sv.scope[i], sv.key[i], &sv.rec[i], t + 5), 0);
    }
    assert_int_equal(verdict(L, "alice", "203.0.113.9", t + 10), -1);
    assert_true(auth__limits_clean(L, "alice", "192.0.2.1", t + 10));
    assert_int_equal(auth__limits_restore(L, "nope", "x", &sv.rec[0], t), -EINVAL);
    assert_int_equal(auth__limits_restore(L, "user-addr", "nospace", &sv.rec[0], t), -EINVAL);
    auth__limits_destroy(L);
    /* Two hours later: the lockout and the failures are over; the clean address remains. */
    L = limits_new();
    struct saved sv2 = {0};
    auth__limits_set_sink(L, sink, &sv2);
    for (int i = 0; i < sv.n; i++)
        auth__limits_restore(L, sv.scope[i], sv.key[i], &sv.rec[i], t + 120 * MIN_MS);
    assert_int_equal(auth__limits_count(L), 1);
    assert_true(auth__limits_clean(L, "alice", "192.0.2.1", t + 120 * MIN_MS));
    int gone = 0;
    for (int i = 0; i < sv2.n; i++)
        gone += sv2.gone[i];
    assert_int_equal(gone, 3); /* the sink hears that the stale ones are gone */
    auth__limits_destroy(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_then_lockout),
        cmocka_unit_test(test_forget_and_bound),
        cmocka_unit_test(test_addr_key),
        cmocka_unit_test(test_rearm_attack_spares_others),
        cmocka_unit_test(test_distributed_attack_clean_address),
        cmocka_unit_test(test_per_address_lockout),
        cmocka_unit_test(test_canonical_names_share_a_counter),
        cmocka_unit_test(test_records_survive_a_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
