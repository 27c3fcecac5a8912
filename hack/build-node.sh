#!/usr/bin/env bash
# The node tier (tests/support/node.py, hack/README.md "Node tier"): what a real node runs.
#   kubelet, kube-proxy   k8s.io/kubernetes, the control plane's version, built like build-k8s.sh
#                         (hack/k8s-wrapper.sh) in a second wrapper module .tools/k8s-node-wrapper
#   coredns               github.com/coredns/coredns, with the plugins of COREDNS_PLUGINS only: the
#                         module copied from the module cache, plugin.cfg rewritten, `go generate`,
#                         `go build` (all ~60 plugins: 633 s cold here, AWS/Azure/GCP SDKs and all)
#   zot-pause             hack/pause.c (ours), static, with gcc: the pod sandbox process
#   containerd, runc, conntrack, iptables, busybox-static
#                         Debian packages (install-apt.sh: only when missing, no service started)
# into .tools/bin (the Go and C ones) and the system (the Debian ones).
#
# Stamps: .tools/stamps/kubelet-<kubernetes>, coredns-<version>, zot-pause-<sha256 of pause.c>;
# a second run returns at once. TOOLS_SKIP_APT=1 skips the Debian packages.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=hack/k8s-wrapper.sh
source "$(dirname "${BASH_SOURCE[0]}")/k8s-wrapper.sh" # K8S_VERSION, k8s_wrapper_build

COREDNS_VERSION="v1.15.0" # newest in `go list -m -versions github.com/coredns/coredns`
# What a cluster DNS server needs: the plugins of kubeadm's Corefile and what tests/support/node.py
# uses (bind, errors, ready, kubernetes, template), and a few more that such Corefiles use. They are
# kept in plugin.cfg's order (the order they run in), with its packages.
COREDNS_PLUGINS=(
	metadata cancel timeouts reload bind debug ready health prometheus errors log
	loadbalance rewrite cache template hosts k8s_external kubernetes file loop forward whoami
)
# containerd 1.6 (bookworm) is what kubelet 1.35 is run with: see hack/README.md "Node tier".
APT_PACKAGES=(containerd runc conntrack iptables busybox-static)
NODE_WRAPPER_DIR="${TOOLS_DIR}/k8s-node-wrapper"
NODE_COMMANDS=(kubelet kube-proxy)
PAUSE_SRC="${HACK_DIR}/pause.c"

start="${SECONDS}"

# -- Debian packages ------------------------------------------------------------------------
if [[ "${TOOLS_SKIP_APT:-0}" == 1 ]]; then
	log node-apt "-" "skipped (TOOLS_SKIP_APT=1)"
else
	bash "${HACK_DIR}/install-apt.sh" "${APT_PACKAGES[@]}"
fi

# -- kubelet, kube-proxy --------------------------------------------------------------------
bins=()
for c in "${NODE_COMMANDS[@]}"; do bins+=("${TOOLS_BIN}/${c}"); done
if stamp_ok kubelet "${K8S_VERSION}" "${bins[@]}"; then
	log kubelet "${K8S_VERSION}" "cached"
else
	step="${SECONDS}"
	log kubelet "${K8S_VERSION}" "building ${NODE_COMMANDS[*]} (about 2 minutes after the k8s group, 5.5 cold on 2 cores) ..."
	go_env
	pkgs=()
	for c in "${NODE_COMMANDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${c}"); done
	out_dir="${TOOLS_TMP}/k8s-node-bin"
	k8s_wrapper_build kubelet "${NODE_WRAPPER_DIR}" "${out_dir}" "${pkgs[@]}"
	for c in "${NODE_COMMANDS[@]}"; do
		out="$("${out_dir}/${c}" --version 2>&1)" || die "${c} --version: ${out}"
		[[ "${out}" == *"Kubernetes ${K8S_VERSION}"* ]] || die "${c}: expected ${K8S_VERSION}, got: ${out}"
		mv -f -- "${out_dir}/${c}" "${TOOLS_BIN}/${c}"
	done
	rm -rf -- "${out_dir}"
	stamp_write kubelet "${K8S_VERSION}"
	log kubelet "${K8S_VERSION}" "built ${NODE_COMMANDS[*]} in $(elapsed "${step}")"
