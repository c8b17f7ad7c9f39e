// fuzz-srcs: vmm/control.c common/*.c
// fuzz-libs: -ljansson
/* libFuzzer target for vmm/control.c: each input is a sequence of request lines from a control
 * client (hostile JSON, huge numbers, nesting, unknown commands) handled against a fake VM. Every
 * line must get exactly one reply that is itself a JSON object with an "ok" member. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"

struct vmm_vm {
    bool paused, stopping;
};

const char *vmm__vm_name(const vmm_vm_t *vm)
{
    (void)vm;
    return "fuzz";
}
bool vmm__vm_paused(const vmm_vm_t *vm)
{
    return vm->paused;
}
void vmm__vm_pause(vmm_vm_t *vm)
{
    vm->paused = true;
}
void vmm__vm_resume(vmm_vm_t *vm)
{
    vm->paused = false;
}
unsigned vmm__vm_vcpus(const vmm_vm_t *vm)
{
    (void)vm;
    return 2;
}
uint64_t vmm__ram_size(const vmm_vm_t *vm)
{
    (void)vm;
    return 512ULL << 20;
}
uint64_t vmm__vm_uptime_ms(const vmm_vm_t *vm)
{
    (void)vm;
    return 1234;
}
int vmm__vm_power_button(vmm_vm_t *vm)
{
    (void)vm;
    return -ENOTSUP;
}
void vmm__vm_request_stop(vmm_vm_t *vm, enum vmm_stop_reason reason, const char *why)
{
    (void)reason;
    (void)why;
    vm->stopping = true;
}
int vmm__vm_stop_fd(const vmm_vm_t *vm)
{
    (void)vm;
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static vmm_control_t *ctl;
    struct vmm_vm vm = {0};
    if (!ctl && vmm__control_create(NULL, &ctl) < 0)
        abort();
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = 0;
    for (char *line = buf, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        char *reply = NULL;
        vmm__control_handle(ctl, &vm, line, &reply);
        json_t *r = json_loads(reply, 0, NULL);
        if (!r || !json_is_object(r) || !json_is_boolean(json_object_get(r, "ok")))
            abort();
        json_decref(r);
        free(reply);
    }
    free(buf);
    return 0;
}
