"""`local scale` stops polling state.json at phase Running: the request's last event must be in that
same write, or the command ends without printing it (CI saw "already 5 members" go missing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from zot_operator.local import supervisor as supervisor_module
from zot_operator.local.manifest import load_manifest
from zot_operator.local.state import prepare, write_json
from zot_operator.local.supervisor import Supervisor

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "zotcluster.yaml"


def writes_seen_by_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replicas: int) -> list[dict[str, Any]]:
    """Every state.json the supervisor writes while it answers a request for `replicas` members."""
    manifest = load_manifest(str(EXAMPLE))
    supervisor = Supervisor(tmp_path, manifest, workers=1)
    supervisor.layout = prepare(tmp_path, manifest)
    supervisor.state = {"generation": 0, "phase": "Running", "members": supervisor.layout.members}
    write_json(tmp_path / "desired.json", {"replicas": replicas, "generation": 1})
    written: list[dict[str, Any]] = []

    def record(path: Path, value: dict[str, Any]) -> None:
        if path.name == "state.json":
            written.append(dict(value))
        write_json(path, value)

    monkeypatch.setattr(supervisor_module, "write_json", record)
    supervisor._scale()
    return written


def answered(written: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The writes that `local scale` takes for its answer: this request's generation, phase Running."""
    return [w for w in written if w.get("generation") == 1 and w.get("phase") == "Running"]


def test_the_same_size_is_answered_with_its_event_in_the_same_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replicas = load_manifest(str(EXAMPLE)).ref.spec.replicas
    written = writes_seen_by_scale(tmp_path, monkeypatch, replicas)
    assert answered(written), written
    for state in answered(written):
        assert state["events"] == [f"already {replicas} members: nothing to restart"]


def test_a_refused_size_is_answered_with_its_event_and_error_in_the_same_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = writes_seen_by_scale(tmp_path, monkeypatch, -1)
    assert answered(written), written
    for state in answered(written):
        assert state["error"].startswith("scale refused: spec.replicas")
        assert state["events"] == [state["error"]]
