#!/bin/bash
# run.t - `make run` (tests/run.sh) end to end, in a temporary var dir on
# free ports: first start writes tsmd's config with the demo SEI peer and
# starts kmsd, the SEI-TSM simulator and tsmd; /healthz answers over HTTPS
# trusted through VAR/ca.pem; signed calls with the demo MAC key (from the
# demo material's components) pass tsmd and the simulator; SIGTERM stops
# every process; a second start keeps the config. Needs the built tree.
set -u
. "$(dirname "$0")/tap.sh"
RUNPID=""
trap '[ -n "$RUNPID" ] && kill -TERM -- -$RUNPID 2>/dev/null; t_cleanup' EXIT

for b in kmsd kmsctl tsmd seisim; do
	if [ ! -x "$T_BIN/$b" ]; then
		echo "1..0 # SKIP $T_BIN/$b not built"
		exit 0
	fi
done

free_port() {	# a loopback port nobody answers on
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		(echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }
	done
}

# https HOST:PORT CAFILE METHOD PATH [BODY [SIGNATURE]]: the raw answer
https() {
	local body=${5:-} req
	req="$3 $4 HTTP/1.0\r\nHost: $1\r\n"
	[ -n "${6:-}" ] && req="${req}X-TSM-Signature: $6\r\n"
	[ "$3" = POST ] && req="${req}Content-Type: application/json\r\nContent-Length: ${#body}\r\n"
	printf "${req}\r\n%s" "$body" | timeout 10 openssl s_client -quiet \
		-connect "$1" -CAfile "$2" -verify_return_error 2>/dev/null
}

M=$T_TOP/tests/sim/demo/sei-demo.json
# the demo MAC key = XOR of its two components (ARCHITECTURE.md)
comps=$(sed -n '/"macKey"/,$p' "$M" | grep -o '"[0-9a-f]\{64\}"' | tr -d '"')
MACKEY=$(xorhex $(echo $comps | cut -d' ' -f1) $(echo $comps | cut -d' ' -f2))

sign() {	# sign PATH BODY: X-TSM-Signature with the demo key
	local ts nonce bh mac
	ts=$(date +%s)
	nonce=$(openssl rand -hex 16)
	bh=$(printf %s "$2" | openssl dgst -sha256 -r | cut -c1-64)
	mac=$(printf 'POST\n%s\n%s\n%s\n%s' "$1" "$ts" "$nonce" "$bh" |
		openssl dgst -sha256 -mac HMAC -macopt "hexkey:$MACKEY" -r | cut -c1-64)
	echo "keyId=sei-demo-mac-1,ts=$ts,nonce=$nonce,sig=$mac"
}

VAR=$T_DIR/var
PORT=$(free_port)
SPORT=$(free_port)
while [ "$SPORT" = "$PORT" ]; do SPORT=$(free_port); done

# Job control: run.sh gets its own process group, as `make run` in a
# terminal does, and does not start with SIGINT ignored (a background job
# of a non-interactive shell would), so Ctrl-C can be played below.
set -m
start() {
	VAR=$VAR LISTEN=127.0.0.1:$PORT SEI_LISTEN=127.0.0.1:$SPORT \
		sh "$T_TOP/tests/run.sh" >"$T_DIR/run.out" 2>&1 &
	RUNPID=$!
	local i
	for ((i = 0; i < 250; i++)); do
		https 127.0.0.1:$PORT "$VAR/ca.pem" GET /healthz 2>/dev/null |
			grep -q '"status":"ok"' && return 0
		kill -0 $RUNPID 2>/dev/null || break
		sleep 0.1
	done
	return 1
}

