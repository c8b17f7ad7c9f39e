# broker/: configuration, state store (SQLite), desktop state machine.
LIBS += brk
brk_SRCS := $(wildcard broker/*.c)
# brk.h includes auth/auth.h: the config's [auth] section is an auth_config_t, whose defaults
# (auth/config.c, no TLS or PAM) are auth's.
brk_CFLAGS := $(call pc_cflags,sqlite3 libuv)
UNIT_broker_LIBS := brk auth vmm common
UNIT_broker_LDLIBS := $(call pc_libs,sqlite3 jansson)
