"""zot's `http.accessControl` (pkg/api/config/config.go, v2.1.20: AccessControlConfig, PolicyGroup,
Policy, Group, Metrics) as typed models, with zot's own checks and ours.

The models follow models.py: snake_case attributes, zot's camelCase keys as aliases, strict types.
What the settings mean (which policy decides, how the routes map to actions) is registry/access/;
here is only what a config may say:

- `repositories` is keyed by doublestar glob patterns (`**`, `*`, `?`, `[...]`, `{a,b}`); zot refuses
  a pattern doublestar cannot compile, and so do we; an empty pattern is refused too (zot would
  apply it to every repository that no other pattern matches);
- `groups` is keyed by group names. zot's viper lower-cases the keys of both maps, and so does
  keymap.py: a pattern or group name is used in lower case, as in zot (a warning says so when
  the file spells a group with capitals: policies must then name it in lower case to match);
- actions are `read`, `create`, `update` and `delete`; any other name is an error (zot would ignore
  it: a typo that grants nothing). `detectManifestCollision`, zot's behaviour action, is refused:
  not implemented, and ignoring it would let deletes through that zot refuses;
- `conditions` (CEL expressions gating a policy, zot 2.1.20) are refused: not implemented, and a
  policy without its conditions would grant more than the user wrote;
- an empty user name is refused: in zot it would match anonymous requests, which is what
  `anonymousPolicy` is for.

The rule that needs the rest of the config (an authentication method, unless only anonymous
policies are given: zot's validateAuthzPolicies) is ZotConfig's (models.py).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any

from pydantic import Field, field_validator

from ..globs import TooManyAlternatives, expand
from .base import KeyRule, _Model
from .messages import ModelProblem, fail, raise_all, show
from .sync import valid_glob
from .tables import REFUSE_HINT

# What a config with access control and no login method is told (ZotConfig's check, models.py).
NEEDS_LOGINS = (
    "access control needs a way to authenticate users (zot: htpasswd, ldap, openid or mTLS; "
    "this registry: http.auth.htpasswd, http.auth.ldap or client certificates, http.tls.cacert), "
    "unless it has only anonymousPolicy policies: add a login method, or keep only anonymousPolicy entries"
)
# zot's permissions (pkg/api/constants: ReadPermission, CreatePermission, ...), in zot's order.
ACTIONS: tuple[str, ...] = ("read", "create", "update", "delete")
# zot's behaviour action: with it, deleting a manifest by digest that several tags share fails.
DETECT_COLLISION = "detectManifestCollision"


def _action_problem(value: Any) -> str | None:
    if value in ACTIONS:
        return None
    if value == DETECT_COLLISION:
        return (
            f"{show(value)} makes zot refuse to delete a manifest that several tags share, which this "
            f"registry does not implement: such deletes would succeed here; {REFUSE_HINT}"
        )
    if not isinstance(value, str):
        return f"must be an action name (read, create, update, delete), got {show(value)}"
    close = difflib.get_close_matches(value.lower(), ACTIONS, n=1, cutoff=0.6)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    return f"unknown action {show(value)}: the actions are read, create, update and delete{hint}"


def _check_actions(model: str, actions: Any) -> Any:
    """Every element of a list of actions checked at once (run before the type check, which would
    stop at the first element that is not a string)."""
    if isinstance(actions, list):
        problems: list[ModelProblem] = []
        for index, action in enumerate(actions):
            reason = _action_problem(action)
            if reason is not None:
                problems.append((index, reason))
        raise_all(model, problems)
    return actions


def _check_users(model: str, users: list[str]) -> list[str]:
    problems: list[ModelProblem] = [
        (
            index,
            'an empty user name: zot would match it to anonymous requests; use "anonymousPolicy" for those',
        )
        for index, user in enumerate(users)
        if not user
    ]
    raise_all(model, problems)
    return users


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` cannot key accessControl.repositories, or None."""
    if not pattern:
        return 'an empty pattern matches no repository name: write e.g. "**" for all of them'
    if not valid_glob(pattern):
        # zot: "failed to compile authorization pattern" (doublestar's ValidatePattern).
        return (
            "is not a valid glob pattern (an unclosed [ or {, an empty [], or a trailing \\); "
            'e.g. "team/*" or "team/**"'
        )
    try:
        expand(pattern)
    except TooManyAlternatives as err:
        return f"its {{...}} alternatives expand to {err}: split it into several patterns"
    return None


