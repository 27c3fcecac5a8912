"""Repository name and tag rules of the OCI distribution spec."""

from __future__ import annotations

import re

from .errors import NameInvalid, TagInvalid

# The spec's name grammar; it rejects `..`, upper case and empty components by construction.
_NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        raise NameInvalid(f"repository name longer than {MAX_NAME_LENGTH} characters")
    if not _NAME_RE.match(name):
        raise NameInvalid(f"invalid repository name: {name!r}")
    return name


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and bool(_NAME_RE.match(name))


def validate_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise TagInvalid(f"invalid tag: {tag!r}")
    return tag
