# auth/: PAM logins, TLS over libuv streams, the RFB VeNCrypt handshake, tokens, brute-force
# limits. libauth.a is linked into vdid by the server/broker side (vdid_LIBS += auth).
LIBS += auth
auth_SRCS := $(wildcard auth/*.c)
auth_CFLAGS := $(call pc_cflags,libuv openssl)
AUTH_LDLIBS := $(call pc_libs,libuv openssl) -lpam
UNIT_auth_LIBS := auth common
UNIT_auth_LDLIBS := $(AUTH_LDLIBS)
# Test tools: a loopback RFB server running the login, a libvncclient client and a scripted
# (hostile) raw client.
TOOL_auth_testserver_LIBS := auth common
TOOL_auth_testserver_LDLIBS := $(AUTH_LDLIBS)

TOOL_auth_vncclient_LDLIBS := -lvncclient
TOOL_auth_rawclient_LDLIBS := $(call pc_libs,openssl)
# bench/auth/run.sh runs the test server's HTTPS listener.
BENCH_TARGETS += $(O)/tests/tools/auth_testserver
