// fuzz-srcs: vmm/proto.c common/*.c
// fuzz-libs: -ljansson
/* libFuzzer target for vmm_msg_parse (vmm/proto.c), the parser vdid runs on every line a VMM
 * writes to its control socket. A VMM is guest-facing and jailed: its lines are untrusted. The
 * parser must never crash, must return 0 or -EPROTO, and on success fill a message whose strings
 * are terminated within their buffers. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/vmm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vmm_msg m;
    int rc = vmm_msg_parse((const char *)data, size, &m);
    if (rc != 0 && rc != -EPROTO)
        abort();
    if (rc == 0) {
        if (strnlen(m.reason, sizeof(m.reason)) == sizeof(m.reason) ||
            strnlen(m.error, sizeof(m.error)) == sizeof(m.error))
            abort();
        if (m.kind == VMM_MSG_EVENT && m.event > VMM_EVENT_UNKNOWN)
            abort();
    }
    return 0;
}
