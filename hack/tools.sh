#!/usr/bin/env bash
# Installs every pinned test peer into .tools/ (see hack/README.md).
#
#   bash hack/tools.sh              all groups
#   bash hack/tools.sh go apt       only some: go, conformance, k8s, node, storage, apt, image
#   bash hack/tools.sh quickstart   only the README quick start's clients: oras, skopeo, htpasswd
#
# Idempotent: each tool is skipped when its stamp says the pinned version is
# already there, so a warm run takes well under a second (apt checks included).
# TOOLS_DIR moves .tools elsewhere; TOOLS_SKIP_APT=1 skips the apt group, TOOLS_SKIP_IMAGE=1 the
# image group (the project image, built without Docker: hack/build-image.sh).
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib.sh
source "${HACK_DIR}/lib.sh"

groups=("$@")
[[ ${#groups[@]} -gt 0 ]] || groups=(go conformance k8s node storage apt image)

# One installer at a time per TOOLS_DIR (make -j, two shells, CI + dev).
if command -v flock >/dev/null 2>&1; then
	exec 9>"${TOOLS_DIR}/.lock"
	flock 9
fi

for group in "${groups[@]}"; do
	case "${group}" in
	go) bash "${HACK_DIR}/install-go-tools.sh" 9>&- ;;
	# What the README's quick start runs after `make run`, and nothing that takes minutes to build.
	quickstart)
		bash "${HACK_DIR}/install-go-tools.sh" oras 9>&-
		if [[ "${TOOLS_SKIP_APT:-0}" == 1 ]]; then
			log apt "-" "skipped (TOOLS_SKIP_APT=1)"
		else
			bash "${HACK_DIR}/install-apt.sh" skopeo apache2-utils 9>&-
		fi
		;;
	conformance) bash "${HACK_DIR}/build-conformance.sh" 9>&- ;;
	k8s) bash "${HACK_DIR}/build-k8s.sh" 9>&- ;;
	node) bash "${HACK_DIR}/build-node.sh" 9>&- ;;
	storage) bash "${HACK_DIR}/install-storage-peers.sh" 9>&- ;;
	apt)
		if [[ "${TOOLS_SKIP_APT:-0}" == 1 ]]; then
			log apt "-" "skipped (TOOLS_SKIP_APT=1)"
		else
			bash "${HACK_DIR}/install-apt.sh" 9>&-
		fi
		;;
	image)
		if [[ "${TOOLS_SKIP_IMAGE:-0}" == 1 ]]; then
			log image "-" "skipped (TOOLS_SKIP_IMAGE=1)"
		else
			bash "${HACK_DIR}/build-image.sh" 9>&-
		fi
		;;
	*) die "unknown group '${group}' (expected: go, conformance, k8s, node, storage, apt, image, quickstart)" ;;
	esac
done
