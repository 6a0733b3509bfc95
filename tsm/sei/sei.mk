# tsm/sei/ - tsmd's SEI-facing handlers of §9.4 key sync and §9.5 SD state
# sync (README.md), library sei, with their tests, fuzz targets and
# benchmark. (The SEI-TSM client is library seiclient: seiclient.mk.)

LIBS += sei
sei_SRCS := tsm/sei/validate.c tsm/sei/result.c tsm/sei/receipt.c \
	tsm/sei/routes.c tsm/sei/keysync.c tsm/sei/sdstatus.c

TESTS += sei_test
sei_test_SRCS := tests/unit/sei_test.c
sei_test_LIBS := sei store http tsmconf kmsclient base

# The integration tests run tsmd (and read its store read-only).
SEI_IT_LIBS := sei kmsenv kmscore store http tsmconf kmsclient p11 base
TESTS += sei_keysync_test sei_crash_test
sei_keysync_test_SRCS := tests/integration/sei_keysync_test.c
sei_keysync_test_LIBS := $(SEI_IT_LIBS)
sei_crash_test_SRCS := tests/integration/sei_crash_test.c
sei_crash_test_LIBS := $(SEI_IT_LIBS)
$(BUILD)/tests/sei_keysync_test $(BUILD)/tests/sei_crash_test: $(BUILD)/bin/tsmd

FUZZERS += fuzz_sei_json fuzz_sei_sig
fuzz_sei_json_SRCS := tests/fuzz/fuzz_sei_json.c tests/fuzz/driver.c
fuzz_sei_json_LIBS := sei kmsclient base
fuzz_sei_sig_SRCS := tests/fuzz/fuzz_sei_sig.c tests/fuzz/driver.c
fuzz_sei_sig_LIBS := http tsmconf kmsclient base

BENCHES += keysync_bench
keysync_bench_SRCS := tests/bench/keysync_bench.c
keysync_bench_LIBS := kmsenv kmscore kmsclient p11 base
