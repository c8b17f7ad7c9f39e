/* Unit tests for broker/pick.c: reconnect, spares, new desktops, entitlement and capacity. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "broker/brk.h"
#include "common/vdi.h"

#define MIB (1024ull * 1024)

struct fx {
    brk_store_t *st;
    brk_config_t *cfg;
};

static int setup(void **state)
{
    static struct fx f;
    char err[128];
    const char *text = "[pool lab]\nimage=t\nusers=alice, bob\nmax_desktops=2\nmemory=256M\n"
                       "[pool office]\nimage=t\ntype=dedicated\ngroups=staff\nmemory=512M\n"
                       "user_disk=no\n";
    if (brk_store_open(":memory:", &f.st) != 0 ||
        brk_config_parse(text, strlen(text), "t", &f.cfg, err, sizeof(err)) != 0)
        return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    brk_store_close(f->st);
    brk_config_free(f->cfg);
    return 0;
}

static void test_denied(void **state)
{
    struct fx *f = *state;
    brk_pick_t p;
    const char *g[] = {"users"};
    assert_int_equal(brk_pick(f->st, f->cfg, "mallory", g, 1, 1ull << 40, &p), VDI_EDENIED);
}

static void test_new_then_existing(void **state)
{
    struct fx *f = *state;
    brk_pick_t p;
    int64_t id;
    assert_int_equal(brk_pick(f->st, f->cfg, "alice", NULL, 0, 1ull << 40, &p), 0);
    assert_int_equal(p.kind, BRK_PICK_NEW);
    assert_string_equal(p.pool->name, "lab");
    assert_int_equal(brk_store_desktop_create(f->st, "lab", "alice", "t", 256 * MIB, &id), 0);
    /* while provisioning, and once in use or disconnected, alice gets the same desktop */
    static const brk_desktop_state_t path[] = {BRK_DS_PROVISIONING, BRK_DS_IN_USE,
                                               BRK_DS_DISCONNECTED};
    for (size_t i = 0; i < VDI_ARRAY_SIZE(path); i++) {
        if (i)
            assert_int_equal(brk_store_desktop_set_state(f->st, id, path[i], NULL), 0);
        assert_int_equal(brk_pick(f->st, f->cfg, "alice", NULL, 0, 1ull << 40, &p), 0);
        assert_int_equal(p.kind, BRK_PICK_EXISTING);
        assert_int_equal(p.desktop, id);
    }
    /* a failed desktop is not reused: a fresh one */
    assert_int_equal(brk_store_desktop_set_state(f->st, id, BRK_DS_FAILED, "crash"), 0);
    assert_int_equal(brk_pick(f->st, f->cfg, "alice", NULL, 0, 1ull << 40, &p), 0);
    assert_int_equal(p.kind, BRK_PICK_NEW);
}

static void test_dedicated_restart(void **state)
{
    struct fx *f = *state;
    brk_pick_t p;
    int64_t id;
    const char *g[] = {"staff"};
    assert_int_equal(brk_store_desktop_create(f->st, "office", "carol", "t", 512 * MIB, &id), 0);
    assert_int_equal(brk_store_desktop_set_state(f->st, id, BRK_DS_FAILED, "killed"), 0);
    /* a failed dedicated desktop is started again on its disk */
    assert_int_equal(brk_pick(f->st, f->cfg, "carol", g, 1, 1ull << 40, &p), 0);
    assert_int_equal(p.kind, BRK_PICK_RESTART);
    assert_int_equal(p.desktop, id);
    /* ...if its memory fits */
    assert_int_equal(brk_pick(f->st, f->cfg, "carol", g, 1, 256 * MIB, &p), VDI_ECAPACITY);
    /* once the admin cleared it away, she gets a new one */
    assert_int_equal(brk_store_desktop_set_state(f->st, id, BRK_DS_GONE, "cleared"), 0);
    assert_int_equal(brk_pick(f->st, f->cfg, "carol", g, 1, 1ull << 40, &p), 0);
    assert_int_equal(p.kind, BRK_PICK_NEW);
}

