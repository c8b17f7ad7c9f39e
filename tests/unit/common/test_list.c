/* Unit tests for the intrusive lists in common/vdi.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/vdi.h"

struct item {
    int v;
    vdi_list_t link;
};

static int values(vdi_list_t *h, int *out, int max)
{
    int n = 0;
    vdi_list_t *it, *tmp;
    vdi_list_foreach_safe(it, tmp, h)
    {
        if (n < max)
            out[n] = vdi_list_entry(it, struct item, link)->v;
        n++;
    }
    return n;
}

static void test_push_pop_order(void **state)
{
    (void)state;
    vdi_list_t h;
    struct item a = {.v = 1}, b = {.v = 2}, c = {.v = 3};
    int v[4];
    vdi_list_init(&h);
    assert_true(vdi_list_empty(&h));
    assert_null(vdi_list_pop_head(&h));
    vdi_list_push_tail(&h, &b.link);
    vdi_list_push_tail(&h, &c.link);
    vdi_list_push_head(&h, &a.link);
    assert_int_equal(vdi_list_count(&h), 3);
    assert_int_equal(values(&h, v, 4), 3);
    assert_int_equal(v[0], 1);
    assert_int_equal(v[1], 2);
    assert_int_equal(v[2], 3);
    assert_ptr_equal(vdi_list_pop_head(&h), &a.link);
    assert_int_equal(vdi_list_count(&h), 2);
}

static void test_remove_during_iteration(void **state)
{
    (void)state;
    vdi_list_t h, *it, *tmp;
    struct item items[6];
    vdi_list_init(&h);
    for (int i = 0; i < 6; i++) {
        items[i].v = i;
        vdi_list_push_tail(&h, &items[i].link);
    }
    vdi_list_foreach_safe(it, tmp, &h)
    {
        if (vdi_list_entry(it, struct item, link)->v % 2)
            vdi_list_remove(it);
    }
    int v[6];
    assert_int_equal(values(&h, v, 6), 3);
    assert_int_equal(v[0], 0);
    assert_int_equal(v[1], 2);
    assert_int_equal(v[2], 4);
    /* removing twice is harmless: a removed node is an empty list of its own */
    vdi_list_remove(&items[1].link);
    assert_true(vdi_list_empty(&items[1].link));
    assert_int_equal(vdi_list_count(&h), 3);
}

static void test_splice(void **state)
{
    (void)state;
    vdi_list_t a, b;
    struct item x = {.v = 1}, y = {.v = 2}, z = {.v = 3};
    vdi_list_init(&a);
    vdi_list_init(&b);
    vdi_list_splice_tail(&a, &b); /* empty into empty */
    assert_true(vdi_list_empty(&a));
    vdi_list_push_tail(&a, &x.link);
    vdi_list_push_tail(&b, &y.link);
    vdi_list_push_tail(&b, &z.link);
    vdi_list_splice_tail(&a, &b);
    assert_true(vdi_list_empty(&b));
    int v[3];
    assert_int_equal(values(&a, v, 3), 3);
    assert_int_equal(v[0], 1);
    assert_int_equal(v[1], 2);
    assert_int_equal(v[2], 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_pop_order),
        cmocka_unit_test(test_remove_during_iteration),
        cmocka_unit_test(test_splice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
