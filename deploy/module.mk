# deploy/: `make deb` builds the Debian package build/deb/vdi_VERSION_ARCH.deb with dpkg-deb
# (deploy/deb/build.sh; what it holds: docs/install.md). DEB_VERSION=V builds another version
# (the upgrade test does), DEB_DIR=D puts it elsewhere, DEB_BINDIR=B packages the programs in B.
DEB_VERSION ?= $(VERSION)
DEB_DIR ?= build/deb
DEB_BINDIR ?= $(BINDIR)
.PHONY: deb
deb: $(DEB_BINDIR)/vdid $(DEB_BINDIR)/vdictl $(DEB_BINDIR)/vdi-vmm $(DEB_BINDIR)/vdi-jail
	$(Q)rm -rf $(DEB_DIR)/root
	$(Q)$(MAKE) --no-print-directory install-web DESTDIR=$(abspath $(DEB_DIR)/root) PREFIX=/usr >/dev/null
	$(Q)bash deploy/deb/build.sh $(DEB_DIR) $(DEB_VERSION) $^
