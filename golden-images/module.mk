# golden-images/: the disk image library (raw, qcow2), the image catalogue and `vdictl image`.
LIBS += img
img_SRCS := $(wildcard golden-images/*.c)
UNIT_golden-images_LIBS := img common
UNIT_golden-images_LDLIBS :=
vdi-vmm_LIBS += img
