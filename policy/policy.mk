# policy/ - pure policy parser and decision function.
LIBS += policy
policy_SRCS := policy/policy.c
