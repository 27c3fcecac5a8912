"""Access control on requests: who sent it (credentials optional when zot would take the request
as anonymous), whether the route's action is allowed before it is served or forwarded, the checks
that need the storage (create or update for a manifest PUT, read on a mount's `from`), the
catalog filtered for the caller, and /metrics.

app.py builds one AccessGuard when the config has http.accessControl, and then:

1. `authenticate`: the identity (authn/authenticator.py, the same checks as without access
   control), where a request without credentials is anonymous when some repository has an
   anonymousPolicy (zot's AnonymousPolicyExists), else 401;
2. `authorize`, after the route is known and before a member of a cluster forwards it:
   route_actions (actions.py); denied is 403 DENIED for a user and 401 UNAUTHORIZED with the Basic
   challenge for an anonymous request, after http.auth.failDelay (zot's AuthzFail waits too);
3. the handlers wrapped by `handlers`, which run where the repository is stored (the owner, in
   a cluster): the exact create-or-update check of a manifest PUT by tag, read on `from` for a
   mount, the catalog filtered. They read the request's identity from the context variable that
   app.py sets around the handler (authn/current.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from quart import Response

from ..api import listing, uploads
from ..api.handlers import Handler
from ..api.http import page_size
from ..api.requests import request
from ..api.routing import Route
from ..authn import current as current_identity
from ..authn.authenticator import Authenticator
from ..config import ZotConfig
from ..digests import parse_digest
from ..errors import Denied, NameUnknown, Unauthorized
from ..names import is_valid_name
from ..storage.base import Store
from .actions import manifest_put_action, route_actions
from .policy import READ, AccessRules, Identity


def _is_docker(headers: Any) -> bool:
    # zot: the Docker CLI says Docker-Client/..., the daemon proxying for any tool docker/...
    agent = headers.get("User-Agent") or ""
    return "Docker-Client" in agent or agent.startswith("docker/")


class AccessGuard:
    """The access control of one registry (or member): rules, logins, what a denial looks like."""

    def __init__(self, rules: AccessRules, authenticator: Authenticator) -> None:
        self.rules = rules
        self.authenticator = authenticator
        # Groups of accessControl.groups join every identity the authenticator finds.
        authenticator.make_identity = rules.identity
        self.fail_delay = authenticator.fail_delay

    @classmethod
    def from_config(cls, config: ZotConfig, authenticator: Authenticator) -> AccessGuard | None:
        access = config.http.access_control
        if access is None:
            return None
        return cls(AccessRules(access), authenticator)

    def challenge(self) -> dict[str, str]:
        return self.authenticator.challenge()

    # ----------------------------------------------------------------------------------------
    # Who
    # ----------------------------------------------------------------------------------------

    async def authenticate(self, headers: Any, anonymous: bool | None = None) -> Identity:
        """The identity of a request (authn/authenticator.py). `anonymous`: whether a request without
        credentials is let in as anonymous (default: when some repository has an anonymousPolicy)."""
        allowed = self.rules.anonymous_policy_exists if anonymous is None else anonymous
        return await self.authenticator.identify(headers, allowed)

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
            basic = self.authenticator.basic
            if identity.anonymous and basic and self.rules.mixed_policies and _is_docker(headers):
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

    acting_as = staticmethod(current_identity.acting_as)
    current = staticmethod(current_identity.current)

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
