/* common/vdi.h: what every vdi module shares: error codes, logging, allocation, lists, byte
 * buffers, number and listen-address parsing and the program version.
 *
 * Thread rules: everything here may be called from any thread unless a comment says otherwise.
 */
#ifndef VDI_COMMON_VDI_H
#define VDI_COMMON_VDI_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#ifndef VDI_VERSION
#define VDI_VERSION "0.0.0-dev"
#endif
#ifndef VDI_GIT_REV
#define VDI_GIT_REV "unknown"
#endif

/* The group whose members administer vdi: the admin socket's group and the web portal's admin
 * role (config key admin_group; docs/config.md). One default for both. */
#define VDI_ADMIN_GROUP_DEFAULT             "vdi"

#define VDI_ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))
#define VDI_MIN(a, b)                       ((a) < (b) ? (a) : (b))
#define VDI_MAX(a, b)                       ((a) > (b) ? (a) : (b))
#define VDI_UNUSED(x)                       ((void)(x))
#define VDI_PRINTF(f, a)                    __attribute__((format(printf, f, a)))
#define VDI_NORETURN                        __attribute__((noreturn))

#define vdi_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- Errors ------------------------------------------------------------------------------- */
/* Functions return 0 on success and a negative code on failure: -errno where one fits, else one
 * of the project codes below. They sit far below the errno range, so the two never collide. */
#define VDI_EBASE (-100000)
enum {
    VDI_EAUTH = VDI_EBASE - 1,      /* authentication failed */
    VDI_EBADIMAGE = VDI_EBASE - 2,  /* disk image corrupt or unsupported */
    VDI_EBADKERNEL = VDI_EBASE - 3, /* kernel file corrupt or of an unknown format */
    VDI_ECONFIG = VDI_EBASE - 4,    /* bad configuration */
    VDI_EPROTOCOL = VDI_EBASE - 5,  /* the peer broke the protocol */
    VDI_EGUEST = VDI_EBASE - 6,     /* the guest misprogrammed a device */
    VDI_ELOCKOUT = VDI_EBASE - 7,   /* too many failed attempts; locked out for now */
    VDI_ECAPACITY = VDI_EBASE - 8,  /* the host has no room for another desktop */
    VDI_ETOKEN = VDI_EBASE - 9,     /* token unknown, expired or already used */
    VDI_EDENIED = VDI_EBASE - 10,   /* not entitled to this resource */
    VDI_ECRASHED = VDI_EBASE - 11,  /* the virtual machine crashed */
    VDI_ETLS = VDI_EBASE - 12,      /* TLS failure */
    VDI_ETIMEOUT = VDI_EBASE - 13,  /* the peer took too long */
    VDI_ESTATE = VDI_EBASE - 14,    /* operation not allowed in the current state */
    VDI_EINUSE = VDI_EBASE - 15,    /* still referenced by something else */
    VDI_ECORRUPT = VDI_EBASE - 16,  /* stored data failed a consistency check */
    VDI_ELAST = VDI_EBASE - 17,
};

/* Name an error code (0, -errno or VDI_E*). Never returns NULL; the string is static. */
const char *vdi_strerror(int err);

/* Abort with a message naming the file, line and expression. Stays on in release builds; use it
 * for our own invariants only, never for guest, client or config input. */
#define VDI_ASSERT(cond)                                                                           \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0))                                                          \
            vdi_assert_fail(#cond, __FILE__, __LINE__, __func__);                                  \
    } while (0)
VDI_NORETURN void vdi_assert_fail(const char *expr, const char *file, int line, const char *func);

/* ---- Logging ------------------------------------------------------------------------------ */
/* One line per event to stderr. Levels use syslog numbers, so journald gets the right priority.
 * Each .c file may #define VDI_LOG_TAG "module" before including this header. The macros test the
 * level before evaluating their arguments. */
enum vdi_log_level {
    VDI_LOG_LEVEL_ERR = 3,
    VDI_LOG_LEVEL_WARN = 4,
    VDI_LOG_LEVEL_INFO = 6,
    VDI_LOG_LEVEL_DEBUG = 7,
};

#ifndef VDI_LOG_TAG
#define VDI_LOG_TAG "vdi"
#endif

extern int vdi_log_threshold; /* read racily by the macros; set with vdi_log_set_level() */

#define VDI_LOG_AT(lvl, ...)                                                                       \
    do {                                                                                           \
        if ((lvl) <= vdi_log_threshold)                                                            \
            vdi_log_emit((lvl), VDI_LOG_TAG, __VA_ARGS__);                                         \
    } while (0)
