/* vmm/agent.c: the host side of the guest agent protocol (docs/agent-protocol.md), apart from
 * its transport (virtio-console.c).
 *
 * The guest's agent is as untrusted as the rest of the guest: it may send anything, as fast as
 * it likes, or nothing at all. So a line is kept only up to VMM_AGENT_MAX_LINE (the rest of a
 * longer one is dropped and counted), its content is never logged (only our own summary of a
 * valid hello: a name and capabilities checked against small alphabets), replies and messages
 * for a guest that stops reading stop at VMM_AGENT_OUT_MAX, and unknown verbs are ignored (a
 * newer agent may know more). The watchdog counts any line as a sign of life: an agent that
 * announced a heartbeat period and then stays silent for VMM_AGENT_HB_MISSED periods is lost
 * (the `agent-lost` event) until its next line (`agent` again).
 */
#define VDI_LOG_TAG "vmm"
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"

void vmm__agent_init(struct vmm_agent *a, vmm_vm_t *vm)
{
    memset(a, 0, sizeof(*a));
    a->vm = vm;
    a->in = (vdi_buf_t)VDI_BUF_INIT;
    a->out = (vdi_buf_t)VDI_BUF_INIT;
}

void vmm__agent_fini(struct vmm_agent *a)
{
    vdi_buf_free(&a->in);
    vdi_buf_free(&a->out);
}

static void forget_agent(struct vmm_agent *a)
{
    a->hello = a->lost = a->skipping = false;
    a->name[0] = a->caps[0] = 0;
    a->hb_s = 0;
    vdi_buf_reset(&a->in);
    vdi_buf_reset(&a->out);
}

void vmm__agent_opened(struct vmm_agent *a, bool open, uint64_t now_ms)
{
    if (open == a->open)
        return;
    if (!open && a->hello && !a->lost)
        vmm__vm_event(a->vm, VMM_EVENT_AGENT_LOST, "the agent closed its port");
    forget_agent(a);
    a->open = open;
    if (open) {
        char hello[64];
        int n = snprintf(hello, sizeof(hello), "hello v=%d host=vdi-vmm\n", VMM_AGENT_VERSION);
        if (vdi_buf_append(&a->out, hello, (size_t)n) < 0)
            VDI_LOG_WARN_RL("vm=%s agent: out of memory for the hello", vmm__vm_name(a->vm));
        a->last_ms = now_ms;
    }
}

/* @v (@n bytes) is 1..@max characters, each a lowercase letter, a digit or one of @extra. */
static bool word_ok(const char *v, size_t n, size_t max, const char *extra)
{
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') ||
                  (v[i] != 0 && strchr(extra, v[i]) != NULL);
        if (!ok)
            return false;
    }
    return true;
}

static void on_hello(struct vmm_agent *a, const char *line, size_t len)
{
    const char *name, *caps = "";
    size_t nlen, clen = 0;
    uint32_t v, hb;
    if (vmm_agent_field_uint(line, len, "v", 1, UINT32_MAX, &v) < 0 ||
        !vmm_agent_field(line, len, "agent", &name, &nlen) ||
        !word_ok(name, nlen, sizeof(a->name) - 1, "._-") ||
        vmm_agent_field_uint(line, len, "hb", VMM_AGENT_HB_MIN_S, VMM_AGENT_HB_MAX_S, &hb) < 0 ||
        (vmm_agent_field(line, len, "caps", &caps, &clen) && clen &&
         !word_ok(caps, clen, sizeof(a->caps) - 1, ",-"))) {
        a->bad_lines++;
        VDI_LOG_WARN_RL("vm=%s agent: a hello without a valid v, agent, hb or caps field ignored "
                        "(%" PRIu64 " bad lines so far)",
                        vmm__vm_name(a->vm), a->bad_lines);
        return;
    }
    memcpy(a->name, name, nlen);
    a->name[nlen] = 0;
    memcpy(a->caps, caps, clen);
    a->caps[clen] = 0;
    a->hb_s = hb;
    a->hello = true;
    a->lost = false;
    char why[160];
    snprintf(why, sizeof(why), "%s v=%" PRIu32 " heartbeat=%us caps=%s", a->name, v, a->hb_s,
             a->caps[0] ? a->caps : "none");
    VDI_LOG_INFO("vm=%s guest agent up: %s", vmm__vm_name(a->vm), why);
    vmm__vm_event(a->vm, VMM_EVENT_AGENT, why);
}

