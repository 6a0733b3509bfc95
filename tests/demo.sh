#!/bin/sh
# demo.sh - `make demo`: one virtual SE through the SSD life cycle, with a
# readable transcript: create SSD -> key sync -> initial-key replacement ->
# lock -> a refused operation -> unlock -> SE repair (state sync, signed
# webhook) -> create again. DEMO keys and simulators only.
#   VAR=dir   use a running `make run` there (its admin key, CA, seisim);
#             default: start kmsd, seisim and tsmd in a temporary var dir
set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
B=${SPTSM_BUILD:-$TOP/build}/bin
MATERIAL=$TOP/tests/sim/demo/sei-demo.json
OWN=""
RUNPID=""
HOOKPID=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

cleanup() {
	[ -n "$HOOKPID" ] && kill "$HOOKPID" 2>/dev/null || true
	if [ -n "$RUNPID" ]; then
		kill "$RUNPID" 2>/dev/null || true
		wait "$RUNPID" 2>/dev/null || true
	fi
	if [ -n "$OWN" ] && [ "${KEEP:-0}" != 1 ]; then rm -rf "$OWN"; fi
}
trap cleanup EXIT INT TERM

# A free loopback port (perl is in the build dependencies).
free_port() {
	perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(Listen => 1,
	    LocalAddr => "127.0.0.1", LocalPort => 0) or die; print $s->sockport'
}

# json FIELD.PATH < body: one value ("" when absent).
json() {
	perl -MJSON::PP -e 'local $/; my $j = eval { decode_json(<STDIN>) } || {};
	    for my $k (split /\./, $ARGV[0]) {
	        $j = ref $j eq "ARRAY" ? $j->[$k] : ref $j eq "HASH" ? $j->{$k} : undef }
	    print defined $j ? (ref $j ? encode_json($j) : $j) : ""' "$1"
}

# api METHOD PATH [BODY]: prints "STATUS BODY".
api() {
	out=$(curl -sS --cacert "$VAR/ca.pem" -H "Authorization: Bearer $ADMIN" \
	    -H 'Content-Type: application/json' -X "$1" ${3:+--data "$3"} \
	    -w '\n%{http_code}' "$URL$2") || die "curl $1 $2 failed"
	printf '%s %s' "$(printf '%s' "$out" | tail -n 1)" \
	    "$(printf '%s' "$out" | sed '$d')"
}

