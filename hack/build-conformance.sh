#!/usr/bin/env bash
# Builds the OCI distribution-spec conformance suite into .tools/bin.
#
# The pin asked for is distribution-spec v1.1.1 (commit a139cc423184), but the
# Go module proxy reachable here refuses that commit (403 "This module version
# is not available", for the bare hash and for its pseudo-version alike) and
# serves exactly two versions of github.com/opencontainers/distribution-spec/conformance:
#
#   v0.0.0-20231101194043-f2182352d4cc  the Ginkgo suite configured by OCI_* env
#       vars (the interface v1.1.1 still has), tests spec v1.1 as of 2023-11;
#       built with `go test -c` -> .tools/bin/conformance.test
#   v0.0.0-20260831232431-97274622c111  the rewritten suite (spec "1.1" profile by
#       default, more data shapes: sha512, data field, empty blob, ...); a
#       plain main package -> `go build` -> .tools/bin/oci-conformance
#
# hack/README.md lists the environment variables both binaries read.
#
# conformance.test reads (setup.go, reporter.go of f2182352d4cc):
#   OCI_ROOT_URL                      registry base URL, e.g. http://127.0.0.1:5000 (required:
#                                     the binary panics in init() without it, even for -test.list)
#   OCI_NAMESPACE                     repository to test, e.g. myorg/myrepo
#   OCI_CROSSMOUNT_NAMESPACE          second repository for mount tests (default conformance-<uuid>)
#   OCI_USERNAME, OCI_PASSWORD        basic/token auth credentials
#   OCI_AUTH_SCOPE                    override the token scope requested during push
#   OCI_TEST_PULL, OCI_TEST_PUSH,
#   OCI_TEST_CONTENT_DISCOVERY,
#   OCI_TEST_CONTENT_MANAGEMENT       1/true enables each workflow (all off by default)
#   OCI_SKIP_EMPTY_LAYER_PUSH_TEST    1 skips pushing a manifest without layers
#   OCI_AUTOMATIC_CROSSMOUNT          unset: skip; 1: expect mount without ?from= to work
#                                     (201); 0: expect it to be refused (202 upload session)
#   OCI_DELETE_MANIFEST_BEFORE_BLOBS  teardown order; default true when unset
#   OCI_TAG_NAME, OCI_MANIFEST_DIGEST,
#   OCI_BLOB_DIGEST                   all three set: pull tests use preloaded content, no setup push
#   OCI_TAG_LIST                      comma-separated tags: discovery tests skip their setup push
#   OCI_HIDE_SKIPPED_WORKFLOWS        1 hides disabled workflows in report.html
#   OCI_DEBUG                         1/true logs every HTTP request and response
#   OCI_REPORT_DIR                    where junit.xml and report.html go (default cwd; "none": no files)
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONFORMANCE_MODULE="github.com/opencontainers/distribution-spec/conformance"
CONFORMANCE_VERSION="v0.0.0-20231101194043-f2182352d4cc"
OCI_CONFORMANCE_VERSION="v0.0.0-20260831232431-97274622c111"

# module_dir VERSION: download the module (cached in GOMODCACHE), print its
# read-only directory in the module cache.
module_dir() {
	local json dir
	json="$(go mod download -json "${CONFORMANCE_MODULE}@$1")" ||
		die "go mod download ${CONFORMANCE_MODULE}@$1 failed: ${json}"
	dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"${json}")"
	[[ -n "${dir}" && -d "${dir}" ]] || die "no Dir for ${CONFORMANCE_MODULE}@$1: ${json}"
	printf '%s\n' "${dir}"
}

# writable_copy VERSION: copy the module to a fresh writable folder under
# .tools/tmp (go may rewrite go.mod/go.sum there), print its path.
writable_copy() {
	local src dst
	src="$(module_dir "$1")"
	dst="${TOOLS_TMP}/conformance-$1"
	rm -rf -- "${dst}"
	cp -R -- "${src}" "${dst}"
	chmod -R u+w -- "${dst}"
	printf '%s\n' "${dst}"
}

build_ginkgo_suite() {
	local tool="conformance" version="${CONFORMANCE_VERSION}" start="${SECONDS}"
	local bin="${TOOLS_BIN}/conformance.test" src list
	if stamp_ok "${tool}" "${version}" "${bin}"; then
		log "${tool}" "${version}" "cached"
		return 0
	fi
	log "${tool}" "${version}" "building ${CONFORMANCE_MODULE}@${version} (go test -c) ..."
	go_env
	src="$(writable_copy "${version}")"
	(cd "${src}" && go test -c -o "${bin}.new" .)
	mv -f -- "${bin}.new" "${bin}"
	rm -rf -- "${src}"
	# init() panics without OCI_ROOT_URL, so give it a dummy one to list.
	list="$(OCI_ROOT_URL=http://127.0.0.1:1 OCI_REPORT_DIR=none "${bin}" -test.list .)" ||
		die "conformance.test -test.list failed: ${list}"
	[[ "${list}" == *TestConformance* ]] || die "conformance.test lists no TestConformance: ${list}"
	stamp_write "${tool}" "${version}"
	log "${tool}" "${version}" "built ${bin#"${REPO_ROOT}/"} in $(elapsed "${start}")"
}

build_new_suite() {
	local tool="oci-conformance" version="${OCI_CONFORMANCE_VERSION}" start="${SECONDS}"
	local bin="${TOOLS_BIN}/oci-conformance" src info
	if stamp_ok "${tool}" "${version}" "${bin}"; then
		log "${tool}" "${version}" "cached"
		return 0
	fi
	log "${tool}" "${version}" "building ${CONFORMANCE_MODULE}@${version} (go build) ..."
	go_env
	src="$(writable_copy "${version}")"
	# main.Version is what the reports show as the commit when no VCS info exists.
	(cd "${src}" && go build -ldflags "-X main.Version=${version}" -o "${bin}.new" .)
	mv -f -- "${bin}.new" "${bin}"
	rm -rf -- "${src}"
	info="$(go version -m "${bin}")" || die "go version -m ${bin} failed"
	[[ "${info}" == *"${CONFORMANCE_MODULE}"* ]] || die "oci-conformance: unexpected build info: ${info}"
	stamp_write "${tool}" "${version}"
	log "${tool}" "${version}" "built ${bin#"${REPO_ROOT}/"} in $(elapsed "${start}")"
}

build_ginkgo_suite
build_new_suite
