/* tests/unit/display/test_damage.c: dirty pages -> dirty lines -> changed rectangles. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"
#include "display/internal.h"

#define W 640
#define H 480

struct rects {
    int n;
    uint32_t r[64][4];
};

static void collect(void *ctx, uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
    struct rects *rs = ctx;
    if (rs->n < 64) {
        rs->r[rs->n][0] = x;
        rs->r[rs->n][1] = y;
        rs->r[rs->n][2] = w;
        rs->r[rs->n][3] = h;
    }
    rs->n++;
}

static void set_page(uint64_t *bm, size_t p)
{
    bm[p / 64] |= 1ull << (p % 64);
}

static bool line_set(const uint64_t *lines, uint32_t y)
{
    return lines[y / 64] >> (y % 64) & 1;
}

static void test_pages_to_lines_small_stride(void **state)
{
    (void)state;
    /* stride 2560 (640 px): page 1 = bytes 4096..8191 = lines 1..3 */
    uint64_t pages[2] = {0}, lines[(H + 63) / 64] = {0};
    set_page(pages, 1);
    assert_int_equal(dpy__pages_to_lines(pages, 100, 0, 2560, H, lines), 3);
    assert_false(line_set(lines, 0));
    assert_true(line_set(lines, 1));
    assert_true(line_set(lines, 3));
    assert_false(line_set(lines, 4));
}

static void test_pages_to_lines_wide_stride(void **state)
{
    (void)state;
    /* stride 16384 (4096 px): a line spans 4 pages; page 9 is inside line 2 */
    uint64_t pages[1] = {0}, lines[1] = {0};
    set_page(pages, 9);
    assert_int_equal(dpy__pages_to_lines(pages, 40, 0, 16384, 10, lines), 1);
    assert_int_equal(lines[0], 1ull << 2);
}

static void test_pages_to_lines_offset_and_clip(void **state)
{
    (void)state;
    /* the first pixel sits 4000 bytes into page 0: page 0 covers only 96 bytes of line 0 */
    uint64_t pages[1] = {0}, lines[1] = {0};
    set_page(pages, 0);
    assert_int_equal(dpy__pages_to_lines(pages, 4, 4000, 2560, 4, lines), 1);
    assert_int_equal(lines[0], 1);
    /* pages beyond the screen mark nothing */
    memset(pages, 0, sizeof(pages));
    memset(lines, 0, sizeof(lines));
    set_page(pages, 30);
    assert_int_equal(dpy__pages_to_lines(pages, 40, 0, 2560, 4, lines), 0);
    assert_int_equal(dpy__fb_pages(0, 2560, 4), 3);
    assert_int_equal(dpy__fb_pages(4000, 2560, 4), 4);
}

static void test_pages_to_lines_runs(void **state)
{
    (void)state;
    /* every page dirty across word boundaries: every line marked */
    size_t np = dpy__fb_pages(0, 2560, H);
    uint64_t *pages = calloc((np + 63) / 64, 8), lines[(H + 63) / 64] = {0};
    for (size_t p = 0; p < np; p++)
        set_page(pages, p);
    assert_int_equal(dpy__pages_to_lines(pages, np, 0, 2560, H, lines), H);
    for (uint32_t y = 0; y < H; y++)
        assert_true(line_set(lines, y));
    free(pages);
}

