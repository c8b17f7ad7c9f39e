# common/: helpers every module shares (errors, logging, allocation, lists, buffers, parsing).
LIBS += common
common_SRCS := $(wildcard common/*.c)
UNIT_common_LIBS := common
