/* Unit tests for common/util.c and common/alloc.c: buffers, number parsing, failure injection. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"

static void test_buf(void **state)
{
    (void)state;
    vdi_buf_t b = VDI_BUF_INIT;
    assert_int_equal(vdi_buf_append(&b, "hello ", 6), 0);
    assert_int_equal(vdi_buf_printf(&b, "%s %d", "world", 42), 0);
    assert_int_equal(b.len, 14);
    assert_memory_equal(b.data, "hello world 42", 14);
    vdi_buf_consume(&b, 6);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data, "world 42", 8);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(vdi_buf_append(&b, "x", 1), 0);
    assert_int_equal(b.len, 10008);
    vdi_buf_reset(&b);
    assert_int_equal(b.len, 0);
    vdi_buf_free(&b);
    assert_null(b.data);
}

static void test_buf_oom(void **state)
{
    (void)state;
    vdi_buf_t b = VDI_BUF_INIT;
    vdi_alloc_fail_at(1);
    assert_int_equal(vdi_buf_append(&b, "abc", 3), -ENOMEM);
    assert_int_equal(b.len, 0); /* nothing half-done */
    assert_int_equal(vdi_buf_append(&b, "abc", 3), 0);
    assert_int_equal(vdi_buf_append(&b, "abc", SIZE_MAX), -ENOMEM);
    assert_int_equal(b.len, 3);
    vdi_buf_free(&b);
}

static void test_fail_injection_counts(void **state)
{
    (void)state;
    vdi_alloc_fail_at(3);
    void *a = vdi_trymalloc(8), *b = vdi_trymalloc(8), *c = vdi_trymalloc(8), *d = vdi_trymalloc(8);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(c);
    assert_non_null(d);
    free(a);
    free(b);
    free(d);
    /* x-functions are not affected */
    vdi_alloc_fail_at(1);
    char *s = vdi_xstrdup("kept");
    assert_string_equal(s, "kept");
    free(s);
    vdi_alloc_fail_at(0);
}

static void test_parse_u64(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_int_equal(vdi_parse_u64("16", 1, 16, &v), 0);
    assert_int_equal(v, 16);
    assert_int_equal(vdi_parse_u64("0x10", 0, 100, &v), 0);
    assert_int_equal(v, 16);
    v = 7;
    assert_int_equal(vdi_parse_u64("17", 1, 16, &v), -ERANGE);
    assert_int_equal(vdi_parse_u64("0", 1, 16, &v), -ERANGE);
    assert_int_equal(vdi_parse_u64("-1", 0, 16, &v), -EINVAL);
    assert_int_equal(vdi_parse_u64("12abc", 0, 100, &v), -EINVAL);
    assert_int_equal(vdi_parse_u64("", 0, 100, &v), -EINVAL);
    assert_int_equal(vdi_parse_u64(" 5", 0, 100, &v), -EINVAL);
    assert_int_equal(vdi_parse_u64("99999999999999999999999", 0, UINT64_MAX, &v), -ERANGE);
    assert_int_equal(v, 7); /* untouched on failure */
}

static void test_parse_size(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(vdi_parse_size("512M", 0, UINT64_MAX, &v), 0);
    assert_int_equal(v, 512ull << 20);
    assert_int_equal(vdi_parse_size("2g", 0, UINT64_MAX, &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(vdi_parse_size("4096", 0, UINT64_MAX, &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(vdi_parse_size("M", 0, UINT64_MAX, &v), -EINVAL);
    assert_int_equal(vdi_parse_size("99999999999T", 0, UINT64_MAX, &v), -ERANGE);
    assert_int_equal(vdi_parse_size("1T", 0, 1ull << 39, &v), -ERANGE);
}

static void test_xasprintf_and_wipe(void **state)
{
    (void)state;
    char *s = vdi_xasprintf("%s-%03d", "vm", 7);
    assert_string_equal(s, "vm-007");
    vdi_wipe(s, strlen(s));
    assert_int_equal(s[0], 0);
    assert_int_equal(s[5], 0);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_buf_oom),
        cmocka_unit_test(test_fail_injection_counts),
        cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_xasprintf_and_wipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
