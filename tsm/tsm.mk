# tsm/ - tsmd: the configuration, the HTTPS server framework (tsm/http/),
# the daemon, and their tests, fuzz target and benchmark. The GP engine has
# its own fragment (tsm/gp/gp.mk).

# GnuTLS: libmicrohttpd's TLS session, for the client certificate chain.
LDLIBS += -lgnutls

LIBS += tsmconf http
tsmconf_SRCS := tsm/config.c
http_SRCS := tsm/http/router.c tsm/http/json.c tsm/http/apikeys.c \
	tsm/http/metrics.c tsm/http/kmsconn.c tsm/http/tls.c tsm/http/sig.c \
	tsm/http/server.c tsm/http/builtin.c

PROGS += tsmd
tsmd_SRCS := tsm/tsmd.c
tsmd_LIBS := flow seiclient sei gpkms gp store http tsmconf kmsclient base

TESTS += http_router_test http_config_test http_sig_test
http_router_test_SRCS := tests/unit/http_router_test.c
http_router_test_LIBS := http tsmconf kmsclient base
http_config_test_SRCS := tests/unit/http_config_test.c
http_config_test_LIBS := http tsmconf kmsclient base
http_sig_test_SRCS := tests/unit/http_sig_test.c
http_sig_test_LIBS := http tsmconf kmsclient base

TESTS += http_pool_test
http_pool_test_SRCS := tests/integration/http_pool_test.c
http_pool_test_LIBS := http tsmconf kmsclient base

TESTS += http_mac_test
http_mac_test_SRCS := tests/integration/http_mac_test.c
http_mac_test_LIBS := kmsenv kmscore http tsmconf kmsclient p11 base

TESTS += tsmd_test tsmd_kms_test
tsmd_test_SRCS := tests/integration/tsmd_test.c
tsmd_test_LIBS := http tsmconf kmsclient base
tsmd_kms_test_SRCS := tests/integration/tsmd_kms_test.c
tsmd_kms_test_LIBS := kmsenv kmscore http tsmconf kmsclient p11 base

FUZZERS += fuzz_http_json
fuzz_http_json_SRCS := tests/fuzz/fuzz_http_json.c tests/fuzz/driver.c
fuzz_http_json_LIBS := http tsmconf kmsclient base

BENCHES += http_bench
http_bench_SRCS := tests/bench/http_bench.c
http_bench_LIBS := kmsenv kmscore kmsclient p11 base
