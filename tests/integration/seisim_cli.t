#!/bin/bash
# seisim_cli.t - the seisim command line (TAP): help, refused options and
# material, first-start TLS files and their modes, the address file, a
# clean stop, --no-tls only on loopback, `repair` argument checks and a
# repair with nothing to report. No kmsd or tsmd needed.
set -u
. "$(dirname "$0")/tap.sh"
SPID=""
trap '[ -n "$SPID" ] && kill $SPID 2>/dev/null; t_cleanup' EXIT

S=$T_BIN/seisim
if [ ! -x "$S" ]; then
	echo "1..0 # SKIP $S not built"
	exit 0
fi
M=$T_TOP/tests/sim/demo/sei-demo.json
V=$T_DIR/var

run_ok "--help exits 0" "$S" --help
out_has "--help names the endpoints" "ssd/instructions"
out_has "--help describes repair" "seisim repair SEID"
"$S" frob >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "unknown command: exit 2"
"$S" --fault sometimes --var "$V" >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "unknown --fault: exit 2"
"$S" --sl 01 --var "$V" >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "--sl 01: exit 2"
"$S" --var "$V" --listen 0.0.0.0:0 --no-tls >"$T_DIR/last.out" 2>&1; [ $? -eq 2 ]
ok $? "--no-tls on a non-loopback address: refused"
sed 's/"kcv": "f70f3a"/"kcv": "000000"/' "$M" >"$T_DIR/bad.json"
run_fails "material whose KEK does not match its KCV" "$S" --var "$V" --material "$T_DIR/bad.json"
out_has "names the field" "transportKek"
sed 's/"wrap": "AES-KW"/"wrap": "RSA-OAEP-SHA1"/' "$M" >"$T_DIR/rsa.json"
run_fails "RSA-OAEP without the SP transport public key" "$S" --var "$V" --material "$T_DIR/rsa.json"
out_has "says what is missing" "spTransportPublicKey"

"$S" --var "$V" --listen 127.0.0.1:0 --material "$M" 2>"$T_DIR/sim.log" &
SPID=$!
for ((i = 0; i < 200; i++)); do [ -s "$V/seisim/seisim.addr" ] && break; sleep 0.05; done
[ -s "$V/seisim/seisim.addr" ]; ok $? "first start: address file written"
[ "$(stat -c %a "$V/seisim/tls.key")" = 600 ]; ok $? "TLS key is mode 0600"
cmp -s "$V/seisim/tls.crt" "$V/seisim/ca.pem"; ok $? "ca.pem is the server certificate"
openssl x509 -in "$V/seisim/ca.pem" -noout -ext subjectAltName 2>/dev/null | grep -q "IP Address:127.0.0.1"
ok $? "certificate names 127.0.0.1"
grep -q "event=ready" "$T_DIR/sim.log"; ok $? "logs event=ready"
grep -q 'note="SIMULATOR, demo keys"' "$T_DIR/sim.log"; ok $? "says it is a simulator"
kill -TERM $SPID; wait $SPID; rc=$?; SPID=""
[ $rc -eq 0 ]; ok $? "SIGTERM: exit 0"
[ ! -e "$V/seisim/seisim.addr" ]; ok $? "address file removed on stop"
mv "$V/seisim/tls.crt" "$T_DIR/tls.crt"
run_fails "only one of tls.crt/tls.key: refuses to start" "$S" --var "$V" --listen 127.0.0.1:0 --material "$M"
out_has "says which" "only one of"
mv "$T_DIR/tls.crt" "$V/seisim/tls.crt"

"$S" repair --var "$V" --material "$M" >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "repair without SEID: exit 2"
"$S" repair 0011 --var "$V" --material "$M" >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "repair with a 2-byte SEID: exit 2"
"$S" repair 0011223344556677 --status BROKEN --var "$V" --material "$M" >/dev/null 2>&1; [ $? -eq 2 ]
ok $? "repair --status other than DELETED/RESETED: exit 2"
run_ok "repair with nothing created: exit 0" "$S" repair 0011223344556677 --var "$V" --material "$M"
out_has "says so" "no SSD created by the simulator"
run_fails "repair --card with a missing card file" "$S" repair 0011223344556677 --var "$V" --material "$M" --card "$T_DIR/none.json"

done_testing
