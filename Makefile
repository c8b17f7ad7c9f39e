# vdi: one non-recursive Makefile. Each folder adds itself through its module.mk; see
# docs/building.md for what a module.mk may declare.
#
#   make                  build build/bin/{vdid,vdi-vmm,vdictl}
#   make test             install missing packages, build, run every test suite
#   make unit             unit tests only (no root, no KVM)
#   make SAN=address,undefined unit      the same under ASan+UBSan (own build directory)
#   make demo | bench | fuzz | format | format-check | check-includes | install | deb | clean

VERSION := 0.1.0
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

PREFIX  ?= /usr/local
DESTDIR ?=
SAN     ?=
WERROR  ?= 1
V       ?= 0
Q       := $(if $(filter 1,$(V)),,@)

comma := ,
CC_NAME := $(notdir $(firstword $(CC)))
# Every flag set builds into its own directory, so a sanitizer build never links stale objects.
BUILD_TAG := $(if $(filter cc gcc,$(CC_NAME)),,$(CC_NAME)-)$(if $(SAN),san-$(subst $(comma),-,$(SAN)),default)
O := build/$(BUILD_TAG)
ifeq ($(BUILD_TAG),default)
BINDIR := build/bin
else
BINDIR := $(O)/bin
endif

WARN := -Wall -Wextra -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
        -Wold-style-definition -Wshadow -Wundef -Wwrite-strings -Wvla
CFLAGS ?= -g -O2
CFLAGS += -std=gnu11 $(WARN) $(if $(filter 0,$(WERROR)),,-Werror) -MMD -MP -I. \
          -D_GNU_SOURCE -DVDI_VERSION='"$(VERSION)"' -DVDI_GIT_REV='"$(GIT_REV)"' -pthread
LDFLAGS += -pthread
ifneq ($(SAN),)
CFLAGS  += -O1 -fsanitize=$(SAN) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SAN)
endif
LDLIBS  +=

# pkg-config, quietly: on a fresh machine the packages arrive with `make deps` first.
pc_cflags = $(shell pkg-config --cflags $(1) 2>/dev/null)
pc_libs   = $(shell pkg-config --libs $(1) 2>/dev/null)

.DEFAULT_GOAL := all
.PHONY: all deps test unit integration build-tests demo bench fuzz format format-check \
        check-includes install clean help debian-desktop check-slow

# ---- Modules --------------------------------------------------------------------------------
LIBS :=
PROGS :=
TEST_TOOLS :=
EXTRA_TEST_DEPS :=
include $(sort $(wildcard */module.mk */*/module.mk))

# ---- Rules ----------------------------------------------------------------------------------
libfile = $(O)/lib/lib$(1).a
libfiles = $(foreach l,$(1),$(call libfile,$(l)))
objs_of = $(patsubst %.c,$(O)/obj/%.o,$(1))

ALL_OBJS :=

define LIB_template
$(1)_OBJS := $$(call objs_of,$$($(1)_SRCS))
ALL_OBJS += $$($(1)_OBJS)
$$(call libfile,$(1)): $$($(1)_OBJS)
	@mkdir -p $$(@D)
	@rm -f $$@
	$$(Q)$$(AR) rcs $$@ $$^
$$($(1)_OBJS): CFLAGS += $$($(1)_CFLAGS)
endef
$(foreach l,$(LIBS),$(eval $(call LIB_template,$(l))))

# link(out, objs, libs, ldlibs, ldflags)
define link_cmd
	@mkdir -p $(dir $(1))
	@echo "  LD      $(1)"
	$(Q)$(CC) $(LDFLAGS) $(5) -o $(1) $(2) -Wl,--start-group $(call libfiles,$(3)) -Wl,--end-group $(4) $(LDLIBS)
endef

define PROG_template
$(1)_OBJS := $$(call objs_of,$$($(1)_SRCS))
ALL_OBJS += $$($(1)_OBJS)
$$(BINDIR)/$(1): $$($(1)_OBJS) $$(call libfiles,$$($(1)_LIBS))
	$$(call link_cmd,$$@,$$($(1)_OBJS),$$($(1)_LIBS),$$($(1)_LDLIBS),$$($(1)_LDFLAGS))
$$($(1)_OBJS): CFLAGS += $$($(1)_CFLAGS)
endef
$(foreach p,$(PROGS),$(eval $(call PROG_template,$(p))))
PROG_BINS := $(addprefix $(BINDIR)/,$(PROGS))

# Unit tests: tests/unit/<module>/test_<file>.c, one binary each, linked with UNIT_<module>_LIBS
# and UNIT_<module>_LDLIBS (declared by the module) and -lcmocka. A test may add link flags
# (e.g. -Wl,--wrap=open) in <module>_<test>_LDFLAGS.
UNIT_SRCS := $(sort $(wildcard tests/unit/*/test_*.c))
unit_mod = $(word 3,$(subst /, ,$(1)))
unit_name = $(basename $(notdir $(1)))
define UNIT_template
$(O)/$(basename $(1)): $(call objs_of,$(1)) $(call libfiles,$(UNIT_$(call unit_mod,$(1))_LIBS))
	$$(call link_cmd,$$@,$(call objs_of,$(1)),$(UNIT_$(call unit_mod,$(1))_LIBS),$$(UNIT_$(call unit_mod,$(1))_LDLIBS) -lcmocka,$$($(call unit_mod,$(1))_$(call unit_name,$(1))_LDFLAGS))
