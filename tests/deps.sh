#!/bin/sh
# deps.sh - checks the Debian packages the build, the tests and `make run`
# need; installs the missing ones with apt-get when run as root, otherwise
# prints the exact command and fails. Called by `make deps`.
set -eu

PKGS="gcc make pkg-config perl ca-certificates openssl curl
libssl-dev libp11-kit-dev p11-kit softhsm2 opensc
libjansson-dev libcurl4-openssl-dev libmicrohttpd-dev liblmdb-dev lmdb-utils
libgfshare-dev libgnutls28-dev"

missing=""
for p in $PKGS; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done

[ -z "$missing" ] && exit 0

cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -eq 0 ]; then
	echo "deps: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing
else
	echo "deps: missing Debian packages:$missing" >&2
	echo "deps: run as root:  $cmd" >&2
	exit 1
fi
