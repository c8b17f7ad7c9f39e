/* Unit tests for broker/store.c's audit log with a fake clock: repeated refusals coalesce into
 * one row with a count (per actor, event, user and address; a table of kinds with an overflow
 * row), the counts survive a close, retention by age and by row count deletes the oldest rows
 * in batches, and text comes back as written (bytes that are not UTF-8 included), cut before a
 * split UTF-8 sequence. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/internal.h"
#include "common/vdi.h"

#define DAY 86400

struct fx {
    char dir[64];
    char path[96];
    brk_store_t *st;
    int64_t now;
};

static int64_t fake_clock(void *ctx)
{
    return ((struct fx *)ctx)->now;
}

static void open_store(struct fx *f)
{
    assert_int_equal(brk_store_open(f->path, &f->st), 0);
    brk__store_set_clock(f->st, fake_clock, f);
}

static int setup(void **state)
{
    struct fx *f = vdi_xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/vdi-test-audit.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/vdi.db", f->dir);
    f->now = 1700000000;
    open_store(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    brk_store_close(f->st);
    char *cmd = vdi_xasprintf("rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

struct rows {
    int n;
    brk_audit_t r[512];
};

static int collect(const brk_audit_t *a, void *ctx)
{
    struct rows *rs = ctx;
    if (rs->n < (int)VDI_ARRAY_SIZE(rs->r))
        rs->r[rs->n] = *a;
    rs->n++;
    return 0;
}

static struct rows *tail(brk_store_t *st)
{
    static struct rows rs;
    memset(&rs, 0, sizeof(rs));
    assert_int_equal(brk_store_audit_tail(st, 100000, collect, &rs), 0);
    return &rs;
}

static void test_repeats_coalesce(void **state)
{
    struct fx *f = *state;
    brk_audit_limits_t lim = {.coalesce_s = 60};
    brk_store_audit_set_limits(f->st, &lim);
    /* 1000 refusals of eve from one address within the window, one of bob in between. */
    for (int i = 0; i < 1000; i++) {
        if (i == 500)
            assert_int_equal(brk_store_audit_repeated(f->st, "auth", "auth.locked", "bob",
                                                      "192.0.2.9", "peer=192.0.2.9"),
                             0);
        if (i % 100 == 0)
            f->now++; /* 10 s of flood */
        assert_int_equal(brk_store_audit_repeated(f->st, "auth", "auth.locked", "eve", "192.0.2.7",
                                                  "peer=192.0.2.7 reason=locked"),
                         0);
    }
    /* The same user from another address is another kind. */
    assert_int_equal(
        brk_store_audit_repeated(f->st, "auth", "auth.locked", "eve", "192.0.2.8", "peer=.8"), 0);
    struct rows *rs = tail(f->st);
    assert_int_equal(rs->n, 3);
    assert_string_equal(rs->r[0].detail, "peer=192.0.2.7 reason=locked");
    /* Before the window is over the counts are in memory only. */
    assert_int_equal(brk_store_audit_maintain(f->st, 100), 0);
    assert_string_equal(tail(f->st)->r[0].detail, "peer=192.0.2.7 reason=locked");
    f->now += 60;
    assert_int_equal(brk_store_audit_maintain(f->st, 100), 0);
    rs = tail(f->st);
    assert_int_equal(rs->n, 3);
    assert_string_equal(rs->r[0].user, "eve");
    assert_string_equal(rs->r[0].detail,
                        "peer=192.0.2.7 reason=locked (repeated 1000 times in 60 s)");
    assert_string_equal(rs->r[1].detail, "peer=192.0.2.9"); /* once: nothing added */
    assert_string_equal(rs->r[2].detail, "peer=.8");
    /* After the window a new one starts with a new row. */
    assert_int_equal(
        brk_store_audit_repeated(f->st, "auth", "auth.locked", "eve", "192.0.2.7", "again"), 0);
    assert_int_equal(tail(f->st)->n, 4);
}

static void test_window_over_at_next_occurrence(void **state)
{
    struct fx *f = *state;
    brk_audit_limits_t lim = {.coalesce_s = 10};
    brk_store_audit_set_limits(f->st, &lim);
    for (int i = 0; i < 3; i++)
        brk_store_audit_repeated(f->st, "web", "login.refused", "al", "::1", "full");
    f->now += 11; /* no maintain in between: the next occurrence closes the window */
    brk_store_audit_repeated(f->st, "web", "login.refused", "al", "::1", "full");
    struct rows *rs = tail(f->st);
    assert_int_equal(rs->n, 2);
    assert_string_equal(rs->r[0].detail, "full (repeated 3 times in 10 s)");
    assert_string_equal(rs->r[1].detail, "full");
}

