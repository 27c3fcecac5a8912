"""Helpers for tests on S3 storage: a member's config, and a plain S3 client to look in the bucket.

The bucket is inspected with botocore's synchronous client, not with the registry's own S3 code,
so a test that counts or reads objects does not trust the code under test.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.session import get_session
from zot_registry.local.configs import S3Storage, member_config

from tests.support.peers import S3_ACCESS_KEY, S3_SECRET_KEY, Peer
from tests.support.ports import free_port
from tests.support.registry import RegistryProcess

BUCKET = "zot-storage"
ROOT = "zot"
S3_ENV = {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}


def s3_storage(s3: Peer) -> S3Storage:
    return S3Storage(f"{s3.host}:{s3.port}", BUCKET, f"/{ROOT}", skip_verify=False)


def redis_cache(redis: Peer, prefix: str = "zot") -> dict[str, Any]:
    return {"name": "redis", "url": f"redis://{redis.host}:{redis.port}", "keyprefix": prefix}


def s3_member(
    folder: Path,
    s3: Peer,
    cache: dict[str, Any],
    host: str = "127.0.0.1",
    port: int | None = None,
    workers: int = 2,
    **storage: Any,
) -> RegistryProcess:
    """A registry process (not started) storing in the S3 server, credentials from the environment."""
    folder.mkdir(parents=True, exist_ok=True)
    config = member_config(
        folder / "root", port or free_port(host), host, s3=s3_storage(s3), cache=cache, storage=storage
    )
    return RegistryProcess(folder / "config.json", config, folder / "registry.log", workers=workers, env=dict(S3_ENV))


def s3_client(s3: Peer) -> Any:
    return get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=s3.url,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}),
    )


def list_objects(s3: Peer, prefix: str = ROOT + "/") -> dict[str, int]:
    """Every object under `prefix`, key -> size."""
    client = s3_client(s3)
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = int(item["Size"])
    return found


def read_object(s3: Peer, key: str) -> bytes:
    body: bytes = s3_client(s3).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return body


def blob_objects_not_matching_their_key(s3: Peer) -> list[str]:
    """Objects under any blobs/ folder whose content does not hash to their key (empty placeholders excepted)."""
    bad = []
    for key, size in list_objects(s3).items():
        parts = key.split("/")
        if len(parts) < 3 or parts[-3] != "blobs" or size == 0:
            continue
        if hashlib.new(parts[-2], read_object(s3, key)).hexdigest() != parts[-1]:
            bad.append(key)
    return bad
