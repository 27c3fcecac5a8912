"""zot's layout (layout.py) as object keys under the bucket's rootdirectory prefix."""

from __future__ import annotations

from dataclasses import dataclass

from ..layout import Layout
from .client import S3Bucket


@dataclass(frozen=True)
class S3Keys(Layout[str]):
    bucket: S3Bucket

    def place(self, relative: str) -> str:
        return self.bucket.key(relative)

    @staticmethod
    def prefix(key: str) -> str:
        """A listing prefix: the keys below `key`, as a folder."""
        return key + "/"