static void test_spare_first(void **state)
{
    struct fx *f = *state;
    brk_pick_t p;
    int64_t spare;
    const char *g[] = {"staff"};
    assert_int_equal(brk_store_desktop_create(f->st, "office", "", "t", 512 * MIB, &spare), 0);
    /* a provisioning spare is not ready yet */
    assert_int_equal(brk_pick(f->st, f->cfg, "carol", g, 1, 1ull << 40, &p), 0);
    assert_int_equal(p.kind, BRK_PICK_NEW);
    assert_string_equal(p.pool->name, "office");
    assert_int_equal(brk_store_desktop_set_state(f->st, spare, BRK_DS_READY, NULL), 0);
    assert_int_equal(brk_pick(f->st, f->cfg, "carol", g, 1, 1ull << 40, &p), 0);
    assert_int_equal(p.kind, BRK_PICK_SPARE);
    assert_int_equal(p.desktop, spare);
    /* alice is not entitled to office: its spare is not hers */
    assert_int_equal(brk_pick(f->st, f->cfg, "alice", NULL, 0, 1ull << 40, &p), 0);
    assert_int_equal(p.kind, BRK_PICK_NEW);
    assert_string_equal(p.pool->name, "lab");
}

static void test_user_disk_no_spare(void **state)
{
    struct fx *f = *state;
    brk_pick_t p;
    int64_t spare;
    const char *g[] = {"staff"};
    assert_int_equal(brk_store_desktop_create(f->st, "office", "", "t", 512 * MIB, &spare), 0);
    assert_int_equal(brk_store_desktop_set_state(f->st, spare, BRK_DS_READY, NULL), 0);
    /* with a data disk per user, a ready spare (started without one) is passed over */
    f->cfg->pools[1].user_disk = 1;
    assert_int_equal(brk_pick(f->st, f->cfg, "carol", g, 1, 1ull << 40, &p), 0);
    assert_int_equal(p.kind, BRK_PICK_NEW);
    assert_string_equal(p.pool->name, "office");
}

static void test_capacity(void **state)
{
    struct fx *f = *state;
    brk_pick_t p;
    int64_t a, b;
    const char *g[] = {"staff"};
    /* lab holds 2 desktops at most */
    assert_int_equal(brk_store_desktop_create(f->st, "lab", "alice", "t", 256 * MIB, &a), 0);
    assert_int_equal(brk_store_desktop_create(f->st, "lab", "bob", "t", 256 * MIB, &b), 0);
    assert_int_equal(brk_pick(f->st, f->cfg, "bob", NULL, 0, 1ull << 40, &p), 0);
    assert_int_equal(p.kind, BRK_PICK_EXISTING);
    assert_int_equal(brk_store_desktop_set_state(f->st, b, BRK_DS_FAILED, "x"), 0);
    assert_int_equal(brk_pick(f->st, f->cfg, "bob", NULL, 0, 1ull << 40, &p), 0);
    assert_int_equal(p.kind, BRK_PICK_NEW); /* the failed one frees its slot */
    int64_t c;
    assert_int_equal(brk_store_desktop_create(f->st, "lab", "bob", "t", 256 * MIB, &c), 0);
    /* a third lab user: pool full */
    brk_config_t *cfg = f->cfg;
    free(cfg->pools[0].users[1]);
    cfg->pools[0].users[1] = vdi_xstrdup("dave");
    assert_int_equal(brk_pick(f->st, cfg, "dave", NULL, 0, 1ull << 40, &p), VDI_ECAPACITY);
    /* memory: 512M in use; office wants 512M more */
    uint64_t used;
    unsigned n;
    assert_int_equal(brk_usage(f->st, NULL, &used, &n), 0);
    assert_int_equal(used, 512 * MIB);
    assert_int_equal(n, 2);
    assert_int_equal(brk_pick(f->st, cfg, "carol", g, 1, 1024 * MIB - 1, &p), VDI_ECAPACITY);
    assert_int_equal(brk_pick(f->st, cfg, "carol", g, 1, 1024 * MIB, &p), 0);
    assert_int_equal(p.kind, BRK_PICK_NEW);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_then_existing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spare_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedicated_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_disk_no_spare, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
