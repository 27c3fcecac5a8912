"""A 1 GiB layer through on-demand sync streams: from a real upstream (distribution 2.8.2 on
loopback) into storage and out to the client, the cache's resident memory stays within 64 MiB."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx

from tests.support.images import OCI_MANIFEST, sha256
from tests.support.memory import CHUNK, GIB, LIMIT, PeakSampler, one_gib, server_rss
from tests.support.ports import free_port
from tests.support.registry import RegistryProcess, registry_config
from tests.support.upstreams import running_upstream


def test_a_one_gib_layer_synced_on_demand_stays_within_64_mib(tmp_path: Path) -> None:
    block = os.urandom(CHUNK)
    hasher = hashlib.sha256()
    for chunk in one_gib(block):
        hasher.update(chunk)
    layer = "sha256:" + hasher.hexdigest()
    config_blob = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config_blob),
                "size": len(config_blob),
            },
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": GIB}],
        }
    ).encode()
    with running_upstream("distribution2") as upstream, upstream.client(timeout=600) as up:
        for digest, body in ((layer, one_gib(block)), (sha256(config_blob), iter([config_blob]))):
            location = up.post("/v2/big/layer/blobs/uploads/").headers["Location"]
            # Location carries distribution's _state: add the digest to it, do not replace it.
            target = up.base_url.join(location).copy_merge_params({"digest": digest})
            assert up.put(target, content=body).status_code == 201
        upstream.push_manifest(up, "big/layer", "v1", manifest)
        config = registry_config(tmp_path / "root", free_port())
        config["extensions"] = {"sync": {"registries": [{"urls": [upstream.url], "onDemand": True}]}}
        cache = RegistryProcess(tmp_path / "config.json", config, tmp_path / "registry.log", workers=1).start()
        with cache, httpx.Client(base_url=cache.url, timeout=600) as http:
            assert cache.process is not None
            http.get("/v2/")
            baseline = server_rss(cache.process.pid)
            with PeakSampler(cache.process.pid) as sync:
                answer = http.get("/v2/big/layer/manifests/v1", headers={"Accept": OCI_MANIFEST})
                assert answer.status_code == 200, answer.text
            pulled, size = hashlib.sha256(), 0
            with PeakSampler(cache.process.pid) as pull, http.stream("GET", f"/v2/big/layer/blobs/{layer}") as blob:
                assert blob.status_code == 200
                for chunk in blob.iter_raw(CHUNK):
                    pulled.update(chunk)
                    size += len(chunk)
            assert size == GIB and "sha256:" + pulled.hexdigest() == layer
    growth = max(sync.peak, pull.peak) - baseline
    print(f"baseline RSS {baseline >> 20} MiB, sync peak {sync.peak >> 20} MiB, pull peak {pull.peak >> 20} MiB")
    assert growth < LIMIT, f"resident memory grew by {growth >> 20} MiB syncing 1 GiB"
