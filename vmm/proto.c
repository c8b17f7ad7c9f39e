/* vmm/proto.c: the wire names of vdi-vmm's control protocol and the client side's parser
 * (vmm/vmm.h). Both programs link this file: vdi-vmm writes what vdid reads with the same tables,
 * so a name cannot drift between them.
 *
 * The parser treats its input as untrusted (a VMM is a jailed, guest-facing process): every field
 * is type-checked, strings are cut to their buffers, and nothing is kept after the call.
 */
#define VDI_LOG_TAG "vmm"
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"
#include "vmm/internal.h"

static const char *const event_names[VMM_EVENT_COUNT] = {
    [VMM_EVENT_BOOTED] = "booted",         [VMM_EVENT_READY] = "ready",
    [VMM_EVENT_SHUTDOWN] = "shutdown",     [VMM_EVENT_REBOOT] = "reboot",
    [VMM_EVENT_CRASHED] = "crashed",       [VMM_EVENT_AGENT] = "agent",
    [VMM_EVENT_AGENT_LOST] = "agent-lost",
};

static const char *const cmd_names[VMM_CMD_COUNT] = {
    [VMM_CMD_STATUS] = "status",     [VMM_CMD_PAUSE] = "pause", [VMM_CMD_RESUME] = "resume",
    [VMM_CMD_SHUTDOWN] = "shutdown", [VMM_CMD_QUIT] = "quit",   [VMM_CMD_MESSAGE] = "message",
};

static const char *const state_names[] = {
    [VMM_RUN_RUNNING] = "running",
    [VMM_RUN_PAUSED] = "paused",
    [VMM_RUN_STOPPED] = "stopped",
};

const char *vmm_exit_status_str(int status)
{
    switch (status) {
    case VMM_EXIT_POWEROFF:
        return "the guest powered off";
    case VMM_EXIT_FAILURE:
        return "the vmm failed";
    case VMM_EXIT_BADINPUT:
        return "bad vmm arguments";
    case VMM_EXIT_REBOOT:
        return "the guest rebooted";
    case VMM_EXIT_CRASHED:
        return "the guest crashed";
    case VMM_EXIT_STOPPED:
        return "the vmm stopped the guest";
    default:
        return "unknown exit status";
    }
}

const char *vmm_event_name(enum vmm_event ev)
{
    return (unsigned)ev < VMM_EVENT_COUNT ? event_names[ev] : NULL;
}

const char *vmm_cmd_name(enum vmm_cmd cmd)
{
    VDI_ASSERT((unsigned)cmd < VMM_CMD_COUNT);
    return cmd_names[cmd];
}

const char *vmm__run_state_name(enum vmm_run_state st)
{
    return (unsigned)st < VDI_ARRAY_SIZE(state_names) ? state_names[st] : "stopped";
}

int vmm_request_format(enum vmm_cmd cmd, uint32_t timeout_ms, char *buf, size_t n)
{
    int len;
    if (cmd == VMM_CMD_SHUTDOWN)
        len =
            snprintf(buf, n, "{\"cmd\":\"%s\",\"timeout_ms\":%u}\n", vmm_cmd_name(cmd), timeout_ms);
    else
        len = snprintf(buf, n, "{\"cmd\":\"%s\"}\n", vmm_cmd_name(cmd));
    return len < 0 || (size_t)len >= n ? -ENOSPC : len;
}

int vmm_request_format_message(const char *text, unsigned seconds, char *buf, size_t n)
{
    size_t len = strlen(text);
    if (len == 0 || len > VMM_AGENT_TEXT_MAX || seconds == 0 || seconds > VMM_AGENT_MESSAGE_MAX_S)
        return -EINVAL;
    json_t *o = json_pack("{s:s, s:s%, s:i}", "cmd", vmm_cmd_name(VMM_CMD_MESSAGE), "text", text,
                          len, "seconds", (json_int_t)seconds);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s)
        return -EINVAL; /* not UTF-8 */
    size_t sl = strlen(s);
    int rc = sl + 1 < n ? (int)(sl + 1) : -ENOSPC;
    if (rc > 0) {
        memcpy(buf, s, sl);
        buf[sl] = '\n';
        buf[sl + 1] = 0;
    }
    free(s);
    return rc;
}

