#!/usr/bin/env bash
# Builds the Kubernetes control plane used by tests/operator into .tools/bin:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   etcd                                                             (go.etcd.io/etcd/server/v3)
#   kwok                                                             (sigs.k8s.io/kwok)
# and copies KWOK's stage files into .tools/kwok-stages/ (kwok >= v0.8.0 has no built-in stages).
#
# `go install k8s.io/kubernetes/cmd/...@v1.x` is refused: kubernetes' go.mod requires its
# staging modules (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and replaces them with
# ./staging/src paths, which the proxy does not serve. So this script generates a wrapper
# module in .tools/k8s-wrapper (not committed) with
#   - the `go` and `godebug` lines of that kubernetes version's go.mod,
#   - require k8s.io/kubernetes and go.etcd.io/etcd/server/v3,
#   - one `replace k8s.io/X => k8s.io/X v0.<minor>.<patch>` per staging module, generated from
#     the `=> ./staging/src/...` lines of kubernetes' own go.mod,
#   - a `tool` line per command (what `go get -tool` writes), so `go mod tidy` keeps them,
# then builds the five commands in one `go build` (one link step each, shared compile work).
#
# kwok is NOT in the wrapper: kwok v0.8.0 is written against k8s.io/* v0.36 (its go.mod requires
# k8s.io/cri-client v0.36.1 etc.), and forcing it onto the v0.35 staging modules fails to compile
# (pkg/kwok/server: "unknown field TailLines in struct literal of type logs.LogOptions", "not
# enough arguments in call to crilogs.ReadLogs"). It has no replace directives, so it is built
# on its own with `go install sigs.k8s.io/kwok/cmd/kwok@v0.8.0`, against the versions it pins.
#
# etcd's go.mod also has replace directives (go.etcd.io/etcd/{api,client/pkg,client/v3,pkg}/v3
# => ../<dir>, and go.etcd.io/etcd, go.etcd.io/tests/v3 => ./FORBIDDEN_DEPENDENCY). Replaces of a
# dependency are ignored; the first four point at the same-version modules of the etcd release,
# which etcd/server requires at exactly its own version, so MVS selects them anyway (checked
# below with `go list -m`). The last two only guard against bad imports.
#
# Stamp: .tools/stamps/k8s-<kubernetes>-etcd-<etcd>-kwok-<kwok>; a second run returns at once.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_VERSION="v1.35.4"  # newest v1.35 patch in `go list -m -versions k8s.io/kubernetes`
ETCD_VERSION="v3.6.16" # newest v3.6 in `go list -m -versions go.etcd.io/etcd/server/v3`
KWOK_VERSION="v0.8.0"  # stages from kustomize/stage in the module (see KWOK_STAGES)

# v1.35.4 -> v0.35.4: the staging modules are tagged with the same minor/patch.
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
WRAPPER_DIR="${TOOLS_DIR}/k8s-wrapper"
STAGES_DIR="${TOOLS_DIR}/kwok-stages"
STAMP_VERSION="${K8S_VERSION}-etcd-${ETCD_VERSION}-kwok-${KWOK_VERSION}"

K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
BINARIES=("${K8S_COMMANDS[@]}" etcd kwok)
# Copied to .tools/kwok-stages/; tests/support/control_plane.py passes all of them to `kwok --config`.
KWOK_STAGES=(
	node/fast/node-initialize.yaml
	node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
	pod/fast/pod-ready.yaml
	pod/fast/pod-complete.yaml
	pod/fast/pod-delete.yaml
)

bins=()
for b in "${BINARIES[@]}"; do bins+=("${TOOLS_BIN}/${b}"); done
stages_ok() {
	local s
	for s in "${KWOK_STAGES[@]}"; do [[ -s "${STAGES_DIR}/$(basename "${s}")" ]] || return 1; done
}
if stamp_ok k8s "${STAMP_VERSION}" "${bins[@]}" && stages_ok; then
	log k8s "${STAMP_VERSION}" "cached"
	exit 0
fi

start="${SECONDS}"
log k8s "${STAMP_VERSION}" "building ${BINARIES[*]} (cold: about 6 minutes on 2 cores) ..."
go_env

# json_field FIELD JSON: the string value of "FIELD" in `go mod download -json` output.
json_field() {
	sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" <<<"$2"
}

# download MODULE@VERSION FIELD: fetch the module (or only its go.mod), print FIELD.
download() {
	local json value
	json="$(go mod download -json "$1" 2>&1)" || die "go mod download $1 failed: ${json}"
	value="$(json_field "$2" "${json}")"
	[[ -n "${value}" && -e "${value}" ]] || die "no $2 for $1: ${json}"
	printf '%s\n' "${value}"
}

k8s_gomod="$(download "k8s.io/kubernetes@${K8S_VERSION}" GoMod)"

go_line="$(grep -m1 -E '^go [0-9.]+$' "${k8s_gomod}")" || die "no go line in ${k8s_gomod}"
godebug_lines="$(grep -E '^godebug ' "${k8s_gomod}" || true)"
# `k8s.io/api => ./staging/src/k8s.io/api` -> `k8s.io/api => k8s.io/api v0.35.4`
replaces="$(awk -v v="${STAGING_VERSION}" '
	$2 == "=>" && $3 ~ /^\.\/staging\/src\// { printf "\t%s => %s %s\n", $1, $1, v; n++ }
	END { if (n == 0) exit 1 }' "${k8s_gomod}")" || die "no staging replaces in ${k8s_gomod}"
