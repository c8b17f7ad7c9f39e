/* display/damage.c: from "these framebuffer pages were written" to "these rectangles changed".
 *
 * KVM's dirty log says which 4 KiB pages of the framebuffer the guest wrote since the last look.
 * A page covers one or more scanlines (or part of one), so dirty pages become a set of dirty
 * lines; only those lines are read. Each is compared with the shadow copy (the pixels the RFB
 * clients were last given) in columns of DPY_DAMAGE_COL pixels; a column that differs is copied
 * into the shadow and marked. Marked columns then grow into rectangles: a run of marked columns on
 * one line extends downwards while the lines below have the same columns marked (the way QEMU's
 * VNC server groups its dirty bits). An idle screen has no dirty pages, so no line is read.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"
#include "display/internal.h"

#define PAGE_SIZE 4096u
#define COL_BYTES (DPY_DAMAGE_COL * 4u)

struct dpy__damage {
    uint32_t width, height;
    uint32_t ncols;     /* columns of DPY_DAMAGE_COL pixels per line */
    uint32_t col_words; /* uint64_t words of column bits per line */
    uint32_t *shadow;   /* width * height pixels */
    uint64_t *lines;    /* dirty-line bitmap, ceil(height/64) words */
    uint64_t *cols;     /* height * col_words: changed columns per line */
    bool nonblank;
};

int dpy__damage_create(uint32_t width, uint32_t height, dpy__damage_t **out)
{
    dpy__damage_t *d;

    if (width == 0 || height == 0 || width > DPY_MAX_WIDTH || height > DPY_MAX_HEIGHT)
        return -EINVAL;
    d = vdi_trycalloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->width = width;
    d->height = height;
    d->ncols = (width + DPY_DAMAGE_COL - 1) / DPY_DAMAGE_COL;
    d->col_words = (d->ncols + 63) / 64;
    d->shadow = vdi_trycalloc((size_t)width * height, sizeof(uint32_t));
    d->lines = vdi_trycalloc((height + 63) / 64, sizeof(uint64_t));
    d->cols = vdi_trycalloc((size_t)height * d->col_words, sizeof(uint64_t));
    if (!d->shadow || !d->lines || !d->cols) {
        dpy__damage_destroy(d);
        return -ENOMEM;
    }
    *out = d;
    return 0;
}

void dpy__damage_destroy(dpy__damage_t *d)
{
    if (!d)
        return;
    free(d->shadow);
    free(d->lines);
    free(d->cols);
    free(d);
}

uint32_t *dpy__damage_shadow(dpy__damage_t *d)
{
    return d->shadow;
}

static void mark_lines(uint64_t *lines, uint32_t first, uint32_t last)
{
    for (uint32_t y = first; y <= last;) {
        if ((y & 63) == 0 && last - y >= 63) {
            lines[y / 64] = ~0ull;
            y += 64;
        } else {
            lines[y / 64] |= 1ull << (y & 63);
            y++;
        }
    }
}

size_t dpy__fb_pages(uint32_t page_off, uint32_t stride, uint32_t height)
{
    return (size_t)(((uint64_t)page_off + (uint64_t)stride * height + PAGE_SIZE - 1) / PAGE_SIZE);
}

uint32_t dpy__pages_to_lines(const uint64_t *pages, size_t npages, uint32_t page_off,
                             uint32_t stride, uint32_t height, uint64_t *lines)
{
    uint64_t fb_bytes = (uint64_t)stride * height;
    uint32_t marked = 0;
    size_t p = 0;

    if (stride == 0 || height == 0)
        return 0;
    while (p < npages) {
        uint64_t w = pages[p / 64] >> (p & 63);
        if (w == 0) {
            p = (p | 63) + 1; /* rest of this word is clean */
            continue;
        }
        p += (size_t)__builtin_ctzll(w);
        if (p >= npages)
            break;
        /* a run of dirty pages [p, q) */
        size_t q = p + 1;
        while (q < npages && (pages[q / 64] >> (q & 63) & 1))
            q++;
        /* byte range relative to the first pixel */
        uint64_t start = (uint64_t)p * PAGE_SIZE, end = (uint64_t)q * PAGE_SIZE - page_off;
        start = start > page_off ? start - page_off : 0;
        if (start < fb_bytes && end > start) {
            if (end > fb_bytes)
                end = fb_bytes;
            uint32_t first = (uint32_t)(start / stride), last = (uint32_t)((end - 1) / stride);
            for (uint32_t y = first; y <= last; y++)
                if (!(lines[y / 64] >> (y & 63) & 1))
                    marked++;
            mark_lines(lines, first, last);
        }
        p = q;
    }
    return marked;
}

