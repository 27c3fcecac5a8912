"""The DynamoDB cache driver (zot's `cacheDriver: {name: dynamodb, endpoint, region, *tablename}`).

Tables, by zot's names (lower-cased by the config loader, as zot's viper does):
- `cachetablename` (ZotBlobTable): one item per digest, key `Digest`, with the string set `Repos`
  of its holders, changed by ADD/DELETE update expressions so concurrent writers never lose one;
  locks live here too, as items keyed `lock:<key>` written with a condition (absent or expired)
  and deleted only by their owner;
- `repometatablename` (ZotRepoMetadataTable): one item per repository, key `RepoName`, with its
  metadata as JSON; a scan of it is the catalog.
Missing tables are created on first use (on-demand billing), as zot does. zot's other table names
(imageMeta, repoBlobsInfo, userData, version, apiKey) are accepted and unused: nothing here needs them.

Credentials come from botocore's usual chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, an
instance role); none is invented here. A local DynamoDB-compatible server such as dynalite checks
only that requests are signed, so any pair works against it.

Lock expiry compares wall clocks of different hosts (DynamoDB has no server-side time): keep members'
clocks in sync (NTP) well within a lock's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import CacheUnavailable, RegistryError

DEFAULT_TABLES = {"cachetablename": "ZotBlobTable", "repometatablename": "ZotRepoMetadataTable"}
TABLE_READY_SECONDS = 60.0


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


class DynamoDBCache:
    name = "dynamodb"

    def __init__(self, endpoint: str | None, region: str, blob_table: str, repo_table: str) -> None:
        self.endpoint = endpoint
        self.region = region
        self.blob_table = blob_table
        self.repo_table = repo_table
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._opening = asyncio.Lock()

    @classmethod
    def from_driver(cls, driver: dict[str, Any]) -> DynamoDBCache:
        # The config loader lower-cases keys as zot's viper does; a dict straight from zot's JSON
        # (cacheTablename) must name the same tables rather than fall back to the defaults.
        driver = {str(k).lower(): v for k, v in driver.items()}
        return cls(
            driver.get("endpoint") or None,
            str(driver.get("region") or "us-east-1"),
            str(driver.get("cachetablename") or DEFAULT_TABLES["cachetablename"]),
            str(driver.get("repometatablename") or DEFAULT_TABLES["repometatablename"]),
        )

    def _unavailable(self, what: str, err: Exception) -> RegistryError:
        return CacheUnavailable(f"dynamodb cache at {self.endpoint or 'AWS'}: {what} failed: {err}")

    async def client(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._opening:
            if self._client is None:
                stack = AsyncExitStack()
                client = await stack.enter_async_context(
                    get_session().create_client(
                        "dynamodb",
                        region_name=self.region,
                        endpoint_url=self.endpoint,
                        config=BotoConfig(
                            retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=10
                        ),
                    )
                )
                try:
                    for table, key in ((self.blob_table, "Digest"), (self.repo_table, "RepoName")):
                        await self._ensure_table(client, table, key)
                except BaseException:
                    await stack.aclose()
                    raise
                self._client, self._stack = client, stack
        return self._client

    async def _ensure_table(self, client: Any, table: str, key: str) -> None:
        try:
            await client.create_table(
                TableName=table,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            )
        except ClientError as err:
            if _code(err) != "ResourceInUseException":  # it exists, or another member is creating it
                raise self._unavailable(f"create table {table}", err) from None
        except BotoCoreError as err:
            raise self._unavailable(f"create table {table}", err) from None
        deadline = time.monotonic() + TABLE_READY_SECONDS
        while True:
            try:
                status = (await client.describe_table(TableName=table))["Table"]["TableStatus"]
            except (BotoCoreError, ClientError) as err:
                raise self._unavailable(f"describe table {table}", err) from None
            if status == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise CacheUnavailable(f"dynamodb table {table} not ACTIVE after {TABLE_READY_SECONDS:g}s")
            await asyncio.sleep(0.1)

    async def _call(self, action: str, **kwargs: Any) -> Any:
        client = await self.client()
        try:
            return await getattr(client, action)(**kwargs)
        except ClientError as err:
            if _code(err) == "ConditionalCheckFailedException":
                raise
            raise self._unavailable(action, err) from None
        except BotoCoreError as err:
            raise self._unavailable(action, err) from None

    # Dedupe index -------------------------------------------------------------------------------

    async def add_blob_holder(self, digest: str, repo: str) -> None:
        await self._call(
            "update_item",
            TableName=self.blob_table,
            Key={"Digest": {"S": digest}},
            UpdateExpression="ADD Repos :r",
            ExpressionAttributeValues={":r": {"SS": [repo]}},
        )

    async def remove_blob_holder(self, digest: str, repo: str) -> int:
        answer = await self._call(
            "update_item",
            TableName=self.blob_table,
            Key={"Digest": {"S": digest}},
            UpdateExpression="DELETE Repos :r",
            ExpressionAttributeValues={":r": {"SS": [repo]}},
            ReturnValues="ALL_NEW",
        )
        return len(answer.get("Attributes", {}).get("Repos", {}).get("SS", []))

    async def blob_holders(self, digest: str) -> set[str]:
        answer = await self._call(
            "get_item", TableName=self.blob_table, Key={"Digest": {"S": digest}}, ConsistentRead=True
        )
        return set(answer.get("Item", {}).get("Repos", {}).get("SS", []))

    # Repository metadata ------------------------------------------------------------------------

    async def put_repo_meta(self, repo: str, meta: dict[str, Any]) -> None:
        await self._call(
            "put_item", TableName=self.repo_table, Item={"RepoName": {"S": repo}, "Meta": {"S": json.dumps(meta)}}
        )

    async def get_repo_meta(self, repo: str) -> dict[str, Any] | None:
        answer = await self._call(
            "get_item", TableName=self.repo_table, Key={"RepoName": {"S": repo}}, ConsistentRead=True
        )
        item = answer.get("Item")
        return json.loads(item["Meta"]["S"]) if item else None

    async def delete_repo_meta(self, repo: str) -> None:
        await self._call("delete_item", TableName=self.repo_table, Key={"RepoName": {"S": repo}})

    async def repositories(self) -> list[str]:
        names: list[str] = []
        start: dict[str, Any] | None = None
        while True:
            extra = {"ExclusiveStartKey": start} if start else {}
            page = await self._call(
                "scan", TableName=self.repo_table, ProjectionExpression="RepoName", ConsistentRead=True, **extra
            )
            names.extend(item["RepoName"]["S"] for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return sorted(names)

    # Locks --------------------------------------------------------------------------------------

    @asynccontextmanager
    async def lock(self, key: str, timeout: float = 30.0) -> AsyncIterator[None]:
        item_key = {"Digest": {"S": f"lock:{key}"}}
        owner = uuid.uuid4().hex
        await self.client()  # made first: its setup must not eat into the expiry written below
        deadline = time.monotonic() + timeout
        while True:
            now = time.time()
            try:
                # Names through placeholders: OWNER is one of DynamoDB's reserved words.
                await self._call(
                    "put_item",
                    TableName=self.blob_table,
                    Item={**item_key, "LockOwner": {"S": owner}, "LockExpires": {"N": f"{now + timeout:.3f}"}},
                    ConditionExpression="attribute_not_exists(#k) OR #e < :now",
                    ExpressionAttributeNames={"#k": "Digest", "#e": "LockExpires"},
                    ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}},
                )
                break
            except ClientError:  # held by someone else, and not expired
                if time.monotonic() > deadline:
                    raise CacheUnavailable(f"lock {key!r} still held by another member after {timeout:g}s") from None
                await asyncio.sleep(0.02)
        try:
            yield
        finally:
            # Not ours any more (expired and taken), or the table is unreachable: the expiry frees it.
            with contextlib.suppress(ClientError, CacheUnavailable):
                await self._call(
                    "delete_item",
                    TableName=self.blob_table,
                    Key=item_key,
                    ConditionExpression="#o = :me",
                    ExpressionAttributeNames={"#o": "LockOwner"},
                    ExpressionAttributeValues={":me": {"S": owner}},
                )

    async def ping(self) -> str:
        try:
            await self._call("describe_table", TableName=self.blob_table)
        except CacheUnavailable as err:
            return err.message
        return ""

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._client, self._stack = None, None
