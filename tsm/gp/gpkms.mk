# tsm/gp/gpkms.mk - the GP engine's kmsd backend (gpkms, linked into tsmd
# with gp and kmsclient), its known-answer test through kmsd and SoftHSM2,
# the cross-test against the virtual SE, and the SL 33 wrapping benchmark.

LIBS += gpkms
gpkms_SRCS := tsm/gp/gp_kms.c

TESTS += gp_kms_test gp_vse_cross_test
gp_kms_test_SRCS := tests/integration/gp_kms_test.c
gp_kms_test_LIBS := gpkms gp kmsenv kmscore kmsclient p11 base
gp_vse_cross_test_SRCS := tests/integration/gp_vse_cross_test.c
gp_vse_cross_test_LIBS := gpkms gp kmsenv kmscore kmsclient p11 vse base

BENCHES += gp_kms_bench
gp_kms_bench_SRCS := tests/bench/gp_kms_bench.c
gp_kms_bench_LIBS := gpkms gpossl gp kmsenv kmscore kmsclient p11 base
