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
