/* golden-images/testdesk/patch.c: the data area, the ustar reader and the patch script
 * interpreter of testdesk's patch agent (patch.h). Everything that comes from a disk is
 * untrusted: lengths are checked against the buffer before use (tests/fuzz/fuzz_tdpatch.c). */
#if __STDC_HOSTED__
#include <string.h>
#else
#include "golden-images/testdesk/td.h"
#endif
#include "golden-images/testdesk/patch.h"

static const char magic[] = "TDFS1\n";
static const char end_mark[] = "END\n";

/* A small string builder (no printf here: testdesk has its own, the host another). */
struct sb {
    char *p;
    size_t n, len;
};

static void sb_str(struct sb *b, const char *s)
{
    while (*s && b->len + 1 < b->n)
        b->p[b->len++] = *s++;
    b->p[b->len] = 0;
}

static void sb_mem(struct sb *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n && b->len + 1 < b->n; i++) {
        char c = s[i];
        b->p[b->len++] = (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    b->p[b->len] = 0;
}

static void sb_u64(struct sb *b, uint64_t v)
{
    char t[24];
    size_t i = sizeof(t) - 1;
    t[i] = 0;
    do {
        t[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sb_str(b, t + i);
}

bool tp_name_ok(const char *name)
{
    size_t n = 0;
    for (; name[n]; n++) {
        char c = name[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok || n + 1 >= TP_NAME_MAX)
            return false;
    }
    return n > 0;
}

static void set_why(char *why, size_t whylen, const char *a, const char *name)
{
    struct sb b = {why, whylen, 0};
    if (!whylen)
        return;
    why[0] = 0;
    sb_str(&b, a);
    if (name) {
        sb_str(&b, " ");
        sb_str(&b, name);
    }
}

int tp_area_parse(const uint8_t *buf, size_t n, struct tp_area *a, char *why, size_t whylen)
{
    a->n = 0;
    size_t ml = sizeof(magic) - 1, pos = ml;
    if (n < ml || memcmp(buf, magic, ml))
        return 0;
    for (;;) {
        if (n - pos >= sizeof(end_mark) - 1 && !memcmp(buf + pos, end_mark, sizeof(end_mark) - 1))
            return 1;
        /* "NAME LENGTH\n" */
        char name[TP_NAME_MAX];
        size_t k = 0;
        while (pos < n && buf[pos] != ' ' && k + 1 < TP_NAME_MAX)
            name[k++] = (char)buf[pos++];
        name[k] = 0;
        if (pos >= n || buf[pos] != ' ' || !tp_name_ok(name)) {
            set_why(why, whylen, "bad file name at the start of an entry", NULL);
            return -1;
        }
        pos++;
        uint64_t len = 0;
        size_t digits = 0;
        while (pos < n && buf[pos] >= '0' && buf[pos] <= '9' && digits < 8) {
            len = len * 10 + (uint64_t)(buf[pos++] - '0');
            digits++;
        }
        if (!digits || pos >= n || buf[pos] != '\n' || len > TP_DATA_MAX) {
            set_why(why, whylen, "bad length for file", name);
            return -1;
        }
        pos++;
        if (len + 1 > n - pos || buf[pos + len] != '\n') {
            set_why(why, whylen, "truncated data for file", name);
            return -1;
        }
        if (tp_area_get(a, name)) {
            set_why(why, whylen, "file listed twice:", name);
            return -1;
        }
        if (a->n == TP_FILES_MAX) {
            set_why(why, whylen, "too many files", NULL);
            return -1;
        }
        struct tp_file *f = &a->f[a->n++];
        memcpy(f->name, name, k + 1);
        memcpy(f->data, buf + pos, (size_t)len);
        f->data[len] = 0;
        f->len = (uint32_t)len;
        pos += (size_t)len + 1;
    }
}

int tp_area_format(const struct tp_area *a, uint8_t *buf, size_t n)
{
    size_t pos = 0;
    memset(buf, 0, n);
#define PUT(s, l)                                                                                  \
    do {                                                                                           \
        if ((l) > n - pos)                                                                         \
            return -1;                                                                             \
        memcpy(buf + pos, (s), (l));                                                               \
        pos += (l);                                                                                \
    } while (0)
    PUT(magic, sizeof(magic) - 1);
    for (unsigned i = 0; i < a->n; i++) {
        char head[TP_NAME_MAX + 24];
        struct sb b = {head, sizeof(head), 0};
        sb_str(&b, a->f[i].name);
        sb_str(&b, " ");
        sb_u64(&b, a->f[i].len);
        sb_str(&b, "\n");
        PUT(head, b.len);
        PUT(a->f[i].data, a->f[i].len);
        PUT("\n", 1);
    }
    PUT(end_mark, sizeof(end_mark) - 1);
#undef PUT
    return 0;
}

const struct tp_file *tp_area_get(const struct tp_area *a, const char *name)
{
    for (unsigned i = 0; i < a->n; i++)
        if (!strcmp(a->f[i].name, name))
            return &a->f[i];
    return NULL;
}

int tp_area_put(struct tp_area *a, const char *name, const void *data, size_t len)
{
    if (!tp_name_ok(name) || len > TP_DATA_MAX)
        return -1;
    struct tp_file *f = (struct tp_file *)tp_area_get(a, name);
    if (!f) {
        if (a->n == TP_FILES_MAX)
            return -1;
        f = &a->f[a->n++];
        memcpy(f->name, name, strlen(name) + 1);
    }
    memcpy(f->data, data, len);
    f->data[len] = 0;
    f->len = (uint32_t)len;
    return 0;
}

int tp_area_remove(struct tp_area *a, const char *name)
{
    const struct tp_file *f = tp_area_get(a, name);
    if (!f)
        return -1;
    size_t i = (size_t)(f - a->f);
    memmove(&a->f[i], &a->f[i + 1], (a->n - i - 1) * sizeof(a->f[0]));
    a->n--;
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int tp_file_ms(const struct tp_area *a, const char *name, uint64_t *ms, char *why, size_t whylen)
{
    const struct tp_file *f = tp_area_get(a, name);
    if (!f)
        return 0;
    size_t i = 0, e = f->len; /* f->data may hold NULs: go by the length */
    while (i < e && is_space(f->data[i]))
        i++;
    while (e > i && is_space(f->data[e - 1]))
        e--;
    if (i == e) {
        set_why(why, whylen, "it is empty; expected a decimal number of milliseconds", NULL);
        return -1;
    }
    uint64_t v = 0;
    for (; i < e; i++) {
        char c = f->data[i];
        if (c < '0' || c > '9') {
            set_why(why, whylen, "it is not a decimal number of milliseconds", NULL);
            return -1;
        }
        v = v * 10 + (uint64_t)(c - '0');
        if (v > TP_FILE_MS_MAX) {
            set_why(why, whylen, "more than a day (86400000 ms)", NULL);
            return -1;
        }
    }
    *ms = v;
    return 1;
}

uint64_t tp_data_boot(uint8_t *sector)
{
    static const char dm[] = "TDDATA1\nboots=";
    size_t ml = sizeof(dm) - 1;
    uint64_t n = 0;
    bool zero = true;
    for (unsigned i = 0; i < 512; i++)
        zero &= sector[i] == 0;
    if (!zero) {
        if (memcmp(sector, dm, ml))
            return 0;
        size_t i = ml;
        for (; i < ml + 12 && sector[i] >= '0' && sector[i] <= '9'; i++)
            n = n * 10 + (uint64_t)(sector[i] - '0');
        if (i == ml || sector[i] != '\n')
            return 0;
    }
    n++;
    char line[48];
    struct sb b = {line, sizeof(line), 0};
    sb_str(&b, dm);
    sb_u64(&b, n);
    sb_str(&b, "\n");
    memset(sector, 0, 512);
    memcpy(sector, line, b.len);
    return n;
}

/* ---- ustar ---------------------------------------------------------------------------------- */

static uint64_t octal(const uint8_t *p, size_t n, bool *ok)
{
    uint64_t v = 0;
    size_t i = 0;
    while (i < n && p[i] == ' ')
        i++;
    size_t start = i;
    for (; i < n && p[i] >= '0' && p[i] <= '7'; i++) {
        if (v >> 60) {
            *ok = false;
            return 0;
        }
        v = v * 8 + (uint64_t)(p[i] - '0');
    }
    if (i == start || (i < n && p[i] != 0 && p[i] != ' '))
        *ok = false;
    return v;
}

bool tp_tar_header(const uint8_t *block)
{
    if (memcmp(block + 257, "ustar", 5))
        return false;
    bool ok = true;
    uint64_t sum = octal(block + 148, 8, &ok), mine = 0;
    for (unsigned i = 0; i < 512; i++)
        mine += (i >= 148 && i < 156) ? ' ' : block[i];
    return ok && sum == mine;
}

/* @block's member name (prefix "/" name) without a leading "./", into @out. */
static void member_name(const uint8_t *block, char *out, size_t n)
{
    struct sb b = {out, n, 0};
    out[0] = 0;
    char part[156];
    if (block[345]) {
        memcpy(part, block + 345, 155);
        part[155] = 0;
        sb_str(&b, part);
        sb_str(&b, "/");
    }
    memcpy(part, block, 100);
    part[100] = 0;
    sb_str(&b, part);
    if (out[0] == '.' && out[1] == '/')
        memmove(out, out + 2, strlen(out + 2) + 1);
}

int tp_tar_find(tp_read_fn rd, void *ctx, uint64_t disk_bytes, const char *name, uint64_t *off,
                uint64_t *size)
{
    uint8_t block[512];
    for (uint64_t pos = 0; pos + 512 <= disk_bytes;) {
        if (rd(ctx, pos, block, 512) < 0)
            return -1;
        if (!tp_tar_header(block))
            return 0; /* the end (two zero blocks), or not an archive at all */
        bool ok = true;
        uint64_t sz = octal(block + 124, 12, &ok);
        if (!ok || sz > disk_bytes - pos - 512)
            return -1;
        char nm[260];
        member_name(block, nm, sizeof(nm));
        char type = (char)block[156];
        if ((type == '0' || type == 0) && !strcmp(nm, name)) {
            *off = pos + 512;
            *size = sz;
            return 1;
        }
        pos += 512 + ((sz + 511) & ~511ULL);
    }
    return 0;
}

/* ---- The script ---------------------------------------------------------------------------- */

static void say(const struct tp_env *env, const char *a, const char *b, const char *c)
{
    char line[TP_LINE_MAX + 64];
    struct sb s = {line, sizeof(line), 0};
    sb_str(&s, "patch: ");
    sb_str(&s, a);
    if (b)
        sb_str(&s, b);
    if (c)
        sb_str(&s, c);
    env->out(env->ctx, line);
}

static void say_line(const struct tp_env *env, unsigned lineno, const char *what, const char *arg)
{
    char line[TP_LINE_MAX + 64];
    struct sb s = {line, sizeof(line), 0};
    sb_str(&s, "patch: line ");
    sb_u64(&s, lineno);
    sb_str(&s, ": ");
    sb_str(&s, what);
    if (arg) {
        sb_str(&s, " ");
        sb_mem(&s, arg, strlen(arg));
    }
    env->out(env->ctx, line);
}

static bool parse_u64(const char *s, uint64_t *v)
{
    *v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || *v > 100000000)
            return false;
        *v = *v * 10 + (uint64_t)(*s - '0');
    }
    return true;
}

/* Split "WORD REST" in place: returns REST (after one run of spaces), "" when none. */
static char *next_word(char *s)
{
    while (*s && *s != ' ' && *s != '\t')
        s++;
    if (!*s)
        return s;
    *s++ = 0;
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

static int do_copy(const struct tp_env *env, struct tp_area *a, const char *member,
                   const char *name, unsigned lineno)
{
    static char data[TP_DATA_MAX];
    uint64_t off, size;
    int r = env->rd ? tp_tar_find(env->rd, env->ctx, env->bundle_bytes, member, &off, &size) : 0;
    if (r <= 0) {
        say_line(env, lineno, r < 0 ? "cannot read the bundle for member" : "no bundle member",
                 member);
        return -1;
    }
    if (size > TP_DATA_MAX || env->rd(env->ctx, off, data, (size_t)size) < 0 ||
        tp_area_put(a, name, data, (size_t)size) < 0) {
        say_line(env, lineno, size > TP_DATA_MAX ? "member too large:" : "cannot copy", member);
        return -1;
    }
    char out[TP_LINE_MAX + 64];
    struct sb b = {out, sizeof(out), 0};
    sb_str(&b, "patch: copied ");
    sb_mem(&b, member, strlen(member));
    sb_str(&b, " to ");
    sb_str(&b, name);
    sb_str(&b, " (");
    sb_u64(&b, size);
    sb_str(&b, " bytes)");
    env->out(env->ctx, out);
    return 0;
}

static int do_fetch(const struct tp_env *env, struct tp_area *a, char *args, unsigned lineno)
{
    static char data[TP_DATA_MAX];
    char *port_s = next_word(args);
    char *name = next_word(port_s);
    next_word(name);
    uint64_t port;
    if (!*args || !parse_u64(port_s, &port) || port == 0 || port > 65535 || !tp_name_ok(name)) {
        say_line(env, lineno, "usage: fetch HOST PORT NAME", NULL);
        return -1;
    }
    if (!env->fetch) {
        say_line(env, lineno, "no network in this machine for fetch of", name);
        return -1;
    }
    char why[96] = "";
    size_t len = 0;
    if (env->fetch(env->ctx, args, (unsigned)port, name, data, sizeof(data), &len, why,
                   sizeof(why)) < 0) {
        char out[TP_LINE_MAX + 128];
        struct sb b = {out, sizeof(out), 0};
        sb_str(&b, "fetch ");
        sb_str(&b, name);
        sb_str(&b, " from ");
        sb_mem(&b, args, strlen(args));
        sb_str(&b, ": ");
        sb_mem(&b, why, strlen(why));
        say_line(env, lineno, out, NULL);
        return -1;
    }
    if (len == 0 || len > sizeof(data) || tp_area_put(a, name, data, len) < 0) {
        say_line(env, lineno,
                 len == 0             ? "the server has no such file:"
                 : len > sizeof(data) ? "the server's file is too large:"
                                      : "no room for file",
                 name);
        return -1;
    }
    char out[TP_LINE_MAX + 64];
    struct sb b = {out, sizeof(out), 0};
    sb_str(&b, "patch: fetched ");
    sb_str(&b, name);
    sb_str(&b, " from ");
    sb_mem(&b, args, strlen(args));
    sb_str(&b, " (");
    sb_u64(&b, len);
    sb_str(&b, " bytes)");
    env->out(env->ctx, out);
    return 0;
}

enum tp_result tp_script_run(const char *s, size_t len, struct tp_area *a, const struct tp_env *env,
                             int *exit_code)
{
    char line[TP_LINE_MAX + 1];
    unsigned lineno = 0;
    size_t pos = 0;
    *exit_code = 0;
    while (pos < len) {
        size_t k = 0;
        bool too_long = false;
        lineno++;
        while (pos < len && s[pos] != '\n') {
            if (k < TP_LINE_MAX)
                line[k++] = s[pos] == '\r' ? ' ' : s[pos];
            else
                too_long = true;
            pos++;
        }
        pos++;
        line[k] = 0;
        bool nul = false;
        for (size_t i = 0; i < k; i++)
            nul |= line[i] == 0;
        if (too_long || nul) {
            say_line(env, lineno, too_long ? "line too long" : "NUL byte in line", NULL);
            *exit_code = 2;
            return TP_EXIT;
        }
        char *cmd = line;
        while (*cmd == ' ' || *cmd == '\t')
            cmd++;
        if (!*cmd || *cmd == '#')
            continue;
        char *rest = next_word(cmd);
        uint64_t v;
        if (!strcmp(cmd, "echo")) {
            char out[TP_LINE_MAX + 1];
            struct sb b = {out, sizeof(out), 0};
            sb_mem(&b, rest, strlen(rest));
            env->out(env->ctx, out);
        } else if (!strcmp(cmd, "banner")) {
            if (tp_area_put(a, "banner", rest, strlen(rest)) < 0) {
                say_line(env, lineno, "no room for the banner", NULL);
                *exit_code = 1;
                return TP_EXIT;
            }
            say(env, "banner set to \"", rest, "\"");
        } else if (!strcmp(cmd, "write")) {
            char *text = next_word(rest);
            if (!tp_name_ok(rest) || tp_area_put(a, rest, text, strlen(text)) < 0) {
                say_line(env, lineno, "cannot write file", rest);
                *exit_code = 1;
                return TP_EXIT;
            }
            say(env, "wrote ", rest, "");
        } else if (!strcmp(cmd, "copy")) {
            char *name = next_word(rest);
            next_word(name);
            if (!tp_name_ok(name) || do_copy(env, a, rest, name, lineno) < 0) {
                if (!tp_name_ok(name))
                    say_line(env, lineno, "usage: copy MEMBER NAME", NULL);
                *exit_code = 1;
                return TP_EXIT;
            }
        } else if (!strcmp(cmd, "fetch")) {
            if (do_fetch(env, a, rest, lineno) < 0) {
                *exit_code = 1;
                return TP_EXIT;
            }
        } else if (!strcmp(cmd, "remove")) {
            if (tp_area_remove(a, rest) < 0) {
                say_line(env, lineno, "no such file:", rest);
                *exit_code = 1;
                return TP_EXIT;
            }
            say(env, "removed ", rest, "");
        } else if (!strcmp(cmd, "sleep")) {
            if (!parse_u64(rest, &v) || v > 3600000) {
                say_line(env, lineno, "usage: sleep MILLISECONDS", NULL);
                *exit_code = 2;
                return TP_EXIT;
            }
            if (env->sleep_ms)
                env->sleep_ms(env->ctx, (unsigned)v);
        } else if (!strcmp(cmd, "exit")) {
            if (!parse_u64(rest, &v) || v > 255) {
                say_line(env, lineno, "usage: exit N (0..255)", NULL);
                *exit_code = 2;
                return TP_EXIT;
            }
            *exit_code = (int)v;
            return TP_EXIT;
        } else if (!strcmp(cmd, "hang")) {
            say(env, "hanging, as the script asks", NULL, NULL);
            return TP_HANG;
        } else {
            say_line(env, lineno, "unknown command", cmd);
            *exit_code = 127;
            return TP_EXIT;
        }
    }
    return TP_EXIT;
}
