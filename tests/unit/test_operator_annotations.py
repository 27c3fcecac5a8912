"""The ZotCluster's annotations without an API server: `paused` stops every change and says so, `restartedAt`
goes into the pod template (and out of it with the annotation)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from zot_operator.annotations import PAUSED_ANNOTATION, RESTARTED_AT_ANNOTATION, paused
from zot_operator.member_control import MemberApi
from zot_operator.reconcile import reconcile
from zot_operator.status import as_patch
from zot_registry.certs import KeyPair

from tests.support.memory_kube import MemoryKube

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)


def no_members(ca: KeyPair) -> MemberApi:
    raise AssertionError("a member was asked something")


def cluster(
    status: dict[str, Any] | None = None, generation: int = 1, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "demo",
            "namespace": "default",
            "uid": "u-1",
            "generation": generation,
            "annotations": annotations or {},
        },
        "spec": {"replicas": 3},
        "status": status or {},
    }


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def __call__(self, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


def run(kube: MemoryKube, body: dict[str, Any], events: Recorder) -> dict[str, Any]:
    return as_patch(reconcile(kube, body, events, NOW, connect=no_members).status)


PAUSE = {PAUSED_ANNOTATION: "true"}


@pytest.mark.parametrize(
    ("value", "pauses"),
    [("true", True), ("True", True), (" true ", True), ("false", False), ("yes", False), ("", False)],
)
def test_only_true_pauses(value: str, pauses: bool) -> None:
    assert paused({"annotations": {PAUSED_ANNOTATION: value}}) is pauses
    assert paused({}) is False and paused({"annotations": None}) is False


def test_a_paused_cluster_is_neither_read_nor_written_and_says_so_once() -> None:
    kube = MemoryKube()
    events = Recorder()
    status = run(kube, cluster(annotations=PAUSE), events)
    assert kube.objects == {} and kube.writes == 0  # a new cluster, paused from the start: nothing made
    assert status["phase"] == "Paused" and "observedGeneration" not in status
    (condition,) = status["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == ("Paused", "True", "PausedByAnnotation")
    assert PAUSED_ANNOTATION in condition["message"]
    assert run(kube, cluster(status, annotations=PAUSE), events) == status  # the next pass: the same status, no write
    assert events.reasons() == ["Paused"]


def test_pausing_keeps_the_status_as_observed_and_the_spec_waits() -> None:
    kube = MemoryKube()
    events = Recorder()
    status = run(kube, cluster(), events)
    objects, writes = {k: dict(v) for k, v in kube.objects.items()}, kube.writes
    paused_status = run(kube, cluster(status, generation=2, annotations=PAUSE), events)
    # A new generation of the spec is not acted on: observedGeneration says the one that was.
    assert paused_status["observedGeneration"] == 1 and paused_status["members"] == status["members"]
    kube.objects.pop(("Service", "default", "demo"))  # drift while paused is left as it is
    run(kube, cluster(paused_status, generation=2, annotations=PAUSE), events)
    assert kube.writes == writes and ("Service", "default", "demo") not in kube.objects

    # Removing the annotation (or any value but true) resumes: the drift is put back, the spec acted on.
    events.events.clear()
    resumed = run(kube, cluster(paused_status, generation=2, annotations={PAUSED_ANNOTATION: "false"}), events)
    assert ("Service", "default", "demo") in kube.objects and kube.objects.keys() == objects.keys()
    assert resumed["observedGeneration"] == 2 and resumed["phase"] != "Paused"
    assert "Paused" not in [c["type"] for c in resumed["conditions"]]
    assert events.reasons()[0] == "Resumed"
    run(kube, cluster(resumed, generation=2), events)
    assert events.reasons().count("Resumed") == 1


def test_a_pause_during_a_change_in_place_says_the_change_is_held() -> None:
    change = {"epoch": 2, "from": ["a"], "to": ["a", "b"], "step": "freeze", "startedAt": "2026-11-28T11:00:00Z"}
    status = run(MemoryKube(), cluster({"members": ["a"], "rebalance": change}, annotations=PAUSE), Recorder())
    (condition,) = [c for c in status["conditions"] if c["type"] == "Paused"]
    assert "held at step freeze (writes to the moving repositories wait)" in condition["message"]
    assert status["rebalance"]["step"] == "freeze"


def template_annotations(kube: MemoryKube) -> dict[str, str]:
    sts = kube.get("StatefulSet", "default", "demo")
    assert sts is not None
    return dict(sts["spec"]["template"]["metadata"]["annotations"])


def test_restarted_at_is_copied_into_the_pod_template_and_said_once() -> None:
    kube = MemoryKube()
    events = Recorder()
    status = run(kube, cluster(), events)
    assert RESTARTED_AT_ANNOTATION not in template_annotations(kube)
    restart = {RESTARTED_AT_ANNOTATION: "2026-11-28T12:00:00Z"}
    status = run(kube, cluster(status, annotations=restart), events)
    assert template_annotations(kube)[RESTARTED_AT_ANNOTATION] == "2026-11-28T12:00:00Z"
    writes = kube.writes
    run(kube, cluster(status, annotations=restart), events)
    assert kube.writes == writes  # the same value again: nothing to change
    assert events.reasons().count("RestartRequested") == 1
    # Without the annotation, the template is as rendered without it (the API server's patch removes the key).
    run(kube, cluster(status), events)
    assert RESTARTED_AT_ANNOTATION not in template_annotations(kube)
