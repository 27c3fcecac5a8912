"""The JSON shapes a pushed manifest must have, per the OCI image spec (its JSON schemas).

One concern: types and required fields, checked before anything is stored. Media types and
references (which blobs and child manifests must exist) are manifests.py's. Docker's v2 manifest
and manifest list have the same shapes as the OCI image manifest and index, so they pass the same
checks. Fields the spec does not define are left alone, as the spec asks of readers.

- descriptor: an object with mediaType (a media type string), digest (a digest this registry
  can verify), size (an integer, 0 <= size < 2**63); optional urls (strings), annotations,
  data (a string), artifactType (a media type string); in an index, an optional platform;
- platform: an object with architecture and os strings; optional os.version and variant
  strings, os.features and features lists of strings;
- annotations: an object whose values are all strings;
- image manifest: schemaVersion 2, config a descriptor, layers a list of descriptors;
  optional mediaType, artifactType, subject (a descriptor), annotations;
- index: schemaVersion 2, manifests a list of descriptors; optional mediaType, artifactType,
  subject, annotations.
"""

from __future__ import annotations

import re
from typing import Any

from ..digests import parse_digest
from ..errors import DigestInvalid, ManifestInvalid, RegistryError

# defs-descriptor.json's mediaType pattern (RFC 6838 type/subtype).
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
MAX_SIZE = (1 << 63) - 1


def _fail(where: str, what: str) -> RegistryError:
    return ManifestInvalid(f"manifest {where}: {what}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"must be a string, not {_kind(value)}")
    return value


def _media_type(value: Any, where: str) -> None:
    if not _MEDIA_TYPE.fullmatch(_string(value, where)):
        raise _fail(where, f"{value[:100]!r} is not a media type")


def _strings(value: Any, where: str) -> None:
    if not isinstance(value, list):
        raise _fail(where, f"must be a list of strings, not {_kind(value)}")
    for i, item in enumerate(value):
        _string(item, f"{where}[{i}]")


def annotations_ok(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _annotations(document: dict[str, Any], where: str) -> None:
    if "annotations" in document and not annotations_ok(document["annotations"]):
        raise _fail(f"{where}annotations", "must be an object of string values")


def _platform(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise _fail(where, f"must be an object, not {_kind(value)}")
    for key in ("architecture", "os"):
        if key not in value:
            raise _fail(where, f"has no {key}")
        _string(value[key], f"{where}.{key}")
    for key in ("os.version", "variant"):
        if key in value:
            _string(value[key], f"{where}.{key}")
    for key in ("os.features", "features"):
        if key in value:
            _strings(value[key], f"{where}.{key}")


def check_descriptor(value: Any, where: str, in_index: bool = False) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"must be a descriptor object, not {_kind(value)}")
    for key in ("mediaType", "digest", "size"):
        if key not in value:
            raise _fail(where, f"descriptor has no {key}")
    _media_type(value["mediaType"], f"{where}.mediaType")
    try:
        parse_digest(_string(value["digest"], f"{where}.digest"))
    except DigestInvalid as err:
        raise _fail(f"{where}.digest", err.message) from None
    size = value["size"]
    if not _is_int(size) or not 0 <= size <= MAX_SIZE:
        raise _fail(f"{where}.size", f"must be an integer from 0 to 2**63-1, not {_show(size)}")
    if "urls" in value:
        _strings(value["urls"], f"{where}.urls")
    if "data" in value:
        _string(value["data"], f"{where}.data")
    if "artifactType" in value:
        _media_type(value["artifactType"], f"{where}.artifactType")
    _annotations(value, f"{where}.")
    if in_index and "platform" in value:
        _platform(value["platform"], f"{where}.platform")
    return value


def _descriptors(document: dict[str, Any], key: str, in_index: bool) -> None:
    if key not in document:
        raise _fail(key, "is required")
    value = document[key]
    if not isinstance(value, list):
        raise _fail(key, f"must be a list of descriptors, not {_kind(value)}")
    for i, item in enumerate(value):
        check_descriptor(item, f"{key}[{i}]", in_index)


def check_manifest(document: dict[str, Any], is_index: bool) -> None:
    """MANIFEST_INVALID, naming the field, unless `document` has the shape its media type requires."""
    version = document.get("schemaVersion")
    if not _is_int(version) or version != 2:
        raise _fail("schemaVersion", f"must be the integer 2, not {_show(version)}")
    for key in ("mediaType", "artifactType"):
        if key in document:
            _media_type(document[key], key)
    if is_index:
        _descriptors(document, "manifests", in_index=True)
    else:
        if "config" not in document:
            raise _fail("config", "is required in an image manifest")
        check_descriptor(document["config"], "config")
        _descriptors(document, "layers", in_index=False)
    if "subject" in document:
        check_descriptor(document["subject"], "subject")
    _annotations(document, "")


def _kind(value: Any) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    return repr(value)[:60] if isinstance(value, int | float | str) and not isinstance(value, bool) else _kind(value)
