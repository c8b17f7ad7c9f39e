// fuzz-srcs: vmm/virtq.c common/*.c
// fuzz-libs:
/* libFuzzer target for vmm/virtq.c: the input is a guest's memory (descriptor table, rings,
 * indirect tables, all hostile) plus a few bytes choosing the queue's size and ring addresses.
 * Every chain the walker accepts must lie inside guest RAM, and the walk must end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/pci-internal.h"

#define RAM_SIZE (64u << 10)

struct vmm_vm {
    uint8_t *ram;
};

void *vmm__gpa_ptr(vmm_vm_t *vm, uint64_t gpa, uint64_t len)
{
    if (gpa > RAM_SIZE || len > RAM_SIZE - gpa)
        return NULL;
    return vm->ram + gpa;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t ram[RAM_SIZE];
    static struct vmm_virtq_req req;
    struct vmm_vm vm = {ram};
    struct vmm_virtq q;
    uint8_t ctl[8] = {0};

    memcpy(ctl, data, size < sizeof(ctl) ? size : sizeof(ctl));
    memset(ram, 0, sizeof(ram));
    if (size > sizeof(ctl))
        memcpy(ram, data + sizeof(ctl), VDI_MIN(size - sizeof(ctl), sizeof(ram)));

    memset(&q, 0, sizeof(q));
    q.vm = &vm;
    q.size = (uint16_t)(1u << (ctl[0] % 10)); /* 1..512: 512 must be refused */
    q.indirect = ctl[1] & 1;
    /* Ring addresses in 16-byte steps (sometimes misaligned, sometimes past the end). */
    q.desc_gpa = (uint64_t)ctl[2] << 8 | (ctl[1] & 0x80 ? 8 : 0);
    q.avail_gpa = (uint64_t)ctl[3] << 8 | (ctl[4] & 1);
    q.used_gpa = (uint64_t)ctl[4] << 8;
    if (ctl[5] == 0xff)
        q.used_gpa = RAM_SIZE - 4;
    if (vmm__virtq_start(&q) != 0)
        return 0;
    for (unsigned n = 0; n < 64; n++) {
        int r = vmm__virtq_pop(&q, &req);
        if (r <= 0)
            break;
        /* Every accepted buffer lies in RAM. */
        for (unsigned k = 0; k < req.nout; k++)
            if ((uint8_t *)req.out[k].iov_base < ram ||
                (uint8_t *)req.out[k].iov_base + req.out[k].iov_len > ram + RAM_SIZE)
                abort();
        for (unsigned k = 0; k < req.nin; k++)
            if ((uint8_t *)req.in[k].iov_base < ram ||
                (uint8_t *)req.in[k].iov_base + req.in[k].iov_len > ram + RAM_SIZE)
                abort();
        uint8_t buf[64];
        size_t got = vmm__virtq_req_read(&req, ctl[6], buf, sizeof(buf));
        vmm__virtq_req_write(&req, ctl[7], buf, got);
        vmm__virtq_push(&q, req.head, (uint32_t)got);
    }
    (void)vmm__virtq_should_notify(&q);
    return 0;
}
