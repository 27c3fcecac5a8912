#!/usr/bin/env bash
# Builds the Kubernetes control plane used by tests/operator into .tools/bin:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   etcd                                                             (go.etcd.io/etcd/server/v3)
#   kwok                                                             (sigs.k8s.io/kwok)
# and copies KWOK's stage files into .tools/kwok-stages/ (kwok >= v0.8.0 has no built-in stages).
#
# The kubernetes commands and etcd are built in one wrapper module, .tools/k8s-wrapper (not
# committed): see hack/k8s-wrapper.sh, which build-node.sh shares for kubelet and kube-proxy.
#
# kwok is NOT in the wrapper: kwok v0.8.0 is written against k8s.io/* v0.36 (its go.mod requires
# k8s.io/cri-client v0.36.1 etc.), and forcing it onto the v0.35 staging modules fails to compile
# (pkg/kwok/server: "unknown field TailLines in struct literal of type logs.LogOptions", "not
# enough arguments in call to crilogs.ReadLogs"). It has no replace directives, so it is built
# on its own with `go install sigs.k8s.io/kwok/cmd/kwok@v0.8.0`, against the versions it pins.
#
# Stamp: .tools/stamps/k8s-<kubernetes>-etcd-<etcd>-kwok-<kwok>; a second run returns at once.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=hack/k8s-wrapper.sh
source "$(dirname "${BASH_SOURCE[0]}")/k8s-wrapper.sh" # K8S_VERSION, ETCD_VERSION, k8s_wrapper_build

KWOK_VERSION="v0.8.0"  # stages from kustomize/stage in the module (see KWOK_STAGES)

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

tools=()
for c in "${K8S_COMMANDS[@]}"; do tools+=("k8s.io/kubernetes/cmd/${c}"); done
tools+=("${ETCD_PACKAGE}")
out_dir="${TOOLS_TMP}/k8s-bin"
k8s_wrapper_build k8s "${WRAPPER_DIR}" "${out_dir}" "${tools[@]}"
# etcd's main package is its module root go.etcd.io/etcd/server/v3: go names that binary
# after the element before the major-version suffix, "server".
mv -f -- "${out_dir}/server" "${out_dir}/etcd"

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
