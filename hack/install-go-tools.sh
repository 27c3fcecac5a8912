#!/usr/bin/env bash
# Installs the pinned Go clients (oras, crane, helm) and distribution 3 (a benchmark peer)
# into .tools/bin with `go install`; or, when tool names are given (`install-go-tools.sh oras`, the
# quickstart group of tools.sh), only those.
# Skips a tool when its stamp (.tools/stamps/<tool>-<version>) and binary exist.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ORAS_VERSION="v1.3.6"
CRANE_VERSION="v0.22.1"
HELM_VERSION="v3.22.0"
# The current upstream registry (newest release on the Go module proxy), a fairer benchmark
# peer than Debian's docker-registry 2.8.2.
DISTRIBUTION3_VERSION="v3.1.2"

# go_install TOOL PACKAGE VERSION VERSION-COMMAND...
# The version command's output must mention VERSION without its leading "v".
# The binary becomes .tools/bin/TOOL whatever go install names it (the package's last
# element): it is installed into a scratch GOBIN under .tools/tmp, then moved.
WANTED=("$@")
for name in "${WANTED[@]}"; do
	case "${name}" in
	oras | crane | helm | distribution3) ;;
	*) die "unknown Go tool '${name}' (expected: oras, crane, helm, distribution3)" ;;
	esac
done

# wanted TOOL: true when every tool is installed (no names given) or TOOL is one of the names.
wanted() {
	[[ ${#WANTED[@]} -eq 0 ]] && return 0
	local name
	for name in "${WANTED[@]}"; do
		[[ "${name}" == "$1" ]] && return 0
	done
	return 1
}

go_install() {
	local tool="$1" pkg="$2" version="$3"
	shift 3
	wanted "${tool}" || return 0
	local bin="${TOOLS_BIN}/${tool}" start="${SECONDS}" out gobin
	if stamp_ok "${tool}" "${version}" "${bin}"; then
		log "${tool}" "${version}" "cached"
		return 0
	fi
	log "${tool}" "${version}" "building ${pkg}@${version} ..."
	go_env
	gobin="${TOOLS_TMP}/gobin-${tool}"
	rm -rf "${gobin}"
	GOBIN="${gobin}" go install ${LDFLAGS:+-ldflags "${LDFLAGS}"} "${pkg}@${version}"
	mv -f "${gobin}/${pkg##*/}" "${bin}"
	rm -rf "${gobin}"
	out="$("$@" 2>&1)" || die "${tool}: '$*' failed: ${out}"
	[[ "${out}" == *"${version#v}"* ]] || die "${tool}: expected version ${version}, got: ${out}"
	stamp_write "${tool}" "${version}"
	log "${tool}" "${version}" "installed in $(elapsed "${start}")"
}

go_install oras oras.land/oras/cmd/oras "${ORAS_VERSION}" \
	"${TOOLS_BIN}/oras" version
go_install crane github.com/google/go-containerregistry/cmd/crane "${CRANE_VERSION}" \
	"${TOOLS_BIN}/crane" version
# helm lints, renders and installs the chart in tests (charts/zot-operator).
# Without the version stamped in, helm reports only "v3.22".
LDFLAGS="-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
	go_install helm helm.sh/helm/v3/cmd/helm "${HELM_VERSION}" \
	"${TOOLS_BIN}/helm" version --template '{{.Version}}'
# distribution 3's cmd/registry, as .tools/bin/distribution3 (go install names it `registry`).
# Without the version stamped in, `--version` reports "v3.1.2+unknown" (a constant in the
# module's version/version.go). No build tags needed (the only optional one is noresumabledigest).
LDFLAGS="-X github.com/distribution/distribution/v3/version.version=${DISTRIBUTION3_VERSION}" \
	go_install distribution3 github.com/distribution/distribution/v3/cmd/registry "${DISTRIBUTION3_VERSION}" \
	"${TOOLS_BIN}/distribution3" --version
