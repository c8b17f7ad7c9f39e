# server/web/: the web portal's pages. Its C code is server/http*.c, server/ws.c and
# server/portal*.c (part of libsrv.a); they need http-parser, wslay and the image catalogue.
vdid_LIBS += img
vdid_LDLIBS += -lhttp_parser -lwslay $(IMG_LDLIBS)
UNIT_server_LIBS += img
UNIT_server_LDLIBS += -lhttp_parser -lwslay $(IMG_LDLIBS)
