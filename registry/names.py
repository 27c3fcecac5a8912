"""Repository name and tag rules of the OCI distribution spec, plus the one rule zot's layout adds.

A repository is the directory <root>/<name> holding an OCI image layout: `oci-layout`,
`index.json` and `blobs/<alg>/<hex>` (and `.uploads/`, `.dedupe/`, which the grammar below can never
name: every component starts with a letter or digit). Nested repositories live in the same tree, so
`a/b` is the folder `b` beside `a`'s own `blobs` and `index.json`. A name with a component equal to
one of those layout entries would put one repository's layout inside another's files: `x/blobs`
writes into `x`'s blob folder, `x/index.json` turns `x`'s index into a folder, and
`x/blobs/sha256/<hex>` puts a repository where `x` keeps a blob.

The rule: no component of a name may be a layout entry name (LAYOUT_ENTRIES). It is static, so it
holds in both directions and in any order: `x/blobs` cannot be created whether `x` exists or not,
and `x` can always be created because no `x/blobs` repository can exist. `ingest` is not reserved:
it is not part of the image layout, zot never writes it, and `team/ingest` is an ordinary name.
"""

from __future__ import annotations

import re

from .errors import NameInvalid, TagInvalid

# The spec's name grammar; it rejects `..`, upper case and empty components by construction.
# Matched whole (fullmatch): `$` alone would also take a name or tag ending in a newline.
_NAME_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
_TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MAX_NAME_LENGTH = 255
# The entries of an OCI image layout (image-spec image-layout.md) that the grammar allows as a component.
LAYOUT_ENTRIES = frozenset({"blobs", "index.json", "oci-layout"})


def name_problem(name: str) -> str | None:
    """Why `name` is not a repository name, or None when it is one."""
    if len(name) > MAX_NAME_LENGTH:
        return f"repository name longer than {MAX_NAME_LENGTH} characters"
    if not _NAME_RE.fullmatch(name):
        return f"invalid repository name: {name[:300]!r}"
    reserved = LAYOUT_ENTRIES.intersection(name.split("/"))
    if reserved:
        return (
            f"invalid repository name: {name!r}: {sorted(reserved)[0]!r} is an entry of a repository's "
            "OCI image layout and cannot be a component of a name"
        )
    return None


def validate_name(name: str) -> str:
    problem = name_problem(name)
    if problem is not None:
        raise NameInvalid(problem)
    return name


def is_valid_name(name: str) -> bool:
    return name_problem(name) is None


def validate_tag(tag: str) -> str:
    if not _TAG_RE.fullmatch(tag):
        raise TagInvalid(f"invalid tag: {tag!r}")
    return tag
