"""Real upstream registries on loopback, for the sync extension's tests: Debian's distribution 2.8.2
(`/usr/bin/docker-registry`, hack/install-apt.sh) and, when it was built, distribution 3.x
(`.tools/bin/distribution3`, hack/install-go-tools.sh).

Each runs in a temporary folder on a free 127.0.0.1 port, in its own process group that dies with the
test process, optionally with TLS (a throwaway CA; optionally requiring client certificates of it) and
optionally with htpasswd Basic auth (bcrypt). `running_upstream` yields an `UpstreamRegistry` with:

- `url`, `hostport`, `ca` (the CA file), `cert_dir` (a zot certDir: `ca.crt`, and `client.cert` /
  `client.key` when client certificates are required), `credentials`;
- `push_image` / `push`: an image pushed over HTTP as distribution takes it (POST, then a monolithic
  PUT ?digest= per blob, then the manifest; distribution has no single-POST upload);
- `requests_log()` / `mark()` / `requests_since()`: the requests the registry received, from its
  access log. Both versions write one Apache "combined" line per request to stdout
  (`log.accesslog.disabled: false`, gorilla's CombinedLoggingHandler around every handler), for
  every status, 401s and unknown routes included; the JSON/text "response completed" line of the
  application log is written for 2xx and 3xx only, so it would miss refusals. A line is written just
  after the response was sent, so `requests_since` first sends a marker request of its own and waits
  for its line (left out of the result): every request answered before it has been logged by then.

Bearer token auth is not offered: it needs a token server (e.g. cesanta/docker_auth), and none is
installed here; the tests leave the Bearer path of the client untested against a real server.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import bcrypt
import httpx
from zot_registry.certs import make_ca, make_client_cert, make_server_cert

from tests.support.images import OCI_MANIFEST, Image, make_image, sha256
from tests.support.paths import TOOLS_BIN
from tests.support.ports import free_port
from tests.support.process_groups import die_with_parent, tail

Kind = Literal["distribution2", "distribution3"]
KINDS: tuple[Kind, ...] = ("distribution2", "distribution3")
BINARIES: dict[Kind, Path] = {
    "distribution2": Path("/usr/bin/docker-registry"),
    "distribution3": TOOLS_BIN / "distribution3",
}
USER, PASSWORD = "sync-user", "sync-password"
BCRYPT_COST = 5
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_TIMEOUT = 10.0
# distribution 3 exports traces to https://localhost:4318 by default, logging an error per request.
ENV = {"OTEL_TRACES_EXPORTER": "none"}
MARKER_PARAM = "upstreams-marker"
# 127.0.0.1 - - [03/Dec/2025:13:47:00 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "python-httpx/0.27"
_ACCESS_LINE = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) (?P<size>\d+|-)'
)


def missing(kind: Kind) -> str | None:
    """Why `kind` cannot be started here, or None when its binary is installed."""
    binary = BINARIES[kind]
    if binary.is_file() and os.access(binary, os.X_OK):
        return None
    installer = "hack/install-apt.sh" if kind == "distribution2" else "hack/install-go-tools.sh (make tools)"
    return f"{kind}: {binary} is not installed ({installer})"


@dataclass(frozen=True)
class LoggedRequest:
    """One access log line: the method, the request URI as sent (path and query), the status."""

    method: str
    uri: str
    status: int
    size: int

    @property
    def path(self) -> str:
        return self.uri.split("?", 1)[0]


def parse_access_log(text: str) -> list[LoggedRequest]:
    found = []
    for line in text.splitlines():
        match = _ACCESS_LINE.match(line)
        if match:
            size = match["size"]
            found.append(
                LoggedRequest(match["method"], match["uri"], int(match["status"]), 0 if size == "-" else int(size))
            )
    return found


@dataclass
class UpstreamRegistry:
    kind: Kind
    port: int
    folder: Path
    process: subprocess.Popen[bytes]
    access_log: Path
    log: Path
    ca: Path | None = None
    cert_dir: Path | None = None
    credentials: tuple[str, str] | None = None
    client_cert: tuple[Path, Path] | None = None  # (cert, key) the registry requires, when it does
    _markers: int = field(default=0, repr=False)

    @property
    def scheme(self) -> str:
        return "https" if self.ca is not None else "http"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.hostport}"

    @property
    def root(self) -> Path:
        return self.folder / "data"

    def client(self, timeout: float = 60.0) -> httpx.Client:
        """An httpx client of the registry with its trust, client certificate and credentials."""
        verify: ssl.SSLContext | bool = True
        if self.ca is not None:
            verify = ssl.create_default_context(cafile=str(self.ca))
            if self.client_cert:
                verify.load_cert_chain(str(self.client_cert[0]), str(self.client_cert[1]))
        return httpx.Client(base_url=self.url, verify=verify, auth=self.credentials, timeout=timeout)

    # Pushing -----------------------------------------------------------------------------------

    def push_blob(self, http: httpx.Client, repo: str, blob: bytes) -> str:
        digest = sha256(blob)
        started = http.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, f"{self.kind} POST upload: {started.status_code} {started.text}"
        location = started.headers["Location"]
        # Appended by hand: httpx's params= would replace the session's own query (_state=...).
        target = f"{location}{'&' if '?' in location else '?'}digest={digest}"
        done = http.put(target, content=blob, headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, f"{self.kind} PUT blob: {done.status_code} {done.text}"
        return digest

    def push_manifest(
        self, http: httpx.Client, repo: str, reference: str, manifest: bytes, media_type: str = OCI_MANIFEST
    ) -> str:
        response = http.put(f"/v2/{repo}/manifests/{reference}", content=manifest, headers={"Content-Type": media_type})
        assert response.status_code == 201, f"{self.kind} PUT manifest: {response.status_code} {response.text}"
        return sha256(manifest)

    def push(self, repo: str, image: Image, tag: str | None = None, tags: tuple[str, ...] = ()) -> str:
        """`image` under `tag` (and every name in `tags`; by digest alone when neither); its digest."""
        with self.client() as http:
            for blob in [image.config, *image.layers]:
                self.push_blob(http, repo, blob)
            references = [*([tag] if tag else []), *tags] or [image.digest]
            for reference in references:
                self.push_manifest(http, repo, reference, image.manifest)
        return image.digest

    def push_image(
        self,
        repo: str,
        tag: str | None = "latest",
        layer_sizes: tuple[int, ...] = (1024, 2048),
        seed: str | None = None,
    ) -> str:
        """A small image of random content (or `seed`'s) pushed to `repo:tag`; its manifest digest."""
        return self.push(repo, make_image(seed or secrets.token_hex(8), layer_sizes), tag)

    # What the registry received --------------------------------------------------------------------

    def requests_log(self) -> list[LoggedRequest]:
        """Every request logged so far, marker requests left out (may lag the last answers: see
        `requests_since`)."""
        text = self.access_log.read_text(errors="replace") if self.access_log.exists() else ""
        return [r for r in parse_access_log(text) if MARKER_PARAM not in r.uri]

    def mark(self) -> int:
        """A position in the log for `requests_since`: everything logged so far (markers included)."""
        return len(self._settled())

    def requests_since(self, mark: int = 0) -> list[LoggedRequest]:
        """The requests received after `mark` (a `mark()` value; 0: since start) and answered before this
        call, marker requests left out."""
        return [r for r in self._settled()[mark:] if MARKER_PARAM not in r.uri]

    def _settled(self) -> list[LoggedRequest]:
        """The whole log once a marker request sent now has been logged (bounded wait)."""
        self._markers += 1
        marker = f"{MARKER_PARAM}={os.getpid()}-{self._markers}"
        with self.client(timeout=10) as http:
            http.get(f"/v2/?{marker}")  # 200 or 401: logged either way
        deadline = time.monotonic() + LOG_TIMEOUT
        while True:
            logged = parse_access_log(self.access_log.read_text(errors="replace"))
            if any(marker in r.uri for r in logged):
                return logged
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.kind}: marker {marker} not in the access log after {LOG_TIMEOUT}s")
            time.sleep(0.02)

    # Process -------------------------------------------------------------------------------------

    def log_tail(self) -> str:
        return tail(self.log)

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after STOP_TIMEOUT (the group id is the leader's pid,
        not reusable before it is reaped, so only ours is hit)."""
        proc = self.process
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait(STOP_TIMEOUT)


def _config(
    folder: Path, port: int, tls: tuple[Path, Path] | None, client_ca: Path | None, htpasswd: Path | None
) -> Path:
    """distribution's YAML (the same keys in 2.8 and 3.x): the access log on, the app log at info."""
    text = f"""version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {folder / "data"}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
  secret: upstream-test-not-a-secret
"""
    if tls:
        text += f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n"
        if client_ca:
            text += f"    clientcas:\n      - {client_ca}\n"
    if htpasswd:
        text += f"auth:\n  htpasswd:\n    realm: upstream-test\n    path: {htpasswd}\n"
    path = folder / "config.yml"
    path.write_text(text)
    return path


