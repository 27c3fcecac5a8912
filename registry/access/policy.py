"""Who may do what: the decision of zot's access control (pkg/api/authz.go, v2.1.20: `can`,
`isPermitted`, `isAdmin`, `getUserGroups`; the catalog's filter `UserAccessControl.Can`), pure:
no request, no storage.

For (identity, repository, action), as zot's `can`:

1. the policy group of the **longest pattern** that matches the repository (zot compares
   `len(pattern)`, in bytes) is the only one consulted; no pattern matching: none;
2. that group grants the action (zot's `isPermitted`, first grant wins) when
   - a policy lists the user by name and the action, or
   - a policy lists one of the user's groups and the action, or
   - the action is in `defaultPolicy` and the request is authenticated, or
   - the action is in `anonymousPolicy` and the request is anonymous (an authenticated user
     does not get the anonymous policy's actions: zot's rule);
3. otherwise the **admin policy** grants it when the user, or one of the user's groups, is in
   it and the action is in its actions (for every repository, matched by a pattern or not).

So the result is the union of the repository's grants and the admin's. Two patterns of the same
length that both match (`a/*` and `*/b` for `a/b`): zot takes whichever its map iteration gives
first, at random; here the action is granted only when every one of them grants it.

The catalog lists a repository when the user is an admin (by name or group, whatever the admin
policy's actions: zot's `UserAccessControl.Can` returns early for admins) or when the longest
pattern's group grants `read` as in step 2.

An identity is a user name and groups (Identity): the groups of `accessControl.groups` that list
the user (zot's getUserGroups), plus any an authenticator supplies (LDAP). Anonymous is
no name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..config.access import AccessControlConfig, AccessPolicy, PolicyGroup
from ..globs import matcher

READ, CREATE, UPDATE, DELETE = "read", "create", "update", "delete"
# Repositories whose governing patterns are remembered (the catalog asks for all of them).
_CACHE_MAX = 8192


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is from: a user name and the user's groups; no name is anonymous."""

    name: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)
    # The name is a client certificate's (here, or at the member that forwarded the request):
    # what a member vouches for to the owner (authn/current.py).
    certificate: bool = False

    @property
    def anonymous(self) -> bool:
        # zot: an empty user name is anonymous (UserAccessControl.IsAnonymous).
        return not self.name


ANONYMOUS = Identity()


def _policy_grants(policy: AccessPolicy, identity: Identity, action: str) -> bool:
    if action not in policy.actions:
        return False
    by_name = not identity.anonymous and identity.name in policy.users
    return by_name or not identity.groups.isdisjoint(policy.groups)


def group_grants(group: PolicyGroup, identity: Identity, action: str) -> bool:
    """zot's isPermitted, without conditions (refused at load): the grants of one pattern's group."""
    if any(_policy_grants(policy, identity, action) for policy in group.policies):
        return True
    if identity.anonymous:
        return action in group.anonymous_policy
    return action in group.default_policy


class AccessRules:
    """The decisions of one accessControl stanza."""

    def __init__(self, config: AccessControlConfig) -> None:
        self.config = config
        self._patterns: list[tuple[int, Callable[[str], bool], PolicyGroup]] = [
            (len(pattern.encode()), matcher(pattern), group) for pattern, group in config.repositories.items()
        ]
        members: dict[str, set[str]] = {}
        for name, group in config.groups.items():
            for user in group.users:
                members.setdefault(user, set()).add(name)
        self._members = {user: frozenset(groups) for user, groups in members.items()}
        self._governing: dict[str, tuple[PolicyGroup, ...]] = {}
        self.anonymous_policy_exists = config.anonymous_policy_exists()
        self.mixed_policies = config.mixed_policies()

    def identity(self, user: str | None, groups: Iterable[str] = ()) -> Identity:
        """The identity of an authenticated `user` (None: anonymous), with the groups that
        accessControl.groups gives it and `groups` from the authenticator."""
        if not user:
            return ANONYMOUS
        return Identity(user, self._members.get(user, frozenset()) | frozenset(groups))

    def governing(self, repository: str) -> tuple[PolicyGroup, ...]:
        """The groups of the longest patterns that match `repository` (more than one only on a tie)."""
        found = self._governing.get(repository)
        if found is None:
            longest = -1
            groups: list[PolicyGroup] = []
            for length, matches, group in self._patterns:
                if length < longest or not matches(repository):
                    continue
                if length > longest:
                    longest, groups = length, []
                groups.append(group)
            found = tuple(groups)
            if len(self._governing) >= _CACHE_MAX:
                self._governing.clear()
            self._governing[repository] = found
        return found

    def is_admin(self, identity: Identity) -> bool:
        admin = self.config.admin_policy
        by_name = not identity.anonymous and identity.name in admin.users
        return by_name or not identity.groups.isdisjoint(admin.groups)

    def _repository_grants(self, identity: Identity, repository: str, action: str) -> bool:
        groups = self.governing(repository)
        return bool(groups) and all(group_grants(group, identity, action) for group in groups)

    def allows(self, identity: Identity, repository: str, action: str) -> bool:
        """zot's `can`: the repository's longest pattern, then the admin policy."""
        if self._repository_grants(identity, repository, action):
            return True
        return self.is_admin(identity) and action in self.config.admin_policy.actions

    def may_list(self, identity: Identity, repository: str) -> bool:
        """Whether the catalog shows `repository` to `identity` (zot's AuthzFilterFunc)."""
        return self.is_admin(identity) or self._repository_grants(identity, repository, READ)

    def may_read_metrics(self, identity: Identity) -> bool:
        """zot's MetricsAuthzHandler: anonymous with "read" in metrics.anonymousPolicy, users listed
        in metrics.users (none listed: no user)."""
        metrics = self.config.metrics
        if identity.anonymous:
            return READ in metrics.anonymous_policy
        return identity.name in metrics.users
