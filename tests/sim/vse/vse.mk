# tests/sim/vse/ - the virtual Secure Element: libvse, the vse CLI, its
# unit tests, CLI test and fuzz target.
#
# A library and a program share the name_SRCS variable in this build, so
# the program `vse` lists the library's sources itself and takes main()
# from libvsecli.a (the linker pulls main.o in to resolve main).
VSE_LIB_SRCS := tests/sim/vse/apdu.c tests/sim/vse/card.c \
	tests/sim/vse/cmd_cm.c tests/sim/vse/cmd_sc.c tests/sim/vse/cmd_status.c \
	tests/sim/vse/crypto.c tests/sim/vse/demo.c tests/sim/vse/host.c \
	tests/sim/vse/registry.c tests/sim/vse/scp03.c tests/sim/vse/state.c \
	tests/sim/vse/tlv.c

LIBS += vse vsecli
vsecli_SRCS := tests/sim/vse/main.c

PROGS += vse
vse_SRCS := $(VSE_LIB_SRCS)
vse_LIBS := vsecli base

TESTS += vse_scp03_test vse_registry_test
vse_scp03_test_SRCS := tests/unit/vse_scp03_test.c
vse_scp03_test_LIBS := vse base
vse_registry_test_SRCS := tests/unit/vse_registry_test.c
vse_registry_test_LIBS := vse base

FUZZERS += fuzz_vse
fuzz_vse_SRCS := tests/fuzz/fuzz_vse.c tests/fuzz/driver.c
fuzz_vse_LIBS := vse base

FUZZERS += fuzz_vse_state
fuzz_vse_state_SRCS := tests/fuzz/fuzz_vse_state.c tests/fuzz/driver.c
fuzz_vse_state_LIBS := vse base
