# policy/ - pure policy parser and decision function.
LIBS += policy
policy_SRCS := policy/policy.c

TESTS += policy_test
policy_test_SRCS := tests/unit/policy_test.c
policy_test_LIBS := kmsdcore kmscore policy p11 base
