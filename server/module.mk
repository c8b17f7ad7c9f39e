# server/: vdid (listeners, gateway, supervisor, admin socket) and vdictl (the admin command line).
# vdid's parts are a library (libsrv.a) so that unit tests can link them.
LIBS += srv
srv_SRCS := $(filter-out server/vdid.c server/vdictl.c server/jail-main.c,$(wildcard server/*.c))
srv_CFLAGS := $(call pc_cflags,libuv jansson sqlite3 openssl libseccomp libnftables) \
              $(if $(call pc_libs,libsystemd),-DVDI_HAVE_SYSTEMD)
PROGS += vdid vdictl vdi-jail
vdid_SRCS := server/vdid.c
vdid_LIBS := srv brk auth img vmm common
vdid_CFLAGS := $(call pc_cflags,libuv jansson)
vdid_LDLIBS := $(call pc_libs,libuv jansson sqlite3 libsystemd openssl libseccomp libnftables) -lpam $(IMG_LDLIBS)
# vdi-jail: server/jail.c alone out of libsrv.a (libc and libseccomp; docs/security.md).
vdi-jail_SRCS := server/jail-main.c
vdi-jail_LIBS := srv common
vdi-jail_LDLIBS := $(call pc_libs,libseccomp)
vdictl_SRCS := server/vdictl.c
vdictl_LIBS += common
vdictl_CFLAGS += $(call pc_cflags,jansson)
vdictl_LDLIBS += $(call pc_libs,jansson)
UNIT_server_LIBS := srv brk auth img vmm common
UNIT_server_LDLIBS := $(call pc_libs,libuv jansson sqlite3 libsystemd openssl libseccomp libnftables) -lpam $(IMG_LDLIBS)
# Test tools: a stand-in VMM (control socket + libvncserver display) and a libvncclient viewer.
TOOL_vdid_fakevmm_LIBS := vmm tdnet tdpatch img common
TOOL_vdid_fakevmm_LDLIBS := -lvncserver $(call pc_libs,jansson) -lpthread $(IMG_LDLIBS)
TOOL_vdid_vncclient_LDLIBS := -lvncclient
# tests/unit/server/test_splice.c fakes the client's TLS stream.
server_test_splice_LDFLAGS := -Wl,--wrap=auth_tls_read_start,--wrap=auth_tls_read_stop \
    -Wl,--wrap=auth_tls_write,--wrap=auth_tls_write_queue_size,--wrap=auth_tls_close
# bench/rollout: vdid with the stand-in VMM (where there is no /dev/kvm) and the viewer.
BENCH_TARGETS += $(O)/tests/tools/vdid_fakevmm $(O)/tests/tools/vdid_vncclient
