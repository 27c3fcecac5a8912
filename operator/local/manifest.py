"""Reading a ZotCluster manifest file: the cluster plus any Secrets written beside it.

`kubectl apply -f` accepts multi-document YAML, so local mode and `zot-operator render` do too: the
one ZotCluster is validated with the same pydantic models as the CRD, and `kind: Secret` documents
stand in for the Secrets the API server would hold (the htpasswd Secret, a hash key Secret, ...).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..models import ZotClusterSpec
from ..names import ClusterRef

# What the API server accepts as a ZotCluster name (it also names the state folder of local mode).
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ManifestError(Exception):
    """Bad user input in the manifest: the message names the file and the field."""


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


def _validate(path: str, document: dict[str, Any], overrides: dict[str, Any]) -> ZotClusterSpec:
    spec = document.get("spec") or {}
    if not isinstance(spec, dict):
        raise ManifestError(f"{path}: spec must be a mapping")
    try:
        return ZotClusterSpec.model_validate({**spec, **overrides})
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(['spec', *(str(p) for p in e['loc'])])}: {e['msg']}" for e in err.errors())
        raise ManifestError(f"{path}: {problems}") from None


def load_manifest(path: str, overrides: dict[str, Any] | None = None) -> Manifest:
    """The one ZotCluster of a (multi-document) YAML file and its Secrets; `overrides` replace
    spec fields (by their YAML name) before validation, so errors still name `spec.<field>`."""
    try:
        documents = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ManifestError(f"{path}{where}: not valid YAML: {err.problem or err.context}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ManifestError(f"{path}: {err}") from None
    clusters: list[dict[str, Any]] = []
    secrets: dict[str, dict[str, bytes]] = {}
    for document in documents:
        if not isinstance(document, dict):
            raise ManifestError(f"{path}: every document must be a mapping with a kind")
        meta = document.get("metadata") or {}
        if document.get("kind") == "ZotCluster":
            clusters.append(document)
        elif document.get("kind") == "Secret" and isinstance(meta, dict) and meta.get("name"):
            secrets[str(meta["name"])] = _secret_data(path, str(meta["name"]), document)
    if len(clusters) != 1:
        found = "no ZotCluster" if not clusters else f"{len(clusters)} ZotClusters"
        raise ManifestError(f"{path}: {found} in the file; expected exactly one `kind: ZotCluster` document")
    document = clusters[0]
    meta = document.get("metadata") or {}
    if not isinstance(meta, dict):
        raise ManifestError(f"{path}: metadata must be a mapping")
    name, namespace = str(meta.get("name", "zot")), str(meta.get("namespace", "default"))
    for key, value in (("name", name), ("namespace", namespace)):
        if len(value) > 63 or not _NAME.match(value):
            raise ManifestError(
                f"{path}: metadata.{key}: {value!r} is not a DNS-1123 label "
                "(lower-case letters, digits and '-', at most 63)"
            )
    spec = _validate(path, document, overrides or {})
    return Manifest(ClusterRef(name, namespace, "", spec), secrets)
