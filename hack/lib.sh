# shellcheck shell=bash
# Common helpers for the hack/ install scripts. Source it, don't run it.
#
#   TOOLS_DIR   where everything goes (default: <repo>/.tools, git-ignored)
#   .tools/bin      binaries (put it first on PATH in tests)
#   .tools/stamps   one empty file per installed tool: <tool>-<version>
#   .tools/go       GOPATH; GOMODCACHE=.tools/go/pkg/mod, GOCACHE=.tools/go/cache
#   .tools/tmp      scratch space for builds (emptied by each build)

# Errors inside $(...) stop the caller too (bash >= 4.4).
shopt -s inherit_errexit

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${HACK_DIR}/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-${REPO_ROOT}/.tools}"
TOOLS_BIN="${TOOLS_DIR}/bin"
TOOLS_STAMPS="${TOOLS_DIR}/stamps"
TOOLS_TMP="${TOOLS_DIR}/tmp"
export TOOLS_DIR TOOLS_BIN

mkdir -p "${TOOLS_BIN}" "${TOOLS_STAMPS}" "${TOOLS_TMP}"

# log TOOL VERSION MESSAGE...: the one line per tool that the scripts print.
log() {
	local tool="$1" version="$2"
	shift 2
	printf '%s %s: %s\n' "${tool}" "${version}" "$*"
}

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# stamp_ok TOOL VERSION [FILE...]: true when the stamp for exactly this
# version exists and every FILE given is an executable file.
stamp_ok() {
	local tool="$1" version="$2" f
	shift 2
	[[ -e "${TOOLS_STAMPS}/${tool}-${version}" ]] || return 1
	for f in "$@"; do
		[[ -x "${f}" && -f "${f}" ]] || return 1
	done
}

# stamp_write TOOL VERSION: drop stamps of other versions of TOOL, record VERSION.
stamp_write() {
	local tool="$1" version="$2" old
	for old in "${TOOLS_STAMPS}/${tool}-"*; do
		[[ -e "${old}" ]] || continue
		rm -f -- "${old}"
	done
	: >"${TOOLS_STAMPS}/${tool}-${version}"
}

# go_env: point every Go cache inside TOOLS_DIR so that it persists between
# runs and never touches the user's ~/go. The environment overrides the
# go env file (~/.config/go/env), so GOFLAGS is spelled out in full here.
go_env() {
	if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
		PATH="/usr/local/go/bin:${PATH}"
		export PATH
	fi
	command -v go >/dev/null 2>&1 || die "go not found (expected /usr/local/go/bin/go)"
	export GOPATH="${TOOLS_DIR}/go"
	export GOMODCACHE="${GOPATH}/pkg/mod"
	export GOCACHE="${GOPATH}/cache"
	# -mod=mod: go.mod/go.sum of copied modules may be updated in place.
	# -buildvcs=false: sources copied out of the module cache have no .git.
	export GOFLAGS="-mod=mod -buildvcs=false"
	# Every pinned module builds with the machine's Go (1.26.x; oras v1.3.6
	# needs >= 1.26.7): never let a go.mod line trigger a toolchain download.
	export GOTOOLCHAIN=local
	unset GOBIN
}

# elapsed START: seconds since START (a $SECONDS value), as "12s".
elapsed() {
	printf '%ss' "$((SECONDS - $1))"
}