endef
$(foreach t,$(UNIT_SRCS),$(eval $(call UNIT_template,$(t))))
UNIT_BINS := $(addprefix $(O)/,$(basename $(UNIT_SRCS)))
ALL_OBJS += $(call objs_of,$(UNIT_SRCS))

# Integration suites: tests/integration/test_*.sh (scripts) and tests/integration/test_*.c
# (programs, linked with INTEG_<name>_LIBS / INTEG_<name>_LDLIBS, default: common).
# Test tools (tests/tools/*.c) are helper programs the suites run: TOOL_<name>_LIBS/_LDLIBS.
INTEG_C_SRCS := $(sort $(wildcard tests/integration/test_*.c))
INTEG_SCRIPTS := $(sort $(wildcard tests/integration/test_*.sh))
TOOL_SRCS := $(sort $(wildcard tests/tools/*.c))
define CPROG_template
$(O)/$(basename $(1)): $(call objs_of,$(1)) $(call libfiles,$(or $($(2)_$(3)_LIBS),common))
	$$(call link_cmd,$$@,$(call objs_of,$(1)),$(or $($(2)_$(3)_LIBS),common),$$($(2)_$(3)_LDLIBS),)
$(call objs_of,$(1)): CFLAGS += $($(2)_$(3)_CFLAGS)
endef
$(foreach t,$(INTEG_C_SRCS),$(eval $(call CPROG_template,$(t),INTEG,$(basename $(notdir $(t))))))
$(foreach t,$(TOOL_SRCS),$(eval $(call CPROG_template,$(t),TOOL,$(basename $(notdir $(t))))))
INTEG_BINS := $(addprefix $(O)/,$(basename $(INTEG_C_SRCS)))
TOOL_BINS := $(addprefix $(O)/,$(basename $(TOOL_SRCS)))
ALL_OBJS += $(call objs_of,$(INTEG_C_SRCS) $(TOOL_SRCS))

$(O)/obj/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

-include $(ALL_OBJS:.o=.d)

# ---- Targets --------------------------------------------------------------------------------
all: $(PROG_BINS)

help:
	@sed -n '2,9p' Makefile

deps:
	$(Q)bash deploy/install-deps.sh

build-tests: all $(UNIT_BINS) $(INTEG_BINS) $(TOOL_BINS) $(EXTRA_TEST_DEPS)

# The runner sees where things are through the environment.
TEST_ENV = VDI_SRC=$(CURDIR) VDI_BIN=$(CURDIR)/$(BINDIR) VDI_BUILD=$(CURDIR)/$(O) \
           VDI_SAN=$(SAN) VDI_TEST_TIMEOUT_MULT=$(or $(VDI_TEST_TIMEOUT_MULT),$(if $(SAN),3,1))

# `make test` first installs what is missing, then re-reads this Makefile (pkg-config results
# depend on the packages) in a sub-make that builds and runs everything.
test: deps
	$(Q)$(MAKE) --no-print-directory build-tests
	$(Q)$(TEST_ENV) bash tests/run-tests.sh $(UNIT_BINS) $(INTEG_BINS) $(INTEG_SCRIPTS)

unit: $(UNIT_BINS)
	$(Q)$(TEST_ENV) bash tests/run-tests.sh $(UNIT_BINS)

integration: build-tests
	$(Q)$(TEST_ENV) bash tests/run-tests.sh $(INTEG_BINS) $(INTEG_SCRIPTS)

DEMO_TARGETS ?=
demo: deps
	$(Q)$(MAKE) --no-print-directory all $(DEMO_TARGETS)
	$(Q)VDI_BIN=$(CURDIR)/$(BINDIR) VDI_SRC=$(CURDIR) bash deploy/demo.sh

BENCH_TARGETS ?=
bench: all $(BENCH_TARGETS)
	$(Q)VDI_BIN=$(CURDIR)/$(BINDIR) VDI_SRC=$(CURDIR) VDI_BUILD=$(CURDIR)/$(O) bash bench/run.sh

# The debian-desktop golden image (docs/images.md): built once (cached), imported into vdictl's
# catalogue ($VDI_STATE_DIR, else the system one). Needs root and the Debian mirror.
debian-desktop: $(BINDIR)/vdictl
	$(Q)bash golden-images/recipes/debian-desktop/build.sh build/debian-desktop
	$(Q)bash golden-images/recipes/debian-desktop/import.sh $(BINDIR)/vdictl build/debian-desktop

# Slow checks (tests/slow/): real guests under QEMU's software emulation; not part of `make test`.
check-slow: $(O)/tests/tools/vncprobe
	$(Q)bash golden-images/recipes/debian-desktop/build.sh build/debian-desktop
	$(Q)for t in $(sort $(wildcard tests/slow/test_*.sh)); do echo "== $$t"; \
	    $(TEST_ENV) bash $$t || exit 1; done

# Fuzz targets: tests/fuzz/fuzz_*.c, built with clang and libFuzzer into build/fuzz/ from the
# sources each names in its `// fuzz-srcs:` line. `make fuzz FUZZ_S=N` runs each N seconds
# (default 30); FUZZ_TARGETS="fuzz_qcow2 fuzz_config" runs only those. CI runs a short smoke.
FUZZ_SECONDS ?= 30
FUZZ_S ?= $(FUZZ_SECONDS)
FUZZ_TARGETS ?=
fuzz:
	$(Q)bash tests/fuzz/run.sh $(FUZZ_S) $(FUZZ_TARGETS)

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	$(Q)clang-format -i $(FORMAT_FILES)

format-check:
	$(Q)clang-format --dry-run --Werror $(FORMAT_FILES) && echo "format-check: $(words $(FORMAT_FILES)) files clean"

# A module's internal.h belongs to that module alone.
check-includes:
	$(Q)bad=0; for h in $$(git ls-files '*/internal.h' '*/*-internal.h'); do \
	    mod=$${h%%/*}; \
	    users=$$(git grep -l "\"$$h\"" -- '*.c' '*.h' | grep -v "^$$mod/" | grep -v "^tests/unit/$$mod/" | grep -v "^tests/fuzz/" || true); \
	    if [ -n "$$users" ]; then echo "check-includes: $$h included outside $$mod/: $$users"; bad=1; fi; \
	done; [ $$bad = 0 ] && echo "check-includes: ok"

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/vdi
	install -m 0755 $(PROG_BINS) $(DESTDIR)$(PREFIX)/bin/
	$(Q)for f in $(INSTALL_EXTRA); do install -D -m 0644 $$f $(DESTDIR)$(PREFIX)/lib/vdi/$$(basename $$f); done

clean:
	rm -rf build
