"""The decision of access control, pure (registry/access/policy.py, actions.py, globs.py), against
vectors written from zot's code (pkg/api/authz.go v2.1.20: can, isPermitted, isAdmin,
getUserGroups; UserAccessControl.Can for the catalog) and doublestar v4.10.0's Match."""

from __future__ import annotations

from typing import Any

import pytest
from zot_registry.access.actions import manifest_put_action, route_actions
from zot_registry.access.policy import ANONYMOUS, AccessRules, Identity
from zot_registry.api.routing import match_route
from zot_registry.config import AccessControlConfig
from zot_registry.globs import expand, matcher

DIGEST = "sha256:" + "a" * 64

# ---------------------------------------------------------------------------------------------
# Patterns: doublestar's Match (each expected value printed by doublestar v4.10.0, zot's version)
# ---------------------------------------------------------------------------------------------

DOUBLESTAR = [
    ("**", "a", True),
    ("**", "a/b/c", True),
    ("*", "a", True),
    ("*", "a/b", False),
    ("a/**", "a", True),
    ("a/**", "a/b", True),
    ("a/**", "a/b/c", True),
    ("a/**", "ab", False),
    ("a/*", "a", False),
    ("a/*", "a/b", True),
    ("a/*", "a/b/c", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/y/c", False),
    ("**/b", "b", True),
    ("**/b", "x/y/b", True),
    ("**/b", "x/yb", False),
    ("a/*/c", "a/b/c", True),
    ("a/*/c", "a/b/b/c", False),
    ("{a,b}/**", "a", True),
    ("{a,b}/**", "b/x", True),
    ("{a,b}/**", "c/x", False),
    ("a/{b,c/**}", "a/c", True),
    ("a/{b,c/**}", "a/c/d/e", True),
    ("a/{b,c/**}", "a/d", False),
    ("a{b,c{d,e}}", "ace", True),
    ("a{b,c{d,e}}", "ac", False),
    ("team{1..3}", "team2", False),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
    ("[ab]/x", "b/x", True),
    ("[!a]/x", "a/x", False),
    ("[!a]/x", "c/x", True),
    ("[^a]/x", "c/x", True),
    ("[a-c]x", "bx", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a\\*b", "axb", False),
    ("a**", "aa", True),
    ("a**", "a/b", False),
    ("**a", "xa", True),
    ("**a", "x/a", False),
    ("tmp/**", "tmp", True),
    ("tmp/**", "tmp/x", True),
    ("tmp/**", "tmpx", False),
    ("infra/*", "infra", False),
    ("infra/*", "infra/x", True),
    ("infra/*", "infra/x/y", False),
    ("repos2/repo", "repos2/repo", True),
    ("repos2/repo", "repos2/repo/x", False),
    ("*/*", "a/b", True),
    ("*/*", "a", False),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), DOUBLESTAR)
def test_patterns_match_as_doublestar_does(pattern: str, name: str, expected: bool) -> None:
    assert matcher(pattern)(name) is expected


def test_braces_expand_as_doublestar_reads_them() -> None:
    assert expand("a{b,c{d,e}}f{g,h}") == ["abfg", "abfh", "acdfg", "acdfh", "acefg", "acefh"]
    assert expand("team{1..3}") == ["team1..3"]  # no sequences in doublestar
    assert expand("a\\{b,c}") == ["a\\{b,c}"]  # an escaped brace is a character
    assert expand("[{]x{a,b}") == ["[{]xa", "[{]xb"]  # a brace in a class too


# ---------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------


def rules(**access: Any) -> AccessRules:
    return AccessRules(AccessControlConfig.model_validate(access))


# The shape of zot's examples/config-policy.json (without its CEL conditions), plus anonymous reads
# of one pattern and a user in a group defined here.
POLICY = rules(
    groups={"group1": {"users": ["jack", "jane"]}, "group2": {"users": ["alice"]}},
    repositories={
        "**": {
            "policies": [
                {"users": ["charlie"], "groups": ["group1"], "actions": ["read", "create", "update"]},
                {"users": ["mary"], "groups": ["group2"], "actions": ["read", "create", "update", "delete"]},
            ],
            "defaultPolicy": ["read", "create"],
        },
        "tmp/**": {"defaultPolicy": ["read", "create", "update"]},
        "infra/*": {
            "policies": [
                {"users": ["alice", "bob"], "actions": ["create", "read", "update", "delete"]},
                {"users": ["mallory"], "actions": ["create", "read"]},
            ],
            "defaultPolicy": ["read"],
        },
        "public/**": {"anonymousPolicy": ["read"]},
    },
    adminPolicy={"users": ["admin"], "groups": ["admins"], "actions": ["read", "create", "update", "delete"]},
)


def user(name: str, *groups: str) -> Identity:
    return POLICY.identity(name, groups)


@pytest.mark.parametrize(
    ("who", "repository", "action", "allowed"),
    [
        # "**" governs what no longer pattern matches: its policies by user and by group, its default.
        (user("charlie"), "app", "update", True),
        (user("charlie"), "app", "delete", False),
        (user("jack"), "app", "update", True),  # group1, from accessControl.groups
        (user("alice"), "app", "delete", True),  # group2
        (user("zed"), "app", "create", True),  # defaultPolicy: any authenticated user
        (user("zed"), "app", "update", False),
        # The longest pattern alone decides: "infra/*" beats "**", whose grants do not apply there.
        (user("charlie"), "infra/db", "read", True),  # infra/*'s defaultPolicy
        (user("charlie"), "infra/db", "create", False),  # ** would give it; infra/* does not
        (user("jack"), "infra/db", "update", False),
        (user("mallory"), "infra/db", "create", True),
        (user("mallory"), "infra/db", "delete", False),
        (user("alice"), "infra/db", "delete", True),
        # "infra/*" does not match infra/db/x: "**" governs it.
        (user("mallory"), "infra/db/x", "update", False),
        (user("charlie"), "infra/db/x", "update", True),
        # "tmp/**" also covers tmp itself (doublestar: a trailing /** matches zero components).
        (user("zed"), "tmp", "update", True),
        (user("zed"), "tmp/a/b", "update", True),
        (user("mary"), "tmp/x", "delete", False),  # mary's grant is on "**", not on tmp/**
        # The admin policy: every repository, whichever pattern governs it, for its actions.
        (user("admin"), "infra/db", "delete", True),
        (user("admin"), "public/x", "delete", True),
        (user("someone", "admins"), "tmp/x", "delete", True),  # an admin group from the authenticator
        # Anonymous: only anonymousPolicy, and an authenticated user does not get it.
        (ANONYMOUS, "public/x", "read", True),
        (ANONYMOUS, "public/x", "create", False),
        (ANONYMOUS, "app", "read", False),
        (user("zed"), "public/x", "read", False),  # zot: anonymousPolicy is for anonymous requests only
        (user("admin"), "public/x", "read", True),  # the admin policy still applies
    ],
)
def test_decisions(who: Identity, repository: str, action: str, allowed: bool) -> None:
    assert POLICY.allows(who, repository, action) is allowed


def test_groups_come_from_the_config_and_from_the_authenticator() -> None:
    assert POLICY.identity("jack").groups == frozenset({"group1"})
    assert POLICY.identity("jack", ["ldap-team"]).groups == frozenset({"group1", "ldap-team"})
    assert POLICY.identity(None) is ANONYMOUS and POLICY.identity("") is ANONYMOUS
    assert POLICY.identity("nobody").groups == frozenset()


def test_no_pattern_matching_denies_all_but_the_admin() -> None:
    only_team = rules(
        repositories={"team/**": {"defaultPolicy": ["read"], "anonymousPolicy": ["read"]}},
        adminPolicy={"users": ["root"], "actions": ["read"]},
    )
    assert not only_team.allows(only_team.identity("u"), "other", "read")
    assert not only_team.allows(ANONYMOUS, "other", "read")
    assert only_team.allows(only_team.identity("root"), "other", "read")
    assert not only_team.allows(only_team.identity("root"), "other", "delete")  # not among its actions
    assert only_team.allows(only_team.identity("u"), "team", "read")


def test_no_policy_at_all_denies_everything() -> None:
    empty = rules()
    for who in (ANONYMOUS, empty.identity("u")):
        for action in ("read", "create", "update", "delete"):
            assert not empty.allows(who, "any/thing", action)


def test_patterns_of_equal_length_must_all_grant() -> None:
    # zot takes either (its map order is random); here only what both grant.
    tie = rules(repositories={"a/*": {"defaultPolicy": ["read", "create"]}, "*/b": {"defaultPolicy": ["read"]}})
    u = tie.identity("u")
    assert tie.allows(u, "a/b", "read")
    assert not tie.allows(u, "a/b", "create")
    assert tie.allows(u, "a/c", "create")  # only a/* matches


def test_the_catalog_shows_what_may_be_read_and_everything_to_admins() -> None:
    names = ["app", "infra/db", "public/x", "tmp/x"]
    assert [n for n in names if POLICY.may_list(ANONYMOUS, n)] == ["public/x"]
    assert [n for n in names if POLICY.may_list(user("zed"), n)] == ["app", "infra/db", "tmp/x"]
    # An admin sees everything, even without "read" among the admin policy's actions (zot's Can).
    lister = rules(repositories={"x/**": {"defaultPolicy": ["read"]}}, adminPolicy={"users": ["root"]})
    assert lister.may_list(lister.identity("root"), "secret")
    assert not lister.allows(lister.identity("root"), "secret", "read")
    assert not lister.may_list(lister.identity("u"), "secret")


def test_metrics_readers() -> None:
    metrics = rules(metrics={"users": ["prom"], "anonymousPolicy": ["read"]})
    assert metrics.may_read_metrics(ANONYMOUS)
    assert metrics.may_read_metrics(metrics.identity("prom"))
    assert not metrics.may_read_metrics(metrics.identity("other"))
    closed = rules()  # zot: without a metrics stanza nobody reads them
    assert not closed.may_read_metrics(ANONYMOUS)
    assert not closed.may_read_metrics(closed.identity("prom"))


def test_which_policies_let_requests_in_without_credentials() -> None:
    assert POLICY.anonymous_policy_exists and POLICY.mixed_policies
    anonymous_only = rules(repositories={"**": {"anonymousPolicy": ["read"]}})
    assert anonymous_only.anonymous_policy_exists and not anonymous_only.mixed_policies
    assert not rules(repositories={"**": {"defaultPolicy": ["read"]}}).anonymous_policy_exists


# ---------------------------------------------------------------------------------------------
# Route -> action
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method", "actions"),
    [
        ("", "GET", set()),
        ("_catalog", "GET", set()),
        ("r/tags/list", "GET", {"read"}),
        ("r/manifests/v1", "GET", {"read"}),
        ("r/manifests/v1", "HEAD", {"read"}),
        ("r/manifests/v1", "PUT", {"create", "update"}),  # which one: the tag decides, where it is stored
        (f"r/manifests/{DIGEST}", "PUT", {"create"}),
        ("r/manifests/v1", "DELETE", {"delete"}),
        (f"r/blobs/{DIGEST}", "GET", {"read"}),
        (f"r/blobs/{DIGEST}", "HEAD", {"read"}),
        (f"r/blobs/{DIGEST}", "DELETE", {"delete"}),
        ("r/blobs/uploads/", "POST", {"create"}),
        ("r/blobs/uploads/s1", "GET", {"read"}),
        ("r/blobs/uploads/s1", "PATCH", {"create"}),
        ("r/blobs/uploads/s1", "PUT", {"create"}),
        ("r/blobs/uploads/s1", "DELETE", {"delete"}),
        (f"r/referrers/{DIGEST}", "GET", {"read"}),
    ],
)
def test_route_actions(path: str, method: str, actions: set[str]) -> None:
    assert route_actions(match_route(path, method), method) == actions


def test_a_manifest_put_creates_a_new_tag_and_updates_an_existing_one() -> None:
    assert manifest_put_action("v1", []) == "create"
    assert manifest_put_action("v1", ["v0"]) == "create"
    assert manifest_put_action("v1", ["v0", "v1"]) == "update"
    assert manifest_put_action(DIGEST, [DIGEST]) == "create"  # a digest is always created (zot)