# The agent's exchanges, one line per APDU: command name, a short hex.
summary() {
	awk '
	function name(h,  ins, cla) {
		cla = substr(h, 1, 2); ins = substr(h, 3, 2)
		if (ins == "A4") return "SELECT"
		if (ins == "50") return "INITIALIZE UPDATE"
		if (ins == "82") return "EXTERNAL AUTHENTICATE"
		if (ins == "D8") return "PUT KEY"
		if (ins == "E6") return "INSTALL"
		if (ins == "F0") return "SET STATUS"
		if (ins == "E4") return "DELETE"
		if (ins == "E2") return "STORE DATA"
		return "APDU " cla ins
	}
	/^session / { printf "   agent: batch %s %s\n", $4, $5 " " $6; next }
	/^  -> / { cmd = name($2); n = length($2) / 2; next }
	/^  <- / { sw = substr($2, length($2) - 3)
		extra = ""
		if (length($2) > 4) extra = " + " (length($2) / 2 - 2) " bytes"
		printf "     %-22s %4d bytes -> SW %s%s\n", cmd, n, sw, extra; next }
	/^  \(stopped/ { print "     " $0; next }
	/^  task / { sub(/^  /, ""); print "   outcome: " $0; next }
	/^agent: (done|FAILED)/ { print "   " $0; next }'
}

session() {
	"$B/agent" --card "$CARD" --tsm "$URL" --ca "$VAR/ca.pem" >"$OUT/agent.out" 2>&1 ||
	    { cat "$OUT/agent.out"; die "agent session failed"; }
	summary <"$OUT/agent.out"
}

ssd_state() {
	api GET "/api/v1/ses/$SEID" | cut -d' ' -f2- | perl -MJSON::PP -e '
	    local $/; my $j = decode_json(<STDIN>);
	    for (@{$j->{ssds}}) { next unless $_->{sdAid} eq $ARGV[0];
	        my @k = map { "KVN $_->{kvn} (" . join(",", map { $_->{kcv} }
	            @{$_->{kcv}}) . ")" } @{$_->{keySets}};
	        printf "%s%s%s; key sets: %s\n", $_->{state},
	            $_->{prevState} ? " (before: $_->{prevState})" : "",
	            $_->{kvnActive} ? ", active KVN $_->{kvnActive}" : "",
	            @k ? join(" ", @k) : "none" }' "$SDAID"
}

wait_state() {
	i=0
	while ! ssd_state | grep -q "^$1"; do
		i=$((i + 1)); [ $i -gt 100 ] && die "SSD never reached $1"
		sleep 0.1
	done
}

# ---- the services -----------------------------------------------------------
if [ -n "${VAR:-}" ] && [ -s "${VAR}/tsm/tsmd.addr" ]; then
	VAR=$(cd "$VAR" && pwd)
	URL=https://$(cat "$VAR/tsm/tsmd.addr")
	say "using the running services in $VAR ($URL)"
	SEI_LISTEN=""
else
	OWN=$(mktemp -d /tmp/sptsm-demo-XXXXXX)
	VAR=$OWN/var
	LISTEN=127.0.0.1:$(free_port)
	SEI_LISTEN=127.0.0.1:$(free_port)
	say "starting kmsd, the SEI-TSM simulator and tsmd in $VAR"
	VAR=$VAR LISTEN=$LISTEN SEI_LISTEN=$SEI_LISTEN sh "$TOP/tests/run.sh" \
	    >"$OWN/run.log" 2>&1 &
	RUNPID=$!
	i=0
	until [ -s "$VAR/tsm/tsmd.addr" ] && curl -sf --cacert "$VAR/ca.pem" \
	    "https://$LISTEN/healthz" >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 300 ] || ! kill -0 "$RUNPID" 2>/dev/null; then
			cat "$OWN/run.log"; die "the services did not start"
		fi
		sleep 0.1
	done
	URL=https://$LISTEN
	note "tsmd $URL, logs in $VAR/log"
fi
ADMIN=$(cat "$VAR/admin.key")
if [ -n "$OWN" ]; then
	OUT=$OWN
else
	OUT=$(mktemp -d /tmp/sptsm-demo-out-XXXXXX)
	trap 'cleanup; rm -rf "$OUT"' EXIT INT TERM
fi

# A fresh virtual SE (its seId random, so reruns against one make run work).
SEID=56530001$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
SDAID=A0000009991D0001
CARD=$OUT/card.json
"$B/vse" init "$CARD" --se-id "$SEID" --demo >/dev/null
say "virtual SE $SEID (DEMO ISD keys), card file $CARD"

# A provider with a webhook, and an application of it in the SSD later.
HOOKPORT=$(free_port)
perl -MIO::Socket::INET -e '
	$| = 1;
	my $s = IO::Socket::INET->new(Listen => 5, LocalAddr => "127.0.0.1",
	    LocalPort => $ARGV[0], ReuseAddr => 1) or die;
	while (my $c = $s->accept) {
		my ($h, $len, $sig) = ("", 0, "");
		while (<$c>) { $h .= $_; $len = $1 if /^Content-Length: (\d+)/i;
			$sig = $1 if /^X-TSM-Signature: (\S+)/i; last if /^\r?\n$/ }
		read($c, my $b, $len);
		print "   webhook received: $b\n   X-TSM-Signature: $sig\n";
		print $c "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
		close $c }' "$HOOKPORT" &
HOOKPID=$!
PROV=demo-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
r=$(api POST /api/v1/providers "{\"id\":\"$PROV\",\"name\":\"Demo Pay\",\"orgCode\":\"DEMO-0001\",\"contact\":\"ops@demo.example\",\"webhookUrl\":\"http://127.0.0.1:$HOOKPORT/hook\"}")
note "provider $PROV registered (HTTP ${r%% *}), webhook http://127.0.0.1:$HOOKPORT/hook"

