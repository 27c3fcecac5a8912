"""Repository patterns as zot matches them (accessControl repositories, sync content prefixes):
doublestar v4's Match (`*` and `?` within one path component, `**` across components, `[...]`
classes, `{a,b}` alternatives, `\\` escapes).

Matching is wcmatch's (GLOBSTAR, DOTGLOB) on each alternative, with the braces expanded here, as
doublestar reads them: no `{1..3}` sequences (doublestar has none; bracex, wcmatch's expander,
would make three names of it). One rule of doublestar's that wcmatch lacks is added: a trailing
`/**` also matches zero components, so `tmp/**` covers `tmp` itself. Not followed: doublestar's
`a/**/` matches `a`; a pattern ending in `/` matches no repository name here (fails closed).
"""

from __future__ import annotations

from collections.abc import Callable

# Alternatives one pattern may expand to; beyond that the pattern is refused (config/access.py).
MAX_ALTERNATIVES = 1024


class TooManyAlternatives(ValueError):
    pass


def _closing(pattern: str, start: int) -> int:
    """The index of the `}` that closes the `{` at `start`, or -1."""
    depth, index = 0, start
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 1
        elif char == "[":
            end = pattern.find("]", index + 2)
            index = end if end != -1 else index
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return -1


def _split_top(body: str) -> list[str]:
    """`a,b{c,d},e` -> ["a", "b{c,d}", "e"]: the alternatives of one brace, at its own depth."""
    parts, depth, current, index = [], 0, [], 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            current.append(body[index : index + 2])
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            index += 1
            continue
        current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def expand(pattern: str, limit: int = MAX_ALTERNATIVES) -> list[str]:
    """The brace-free alternatives of `pattern` (escapes kept). Raises TooManyAlternatives."""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            end = pattern.find("]", index + 2)
            index = (end if end != -1 else index) + 1
            continue
        if char == "{":
            end = _closing(pattern, index)
            if end == -1:
                break  # not a valid pattern; config/access.py refuses it before it gets here
            head, tail = pattern[:index], pattern[end + 1 :]
            found: list[str] = []
            for alternative in _split_top(pattern[index + 1 : end]):
                found.extend(expand(head + alternative + tail, limit))
                if len(found) > limit:
                    raise TooManyAlternatives(f"more than {limit} alternatives")
            return found
        index += 1
    return [pattern]


def matcher(pattern: str) -> Callable[[str], bool]:
    """A function that tells whether a repository name matches `pattern` (compiled once)."""
    # Imported here: loading a config checks patterns with expand() alone, without wcmatch.
    from wcmatch import glob

    flags = glob.GLOBSTAR | glob.DOTGLOB
    compiled = []
    for alternative in expand(pattern):
        compiled.append(glob.compile(alternative, flags=flags))
        if alternative.endswith("/**"):
            # doublestar: a trailing /** matches zero components too.
            compiled.append(glob.compile(alternative[: -len("/**")], flags=flags))

    def matches(name: str) -> bool:
        return any(each.match(name) for each in compiled)

    return matches
