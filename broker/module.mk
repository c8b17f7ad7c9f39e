# broker/: configuration, state store (SQLite), desktop state machine.
LIBS += brk
brk_SRCS := $(wildcard broker/*.c)
brk_CFLAGS := $(call pc_cflags,sqlite3)
UNIT_broker_LIBS := brk vmm common
UNIT_broker_LDLIBS := $(call pc_libs,sqlite3 jansson)
