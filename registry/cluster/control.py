"""The cluster control API over HTTP (`/_cluster/v1/...`, outside /v2/ and its user authentication).

Only the cluster itself may call it: the operator and the other members, each with a client
certificate the cluster CA (`cluster.tls.cacert`) signed. The TLS handshake verifies a presented
certificate against the trust store (hypercorn_patches.peer_certificate gives it to us); here it must
also have been issued by the cluster CA itself, so a certificate of any public CA is refused. Without
TLS or without a cluster CA there is no control API: every request is refused (fail closed), and
membership changes need a restart of every member, as with zot.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography import x509
from pydantic import ValidationError
from quart import Quart, Response, request

from ..api.failures import failure_response
from ..api.http import content_length, request_stream
from ..authn.certificates import issued_directly_by, load_authorities
from ..digests import parse_digest
from ..errors import ChangeConflict, ClusterPeerRequired, Denied, RegistryError, RequestInvalid
from ..hypercorn_patches import peer_certificate
from ..names import is_valid_name
from ..storage.files import disk_errors
from .changes import Changes
from .control_models import API_PREFIX, CHANGE_PATH, IMPORT_PATH, STATE_PATH, ChangeRequest
from .imports import Imports
from .topology import Topology


class PeerCheck:
    """Whether the current request comes from the cluster: a client certificate the cluster CA issued."""

    def __init__(self, ca_file: str | None, tls: bool) -> None:
        self.authorities: list[x509.Certificate] = []
        self.reason = ""
        if not tls:
            self.reason = "the control API needs http.tls (client certificates of the cluster CA)"
        elif not ca_file:
            self.reason = "the control API needs cluster.tls.cacert (it signs the cluster's client certificates)"
        else:
            self.authorities = load_authorities(ca_file)

    def require(self) -> None:
        if self.reason:
            raise Denied(self.reason)
        der = peer_certificate()
        if der is None:
            raise ClusterPeerRequired()
        if issued_directly_by(x509.load_der_x509_certificate(der), self.authorities):
            return
        raise Denied("the client certificate was not issued by the cluster CA")


def _json_body(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise RequestInvalid("the body is not JSON") from None


def _repository(value: object) -> str:
    if not isinstance(value, str) or not is_valid_name(value):
        raise RequestInvalid(f"invalid repository name {value!r}")
    return value


def _epoch(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 18:
        return int(value)
    raise RequestInvalid(f"invalid epoch {value!r}")


def register_control(
    app: Quart,
    check: PeerCheck,
    changes: Changes,
    topology: Topology,
    imports: Imports | None,
    start: Callable[[], None],
) -> None:
    """Add the control routes to `app`; `start` starts the copying task if it is not running."""

    def guarded(handler: Callable[[], Awaitable[Response]]) -> Callable[[], Awaitable[Response]]:
        async def run() -> Response:
            try:
                check.require()
                with disk_errors():
                    return await handler()
            except RegistryError as err:
                return await failure_response(err)

        run.__name__ = handler.__name__
        return run

    def answer(document: dict[str, Any], status: int = 200) -> Response:
        return Response(json.dumps(document), status=status, content_type="application/json")

    def importing(epoch: int, name: str) -> Imports:
        """Imports are taken only for the change under way, and only by the repository's next owner."""
        view = topology.view(fresh=True)
        if imports is None:
            raise ChangeConflict("this member's storage is shared: nothing is copied to it")
        if view.change is None or view.change.epoch != epoch or view.next is None:
            raise ChangeConflict(
                f"this member knows no change epoch {epoch} (yet): retry", headers={"Retry-After": "1"}
            )
        if view.next.owner(name) != view.next.self_index:
            raise ChangeConflict(f"repository {name!r} does not belong to this member in change epoch {epoch}")
        return imports

    async def state() -> Response:
        return answer(changes.state().dump())

    async def change() -> Response:
        if request.method == "DELETE":
            return answer((await changes.abandon()).dump())
        try:
            asked = ChangeRequest.model_validate(_json_body(await request.get_data()))
        except ValidationError as err:
            raise RequestInvalid(f"invalid change request: {err.errors()[0]['msg']}") from None
        member_state = await changes.request(asked)
        if member_state.change is not None:
            start()
        return answer(member_state.dump())

    async def import_missing() -> Response:
        document = _json_body(await request.get_data())
        if not isinstance(document, dict) or not isinstance(document.get("blobs"), list):
            raise RequestInvalid("expected {epoch, repository, blobs: [[digest, size]...]}")
        name = _repository(document.get("repository"))
        target = importing(_epoch(document.get("epoch")), name)
        blobs: list[tuple[str, int]] = []
        for entry in document["blobs"]:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], int)):
                raise RequestInvalid("each blob is [digest, size]")
            blobs.append((str(parse_digest(str(entry[0]))), entry[1]))
        return answer({"missing": target.missing(name, blobs)})

    async def import_blob() -> Response:
        name = _repository(request.args.get("repository"))
        target = importing(_epoch(request.args.get("epoch")), name)
        digest = parse_digest(request.args.get("digest", ""))
        try:
            mtime: float | None = float(request.args.get("mtime", ""))
        except ValueError:
            mtime = None
        await target.receive_blob(name, digest, request_stream(), content_length(), mtime)
        return answer({"digest": str(digest)}, 201)

    async def import_index() -> Response:
        document = _json_body(await request.get_data())
        if not isinstance(document, dict):
            raise RequestInvalid("expected {epoch, repository, index, times}")
        name = _repository(document.get("repository"))
        epoch = _epoch(document.get("epoch"))
        target = importing(epoch, name)
        try:
            index_bytes = base64.b64decode(str(document.get("index", "")), validate=True)
        except (binascii.Error, ValueError):
            raise RequestInvalid("index is not base64") from None
        raw_times = document.get("times") or {}
        times = {str(k): float(v) for k, v in raw_times.items() if isinstance(v, (int, float))}
        raw_held = document.get("held")
        held = {str(d) for d in raw_held} if isinstance(raw_held, list) else None
        result = target.publish(name, index_bytes, times, held)
        if result["created"]:
            changes.imported(name, epoch)
        return answer(result)

    routes: list[tuple[str, Callable[[], Awaitable[Response]], list[str]]] = [
        (STATE_PATH, state, ["GET"]),
        (CHANGE_PATH, change, ["PUT", "DELETE"]),
        (f"{IMPORT_PATH}/missing", import_missing, ["POST"]),
        (f"{IMPORT_PATH}/blob", import_blob, ["PUT"]),
        (f"{IMPORT_PATH}/index", import_index, ["PUT"]),
    ]
    for path, handler, methods in routes:
        app.add_url_rule(path, f"control_{handler.__name__}", guarded(handler), methods=methods)
    assert all(path.startswith(API_PREFIX) for path, _, _ in routes)
