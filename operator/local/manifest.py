"""Reading a ZotCluster manifest file: the cluster plus any Secrets written beside it.

`kubectl apply -f` accepts multi-document YAML, and `-f -` for standard input, so local mode and
`zot-operator render` do too: the one ZotCluster is validated with the same pydantic models as the CRD
(every problem at once, at its line and column: manifest_problems), and `kind: Secret` documents
stand in for the Secrets the API server would hold (the htpasswd Secret, a hash key Secret, ...).
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from zot_registry.config.messages import PathKey, dotted

from ..manifest_problems import duplicate_keys, key_positions, locate, spec_problems
from ..models import ZotClusterSpec
from ..names import ClusterRef

# What the API server accepts as a ZotCluster name (it also names the state folder of local mode).
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ManifestError(Exception):
    """Bad user input in the manifest: one line per problem, each naming the file (and line:column when
    known) and the field. The commands print each line after "error: " and exit 2."""

    def __init__(self, messages: str | list[str]) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


STDIN = "-"  # `-f -`, as kubectl reads a manifest from standard input


def read_text(path: str) -> tuple[str, str]:
    """(the name messages give the file, its text); `-` is standard input."""
    if path == STDIN:
        try:
            return "<stdin>", sys.stdin.read()
        except (OSError, UnicodeDecodeError) as err:
            raise ManifestError(f"<stdin>: cannot read it: {err}") from None
    try:
        return path, Path(path).read_text()
    except OSError as err:
        raise ManifestError(f"{path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text (a YAML manifest is)") from None


@dataclass(frozen=True)
class Manifest:
    ref: ClusterRef
    # Secret name -> key -> decoded bytes (from `data`, base64, or `stringData`).
    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)


def _secret_data(path: str, name: str, document: dict[str, Any]) -> dict[str, bytes]:
    values: dict[str, bytes] = {}
    for key, value in (document.get("data") or {}).items():
        try:
            values[str(key)] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise ManifestError(
                f"{path}: Secret {name}: data.{key} is not valid base64 (use stringData for plain text)"
            ) from None
    # stringData wins over data, as the API server merges it.
    values.update({str(k): str(v).encode() for k, v in (document.get("stringData") or {}).items()})
    return values


def _validate(name: str, document: dict[str, Any], node: yaml.Node, overrides: dict[str, Any]) -> ZotClusterSpec:
    spec = document.get("spec") or {}
    positions = key_positions(node)
    if not isinstance(spec, dict):
        raise ManifestError(_at(name, ("spec",), positions, "must be a mapping"))
    try:
        return ZotClusterSpec.model_validate({**spec, **overrides})
    except ValidationError as err:
        # An override (--replicas) is not in the file: its problem has no line to point at.
        # In the order of the file, as a reader goes through it; an override (--replicas) is not in the
        # file, so its problem has no line to point at (and comes first).
        located = [
            (locate(path, {} if path[1:2] and path[1] in overrides else positions), path, message)
            for path, message in spec_problems(err, ZotClusterSpec)
        ]
        located.sort(key=lambda item: item[0] or (0, 0))
        raise ManifestError([_line(name, position, path, message) for position, path, message in located]) from None


def _at(name: str, path: PathKey, positions: dict[PathKey, tuple[int, int]], message: str) -> str:
    return _line(name, locate(path, positions), path, message)


def _line(name: str, position: tuple[int, int] | None, path: PathKey, message: str) -> str:
    """One problem as `zot-registry verify` writes them: file:line:column: key: message."""
    where = f"{name}:{position[0]}:{position[1]}" if position else name
    return f"{where}: {dotted(path)}: {message}"


def _parse(name: str, text: str) -> list[tuple[Any, yaml.Node]]:
    """Every non-empty document with its node tree (the marks give the lines); duplicate keys refused."""
    try:
        nodes = [n for n in yaml.compose_all(text, Loader=yaml.SafeLoader) if n is not None]
        loaded = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ManifestError(f"{name}{where}: not valid YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ManifestError(f"{name}: not valid YAML: {err}") from None
    duplicates = [
        f"{name}:{line}:{column}: {dotted(path)}: written twice in the same mapping: keep one "
        "(kubectl refuses the file)"
        for node in nodes
        for path, (line, column) in duplicate_keys(node)
    ]
    if duplicates:
        raise ManifestError(duplicates)
    return list(zip(loaded, nodes, strict=True))


def load_manifest(path: str, overrides: dict[str, Any] | None = None) -> Manifest:
    """The one ZotCluster of a (multi-document) YAML file, or of standard input for `-`, and its Secrets;
    `overrides` replace spec fields (by their YAML name) before validation, so errors still name
    `spec.<field>`."""
    name, text = read_text(path)
    clusters: list[tuple[dict[str, Any], yaml.Node]] = []
    secrets: dict[str, dict[str, bytes]] = {}
    for document, node in _parse(name, text):
        if not isinstance(document, dict):
            raise ManifestError(f"{name}:{node.start_mark.line + 1}:1: every document must be a mapping with a kind")
        meta = document.get("metadata") or {}
        if document.get("kind") == "ZotCluster":
            clusters.append((document, node))
        elif document.get("kind") == "Secret" and isinstance(meta, dict) and meta.get("name"):
            secrets[str(meta["name"])] = _secret_data(name, str(meta["name"]), document)
    if len(clusters) != 1:
        found = "no ZotCluster" if not clusters else f"{len(clusters)} ZotClusters"
        raise ManifestError(f"{name}: {found} in the file; expected exactly one `kind: ZotCluster` document")
    document, node = clusters[0]
    positions = key_positions(node)
    meta = document.get("metadata") or {}
    if not isinstance(meta, dict):
        raise ManifestError(_at(name, ("metadata",), positions, "must be a mapping"))
    cluster, namespace = str(meta.get("name", "zot")), str(meta.get("namespace", "default"))
    for key, value in (("name", cluster), ("namespace", namespace)):
        if len(value) > 63 or not _NAME.match(value):
            problem = f"{value!r} is not a DNS-1123 label (lower-case letters, digits and '-', at most 63)"
            raise ManifestError(_at(name, ("metadata", key), positions, problem))
    spec = _validate(name, document, node, overrides or {})
    return Manifest(ClusterRef(cluster, namespace, "", spec), secrets)
