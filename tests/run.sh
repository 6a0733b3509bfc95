#!/bin/sh
# run.sh - `make run`: everything in the foreground against one var dir.
# First start: initialises the SoftHSM2 token and runs the DEMO key
# ceremony (tests/sim/demo/). Then starts kmsd, and tsmd and the SEI-TSM
# simulator when they are built (SEI_URL= names another SEI-TSM instead of
# the simulator). Ctrl-C or SIGTERM stops all of it.
#   VAR=dir (default ./var)  LISTEN=host:port (default 127.0.0.1:8443)
#   SEI_URL=https://... (default: start the simulator)
set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
B=${SPTSM_BUILD:-$TOP/build}/bin
VAR=${VAR:-./var}
[ -n "$VAR" ] || VAR=./var
mkdir -p "$VAR"
VAR=$(cd "$VAR" && pwd)
LISTEN=${LISTEN:-127.0.0.1:8443}
[ -n "$LISTEN" ] || LISTEN=127.0.0.1:8443
SEI_URL=${SEI_URL:-}

mkdir -p "$VAR/tokens" "$VAR/log"
sed "s|^directories.tokendir.*|directories.tokendir = $VAR/tokens|" \
	"$TOP/softhsm.conf" > "$VAR/softhsm2.conf"
export SOFTHSM2_CONF="$VAR/softhsm2.conf"

echo "== SP-TSM: var dir $VAR (DEMO token and keys: not for production)"
"$B/kmsctl" --var "$VAR" demo-ceremony \
	--material "$TOP/tests/sim/demo/sei-demo.json" >"$VAR/log/ceremony.log" 2>&1 || {
	cat "$VAR/log/ceremony.log"; echo "demo ceremony failed" >&2; exit 1; }
grep -E '^(demo|token)' "$VAR/log/ceremony.log" || true

pids=""
stop() {
	trap - INT TERM EXIT
	echo "== stopping"
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	exit 0
}
trap stop INT TERM EXIT

"$B/kmsd" --var "$VAR" --insecure-pin-file "$VAR/kms/demo-user.pin" \
	--policy "$TOP/policy/kms.policy" 2>>"$VAR/log/kmsd.log" &
pids="$pids $!"
i=0
while [ ! -S "$VAR/run/kms.sock" ]; do
	i=$((i + 1))
	if [ $i -gt 100 ]; then echo "kmsd did not start; see $VAR/log/kmsd.log" >&2; exit 1; fi
	sleep 0.1
done
echo "== kmsd ready: $VAR/run/kms.sock (log $VAR/log/kmsd.log)"

if [ -x "$B/seisim" ] && [ -z "$SEI_URL" ]; then
	"$B/seisim" --var "$VAR" --material "$TOP/tests/sim/demo/sei-demo.json" \
		2>>"$VAR/log/seisim.log" &
	pids="$pids $!"
fi
if [ -x "$B/tsmd" ]; then
	set -- --var "$VAR" --listen "$LISTEN" --kms-socket "$VAR/run/kms.sock"
	[ -n "$SEI_URL" ] && set -- "$@" --sei-url "$SEI_URL"
	"$B/tsmd" "$@" 2>>"$VAR/log/tsmd.log" &
	pids="$pids $!"
	echo "== tsmd: https://$LISTEN (trust $VAR/ca.pem; admin key $VAR/admin.key)"
fi
echo "== running; Ctrl-C stops everything"
wait
