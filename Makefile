# SP-TSM (T/TAF 096-2021) on an HSM-backed KMS - top-level build.
#
#   make            build everything into build/ (build/asan with SANITIZE=1)
#   make check      install missing Debian packages, build, run every test under prove
#   make check SANITIZE=1   the same with ASan+UBSan
#   make run        start the services against ./var (VAR=, LISTEN=, SEI_URL=)
#   make demo       one virtual SE through the SSD life cycle (VAR= a running
#                   make run; default: its own services in a temp dir)
#   make bench      print the benchmark tables
#   make fuzz       build the libFuzzer targets with clang and run each briefly
#   make deps       check/install the Debian packages the build and tests need
#   make clean
#
# Each directory describes its libraries, programs and tests in a *.mk
# fragment (see kms/kms.mk for the variables); this file holds the rules.

.DEFAULT_GOAL := all
SANITIZE ?= 0
V ?= 0
TOP := $(abspath .)

ifeq ($(FUZZ),1)
# make fuzz: clang + libFuzzer; the fuzz targets link without driver.c
BUILD := build/fuzz-clang
CC := clang
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
HARDEN :=
SAN_LDFLAGS := -fsanitize=address,undefined
FUZZ_LDFLAGS := -fsanitize=fuzzer
else ifeq ($(SANITIZE),1)
BUILD := build/asan
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
HARDEN :=
SAN_LDFLAGS := -fsanitize=address,undefined
else
BUILD := build
OPT := -O2 -g
HARDEN := -fstack-protector-strong -D_FORTIFY_SOURCE=2
SAN_LDFLAGS :=
endif

CC ?= gcc
PKGS := p11-kit-1 openssl jansson libcurl libmicrohttpd lmdb
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ifeq ($(PKG_LIBS),)
PKG_LIBS := -lp11-kit -lssl -lcrypto -ljansson -lcurl -lmicrohttpd -llmdb
PKG_CFLAGS := -I/usr/include/p11-kit-1
endif

WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
	-Wno-unused-parameter
CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) $(HARDEN) -fPIE $(WARN) -I$(TOP) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := -pie -Wl,-z,relro,-z,now $(SAN_LDFLAGS)
LDLIBS := $(PKG_LIBS) -lgfshare -lpthread -ldl

ifeq ($(V),1)
Q :=
else
Q := @
endif

# Filled in by the fragments.
LIBS :=
PROGS :=
TESTS :=
BENCHES :=
FUZZERS :=

include $(sort $(wildcard */*.mk */*/*.mk */*/*/*.mk))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

# lib<name>.a from <name>_SRCS
define lib_rule
$(BUILD)/lib/lib$(1).a: $(call obj,$($(1)_SRCS))
	@mkdir -p $$(dir $$@)
	$(Q)rm -f $$@ && ar rcs $$@ $$^
endef
# a program or test: <name>_SRCS, <name>_LIBS (project libraries, in link order)
define bin_rule
$(2)/$(1): $(call obj,$($(1)_SRCS)) $(foreach l,$($(1)_LIBS),$(BUILD)/lib/lib$(l).a)
	@mkdir -p $$(dir $$@)
	@echo "  LD      $$@"
	$(Q)$(CC) $(LDFLAGS) -o $$@ $(call obj,$($(1)_SRCS)) \
		$(foreach l,$($(1)_LIBS),$(BUILD)/lib/lib$(l).a) $(LDLIBS)
endef

# a fuzz target: with libFuzzer (FUZZ=1) its corpus driver is left out
define fuzz_rule
$(2)/$(1): $(call obj,$(if $(FUZZ_LDFLAGS),$(filter-out tests/fuzz/driver.c,$($(1)_SRCS)),$($(1)_SRCS))) $(foreach l,$($(1)_LIBS),$(BUILD)/lib/lib$(l).a)
	@mkdir -p $$(dir $$@)
	@echo "  LD      $$@"
	$(Q)$(CC) $(LDFLAGS) $(FUZZ_LDFLAGS) -o $$@ $$(filter %.o %.a,$$^) $(LDLIBS)
endef

$(foreach l,$(LIBS),$(eval $(call lib_rule,$(l))))
$(foreach p,$(PROGS),$(eval $(call bin_rule,$(p),$(BUILD)/bin)))
$(foreach t,$(TESTS),$(eval $(call bin_rule,$(t),$(BUILD)/tests)))
$(foreach t,$(BENCHES),$(eval $(call bin_rule,$(t),$(BUILD)/bench)))
$(foreach t,$(FUZZERS),$(eval $(call fuzz_rule,$(t),$(BUILD)/fuzz)))

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

PROG_BINS := $(addprefix $(BUILD)/bin/,$(PROGS))
TEST_BINS := $(addprefix $(BUILD)/tests/,$(TESTS))
BENCH_BINS := $(addprefix $(BUILD)/bench/,$(BENCHES))
FUZZ_BINS := $(addprefix $(BUILD)/fuzz/,$(FUZZERS))
SHELL_TESTS := $(sort $(wildcard tests/integration/*.t))

.PHONY: all check test deps run demo bench fuzz fuzzers clean
all: $(PROG_BINS) $(TEST_BINS) $(BENCH_BINS) $(FUZZ_BINS)
fuzzers: $(FUZZ_BINS)

# Tests find the binaries and the tree through these.
export SPTSM_TOP := $(TOP)
export SPTSM_BUILD := $(TOP)/$(BUILD)
export SPTSM_SANITIZE := $(SANITIZE)
ifeq ($(SANITIZE),1)
export ASAN_OPTIONS := detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS := print_stacktrace=1:halt_on_error=1
endif

check: deps
	$(MAKE) all
	$(MAKE) test

test: all
	prove -j2 --exec '' $(PROVE_FLAGS) $(TEST_BINS) $(FUZZ_BINS) $(SHELL_TESTS)

deps:
	@sh tests/deps.sh

run: deps all
	@VAR="$(VAR)" LISTEN="$(LISTEN)" SEI_URL="$(SEI_URL)" sh tests/run.sh

demo: deps all
	@VAR="$(VAR)" sh tests/demo.sh

bench: deps all
	@sh tests/bench/run.sh

fuzz: deps
	@sh tests/fuzz/run.sh


clean:
	rm -rf build