t0=$(date +%s)
start
ok $? "make run: tsmd /healthz answers over HTTPS (trust VAR/ca.pem) within 25 s"
[ $T_FAIL -eq 0 ] || { sed 's/^/# /' "$T_DIR/run.out"; tail -n 5 "$VAR"/log/*.log | sed 's/^/# /'; }
https 127.0.0.1:$PORT "$VAR/ca.pem" GET /healthz >"$T_DIR/last.out"
out_has "healthz: kmsd reachable" '"kms":"ok"'
https 127.0.0.1:$PORT /etc/ssl/certs/ca-certificates.crt GET /healthz >"$T_DIR/last.out"
! grep -q '"status"' "$T_DIR/last.out"; ok $? "tsmd's certificate is not trusted without VAR/ca.pem"

kids=$(ps -o pid=,comm= --ppid $RUNPID)
echo "$kids" | grep -q ' kmsd$'; ok $? "kmsd runs"
echo "$kids" | grep -q ' seisim$'; ok $? "the SEI-TSM simulator runs"
echo "$kids" | grep -q ' tsmd$'; ok $? "tsmd runs"
pids=$(echo "$kids" | awk '{print $1}')

C=$VAR/tsm/tsmd.json
cp "$C" "$T_DIR/last.out"
out_has "config: demo peer" '"seiTsmId": "SEI-TSM-DEMO"'
out_has "config: transport KEK label from the ceremony" '"transportKek": "peer/SEI-TSM-DEMO/kek"'
out_has "config: MAC key label and keyId" '"macKeyId": "sei-demo-mac-1"'
out_has "config: the simulator's URL" "\"baseUrl\": \"https://127.0.0.1:$SPORT\""
out_has "config: trusts the simulator's CA" "\"tlsCa\": \"$VAR/seisim/ca.pem\""
out_has "config: no client certificate for the demo" '"clientCertRequired": false'
grep -q -- '--sei-url' "$T_TOP/tests/run.sh"; [ $? -ne 0 ]; ok $? "run.sh passes no --sei-url"
ps -o args= --ppid $RUNPID | grep tsmd | grep -q -- "--config $C"; ok $? "tsmd started with --config"

https 127.0.0.1:$SPORT "$VAR/seisim/ca.pem" GET /healthz >"$T_DIR/last.out"
out_has "simulator /healthz over HTTPS (VAR/seisim/ca.pem)" '"seiTsmId":"SEI-TSM-DEMO"'

# The demo peer's key, as tsmd holds it after the ceremony, and the config.
body='{"seiTsmId":"SEI-TSM-DEMO"}'
https 127.0.0.1:$PORT "$VAR/ca.pem" POST /api/v1/sei/ping "$body" "$(sign /api/v1/sei/ping "$body")" >"$T_DIR/last.out"
out_has "tsmd accepts a call signed with the demo MAC key" '"resultCode":0'
out_has "... as the demo peer" 'SEI-TSM-DEMO'
# ... and the simulator, a 9.3 token with the demo tenant.
body='{"tenantId":"SP-TSM-DEMO-0001","optType":"CREATE_TOKEN","seId":"0011223344556677","rawData":["00800A4F08A000000999000001"]}'
https 127.0.0.1:$SPORT "$VAR/seisim/ca.pem" POST /token "$body" "$(sign /token "$body")" >"$T_DIR/last.out"
out_has "the simulator answers a signed 9.3 request" '"resultCode":0'
out_has "... with a token" '"token":\["[0-9A-F]\{512\}"\]'

kill -TERM $RUNPID
for ((i = 0; i < 150; i++)); do kill -0 $RUNPID 2>/dev/null || break; sleep 0.1; done
wait $RUNPID; rc=$?
RUNPID=""
is0=1; [ $rc -eq 0 ] && is0=0
ok $is0 "SIGTERM: run.sh exits 0"
alive=""
for p in $pids; do kill -0 $p 2>/dev/null && alive="$alive $p"; done
[ -z "$alive" ]; ok $? "SIGTERM: kmsd, seisim and tsmd are all gone${alive:+ (alive:$alive)}"
[ ! -f "$VAR/seisim/seisim.addr" ] && [ ! -f "$VAR/tsm/tsmd.addr" ]
ok $? "clean stops (address files removed)"

# A second start: same config, same keys.
sum=$(sha256sum "$C")
start
ok $? "second start: /healthz again"
[ "$(sha256sum "$C")" = "$sum" ]; ok $? "second start keeps tsmd.json"
body='{"seiTsmId":"SEI-TSM-DEMO"}'
https 127.0.0.1:$PORT "$VAR/ca.pem" POST /api/v1/sei/ping "$body" "$(sign /api/v1/sei/ping "$body")" >"$T_DIR/last.out"
out_has "second start: the demo peer still verifies" '"resultCode":0'
pids=$(ps -o pid= --ppid $RUNPID)
kill -INT -- -$RUNPID	# the terminal's Ctrl-C: SIGINT to the process group
for ((i = 0; i < 150; i++)); do kill -0 $RUNPID 2>/dev/null || break; sleep 0.1; done
wait $RUNPID; rc=$?
RUNPID=""
alive=""
for p in $pids; do kill -0 $p 2>/dev/null && alive="$alive $p"; done
[ $rc -eq 0 ] && [ -z "$alive" ]; ok $? "SIGINT (Ctrl-C) stops everything too"
t1=$(date +%s)
[ $((t1 - t0)) -lt 30 ]; ok $? "under 30 s ($((t1 - t0)) s)"

done_testing
