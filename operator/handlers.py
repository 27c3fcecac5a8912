"""kopf handlers: each one reads like a list of steps and calls the pure reconcile."""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from zot_registry.tuning import env_seconds

from .crd import GROUP, PLURAL, VERSION
from .kube import Kube
from .reconcile import reconcile
from .status import as_patch, removing_left_out_keys, status_changed

# How often each ZotCluster is checked for drift and member health. The tests shorten it, so that
# "two checks changed nothing" takes seconds, not half a minute.
RESYNC_SECONDS = env_seconds("ZOT_OPERATOR_RESYNC_SECONDS", 10.0) or 10.0
# How often a membership change made in place is followed while it runs.
REBALANCE_SECONDS = env_seconds("ZOT_OPERATOR_REBALANCE_SECONDS", 1.5) or 1.5


@lru_cache(maxsize=1)
def kube() -> Kube:
    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()
    return Kube(k8s.ApiClient())


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 120
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=f"{GROUP}")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=f"{GROUP}")


# One pass at a time per ZotCluster: a timer and a change handler may fire together, and two passes
# would ask the members for the same step twice and send its event twice.
_passes: dict[str, threading.Lock] = {}
_passes_guard = threading.Lock()


def _one_pass(uid: str) -> threading.Lock:
    with _passes_guard:
        return _passes.setdefault(uid, threading.Lock())


def _converge(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger) -> None:
    def event(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)
        logger.info(f"{reason}: {message}")

    current = dict(body.get("status") or {})
    with _one_pass(str(body.metadata.uid)):
        status = removing_left_out_keys(as_patch(reconcile(kube(), dict(body), event).status), current)
    # Write status only when something observed changed: an unchanged cluster costs no writes.
    if status_changed(status, current):
        patch.status.update(status)


def _rebalancing(status: kopf.Status, **_: Any) -> bool:
    return bool(status.get("rebalance"))


def _settled(status: kopf.Status, **_: Any) -> bool:
    return not _rebalancing(status)


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
def on_change(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    _converge(body, patch, logger)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS, when=_settled)
def drift_check(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    """Put back what was edited or deleted by hand, follow pod readiness for failover."""
    _converge(body, patch, logger)


# kopf stops and starts timers as their `when` changes with the status: while a membership change runs
# in place, this one follows it closely (each step waits for the slowest member, seconds matter);
# otherwise only the drift check runs, and members are not asked anything.
@kopf.timer(GROUP, VERSION, PLURAL, interval=REBALANCE_SECONDS, when=_rebalancing)
def follow_rebalance(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    """Ask the members for the next step of a membership change as soon as they have finished this one."""
    _converge(body, patch, logger)
