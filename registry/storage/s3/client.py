"""One S3 bucket, as the store needs it: objects by key, ranged streams, multipart uploads, listings.

Built on aiobotocore. Settings come from zot's `storage.storageDriver` (name s3). The client is
created lazily inside the running event loop: hypercorn forks its workers after the app is built,
and each worker has its own loop. Every botocore failure becomes StorageUnavailable (503), so a
bucket that is down fails the request cleanly instead of a 500 with a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from ...errors import RegistryError, StorageUnavailable

# S3 refuses parts under 5 MiB (except the last) and copies over 5 GiB in one request.
MIN_PART_SIZE = 5 << 20
MAX_SINGLE_COPY = 5 << 30
COPY_PART_SIZE = 1 << 30
READ_CHUNK = 1 << 20
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    root: str  # key prefix, zot's `rootdirectory` without its slashes
    region: str
    endpoint: str | None
    verify: bool
    access_key: str | None
    secret_key: str | None

    @classmethod
    def from_driver(cls, driver: dict[str, Any]) -> S3Settings:
        """zot's driver keys (lower case, as in its docs); credentials fall back to the AWS environment."""
        bucket = driver.get("bucket")
        if not bucket:
            raise ValueError("storage.storageDriver.bucket is required for the s3 driver")
        endpoint = driver.get("regionendpoint") or None
        secure = driver.get("secure", True) is not False
        if endpoint and "://" not in endpoint:
            endpoint = f"{'https' if secure else 'http'}://{endpoint}"
        return cls(
            bucket=str(bucket),
            root=str(driver.get("rootdirectory") or "").strip("/"),
            region=str(driver.get("region") or os.environ.get("AWS_REGION") or "us-east-1"),
            endpoint=endpoint,
            verify=not driver.get("skipverify", False),
            access_key=driver.get("accesskey") or None,
            secret_key=driver.get("secretkey") or None,
        )


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: float  # seconds since the epoch


