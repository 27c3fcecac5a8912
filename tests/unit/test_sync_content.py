"""zot's sync content rules (pkg/extensions/sync/content.go): which upstream repositories a registry
covers, under which local name, and the tag filters of periodic sync."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from zot_registry.config.sync import SyncContent, SyncTags
from zot_registry.sync.content import ContentRules


def rules(*contents: Mapping[str, object]) -> ContentRules:
    return ContentRules(tuple(SyncContent.model_validate(c) for c in contents))


@pytest.mark.parametrize(
    ("content", "upstream", "local"),
    [
        ({"prefix": "library/*"}, "library/alpine", "library/alpine"),
        ({"prefix": "library/*"}, "library/a/b", None),
        ({"prefix": "tools/**", "destination": "/mirror", "stripPrefix": True}, "tools/cli", "mirror/cli"),
        ({"prefix": "tools/**", "destination": "/mirror", "stripPrefix": True}, "tools/deep/gen", "mirror/deep/gen"),
        ({"prefix": "tools/**", "destination": "/mirror"}, "tools/cli", "mirror/tools/cli"),
        ({"prefix": "/repo1/repo", "destination": "/repo", "stripPrefix": True}, "repo1/repo", "repo"),
        # doublestar: a trailing /** matches the folder itself too.
        ({"prefix": "team/**"}, "team", "team"),
        ({"prefix": "{a,b}/app"}, "b/app", "b/app"),
    ],
)
def test_local_name_and_its_inverse(content: dict[str, object], upstream: str, local: str | None) -> None:
    covered = rules(content)
    assert covered.local_name(upstream) == local
    if local is not None:
        assert covered.upstream_name(local) == upstream


def test_the_first_matching_rule_wins_and_no_rules_cover_everything() -> None:
    covered = rules({"prefix": "a/**", "destination": "/x", "stripPrefix": True}, {"prefix": "a/b"})
    assert covered.local_name("a/b") == "x/b"
    assert ContentRules(()).local_name("any/name") == "any/name"
    assert ContentRules(()).upstream_name("any/name") == "any/name"


def test_a_local_name_no_rule_covers_reaches_no_upstream() -> None:
    covered = rules({"prefix": "tools/**", "destination": "/mirror", "stripPrefix": True})
    assert covered.upstream_name("other/thing") is None
    assert covered.upstream_name("mirror/cli") == "tools/cli"


def test_tag_filters_regex_exclude_and_semver() -> None:
    tags = ["1.0.0", "v1.2.3", "1.x", "2.0.0", "latest", "1.5-rc1"]
    only = SyncTags.model_validate({"regex": r"^v?1\.", "semver": True})
    assert rules({"prefix": "r", "tags": only.model_dump(by_alias=True)}).filter_tags("r", tags) == [
        "1.0.0",
        "v1.2.3",
        "1.5-rc1",
    ]
    exclude = {"prefix": "r", "tags": {"excludeRegex": "-rc"}}
    assert rules(exclude).filter_tags("r", tags) == ["1.0.0", "v1.2.3", "1.x", "2.0.0", "latest"]
    assert rules({"prefix": "r"}).filter_tags("r", tags) == tags


def test_sync_urls_that_point_at_this_registry_are_dropped() -> None:
    from zot_registry.sync.self_urls import without_self

    # Addresses only (and localhost, from /etc/hosts): no name here is looked up in DNS.
    urls = [
        "http://127.0.0.1:5000",  # loopback, this port
        "https://localhost:5000",
        "http://127.0.0.1:5001",  # another port
        "https://192.0.2.10:5000",  # this member's own address
        "https://192.0.2.99:5000",  # another host
    ]
    assert without_self(urls, "192.0.2.10", 5000) == ["http://127.0.0.1:5001", "https://192.0.2.99:5000"]
