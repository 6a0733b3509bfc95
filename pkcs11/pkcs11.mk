# pkcs11/ - the only code that speaks PKCS#11 (linked into kmsd and kmsctl).
LIBS += p11
p11_SRCS := pkcs11/p11.c pkcs11/p11_ops.c pkcs11/p11_probe.c pkcs11/pid.c

TESTS += p11_test
p11_test_SRCS := tests/unit/p11_test.c
p11_test_LIBS := p11 base
