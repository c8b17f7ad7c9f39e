/* vmm/devices.c: every device of the machine, in order. Legacy ISA devices first (fixed ports
 * and IRQs), then the PCI bus and its devices (vmm__pci_setup, pci.c). */
#define VDI_LOG_TAG "vmm"
#include "vmm/internal.h"

int vmm__devices_setup(vmm_vm_t *vm, const struct vmm_config *cfg)
{
    int err;
    if ((err = vmm__uart_setup(vm, cfg)) < 0) /* COM1, IRQ 4 */
        return err;
    if ((err = vmm__legacy_setup(vm)) < 0) /* i8042, port 0x92, RTC, ACPI PM, port 0x80 */
        return err;
    if ((err = vmm__pci_setup(vm, cfg)) < 0) /* host bridge, display, input, disks, rng, net */
        return err;
    return 0;
}

void vmm__devices_teardown(vmm_vm_t *vm)
{
    vmm__pci_teardown(vm);
}
