# golden-images/: the disk image library (raw, qcow2), the image catalogue and `vdictl image`.
LIBS += img
img_SRCS := $(wildcard golden-images/*.c)
UNIT_golden-images_LIBS := img common
UNIT_golden-images_LDLIBS := -lz -lzstd
vdi-vmm_LDLIBS += -lz -lzstd
vdi-vmm_LIBS += img
TOOL_imgio_LIBS := img common
TOOL_imgio_LDLIBS := -lz -lzstd
# (no comma: the value passes through $(call ...) in the top Makefile)
golden-images_test_qcow2_LDFLAGS := -Xlinker --wrap=pwrite
