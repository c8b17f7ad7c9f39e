# golden-images/testdesk/module.mk: testdesk, the freestanding x86-64 test guest (a PVH ELF).
# Built with the system gcc whatever CC/SAN say: the guest is not a host program, and the VMM,
# display and broker tests all boot this one fixed path.
TESTDESK_CC ?= gcc
TESTDESK_OUT := build/testdesk
# vmm/agent-wire.c is vdi-vmm's half of the guest agent's wire format, freestanding on purpose:
# testdesk's agent (console.c) speaks it with the very same code.
TESTDESK_SRCS := $(wildcard golden-images/testdesk/*.c) golden-images/testdesk/boot.S
TESTDESK_OBJS := $(patsubst golden-images/testdesk/%,$(TESTDESK_OUT)/%.o,$(TESTDESK_SRCS)) \
    $(TESTDESK_OUT)/vmm-agent-wire.c.o
TESTDESK_CFLAGS := -std=gnu11 -O2 -g -I. $(WARN) -Werror -ffreestanding -fno-builtin \
    -nostdlib -mgeneral-regs-only -mno-red-zone -fno-pic -fno-pie -mcmodel=small \
    -fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables \
    -fno-tree-loop-distribute-patterns -fcf-protection=none -mno-popcnt --param=min-pagesize=0 -ffile-prefix-map=$(CURDIR)=. -MMD -MP
TESTDESK_LDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,max-page-size=4096 \
    -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments -Wl,-T,golden-images/testdesk/testdesk.ld

.PHONY: testdesk
testdesk: $(TESTDESK_OUT)/testdesk.elf

$(TESTDESK_OUT)/testdesk.elf: $(TESTDESK_OBJS) golden-images/testdesk/testdesk.ld
	@echo "  LD      $@"
	$(Q)$(TESTDESK_CC) $(TESTDESK_CFLAGS) $(TESTDESK_LDFLAGS) -o $@ $(TESTDESK_OBJS)

$(TESTDESK_OUT)/%.c.o: golden-images/testdesk/%.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(TESTDESK_CC) $(TESTDESK_CFLAGS) -c -o $@ $<

$(TESTDESK_OUT)/vmm-agent-wire.c.o: vmm/agent-wire.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(TESTDESK_CC) $(TESTDESK_CFLAGS) -c -o $@ $<

$(TESTDESK_OUT)/%.S.o: golden-images/testdesk/%.S
	@mkdir -p $(@D)
	@echo "  AS      $<"
	$(Q)$(TESTDESK_CC) $(TESTDESK_CFLAGS) -c -o $@ $<

-include $(TESTDESK_OBJS:.o=.d)

EXTRA_TEST_DEPS += $(TESTDESK_OUT)/testdesk.elf
DEMO_TARGETS += testdesk

# The test guest's network stack is also a host library: vdid's stand-in VMM drives a real tap
# with it (tests/tools/vdid_fakevmm.c).
LIBS += tdnet
tdnet_SRCS := golden-images/testdesk/netstack.c

# ... and so is its patch agent: the stand-in VMM runs patches on a real qcow2 overlay with it.
LIBS += tdpatch
tdpatch_SRCS := golden-images/testdesk/patch.c