static bool col_is_set(const uint64_t *row, uint32_t c)
{
    return row[c / 64] >> (c & 63) & 1;
}

static bool has_colour(const uint32_t *px, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (px[i] & 0x00ffffffu)
            return true;
    return false;
}

/* Compare one line; returns true if any column changed (marked in @row). */
static bool compare_line(dpy__damage_t *d, const uint8_t *src, uint32_t y, uint64_t *row)
{
    uint32_t *dst = d->shadow + (size_t)y * d->width;
    size_t line_bytes = (size_t)d->width * 4;
    bool changed = false;

    if (memcmp(dst, src, line_bytes) == 0)
        return false;
    for (uint32_t c = 0; c < d->ncols; c++) {
        size_t off = (size_t)c * COL_BYTES;
        size_t n = VDI_MIN((size_t)COL_BYTES, line_bytes - off);
        if (memcmp((uint8_t *)dst + off, src + off, n) == 0)
            continue;
        memcpy((uint8_t *)dst + off, src + off, n);
        row[c / 64] |= 1ull << (c & 63);
        changed = true;
        if (!d->nonblank)
            d->nonblank = has_colour((const uint32_t *)((const uint8_t *)dst + off), n / 4);
    }
    return changed;
}

/* Grow marked columns into rectangles (see the top of the file); clears the marks. */
static uint32_t emit_rects(dpy__damage_t *d, uint32_t y0, uint32_t y1, dpy__rect_fn fn, void *ctx)
{
    uint32_t nrects = 0;

    for (uint32_t y = y0; y <= y1; y++) {
        uint64_t *row = d->cols + (size_t)y * d->col_words;
        uint32_t c = 0;
        while (c < d->ncols) {
            if (!col_is_set(row, c)) {
                c++;
                continue;
            }
            uint32_t a = c;
            while (c < d->ncols && col_is_set(row, c))
                c++;
            uint32_t b = c; /* run [a, b) */
            uint32_t h = 1;
            for (uint32_t yy = y + 1; yy <= y1; yy++, h++) {
                const uint64_t *below = d->cols + (size_t)yy * d->col_words;
                uint32_t k;
                for (k = a; k < b && col_is_set(below, k); k++)
                    ;
                if (k < b)
                    break;
            }
            for (uint32_t yy = y; yy < y + h; yy++) {
                uint64_t *r = d->cols + (size_t)yy * d->col_words;
                for (uint32_t k = a; k < b; k++)
                    r[k / 64] &= ~(1ull << (k & 63));
            }
            uint32_t x = a * DPY_DAMAGE_COL;
            uint32_t xe = VDI_MIN(b * DPY_DAMAGE_COL, d->width);
            fn(ctx, x, y, xe - x, h);
            nrects++;
        }
    }
    return nrects;
}

void dpy__damage_update(dpy__damage_t *d, const void *src, uint32_t stride, const uint64_t *pages,
                        size_t npages, uint32_t page_off, dpy__rect_fn fn, void *ctx,
                        struct dpy__damage_stats *st)
{
    size_t lwords = (d->height + 63) / 64;
    uint32_t compared = 0, nrects = 0;
    uint32_t first = UINT32_MAX, last = 0;

    memset(d->lines, 0, lwords * sizeof(uint64_t));
    if (pages)
        dpy__pages_to_lines(pages, npages, page_off, stride, d->height, d->lines);
    else
        mark_lines(d->lines, 0, d->height - 1);

    for (size_t w = 0; w < lwords; w++) {
        uint64_t bits = d->lines[w];
        while (bits) {
            uint32_t y = (uint32_t)(w * 64) + (uint32_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            if (y >= d->height)
                break;
            compared++;
            if (compare_line(d, (const uint8_t *)src + (size_t)y * stride, y,
                             d->cols + (size_t)y * d->col_words)) {
                if (first == UINT32_MAX)
                    first = y;
                last = y;
            }
        }
    }
    if (first != UINT32_MAX)
        nrects = emit_rects(d, first, last, fn, ctx);
    if (st) {
        st->lines_compared = compared;
        st->rects = nrects;
        st->nonblank = d->nonblank;
    }
}
