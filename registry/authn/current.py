"""The identity of the request being served, and how a member vouches for it to the owner.

A member that forwards a request (cluster/proxy.py) forwards its Authorization header, and the
owner checks those credentials again. A client certificate cannot be forwarded: the owner's TLS
connection is with the member, not with the client. So the member sends the name it took from the
certificate in IDENTITY_HEADER, and the owner believes that header only on a connection whose
client certificate the cluster CA issued (authenticator.py): from a member. Every member drops the
header from what a client sends before forwarding (proxy.py's _NOT_FORWARDED), and an owner
ignores it from anyone else, so an outside client cannot assert an identity.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from urllib.parse import quote, unquote

from ..access.policy import ANONYMOUS, Identity

# Percent-encoded UTF-8: a certificate's subject may hold commas, quotes and non-ASCII letters.
IDENTITY_HEADER = "X-Zot-Cluster-Identity"

_IDENTITY: contextvars.ContextVar[Identity] = contextvars.ContextVar("registry_identity")


@contextlib.contextmanager
def acting_as(identity: Identity) -> Iterator[None]:
    token = _IDENTITY.set(identity)
    try:
        yield
    finally:
        _IDENTITY.reset(token)


def current() -> Identity:
    # Never set outside a request; anonymous is the identity with the fewest rights.
    return _IDENTITY.get(ANONYMOUS)


def vouching_headers() -> dict[str, str]:
    """What a member adds to a request it sends to a peer for the current client: the name of a
    certificate identity (credentials travel in their own Authorization header)."""
    identity = current()
    if identity.certificate and identity.name:
        return {IDENTITY_HEADER: quote(identity.name, safe="")}
    return {}


def vouched_name(value: str) -> str:
    return unquote(value, errors="strict")
