/* common/alloc.c: allocation helpers. The x-functions abort with a log line on out-of-memory; the
 * try-functions return NULL and can be made to fail on purpose for out-of-memory tests. */
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"

static unsigned fail_countdown; /* 0: off; n: the n-th try-allocation from now fails */

static VDI_NORETURN void oom(size_t size)
{
    vdi_log_emit(VDI_LOG_LEVEL_ERR, "alloc", "out of memory allocating %zu bytes", size);
    abort();
}

void *vdi_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        oom(size);
    return p;
}

void *vdi_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *vdi_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q)
        oom(size);
    return q;
}

char *vdi_xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        oom(strlen(s) + 1);
    return p;
}

char *vdi_xasprintf(const char *fmt, ...)
{
    char *s;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(0);
    return s;
}

static bool injected_failure(void)
{
    unsigned n = __atomic_load_n(&fail_countdown, __ATOMIC_RELAXED);
    if (n == 0)
        return false;
    __atomic_store_n(&fail_countdown, n - 1, __ATOMIC_RELAXED);
    if (n == 1)
        return true;
    return false;
}

void vdi_alloc_fail_at(unsigned n)
{
    __atomic_store_n(&fail_countdown, n, __ATOMIC_RELAXED);
}

void *vdi_trymalloc(size_t size)
{
    if (injected_failure())
        return NULL;
    return malloc(size ? size : 1);
}

void *vdi_trycalloc(size_t n, size_t size)
{
    if (injected_failure())
        return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

void *vdi_tryrealloc(void *p, size_t size)
{
    if (injected_failure())
        return NULL;
    return realloc(p, size ? size : 1);
}

void vdi_wipe(void *p, size_t len)
{
    if (p)
        explicit_bzero(p, len);
}
