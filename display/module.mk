# display/: the RFB server inside vdi-vmm (libdpy.a), its tests and test tools.
LIBS += dpy
dpy_SRCS := $(wildcard display/*.c)
dpy_CFLAGS := $(call pc_cflags,libvncserver)
vdi-vmm_LIBS += dpy
vdi-vmm_LDLIBS += $(call pc_libs,libvncserver)

UNIT_display_LIBS := dpy common
UNIT_display_LDLIBS := $(call pc_libs,libvncserver)

# tests/integration/test_display.c: the display library against a synthetic framebuffer, probed
# with tests/tools/vncprobe (a libvncclient client).
INTEG_test_display_LIBS := dpy common
INTEG_test_display_LDLIBS := $(call pc_libs,libvncserver)
TOOL_vncprobe_LDLIBS := $(call pc_libs,libvncclient libturbojpeg)
BENCH_TARGETS += $(O)/tests/tools/vncprobe build/testdesk/testdesk.elf
