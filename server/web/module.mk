# server/web/: the web portal's pages. Its C code is server/http*.c, server/ws.c and
# server/portal*.c (part of libsrv.a); they need http-parser and wslay.
vdid_LDLIBS += -lhttp_parser -lwslay
UNIT_server_LDLIBS += -lhttp_parser -lwslay
