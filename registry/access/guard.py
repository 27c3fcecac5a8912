"""Access control on requests: who sent it (credentials optional when zot would take the request
as anonymous), whether the route's action is allowed before it is served or forwarded, the checks
that need the storage (create or update for a manifest PUT, read on a mount's `from`), the
catalog filtered for the caller, and /metrics.

app.py builds one AccessGuard when the config has http.accessControl, and then:

1. `authenticate` (instead of auth.py's check on every route): with an htpasswd file, a request
   with credentials must pass it (401 otherwise, as before); one without credentials is
   anonymous when some repository has an anonymousPolicy (zot's AnonymousPolicyExists), else 401.
   Without an htpasswd file (only anonymous policies: config/access.py) every request is
   anonymous, its Authorization header unread, as in zot. `Basic Og==` (an empty user and
   password, which some clients send) counts as no credentials, and two Authorization headers are
   refused (401), as zot does;
2. `authorize`, after the route is known and before a member of a cluster forwards it:
   route_actions (actions.py); denied is 403 DENIED for a user and 401 UNAUTHORIZED with the Basic
   challenge for an anonymous request, after http.auth.failDelay (zot's AuthzFail waits too);
3. the handlers wrapped by `handlers`, which run where the repository is stored (the owner, in
   a cluster): the exact create-or-update check of a manifest PUT by tag, read on `from` for a
   mount, the catalog filtered. They read the request's identity from a context variable that
   `acting_as` sets around the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any

from quart import Response

from ..api import listing, uploads
from ..api.handlers import Handler
from ..api.http import page_size
from ..api.requests import request
from ..api.routing import Route
from ..auth import HtpasswdAuth
from ..config import ZotConfig
from ..digests import parse_digest
from ..errors import Denied, NameUnknown, Unauthorized
from ..names import is_valid_name
from ..storage.base import Store
from .actions import manifest_put_action, route_actions
from .policy import ANONYMOUS, READ, AccessRules, Identity

_IDENTITY: contextvars.ContextVar[Identity] = contextvars.ContextVar("registry_identity")
# zot's isAuthorizationHeaderEmpty: Basic with an empty user and password is no credentials.
_EMPTY_BASIC = "basic og=="


def _authorization(headers: Any) -> list[str]:
    """Every Authorization header: a multidict's (the /v2/ requests) or werkzeug's (Quart's)."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall("Authorization", []))
    return list(headers.getlist("Authorization"))


def _is_docker(headers: Any) -> bool:
    # zot: the Docker CLI says Docker-Client/..., the daemon proxying for any tool docker/...
    agent = headers.get("User-Agent") or ""
    return "Docker-Client" in agent or agent.startswith("docker/")


class AccessGuard:
    """The access control of one registry (or member): rules, logins, what a denial looks like."""

    def __init__(self, rules: AccessRules, auth: HtpasswdAuth | None, realm: str, fail_delay: float) -> None:
        self.rules = rules
        self.auth = auth
        self.realm = realm
        self.fail_delay = fail_delay

    @classmethod
    def from_config(cls, config: ZotConfig, auth: HtpasswdAuth | None) -> AccessGuard | None:
        access = config.http.access_control
        if access is None:
            return None
        fail_delay = float(config.http.auth.fail_delay) if config.http.auth is not None else 0.0
        return cls(AccessRules(access), auth, config.http.realm or "zot", fail_delay)

    def challenge(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Basic realm="{self.realm}"'}

    # ----------------------------------------------------------------------------------------
    # Who
    # ----------------------------------------------------------------------------------------

    async def authenticate(self, headers: Any, anonymous: bool | None = None) -> Identity:
        """The identity of a request. `anonymous`: whether a request without credentials is let
        in as anonymous (default: when some repository has an anonymousPolicy)."""
        values = _authorization(headers)
        if len(values) > 1:
            raise Unauthorized("more than one Authorization header", headers=self.challenge())
        if self.auth is None:
            return ANONYMOUS  # no logins configured: zot lets every request in as anonymous
        header = values[0].strip() if values else ""
        if header.lower() == _EMPTY_BASIC:
            header = ""
        allowed = self.rules.anonymous_policy_exists if anonymous is None else anonymous
        if allowed and not header:
            return ANONYMOUS
        # Credentials, or none where they are required: auth.py answers (401, 429), as without access control.
        return self.rules.identity(await self.auth.authenticate(header or None))

    # ----------------------------------------------------------------------------------------
    # May they
    # ----------------------------------------------------------------------------------------

    async def deny(self, identity: Identity, repository: str | None, action: str) -> None:
        """Raise what zot's AuthzFail answers: 401 with the challenge for anonymous, else 403."""
        if self.fail_delay > 0:
            await asyncio.sleep(self.fail_delay)
        detail = {"repository": repository, "action": action} if repository is not None else None
        if identity.anonymous:
            raise Unauthorized("authentication required", detail=detail, headers=self.challenge())
        raise Denied(detail=detail, headers=self.challenge())

    async def authorize(self, identity: Identity, route: Route, method: str, headers: Any) -> None:
        """Before the request is served or forwarded: one of the route's actions must be allowed."""
        if route.kind == "base":
            if identity.anonymous and self.auth is not None and self.rules.mixed_policies and _is_docker(headers):
                # zot's workaround: a 200 on /v2/ tells Docker the registry needs no credentials, and
                # it would never send the user's for the repositories that need them.
                raise Unauthorized("authentication required", headers=self.challenge())
            return
        actions = route_actions(route, method)
        if not actions or any(self.rules.allows(identity, route.name, action) for action in sorted(actions)):
            return
        await self.deny(identity, route.name, "/".join(sorted(actions)))

    async def authorize_metrics(self, headers: Any) -> None:
        """/metrics once access control is on: metrics.users, or anonymous with metrics.anonymousPolicy
        read (zot's MetricsAuthzHandler; without credentials and without that, 401)."""
        identity = await self.authenticate(headers, anonymous=True)
        if not self.rules.may_read_metrics(identity):
            await self.deny(identity, None, READ)

    # ----------------------------------------------------------------------------------------
    # Where the repository is stored
    # ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def acting_as(self, identity: Identity) -> Iterator[None]:
        token = _IDENTITY.set(identity)
        try:
            yield
        finally:
            _IDENTITY.reset(token)

    @staticmethod
    def current() -> Identity:
        # Never set outside a request; anonymous is the identity with the fewest rights.
        return _IDENTITY.get(ANONYMOUS)

    def visible(self, names: list[str]) -> list[str]:
        """The repositories of `names` that the current identity may see in the catalog."""
        identity, may_list = self.current(), self.rules.may_list
        return [name for name in names if may_list(identity, name)]

    def handlers(self, base: Mapping[str, Handler]) -> dict[str, Handler]:
        """`base` with the checks that need the storage, run where the repository is stored."""
        serve_manifest, start_upload = base["manifest"], base["uploads"]
        rules = self.rules

        async def manifest(route: Route, store: Store) -> Response:
            if request.method == "PUT":
                action = manifest_put_action(route.arg, await _tags(store, route.name))
                identity = self.current()
                if not rules.allows(identity, route.name, action):
                    await self.deny(identity, route.name, action)
            return await serve_manifest(route, store)

        async def start(route: Route, store: Store) -> Response:
            args = request.args
            if "mount" in args and not await self._may_mount(store, args):
                # zot's canMount said no: not an error, an ordinary upload instead.
                return await uploads.new_session(route, store)
            return await start_upload(route, store)

        async def catalog(route: Route, store: Store) -> Response:
            n = page_size()  # a bad n is refused before the listing is read
            return listing.catalog_response(self.visible(await store.catalog()), n)

        return {**base, "manifest": manifest, "uploads": start, "catalog": catalog}

    async def _may_mount(self, store: Store, args: Any) -> bool:
        """A mount is made only from a `from` the identity may read, and only of a blob that is
        there (the store would otherwise take any copy it holds: one the identity may not read)."""
        digest = parse_digest(args["mount"])  # DIGEST_INVALID, as the handler would answer
        source = args.get("from") or ""
        if not is_valid_name(source) or not self.rules.allows(self.current(), source, READ):
            return False
        return await store.has_blob(source, digest)


async def _tags(store: Store, name: str) -> list[str]:
    try:
        return await store.tags(name)
    except NameUnknown:
        return []  # a new repository: every tag is new (zot: ErrRepoNotFound)
