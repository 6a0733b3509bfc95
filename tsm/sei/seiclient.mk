# tsm/sei/ - tsmd's SEI-TSM client (client.c, client.md), library
# seiclient. Its tests run it against the simulator: tests/sim/seisim/.
# (tsm/sei/sei.mk belongs to the SEI-facing handlers.)

LIBS += seiclient
seiclient_SRCS := tsm/sei/client.c

FUZZERS += fuzz_sei_client
fuzz_sei_client_SRCS := tests/fuzz/fuzz_sei_client.c tests/fuzz/driver.c
fuzz_sei_client_LIBS := seiclient store http tsmconf kmsclient base
