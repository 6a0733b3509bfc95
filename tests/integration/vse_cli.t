#!/bin/bash
# vse_cli.t - the vse command end to end (TAP): init with demo keys, help
# texts, scripts with secure channel directives (SSD creation, first keys
# by PUT KEY through the ISD, SSD session), .expect, persistence of the
# sequence counter, refusals. Runs in a temp directory; needs build/bin/vse.
set -u

BUILD=${SPTSM_BUILD:-$(cd "$(dirname "$0")/../.." && pwd)/build}
VSE=$BUILD/bin/vse
T=$(mktemp -d /tmp/vse_cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
n=0
failed=0

ok() {	# ok CONDITION-EXIT-STATUS DESCRIPTION
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
	fi
}

has() {	# has FILE PATTERN
	grep -q -- "$2" "$1"
}

if [ ! -x "$VSE" ]; then
	echo "1..0 # SKIP $VSE not built"
	exit 0
fi

# --help for every command.
for c in "" init run show; do
	# shellcheck disable=SC2086
	"$VSE" $c --help >"$T/help" 2>&1
	ok $? "vse $c --help exits 0"
done
has "$T/help" "usage: vse show"; ok $? "show --help text"
"$VSE" >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "no command: exit 2"
"$VSE" frob >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "unknown command: exit 2"
"$VSE" init --se-id XYZ "$T/x.json" >/dev/null 2>&1; [ $? -ne 0 ]
ok $? "init refuses a non-hex seId"

# A demo card.
CARD=$T/card.json
"$VSE" init "$CARD" --se-id 0011223344556677 --demo >"$T/out" 2>&1
ok $? "vse init --demo"
has "$T/out" "seId 0011223344556677"; ok $? "init prints the seId"
[ "$(stat -c %a "$CARD")" = 600 ]; ok $? "card file is mode 0600"
"$VSE" init "$CARD" --se-id 0011223344556677 >/dev/null 2>&1; [ $? -ne 0 ]
ok $? "init refuses to overwrite a card"
"$VSE" show "$CARD" >"$T/show" 2>&1; ok $? "vse show"
has "$T/show" "ISD A000000151000000 lcs 0F SECURED"; ok $? "show: ISD SECURED"
has "$T/show" "ELF A0000001515350"; ok $? "show: preloaded SD package"
has "$T/show" "keyset KVN 30 seq 000000"; ok $? "show: demo ISD key set"
has "$T/show" "keyset KVN 70 seq 000000: KID 01 RSA-2048"; ok $? "show: token key"
has "$T/show" "keyset KVN 71"; ok $? "show: receipt key"

# Plain commands and .expect.
cat >"$T/plain.apdu" <<'EOF'
# plain commands, no secure channel
00A4040000
.expect 9000
80CA004500          # CIN = seId
.expect 9000
80 CA 9F 7F 00      # spaces between bytes are fine
.expect 9000
80F28002024F0000
.expect 6982
80CA123400
.expect 6A88
EOF
"$VSE" run "$CARD" "$T/plain.apdu" >"$T/out" 2>&1; ok $? "plain script runs"
has "$T/out" "^< 45080011223344556677 *9000\|^< 45080011223344556677  OK"
ok $? "GET DATA 0045 printed"
has "$T/out" "SECURITY_STATUS_NOT_SATISFIED"; ok $? "status words are named"

# SSD creation, first keys through the ISD, SSD session.
SSDKEY=404142434445464748494A4B4C4D4E4F
cat >"$T/ssd.apdu" <<EOF
00A4040000
.auth 30 03
80F28002024F0000
.expect 9000
# INSTALL [for install and make selectable]: SSD A000000999000001, AM,
# C9{81 02 03 70} EF{C8 NV 4096, C7 V 256}
80E60C0030 07A0000001515350 08A000000151535041 08A000000999000001 03804000 10C90481020370EF08C8021000C7020100 00 00
.expect 9000
# INSTALL [for personalization] of the SSD, then PUT KEY forwarded to it
80E620000E000008A00000099900000100000000
.expect 9000
.putkey 00 30 $SSDKEY $SSDKEY $SSDKEY
.expect 9000
00A4040008A000000999000001
.expect 9000
.auth 30 33 $SSDKEY $SSDKEY $SSDKEY
80F24002024F0000
.expect 9000
80CAFF2100
.expect 9000
EOF
"$VSE" run "$CARD" "$T/ssd.apdu" >"$T/out" 2>&1; rc=$?
ok $rc "SSD script runs"
[ $rc -eq 0 ] || sed 's/^/# /' "$T/out"
has "$T/out" "# secure channel open: KVN 30 SL 03"; ok $? ".auth with demo keys"
has "$T/out" "^< 30504A77504A77504A77"; ok $? "PUT KEY answers KVN and KCVs"
has "$T/out" "wire > 84"; ok $? "wrapped commands are shown"
has "$T/out" "# secure channel open: KVN 30 SL 33"; ok $? "SSD session at SL 33"
"$VSE" show "$CARD" >"$T/show" 2>&1
has "$T/show" "SSD A000000999000001 lcs 07 SELECTABLE priv 804000"
ok $? "show: SSD created"
has "$T/show" "quota nv 4096 v 256"; ok $? "show: SSD quotas"
has "$T/show" "KID 01 AES-128 KCV 504A77"; ok $? "show: SSD keys as KCVs only"
grep -qi "$SSDKEY" "$T/show"; [ $? -ne 0 ]; ok $? "show never prints key values"
has "$T/show" "keyset KVN 30 seq 000001: KID 01 AES-128 KCV"
ok $? "ISD sequence counter persisted (1)"

# A second run moves the counter again.
printf '00A4040000\n.auth\n' >"$T/again.apdu"
"$VSE" run "$CARD" "$T/again.apdu" >/dev/null 2>&1; ok $? "second session"
"$VSE" show "$CARD" | grep -q "A000000151000000" && \
	"$VSE" show "$CARD" | grep -q "keyset KVN 30 seq 000002"
ok $? "sequence counter 2 after reopening"

# Failures.
printf '80CA9F7F00\n.expect 6A88\n' >"$T/fail.apdu"
"$VSE" run "$CARD" "$T/fail.apdu" >"$T/out" 2>&1; [ $? -eq 1 ]
ok $? "failed .expect: exit 1"
printf '80CA9F7\n' >"$T/bad.apdu"
"$VSE" run "$CARD" "$T/bad.apdu" >/dev/null 2>&1; [ $? -eq 2 ]
ok $? "odd hex line: exit 2"
printf '.auth 31\n' >"$T/nokey.apdu"
"$VSE" run "$CARD" "$T/nokey.apdu" >"$T/out" 2>&1; [ $? -eq 1 ]
ok $? ".auth with an unknown KVN fails"
has "$T/out" "6A88"; ok $? "... and reports 6A88"
echo '{"format":"sptsm-vse/1"}' >"$T/broken.json"
"$VSE" show "$T/broken.json" >/dev/null 2>&1; [ $? -eq 2 ]
ok $? "show refuses a broken card file"
printf '00A4040000\n' | "$VSE" run "$CARD" - >/dev/null 2>&1
ok $? "script from stdin"

echo "1..$n"
[ $failed -eq 0 ]
