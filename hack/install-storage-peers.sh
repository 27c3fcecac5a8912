#!/usr/bin/env bash
# Installs the pinned test peers of shared storage (issue 6) into .tools/:
#   versitygw  S3 gateway over a posix directory (go install; checks SigV4 signatures,
#              so the registry's S3 client is exercised as against a real S3)
#   dynalite   DynamoDB implementation (npm, under .tools/node; wrapper in .tools/bin)
# redis-server and haproxy come from Debian apt (hack/install-apt.sh).
# Skips a tool when its stamp (.tools/stamps/<tool>-<version>) and binary exist.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VERSITYGW_VERSION="v1.7.0"
DYNALITE_VERSION="4.0.0"

install_versitygw() {
	local bin="${TOOLS_BIN}/versitygw" start="${SECONDS}" out
	if stamp_ok versitygw "${VERSITYGW_VERSION}" "${bin}"; then
		log versitygw "${VERSITYGW_VERSION}" "cached"
		return 0
	fi
	log versitygw "${VERSITYGW_VERSION}" "building ..."
	go_env
	GOBIN="${TOOLS_BIN}" go install "github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION}"
	# `versitygw --version` prints the build's version only when ldflags set it, so
	# the check is that the binary runs at all.
	out="$("${bin}" --help 2>&1)" || die "versitygw: '--help' failed: ${out}"
	stamp_write versitygw "${VERSITYGW_VERSION}"
	log versitygw "${VERSITYGW_VERSION}" "installed in $(elapsed "${start}")"
}

install_dynalite() {
	local prefix="${TOOLS_DIR}/node" bin="${TOOLS_BIN}/dynalite" start="${SECONDS}" got
	if stamp_ok dynalite "${DYNALITE_VERSION}" "${bin}"; then
		log dynalite "${DYNALITE_VERSION}" "cached"
		return 0
	fi
	command -v npm >/dev/null 2>&1 || die "npm not found (apt-get install npm)"
	log dynalite "${DYNALITE_VERSION}" "installing ..."
	mkdir -p "${prefix}"
	npm install --silent --no-audit --no-fund --prefix "${prefix}" "dynalite@${DYNALITE_VERSION}" >/dev/null
	got="$(node -p "require('${prefix}/node_modules/dynalite/package.json').version")"
	[[ "${got}" == "${DYNALITE_VERSION}" ]] || die "dynalite: expected ${DYNALITE_VERSION}, got ${got}"
	# A wrapper rather than a symlink: the package's bin script resolves its
	# modules relative to node_modules, wherever .tools/bin is on PATH.
	printf '#!/bin/sh\nexec node "%s/node_modules/dynalite/cli.js" "$@"\n' "${prefix}" >"${bin}"
	chmod 0755 "${bin}"
	stamp_write dynalite "${DYNALITE_VERSION}"
	log dynalite "${DYNALITE_VERSION}" "installed in $(elapsed "${start}")"
}

install_versitygw
install_dynalite
