# server/: vdid (listeners, gateway, supervisor) and vdictl (the admin command line).
PROGS += vdid vdictl
vdid_SRCS := server/vdid.c
vdid_LIBS := common
vdictl_SRCS := server/vdictl.c
vdictl_LIBS += common
