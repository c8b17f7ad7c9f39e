# vmm/: vdi-vmm, the per-desktop KVM virtual machine monitor.
PROGS += vdi-vmm
vdi-vmm_SRCS := vmm/main.c
vdi-vmm_LIBS := common