#define VDI_LOG_ERR(...)   VDI_LOG_AT(VDI_LOG_LEVEL_ERR, __VA_ARGS__)
#define VDI_LOG_WARN(...)  VDI_LOG_AT(VDI_LOG_LEVEL_WARN, __VA_ARGS__)
#define VDI_LOG_INFO(...)  VDI_LOG_AT(VDI_LOG_LEVEL_INFO, __VA_ARGS__)
#define VDI_LOG_DEBUG(...) VDI_LOG_AT(VDI_LOG_LEVEL_DEBUG, __VA_ARGS__)

/* Rate-limited logging for anything a guest or a client can trigger: at most @burst lines per
 * @interval_ms per call site; the first line after a quiet period says how many were dropped. */
typedef struct {
    uint64_t window_start_ms;
    uint32_t count;
    uint32_t suppressed;
} vdi_ratelimit_t;
#define VDI_RATELIMIT_INIT                                                                         \
    {                                                                                              \
        0, 0, 0                                                                                    \
    }
/* Returns true if a line may be written now; *suppressed gets the count dropped since the last
 * line that was allowed. Thread: any (serialised internally). */
bool vdi_ratelimit_ok(vdi_ratelimit_t *rl, uint32_t burst, uint32_t interval_ms,
                      uint32_t *suppressed);
#define VDI_LOG_RL(lvl, ...)                                                                       \
    do {                                                                                           \
        static vdi_ratelimit_t rl_ = VDI_RATELIMIT_INIT;                                           \
        uint32_t dropped_;                                                                         \
        if ((lvl) <= vdi_log_threshold && vdi_ratelimit_ok(&rl_, 10, 5000, &dropped_)) {           \
            if (dropped_)                                                                          \
                vdi_log_emit((lvl), VDI_LOG_TAG, "(%u similar lines dropped)", dropped_);          \
            vdi_log_emit((lvl), VDI_LOG_TAG, __VA_ARGS__);                                         \
        }                                                                                          \
    } while (0)
#define VDI_LOG_WARN_RL(...) VDI_LOG_RL(VDI_LOG_LEVEL_WARN, __VA_ARGS__)
#define VDI_LOG_ERR_RL(...)  VDI_LOG_RL(VDI_LOG_LEVEL_ERR, __VA_ARGS__)

/* Write one formatted line. Use the macros instead. */
void vdi_log_emit(int level, const char *tag, const char *fmt, ...) VDI_PRINTF(3, 4);
void vdi_log_set_level(int level);
/* Parse "err", "warn", "info" or "debug" (or 3, 4, 6, 7). Returns the level or -EINVAL. */
int vdi_log_parse_level(const char *s);
/* Set the level from $VDI_LOG_LEVEL if set and valid (a bad value is reported and ignored). */
void vdi_log_init_from_env(void);
/* Name shown at the start of each line (default: none); borrows @name for the program's life. */
void vdi_log_set_program(const char *name);
/* Send finished lines (with their trailing newline) to @sink instead of stderr; NULL restores
 * stderr. For tests. The sink is called with the logger's lock held. */
typedef void (*vdi_log_sink_fn)(int level, const char *line, void *ctx);
void vdi_log_set_sink(vdi_log_sink_fn sink, void *ctx);

/* ---- Allocation --------------------------------------------------------------------------- */
/* The x-functions abort on out-of-memory: use them for our own bookkeeping. When the size comes
 * from a guest, a client or the config, use the try-functions and return -ENOMEM. */
void *vdi_xmalloc(size_t size);
void *vdi_xcalloc(size_t n, size_t size);
void *vdi_xrealloc(void *p, size_t size);
char *vdi_xstrdup(const char *s);
char *vdi_xasprintf(const char *fmt, ...) VDI_PRINTF(1, 2);
void *vdi_trymalloc(size_t size);
void *vdi_trycalloc(size_t n, size_t size);
void *vdi_tryrealloc(void *p, size_t size);
/* For out-of-memory tests: the @n-th try-allocation from now fails (1 = the next one); 0 turns
 * failure injection off. Affects only the try-functions. */
void vdi_alloc_fail_at(unsigned n);
/* Overwrite @len bytes at @p in a way the compiler does not optimise away (secrets). */
void vdi_wipe(void *p, size_t len);

/* ---- Intrusive doubly linked lists -------------------------------------------------------- */
/* Embed a vdi_list_t in your struct; a head is a vdi_list_t too. Not thread-safe: the owner of
 * the list serialises access. */
typedef struct vdi_list {
    struct vdi_list *prev, *next;
} vdi_list_t;

