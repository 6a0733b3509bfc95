# kms/ - base code shared by every process, kmsd, kmsctl, the client library.
#
# Fragment conventions (every directory's *.mk follows them):
#   LIBS += name        build/lib/libname.a from name_SRCS
#   PROGS += name       build/bin/name from name_SRCS linked with name_LIBS
#   TESTS += name       build/tests/name, run under prove by `make check`
#   BENCHES += name     build/bench/name, run by `make bench`
#   FUZZERS += name     build/fuzz/name: a libFuzzer target; its _SRCS list
#                       tests/fuzz/driver.c, which `make check` uses to run the
#                       corpus tests/fuzz/corpus/<name>/ plus mutations as TAP
#   name_LIBS lists project libraries in link order (dependents first).

LIBS += base
base_SRCS := kms/base.c kms/secmem.c kms/util.c
base_SRCS += kms/proto.c kms/audit.c kms/kdf.c kms/shamir.c

# the client library tsmd links (no PKCS#11)
LIBS += kmsclient
kmsclient_SRCS := kms/client.c

# code shared by kmsd and kmsctl (links pkcs11/)
LIBS += kmscore
kmscore_SRCS := kms/keystore.c

# kmsd without its main (the fuzz target and the policy matrix use it)
LIBS += kmsdcore
kmsdcore_SRCS := kms/kmsd.c kms/kmsd_ops.c kms/keyset.c

PROGS += kmsd
kmsd_SRCS := kms/kmsd_main.c
kmsd_LIBS := kmsdcore kmscore policy p11 base

PROGS += kmsctl
kmsctl_SRCS := kms/kmsctl.c kms/backup.c kms/rewrap.c
kmsctl_LIBS := kmsdcore kmscore store kmsclient p11 base
