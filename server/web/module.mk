# server/web/: the web portal's pages. Its C code is server/http*.c, server/ws.c and
# server/portal*.c (part of libsrv.a); they need http-parser and wslay.
vdid_LDLIBS += -lhttp_parser -lwslay
UNIT_server_LDLIBS += -lhttp_parser -lwslay

# `make install` also installs the pages and noVNC (core/ and vendor/ of the npm package) where
# vdid looks for them: PREFIX/share/vdi/web and PREFIX/share/vdi/novnc.
NOVNC_DIR := deploy/deps/npm/node_modules/@novnc/novnc
.PHONY: install-web
install: install-web
install-web:
	install -d $(DESTDIR)$(PREFIX)/share/vdi/web
	install -m 0644 $(wildcard server/web/*.html server/web/*.js server/web/*.css) \
	    $(DESTDIR)$(PREFIX)/share/vdi/web/
	$(Q)if [ -d $(NOVNC_DIR)/core ]; then \
	    cd $(NOVNC_DIR) && find core vendor LICENSE.txt -type f | while read -r f; do \
	        install -D -m 0644 "$$f" "$(DESTDIR)$(PREFIX)/share/vdi/novnc/$$f"; done; \
	else echo "install-web: $(NOVNC_DIR) missing (deploy/install-deps.sh installs it)" >&2; exit 1; fi
