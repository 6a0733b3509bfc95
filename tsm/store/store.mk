# tsm/store/ - tsmd's persistent store on LMDB (the project's only LMDB
# user), tsmctl (its `store` commands), and their tests, fuzz target and
# benchmark. See tsm/store/STORE.md.

LIBS += store
store_SRCS := tsm/store/record.c tsm/store/store.c tsm/store/commit.c \
	tsm/store/check.c

PROGS += tsmctl
tsmctl_SRCS := tsm/tsmctl.c
tsmctl_LIBS := store base

TESTS += store_codec_test store_test store_concurrency_test store_crash_test \
	store_check_test
store_codec_test_SRCS := tests/unit/store_codec_test.c
store_codec_test_LIBS := store base
store_test_SRCS := tests/unit/store_test.c
store_test_LIBS := store base
store_concurrency_test_SRCS := tests/unit/store_concurrency_test.c
store_concurrency_test_LIBS := store base
store_crash_test_SRCS := tests/unit/store_crash_test.c
store_crash_test_LIBS := store base
store_check_test_SRCS := tests/unit/store_check_test.c
store_check_test_LIBS := store base
# store_check_test runs tsmctl
$(BUILD)/tests/store_check_test: $(BUILD)/bin/tsmctl

FUZZERS += fuzz_store
fuzz_store_SRCS := tests/fuzz/fuzz_store.c tests/fuzz/driver.c
fuzz_store_LIBS := store base

BENCHES += store_bench
store_bench_SRCS := tests/bench/store_bench.c
store_bench_LIBS := store base
