/* vmm/agent-wire.c: the guest agent protocol's wire helpers (vmm/vmm.h, docs/agent-protocol.md):
 * base64 and field lookup in one line. Freestanding on purpose: no libc call and no errno, so
 * that the test guest (golden-images/testdesk/, built -ffreestanding -nostdlib) compiles this
 * same file and the two ends cannot disagree on the format. Every input is untrusted: lengths
 * are explicit, nothing relies on a NUL, and every output is bounded by its capacity. */
#include "vmm/vmm.h"

static const char b64_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t vmm_b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

size_t vmm_b64_encode(const void *src, size_t n, char *dst)
{
    const uint8_t *s = src;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        size_t left = n - i;
        if (left > 1)
            v |= (uint32_t)s[i + 1] << 8;
        if (left > 2)
            v |= s[i + 2];
        dst[o++] = b64_alphabet[(v >> 18) & 63];
        dst[o++] = b64_alphabet[(v >> 12) & 63];
        dst[o++] = left > 1 ? b64_alphabet[(v >> 6) & 63] : '=';
        dst[o++] = left > 2 ? b64_alphabet[v & 63] : '=';
    }
    return o;
}

/* The 6-bit value of @c, or -1. */
static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long vmm_b64_decode(const char *src, size_t n, uint8_t *dst, size_t cap)
{
    size_t o = 0;
    if (n % 4)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        unsigned pad = 0;
        for (unsigned k = 0; k < 4; k++) {
            v[k] = b64_value(src[i + k]);
            if (v[k] < 0) {
                /* '=' only in the last group's last one or two places. */
                if (src[i + k] != '=' || i + 4 != n || k < 2)
                    return -1;
                pad++;
                v[k] = 0;
            } else if (pad) {
                return -1; /* a character after padding */
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        unsigned bytes = 3 - pad;
        if (cap - o < bytes)
            return -1;
        dst[o++] = (uint8_t)(w >> 16);
        if (bytes > 1)
            dst[o++] = (uint8_t)(w >> 8);
        if (bytes > 2)
            dst[o++] = (uint8_t)w;
    }
    return (long)o;
}

/* Length of the NUL-terminated @s (our own constants only). */
static size_t cstr_len(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

bool vmm_agent_is(const char *line, size_t len, const char *verb)
{
    size_t n = cstr_len(verb);
    if (len < n || (len > n && line[n] != ' '))
        return false;
    for (size_t i = 0; i < n; i++)
        if (line[i] != verb[i])
            return false;
    return true;
}

bool vmm_agent_field(const char *line, size_t len, const char *key, const char **val, size_t *vlen)
{
    size_t kn = cstr_len(key), i = 0;
    /* Skip the verb; then each word is key=value. */
    while (i < len && line[i] != ' ')
        i++;
    while (i < len) {
        size_t start = ++i, end = start;
        while (end < len && line[end] != ' ')
            end++;
        bool match = end - start > kn && line[start + kn] == '=';
        for (size_t k = 0; match && k < kn; k++)
            match = line[start + k] == key[k];
        if (match) {
            *val = line + start + kn + 1;
            *vlen = end - (start + kn + 1);
            return true;
        }
        i = end;
    }
    return false;
}

int vmm_agent_field_uint(const char *line, size_t len, const char *key, uint32_t min, uint32_t max,
                         uint32_t *out)
{
    const char *v;
    size_t n;
    uint64_t x = 0;
    if (!vmm_agent_field(line, len, key, &v, &n) || n == 0 || n > 10)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if (x < min || x > max)
        return -1;
    *out = (uint32_t)x;
    return 0;
}
