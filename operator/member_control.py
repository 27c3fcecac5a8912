"""The operator's client of the members' cluster control API (`zot_registry.cluster.control_models`):
read a member's state, ask it for a step of a membership change, abandon a change.

Synchronous, because kopf runs our handlers in threads. Every call has short timeouts and returns a
typed answer instead of raising: a member that does not answer is `Unreachable`, one that has no
control API (an upstream zot image, or ours from before it) is `NotSupported`, one that refuses a
change (an epoch older than its own) is `Refused`; the planner decides what each means.

The API wants mutual TLS with the cluster CA: the operator issues itself a short-lived client
certificate from the CA it keeps in `<name>-ca`, holds it in memory only, and issues a new one well
before it expires. The member's server certificate is verified against the same CA and the member's
DNS name, so a member is only ever reached by the name in the member list.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import urllib3
from pydantic import ValidationError
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)
from zot_registry.certs import KeyPair, make_client_cert
from zot_registry.cluster.control_models import CHANGE_PATH, STATE_PATH, ChangeRequest, MemberState
from zot_registry.version import VERSION

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0
CLIENT_NAME = "zot-operator"
CLIENT_DAYS = 1
# Half the validity: a pass never starts with a certificate that could expire during it, and a
# member whose clock is somewhat ahead still accepts it.
RENEW_AFTER = datetime.timedelta(days=CLIENT_DAYS) / 2


@dataclass(frozen=True)
class Unreachable:
    """No usable answer: no connection, a timeout, a TLS failure, an error status, an unreadable body."""

    reason: str


@dataclass(frozen=True)
class NotSupported:
    """The member answered 404 on the control API: it does not have one."""

    reason: str


@dataclass(frozen=True)
class Refused:
    """The member refused the change (409: its epoch is newer than the request's), with its error message."""

    status: int
    message: str


StateAnswer = MemberState | Unreachable | NotSupported
ChangeAnswer = MemberState | Unreachable | NotSupported | Refused


class MemberApi(Protocol):
    """What the reconciliation asks of the members, by member address (`host:port` from the member list)."""

    def state(self, address: str) -> StateAnswer: ...

    def change(self, address: str, request: ChangeRequest) -> ChangeAnswer: ...

    def abandon(self, address: str) -> ChangeAnswer: ...


# The cluster's CA -> a MemberApi that authenticates with it. The reconciliation takes one of these,
# so the unit tests can hand it an in-memory fleet.
Connect = Callable[[KeyPair], MemberApi]


def _error_message(body: bytes) -> str:
    """The first message of an OCI-style error document ({"errors": [{"code", "message"}]}), else the text."""
    try:
        errors = json.loads(body).get("errors") or []
        first = errors[0]
        return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except (ValueError, AttributeError, IndexError, TypeError):
        return body[:200].decode(errors="replace").strip()


def _describe(err: HTTPError) -> str:
    # Most specific first: in urllib3 2 a NameResolutionError is a NewConnectionError, which is a
    # ConnectTimeoutError (for compatibility), which is a TimeoutError.
    if isinstance(err, NameResolutionError):
        return "its name does not resolve"
    if isinstance(err, NewConnectionError):
        return "connection refused" if "refused" in str(err).lower() else f"no connection: {err}"
    if isinstance(err, ConnectTimeoutError):
        return f"no connection within {CONNECT_TIMEOUT:g}s"
    if isinstance(err, ReadTimeoutError):
        return f"no answer within {READ_TIMEOUT:g}s"
    if isinstance(err, SSLError):
        return f"TLS failed: {err}"
    return str(err) or type(err).__name__


def _load_client_pair(context: ssl.SSLContext, pair: KeyPair) -> None:
    """`SSLContext` reads a certificate and its key only from a file: hand it an anonymous in-memory file
    (memfd) so the key never lands on a disk, or, where there is none, a private file removed at once."""
    data = pair.cert_pem + pair.key_pem
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        fd = os.memfd_create("zot-operator-client")
        try:
            with os.fdopen(fd, "wb", closefd=False) as file:
                file.write(data)
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "client.pem"
        path.touch(mode=0o600)
        path.write_bytes(data)
        context.load_cert_chain(str(path))


class HttpMemberApi:
    """The control API over HTTPS with a client certificate; one connection pool per member, kept alive."""

    def __init__(self, ca: KeyPair, client: KeyPair) -> None:
        context = ssl.create_default_context(cadata=ca.cert_pem.decode())
        _load_client_pair(context, client)
        self._pool = urllib3.PoolManager(
            num_pools=512,  # one per member (up to 256 in a list), kept across passes
            ssl_context=context,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
            retries=False,  # the next pass is the retry; a blocked pass would delay every other step
            headers={"User-Agent": f"zot-operator/{VERSION}", "Accept": "application/json"},
        )

    def state(self, address: str) -> StateAnswer:
        answer = self._call("GET", address, STATE_PATH)
        if isinstance(answer, Refused):
            return Unreachable(f"answered HTTP {answer.status}: {answer.message}")
        return answer

    def change(self, address: str, request: ChangeRequest) -> ChangeAnswer:
        return self._call("PUT", address, CHANGE_PATH, json.dumps(request.model_dump(by_alias=True, mode="json")))

    def abandon(self, address: str) -> ChangeAnswer:
        return self._call("DELETE", address, CHANGE_PATH)

    def _call(self, method: str, address: str, path: str, body: str | None = None) -> ChangeAnswer:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            response = self._pool.request(method, f"https://{address}{path}", body=body, headers=headers)
        except HTTPError as err:
            return Unreachable(_describe(err))
        if response.status == 404:
            return NotSupported(f"no control API at {path} (HTTP 404): an upstream zot image, or an older one of ours")
        if response.status >= 300:
            return Refused(response.status, _error_message(response.data))
        try:
            return MemberState.model_validate_json(response.data)
        except ValidationError as err:
            return Unreachable(f"answered a state this operator cannot read: {err.errors()[0]['msg']}")


class ClientCache:
    """One `HttpMemberApi` per cluster CA, with a client certificate renewed after `RENEW_AFTER`.
    Thread-safe: kopf handles several ZotClusters at once."""

    def __init__(self, clock: Callable[[], datetime.datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._lock = threading.Lock()
        self._clients: dict[bytes, tuple[datetime.datetime, HttpMemberApi]] = {}

    def connect(self, ca: KeyPair) -> MemberApi:
        now = self._clock()
        key = hashlib.sha256(ca.cert_pem).digest()
        with self._lock:
            # A renewed CA is another key: drop what is too old to be used again, whichever CA it was for.
            # Not closed: a pass of another cluster may still use it; its connections go with it.
            for stale in [k for k, (issued, _) in self._clients.items() if now - issued >= RENEW_AFTER]:
                del self._clients[stale]
            if key not in self._clients:
                self._clients[key] = (now, HttpMemberApi(ca, make_client_cert(ca, CLIENT_NAME, days=CLIENT_DAYS)))
            return self._clients[key][1]


connect: Connect = ClientCache().connect
