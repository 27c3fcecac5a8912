"""The official OCI distribution-spec conformance suite (v1.1.1, built by hack/) against `zot-registry serve`."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import RegistryProcess, tool, write_htpasswd


def run_conformance(registry: RegistryProcess, report_dir: Path, auth: tuple[str, str] | None = None) -> None:
    env = {
        **os.environ,
        "OCI_ROOT_URL": registry.url,
        "OCI_NAMESPACE": "conformance/repo",
        "OCI_CROSSMOUNT_NAMESPACE": "conformance/other",
        "OCI_TEST_PULL": "1",
        "OCI_TEST_PUSH": "1",
        "OCI_TEST_CONTENT_DISCOVERY": "1",
        "OCI_TEST_CONTENT_MANAGEMENT": "1",
        "OCI_AUTOMATIC_CROSSMOUNT": "1",
        "OCI_HIDE_SKIPPED_WORKFLOWS": "0",
        "OCI_REPORT_DIR": str(report_dir),
    }
    if auth:
        env["OCI_USERNAME"], env["OCI_PASSWORD"] = auth
    report_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([tool("conformance.test")], env=env, cwd=report_dir, capture_output=True, text=True,
                            timeout=900)
    junit = ET.parse(report_dir / "junit.xml").getroot()
    suites = [junit] if junit.tag == "testsuite" else list(junit.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failures = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    failed_names = [c.get("name") for c in junit.iter("testcase") if c.find("failure") is not None
                    or c.find("error") is not None]
    print(f"conformance: {tests} specs, {failures} failures")
    assert tests > 50, f"conformance ran only {tests} specs:\n{result.stdout[-4000:]}"
    assert failures == 0 and result.returncode == 0, (
        f"conformance failures: {failed_names}\n{result.stdout[-6000:]}\n{registry.log_path.read_text()[-3000:]}")


def test_conformance_without_auth(start_registry: Callable[..., RegistryProcess], tmp_path: Path) -> None:
    run_conformance(start_registry(), tmp_path / "report")


def test_conformance_with_htpasswd(start_registry: Callable[..., RegistryProcess], tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"conformance": "s3cret!"})
    registry = start_registry(auth={"htpasswd": {"path": str(htpasswd)}})
    run_conformance(registry, tmp_path / "report", auth=("conformance", "s3cret!"))


@pytest.fixture(autouse=True)
def _needs_suite() -> None:
    # Not a skip: `make test` builds the suite first, so its absence is a broken setup.
    tool("conformance.test")
