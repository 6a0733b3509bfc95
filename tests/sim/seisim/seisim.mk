# tests/sim/seisim/ - the SEI-TSM simulator `seisim` (README.md) and its
# tests: contract tests against tsmd's SEI client (tsm/sei/client.c, built
# by tsm/sei/seiclient.mk), runs against the virtual SE, and make run.
# seisim links the GP host engine with the raw-key OpenSSL backend (it
# plays the card issuer, who holds its demo keys in clear) and libvse (for
# `seisim repair --card`).

PROGS += seisim
seisim_SRCS := tests/sim/seisim/main.c tests/sim/seisim/server.c \
	tests/sim/seisim/auth.c tests/sim/seisim/crypto.c \
	tests/sim/seisim/material.c tests/sim/seisim/state.c \
	tests/sim/seisim/ssd.c tests/sim/seisim/token.c \
	tests/sim/seisim/peer.c tests/sim/seisim/keysync.c
seisim_LIBS := vse gpossl gp base

# Contract tests: tsmd's client against seisim processes, kmsd signing.
TESTS += seisim_contract_test
seisim_contract_test_SRCS := tests/integration/seisim_contract_test.c
seisim_contract_test_LIBS := seiclient http tsmconf store kmsenv kmscore \
	kmsclient p11 base
$(BUILD)/tests/seisim_contract_test: $(BUILD)/bin/seisim

# seisim driving a virtual SE (the test plays the device agent), with §9.4
# and §9.5 to a real tsmd.
TESTS += seisim_vse_test
seisim_vse_test_SRCS := tests/integration/seisim_vse_test.c
seisim_vse_test_LIBS := seiclient http tsmconf store vse gp kmsenv kmscore \
	kmsclient p11 base
$(BUILD)/tests/seisim_vse_test: $(BUILD)/bin/seisim $(BUILD)/bin/tsmd

# §9.4 with every wrapping (AES-KW/KWP, RSA-OAEP) and KCV method.
TESTS += seisim_wrap_test
seisim_wrap_test_SRCS := tests/integration/seisim_wrap_test.c
seisim_wrap_test_LIBS := seiclient http tsmconf store vse kmsenv kmscore \
	kmsclient p11 base
$(BUILD)/tests/seisim_wrap_test: $(BUILD)/bin/seisim $(BUILD)/bin/tsmd
