/* common/util.c: lists, byte buffers, number parsing, clocks and the version line. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/vdi.h"

size_t vdi_list_count(const vdi_list_t *h)
{
    size_t n = 0;
    for (const vdi_list_t *it = h->next; it != h; it = it->next)
        n++;
    return n;
}

static int buf_reserve(vdi_buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return -ENOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = vdi_tryrealloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int vdi_buf_append(vdi_buf_t *b, const void *data, size_t len)
{
    int err = buf_reserve(b, len);
    if (err < 0)
        return err;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

int vdi_buf_printf(vdi_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    int err = buf_reserve(b, (size_t)n + 1);
    if (err < 0)
        return err;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void vdi_buf_consume(vdi_buf_t *b, size_t n)
{
    VDI_ASSERT(n <= b->len);
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void vdi_buf_reset(vdi_buf_t *b)
{
    b->len = 0;
}

void vdi_buf_free(vdi_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int vdi_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !*s || isspace((unsigned char)*s) || *s == '-' || *s == '+')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno == ERANGE)
        return -ERANGE;
    if (end == s || *end)
        return -EINVAL;
    if (v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

int vdi_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    size_t len = strlen(s);
    unsigned shift = 0;
    switch (toupper((unsigned char)s[len - 1])) {
    case 'K':
        shift = 10;
        break;
    case 'M':
        shift = 20;
        break;
    case 'G':
        shift = 30;
        break;
    case 'T':
        shift = 40;
        break;
    }
    char num[32];
    size_t nlen = shift ? len - 1 : len;
    if (nlen == 0 || nlen >= sizeof(num))
        return -EINVAL;
    memcpy(num, s, nlen);
    num[nlen] = '\0';
    uint64_t v;
    int err = vdi_parse_u64(num, 0, UINT64_MAX, &v);
    if (err < 0)
        return err;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    v <<= shift;
    if (v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

uint64_t vdi_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void vdi_print_version(const char *prog)
{
    printf("%s %s (git %s)\n", prog, VDI_VERSION, VDI_GIT_REV);
}
