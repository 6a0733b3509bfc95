# tsm/flow/ - tsmd's flows (FLOWS.md, README.md): tasks, the device agent
# API, SSD create/lock/unlock/delete through the SEI-TSM, key replacement,
# state sync, notifications, the operator API; library flow, linked into
# tsmd. Tests: tests/integration/flow_*.c, tests/fuzz/fuzz_flow_agent.c,
# tests/bench/keyrepl_bench.c.

LIBS += flow
flow_SRCS := tsm/flow/parse.c tsm/flow/engine.c tsm/flow/agent.c \
	tsm/flow/ssd.c tsm/flow/keyrepl.c tsm/flow/statesync.c \
	tsm/flow/notify.c tsm/flow/api.c

# End to end through kmsd, tsmd and seisim, the test playing the agent.
FLOW_IT_LIBS := seiclient http tsmconf store vse gpkms gp kmsenv kmscore \
	kmsclient p11 base
TESTS += flow_ssd_test
flow_ssd_test_SRCS := tests/integration/flow_ssd_test.c
flow_ssd_test_LIBS := $(FLOW_IT_LIBS)
$(BUILD)/tests/flow_ssd_test: $(BUILD)/bin/tsmd $(BUILD)/bin/seisim
TESTS += flow_fault_test
flow_fault_test_SRCS := tests/integration/flow_fault_test.c
flow_fault_test_LIBS := $(FLOW_IT_LIBS)
$(BUILD)/tests/flow_fault_test: $(BUILD)/bin/tsmd $(BUILD)/bin/seisim
TESTS += flow_crash_test
flow_crash_test_SRCS := tests/integration/flow_crash_test.c
flow_crash_test_LIBS := $(FLOW_IT_LIBS)
$(BUILD)/tests/flow_crash_test: $(BUILD)/bin/tsmd $(BUILD)/bin/seisim

FUZZERS += fuzz_flow_agent
fuzz_flow_agent_SRCS := tests/fuzz/fuzz_flow_agent.c tests/fuzz/driver.c
fuzz_flow_agent_LIBS := flow base

BENCHES += keyrepl_bench
keyrepl_bench_SRCS := tests/bench/keyrepl_bench.c
keyrepl_bench_LIBS := vse kmsenv kmscore kmsclient p11 base
$(BUILD)/bench/keyrepl_bench: $(BUILD)/bin/tsmd

TESTS += flow_parse_test
flow_parse_test_SRCS := tests/unit/flow_parse_test.c
flow_parse_test_LIBS := flow base
