# tests/ - unit tests of the shared base.
TESTS += base_test
base_test_SRCS := tests/unit/base_test.c
base_test_LIBS := base

# the kmsd fixture for integration tests and benchmarks
LIBS += kmsenv
kmsenv_SRCS := tests/kmsenv.c

TESTS += kmsd_test
kmsd_test_SRCS := tests/integration/kmsd_test.c
kmsd_test_LIBS := kmsenv kmscore kmsclient p11 base

FUZZERS += fuzz_kmsd
fuzz_kmsd_SRCS := tests/fuzz/fuzz_kmsd.c tests/fuzz/driver.c
fuzz_kmsd_LIBS := kmsenv kmsdcore kmscore policy p11 base

TESTS += kdf_test
kdf_test_SRCS := tests/unit/kdf_test.c
kdf_test_LIBS := p11 base

TESTS += token_attrs_test
token_attrs_test_SRCS := tests/integration/token_attrs_test.c
token_attrs_test_LIBS := kmsenv kmscore kmsclient p11 base

BENCHES += kms_bench
kms_bench_SRCS := tests/bench/kms_bench.c
kms_bench_LIBS := kmsenv kmscore kmsclient p11 base

TESTS += lifecycle_test
lifecycle_test_SRCS := tests/integration/lifecycle_test.c
lifecycle_test_LIBS := kmsenv kmscore kmsclient p11 base

TESTS += kmsctl_pty_test
kmsctl_pty_test_SRCS := tests/integration/kmsctl_pty_test.c
kmsctl_pty_test_LIBS := base

TESTS += rewrap_test
rewrap_test_SRCS := tests/integration/rewrap_test.c
rewrap_test_LIBS := kmsenv kmsdcore kmscore kmsclient store p11 base