def _missing(err: ClientError) -> bool:
    error = err.response.get("Error", {})
    status = str(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return error.get("Code") in _MISSING or status == "404"


class S3Bucket:
    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.name = settings.bucket
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._opening = asyncio.Lock()

    def key(self, *parts: str) -> str:
        """The object key of a path under rootdirectory; a last part "" makes it a prefix ending in "/"."""
        joined = "/".join(p for p in (self.settings.root, *parts) if p)
        return joined + "/" if parts and parts[-1] == "" and joined else joined

    def _unavailable(self, action: str, err: Exception) -> RegistryError:
        where = self.settings.endpoint or "AWS S3"
        return StorageUnavailable(f"S3 {action} failed on bucket {self.name!r} at {where}: {err}")

    async def client(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._opening:
            if self._client is None:
                settings = self.settings
                config = BotoConfig(
                    max_pool_connections=64,
                    retries={"max_attempts": 3, "mode": "standard"},
                    # Path-style addressing and no default checksums: what S3-compatible servers accept.
                    s3={"addressing_style": "path"} if settings.endpoint else {},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                stack = AsyncExitStack()
                self._client = await stack.enter_async_context(
                    get_session().create_client(
                        "s3",
                        region_name=settings.region,
                        endpoint_url=settings.endpoint,
                        verify=settings.verify,
                        aws_access_key_id=settings.access_key,
                        aws_secret_access_key=settings.secret_key,
                        config=config,
                    )
                )
                try:
                    await self._ensure_bucket()
                except BaseException:
                    await stack.aclose()
                    self._client = None
                    raise
                self._stack = stack
        return self._client

    async def _ensure_bucket(self) -> None:
        """Creates the bucket on first use when it does not exist (as zot's S3 driver expects one to)."""
        try:
            await self._client.head_bucket(Bucket=self.name)
            return
        except ClientError as err:
            if not _missing(err):
                raise self._unavailable("head_bucket", err) from None
        except BotoCoreError as err:
            raise self._unavailable("head_bucket", err) from None
        try:
            await self._client.create_bucket(Bucket=self.name)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise self._unavailable("create_bucket", err) from None
        except BotoCoreError as err:
            raise self._unavailable("create_bucket", err) from None

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._client, self._stack = None, None

    async def _call(self, action: str, **kwargs: Any) -> Any:
        client = await self.client()
        try:
            return await getattr(client, action)(Bucket=self.name, **kwargs)
        except (BotoCoreError, ClientError) as err:
            if isinstance(err, ClientError) and _missing(err):
                raise
            raise self._unavailable(action, err) from None

    # Objects ------------------------------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo | None:
        try:
            answer = await self._call("head_object", Key=key)
        except ClientError:
            return None
        return ObjectInfo(key, int(answer["ContentLength"]), _epoch(answer.get("LastModified")))

    async def get(self, key: str) -> bytes | None:
        try:
            answer = await self._call("get_object", Key=key)
        except ClientError:
            return None
        async with answer["Body"] as body:
            data: bytes = await body.read()
        return data

    async def stream(self, key: str, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """The object's bytes from `start`, `length` of them (all when None), in pieces of about 1 MiB."""
        if length == 0:
            return
        ranged = {"Range": f"bytes={start}-{'' if length is None else start + length - 1}"} if start or length else {}
        try:
            answer = await self._call("get_object", Key=key, **ranged)
        except ClientError:
            raise self._unavailable("get_object", FileNotFoundError(key)) from None
        async with answer["Body"] as body:
            try:
                async for chunk in body.iter_chunks(READ_CHUNK):
                    yield chunk
            except (BotoCoreError, OSError) as err:
                raise self._unavailable("get_object (stream)", err) from None

    async def put(self, key: str, data: bytes) -> None:
        await self._call("put_object", Key=key, Body=data)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(ClientError):  # deleting what is gone already is fine
            await self._call("delete_object", Key=key)

    async def listing(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        client = await self.client()
        paginator = client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"], int(item["Size"]), _epoch(item.get("LastModified")))
        except (BotoCoreError, ClientError) as err:
            raise self._unavailable("list_objects_v2", err) from None

    async def copy(self, source: str, target: str, size: int) -> None:
        """Server-side copy; above S3's 5 GiB single-copy limit, as a multipart copy."""
        if size <= MAX_SINGLE_COPY:
            await self._call("copy_object", Key=target, CopySource={"Bucket": self.name, "Key": source})
            return
        upload = await self.create_multipart(target)
        parts = []
        try:
            for number, start in enumerate(range(0, size, COPY_PART_SIZE), start=1):
                end = min(start + COPY_PART_SIZE, size) - 1
                answer = await self._call(
                    "upload_part_copy",
                    Key=target,
                    UploadId=upload,
                    PartNumber=number,
                    CopySource={"Bucket": self.name, "Key": source},
                    CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append((number, answer["CopyPartResult"]["ETag"]))
            await self.complete_multipart(target, upload, parts)
        except BaseException:
            await self.abort_multipart(target, upload)
            raise

    # Multipart uploads --------------------------------------------------------------------------

    async def create_multipart(self, key: str) -> str:
        answer = await self._call("create_multipart_upload", Key=key)
        return str(answer["UploadId"])

    async def upload_part(self, key: str, upload: str, number: int, data: bytes) -> str:
        try:
            answer = await self._call("upload_part", Key=key, UploadId=upload, PartNumber=number, Body=data)
        except ClientError as err:
            raise self._unavailable("upload_part", err) from None
        return str(answer["ETag"])

    async def complete_multipart(self, key: str, upload: str, parts: list[tuple[int, str]]) -> None:
        try:
            await self._call(
                "complete_multipart_upload",
                Key=key,
                UploadId=upload,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
            )
        except ClientError as err:
            raise self._unavailable("complete_multipart_upload", err) from None

    async def abort_multipart(self, key: str, upload: str) -> None:
        with contextlib.suppress(ClientError, StorageUnavailable):
            await self._call("abort_multipart_upload", Key=key, UploadId=upload)

    async def ping(self) -> str:
        try:
            await self.client()
            await self._call("head_bucket")
        except StorageUnavailable as err:
            return err.message
        except ClientError as err:
            return f"bucket {self.name!r}: {err}"
        return ""


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else 0.0