def _wait_ready(upstream: UpstreamRegistry) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with upstream.client(timeout=2) as http:
        while True:
            if upstream.process.poll() is not None:
                raise RuntimeError(f"{upstream.kind} exited with {upstream.process.returncode}:\n{upstream.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if http.get("/v2/").status_code in (200, 401):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{upstream.kind} did not answer /v2/ in {START_TIMEOUT}s:\n{upstream.log_tail()}")
            time.sleep(0.05)


@contextlib.contextmanager
def running_upstream(
    kind: Kind = "distribution2",
    *,
    tls: bool = False,
    client_certs: bool = False,
    htpasswd: bool = False,
    folder: Path | None = None,
) -> Iterator[UpstreamRegistry]:
    """`kind` serving on a free 127.0.0.1 port until the block ends (then stopped, its folder removed
    unless `folder` was given). `client_certs` (implies TLS): the registry requires a client
    certificate of its CA, which `cert_dir` holds as client.cert / client.key."""
    reason = missing(kind)
    if reason:
        raise RuntimeError(reason)
    tls = tls or client_certs
    own_folder = folder is None
    workdir = folder or Path(tempfile.mkdtemp(prefix=f"zot-upstream-{kind}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        ca_path = cert_dir = None
        server_files = client_cert = None
        if tls:
            secret = workdir / "tls"
            secret.mkdir()
            ca = make_ca(f"upstream {kind} test CA")
            server = make_server_cert(ca, ["127.0.0.1"])
            ca_path = secret / "ca.crt"
            ca_path.write_bytes(ca.cert_pem)
            server_files = (secret / "server.crt", secret / "server.key")
            server_files[0].write_bytes(server.cert_pem)
            server_files[1].write_bytes(server.key_pem)
            cert_dir = workdir / "certs.d"
            cert_dir.mkdir()
            shutil.copy(ca_path, cert_dir / "ca.crt")
            if client_certs:
                client = make_client_cert(ca, "sync-client")
                client_cert = (cert_dir / "client.cert", cert_dir / "client.key")
                client_cert[0].write_bytes(client.cert_pem)
                client_cert[1].write_bytes(client.key_pem)
        htpasswd_path = None
        if htpasswd:
            htpasswd_path = workdir / "htpasswd"
            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()
            htpasswd_path.write_text(f"{USER}:{hashed}\n")
        port = free_port()
        config = _config(workdir, port, server_files, ca_path if client_certs else None, htpasswd_path)
        access_log, log = workdir / "access.log", workdir / "registry.log"
        with access_log.open("ab") as out, log.open("ab") as err:
            process = subprocess.Popen(
                [str(BINARIES[kind]), "serve", str(config)],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,  # the access log
                stderr=err,  # the application log
                env={**os.environ, **ENV},
                start_new_session=True,  # its own process group, stopped as a whole
                preexec_fn=die_with_parent,  # SIGKILL when the thread that started it dies
            )
        upstream = UpstreamRegistry(
            kind,
            port,
            workdir,
            process,
            access_log,
            log,
            ca=ca_path,
            cert_dir=cert_dir,
            credentials=(USER, PASSWORD) if htpasswd else None,
            client_cert=client_cert,
        )
        try:
            _wait_ready(upstream)
            yield upstream
        finally:
            upstream.stop()
    finally:
        if own_folder:
            shutil.rmtree(workdir, ignore_errors=True)
