"""Tags list, catalog and referrers: the read-only listings."""

from __future__ import annotations

import json

from quart import Response

from ..digests import parse_digest
from ..storage.base import Store
from ..storage.manifests import OCI_INDEX
from .http import page_size, paginate
from .requests import request
from .routing import Route


async def tags(route: Route, store: Store) -> Response:
    n = page_size()
    page, headers = paginate(await store.tags(route.name), f"/v2/{route.name}/tags/list", n)
    body = json.dumps({"name": route.name, "tags": page})
    return Response(body, status=200, headers=headers, content_type="application/json")


async def catalog(route: Route, store: Store) -> Response:
    n = page_size()
    return catalog_response(await store.catalog(), n)


def catalog_response(names: list[str], n: int | None) -> Response:
    page, headers = paginate(names, "/v2/_catalog", n)
    return Response(json.dumps({"repositories": page}), status=200, headers=headers, content_type="application/json")


async def referrers(route: Route, store: Store) -> Response:
    subject = parse_digest(route.arg)
    artifact_type = request.args.get("artifactType") or None
    found = await store.referrers(route.name, subject, artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found})
    return Response(body, status=200, headers=headers, content_type=OCI_INDEX)
