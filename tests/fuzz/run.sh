#!/bin/sh
# `make fuzz`: builds every libFuzzer target with clang (-fsanitize=fuzzer,
# address,undefined) into build/fuzz-clang and runs each for FUZZ_SECONDS
# (default 60) from its seed corpus. `make check` runs the same targets
# without libFuzzer (tests/fuzz/driver.c: corpus plus deterministic
# mutations).
set -eu
TOP=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TOP"
command -v clang >/dev/null || { echo "make fuzz needs clang (apt-get install clang)" >&2; exit 1; }
make -s FUZZ=1 fuzzers
secs=${FUZZ_SECONDS:-60}
export SPTSM_TOP="$TOP"
for f in build/fuzz-clang/fuzz/*; do
	[ -x "$f" ] || continue
	n=$(basename "$f")
	echo "==== $n ($secs s)"
	mkdir -p "build/fuzz-clang/corpus/$n"
	"$f" -max_total_time="$secs" -print_final_stats=1 \
		"build/fuzz-clang/corpus/$n" "tests/fuzz/corpus/$n" 2>&1 | tail -4
done