static inline void vdi_list_init(vdi_list_t *h)
{
    h->prev = h->next = h;
}
static inline bool vdi_list_empty(const vdi_list_t *h)
{
    return h->next == h;
}
static inline void vdi_list__insert(vdi_list_t *n, vdi_list_t *prev, vdi_list_t *next)
{
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}
static inline void vdi_list_push_tail(vdi_list_t *h, vdi_list_t *n)
{
    vdi_list__insert(n, h->prev, h);
}
static inline void vdi_list_push_head(vdi_list_t *h, vdi_list_t *n)
{
    vdi_list__insert(n, h, h->next);
}
/* Unlink @n; it becomes an empty list of its own, so removing twice is harmless. */
static inline void vdi_list_remove(vdi_list_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    vdi_list_init(n);
}
/* Remove and return the first element, or NULL when empty. */
static inline vdi_list_t *vdi_list_pop_head(vdi_list_t *h)
{
    vdi_list_t *n = h->next;
    if (n == h)
        return NULL;
    vdi_list_remove(n);
    return n;
}
/* Move every element of @from to the tail of @to; @from ends empty. */
static inline void vdi_list_splice_tail(vdi_list_t *to, vdi_list_t *from)
{
    if (vdi_list_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    vdi_list_init(from);
}
size_t vdi_list_count(const vdi_list_t *h);
#define vdi_list_entry(n, type, member) vdi_container_of(n, type, member)
/* Iterate; safe against removal of the current element. */
#define vdi_list_foreach_safe(it, tmp, h)                                                          \
    for ((it) = (h)->next, (tmp) = (it)->next; (it) != (h); (it) = (tmp), (tmp) = (it)->next)

/* ---- Growable byte buffer ----------------------------------------------------------------- */
typedef struct {
    uint8_t *data;
    size_t len, cap;
} vdi_buf_t;
#define VDI_BUF_INIT                                                                               \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }
/* Append @len bytes; returns 0 or -ENOMEM (uses the try-allocator: lengths may come from peers). */
int vdi_buf_append(vdi_buf_t *b, const void *data, size_t len);
int vdi_buf_printf(vdi_buf_t *b, const char *fmt, ...) VDI_PRINTF(2, 3);
/* Drop the first @n bytes (n <= len). */
void vdi_buf_consume(vdi_buf_t *b, size_t n);
void vdi_buf_reset(vdi_buf_t *b);
void vdi_buf_free(vdi_buf_t *b);

/* ---- Parsing ------------------------------------------------------------------------------ */
/* Parse a decimal (or 0x-hex) unsigned integer in [@min, @max] with no trailing garbage.
 * Returns 0, -EINVAL (not a number) or -ERANGE. *out is written only on success. */
int vdi_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Parse a size with an optional K, M, G or T suffix (powers of 1024), e.g. "512M". */
int vdi_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* ---- Listen addresses (common/hostport.c) ------------------------------------------------- */
/* One reading of "HOST:PORT" for the config check and the listeners, so both accept the same
 * addresses. HOST is a numeric IPv4 address, a numeric IPv6 address in brackets ("[::1]:5900"),
 * or "localhost" (127.0.0.1); other names are refused, never looked up (no DNS: nothing blocks,
 * and the answer cannot change between the config check and the bind). PORT is decimal, 0 to
 * 65535 (0: the kernel picks a free port). */
#define VDI_HOSTPORT_FORM                                                                          \
    "HOST:PORT (HOST an IPv4 address, [IPv6 address] or localhost; PORT 0-65535)"
/* Split @s into @host (brackets removed, NUL-terminated, @hostlen bytes) and *port; checks the
 * form and the host's characters, not the address itself. Writes @host and *port only on
 * success. Returns 0, -EINVAL (not HOST:PORT), -ERANGE (port above 65535) or -ENAMETOOLONG
 * (@hostlen too small). */
int vdi_hostport_parse(const char *s, char *host, size_t hostlen, uint16_t *port);
/* Turn @host (as vdi_hostport_parse() returns it) and @port into a socket address in @ss.
 * Returns 0 or -EINVAL (not an IPv4 or IPv6 address, nor localhost). */
int vdi_hostport_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss);
/* Both of the above: @s to @ss, with the host part in @host for messages. */
int vdi_hostport_addr(const char *s, struct sockaddr_storage *ss, char *host, size_t hostlen);

/* ---- Programs ----------------------------------------------------------------------------- */
/* Print "@prog VERSION (git REV)" to stdout. */
void vdi_print_version(const char *prog);
/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t vdi_now_ms(void);

#endif /* VDI_COMMON_VDI_H */
