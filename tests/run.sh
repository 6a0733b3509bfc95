#!/bin/sh
# run.sh - `make run`: everything in the foreground against one var dir.
# First start: initialises the SoftHSM2 token, runs the DEMO key ceremony
# (tests/sim/demo/) and writes tsmd's configuration VAR/tsm/tsmd.json with
# the demo SEI peer. Then starts kmsd, the SEI-TSM simulator (unless
# SEI_URL= names another SEI-TSM) and tsmd. Ctrl-C or SIGTERM stops all.
#   VAR=dir (default ./var)  LISTEN=host:port (default 127.0.0.1:8443)
#   SEI_URL=https://... (default: start the simulator)
#   SEI_CA=file (with SEI_URL: CA of that SEI-TSM's server certificate;
#     default system trust)  SEI_LISTEN=host:port (the simulator's address,
#     default 127.0.0.1:9443)
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
SEI_CA=${SEI_CA:-}
SEI_LISTEN=${SEI_LISTEN:-127.0.0.1:9443}
MATERIAL=$TOP/tests/sim/demo/sei-demo.json

mkdir -p "$VAR/tokens" "$VAR/log" "$VAR/tsm"
sed "s|^directories.tokendir.*|directories.tokendir = $VAR/tokens|" \
	"$TOP/softhsm.conf" > "$VAR/softhsm2.conf"
export SOFTHSM2_CONF="$VAR/softhsm2.conf"

echo "== SP-TSM: var dir $VAR (DEMO token and keys: not for production)"
"$B/kmsctl" --var "$VAR" demo-ceremony \
	--material "$MATERIAL" >"$VAR/log/ceremony.log" 2>&1 || {
	cat "$VAR/log/ceremony.log"; echo "demo ceremony failed" >&2; exit 1; }
grep -E '^(demo|token)' "$VAR/log/ceremony.log" || true

# A string member of the demo material ("name": "value"; the file's
# format is fixed by ARCHITECTURE.md "Demo material").
material() {
	sed -n "s/.*\"$1\" *: *\"\([^\"]*\)\".*/\1/p" "$MATERIAL" | head -n 1
}

# tsmd's configuration, written once: the demo SEI peer with the labels the
# demo ceremony gave its keys. clientCertRequired is false for the DEMO
# only: the simulator presents no TLS client certificate, so the peer is
# authenticated by its HMAC key alone. Delete the file to regenerate it.
CONF=$VAR/tsm/tsmd.json
if [ ! -f "$CONF" ]; then
	id=$(material seiTsmId)
	if [ -n "$SEI_URL" ]; then
		base=$SEI_URL
		ca=$SEI_CA
	else
		base=https://$SEI_LISTEN
		ca=$VAR/seisim/ca.pem
	fi
	tlsca=""
	[ -n "$ca" ] && tlsca="\"tlsCa\": \"$ca\","
	(umask 077; cat >"$CONF.tmp") <<EOF
{
  "_comment": "Written by make run (tests/run.sh) on first start: the DEMO SEI-TSM peer of tests/sim/demo/sei-demo.json, its keys entered by the demo ceremony. clientCertRequired is false for the demo only (the simulator has no TLS client certificate; its HMAC key authenticates it). Not for production. See tsm/tsmd.conf.md.",
  "peers": [
    {
      "seiTsmId": "$id",
      "tenantId": "$(material tenantId)",
      "baseUrl": "$base",
      "wrap": "$(material wrap)",
      "kcvMethod": "$(material kcvMethod)",
      "transportKek": "peer/$id/kek",
      "macKeyId": "$(material keyId)",
      "macKey": "peer/$id/mac",
      $tlsca
      "clientCertRequired": false
    }
  ]
}
EOF
	mv "$CONF.tmp" "$CONF"
	echo "== wrote $CONF (demo peer $id at $base)"
elif [ -n "$SEI_URL" ] && ! grep -q "\"baseUrl\": \"$SEI_URL\"" "$CONF"; then
	echo "== note: $CONF exists and names another SEI-TSM than SEI_URL; delete it to regenerate" >&2
fi

pids=""
stop() {
	trap - INT TERM EXIT
	echo "== stopping"
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	exit "$1"
}
# Ctrl-C and SIGTERM are the normal way out; any other exit (a daemon that
# did not start, a failed step under set -e) keeps its status.
trap 'stop 0' INT TERM
trap 'stop $?' EXIT

wait_for() {	# wait_for NAME LOG TEST...: up to 10 s until `test TEST...`
	name=$1 log=$2
	shift 2
	i=0
	until test "$@"; do
		i=$((i + 1))
		if [ $i -gt 100 ]; then
			echo "$name did not start; see $log" >&2
			exit 1
		fi
		sleep 0.1
	done
}

"$B/kmsd" --var "$VAR" --insecure-pin-file "$VAR/kms/demo-user.pin" \
	--policy "$TOP/policy/kms.policy" 2>>"$VAR/log/kmsd.log" &
pids="$pids $!"
wait_for kmsd "$VAR/log/kmsd.log" -S "$VAR/run/kms.sock"
echo "== kmsd ready: $VAR/run/kms.sock (log $VAR/log/kmsd.log)"

# The simulator first: its first start writes VAR/seisim/ca.pem, which
# tsmd's peer entry trusts.
if [ -x "$B/seisim" ] && [ -z "$SEI_URL" ]; then
	rm -f "$VAR/seisim/seisim.addr"
	"$B/seisim" --var "$VAR" --listen "$SEI_LISTEN" --material "$MATERIAL" \
		--tsm-url "https://$LISTEN" --tsm-ca "$VAR/ca.pem" \
		2>>"$VAR/log/seisim.log" &
	pids="$pids $!"
	wait_for seisim "$VAR/log/seisim.log" -s "$VAR/seisim/seisim.addr"
	echo "== SEI-TSM simulator: https://$SEI_LISTEN (DEMO; state $VAR/seisim/state.json, log $VAR/log/seisim.log)"
fi
if [ -x "$B/tsmd" ]; then
	"$B/tsmd" --config "$CONF" --var "$VAR" --listen "$LISTEN" \
		--kms-socket "$VAR/run/kms.sock" 2>>"$VAR/log/tsmd.log" &
	pids="$pids $!"
	echo "== tsmd: https://$LISTEN (trust $VAR/ca.pem; admin key $VAR/admin.key; config $CONF)"
fi
echo "== running; Ctrl-C stops everything"
wait
