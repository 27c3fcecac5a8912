"""The OCI distribution-spec conformance suites (built by hack/) run against a registry under test.

Two builds of the suite: the Ginkgo suite of 2023-11 (four workflows, `conformance.test`) and
upstream's rewrite of 2026-08 (`oci-conformance`); each run must pass every spec it runs.
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.support.paths import tool
from tests.support.registry import RegistryProcess


def _trust(env: dict[str, str], ca: Path | None) -> dict[str, str]:
    # Go programs read extra trusted roots from SSL_CERT_FILE.
    return {**env, "SSL_CERT_FILE": str(ca)} if ca else env


def run_conformance(
    registry: RegistryProcess,
    report_dir: Path,
    auth: tuple[str, str] | None = None,
    ca: Path | None = None,
    namespace: str = "conformance/repo",
    crossmount: str = "conformance/other",
) -> None:
    env = {
        **os.environ,
        "OCI_ROOT_URL": registry.url,
        "OCI_NAMESPACE": namespace,
        "OCI_CROSSMOUNT_NAMESPACE": crossmount,
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
    result = subprocess.run(
        [tool("conformance.test")], env=_trust(env, ca), cwd=report_dir, capture_output=True, text=True, timeout=900
    )
    assert_junit_clean(report_dir / "junit.xml", result, registry, minimum=50)


def run_current_suite(
    registry: RegistryProcess,
    results: Path,
    auth: tuple[str, str] | None = None,
    ca: Path | None = None,
    repos: tuple[str, str] = ("conformance/one", "conformance/two"),
) -> None:
    env = {
        **os.environ,
        "OCI_REGISTRY": registry.hostport,
        "OCI_TLS": "enabled" if ca else "disabled",
        "OCI_REPO1": repos[0],
        "OCI_REPO2": repos[1],
        "OCI_API_BLOBS_UPLOAD_CANCEL": "true",
        "OCI_RESULTS_DIR": str(results),
    }
    if auth:
        env["OCI_USERNAME"], env["OCI_PASSWORD"] = auth
    result = subprocess.run(
        [tool("oci-conformance")], env=_trust(env, ca), cwd=results.parent, capture_output=True, text=True, timeout=900
    )
    assert_junit_clean(results / "junit.xml", result, registry, minimum=100)


def assert_junit_clean(
    junit_path: Path, result: subprocess.CompletedProcess[str], registry: RegistryProcess, minimum: int
) -> None:
    junit = ET.parse(junit_path).getroot()
    suites = [junit] if junit.tag == "testsuite" else list(junit.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failures = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    failed_names = [
        c.get("name") for c in junit.iter("testcase") if c.find("failure") is not None or c.find("error") is not None
    ]
    print(f"conformance: {tests} specs, {failures} failures")
    assert tests > minimum, f"conformance ran only {tests} specs:\n{result.stdout[-4000:]}"
    assert failures == 0 and result.returncode == 0, (
        f"conformance failures: {failed_names}\n{result.stdout[-6000:]}\n{registry.log_path.read_text()[-3000:]}"
    )
