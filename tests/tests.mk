# tests/ - unit tests of the shared base.
TESTS += base_test
base_test_SRCS := tests/unit/base_test.c
base_test_LIBS := base