static void on_line(struct vmm_agent *a, const char *line, size_t len, uint64_t now_ms)
{
    if (len && line[len - 1] == '\r')
        len--;
    if (len == 0)
        return;
    a->lines++;
    a->last_ms = now_ms;
    if (vmm_agent_is(line, len, "hello")) {
        on_hello(a, line, len);
        return;
    }
    if (a->hello && a->lost) {
        a->lost = false;
        char why[96];
        snprintf(why, sizeof(why), "%s is back", a->name);
        VDI_LOG_INFO("vm=%s guest agent %s", vmm__vm_name(a->vm), why);
        vmm__vm_event(a->vm, VMM_EVENT_AGENT, why);
    }
    /* `heartbeat` needs nothing more; other verbs are for later versions. */
}

void vmm__agent_input(struct vmm_agent *a, const void *data, size_t len, uint64_t now_ms)
{
    const char *p = data, *end = p + len;
    if (!a->open)
        return;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        if (a->skipping) {
            if (nl)
                a->skipping = false;
        } else if (a->in.len + n + (nl ? 1 : 0) > VMM_AGENT_MAX_LINE) {
            a->overlong++;
            VDI_LOG_WARN_RL("vm=%s agent: a line longer than %u bytes dropped (%" PRIu64 " so far)",
                            vmm__vm_name(a->vm), VMM_AGENT_MAX_LINE, a->overlong);
            vdi_buf_reset(&a->in);
            a->skipping = !nl;
        } else if (nl && a->in.len == 0) {
            on_line(a, p, n, now_ms); /* the common case: a whole line in one piece */
        } else if (vdi_buf_append(&a->in, p, n) < 0) {
            VDI_LOG_WARN_RL("vm=%s agent: out of memory; a line dropped", vmm__vm_name(a->vm));
            vdi_buf_reset(&a->in);
            a->skipping = !nl;
        } else if (nl) {
            on_line(a, (const char *)a->in.data, a->in.len, now_ms);
            vdi_buf_reset(&a->in);
        }
        p += n + (nl ? 1 : 0);
    }
}

uint64_t vmm__agent_tick(struct vmm_agent *a, uint64_t now_ms)
{
    if (!a->open || !a->hello || a->lost)
        return 0;
    uint64_t deadline = a->last_ms + (uint64_t)VMM_AGENT_HB_MISSED * a->hb_s * 1000;
    if (now_ms < deadline)
        return deadline - now_ms;
    a->lost = true;
    char why[160];
    snprintf(why, sizeof(why), "no heartbeat for %" PRIu64 " s from %s (one every %u s)",
             (now_ms - a->last_ms) / 1000, a->name, a->hb_s);
    VDI_LOG_WARN("vm=%s guest agent lost: %s", vmm__vm_name(a->vm), why);
    vmm__vm_event(a->vm, VMM_EVENT_AGENT_LOST, why);
    return 0;
}

/* Whether the comma-separated @list holds @cap. */
static bool has_cap(const char *list, const char *cap)
{
    size_t n = strlen(cap);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && memcmp(p, cap, n) == 0)
            return true;
        p += len + (e ? 1 : 0);
    }
    return false;
}

int vmm__agent_queue_message(struct vmm_agent *a, const char *text, unsigned seconds)
{
    size_t n = strlen(text);
    if (n == 0 || n > VMM_AGENT_TEXT_MAX || seconds == 0 || seconds > VMM_AGENT_MESSAGE_MAX_S)
        return -EINVAL;
    if (!a->open || !a->hello)
        return -ENOTCONN;
    if (!has_cap(a->caps, "message"))
        return -EOPNOTSUPP;
    char head[48];
    int hl = snprintf(head, sizeof(head), "message secs=%u text64=", seconds);
    size_t need = (size_t)hl + vmm_b64_len(n) + 1;
    if (a->out.len + need > VMM_AGENT_OUT_MAX)
        return -ENOBUFS;
    char *line = vdi_trymalloc(need);
    if (!line)
        return -ENOMEM;
    memcpy(line, head, (size_t)hl);
    size_t o = (size_t)hl + vmm_b64_encode(text, n, line + hl);
    line[o++] = '\n';
    int err = vdi_buf_append(&a->out, line, o);
    free(line);
    return err < 0 ? -ENOMEM : 0;
}

void vmm__agent_status(const struct vmm_agent *a, uint64_t now_ms, struct vmm_agent_status *st)
{
    memset(st, 0, sizeof(*st));
    st->present = true;
    st->connected = a->open;
    st->up = a->open && a->hello && !a->lost;
    snprintf(st->name, sizeof(st->name), "%s", a->name);
    snprintf(st->caps, sizeof(st->caps), "%s", a->caps);
    st->heartbeat_s = a->hb_s;
    st->last_ms_ago = a->open && now_ms > a->last_ms ? now_ms - a->last_ms : 0;
}
