"""Periodic sync (zot's `pollInterval` with `content`): every interval, the upstream's catalog,
filtered by the content rules; for each repository its tags, filtered by the rule's `tags`; each
tag brought up to date under its local name (`destination`, `stripPrefix`).

One worker of a member runs the passes: the one holding the member's periodic lock file for that
registry (a worker that dies releases it and another takes over at its next try). In a cluster a
member syncs only the repositories whose local name it owns, so with `destination` or
`stripPrefix` an image still lands on the member that serves it (zot hashes the upstream name).

A pass that fails (the upstream's catalog cannot be read) is tried again after `retryDelay`,
doubling up to the poll interval (zot backs off up to it too); a repository or tag that fails is
counted, logged, and tried again at the next pass, without stopping the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import RegistryError
from . import status
from .ondemand import ImageSync, SyncSource
from .upstream import UpstreamError

log = logging.getLogger("zot_registry.sync")

FIRST_RETRY = 1.0


class Periodic:
    def __init__(self, sources: list[SyncSource], images: ImageSync, lock_directory: Path) -> None:
        self.sources = [s for s in sources if s.poll_interval > 0 and not s.rules.covers_everything]
        self.images = images
        self.lock_directory = lock_directory
        self.owns: Callable[[str], bool] = lambda _: True

    @property
    def enabled(self) -> bool:
        return bool(self.sources)

    async def run(self) -> None:
        """Every source's loop, until cancelled."""
        await asyncio.gather(*(self._loop(index, source) for index, source in enumerate(self.sources)))

    async def _loop(self, index: int, source: SyncSource) -> None:
        path = self.lock_directory / f"periodic-{index}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while not _try_lock(fd):
                await asyncio.sleep(source.poll_interval)  # another worker runs this registry's passes
            failures = 0
            while True:
                try:
                    await self.sync_pass(source)
                    failures = 0
                    delay = source.poll_interval
                except (UpstreamError, RegistryError, OSError) as err:
                    status.failed(source.name)
                    failures += 1
                    first = source.retry_delay or FIRST_RETRY
                    delay = min(source.poll_interval, first * 2 ** (failures - 1))
                    log.warning(
                        "sync: periodic pass failed",
                        extra={"upstream": source.name, "error": str(err), "retry_in_seconds": delay},
                    )
                await asyncio.sleep(delay)
        finally:
            os.close(fd)  # releases the lock

    async def sync_pass(self, source: SyncSource) -> int:
        """One pass over the upstream's catalog; returns how many tags were brought up to date."""
        synced = 0
        for remote in await source.upstream.catalog():
            local = source.rules.local_name(remote)
            if local is None or not self.owns(local):
                continue
            try:
                tags = source.rules.filter_tags(remote, await source.upstream.tags(remote))
            except UpstreamError as err:
                status.failed(source.name)
                log.warning("sync: tags unreadable", extra={"upstream": f"{source.name}/{remote}", "error": str(err)})
                continue
            for tag in tags:
                if await self._tag(source, local, remote, tag):
                    synced += 1
        return synced

    async def _tag(self, source: SyncSource, local: str, remote: str, tag: str) -> bool:
        outcome: list[bool] = []

        async def work() -> None:
            try:
                outcome.append(await self.images.from_source(source, local, remote, tag, "periodically"))
            except (UpstreamError, RegistryError) as err:
                status.failed(source.name)
                log.warning(
                    "sync: image not synced",
                    extra={"repository": local, "reference": tag, "upstream": source.name, "error": str(err)},
                )

        done = await self.images.merged(local, tag, source.timeout, work)
        return done and bool(outcome) and outcome[0]


def _try_lock(fd: int) -> bool:
    with contextlib.suppress(BlockingIOError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    return False
