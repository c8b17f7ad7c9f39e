# vmm/: vdi-vmm, the per-desktop KVM virtual machine monitor. Every vmm/*.c but main.c goes into
# libvmm.a (so unit tests can link it); main.c is the program. Other modules (display/,
# golden-images/) append to vdi-vmm_LIBS / vdi-vmm_LDLIBS with +=, so keep += here too.
LIBS += vmm
vmm_SRCS := $(filter-out vmm/main.c,$(wildcard vmm/*.c))
PROGS += vdi-vmm
vdi-vmm_SRCS := vmm/main.c
vdi-vmm_LIBS += vmm common
vdi-vmm_LDLIBS +=
UNIT_vmm_LIBS := vmm img common
vmm_CFLAGS += $(call pc_cflags,jansson zlib liblzma libzstd liblz4 libcrypto)
vdi-vmm_LDLIBS += $(call pc_libs,jansson zlib liblzma libzstd liblz4 libcrypto)
UNIT_vmm_LDLIBS += $(call pc_libs,jansson zlib liblzma libzstd liblz4 libcrypto)
# The control-socket client the integration suites use.
TOOL_vmm-ctl_LIBS := common
# test_virtio_blk makes disk I/O fail on demand.
vmm_test_virtio_blk_LDFLAGS := -Xlinker --wrap=pread -Xlinker --wrap=pwrite -Xlinker --wrap=fdatasync
