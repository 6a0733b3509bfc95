# tsm/gp/ - GlobalPlatform host engine (codec, commands, parsers, SCP03, DM)
# linked into tsmd, and the OpenSSL reference backend (gpossl) that only
# the unit tests, fuzzers and benchmarks link.

LIBS += gp gpossl
gp_SRCS := tsm/gp/codec.c tsm/gp/types.c tsm/gp/cmd.c tsm/gp/resp.c \
	tsm/gp/dm.c tsm/gp/scp03.c
gpossl_SRCS := tsm/gp/gp_ossl.c

TESTS += gp_codec_test gp_cmd_test gp_scp03_test
gp_codec_test_SRCS := tests/unit/gp_codec_test.c
gp_codec_test_LIBS := gp base
gp_cmd_test_SRCS := tests/unit/gp_cmd_test.c
gp_cmd_test_LIBS := gpossl gp base
gp_scp03_test_SRCS := tests/unit/gp_scp03_test.c
gp_scp03_test_LIBS := gpossl gp base

FUZZERS += fuzz_gp_tlv fuzz_gp_resp
fuzz_gp_tlv_SRCS := tests/fuzz/fuzz_gp_tlv.c tests/fuzz/driver.c
fuzz_gp_tlv_LIBS := gp base
fuzz_gp_resp_SRCS := tests/fuzz/fuzz_gp_resp.c tests/fuzz/driver.c
fuzz_gp_resp_LIBS := gp base

BENCHES += gp_bench
gp_bench_SRCS := tests/bench/gp_bench.c
gp_bench_LIBS := gpossl gp base
