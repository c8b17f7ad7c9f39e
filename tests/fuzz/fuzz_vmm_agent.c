// fuzz-srcs: vmm/agent.c vmm/agent-wire.c common/*.c
// fuzz-libs:
/* libFuzzer target for the host side of the guest agent protocol (vmm/agent.c, agent-wire.c):
 * the input is what a hostile guest agent writes on its port, cut into writes with clock steps
 * by the first byte of each record, with port closes and messages from the host in between.
 * Whatever it sends, a partial line never grows past VMM_AGENT_MAX_LINE, a name or capability
 * list the host reports holds only the characters a hello may carry, and every base64 field
 * decodes or is refused within its buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"

struct vmm_vm {
    int events;
};

void vmm__vm_event(vmm_vm_t *vm, enum vmm_event ev, const char *reason)
{
    (void)ev;
    if (!reason)
        abort();
    vm->events++;
}

const char *vmm__vm_name(const vmm_vm_t *vm)
{
    (void)vm;
    return "fuzz";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_word(const char *s, const char *extra)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || strchr(extra, *s)))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct vmm_vm vm;
    struct vmm_agent a;
    struct vmm_agent_status st;
    uint64_t now = 0;
    uint8_t dec[64];

    vmm__agent_init(&a, &vm);
    vmm__agent_opened(&a, true, now);
    /* Records: [op][length][length bytes]. */
    while (size >= 2) {
        uint8_t op = data[0];
        size_t n = VDI_MIN((size_t)data[1] * 8, size - 2);
        const uint8_t *p = data + 2;
        now += 100ull * (op >> 3);
        switch (op & 7) {
        case 0:
            vmm__agent_opened(&a, !a.open, now);
            break;
        case 1:
            if (n && n <= VMM_AGENT_TEXT_MAX) {
                char *t = malloc(n + 1);
                memcpy(t, p, n);
                t[n] = 0;
                (void)vmm__agent_queue_message(&a, t, 1 + (op >> 3));
                free(t);
            }
            break;
        case 2:
            (void)vmm_b64_decode((const char *)p, n, dec, sizeof(dec));
            break;
        case 3:
            (void)vmm__agent_tick(&a, now);
            break;
        default:
            vmm__agent_input(&a, p, n, now);
            break;
        }
        if (a.in.len > VMM_AGENT_MAX_LINE || a.out.len > VMM_AGENT_OUT_MAX)
            abort();
        data += 2 + n;
        size -= 2 + n;
    }
    vmm__agent_status(&a, now, &st);
    check_word(st.name, "._-");
    check_word(st.caps, ",-");
    if (st.heartbeat_s > VMM_AGENT_HB_MAX_S)
        abort();
    vmm__agent_fini(&a);
    return 0;
}
