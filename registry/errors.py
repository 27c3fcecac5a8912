"""Typed registry errors that know their OCI error code and HTTP status.

Handlers raise these; one error handler in the app turns them into the OCI error JSON body
(`{"errors": [{"code", "message", "detail"}]}`), so no user mistake ever becomes a 500.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar


class RegistryError(Exception):
    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "unknown error"

    def __init__(self, message: str | None = None, detail: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> bytes:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return json.dumps({"errors": [entry]}).encode()


def _error(name: str, code: str, status: int, message: str) -> type[RegistryError]:
    return type(name, (RegistryError,), {"code": code, "status": status, "default_message": message})


BlobUnknown = _error("BlobUnknown", "BLOB_UNKNOWN", 404, "blob unknown to registry")
BlobUploadInvalid = _error("BlobUploadInvalid", "BLOB_UPLOAD_INVALID", 400, "blob upload invalid")
BlobUploadUnknown = _error("BlobUploadUnknown", "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry")
DigestInvalid = _error("DigestInvalid", "DIGEST_INVALID", 400, "provided digest did not match uploaded content")
ManifestBlobUnknown = _error(
    "ManifestBlobUnknown", "MANIFEST_BLOB_UNKNOWN", 400, "manifest references a manifest or blob unknown to registry"
)
ManifestInvalid = _error("ManifestInvalid", "MANIFEST_INVALID", 400, "manifest invalid")
ManifestTooLarge = _error("ManifestTooLarge", "MANIFEST_INVALID", 413, "manifest too large")
ManifestUnknown = _error("ManifestUnknown", "MANIFEST_UNKNOWN", 404, "manifest unknown to registry")
NameInvalid = _error("NameInvalid", "NAME_INVALID", 400, "invalid repository name")
NameUnknown = _error("NameUnknown", "NAME_UNKNOWN", 404, "repository name not known to registry")
SizeInvalid = _error("SizeInvalid", "SIZE_INVALID", 400, "provided length did not match content length")
Unauthorized = _error("Unauthorized", "UNAUTHORIZED", 401, "authentication required")
Denied = _error("Denied", "DENIED", 403, "requested access to the resource is denied")
Unsupported = _error("Unsupported", "UNSUPPORTED", 405, "the operation is unsupported")
TagInvalid = _error("TagInvalid", "MANIFEST_INVALID", 400, "invalid tag")
PaginationInvalid = _error("PaginationInvalid", "PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested")
RangeInvalid = _error("RangeInvalid", "BLOB_UPLOAD_INVALID", 416, "requested range not satisfiable")
TooManyRequests = _error("TooManyRequests", "TOOMANYREQUESTS", 429, "too many requests")
# Cluster errors (a peer that is down or slow, or a request looping between members).
PeerUnavailable = _error("PeerUnavailable", "UNAVAILABLE", 503, "the member owning this repository is unavailable")
PeerTimeout = _error("PeerTimeout", "UNAVAILABLE", 504, "the member owning this repository did not answer in time")
PeerBadGateway = _error("PeerBadGateway", "UNAVAILABLE", 502, "the member owning this repository failed")
LoopDetected = _error(
    "LoopDetected", "UNSUPPORTED", 508, "request was already proxied once: cluster members disagree on the member list"
)
# Membership changes: a repository whose copy to its next owner is being finished, control requests.
RepositoryMoving = _error(
    "RepositoryMoving", "UNAVAILABLE", 503, "the repository is moving to another member: retry in a moment"
)
MembersChanging = _error(
    "MembersChanging", "UNAVAILABLE", 503, "the cluster's member list is changing: retry in a moment"
)
MemberAway = _error(
    "MemberAway", "UNAVAILABLE", 503, "the member that holds this repository is down and was dropped by failover"
)
ChangeConflict = _error("ChangeConflict", "DENIED", 409, "the membership change conflicts with this member's state")
ImportIncomplete = _error("ImportIncomplete", "MANIFEST_BLOB_UNKNOWN", 409, "the copy of the repository is incomplete")
ClusterPeerRequired = _error(
    "ClusterPeerRequired", "UNAUTHORIZED", 401, "a client certificate of the cluster's CA is required"
)
# Shared storage and cache (a server that is down: the request fails whole, nothing is half-written).
StorageUnavailable = _error("StorageUnavailable", "UNAVAILABLE", 503, "the storage backend is unavailable")
CacheUnavailable = _error("CacheUnavailable", "UNAVAILABLE", 503, "the shared cache is unavailable")
# HTTP framing, request bodies and load (what a client sends, before or while a handler reads it).
RequestInvalid = _error("RequestInvalid", "UNSUPPORTED", 400, "malformed HTTP request")
HeadersTooLarge = _error("HeadersTooLarge", "UNSUPPORTED", 431, "request header fields too large")
BodyTimeout = _error("BodyTimeout", "SIZE_INVALID", 408, "the request body stalled")
PeerBusy = _error("PeerBusy", "UNAVAILABLE", 503, "too many uploads in flight to the member owning this repository")
# Local storage: a full disk, a repository whose index.json is not one, a session another request holds.
InsufficientStorage = _error(
    "InsufficientStorage", "INSUFFICIENT_STORAGE", 507, "insufficient storage: the registry's disk is full"
)
RepositoryUnreadable = _error("RepositoryUnreadable", "NAME_UNKNOWN", 404, "the repository's index.json cannot be read")
BlobUploadBusy = _error("BlobUploadBusy", "BLOB_UPLOAD_INVALID", 409, "the upload session is in use by another request")
