"""Tags list, catalog and referrers: the read-only listings."""

from __future__ import annotations

import json

from quart import Response, request

from ..digests import parse_digest
from ..storage.manifests import OCI_INDEX
from ..storage.store import ImageStore
from .http import paginate
from .routing import Route


async def tags(route: Route, store: ImageStore) -> Response:
    page, headers = paginate(store.tags(route.name), f"/v2/{route.name}/tags/list")
    body = json.dumps({"name": route.name, "tags": page})
    return Response(body, status=200, headers=headers, content_type="application/json")


async def catalog(route: Route, store: ImageStore) -> Response:
    return catalog_response(store.catalog())


def catalog_response(names: list[str]) -> Response:
    page, headers = paginate(names, "/v2/_catalog")
    return Response(json.dumps({"repositories": page}), status=200, headers=headers,
                    content_type="application/json")


async def referrers(route: Route, store: ImageStore) -> Response:
    subject = parse_digest(route.arg)
    artifact_type = request.args.get("artifactType") or None
    found = store.referrers(route.name, subject, artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found})
    return Response(body, status=200, headers=headers, content_type=OCI_INDEX)
