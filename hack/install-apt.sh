#!/usr/bin/env bash
# Installs the Debian-packaged test peers when their binary is missing:
#   skopeo          registry client (tests)
#   docker-registry distribution 2.8.x, peer registry for benchmarks
#   wrk             HTTP load client for benchmarks
#   redis-server    cache for later issues
#   haproxy         the reference forwarder of the proxy benchmark, and a load balancer in front of members
#   debootstrap     the Debian base of the project image (hack/build-image.sh)
#   buildah         builds the Dockerfile on it without Docker (hack/build-image.sh)
#   umoci, runc     unpack and run the built image (tests/image)
#   slapd           OpenLDAP server, the LDAP peer of the LDAP login tests (tests/support/ldap.py)
#   ldap-utils      ldapadd and ldapsearch, which load and probe that peer's test tree
#   apache2-utils   htpasswd, which the examples and the Helm quick start use to write bcrypt entries
# or, when package names are given (build-node.sh: `install-apt.sh containerd runc ...`), only those
# (each one must have a check below).
# Runs `apt-get update` once, and only when something has to be installed.
# No service is left running: an `exit 101` policy-rc.d is in place during the
# install, and the packages' services are disabled afterwards, so nothing
# grabs port 5000 (docker-registry), 6379 (redis-server) or 389 (slapd: the tests
# run their own slapd, with their own config, on a free loopback port).
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# package -> how to tell it is present
declare -A CHECK=(
	[skopeo]="command:skopeo"
	[docker-registry]="file:/usr/bin/docker-registry"
	[wrk]="command:wrk"
	[redis-server]="command:redis-server"
	[haproxy]="command:haproxy"
	[debootstrap]="file:/usr/sbin/debootstrap"
	[buildah]="command:buildah"
	[umoci]="command:umoci"
	[runc]="command:runc"
	[slapd]="file:/usr/sbin/slapd"
	[ldap-utils]="command:ldapadd"
	[apache2-utils]="command:htpasswd"
	# the node tier (build-node.sh)
	[containerd]="command:containerd"
	[conntrack]="command:conntrack"
	[iptables]="command:iptables"
	[busybox-static]="static:/bin/busybox"
)
PACKAGES=(skopeo docker-registry wrk redis-server haproxy debootstrap buildah umoci runc slapd ldap-utils apache2-utils)
[[ $# -eq 0 ]] || PACKAGES=("$@")
SERVICES=(docker-registry redis-server haproxy containerd slapd)
POLICY_RC=/usr/sbin/policy-rc.d

present() {
	[[ -n "${CHECK[$1]:-}" ]] || die "no check for package $1 in install-apt.sh"
	local check="${CHECK[$1]}"
	case "${check}" in
	command:*) command -v "${check#command:}" >/dev/null 2>&1 ;;
	file:*) [[ -x "${check#file:}" ]] ;;
	# a statically linked executable (no program interpreter): it goes into a container image alone
	static:*) [[ -x "${check#static:}" ]] && ! LC_ALL=C readelf -l "${check#static:}" 2>/dev/null | grep -q 'program interpreter' ;;
	*) die "bad check for $1: ${check}" ;;
	esac
}

pkg_version() {
	dpkg-query -W -f='${Version}' "$1" 2>/dev/null || printf 'unknown'
}

missing=()
for pkg in "${PACKAGES[@]}"; do
	if present "${pkg}"; then
		log "${pkg}" "$(pkg_version "${pkg}")" "present"
	else
		missing+=("${pkg}")
	fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

SUDO=()
if [[ ${EUID} -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		die "need root to install ${missing[*]}: run as root, install sudo, or run: apt-get install -y --no-install-recommends ${missing[*]}"
	fi
fi
command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: ${missing[*]}"

# Keep maintainer scripts from starting services. An existing policy-rc.d that
# already says `exit 101` is left alone; any other one is restored afterwards.
policy_backup=""
policy_created=0
restore_policy() {
	if [[ -n "${policy_backup}" ]]; then
		"${SUDO[@]}" mv -f -- "${policy_backup}" "${POLICY_RC}"
	elif [[ ${policy_created} -eq 1 ]]; then
		"${SUDO[@]}" rm -f -- "${POLICY_RC}"
	fi
}
if ! grep -qs '^exit 101' "${POLICY_RC}"; then
	if [[ -e "${POLICY_RC}" ]]; then
		policy_backup="${POLICY_RC}.zot-tools-backup"
		"${SUDO[@]}" cp -p -- "${POLICY_RC}" "${policy_backup}"
	fi
	policy_created=1
	trap restore_policy EXIT
	printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "${POLICY_RC}" >/dev/null
	"${SUDO[@]}" chmod 0755 "${POLICY_RC}"
fi

start="${SECONDS}"
log apt "${missing[*]}" "installing ..."
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Belt and braces: the services must not come up now or at the next boot.
for svc in "${SERVICES[@]}"; do
	if command -v systemctl >/dev/null 2>&1; then
		"${SUDO[@]}" systemctl disable "${svc}" >/dev/null 2>&1 || true
		"${SUDO[@]}" systemctl stop "${svc}" >/dev/null 2>&1 || true
	fi
	if command -v service >/dev/null 2>&1; then
		"${SUDO[@]}" service "${svc}" stop >/dev/null 2>&1 || true
	fi
done
if command -v ss >/dev/null 2>&1; then
	listeners="$("${SUDO[@]}" ss -Hltnp 2>/dev/null || true)"
	if grep -E '"(docker-registry|registry|redis-server|slapd)"' <<<"${listeners}"; then
		printf 'warning: a packaged registry/redis/slapd service is still listening (see above); stop it\n' >&2
	fi
fi
# containerd listens on a unix socket, not a port: its packaged service must not run either
# (the node tier starts its own, with its own socket and state folders).
if [[ -S /run/containerd/containerd.sock ]] && pgrep -x containerd >/dev/null 2>&1; then
	printf 'warning: a system containerd is running (/run/containerd/containerd.sock); stop it\n' >&2
fi

for pkg in "${missing[@]}"; do
	present "${pkg}" || die "${pkg} installed but its binary is still missing"
	log "${pkg}" "$(pkg_version "${pkg}")" "installed in $(elapsed "${start}")"
done
