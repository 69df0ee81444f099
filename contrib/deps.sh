#!/usr/bin/env bash
# Install the Debian packages sluice needs to build, test and demo, when
# any is missing. Safe to run again: it does nothing when all are present.
set -euo pipefail

PACKAGES=(
	build-essential autoconf automake libtool pkg-config
	libevent-dev libssl-dev libinih-dev libcmocka-dev libxxhash-dev
	libjansson-dev node-llhttp
	varnish curl python3 python3-xxhash procps iproute2 prometheus
	clang libclang-rt-dev openssl
)

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
