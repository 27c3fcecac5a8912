"""The version is written once (registry/version.py); what must repeat it says the same."""

from __future__ import annotations

import subprocess
import sys

import yaml
from zot_operator.models import DEFAULT_IMAGE
from zot_registry.version import VERSION

from tests.support.paths import REPO_ROOT


def test_chart_and_image_carry_the_version() -> None:
    chart = yaml.safe_load((REPO_ROOT / "charts" / "zot-operator" / "Chart.yaml").read_text())
    assert chart["version"] == VERSION
    assert chart["appVersion"] == VERSION
    assert DEFAULT_IMAGE.endswith(f":{VERSION}")


def test_both_programs_print_the_version() -> None:
    for module, program in (("zot_registry.cli", "zot-registry"), ("zot_operator.cli", "zot-operator")):
        done = subprocess.run(
            [sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{program} {VERSION}"
