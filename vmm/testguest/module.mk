# vmm/testguest/: hostile.elf, a tiny 32-bit PVH guest that misprograms the VMM's PCI devices
# (tests/integration/test_vmm_devices_hostile.sh boots it). Built with the system gcc whatever
# CC/SAN say: it is a guest, not a host program.
VMMDEV_GUEST_OUT := build/vmm-testguest
VMMDEV_GUEST_CFLAGS := -m32 -std=gnu11 -O2 -g $(WARN) -Werror -ffreestanding -fno-builtin \
    -nostdlib -mgeneral-regs-only -fno-pic -fno-pie -fno-stack-protector \
    -fno-asynchronous-unwind-tables -fcf-protection=none
VMMDEV_GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-Ttext-segment=0x100000 \
    -Wl,-e,_start -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments

$(VMMDEV_GUEST_OUT)/hostile.elf: vmm/testguest/hostile.c vmm/testguest/module.mk
	@mkdir -p $(@D)
	@echo "  GUEST   $@"
	$(Q)gcc $(VMMDEV_GUEST_CFLAGS) $(VMMDEV_GUEST_LDFLAGS) -o $@ $<

EXTRA_TEST_DEPS += $(VMMDEV_GUEST_OUT)/hostile.elf
