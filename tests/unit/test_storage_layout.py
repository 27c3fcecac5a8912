"""The pieces both stores share keep the wire formats real zot members and older members read.

One relative layout: the local store's paths and the S3 store's keys name the same entries. An S3
upload session's state object (s3/uploads.py UploadState) is written with the keys and in the
order it always had, and reads what was written before it was a class.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from zot_registry.digests import Digest
from zot_registry.errors import BlobUploadUnknown
from zot_registry.storage.local.layout import LocalLayout
from zot_registry.storage.s3.client import S3Bucket, S3Settings
from zot_registry.storage.s3.keys import S3Keys
from zot_registry.storage.s3.uploads import Claim, UploadState

DIGEST = Digest("sha256", "a" * 64)
SESSION = "0" * 32


def _keys(root: str) -> S3Keys:
    return S3Keys(S3Bucket(S3Settings("bucket", root, "us-east-1", None, True, None, None)))


@pytest.mark.parametrize("root", ["zot", ""])
def test_s3_keys_and_local_paths_are_the_same_layout(tmp_path: Path, root: str) -> None:
    keys, paths = _keys(root), LocalLayout(tmp_path)
    prefix = f"{root}/" if root else ""
    expected = {
        keys.repo("a/b"): "a/b",
        keys.index("a/b"): "a/b/index.json",
        keys.oci_layout("a/b"): "a/b/oci-layout",
        keys.blob("a/b", DIGEST): f"a/b/blobs/sha256/{'a' * 64}",
        keys.upload("a/b", SESSION): f"a/b/.uploads/{SESSION}",
        keys.upload("a/b", SESSION, ".tail-7"): f"a/b/.uploads/{SESSION}.tail-7",
        keys.dedupe_blob(DIGEST): f".dedupe/blobs/sha256/{'a' * 64}",
        keys.prefix(keys.blobs("a/b")): "a/b/blobs/",
        keys.prefix(keys.uploads("a/b")): "a/b/.uploads/",
        keys.prefix(keys.dedupe_blobs()): ".dedupe/blobs/",
    }
    assert expected == {key: key.removeprefix(prefix) for key in expected}
    assert all(key.startswith(prefix) for key in expected)
    assert paths.blob("a/b", DIGEST) == tmp_path / "a" / "b" / "blobs" / "sha256" / ("a" * 64)
    assert paths.upload("a/b", SESSION) == tmp_path / "a/b/.uploads" / SESSION
    assert paths.lock("a/b") == tmp_path / "a/b/.uploads/.index.lock"
    assert paths.dedupe_blob(DIGEST) == tmp_path / ".dedupe/blobs/sha256" / ("a" * 64)
    assert paths.gc_lock() == tmp_path / ".gc.lock"


def test_a_new_session_state_is_written_as_before() -> None:
    state = UploadState(started=1700000000.5)
    assert state.serialised() == b'{"upload": null, "parts": [], "size": 0, "tail": 0, "started": 1700000000.5}'


def test_a_session_state_round_trips_with_its_claim_last_and_unknown_keys_kept() -> None:
    raw = (
        b'{"upload": "u-1", "parts": [[1, "\\"e1\\""], [2, "\\"e2\\""]], "size": 10485760, "tail": 3, '
        b'"started": 1.0, "future": {"x": 1}, "claim": {"at": 2.0, "by": "abc"}}'
    )
    state = UploadState.parse(raw, SESSION)
    assert state.upload == "u-1" and state.parts == [(1, '"e1"'), (2, '"e2"')]
    assert (state.size, state.tail, state.started, state.claim) == (10485760, 3, 1.0, Claim(2.0, "abc"))
    assert state.serialised() == raw
    document = json.loads(state.serialised())
    assert list(document) == ["upload", "parts", "size", "tail", "started", "future", "claim"]


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[1]",
        b'{"upload": null}',
        b'{"upload": 1, "parts": [], "size": 0, "tail": 0}',
        b'{"upload": null, "parts": [], "size": "0", "tail": 0}',
    ],
)
def test_a_damaged_session_state_is_an_unknown_upload(raw: bytes) -> None:
    with pytest.raises(BlobUploadUnknown, match="damaged"):
        UploadState.parse(raw, SESSION)
