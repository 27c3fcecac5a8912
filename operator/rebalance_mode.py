"""Which way a ZotCluster's membership changes are made: in place (the members stay up and copy the
repositories that change owner, coordinated by the operator through their control API) or by
restarting every member with the new list (nothing is copied). Pure: from the spec alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import IMAGE_REPOSITORY, ZotClusterSpec, image_repository

RESTARTS = "a membership change restarts all members together and moves no repositories"


@dataclass(frozen=True)
class RebalanceMode:
    in_place: bool
    why: str = ""  # why not in place, for the Rebalancing condition


def rebalance_mode(spec: ZotClusterSpec) -> RebalanceMode:
    """Auto is in place only where it can work: members that run this project's registry (any tag, so any
    version has the control API once it is released with it) and a CA whose key the operator holds."""
    mode = spec.rebalance.mode
    if mode == "InPlace":  # the model refuses it with tls mode secret
        return RebalanceMode(True)
    if mode == "Restart":
        return RebalanceMode(False, "spec.rebalance.mode is Restart")
    if image_repository(spec.image) != IMAGE_REPOSITORY:
        return RebalanceMode(
            False, f"the members run {spec.image}, not this project's image {IMAGE_REPOSITORY}: no control API to use"
        )
    if spec.tls.mode != "managed":
        return RebalanceMode(False, "tls mode is secret: the operator holds no CA key to authenticate to the members")
    return RebalanceMode(True)
