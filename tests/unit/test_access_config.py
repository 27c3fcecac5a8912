"""zot's http.accessControl in a config: the typed model, zot's rules (validateAuthzPolicies, the
glob check), what is refused (CEL conditions, detectManifestCollision), keys as zot's viper reads
them; and zot's published examples with access control, loaded and asked a few decisions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from zot_registry.access.policy import ANONYMOUS, AccessRules
from zot_registry.config import AccessControlConfig, ConfigError, load_config, parse_config

from tests.support.config_cases import error_of, parse, with_
from tests.support.paths import ZOT_EXAMPLES

HTPASSWD = {"htpasswd": {"path": "/etc/zot/htpasswd"}}
NEEDS_LOGINS = "access control needs a way to authenticate users"


def with_access(access: dict[str, Any], logins: bool = True) -> dict[str, Any]:
    http: dict[str, Any] = {"accessControl": access}
    if logins:
        http["auth"] = HTPASSWD
    return with_(http=http)


def access_of(doc: dict[str, Any]) -> AccessControlConfig:
    access = parse(doc).config.http.access_control
    assert access is not None
    return access


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


def test_every_key_with_its_defaults() -> None:
    access = access_of(
        with_access(
            {
                "repositories": {"**": {"policies": [{"users": ["u"], "actions": ["read"]}]}},
                "adminPolicy": {"users": ["root"], "actions": ["delete"]},
                "groups": {"team": {"users": ["u", "v"]}},
                "metrics": {"users": ["prom"], "anonymousPolicy": ["read"]},
            }
        )
    )
    group = access.repositories["**"]
    assert group.policies[0].users == ["u"] and group.policies[0].groups == []
    assert group.default_policy == [] and group.anonymous_policy == []
    assert access.admin_policy.users == ["root"] and access.admin_policy.actions == ["delete"]
    assert access.groups["team"].users == ["u", "v"]
    assert access.metrics.users == ["prom"] and access.metrics.anonymous_policy == ["read"]
    assert access_of(with_access({})) == AccessControlConfig()


def test_keys_are_case_insensitive_and_map_keys_lower_case_as_in_zot() -> None:
    access = access_of(
        with_(
            http={
                "Auth": HTPASSWD,
                "ACCESSCONTROL": {
                    "Repositories": {"Team/**": {"DefaultPolicy": ["read"], "Policies": [{"Users": ["Bob"]}]}},
                    "AdminPolicy": {"Actions": ["read"]},
                    "Groups": {"Ops": {"USERS": ["Bob"]}},
                },
            }
        )
    )
    # viper lower-cases every key, the names of patterns and groups too; values keep their case.
    assert list(access.repositories) == ["team/**"]
    assert access.repositories["team/**"].policies[0].users == ["Bob"]
    assert list(access.groups) == ["ops"] and access.groups["ops"].users == ["Bob"]
    assert access.admin_policy.actions == ["read"]


def test_a_pattern_or_group_given_twice_in_two_spellings_is_an_error() -> None:
    text = json.dumps(with_access({"repositories": {"A/**": {}, "a/**": {}}}), indent=2)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "test.json")
    assert str(caught.value) == (
        'test.json:9:9: http.accessControl.repositories.a/**: same key as "A/**" (keys are '
        "case-insensitive): keep only one"
    )


def test_a_policy_naming_a_group_with_capitals_is_warned_about() -> None:
    loaded = parse(
        with_access(
            {
                "groups": {"Dev": {"users": ["u"]}},
                "repositories": {"**": {"policies": [{"groups": ["Dev"], "actions": ["read"]}]}},
            }
        )
    )
    assert loaded.warnings == [
        "http.accessControl.repositories.**.policies[0].groups: 'Dev' does not name the group 'dev' of "
        "accessControl.groups: group names there are read in lower case (as zot reads them), so its "
        "members do not get this policy; write 'dev'"
    ]
    rules = AccessRules(loaded.config.http.access_control or AccessControlConfig())
    assert not rules.allows(rules.identity("u"), "x", "read")  # as in zot: the names differ


def test_unknown_actions_are_errors_each_at_its_place() -> None:
    lines = error_of(
        with_access({"repositories": {"**": {"defaultPolicy": ["read", "Write", "pull", 3]}}})
    ).splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        'http.accessControl.repositories.**.defaultPolicy[1]: unknown action "Write": the actions are read, '
        "create, update and delete",
        'http.accessControl.repositories.**.defaultPolicy[2]: unknown action "pull": the actions are read, '
        "create, update and delete",
        "http.accessControl.repositories.**.defaultPolicy[3]: must be an action name (read, create, update, "
        "delete), got 3",
    ]
    assert 'did you mean "read"?' in error_of(with_access({"adminPolicy": {"actions": ["reed"]}}))
    assert "metrics.anonymousPolicy[0]: unknown action" in error_of(
        with_access({"metrics": {"anonymousPolicy": ["scrape"]}})
    )


def test_detect_manifest_collision_is_refused() -> None:
    message = error_of(
        with_access({"repositories": {"**": {"policies": [{"users": ["u"], "actions": ["detectManifestCollision"]}]}}})
    )
    assert "policies[0].actions[0]: " in message
    assert "refuse to delete a manifest that several tags share" in message
    assert message.endswith("; remove it or run zot")


def test_cel_conditions_are_refused() -> None:
    policy = {"users": ["u"], "actions": ["read"], "conditions": [{"expression": "req.tls.enabled"}]}
    message = error_of(with_access({"repositories": {"prod/**": {"policies": [policy]}}}))
    assert message.startswith("test.json:")
    assert (
        "http.accessControl.repositories.prod/**.policies[0].conditions: CEL conditions on a policy are not" in message
    )
    assert "http.accessControl.adminPolicy.conditions: CEL conditions" in error_of(
        with_access({"adminPolicy": {"users": ["root"], "conditions": [{"expression": "true"}]}})
    )
    # An empty list asks for nothing.
    assert access_of(with_access({"repositories": {"**": {"policies": [{**policy, "conditions": []}]}}}))


def test_patterns_must_compile_as_zot_requires() -> None:
    message = error_of(with_access({"repositories": {"team/[a": {}, "ok/**": {}, "": {}, "x/{a": {}}}))
    lines = message.splitlines()
    assert len(lines) == 3
    assert "repositories.team/[a: is not a valid glob pattern" in lines[0]
    assert "repositories.: an empty pattern matches no repository name" in lines[1]
    assert "repositories.x/{a: is not a valid glob pattern" in lines[2]
    assert "split it into several patterns" in error_of(with_access({"repositories": {"{a,b}" * 11: {}}}))


def test_an_empty_user_name_is_refused() -> None:
    for access in (
        {"repositories": {"**": {"policies": [{"users": [""], "actions": ["read"]}]}}},
        {"adminPolicy": {"users": ["root", ""]}},
        {"groups": {"g": {"users": [""]}}},
        {"metrics": {"users": [""]}},
    ):
        assert "an empty user name: zot would match it to anonymous requests" in error_of(with_access(access))


def test_wrong_types_are_named() -> None:
    assert "repositories: must be an object" in error_of(with_access({"repositories": ["**"]}))
    assert "policies: must be a list" in error_of(with_access({"repositories": {"**": {"policies": {}}}}))
    assert "users[0]: must be a string, got 1" in error_of(with_access({"groups": {"g": {"users": [1]}}}))
    assert 'unknown key, zot has no such setting in http.accessControl.repositories.**; did you mean "policies"?' in (
        error_of(with_access({"repositories": {"**": {"policy": []}}}))
    )


# ---------------------------------------------------------------------------------------------
# zot's validateAuthzPolicies: without logins, only anonymous policies
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "access",
    [
        {"repositories": {"**": {"anonymousPolicy": ["read"]}}},
        {"repositories": {"**": {"anonymousPolicy": ["read"], "policies": [{"groups": ["g"]}]}}},
        {"repositories": {"**": {"anonymousPolicy": ["read"]}}, "adminPolicy": {"groups": ["g"]}},
        {"metrics": {"anonymousPolicy": ["read"]}},  # zot's ContainsOnlyMetricsAnonymousPolicy
    ],
)
def test_only_anonymous_policies_need_no_logins(access: dict[str, Any]) -> None:
    assert access_of(with_access(access, logins=False))


@pytest.mark.parametrize(
    "access",
    [
        {},
        {"repositories": {"**": {"defaultPolicy": ["read"]}}},
        {"repositories": {"**": {"anonymousPolicy": ["read"], "defaultPolicy": ["read"]}}},
        {"repositories": {"**": {"anonymousPolicy": ["read"], "policies": [{"users": ["u"]}]}}},
        {"repositories": {"**": {"anonymousPolicy": ["read"]}}, "adminPolicy": {"actions": ["read"]}},
        {"metrics": {"users": ["prom"]}},
        {"metrics": {"anonymousPolicy": ["read"]}, "groups": {"g": {"users": ["u"]}}},
    ],
)
def test_anything_else_needs_logins(access: dict[str, Any]) -> None:
    message = error_of(with_access(access, logins=False))
    assert f"http.accessControl: {NEEDS_LOGINS}" in message
    assert access_of(with_access(access, logins=True)) is not None


def test_a_refused_login_method_is_not_reported_as_missing_logins_too() -> None:
    doc = with_(http={"auth": {"openid": {"providers": {"oidc": {}}}}, "accessControl": {"repositories": {"**": {}}}})
    message = error_of(doc)
    assert "http.auth.openid: requires OpenID logins" in message
    assert NEEDS_LOGINS not in message


def test_a_login_method_with_mistakes_is_not_reported_as_missing_logins_too() -> None:
    doc = with_(http={"auth": {"ldap": {"address": "ldap"}}, "accessControl": {"repositories": {"**": {}}}})
    message = error_of(doc)
    assert "http.auth.ldap" in message
    assert NEEDS_LOGINS not in message


# ---------------------------------------------------------------------------------------------
# zot's published examples with access control (tests/data/zot-examples/README.md)
# ---------------------------------------------------------------------------------------------


def rules_of(path: Path) -> AccessRules:
    access = load_config(path).config.http.access_control
    assert access is not None
    return AccessRules(access)


def test_anonymous_authz_example() -> None:
    rules = rules_of(ZOT_EXAMPLES / "config-anonymous-authz.json")
    assert rules.allows(ANONYMOUS, "app", "create") and not rules.allows(ANONYMOUS, "app", "update")
    assert rules.allows(ANONYMOUS, "tmp/x", "update") and rules.allows(ANONYMOUS, "tmp", "update")
    assert rules.allows(ANONYMOUS, "infra/a/b", "read") and not rules.allows(ANONYMOUS, "infra/a/b", "create")
    assert not rules.allows(ANONYMOUS, "repos2/repo", "create")  # its own pattern: read only
    assert rules.allows(ANONYMOUS, "repos2/other", "create")  # "**"
    assert not rules.allows(ANONYMOUS, "app", "delete")


def test_policy_example_is_refused_for_its_conditions_and_means_zots_policies_without_them(tmp_path: Path) -> None:
    path = ZOT_EXAMPLES / "config-policy.json"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).splitlines() == [
        f"{path}:68:15: http.accessControl.repositories.prod/**.policies[0].conditions: CEL conditions on a "
        "policy are not implemented by this registry: the policy would grant its actions without them; "
        "remove it or run zot"
    ]
    doc = json.loads(path.read_text())
    del doc["http"]["accessControl"]["repositories"]["prod/**"]["policies"][0]["conditions"]
    (tmp_path / "config.json").write_text(json.dumps(doc))
    rules = rules_of(tmp_path / "config.json")
    who = rules.identity
    assert rules.allows(who("charlie"), "app", "update") and not rules.allows(who("charlie"), "app", "delete")
    assert rules.allows(who("jack"), "app", "update")  # group1
    assert rules.allows(who("alice"), "app", "delete")  # group2
    assert rules.allows(who("nobody"), "app", "create") and not rules.allows(who("nobody"), "app", "update")
    assert rules.allows(who("charlie"), "infra/db", "read") and not rules.allows(who("charlie"), "infra/db", "create")
    assert rules.allows(who("mallory"), "infra/db", "create") and not rules.allows(who("mallory"), "infra/db", "delete")
    assert rules.allows(who("bob"), "repos2/repo", "create") and not rules.allows(who("bob"), "repos2/repo", "update")
    assert rules.allows(who("mary"), "tmp/x", "update") and not rules.allows(who("mary"), "tmp/x", "delete")
    assert rules.allows(who("admin"), "infra/db", "delete")
    assert rules.allows(who("alice"), "prod/x", "update") and not rules.allows(who("bob"), "prod/x", "read")
    assert not rules.anonymous_policy_exists  # requests without credentials: 401


def test_metrics_authz_example() -> None:
    rules = rules_of(ZOT_EXAMPLES / "config-metrics-authz.json")
    assert rules.may_read_metrics(rules.identity("metrics"))
    assert not rules.may_read_metrics(rules.identity("other")) and not rules.may_read_metrics(ANONYMOUS)
    assert rules.allows(ANONYMOUS, "app", "read") and not rules.allows(ANONYMOUS, "app", "create")
    assert rules.allows(rules.identity("other"), "app", "create")
    assert rules.mixed_policies  # Docker's anonymous /v2/ gets a 401 (zot's workaround)


def test_metrics_anonymous_example_closes_every_repository() -> None:
    rules = rules_of(ZOT_EXAMPLES / "config-metrics-authn-anonymous-access.json")
    assert rules.may_read_metrics(ANONYMOUS)
    # No repository pattern: zot's `can` grants nothing, to anyone (there is no admin either).
    assert not rules.allows(rules.identity("someone"), "app", "read")
    assert not rules.anonymous_policy_exists
