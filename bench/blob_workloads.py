"""The blob workloads, each run with the same client against either registry: `curl` (monolithic push,
pull to /dev/null; its own `time_total` is the time) and a small httpx client on one keep-alive
connection for the chunked push (POST, PATCH with Content-Range per chunk, following each Location,
then PUT ?digest=). Chunks are in memory first.

Every loop is bounded by a count and a subprocess timeout.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Callable

import httpx

from .servers import Server
from .workloads import BLOB_REPO, CURL_TIMEOUT, BlobFile, BlobPhase, Settings, absolute


def _curl(args: list[str]) -> list[str]:
    """Run curl with `-w` output as the last line, split on spaces."""
    done = subprocess.run(
        ["curl", "-sS", "--max-time", str(int(CURL_TIMEOUT)), *args],
        capture_output=True,
        text=True,
        timeout=CURL_TIMEOUT + 10,
    )
    if done.returncode != 0:
        raise RuntimeError(f"curl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1].split(" ")


_BODY = ["-H", "Content-Type: application/octet-stream", "-H", "Expect:"]


def _curl_to_null(server: Server, options: list[str], write_out: str, url: str) -> list[str]:
    """`_curl` of `url` with the server's access (CA, credentials) and `options`, the body to /dev/null
    and `write_out` (`-w`) as the answer."""
    return _curl([*server.access.curl_args(), *options, "-o", "/dev/null", "-w", write_out, url])


def _upload(server: Server, method: str, url: str, blob: BlobFile, what: str) -> float:
    """`method` with the whole blob as the body; curl's time, after checking for 201 and every byte sent."""
    code, seconds, sent = _curl_to_null(
        server,
        ["-X", method, *_BODY, "--data-binary", f"@{blob.path}"],
        "%{http_code} %{time_total} %{size_upload}",
        url,
    )
    if code != "201" or int(sent) != blob.size:
        raise RuntimeError(f"{server.label}: {what} answered {code} after {sent} bytes")
    return float(seconds)


def push_single_post(server: Server, blob: BlobFile) -> float:
    """POST /uploads/?digest= with the whole body. distribution 2.8.2 does not implement it (202, session)."""
    url = f"{server.base_url}/v2/{BLOB_REPO}/blobs/uploads/?digest={blob.digest}"
    return _upload(server, "POST", url, blob, "single-POST push")


def push_post_put(server: Server, blob: BlobFile) -> float:
    """Monolithic upload as clients do it everywhere: POST opens a session, PUT ?digest= sends the body."""
    code, opened, location = _curl_to_null(
        server,
        ["-X", "POST"],
        "%{http_code} %{time_total} %header{location}",
        f"{server.base_url}/v2/{BLOB_REPO}/blobs/uploads/",
    )
    if code != "202" or not location:
        raise RuntimeError(f"{server.label}: upload POST answered {code}")
    url = str(absolute(server.base_url, location).copy_merge_params({"digest": blob.digest}))
    seconds = _upload(server, "PUT", url, blob, "monolithic PUT")
    return float(opened) + seconds


def push_chunked(server: Server, blob: BlobFile, chunk_size: int, client: httpx.Client) -> float:
    """POST, then one PATCH per chunk with Content-Range (following each Location), then PUT ?digest=."""
    data = blob.path.read_bytes()
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    base = server.base_url
    started = time.perf_counter()
    answer = client.post(f"{base}/v2/{BLOB_REPO}/blobs/uploads/")
    if answer.status_code != 202:
        raise RuntimeError(f"{server.label}: upload POST answered {answer.status_code}")
    location = answer.headers["Location"]
    offset = 0
    for chunk in chunks:
        answer = client.patch(
            absolute(base, location),
            content=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            },
        )
        if answer.status_code != 202:
            raise RuntimeError(f"{server.label}: PATCH at {offset} answered {answer.status_code}: {answer.text[:200]}")
        location = answer.headers["Location"]
        offset += len(chunk)
    answer = client.put(absolute(base, location).copy_merge_params({"digest": blob.digest}))
    if answer.status_code != 201:
        raise RuntimeError(f"{server.label}: closing PUT answered {answer.status_code}: {answer.text[:200]}")
    return time.perf_counter() - started


def pull(server: Server, blob: BlobFile) -> float:
    code, seconds, received = _curl_to_null(
        server,
        [],
        "%{http_code} %{time_total} %{size_download}",
        f"{server.base_url}/v2/{BLOB_REPO}/blobs/{blob.digest}",
    )
    if code != "200" or int(received) != blob.size:
        raise RuntimeError(f"{server.label}: blob GET answered {code} with {received} bytes")
    return float(seconds)


def supports_single_post(server: Server) -> bool:
    """Whether POST /uploads/?digest= with a body completes the upload (201) rather than opening a session."""
    data = b"zot-bench single POST probe"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(timeout=30.0, **server.access.httpx_args()) as client:
        answer = client.post(
            f"{server.base_url}/v2/{BLOB_REPO}/blobs/uploads/",
            params={"digest": digest},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if answer.status_code == 202 and "Location" in answer.headers:  # cancel the session it opened
            client.delete(absolute(server.base_url, answer.headers["Location"]))
        return answer.status_code == 201


def blob_phase(server: Server, blobs: list[BlobFile], transfer: Callable[[BlobFile], float]) -> BlobPhase:
    phase = BlobPhase(bytes_each=blobs[0].size if blobs else 0)
    before = server.cpu_seconds()
    for blob in blobs:
        phase.seconds.append(transfer(blob))
    phase.cpu_seconds = server.cpu_seconds() - before
    return phase


BLOB_ROWS = ("push_single", "push_mono", "push_chunked", "pull")
PULL_ROUNDS = 4


def blob_sets(blobs: list[BlobFile], reps: int) -> dict[str, list[BlobFile]]:
    """Which blobs each blob row moves: distinct ones per push row; pulls read the monolithic ones, each
    PULL_ROUNDS times, because a pull takes only tens of milliseconds and a few samples are noisy."""
    return {
        "push_mono": blobs[:reps],
        "push_chunked": blobs[reps : 2 * reps],
        "push_single": blobs[2 * reps : 3 * reps],
        "pull": blobs[:reps] * PULL_ROUNDS,
    }


def run_blob_row(server: Server, key: str, blobs: list[BlobFile], settings: Settings) -> BlobPhase:
    """One blob row over its blobs (`pull` needs them pushed first: `push_mono` does that)."""
    if key == "push_single":
        return blob_phase(server, blobs, lambda blob: push_single_post(server, blob))
    if key == "push_mono":
        return blob_phase(server, blobs, lambda blob: push_post_put(server, blob))
    if key == "push_chunked":
        with httpx.Client(timeout=CURL_TIMEOUT, **server.access.httpx_args()) as client:
            return blob_phase(server, blobs, lambda blob: push_chunked(server, blob, settings.chunk_size, client))
    if key == "pull":
        return blob_phase(server, blobs, lambda blob: pull(server, blob))
    raise ValueError(f"unknown blob row {key!r}")
