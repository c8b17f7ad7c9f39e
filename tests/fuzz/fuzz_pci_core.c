// fuzz-srcs: vmm/io.c vmm/vm.c vmm/iothread.c vmm/pci.c vmm/msix.c vmm/virtq.c vmm/virtio-pci.c vmm/virtio-blk.c vmm/virtio-rng.c vmm/virtio-input.c vmm/virtio-net.c vmm/virtio-console.c vmm/agent.c vmm/agent-wire.c vmm/dev-bochs.c vmm/boot.c vmm/tables.c vmm/devices.c vmm/dev-uart.c vmm/dev-legacy.c vmm/serial-sink.c vmm/decompress.c vmm/proto.c golden-images/*.c common/*.c
// fuzz-libs: -lz -lzstd -llzma -llz4 -ljansson -lcrypto
/* libFuzzer target for the PCI side of vdi-vmm on the real core: port and MMIO dispatch through
 * vmm/io.c (the region tables vCPUs look up, BAR moves and decode toggles), pci.c's config space
 * and the virtio transport and devices, on a VM of vm.c's without KVM (no guest RAM: rings point
 * nowhere, and every KVM call fails, as it may on a real host). The input is a program of config
 * accesses through 0xcf8/0xcfc and MMIO accesses anywhere in the PCI window. Nothing may crash,
 * leak or trip a sanitizer; tests/fuzz/fuzz_virtio_pci.c drives the same devices on the unit
 * tests' fake core, with RAM. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/vmm/bare_vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *disk_path(void)
{
    static char path[64];
    if (!path[0]) {
        snprintf(path, sizeof(path), "/tmp/vdi-fuzz-core-disk.%d", (int)getpid());
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
            abort();
        close(fd);
    }
    return path;
}

static uint64_t take(const uint8_t **p, size_t *left, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        v |= (uint64_t)(*left ? **p : 0) << (8 * i);
        if (*left) {
            (*p)++;
            (*left)--;
        }
    }
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t lens[4] = {1, 2, 4, 8};
    struct vmm_config cfg = {.rng = true, .input = true, .agent = true, .fb_width = 0};
    vmm_vm_t *vm = bare_vm_new();
    vdi_log_set_level(VDI_LOG_LEVEL_ERR);
    if (vmm__iothread_init(vm) < 0) /* devices register their fds (not started: no thread) */
        abort();
    cfg.disks[0].path = disk_path();
    cfg.ndisks = 1;
    if (vmm__pci_setup(vm, &cfg) < 0)
        abort(); /* the machine must come up: a fuzz run that exercises nothing finds nothing */
    {
        for (unsigned steps = 0; size && steps < 1024; steps++) {
            uint8_t op = (uint8_t)take(&data, &size, 1);
            uint32_t len = lens[op >> 6];
            uint64_t v = take(&data, &size, 8);
            if ((op & 3) == 0) { /* config address */
                uint32_t a = 0x80000000u | ((uint32_t)take(&data, &size, 2) & 0xfffc);
                vmm__io_dispatch(vm, VMM_IO_PIO, 0xcf8, &a, 4, true);
            } else if ((op & 3) == 1) { /* config data */
                unsigned off = (unsigned)take(&data, &size, 1) & 3;
                if (len == 8)
                    len = 4;
                vmm__io_dispatch(vm, VMM_IO_PIO, 0xcfc + (off & (4 - len)), &v, len, (op & 4) != 0);
            } else { /* MMIO in the PCI window */
                uint64_t gpa = 0xc0000000ull + (take(&data, &size, 4) % 0x3ec00000ull);
                vmm__io_dispatch(vm, VMM_IO_MMIO, gpa & ~(uint64_t)(len - 1), &v, len,
                                 (op & 4) != 0);
            }
        }
    }
    vmm__pci_teardown(vm);
    vmm__vm_destroy(vm);
    return 0;
}