static void test_coalescing_off(void **state)
{
    struct fx *f = *state;
    brk_audit_limits_t lim = {.coalesce_s = 0};
    brk_store_audit_set_limits(f->st, &lim);
    for (int i = 0; i < 5; i++)
        brk_store_audit_repeated(f->st, "auth", "auth.failed", "eve", "192.0.2.7", "x");
    assert_int_equal(tail(f->st)->n, 5);
}

static void test_too_many_kinds(void **state)
{
    struct fx *f = *state;
    brk_audit_limits_t lim = {.coalesce_s = 60};
    brk_store_audit_set_limits(f->st, &lim);
    char user[32];
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 300; i++) {
            snprintf(user, sizeof(user), "u%d", i);
            brk_store_audit_repeated(f->st, "auth", "auth.failed", user, "192.0.2.7", "x");
        }
    /* 256 kinds have their row; the rest are counted together. */
    assert_int_equal(tail(f->st)->n, 256);
    f->now += 60;
    assert_int_equal(brk_store_audit_maintain(f->st, 100), 0);
    struct rows *rs = tail(f->st);
    assert_int_equal(rs->n, 257);
    assert_string_equal(rs->r[0].detail, "x (repeated 3 times in 60 s)");
    assert_string_equal(rs->r[256].event, "audit.coalesced");
    assert_non_null(strstr(rs->r[256].detail, "132 more refusals"));
}

static void test_counts_survive_close(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 7; i++)
        brk_store_audit_repeated(f->st, "auth", "auth.locked", "eve", "192.0.2.7", "locked");
    brk_store_close(f->st);
    open_store(f);
    struct rows *rs = tail(f->st);
    assert_int_equal(rs->n, 1);
    assert_string_equal(rs->r[0].detail, "locked (repeated 7 times in 60 s)");
}

static void test_keep_deletes_old_rows_in_batches(void **state)
{
    struct fx *f = *state;
    brk_audit_limits_t lim = {.keep_s = 90 * DAY, .coalesce_s = 60};
    brk_store_audit_set_limits(f->st, &lim);
    for (int i = 0; i < 1200; i++)
        brk_store_audit(f->st, NULL, "old", 0, NULL, NULL);
    f->now += 80 * DAY;
    for (int i = 0; i < 10; i++)
        brk_store_audit(f->st, NULL, "recent", 0, NULL, NULL);
    assert_int_equal(brk_store_audit_maintain(f->st, 500), 0); /* nothing is 90 days old yet */
    f->now += 11 * DAY;
    assert_int_equal(brk_store_audit_maintain(f->st, 500), 500);
    assert_int_equal(brk_store_audit_maintain(f->st, 500), 500);
    assert_int_equal(brk_store_audit_maintain(f->st, 500), 200);
    assert_int_equal(brk_store_audit_maintain(f->st, 500), 0);
    struct rows *rs = tail(f->st);
    assert_int_equal(rs->n, 10);
    assert_string_equal(rs->r[0].event, "recent");
}

static void test_max_rows(void **state)
{
    struct fx *f = *state;
    brk_audit_limits_t lim = {.max_rows = 30};
    brk_store_audit_set_limits(f->st, &lim);
    char ev[16];
    for (int i = 0; i < 100; i++) {
        snprintf(ev, sizeof(ev), "e%d", i);
        brk_store_audit(f->st, NULL, ev, 0, NULL, NULL);
    }
    assert_int_equal(brk_store_audit_maintain(f->st, 50), 50);
    assert_int_equal(brk_store_audit_maintain(f->st, 50), 20);
    assert_int_equal(brk_store_audit_maintain(f->st, 50), 0);
    struct rows *rs = tail(f->st);
    assert_int_equal(rs->n, 30);
    assert_string_equal(rs->r[0].event, "e70");
    assert_string_equal(rs->r[29].event, "e99");
}

static void test_text_as_written(void **state)
{
    struct fx *f = *state;
    /* Not UTF-8: kept byte for byte (the admin view escapes it). */
    brk_store_audit(f->st, "auth", "auth.failed", 0,
                    "\xff\xfe"
                    "eve",
                    "service=rfb");
    /* "x" and two-byte characters past the field (BRK_USER_MAX bytes with its NUL): the field
     * cuts before the character that would be split. */
    char user[BRK_USER_MAX + 8] = "x";
    const int fit = (BRK_USER_MAX - 2) / 2; /* whole characters after the "x" */
    for (int i = 0; i < fit + 2; i++)
        strcat(user, "\xc3\xa9");
    brk_store_audit(f->st, "auth", "auth.failed", 0, user, NULL);
    struct rows *rs = tail(f->st);
    assert_int_equal(rs->n, 2);
    assert_string_equal(rs->r[0].user, "\xff\xfe"
                                       "eve");
    assert_int_equal(strlen(rs->r[1].user), 1 + fit * 2);
    assert_memory_equal(rs->r[1].user, user, 1 + fit * 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_repeats_coalesce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_over_at_next_occurrence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalescing_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counts_survive_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_deletes_old_rows_in_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_as_written, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
