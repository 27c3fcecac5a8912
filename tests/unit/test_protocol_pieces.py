"""Digests, names, routes, ranges and pagination: the small rules the API is built from."""

from __future__ import annotations

import pytest
from zot_registry.api.http import parse_content_range, parse_range
from zot_registry.api.routing import match_route
from zot_registry.digests import parse_digest
from zot_registry.errors import DigestInvalid, NameInvalid, NameUnknown, RangeInvalid, RegistryError, Unsupported
from zot_registry.names import validate_name, validate_tag


@pytest.mark.parametrize(
    "value",
    [
        "sha256:" + "a" * 64,
        "sha512:" + "0" * 128,
    ],
)
def test_valid_digests(value: str) -> None:
    assert str(parse_digest(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256",
        "sha256:",
        "sha256:" + "a" * 63,
        "sha256:" + "A" * 64,
        "md5:" + "a" * 32,
        "sha512:" + "a" * 64,
        "sha256:" + "g" * 64,
    ],
)
def test_invalid_digests(value: str) -> None:
    with pytest.raises(DigestInvalid):
        parse_digest(value)


@pytest.mark.parametrize("name", ["a", "library/ubuntu", "a-b/c__d/e.f", "x" * 255, "a--b"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["..", "a/..", "a/../b", "Upper", "a//b", "-a", "a_", "x" * 256, "a/.b", ""])
def test_invalid_names(name: str) -> None:
    with pytest.raises(NameInvalid):
        validate_name(name)


def test_tags() -> None:
    assert validate_tag("v1.0_rc-1") == "v1.0_rc-1"
    for bad in (".hidden", "-x", "a" * 129, "has space"):
        with pytest.raises(RegistryError):
            validate_tag(bad)


@pytest.mark.parametrize(
    ("rest", "method", "kind", "name", "arg"),
    [
        ("", "GET", "base", "", ""),
        ("_catalog", "GET", "catalog", "", ""),
        ("a/b/tags/list", "GET", "tags", "a/b", ""),
        ("a/b/manifests/latest", "PUT", "manifest", "a/b", "latest"),
        ("a/blobs/uploads/", "POST", "uploads", "a", ""),
        ("a/blobs/uploads", "POST", "uploads", "a", ""),
        ("a/blobs/uploads/abc", "PATCH", "upload", "a", "abc"),
        ("a/blobs/sha256:00", "GET", "blob", "a", "sha256:00"),
        ("a/referrers/sha256:00", "GET", "referrers", "a", "sha256:00"),
        ("manifests/manifests/x", "GET", "manifest", "manifests", "x"),
    ],
)
def test_routes(rest: str, method: str, kind: str, name: str, arg: str) -> None:
    route = match_route(rest, method)
    assert (route.kind, route.name, route.arg) == (kind, name, arg)


def test_route_errors() -> None:
    with pytest.raises(Unsupported):
        match_route("a/tags/list", "DELETE")
    with pytest.raises(NameUnknown):
        match_route("a/unknown-endpoint", "GET")
    with pytest.raises(NameInvalid):
        match_route("A/tags/list", "GET")


def test_proxyable_routes_are_zots() -> None:
    assert not match_route("", "GET").proxyable
    assert not match_route("_catalog", "GET").proxyable
    assert all(
        match_route(r, m).proxyable
        for r, m in [
            ("a/tags/list", "GET"),
            ("a/manifests/x", "GET"),
            ("a/blobs/uploads/", "POST"),
            ("a/referrers/sha256:0", "GET"),
        ]
    )


def test_ranges() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-4", 10) == (0, 4)
    assert parse_range("bytes=5-", 10) == (5, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=8-100", 10) == (8, 9)
    for bad in ("bytes=10-", "bytes=5-4", "items=0-1", "bytes=-0", "bytes=-"):
        with pytest.raises(RangeInvalid) as caught:
            parse_range(bad, 10)
        assert caught.value.status == 416 and caught.value.headers["Content-Range"] == "bytes */10"


def test_content_ranges() -> None:
    assert parse_content_range(None) is None
    assert parse_content_range("0-99") == (0, 99)
    assert parse_content_range("bytes 100-199/*") == (100, 199)
    for bad in ("garbage", "5-4", "-1-2", "1-"):
        with pytest.raises(RangeInvalid):
            parse_content_range(bad)


def test_errors_render_as_oci_json() -> None:
    err = DigestInvalid("nope", detail={"digest": "x"})
    assert (err.status, err.code) == (400, "DIGEST_INVALID")
    assert err.body() == b'{"errors": [{"code": "DIGEST_INVALID", "message": "nope", "detail": {"digest": "x"}}]}'