/* Copy an optional string member into @buf; -EPROTO when present but not a string. */
static int get_str(json_t *o, const char *key, char *buf, size_t n)
{
    json_t *v = json_object_get(o, key);
    buf[0] = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -EPROTO;
    snprintf(buf, n, "%s", json_string_value(v));
    return 0;
}

/* An optional non-negative integer member; -EPROTO when of another type. */
static int get_uint(json_t *o, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -EPROTO;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* The optional "agent" object of a status reply (null or absent: no agent port). */
static int parse_agent(json_t *a, struct vmm_agent_status *ag)
{
    uint64_t hb, ago;
    memset(ag, 0, sizeof(*ag));
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_object(a))
        return -EPROTO;
    json_t *c = json_object_get(a, "connected"), *u = json_object_get(a, "up");
    if ((c && !json_is_boolean(c)) || (u && !json_is_boolean(u)) ||
        get_str(a, "name", ag->name, sizeof(ag->name)) < 0 ||
        get_str(a, "caps", ag->caps, sizeof(ag->caps)) < 0 || get_uint(a, "heartbeat_s", &hb) < 0 ||
        get_uint(a, "last_ms_ago", &ago) < 0 || hb > VMM_AGENT_HB_MAX_S)
        return -EPROTO;
    ag->present = true;
    ag->connected = json_is_true(c);
    ag->up = json_is_true(u);
    ag->heartbeat_s = (unsigned)hb;
    ag->last_ms_ago = ago;
    return 0;
}

static int parse_status(json_t *o, struct vmm_status *st)
{
    const char *state = json_string_value(json_object_get(o, "state"));
    json_t *ready = json_object_get(o, "ready");
    json_t *rss = json_object_get(o, "rss_kib");
    uint64_t vcpus;
    size_t i;

    memset(st, 0, sizeof(*st));
    for (i = 0; i < VDI_ARRAY_SIZE(state_names); i++)
        if (strcmp(state, state_names[i]) == 0)
            break;
    if (i == VDI_ARRAY_SIZE(state_names))
        return -EPROTO;
    st->state = (enum vmm_run_state)i;
    if (ready && !json_is_boolean(ready))
        return -EPROTO;
    st->ready = json_is_true(ready);
    if (get_uint(o, "uptime_ms", &st->uptime_ms) < 0 || get_uint(o, "vcpus", &vcpus) < 0 ||
        get_uint(o, "memory_mib", &st->memory_mib) < 0 || vcpus > UINT32_MAX)
        return -EPROTO;
    st->vcpus = (unsigned)vcpus;
    if (rss && !json_is_integer(rss))
        return -EPROTO;
    st->rss_kib = rss ? (int64_t)json_integer_value(rss) : -1;
    return parse_agent(json_object_get(o, "agent"), &st->agent);
}

int vmm_msg_parse(const char *line, size_t len, struct vmm_msg *out)
{
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *v;
    int rc = -EPROTO;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(o))
        goto out;
    if ((v = json_object_get(o, "event"))) {
        if (!json_is_string(v))
            goto out;
        out->kind = VMM_MSG_EVENT;
        out->event = VMM_EVENT_UNKNOWN;
        for (size_t i = 0; i < VMM_EVENT_COUNT; i++)
            if (strcmp(json_string_value(v), event_names[i]) == 0)
                out->event = (enum vmm_event)i;
        rc = get_str(o, "reason", out->reason, sizeof(out->reason));
        goto out;
    }
    v = json_object_get(o, "ok");
    if (!json_is_boolean(v))
        goto out;
    out->kind = VMM_MSG_REPLY;
    out->ok = json_is_true(v);
    if ((v = json_object_get(o, "id")) && json_is_integer(v)) {
        out->has_id = true;
        out->id = (int64_t)json_integer_value(v);
    }
    if (!out->ok) {
        rc = get_str(o, "error", out->error, sizeof(out->error));
        goto out;
    }
    if ((v = json_object_get(o, "guest_notified"))) {
        if (!json_is_boolean(v))
            goto out;
        out->guest_notified = json_is_true(v);
    }
    rc = 0;
    if (json_is_string(json_object_get(o, "state"))) {
        rc = parse_status(o, &out->status);
        out->has_status = rc == 0;
    }
out:
    json_decref(o);
    return rc;
}
