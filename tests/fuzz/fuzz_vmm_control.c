// fuzz-srcs: vmm/control.c vmm/proto.c common/*.c
// fuzz-libs: -ljansson
/* libFuzzer target for vmm/control.c: each input is a sequence of request lines from a control
 * client (hostile JSON, huge numbers, nesting, unknown commands) handled against a stand-in
 * machine. Every line must get exactly one reply that is itself a JSON object with an "ok"
 * member, and vdid's parser (vmm_msg_parse) must read every reply as a reply. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/vmm.h"

struct machine {
    bool paused, stopping;
};

static void m_status(void *ctx, struct vmm_status *st)
{
    struct machine *m = ctx;
    st->state = m->paused ? VMM_RUN_PAUSED : VMM_RUN_RUNNING;
    st->uptime_ms = 1234;
    st->vcpus = 2;
    st->memory_mib = 512;
}
static void m_pause(void *ctx)
{
    ((struct machine *)ctx)->paused = true;
}
static void m_resume(void *ctx)
{
    ((struct machine *)ctx)->paused = false;
}
static bool m_paused(void *ctx)
{
    return ((struct machine *)ctx)->paused;
}
static int m_power_button(void *ctx)
{
    (void)ctx;
    return -ENOTSUP;
}
static void m_request_stop(void *ctx, const char *why)
{
    (void)why;
    ((struct machine *)ctx)->stopping = true;
}
static const struct vmm_control_ops ops = {
    .status = m_status,
    .pause = m_pause,
    .resume = m_resume,
    .paused = m_paused,
    .power_button = m_power_button,
    .request_stop = m_request_stop,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static vmm_control_t *ctl;
    struct machine m = {0};
    if (!ctl && vmm_control_create(NULL, &ctl) < 0)
        abort();
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = 0;
    for (char *line = buf, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        char *reply = NULL;
        vmm_control_handle(ctl, (size & 1) ? NULL : &ops, &m, line, &reply);
        json_t *r = json_loads(reply, 0, NULL);
        if (!r || !json_is_object(r) || !json_is_boolean(json_object_get(r, "ok")))
            abort();
        json_decref(r);
        struct vmm_msg msg;
        if (vmm_msg_parse(reply, strlen(reply), &msg) != 0 || msg.kind != VMM_MSG_REPLY)
            abort();
        free(reply);
    }
    free(buf);
    return 0;
}
