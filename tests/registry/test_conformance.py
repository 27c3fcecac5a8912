"""The official OCI distribution-spec conformance suites (built by hack/) against `zot-registry serve`.

Two builds of the suite, because the Go module proxy here serves neither the v1.1.1 commit nor any
other: the Ginkgo suite of 2023-11 (four workflows, `conformance.test`) and upstream's rewrite of
2026-08 (`oci-conformance`, spec 1.1 with sha512, nested indexes, missing subjects and more).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.support.conformance import run_conformance, run_current_suite
from tests.support.registry import RegistryProcess, write_htpasswd

AUTH = ("conformance", "s3cret!")


def registry_with_htpasswd(start_registry: Callable[..., RegistryProcess], tmp_path: Path) -> RegistryProcess:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {AUTH[0]: AUTH[1]})
    return start_registry(auth={"htpasswd": {"path": str(htpasswd)}})


def test_conformance_without_auth(start_registry: Callable[..., RegistryProcess], tmp_path: Path) -> None:
    run_conformance(start_registry(), tmp_path / "report")


def test_conformance_with_htpasswd(start_registry: Callable[..., RegistryProcess], tmp_path: Path) -> None:
    run_conformance(registry_with_htpasswd(start_registry, tmp_path), tmp_path / "report", auth=AUTH)


def test_current_suite_without_auth(start_registry: Callable[..., RegistryProcess], tmp_path: Path) -> None:
    run_current_suite(start_registry(), tmp_path / "results")


def test_current_suite_with_htpasswd(start_registry: Callable[..., RegistryProcess], tmp_path: Path) -> None:
    run_current_suite(registry_with_htpasswd(start_registry, tmp_path), tmp_path / "results", auth=AUTH)