other_replaces="$(awk '$2 == "=>" && $3 !~ /^\.\/staging\/src\// { print }' "${k8s_gomod}")"
[[ -z "${other_replaces}" ]] || die "unexpected replaces in ${k8s_gomod}: ${other_replaces}"

tools=()
for c in "${K8S_COMMANDS[@]}"; do tools+=("k8s.io/kubernetes/cmd/${c}"); done
tools+=(go.etcd.io/etcd/server/v3)

rm -rf -- "${WRAPPER_DIR}"
mkdir -p -- "${WRAPPER_DIR}"
{
	printf '// Generated by hack/build-k8s.sh from k8s.io/kubernetes@%s go.mod. Do not edit.\n' "${K8S_VERSION}"
	printf 'module local.invalid/k8s-wrapper\n\n%s\n\n%s\n\n' "${go_line}" "${godebug_lines}"
	printf 'require (\n\tk8s.io/kubernetes %s\n\tgo.etcd.io/etcd/server/v3 %s\n)\n\n' \
		"${K8S_VERSION}" "${ETCD_VERSION}"
	printf 'tool (\n'
	printf '\t%s\n' "${tools[@]}"
	printf ')\n\n'
	printf 'replace (\n%s\n)\n' "${replaces}"
} >"${WRAPPER_DIR}/go.mod"

cd "${WRAPPER_DIR}"
tidy_start="${SECONDS}"
go mod tidy
log k8s "${STAMP_VERSION}" "go mod tidy (downloads) took $(elapsed "${tidy_start}")"

# The versions that were asked for are the ones selected (nothing raised them). For a
# staging module, what counts is the replacement (kubernetes itself asks for v0.0.0).
check_selected() {
	local got
	got="$(go list -m -f '{{with .Replace}}{{.Version}}{{else}}{{.Version}}{{end}}' "$1")"
	[[ "${got}" == "$2" ]] || die "$1: selected ${got}, expected $2"
}
check_selected k8s.io/kubernetes "${K8S_VERSION}"
for m in api apimachinery apiserver client-go component-base; do check_selected "k8s.io/${m}" "${STAGING_VERSION}"; done
check_selected go.etcd.io/etcd/server/v3 "${ETCD_VERSION}"
for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do check_selected "go.etcd.io/etcd/${m}" "${ETCD_VERSION}"; done

minor="${K8S_VERSION#v1.}"
minor="${minor%%.*}"
ldflags=(
	-s -w
	-X "k8s.io/component-base/version.gitVersion=${K8S_VERSION}"
	-X "k8s.io/component-base/version.gitMajor=1"
	-X "k8s.io/component-base/version.gitMinor=${minor}"
	-X "k8s.io/component-base/version.gitTreeState=clean"
)
build_start="${SECONDS}"
out_dir="${TOOLS_TMP}/k8s-bin"
rm -rf -- "${out_dir}"
mkdir -p -- "${out_dir}"
go build -trimpath -ldflags "${ldflags[*]}" -o "${out_dir}/" "${tools[@]}"
# etcd's main package is its module root go.etcd.io/etcd/server/v3: go names that binary
# after the element before the major-version suffix, "server".
mv -f -- "${out_dir}/server" "${out_dir}/etcd"
log k8s "${STAMP_VERSION}" "go build (kubernetes, etcd) took $(elapsed "${build_start}")"

# kwok with the dependency versions of its own go.mod (its consts.Version is already set).
kwok_start="${SECONDS}"
GOBIN="${out_dir}" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
kwok_dir="$(download "sigs.k8s.io/kwok@${KWOK_VERSION}" Dir)"
log k8s "${STAMP_VERSION}" "go install kwok took $(elapsed "${kwok_start}")"

# Check every binary answers with the pinned version before it replaces the old one.
check_version() {
	local bin="$1" want="$2" out
	shift 2
	out="$("${out_dir}/${bin}" "$@" 2>&1)" || die "${bin} $*: ${out}"
	[[ "${out}" == *"${want}"* ]] || die "${bin}: expected version ${want}, got: ${out}"
}
for c in kube-apiserver kube-controller-manager kube-scheduler; do
	check_version "${c}" "Kubernetes ${K8S_VERSION}" --version
done
check_version kubectl "${K8S_VERSION}" version --client
check_version etcd "etcd Version: ${ETCD_VERSION#v}" --version
check_version kwok "${KWOK_VERSION#v}" --version
for b in "${BINARIES[@]}"; do mv -f -- "${out_dir}/${b}" "${TOOLS_BIN}/${b}"; done
rm -rf -- "${out_dir}"

rm -rf -- "${STAGES_DIR}"
mkdir -p -- "${STAGES_DIR}"
for s in "${KWOK_STAGES[@]}"; do
	install -m 0644 -- "${kwok_dir}/kustomize/stage/${s}" "${STAGES_DIR}/$(basename "${s}")"
done

stamp_write k8s "${STAMP_VERSION}"
log k8s "${STAMP_VERSION}" "built ${BINARIES[*]} into ${TOOLS_BIN#"${REPO_ROOT}/"} in $(elapsed "${start}")"
