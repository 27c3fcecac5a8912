"""kopf handlers: each one reads like a list of steps and calls the pure reconcile."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from zot_registry.tuning import env_seconds

from .crd import GROUP, PLURAL, VERSION
from .kube import Kube, is_subset
from .reconcile import reconcile
from .status import as_patch

# How often each ZotCluster is checked for drift and member health. The tests shorten it, so that
# "two checks changed nothing" takes seconds, not half a minute.
RESYNC_SECONDS = env_seconds("ZOT_OPERATOR_RESYNC_SECONDS", 10.0) or 10.0


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


def _converge(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger) -> None:
    def event(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)
        logger.info(f"{reason}: {message}")

    status = as_patch(reconcile(kube(), dict(body), event).status)
    current = dict(body.get("status") or {})
    # Write status only when something observed changed: an unchanged cluster costs no writes.
    if not (is_subset(status, current) and is_subset(current, status)):
        patch.status.update(status)


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
def on_change(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    _converge(body, patch, logger)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def drift_check(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    """Put back what was edited or deleted by hand, follow pod readiness for failover."""
    _converge(body, patch, logger)
