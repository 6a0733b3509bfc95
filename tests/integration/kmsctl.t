#!/usr/bin/env bash
# kmsctl.t - the key ceremonies, scripted through kmsctl's non-interactive
# mode against real SoftHSM2 tokens and a real kmsd: quorum at every subset
# size (kmsctl and kmsd unseal), shares from another token or given twice,
# components with check values, generated classes, inventory, lifecycle
# with pending destruction, backup to one token and restore into a second,
# audit verification and tampering, transcripts, public key export.
set -u
. "$(dirname "$0")/tap.sh"
trap 't_cleanup; [ -n "${KPID:-}" ] && kill $KPID 2>/dev/null' EXIT

K=$T_BIN/kmsctl
A=$T_DIR/a
B=$T_DIR/b
new_token_dir "$A"
new_token_dir "$B"
export SOFTHSM2_CONF=$A/softhsm2.conf

kcv() {	# GP KCV of an AES key: first 3 bytes of AES(K, 01x16)
	local c=aes-128-ecb
	[ ${#1} -eq 64 ] && c=aes-256-ecb
	printf '\001\001\001\001\001\001\001\001\001\001\001\001\001\001\001\001' |
		openssl enc -$c -nopad -K "$1" 2>/dev/null | od -An -tx1 | tr -d ' \n' | cut -c1-6
}

# ---- init and quorum ----
# Shares are written before the token is touched: when they cannot be
# (no file may grow: ulimit -f 0, SIGXFSZ ignored; the output goes through
# a pipe) init fails and leaves the token uninitialised, so the next init
# works. Existing share files are never overwritten, and a custodian name
# must be a plain file name.
mkdir -p "$A/var/kms/shares"
run_fails "init: the shares cannot be written" bash -c "trap '' XFSZ; set -o pipefail; (ulimit -f 0; exec $K --var '$A/var' init --custodians 4 --threshold 3 --names ann,ben,cat,dan 2>&1) | cat"
out_has "says the token is untouched" "the token is untouched"
ok $(ls "$A/var/kms/shares" | grep -q share; [ $? -ne 0 ]; echo $?) "no share file left behind"
echo keep >"$A/var/kms/shares/dan.share"
run_fails "init: an existing share file" $K --var "$A/var" init --custodians 4 --threshold 3 --names ann,ben,cat,dan
out_has "refuses to overwrite it" "never overwrites a share"
ok $([ "$(cat "$A/var/kms/shares/dan.share")" = keep ]; echo $?) "the existing file is unchanged"
rm -f "$A/var/kms/shares/dan.share"
run_fails "init: a custodian name with a slash" $K --var "$A/var" init --custodians 2 --threshold 2 --names ann,../x
out_has "names the bad name" "custodian name"
run_fails "init: a custodian name given twice" $K --var "$A/var" init --custodians 3 --threshold 2 --names ann,custodian3
out_has "says it would share a file" "given twice"
ok $(ls "$A/var/kms/shares" | grep -q share; [ $? -ne 0 ]; echo $?) "and writes no share"
long=$T_DIR/$(printf 'd%.0s' $(seq 100))
long=$long/$(basename "$long")/$(basename "$long")/$(basename "$long")/$(basename "$long")/$(basename "$long")/$(basename "$long")
run_fails "init: a shares dir too long for the share paths" $K --var "$A/var" init --custodians 2 --threshold 2 --shares-dir "$long"
out_has "says so (no truncated file name)" "path too long"
run_ok "init: 4 custodians, quorum 3" $K --var "$A/var" init --custodians 4 --threshold 3 --names ann,ben,cat,dan
out_has "shares written per custodian" "share 4 of 4 (quorum 3) for dan"
S=$A/var/kms/shares
perm=$(stat -c %a "$S/ann.share")
ok $([ "$perm" = 400 ]; echo $?) "share files are mode 0400 ($perm)"
ok $(grep -qi 'pin=' "$S/ann.share"; [ $? -ne 0 ]; echo $?) "no PIN in a share file"
run_fails "1 share: below the quorum" $K --var "$A/var" --share "$S/ann.share" key list
out_has "says the quorum" "quorum is 3"
run_fails "2 shares: below the quorum" $K --var "$A/var" --share "$S/ann.share" --share "$S/ben.share" key list
run_ok "3 shares: the quorum" $K --var "$A/var" --share "$S/ann.share" --share "$S/ben.share" --share "$S/dan.share" key list
run_ok "4 shares: more than the quorum" $K --var "$A/var" --share "$S/ann.share" --share "$S/ben.share" --share "$S/cat.share" --share "$S/dan.share" key list
run_fails "a share given twice" $K --var "$A/var" --share "$S/ann.share" --share "$S/ann.share" --share "$S/ben.share" key list
out_has "names the duplicate" "given twice"
cp "$S/cat.share" "$T_DIR/broken.share"; chmod 600 "$T_DIR/broken.share"
sed -i 's/^user-share=\(..\)/user-share=00/' "$T_DIR/broken.share"
run_fails "a damaged share" $K --var "$A/var" --share "$S/ann.share" --share "$S/ben.share" --share "$T_DIR/broken.share" key list
Q="--share $S/ann.share --share $S/ben.share --share $S/cat.share"
# Shares init wrote before the token had a serial (a crash before their
# rewrite) still open it: the PIN check decides, not the serial line.
for n in ann ben cat; do
	sed 's/^token-serial=.*/token-serial=pending/' "$S/$n.share" >"$T_DIR/pending-$n.share"
done
run_ok "pending shares (token-serial=pending) still open the token" $K --var "$A/var" --share "$T_DIR/pending-ann.share" --share "$T_DIR/pending-ben.share" --share "$T_DIR/pending-cat.share" key list
out_has "and say so" "token-serial=pending"

# a second token, for the foreign-share and restore checks
SOFTHSM2_CONF=$B/softhsm2.conf run_ok "second token: init 2-of-2" $K --var "$B/var" init --custodians 2 --threshold 2 --names x,y
SB=$B/var/kms/shares
run_fails "a share from another token" $K --var "$A/var" --share "$S/ann.share" --share "$S/ben.share" --share "$SB/x.share" key list
out_has "says which token" "not of this token"

# ---- components ----
c1=00112233445566778899aabbccddeeff; c2=0f1e2d3c4b5a69788796a5b4c3d2e1f0
kk=$(xorhex $c1 $c2)
printf 'component=%s\nkcv=%s\n' $c1 $(kcv $c1) >"$T_DIR/c1"
printf 'component=%s\nkcv=%s\n' $c2 $(kcv $c2) >"$T_DIR/c2"
printf 'component=%s\nkcv=000000\n' $c2 >"$T_DIR/c2bad"
run_fails "component with a wrong KCV" $K --var "$A/var" $Q key import-components --label peer/x/kek --type aes128 --class transport-kek --components 2 --component-file "$T_DIR/c1" --component-file "$T_DIR/c2bad" --confirm-kcv $(kcv $kk)
out_has "names the component" "component 2: its KCV is"
run_fails "combined KCV not confirmed" $K --var "$A/var" $Q key import-components --label peer/x/kek --type aes128 --class transport-kek --components 2 --component-file "$T_DIR/c1" --component-file "$T_DIR/c2" --confirm-kcv 123456
$K --var "$A/var" $Q key list >"$T_DIR/list" 2>&1
ok $(grep -q peer/x/kek "$T_DIR/list"; [ $? -ne 0 ]; echo $?) "nothing was created by the refused ceremonies"
run_ok "transport KEK from 2 components" $K --var "$A/var" $Q key import-components --label peer/x/kek --type aes128 --class transport-kek --components 2 --component-file "$T_DIR/c1" --component-file "$T_DIR/c2" --confirm-kcv $(kcv $kk)
out_has "shows the combined KCV" "combined key KCV: $(kcv $kk | tr a-f A-F)"
b1=$(printf '%064d' 1 | tr 0 1); b2=$(printf '%064d' 2 | tr 0 2 | tr 1 2)
bk=$(xorhex $b1 $b2)
printf 'component=%s\nkcv=%s\n' $b1 $(kcv $b1) >"$T_DIR/b1"
printf 'component=%s\nkcv=%s\n' $b2 $(kcv $b2) >"$T_DIR/b2"
run_ok "backup KEK from components" $K --var "$A/var" $Q key import-components --label backup-kek --type aes256 --class backup-kek --components 2 --component-file "$T_DIR/b1" --component-file "$T_DIR/b2" --confirm-kcv $(kcv $bk)

# ---- generated keys, inventory ----
for c in storage-kek ca master; do
	run_ok "generate $c" $K --var "$A/var" $Q key generate --label $c --class $c
done
run_ok "generate mac" $K --var "$A/var" $Q key generate --label peer/x/mac --class mac
run_fails "an unknown label" $K --var "$A/var" $Q key archive --label no/such/key
out_has "names it" "no key 'no/such/key'"
for c in init unseal status "key generate" "key import-components" "key list" "key export-public" "key revoke" "key destroy" "key rotate" rewrap backup restore "audit verify" "audit show" "transcript verify" demo-ceremony; do
	run_ok "kmsctl $c --help" $K --var "$A/var" $c --help
done
run_fails "generate over an existing label" $K --var "$A/var" $Q key generate --label ca --class ca
run_ok "key list --json" $K --var "$A/var" $Q --json key list
out_has "JSON lists the token attributes" '"neverExtractable"'
out_has "JSON has the storage KEK's KCV" '"class": "storage-kek"'
run_ok "export the CA public key" $K --var "$A/var" $Q key export-public --label ca --out "$T_DIR/ca.pub"
run_ok "the PEM is a P-256 public key" sh -c "openssl pkey -pubin -in '$T_DIR/ca.pub' -noout -text | grep -q 'NIST CURVE: P-256'"

# ---- kmsd unseal with shares ----
$T_BIN/kmsd --var "$A/var" --policy "$T_TOP/policy/kms.policy" 2>"$T_DIR/kmsd.log" &
KPID=$!
for i in $(seq 100); do [ -S "$A/var/run/kms-custodian.sock" ] && break; sleep 0.05; done
run_ok "kmsd starts sealed" sh -c "$K --var '$A/var' status | grep -q SEALED"
run_fails "unseal with 2 shares: still sealed" $K --var "$A/var" --share "$S/ann.share" --share "$S/ben.share" unseal
out_has "progress shown" "accepted: 2 of 3"
run_fails "the same share again" $K --var "$A/var" --share "$S/ben.share" unseal
out_has "refused as a duplicate" "already given"
run_fails "a share of another token" $K --var "$A/var" --share "$SB/x.share" unseal
run_ok "the third share unseals, written token-serial=pending by an init that stopped" $K --var "$A/var" --share "$T_DIR/pending-cat.share" unseal
out_has "says so" "kmsd is unsealed"
run_ok "kmsd reports unsealed" sh -c "$K --var '$A/var' status | grep -q unsealed"

# ---- lifecycle ----
run_fails "destroy an ACTIVE key" $K --var "$A/var" $Q key destroy --label master
out_has "archive it first" "archive it first"
run_fails "destroy without a quorum" $K --var "$A/var" key destroy --label master
run_ok "suspend" $K --var "$A/var" $Q key suspend --label master
run_ok "activate again" $K --var "$A/var" $Q key activate --label master
run_ok "archive" $K --var "$A/var" $Q key archive --label master
run_ok "destroy starts the pending period" $K --var "$A/var" $Q key destroy --label master
out_has "7 days" "PENDING_DESTRUCTION until"
run_fails "destroy again before the period ends" $K --var "$A/var" $Q key destroy --label master
run_ok "cancel the destruction" $K --var "$A/var" $Q key cancel-destroy --label master
out_has "back to archived" "DEACTIVATED"
run_ok "revoke with a reason" $K --var "$A/var" $Q key revoke --label master --reason "test compromise"
run_ok "destroy --now (tests)" sh -c "$K --var '$A/var' $Q key destroy --label master && $K --var '$A/var' $Q key destroy --label master --now"
run_ok "record kept after destruction" sh -c "$K --var '$A/var' $Q key list | grep master | grep -q DESTROYED"
run_fails "activate a destroyed key" $K --var "$A/var" $Q key activate --label master
run_ok "rotate the storage KEK" $K --var "$A/var" $Q key rotate --label storage-kek
out_has "version 2" "now at version 2"

# ---- backup and restore ----
run_ok "backup" $K --var "$A/var" $Q backup --to "$T_DIR/backup.json"
export SOFTHSM2_CONF=$B/softhsm2.conf
QB="--share $SB/x.share --share $SB/y.share"
run_fails "restore before the backup KEK exists" $K --var "$B/var" $QB restore --from "$T_DIR/backup.json"
o1=11111111111111111111111111111111; o2=22222222222222222222222222222222
ob=$(xorhex $o1 $o2)
printf 'component=%s\nkcv=%s\n' $o1 $(kcv $o1) >"$T_DIR/o1"
printf 'component=%s\nkcv=%s\n' $o2 $(kcv $o2) >"$T_DIR/o2"
run_ok "a different backup KEK on token B" $K --var "$B/var" $QB key import-components --label backup-kek --type aes128 --class backup-kek --components 2 --component-file "$T_DIR/o1" --component-file "$T_DIR/o2" --confirm-kcv $(kcv $ob)
run_fails "restore under another backup KEK" $K --var "$B/var" $QB restore --from "$T_DIR/backup.json"
out_has "says so" "made under a backup KEK with KCV"
# a third token with the right backup KEK
C=$T_DIR/c; new_token_dir "$C"; export SOFTHSM2_CONF=$C/softhsm2.conf
run_ok "third token" $K --var "$C/var" init --custodians 1 --threshold 1 --names z
QC="--share $C/var/kms/shares/z.share"
run_ok "backup KEK re-entered from its components" $K --var "$C/var" $QC key import-components --label backup-kek --type aes256 --class backup-kek --components 2 --component-file "$T_DIR/b1" --component-file "$T_DIR/b2" --confirm-kcv $(kcv $bk)
head -c 2000 "$T_DIR/backup.json" >"$T_DIR/trunc.json"
run_fails "truncated backup refused" $K --var "$C/var" $QC restore --from "$T_DIR/backup.json.none"
run_fails "truncated backup file refused" $K --var "$C/var" $QC restore --from "$T_DIR/trunc.json"
sed 's/"state": "ACTIVE"/"state": "SUSPENDED"/' "$T_DIR/backup.json" >"$T_DIR/tampered.json"
run_fails "tampered backup refused" $K --var "$C/var" $QC restore --from "$T_DIR/tampered.json"
out_has "MAC named" "MAC does not verify"
run_ok "restore into the fresh token" $K --var "$C/var" $QC restore --from "$T_DIR/backup.json"
out_has "each key proven equal" "each proven equal to the original"
SOFTHSM2_CONF=$A/softhsm2.conf $K --var "$A/var" $Q key list | awk '$2=="storage-kek"||$2=="ca"{print $1,$3,$4,$5,$6}' | sort >"$T_DIR/kcv.a"
$K --var "$C/var" $QC key list | awk '$2=="storage-kek"||$2=="ca"{print $1,$3,$4,$5,$6}' | sort >"$T_DIR/kcv.c"
ok $(cmp -s "$T_DIR/kcv.a" "$T_DIR/kcv.c"; echo $?) "restored keys equal the originals by KCV, version and state"
export SOFTHSM2_CONF=$A/softhsm2.conf

# ---- audit and transcripts ----
run_ok "audit verify through kmsd's auditor socket" $K --var "$A/var" audit verify
out_has "counts the records" "chain and MACs verified"
L=$A/var/kms/audit.log
run_ok "audit show filters by key" sh -c "$K --var '$A/var' audit show --key master | grep -q destroy"
run_ok "audit show filters by actor" sh -c "$K --var '$A/var' audit show --actor kmsctl | grep -q key.generate"
n=$(wc -l <"$L"); mid=$((n / 2))
awk -v m=$mid 'NR==m{sub(/"result":"ok"/,"\"result\":\"error\"")}1' "$L" >"$T_DIR/tampered.log"
run_fails "an edited audit line is found" $K --var "$A/var" audit verify --file "$T_DIR/tampered.log"
out_has "at its line" "BROKEN at line"
sed "${mid}d" "$L" >"$T_DIR/deleted.log"
run_fails "a deleted audit line is found" $K --var "$A/var" audit verify --file "$T_DIR/deleted.log"
tr=$(ls "$A/var/kms/transcripts/"*-backup.json | head -1)
run_ok "a ceremony transcript verifies" $K --var "$A/var" transcript verify "$tr"
out_has "lists the keys" "key backed up storage-kek"
sed 's/"outcome": "ok"/"outcome": "ko"/' "$tr" >"$T_DIR/tr.json"
run_fails "an altered transcript does not" $K --var "$A/var" transcript verify "$T_DIR/tr.json"

kill $KPID; wait $KPID 2>/dev/null; KPID=
done_testing