class AccessPolicy(_Model):
    """Users and groups, and what they may do (zot: Policy). Also the admin policy's shape."""

    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)
    # Refused when given (not implemented); always empty after validation.
    conditions: list[Any] = Field(default_factory=list)

    @field_validator("users")
    @classmethod
    def _users(cls, users: list[str]) -> list[str]:
        return _check_users("AccessPolicy", users)

    @field_validator("actions", mode="before")
    @classmethod
    def _actions(cls, actions: Any) -> Any:
        return _check_actions("AccessPolicy", actions)

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, conditions: list[Any]) -> list[Any]:
        if conditions:
            raise fail(
                "CEL conditions on a policy are not implemented by this registry: the policy would grant "
                f"its actions without them; {REFUSE_HINT}"
            )
        return conditions


class PolicyGroup(_Model):
    """What applies to the repositories one pattern matches (zot: PolicyGroup)."""

    policies: list[AccessPolicy] = Field(default_factory=list)
    # Actions of any authenticated user; of requests without credentials.
    default_policy: list[str] = Field(default_factory=list, alias="defaultPolicy")
    anonymous_policy: list[str] = Field(default_factory=list, alias="anonymousPolicy")

    @field_validator("default_policy", "anonymous_policy", mode="before")
    @classmethod
    def _actions(cls, actions: Any) -> Any:
        return _check_actions("PolicyGroup", actions)


class AccessGroup(_Model):
    """A group's members (zot: Group)."""

    users: list[str] = Field(default_factory=list)

    @field_validator("users")
    @classmethod
    def _users(cls, users: list[str]) -> list[str]:
        return _check_users("AccessGroup", users)


class MetricsAccess(_Model):
    """Who may read /metrics once access control is on (zot: Metrics): these users, and anonymous
    requests when "read" is in anonymousPolicy."""

    users: list[str] = Field(default_factory=list)
    anonymous_policy: list[str] = Field(default_factory=list, alias="anonymousPolicy")

    @field_validator("users")
    @classmethod
    def _users(cls, users: list[str]) -> list[str]:
        return _check_users("MetricsAccess", users)

    @field_validator("anonymous_policy", mode="before")
    @classmethod
    def _actions(cls, actions: Any) -> Any:
        return _check_actions("MetricsAccess", actions)


class AccessControlConfig(_Model):
    """zot's http.accessControl (zot: AccessControlConfig). Pattern and group keys are lower case
    (keymap.py lower-cases them, as zot's viper does)."""

    # keymap.py checks the patterns (pattern_problem) and leaves the bad ones out; the validator
    # below checks them again for a model built without it.
    repositories: Annotated[dict[str, PolicyGroup], KeyRule(pattern_problem)] = Field(default_factory=dict)
    admin_policy: AccessPolicy = Field(default_factory=AccessPolicy, alias="adminPolicy")
    groups: dict[str, AccessGroup] = Field(default_factory=dict)
    metrics: MetricsAccess = Field(default_factory=MetricsAccess)

    @field_validator("repositories")
    @classmethod
    def _patterns(cls, repositories: dict[str, PolicyGroup]) -> dict[str, PolicyGroup]:
        problems: list[ModelProblem] = [
            ((pattern,), reason) for pattern in repositories if (reason := pattern_problem(pattern)) is not None
        ]
        raise_all("AccessControlConfig", problems)
        return repositories

    def anonymous_policy_exists(self) -> bool:
        """zot's AnonymousPolicyExists: some repository pattern has an anonymousPolicy."""
        return any(group.anonymous_policy for group in self.repositories.values())

    def only_anonymous_policies(self) -> bool:
        """zot's ContainsOnlyAnonymousPolicy: anonymous policies and nothing that names users (an
        admin policy without users or actions, no defaultPolicy, no policy with users or actions)."""
        if self.admin_policy.actions or self.admin_policy.users:
            return False
        for group in self.repositories.values():
            if group.default_policy or any(policy.actions or policy.users for policy in group.policies):
                return False
        return self.anonymous_policy_exists()

    def only_anonymous_metrics(self) -> bool:
        """zot's ContainsOnlyMetricsAnonymousPolicy: nothing but anonymous reads of /metrics."""
        admin = self.admin_policy
        if admin.actions or admin.users or admin.groups:
            return False
        return not self.repositories and not self.groups and "read" in self.metrics.anonymous_policy

    def mixed_policies(self) -> bool:
        """zot's HasMixedAnonymousAndAuthenticatedPolicies (its Docker workaround on /v2/)."""
        return self.anonymous_policy_exists() and not self.only_anonymous_policies()
