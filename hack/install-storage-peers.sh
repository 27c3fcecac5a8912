#!/usr/bin/env bash
# Installs the pinned test peers of shared storage (issue 6) into .tools/:
#   versitygw  S3 gateway over a posix directory (go install; checks SigV4 signatures,
#              so the registry's S3 client is exercised as against a real S3)
#   dynalite   DynamoDB implementation (npm, under .tools/node; wrapper in .tools/bin)
#   weed       SeaweedFS (its `mini` all-in-one mode serves S3), built from the module source:
#              its go.mod has replace directives, so `go install pkg@version` refuses it
# redis-server and haproxy come from Debian apt (hack/install-apt.sh).
# Skips a tool when its stamp (.tools/stamps/<tool>-<version>) and binary exist.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VERSITYGW_VERSION="v1.7.0"
DYNALITE_VERSION="4.0.0"
# SeaweedFS 4.53 (weed version), the pseudo-version the Go module proxy serves for it.
SEAWEEDFS_VERSION="v0.0.0-20261109003541-7506e5f91cd6"

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

install_seaweedfs() {
	local bin="${TOOLS_BIN}/weed" start="${SECONDS}" src work out
	if stamp_ok seaweedfs "${SEAWEEDFS_VERSION}" "${bin}"; then
		log seaweedfs "${SEAWEEDFS_VERSION}" "cached"
		return 0
	fi
	log seaweedfs "${SEAWEEDFS_VERSION}" "building (several minutes) ..."
	go_env
	src="$(go mod download -json "github.com/seaweedfs/seaweedfs@${SEAWEEDFS_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	[[ -d "${src}" ]] || die "seaweedfs: module source not downloaded"
	work="${TOOLS_DIR}/tmp/seaweedfs-${SEAWEEDFS_VERSION}"
	rm -rf "${work}"
	mkdir -p "$(dirname "${work}")"
	cp -r "${src}" "${work}"
	chmod -R u+w "${work}"
	(cd "${work}" && go build -o "${bin}" ./weed)
	rm -rf "${work}"
	out="$("${bin}" version 2>&1)" || die "seaweedfs: 'weed version' failed: ${out}"
	stamp_write seaweedfs "${SEAWEEDFS_VERSION}"
	log seaweedfs "${SEAWEEDFS_VERSION}" "installed in $(elapsed "${start}"): ${out}"
}

install_versitygw
install_dynalite
install_seaweedfs
