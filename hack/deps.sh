#!/usr/bin/env bash
# Installs what Tether's demo and tests need on a fresh Debian machine, and
# nothing when it is already there. Go (1.26), kubectl, Node.js and npm (the
# OIDC provider of the identity tests) come with the machine.
set -euo pipefail

missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
command -v tinyproxy >/dev/null || missing+=(tinyproxy) # the real forward proxy of the end-to-end tests
[[ -x /usr/lib/squid/security_file_certgen ]] || missing+=(squid-openssl) # the TLS-intercepting corporate proxy of the end-to-end tests
command -v chromium-headless-shell >/dev/null || missing+=(chromium-headless-shell) # the real browser of the web-page tests (test/browser)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql) # the real PostgreSQL server of the store tests (test/pgserver)
if ((${#missing[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "deps: need ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

for tool in go kubectl node npm; do
	command -v "$tool" >/dev/null || { echo "deps: $tool is not on PATH; this machine kind ships it, install it first" >&2; exit 1; }
done
