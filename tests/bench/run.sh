#!/bin/sh
# `make bench`: runs every benchmark program built under build/bench (each
# prints its own table; ratios are measured within one run).
# BENCH_SECONDS=N changes the time per measurement (default 1).
set -eu
TOP=$(cd "$(dirname "$0")/../.." && pwd)
export SPTSM_TOP="$TOP" SPTSM_BUILD="${SPTSM_BUILD:-$TOP/build}"
status=0
for b in "$SPTSM_BUILD"/bench/*; do
	[ -x "$b" ] || continue
	echo "==== $(basename "$b")"
	"$b" || status=1
	echo
done
exit $status
