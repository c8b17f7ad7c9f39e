# golden-images/: the disk image library (raw, qcow2), the image catalogue and `vdictl image`.
# Included before server/ and vmm/, whose module.mk append (+=) to the programs' libraries.
LIBS += img
img_SRCS := $(wildcard golden-images/*.c)
IMG_LDLIBS := -lz -lzstd -ljansson -lcrypto

vdictl_LIBS += img
vdictl_LDLIBS += $(IMG_LDLIBS)
vdi-vmm_LIBS += img
vdi-vmm_LDLIBS += $(IMG_LDLIBS)

UNIT_golden-images_LIBS := img common
UNIT_golden-images_LDLIBS := $(IMG_LDLIBS)
# (no comma: the value passes through $(call ...) in the top Makefile)
golden-images_test_qcow2_LDFLAGS := -Xlinker --wrap=pwrite
TOOL_imgio_LIBS := img common
TOOL_imgio_LDLIBS := $(IMG_LDLIBS)

# `make testdesk` also builds testdesk's golden system disk, written by our own qcow2 writer:
# build/testdesk/system.qcow2 (64 MiB; sectors 0..8191 hold testdesk's TDSK pattern 0x47), so
#   vdictl image import testdesk build/testdesk/system.qcow2 --kernel build/testdesk/testdesk.elf
# gives an importable golden image. The tool is built with the default flags of this build.
IMG_TESTDISK := build/testdesk/system.qcow2
IMG_MKTESTDISK := $(O)/golden-images/tools/mktestdisk
IMG_MKTESTDISK_OBJ := $(O)/obj/golden-images/tools/mktestdisk.o
.PHONY: testdesk
testdesk: $(IMG_TESTDISK)
$(IMG_TESTDISK): $(IMG_MKTESTDISK)
	@mkdir -p $(@D)
	@echo "  GEN     $@"
	$(Q)$(IMG_MKTESTDISK) $@ 64M 8192 0x47
$(IMG_MKTESTDISK): $(IMG_MKTESTDISK_OBJ) $(O)/lib/libimg.a $(O)/lib/libcommon.a
	$(call link_cmd,$@,$(IMG_MKTESTDISK_OBJ),img common,$(IMG_LDLIBS),)
-include $(IMG_MKTESTDISK_OBJ:.o=.d)
EXTRA_TEST_DEPS += $(IMG_TESTDISK)

# bench/images: the timing tool run.sh drives.
IMG_BENCH := $(O)/bench/images/imgbench
$(IMG_BENCH): $(O)/obj/bench/images/imgbench.o $(O)/lib/libimg.a $(O)/lib/libcommon.a
	$(call link_cmd,$@,$(O)/obj/bench/images/imgbench.o,img common,$(IMG_LDLIBS),)
-include $(O)/obj/bench/images/imgbench.d
BENCH_TARGETS += $(IMG_BENCH) $(IMG_MKTESTDISK)