# ---- 1. create ---------------------------------------------------------------
say "1. POST /api/v1/ses/$SEID/ssds: create SSD $SDAID (AMSD)"
r=$(api POST "/api/v1/ses/$SEID/ssds" "{\"sdAid\":\"$SDAID\",\"mode\":\"AMSD\"}")
TASK=$(printf '%s' "${r#* }" | json taskId)
note "HTTP ${r%% *}: task $TASK queued; it runs at the SE's next agent session"
say "   agent session: probe the card, then relay the SEI-TSM's batches"
session
wait_state KEYS_RECEIVED
say "2. key sync: the SEI-TSM pushed the initial keys (§9.4)"
note "SSD: $(ssd_state)"

# ---- 2. key replacement ----------------------------------------------------------
say "3. agent session: initial-key replacement (SCP03 SL 33, PUT KEY, verify)"
session
note "SSD: $(ssd_state)"

# ---- 3. lock, refused operation, unlock -------------------------------------------
say "4. lock through the SEI-TSM"
r=$(api POST "/api/v1/ses/$SEID/ssds/$SDAID/lock")
note "HTTP ${r%% *}: task $(printf '%s' "${r#* }" | json taskId)"
session
note "SSD: $(ssd_state)"
say "5. an operation through the locked SSD is refused"
r=$(api POST "/api/v1/ses/$SEID/apps/A0000009991D00A1/install" "{\"sdAid\":\"$SDAID\"}")
note "install: HTTP ${r%% *}: $(printf '%s' "${r#* }" | json message)"
r=$(api POST "/api/v1/ses/$SEID/ssds/$SDAID/rotate-keys")
note "rotate-keys: HTTP ${r%% *}: $(printf '%s' "${r#* }" | json message)"
say "6. unlock"
r=$(api POST "/api/v1/ses/$SEID/ssds/$SDAID/unlock")
session
note "SSD: $(ssd_state)"
r=$(api POST "/api/v1/ses/$SEID/apps/A0000009991D00A1/register" "{\"sdAid\":\"$SDAID\",\"providerId\":\"$PROV\"}")
note "application A0000009991D00A1 of $PROV recorded in the SSD (HTTP ${r%% *})"

# ---- 4. repair ---------------------------------------------------------------------
say "7. the SE is repaired: seisim repair wipes the SSD and sends §9.5 DELETED"
"$B/seisim" repair "$SEID" --card "$CARD" --var "$VAR" --material "$MATERIAL" \
    --tsm-url "$URL" --tsm-ca "$VAR/ca.pem" >"$OUT/repair.out" 2>"$OUT/repair.log" ||
    { cat "$OUT/repair.out" "$OUT/repair.log"; die "repair failed"; }
sed 's/^/   seisim: /' "$OUT/repair.out"
note "SSD: $(ssd_state)"
i=0
while :; do
	n=$(api GET "/api/v1/notifications?providerId=$PROV" | cut -d' ' -f2- |
	    perl -MJSON::PP -e 'local $/; my $j = decode_json(<STDIN>);
	    print join("; ", map { "$_->{id}: $_->{state} after $_->{attempts} attempt(s)" }
	        @{$j->{notifications}})')
	case "$n" in *DELIVERED*) break ;; esac
	i=$((i + 1)); [ $i -gt 100 ] && break
	sleep 0.1
done
note "notifications: $n"

# ---- 5. again -------------------------------------------------------------------------
say "8. create the SSD again, from scratch"
r=$(api POST "/api/v1/ses/$SEID/ssds" "{\"sdAid\":\"$SDAID\",\"mode\":\"AMSD\"}")
note "HTTP ${r%% *}: task $(printf '%s' "${r#* }" | json taskId)"
session
wait_state KEYS_RECEIVED
note "key sync: SSD: $(ssd_state)"
session
note "SSD: $(ssd_state)"

say "done: task history of the first create: GET /api/v1/tasks/$TASK"
api GET "/api/v1/tasks/$TASK" | cut -d' ' -f2- | perl -MJSON::PP -e '
    local $/; my $j = decode_json(<STDIN>);
    printf "   %s %s: %s\n", $j->{kind}, $j->{taskId}, $j->{state};
    printf "     %s %-10s %s\n", $_->{state}, $_->{step}, $_->{note} for @{$j->{history}}'
