"""Which upstream repositories a sync registry covers, and under which local name: zot's content
rules (pkg/extensions/sync/content.go), `prefix` globs with `**`, `destination`, `stripPrefix`, and
the tag filters of periodic sync (`regex`, `excludeRegex`, `semver`).

Upstream name to local name is `local_name` (periodic sync); local name to upstream name is
`upstream_name` (on demand), its inverse. A registry without content rules covers every name, as
itself.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..config.sync import SyncContent
from ..globs import matcher

# Masterminds/semver's loose form (semver.NewVersion), which zot's `semver` tag filter accepts:
# an optional "v", one to three numbers, then an optional pre-release and build.
_SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)(\.(0|[1-9]\d*))?(\.(0|[1-9]\d*))?"
    r"(-([0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*))?(\+([0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*))?$"
)
_GLOB_META = re.compile(r"[*?\[{]")


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Callable[[str], bool]:
    return matcher(pattern)


def _matches(name: str, pattern: str) -> bool:
    return _compiled(pattern)(name)


def _literal_base(pattern: str) -> str:
    """doublestar.SplitPattern's base: the leading path components without glob characters."""
    parts = pattern.split("/")
    base: list[str] = []
    for part in parts:
        if _GLOB_META.search(part):
            break
        base.append(part)
    return "/".join(base)


def _meta_rest(pattern: str) -> str:
    """doublestar.SplitPattern's rest: the pattern from its first component with a glob character."""
    base = _literal_base(pattern)
    return pattern[len(base) :].lstrip("/")  # "" for a literal prefix: the destination itself


@dataclass(frozen=True)
class ContentRules:
    contents: Sequence[SyncContent]

    @property
    def covers_everything(self) -> bool:
        return not self.contents

    def for_upstream(self, repo: str) -> SyncContent | None:
        """The first content rule whose prefix matches an upstream repository (zot: first match wins)."""
        for content in self.contents:
            if _matches(repo, content.prefix.removeprefix("/")):
                return content
        return None

    def for_local(self, repo: str) -> SyncContent | None:
        """The first content rule whose destination pattern matches a local repository."""
        repo = repo.strip("/")
        for content in self.contents:
            prefix = content.prefix.strip("/") + "/"
            destination = (content.destination or "").strip("/")
            tail = _meta_rest(prefix) if content.strip_prefix else prefix
            pattern = "/".join((destination, tail)).strip("/")
            if _matches(repo, pattern):
                return content
        return None

    def local_name(self, upstream: str) -> str | None:
        """Where an upstream repository lands here; None when no rule covers it."""
        if self.covers_everything:
            return upstream
        content = self.for_upstream(upstream)
        return None if content is None else _destination(upstream, content)

    def upstream_name(self, local: str) -> str | None:
        """Which upstream repository a local name comes from; None when no rule covers it."""
        if self.covers_everything:
            return local
        content = self.for_local(local)
        if content is None:
            return None
        upstream = _source(local, content)
        # The inverse must land back where it came from, and the rule must cover the upstream name:
        # otherwise a local name could reach upstream repositories the rules leave out.
        return upstream if self.local_name(upstream) == local.strip("/") else None

    def filter_tags(self, upstream: str, tags: Sequence[str]) -> list[str]:
        """The tags of an upstream repository that periodic sync takes."""
        content = self.for_upstream(upstream) if self.contents else None
        kept = list(tags)
        if content is None or content.tags is None:
            return kept
        rules = content.tags
        if rules.regex is not None:
            wanted = re.compile(rules.regex)
            kept = [tag for tag in kept if wanted.search(tag)]
        if rules.exclude_regex is not None:
            unwanted = re.compile(rules.exclude_regex)
            kept = [tag for tag in kept if not unwanted.search(tag)]
        if rules.semver:
            kept = [tag for tag in kept if _SEMVER.match(tag)]
        return kept


def _trim_prefix(prefix: str) -> str:
    # Go's strings.Trim(content.Prefix, "/*"): glob stars and slashes off both ends.
    return prefix.strip("/*")


def _destination(upstream: str, content: SyncContent) -> str:
    """zot's getRepoDestination."""
    upstream = upstream.strip("/")
    destination = (content.destination or "").strip("/")
    if content.strip_prefix:
        upstream = upstream.removeprefix(_trim_prefix(content.prefix)).strip("/")
    joined = "/".join((destination, upstream))
    return "/" if joined == "/" else joined.strip("/")


def _source(local: str, content: SyncContent) -> str:
    """zot's getRepoSource, the inverse of _destination."""
    local = local.strip("/")
    destination = (content.destination or "").strip("/")
    local = local.removeprefix(destination).strip("/")
    joined = "/".join((_trim_prefix(content.prefix), local)) if content.strip_prefix else local
    return "/" if joined == "/" else joined.strip("/")