struct fixture {
    dpy__damage_t *d;
    uint32_t *src;
    uint32_t stride; /* bytes */
    uint64_t pages[(W * 4 * H / 4096 + 64) / 64];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->stride = W * 4;
    f->src = aligned_alloc(4096, (size_t)f->stride * H);
    memset(f->src, 0, (size_t)f->stride * H);
    if (dpy__damage_create(W, H, &f->d) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    dpy__damage_destroy(f->d);
    free(f->src);
    free(f);
    return 0;
}

static void draw(struct fixture *f, uint32_t x, uint32_t y, uint32_t w, uint32_t h, uint32_t v)
{
    for (uint32_t yy = y; yy < y + h; yy++)
        for (uint32_t xx = x; xx < x + w; xx++) {
            size_t off = (size_t)yy * f->stride + xx * 4;
            f->src[off / 4] = v;
            set_page(f->pages, off / 4096);
        }
}

static void update(struct fixture *f, struct rects *rs, struct dpy__damage_stats *st)
{
    memset(rs, 0, sizeof(*rs));
    dpy__damage_update(f->d, f->src, f->stride, f->pages, dpy__fb_pages(0, f->stride, H), 0,
                       collect, rs, st);
    memset(f->pages, 0, sizeof(f->pages));
}

static void test_box_narrowed_to_columns(void **state)
{
    struct fixture *f = *state;
    struct rects rs;
    struct dpy__damage_stats st;

    draw(f, 100, 50, 10, 10, 0x00ff0000);
    update(f, &rs, &st);
    assert_int_equal(rs.n, 1);
    /* columns of 16 px: 100..109 lies in column 6 (96..111) */
    assert_int_equal(rs.r[0][0], 96);
    assert_int_equal(rs.r[0][1], 50);
    assert_int_equal(rs.r[0][2], 16);
    assert_int_equal(rs.r[0][3], 10);
    /* only the lines of the dirty pages were read: 10 lines of 2560 B touch pages covering at
     * most 10 + 2 lines around them */
    assert_true(st.lines_compared <= 13);
    assert_true(st.nonblank);
    /* the shadow now holds the pixels */
    assert_int_equal(dpy__damage_shadow(f->d)[55 * W + 105], 0x00ff0000);
}

static void test_rewrite_same_pixels_is_no_change(void **state)
{
    struct fixture *f = *state;
    struct rects rs;
    struct dpy__damage_stats st;

    draw(f, 0, 0, 64, 64, 0x123456);
    update(f, &rs, &st);
    assert_int_equal(rs.n, 1);
    draw(f, 0, 0, 64, 64, 0x123456); /* pages dirty, pixels the same */
    update(f, &rs, &st);
    assert_int_equal(rs.n, 0);
    assert_true(st.lines_compared >= 64);
}

static void test_idle_reads_nothing(void **state)
{
    struct fixture *f = *state;
    struct rects rs;
    struct dpy__damage_stats st;

    update(f, &rs, &st);
    assert_int_equal(rs.n, 0);
    assert_int_equal(st.lines_compared, 0);
    assert_false(st.nonblank);
}

static void test_two_boxes_two_rects(void **state)
{
    struct fixture *f = *state;
    struct rects rs;
    struct dpy__damage_stats st;

    /* same lines, far apart: two rectangles, not one spanning the screen */
    draw(f, 0, 100, 16, 20, 0xff);
    draw(f, 600, 100, 16, 20, 0xff);
    update(f, &rs, &st);
    assert_int_equal(rs.n, 2);
    assert_int_equal(rs.r[0][0] + rs.r[1][0], 592); /* columns 0 and 37 (592..607) */
    assert_int_equal(rs.r[0][3], 20);
    assert_int_equal(rs.r[1][3], 20);
}

static void test_black_with_padding_byte_is_blank(void **state)
{
    struct fixture *f = *state;
    struct rects rs;
    struct dpy__damage_stats st;

    draw(f, 0, 0, 32, 2, 0xff000000); /* only the X byte set: still black */
    update(f, &rs, &st);
    assert_int_equal(rs.n, 1);
    assert_false(st.nonblank);
}

static void test_full_update_and_edge_width(void **state)
{
    (void)state;
    dpy__damage_t *d;
    struct rects rs = {0};
    struct dpy__damage_stats st;
    /* 100 px wide: the last column is 4 px wide */
    uint32_t src[100 * 3];
    memset(src, 0, sizeof(src));
    src[2 * 100 + 99] = 0xffffff;
    assert_int_equal(dpy__damage_create(100, 3, &d), 0);
    dpy__damage_update(d, src, 400, NULL, 0, 0, collect, &rs, &st);
    assert_int_equal(st.lines_compared, 3);
    assert_int_equal(rs.n, 1);
    assert_int_equal(rs.r[0][0], 96);
    assert_int_equal(rs.r[0][1], 2);
    assert_int_equal(rs.r[0][2], 4);
    dpy__damage_destroy(d);
}

static void test_create_limits(void **state)
{
    (void)state;
    dpy__damage_t *d = NULL;
    assert_int_equal(dpy__damage_create(0, 10, &d), -EINVAL);
    assert_int_equal(dpy__damage_create(DPY_MAX_WIDTH + 1, 10, &d), -EINVAL);
    assert_int_equal(dpy__damage_create(10, DPY_MAX_HEIGHT + 1, &d), -EINVAL);
    assert_null(d);
    for (unsigned n = 1; n <= 4; n++) {
        vdi_alloc_fail_at(n);
        int err = dpy__damage_create(64, 64, &d);
        vdi_alloc_fail_at(0);
        if (err == 0) {
            dpy__damage_destroy(d);
            break;
        }
        assert_int_equal(err, -ENOMEM);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages_to_lines_small_stride),
        cmocka_unit_test(test_pages_to_lines_wide_stride),
        cmocka_unit_test(test_pages_to_lines_offset_and_clip),
        cmocka_unit_test(test_pages_to_lines_runs),
        cmocka_unit_test_setup_teardown(test_box_narrowed_to_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewrite_same_pixels_is_no_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_reads_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_boxes_two_rects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_black_with_padding_byte_is_blank, setup, teardown),
        cmocka_unit_test(test_full_update_and_edge_width),
        cmocka_unit_test(test_create_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
