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
