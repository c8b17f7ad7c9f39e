/* Unit tests for common/err.c: every code has a name, and the two ranges never collide. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "common/vdi.h"

static void test_errno_names(void **state)
{
    (void)state;
    assert_string_equal(vdi_strerror(0), "success");
    assert_string_equal(vdi_strerror(-ENOENT), "No such file or directory");
    assert_string_equal(vdi_strerror(-ENOMEM), "Cannot allocate memory");
}

static void test_project_names(void **state)
{
    (void)state;
    assert_string_equal(vdi_strerror(VDI_EAUTH), "authentication failed");
    assert_string_equal(vdi_strerror(VDI_EBADIMAGE), "disk image is corrupt or unsupported");
    /* every project code is named, none by the fallbacks */
    for (int e = VDI_EBASE - 1; e > VDI_ELAST; e--) {
        const char *s = vdi_strerror(e);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown vdi error");
        assert_string_not_equal(s, "unknown error");
    }
}

static void test_unknown(void **state)
{
    (void)state;
    assert_string_equal(vdi_strerror(VDI_ELAST), "unknown error");
    assert_string_equal(vdi_strerror(-99999), "unknown error");
    assert_string_equal(vdi_strerror(5), "unknown error");
    assert_true(VDI_EBASE < -4096); /* far below the errno range */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errno_names),
        cmocka_unit_test(test_project_names),
        cmocka_unit_test(test_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