fi

# -- CoreDNS --------------------------------------------------------------------------------
coredns_stamp="${COREDNS_VERSION}-$(printf '%s\n' "${COREDNS_PLUGINS[@]}" | sha256sum | cut -c1-8)"
if stamp_ok coredns "${coredns_stamp}" "${TOOLS_BIN}/coredns"; then
	log coredns "${coredns_stamp}" "cached"
else
	step="${SECONDS}"
	log coredns "${coredns_stamp}" "building with ${#COREDNS_PLUGINS[@]} plugins ..."
	go_env
	src="$(download "github.com/coredns/coredns@${COREDNS_VERSION}" Dir)" # download: hack/k8s-wrapper.sh
	work="${TOOLS_TMP}/coredns-src"
	rm -rf -- "${work}"
	cp -r -- "${src}" "${work}"
	chmod -R u+w -- "${work}" # the module cache is read-only
	for p in "${COREDNS_PLUGINS[@]}"; do
		grep -qE "^${p}:" "${src}/plugin.cfg" || die "coredns ${COREDNS_VERSION} has no plugin ${p}"
	done
	{
		printf '# Written by hack/build-node.sh: the lines of COREDNS_PLUGINS from the original.\n'
		grep -E "^($(printf '%s|' "${COREDNS_PLUGINS[@]}" | sed 's/|$//')):" "${src}/plugin.cfg"
	} >"${work}/plugin.cfg"
	(
		cd "${work}" || exit 1
		# directives_generate.go writes core/dnsserver/zdirectives.go and core/plugin/zplugin.go.
		go generate coredns.go
		# coremain.GitCommit is what `coredns -version` prints after the version (a constant).
		go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=${COREDNS_VERSION}" \
			-o "${TOOLS_TMP}/coredns" .
	)
	out="$("${TOOLS_TMP}/coredns" -version 2>&1)" || die "coredns -version: ${out}"
	[[ "${out}" == *"CoreDNS-${COREDNS_VERSION#v}"* ]] || die "coredns: expected ${COREDNS_VERSION}, got: ${out}"
	plugins="$("${TOOLS_TMP}/coredns" -plugins 2>&1)" || die "coredns -plugins: ${plugins}"
	for p in kubernetes template bind ready errors; do
		grep -qx "${p}" <<<"${plugins}" || die "coredns lacks plugin ${p}: ${plugins}"
	done
	mv -f -- "${TOOLS_TMP}/coredns" "${TOOLS_BIN}/coredns"
	rm -rf -- "${work}"
	stamp_write coredns "${coredns_stamp}"
	log coredns "${coredns_stamp}" "built in $(elapsed "${step}")"
fi

# -- zot-pause ------------------------------------------------------------------------------
pause_version="$(sha256sum "${PAUSE_SRC}" | cut -c1-12)"
if stamp_ok zot-pause "${pause_version}" "${TOOLS_BIN}/zot-pause"; then
	log zot-pause "${pause_version}" "cached"
else
	command -v gcc >/dev/null 2>&1 || die "gcc not found (apt-get install gcc libc6-dev)"
	gcc -static -O2 -Wall -Wextra -Werror -o "${TOOLS_TMP}/zot-pause" "${PAUSE_SRC}"
	if LC_ALL=C readelf -l "${TOOLS_TMP}/zot-pause" | grep -q 'program interpreter'; then
		die "zot-pause is not static"
	fi
	out="$("${TOOLS_TMP}/zot-pause" -v)" || die "zot-pause -v failed"
	[[ "${out}" == "zot-pause 1" ]] || die "zot-pause -v: ${out}"
	mv -f -- "${TOOLS_TMP}/zot-pause" "${TOOLS_BIN}/zot-pause"
	stamp_write zot-pause "${pause_version}"
	log zot-pause "${pause_version}" "built"
fi

log node "-" "ready in $(elapsed "${start}")"
