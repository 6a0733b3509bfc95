# tap.sh - TAP helpers for the shell tests (sourced by bash). Each test creates
# its own temporary SoftHSM2 token directory; nothing touches ./var.
T_N=0
T_FAIL=0
ok() {	# ok CONDITION-EXIT-STATUS DESCRIPTION
	T_N=$((T_N + 1))
	if [ "$1" -eq 0 ]; then echo "ok $T_N - $2"; else echo "not ok $T_N - $2"; T_FAIL=$((T_FAIL + 1)); fi
}
run_ok() {	# run_ok DESCRIPTION CMD...: passes when CMD exits 0
	d=$1; shift
	if "$@" >"$T_DIR/last.out" 2>&1; then ok 0 "$d"; else ok 1 "$d"; sed 's/^/# /' "$T_DIR/last.out" | tail -5; fi
}
run_fails() {	# run_fails DESCRIPTION CMD...: passes when CMD exits non-zero
	d=$1; shift
	if "$@" >"$T_DIR/last.out" 2>&1; then ok 1 "$d"; sed 's/^/# /' "$T_DIR/last.out" | tail -5; else ok 0 "$d"; fi
}
out_has() {	# out_has DESCRIPTION PATTERN: the last command's output matches
	if grep -q -- "$2" "$T_DIR/last.out"; then ok 0 "$1"; else ok 1 "$1"; sed 's/^/# /' "$T_DIR/last.out" | tail -5; fi
}
done_testing() {
	echo "1..$T_N"
	[ "$T_FAIL" -eq 0 ]
}
new_token_dir() {	# new_token_dir DIR: a SoftHSM2 config for DIR/tokens
	mkdir -p "$1/tokens"
	printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$1" >"$1/softhsm2.conf"
}
xorhex() {	# xorhex HEX1 HEX2: their XOR, lowercase hex (as long as HEX1)
	local a=$1 b=$2 o="" i
	for ((i = 0; i < ${#a}; i += 2)); do
		o+=$(printf '%02x' $((0x${a:i:2} ^ 0x${b:i:2})))
	done
	echo "$o"
}
T_TOP=${SPTSM_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
T_BIN=${SPTSM_BUILD:-$T_TOP/build}/bin
T_DIR=$(mktemp -d /tmp/sptsm-sh-XXXXXX)
t_cleanup() { [ -n "${KEEP_TEST_DIR:-}" ] || rm -rf "$T_DIR"; }
