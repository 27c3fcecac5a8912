"""The client of one upstream registry of zot's sync extension (a `registries` entry): its URL and
mirrors, TLS (tlsVerify, certDir), credentials (credentialsFile), retries (maxRetries, retryDelay)
and syncTimeout. Built on aiohttp, one pooled keep-alive session per Upstream, created in the event
loop that first uses it.

Mirrors: every call tries `urls` in order, the whole operation per URL (all pages of a listing, the
referrers API and its fallback tag come from one URL). Any UpstreamError moves on to the next URL;
when every URL failed the error raised is the most telling one: NotFound (a registry that answered
is authoritative for what it holds, so the caller answers 404 rather than 503 when another URL was
merely down), then Unauthorized, then any other answer, then Unavailable (nobody answered); the last
such error among equals. The other URLs' errors are attached as notes.

Retries: connection errors, timeouts, 429 and 5xx are tried again `max_retries` times per URL,
`retry_delay` seconds apart, before the request is Unavailable there. A body that breaks after its
headers is not retried (the caller may hold part of it): the error is Unavailable.

Authentication, per the distribution token spec. A URL is first asked `GET /v2/` once (concurrent
first calls share that one probe, a failed probe is tried again by the next call), which tells
whether it wants Basic or Bearer, so that later requests carry their authorization from the start
instead of each paying for a 401; a request that gets a 401 anyway learns its challenge and is sent
once more with authorization. Basic: the credentials for the URL's `host:port` (or `host`; for
docker.io also its aliases). Bearer: `GET realm?service=&scope=` (scope `repository:<name>:pull`, or
`registry:catalog:*`, or the challenge's own scope), with Basic credentials when there are any,
anonymously otherwise; `token` or `access_token` is cached per (URL, scope) until `expires_in`
(default and minimum 60 s, as regclient) less a margin. Concurrent requests for one scope share one
token request. Credentials are never sent to another host than their registry's, with one exception
that zot (through regclient) and docker make too: the token realm the registry names gets them,
whatever its host (e.g. auth.docker.io for registry-1.docker.io), but never over plain http when the
registry itself is https. Redirects are followed by hand (at most MAX_REDIRECTS); Authorization is
dropped when a redirect leaves the origin (blob storage).

Every request has a timeout: CONNECT_TIMEOUT to connect, READ_TIMEOUT between two reads, and
`timeout` (syncTimeout) overall when set, a streamed blob's body included. Manifests, listings and
error bodies are read up to a bound; blobs stream in pieces of at most CHUNK bytes.

`requests_made` counts every HTTP request sent: probes, token requests, retries and redirect hops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import aiohttp
from yarl import URL

from ..digests import Digest, parse_digest
from ..errors import DigestInvalid
from ..names import _TAG_RE, name_problem
from ..storage.manifests import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MAX_MANIFEST_SIZE, OCI_INDEX, OCI_MANIFEST
from ..version import VERSION

MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
ACCEPT = ", ".join(MANIFEST_TYPES)
USER_AGENT = f"zot-registry-sync/{VERSION}"
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 60.0
CHUNK = 1 << 20
READ_BUFFER = 1 << 20
MAX_LISTING = 32 << 20  # one page of tags, catalog or referrers
MAX_ERROR_BODY = 64 << 10
MAX_TOKEN_BODY = 1 << 20
MAX_PAGES = 10_000
MAX_REDIRECTS = 5
TOKEN_LIFETIME = 60  # seconds, when the token server says nothing or less (regclient's minimum)
TOKEN_MARGIN = 5.0  # renew this much before a token expires
NOT_FOUND_CODES = frozenset({"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"})
# docker.io's names, all served by registry-1.docker.io (regclient's config.HostNewName).
DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DOCKER_HUB_HOST = "registry-1.docker.io"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_LINK_NEXT = re.compile(r'<([^>]*)>\s*;(?:[^,]*;)?\s*rel="?next"?', re.IGNORECASE)
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CHALLENGE_SCHEME = re.compile(rf"[\s,]*({_TOKEN})(?=\s|$)")
_CHALLENGE_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})\s*(?:,|$)')

T = TypeVar("T")


@dataclass(frozen=True)
class UpstreamSettings:
    urls: tuple[str, ...]  # the upstream first, then its mirrors, tried in order
    tls_verify: bool = True
    cert_dir: str | None = None  # zot's certDir: ca.crt, client.cert + client.key, each optional
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict)  # "host:port" or "host" -> (user, password)
    max_retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None  # syncTimeout: overall, per request


class UpstreamError(Exception):
    """Anything that went wrong with an upstream; `url` is the registry URL, `status` its HTTP status."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(f"{url}: {message}" if url else message)
        self.message = message
        self.url = url
        self.status = status


class NotFound(UpstreamError):
    """404, or MANIFEST_UNKNOWN / NAME_UNKNOWN / BLOB_UNKNOWN."""


class Unauthorized(UpstreamError):
    """401 or 403 once authentication was tried (or could not be: no credentials, token refused)."""


class Unavailable(UpstreamError):
    """No answer: connection refused or broken, TLS failure, timeout; 429 or 5xx after the retries."""


@dataclass(frozen=True)
class FetchedManifest:
    media_type: str
    digest: str  # sha256 of data, or the reference when it was a digest (verified)
    data: bytes
    url: str  # the URL (as configured) that answered


class Blob:
    """A blob being streamed from an upstream: `size` (its Content-Length) and its bytes by
    `async for`, once, in pieces of at most CHUNK bytes. A body that breaks off or ends short is
    Unavailable; the digest is the store's to check."""

    def __init__(self, response: aiohttp.ClientResponse, size: int, url: str) -> None:
        self._response = response
        self.size = size
        self.url = url

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        received = 0
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK):
                received += len(chunk)
                if received > self.size:
                    raise UpstreamError(f"blob longer than its Content-Length {self.size}", url=self.url)
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as err:
            raise Unavailable(f"blob body broke off after {received} bytes: {_describe(err)}", url=self.url) from None
        if received != self.size:
            raise Unavailable(f"blob body ended after {received} of {self.size} bytes", url=self.url)


@dataclass(frozen=True)
class _Challenge:
    scheme: str  # lower case: "basic", "bearer"
    params: dict[str, str]


@dataclass
class _Endpoint:
    url: str  # as configured
    origin: str  # where requests go: scheme://host[:port], docker.io mapped
    credentials: tuple[str, str] | None
    scheme: str | None = None  # what authentication it asked for: None (none seen), "basic", "bearer"
    realm: str | None = None
    service: str | None = None
    probed: bool = False
    probing: asyncio.Future[None] | None = None


@dataclass
class _Token:
    value: str
    expires: float  # time.monotonic()


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _origin_of(url: str) -> tuple[str, str, str | None]:
    """(origin requests go to, netloc as configured, hostname) of an upstream URL; docker.io mapped."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"sync: upstream URL {url!r} is not http:// or https://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"sync: upstream URL {url!r} must name a registry's origin, without a path")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    host = parts.hostname
    if host in DOCKER_HUB_NAMES and parts.port in (None, 443):
        return f"https://{DOCKER_HUB_HOST}", netloc, host
    return f"{parts.scheme}://{netloc}", netloc, host


def _credentials_for(url: str, credentials: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """zot's credentials file is keyed by the URL without its scheme ("host:port"); "host" too, and
    for docker.io any of its names."""
    parts = urlsplit(url.strip())
    netloc = parts.netloc.rsplit("@", 1)[-1]
    host = parts.hostname or ""
    default_port = 443 if parts.scheme == "https" else 80
    keys = [netloc, f"{host}:{parts.port or default_port}", host]
    if host in DOCKER_HUB_NAMES:
        keys += sorted(DOCKER_HUB_NAMES)
    for key in keys:
        found = credentials.get(key)
        if found and found[0]:
            return found
    return None


def _ssl_context(settings: UpstreamSettings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.cert_dir:
        folder = Path(settings.cert_dir)
        ca, cert, key = folder / "ca.crt", folder / "client.cert", folder / "client.key"
        try:
            if ca.is_file() and settings.tls_verify:
                context.load_verify_locations(str(ca))
            if cert.is_file() and key.is_file():
                context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as err:
            raise UpstreamError(f"certDir {folder}: {_describe(err)}") from None
    return context


def parse_challenges(values: list[str]) -> list[_Challenge]:
    """The challenges of WWW-Authenticate headers (RFC 9110 11.6.1): scheme and auth-params."""
    found: list[_Challenge] = []
    for value in values:
        position = 0
        for _ in range(len(value) + 1):  # each round consumes at least one character
            scheme = _CHALLENGE_SCHEME.match(value, position)
            if scheme is None:
                break
            position = scheme.end()
            params: dict[str, str] = {}
            for _ in range(len(value) + 1):
                param = _CHALLENGE_PARAM.match(value, position)
                if param is None or param.end() == position:
                    break
                raw = param.group(2)
                params[param.group(1).lower()] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
                position = param.end()
            found.append(_Challenge(scheme.group(1).lower(), params))
    return found


def _next_link(header: str | None) -> str | None:
    if not header:
        return None
    match = _LINK_NEXT.search(header)
    return match.group(1).strip() if match else None


def _media_type(header: str | None, data: bytes) -> str:
    """The manifest's type: its Content-Type, or its own mediaType when the header is missing or generic."""
    declared = (header or "").split(";", 1)[0].strip().lower()
    if declared in MANIFEST_TYPES:
        return declared
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        document = json.loads(data)
        if isinstance(document, dict) and isinstance(document.get("mediaType"), str):
            return str(document["mediaType"])
    return declared


def _json_object(data: bytes, what: str, url: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise UpstreamError(f"{what} is not JSON", url=url) from None
    if not isinstance(document, dict):
        raise UpstreamError(f"{what} is not a JSON object", url=url)
    return document


def _check_repo(repo: str) -> None:
    problem = name_problem(repo)
    if problem:
        raise ValueError(f"sync: {problem}")


def _check_reference(reference: str) -> Digest | None:
    """The digest a reference names, or None for a tag; ValueError for neither."""
    if ":" in reference:
        try:
            return parse_digest(reference)
        except DigestInvalid as err:
            raise ValueError(f"sync: {err.message}") from None
    if not _TAG_RE.fullmatch(reference):
        raise ValueError(f"sync: invalid tag: {reference!r}")
    return None


def _pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


CATALOG_SCOPE = "registry:catalog:*"


def _rank(err: UpstreamError) -> int:
    if isinstance(err, NotFound):
        return 3
    if isinstance(err, Unauthorized):
        return 2
    if isinstance(err, Unavailable):
        return 0
    return 1


class Upstream:
    """One upstream registry and its mirrors (see the module's docstring)."""

    def __init__(self, settings: UpstreamSettings) -> None:
        if not settings.urls:
            raise ValueError("sync: a registry needs at least one URL")
        self.settings = settings
        self.requests_made = 0
        self._endpoints = []
        for url in settings.urls:
            origin, _, _ = _origin_of(url)
            self._endpoints.append(_Endpoint(url, origin, _credentials_for(url, settings.credentials)))
        self._ssl = _ssl_context(settings) if any(e.origin.startswith("https:") for e in self._endpoints) else None
        connect = CONNECT_TIMEOUT if settings.timeout is None else min(CONNECT_TIMEOUT, settings.timeout)
        read = READ_TIMEOUT if settings.timeout is None else min(READ_TIMEOUT, settings.timeout)
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout, sock_connect=connect, sock_read=read)
        self._session: aiohttp.ClientSession | None = None
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._token_locks: dict[tuple[str, str], asyncio.Lock] = {}

    # The public calls ------------------------------------------------------------------------

    async def get_manifest(self, repo: str, reference: str) -> FetchedManifest:
        _check_repo(repo)
        expected = _check_reference(reference)
        return await self._mirrored(lambda endpoint: self._get_manifest(endpoint, repo, reference, expected))

    async def head_manifest(self, repo: str, reference: str) -> tuple[str, str, int]:
        """(digest, media type, size) from a HEAD; from a GET when the upstream's HEAD lacks one of them."""
        _check_repo(repo)
        expected = _check_reference(reference)
        return await self._mirrored(lambda endpoint: self._head_manifest(endpoint, repo, reference, expected))

    @contextlib.asynccontextmanager
    async def open_blob(self, repo: str, digest: str) -> AsyncIterator[Blob]:
        """`async with upstream.open_blob(repo, digest) as blob:` the blob's body, streaming. The
        upstream must send its Content-Length (the spec's GET blob does)."""
        _check_repo(repo)
        if _check_reference(digest) is None:
            raise ValueError(f"sync: not a digest: {digest!r}")
        endpoint, response = await self._mirrored(lambda endpoint: self._open_blob(endpoint, repo, digest))
        try:
            assert response.content_length is not None  # _open_blob refused a blob without one
            yield Blob(response, response.content_length, endpoint.url)
        finally:
            response.release()  # back to the pool if the body was read whole, else the connection is closed

    async def tags(self, repo: str, *, page_size: int | None = None) -> list[str]:
        """Every tag, following Link pagination (`page_size`: the `n` asked for per page)."""
        _check_repo(repo)
        query = {"n": str(page_size)} if page_size else {}
        return await self._mirrored(
            lambda endpoint: self._listing(endpoint, f"/v2/{repo}/tags/list", query, "tags", _pull_scope(repo))
        )

    async def catalog(self, *, page_size: int | None = None) -> list[str]:
        """Every repository, following Link pagination (`page_size`: the `n` asked for per page)."""
        query = {"n": str(page_size)} if page_size else {}
        return await self._mirrored(
            lambda endpoint: self._listing(endpoint, "/v2/_catalog", query, "repositories", CATALOG_SCOPE)
        )

    async def referrers(self, repo: str, digest: str) -> dict[str, Any]:
        """The OCI referrers index of `digest`: the referrers API (its pages merged), or, where the
        upstream has none (404), the fallback tag `<alg>-<hex>`; NotFound when neither exists."""
        _check_repo(repo)
        subject = _check_reference(digest)
        if subject is None:
            raise ValueError(f"sync: not a digest: {digest!r}")
        return await self._mirrored(lambda endpoint: self._referrers(endpoint, repo, subject))

    async def close(self) -> None:
        for endpoint in self._endpoints:
            if endpoint.probing is not None and not endpoint.probing.done():
                endpoint.probing.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Upstream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # One URL each ------------------------------------------------------------------------------

    async def _mirrored(self, operation: Callable[[_Endpoint], Awaitable[T]]) -> T:
        errors: list[UpstreamError] = []
        for endpoint in self._endpoints:
            try:
                return await operation(endpoint)
            except UpstreamError as err:
                if err.url is None:
                    err.url = endpoint.url
                errors.append(err)
        chosen = errors[0]
        for other in errors[1:]:
            if _rank(other) >= _rank(chosen):
                chosen = other
        for other in errors:
            if other is not chosen:
                chosen.add_note(f"also: {other}")
        raise chosen

    async def _get_manifest(
        self, endpoint: _Endpoint, repo: str, reference: str, expected: Digest | None
    ) -> FetchedManifest:
        response = await self._send(
            endpoint, "GET", f"/v2/{repo}/manifests/{reference}", _pull_scope(repo), {"Accept": ACCEPT}
        )
        try:
            data = await self._read(response, MAX_MANIFEST_SIZE, "manifest", endpoint)
        finally:
            response.release()
        if expected is not None:
            actual = hashlib.new(expected.algorithm, data).hexdigest()
            if actual != expected.hex:
                raise UpstreamError(
                    f"manifest {repo}@{expected} hashes to {expected.algorithm}:{actual}", url=endpoint.url
                )
            digest = str(expected)
        else:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return FetchedManifest(_media_type(response.headers.get("Content-Type"), data), digest, data, endpoint.url)

    async def _head_manifest(
        self, endpoint: _Endpoint, repo: str, reference: str, expected: Digest | None
    ) -> tuple[str, str, int]:
        response = await self._send(
            endpoint, "HEAD", f"/v2/{repo}/manifests/{reference}", _pull_scope(repo), {"Accept": ACCEPT}
        )
        response.release()
        header = response.headers.get("Docker-Content-Digest", "").strip()
        media_type = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        size = response.content_length
        digest: str | None = None
        if header:
            try:
                digest = str(parse_digest(header))
            except DigestInvalid:
                raise UpstreamError(f"invalid Docker-Content-Digest {header[:200]!r}", url=endpoint.url) from None
            if expected is not None and digest != str(expected):
                raise UpstreamError(f"HEAD {repo}@{expected} answered digest {digest}", url=endpoint.url)
        elif expected is not None:
            digest = str(expected)
        if digest is None or size is None or media_type not in MANIFEST_TYPES:
            fetched = await self._get_manifest(endpoint, repo, reference, expected)
            return fetched.digest, fetched.media_type, len(fetched.data)
        return digest, media_type, size

    async def _open_blob(self, endpoint: _Endpoint, repo: str, digest: str) -> tuple[_Endpoint, aiohttp.ClientResponse]:
        response = await self._send(endpoint, "GET", f"/v2/{repo}/blobs/{digest}", _pull_scope(repo))
        if response.content_length is None:
            response.close()
            raise UpstreamError(f"blob {repo}@{digest}: no Content-Length", url=endpoint.url)
        return endpoint, response

    async def _listing(self, endpoint: _Endpoint, path: str, query: dict[str, str], key: str, scope: str) -> list[str]:
        target = f"{path}?{urlencode(query)}" if query else path
        found: dict[str, None] = {}
        seen = {target}
        for _ in range(MAX_PAGES):
            response = await self._send(endpoint, "GET", target, scope)
            try:
                data = await self._read(response, MAX_LISTING, key, endpoint)
                link = response.headers.get("Link")
            finally:
                response.release()
            values = _json_object(data, f"{path} answer", endpoint.url).get(key) or []
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise UpstreamError(f"{path}: {key!r} is not a list of names", url=endpoint.url)
            found.update(dict.fromkeys(values))
            following = _next_link(link)
            if not following:
                return list(found)
            target = self._same_origin(endpoint, following)
            if target in seen:
                raise UpstreamError(f"{path}: the Link header leads back to {target!r}", url=endpoint.url)
            seen.add(target)
        raise UpstreamError(f"{path}: more than {MAX_PAGES} pages", url=endpoint.url)

    async def _referrers(self, endpoint: _Endpoint, repo: str, subject: Digest) -> dict[str, Any]:
        target = f"/v2/{repo}/referrers/{subject}"
        index: dict[str, Any] | None = None
        seen = {target}
        try:
            for _ in range(MAX_PAGES):
                response = await self._send(endpoint, "GET", target, _pull_scope(repo), {"Accept": OCI_INDEX})
                try:
                    data = await self._read(response, MAX_LISTING, "referrers", endpoint)
                    link = response.headers.get("Link")
                finally:
                    response.release()
                page = _json_object(data, "referrers index", endpoint.url)
                manifests = page.get("manifests") or []
                if not isinstance(manifests, list):
                    raise UpstreamError("referrers index: manifests is not a list", url=endpoint.url)
                if index is None:
                    index = {**page, "manifests": list(manifests)}
                else:
                    index["manifests"].extend(manifests)
                following = _next_link(link)
                if not following:
                    return index
                target = self._same_origin(endpoint, following)
                if target in seen:
                    raise UpstreamError(f"referrers: the Link header leads back to {target!r}", url=endpoint.url)
                seen.add(target)
            raise UpstreamError(f"referrers: more than {MAX_PAGES} pages", url=endpoint.url)
        except NotFound:
            if index is not None:
                raise
        # No referrers API: the tag schema (distribution spec, "Referrers Tag Schema").
        tag = f"{subject.algorithm}-{subject.hex}"[:128]
        fetched = await self._get_manifest(endpoint, repo, tag, None)
        document = _json_object(fetched.data, f"referrers tag {tag}", endpoint.url)
        if not isinstance(document.get("manifests"), list):
            raise UpstreamError(f"referrers tag {tag} is not an index", url=endpoint.url)
        return document

    def _same_origin(self, endpoint: _Endpoint, link: str) -> str:
        """The path and query of a Link target, which must stay on the registry's origin."""
        url = URL(endpoint.origin).join(URL(link, encoded=True))
        if url.origin() != URL(endpoint.origin).origin():
            raise UpstreamError(f"Link header leaves the registry: {link[:200]!r}", url=endpoint.url)
        return url.raw_path_qs

    async def _read(self, response: aiohttp.ClientResponse, limit: int, what: str, endpoint: _Endpoint) -> bytes:
        length = response.content_length
        if length is not None and length > limit:
            raise UpstreamError(f"{what} of {length} bytes exceeds the limit of {limit}", url=endpoint.url)
        pieces: list[bytes] = []
        total = 0
        try:
            async for piece in response.content.iter_chunked(CHUNK):
                total += len(piece)
                if total > limit:
                    raise UpstreamError(f"{what} exceeds the limit of {limit} bytes", url=endpoint.url)
                pieces.append(piece)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise Unavailable(f"{what} body broke off: {_describe(err)}", url=endpoint.url) from None
        return b"".join(pieces)

    # Requests, retries and authentication ----------------------------------------------------------

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=60, ssl=self._ssl or True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=False,
                read_bufsize=READ_BUFFER,
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def _exchange(
        self, method: str, url: URL, headers: dict[str, str], authorization: str | None, context: str
    ) -> aiohttp.ClientResponse:
        """One request, redirects followed by hand; Authorization only on the first URL's origin."""
        origin = url.origin()
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if authorization and url.origin() == origin:
                sent["Authorization"] = authorization
            self.requests_made += 1
            try:
                response = await self._session_now().request(
                    method,
                    url,
                    headers=sent,
                    allow_redirects=False,
                    ssl=self._ssl if url.scheme == "https" and self._ssl is not None else True,
                )
            except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError, ValueError) as err:
                raise Unavailable(f"{method} {url.path}: {_describe(err)}", url=context) from None
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or not location:
                return response
            response.release()
            url = url.join(URL(location, encoded=True))
            if url.scheme not in ("http", "https"):
                raise UpstreamError(f"redirect to {location[:200]!r}", url=context)
            if response.status == 303:
                method = "GET"
        raise UpstreamError(f"more than {MAX_REDIRECTS} redirects", url=context)

    async def _probe(self, endpoint: _Endpoint) -> None:
        """GET /v2/ once per URL, shared by concurrent first calls: which authentication it wants."""
        if endpoint.probed:
            return
        if endpoint.probing is None or endpoint.probing.done():
            endpoint.probing = asyncio.ensure_future(self._run_probe(endpoint))
            endpoint.probing.add_done_callback(_retrieve)
        await asyncio.shield(endpoint.probing)

    async def _run_probe(self, endpoint: _Endpoint) -> None:
        url = URL(endpoint.origin + "/v2/", encoded=True)
        last: UpstreamError | None = None
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                await asyncio.sleep(self.settings.retry_delay)
            try:
                response = await self._exchange("GET", url, {}, None, endpoint.url)
            except Unavailable as err:
                last = err
                continue
            response.release()
            if response.status == 429 or response.status >= 500:
                last = Unavailable(f"GET /v2/ answered {response.status}", url=endpoint.url, status=response.status)
                continue
            if response.status == 401:
                self._learn(endpoint, response)
            endpoint.probed = True
            return
        assert last is not None
        raise last

    def _learn(self, endpoint: _Endpoint, response: aiohttp.ClientResponse) -> _Challenge | None:
        """The challenge of a 401 (Bearer preferred), remembered for the URL's next requests."""
        challenges = parse_challenges(response.headers.getall("WWW-Authenticate", []))
        for scheme in ("bearer", "basic"):
            for challenge in challenges:
                if challenge.scheme != scheme or (scheme == "bearer" and not challenge.params.get("realm")):
                    continue
                endpoint.scheme = scheme
                endpoint.realm = challenge.params.get("realm")
                endpoint.service = challenge.params.get("service")
                return challenge
        return None

    def _basic(self, endpoint: _Endpoint) -> str | None:
        if endpoint.credentials is None:
            return None
        user, password = endpoint.credentials
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def _authorization(
        self, endpoint: _Endpoint, scope: str | None, fresh: str | None = None, refused: str | None = None
    ) -> str | None:
        """What to send as Authorization, from what the URL asked for so far (None: nothing)."""
        if endpoint.scheme == "basic":
            return self._basic(endpoint)
        if endpoint.scheme == "bearer" and scope is not None:
            return "Bearer " + await self._token(endpoint, scope, fresh, refused)
        return None

    async def _token(self, endpoint: _Endpoint, scope: str, fresh: str | None, refused: str | None) -> str:
        """A token for `scope`, cached. `fresh`: the scope a challenge asked for after `refused` (the
        Authorization refused, or None): a new token unless another request has renewed it meanwhile."""
        key = (endpoint.url, scope)
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            renewed = refused is not None and cached is not None and refused != "Bearer " + cached.value
            if cached is not None and cached.expires > time.monotonic() and (fresh is None or renewed):
                return cached.value
            token = await self._fetch_token(endpoint, fresh or scope)
            self._tokens[key] = token
            return token.value

    async def _fetch_token(self, endpoint: _Endpoint, scope: str) -> _Token:
        realm = endpoint.realm or ""
        try:
            url = URL(realm)
        except ValueError:
            raise UpstreamError(f"invalid token realm {realm[:200]!r}", url=endpoint.url) from None
        if url.scheme not in ("http", "https") or not url.host:
            raise UpstreamError(f"invalid token realm {realm[:200]!r}", url=endpoint.url)
        query: list[tuple[str, str]] = list(url.query.items())
        if endpoint.service:
            query.append(("service", endpoint.service))
        query += [("scope", part) for part in scope.split(" ") if part]
        authorization = None
        # The registry's credentials go to the realm it names (as regclient and docker do), not over plain
        # http when the registry is https.
        if endpoint.credentials is not None and (url.scheme == "https" or endpoint.origin.startswith("http:")):
            query.append(("account", endpoint.credentials[0]))
            authorization = self._basic(endpoint)
        url = url.with_query(query)
        response = await self._exchange("GET", url, {"Accept": "application/json"}, authorization, endpoint.url)
        try:
            if response.status in (401, 403):
                raise Unauthorized(
                    f"the token server {url.host} refused "
                    f"{'the credentials' if authorization else 'an anonymous token'} for {scope!r} ({response.status})",
                    url=endpoint.url,
                    status=response.status,
                )
            if response.status == 429 or response.status >= 500:
                raise Unavailable(
                    f"the token server answered {response.status}", url=endpoint.url, status=response.status
                )
            if response.status != 200:
                raise UpstreamError(
                    f"the token server answered {response.status}", url=endpoint.url, status=response.status
                )
            data = await self._read(response, MAX_TOKEN_BODY, "token answer", endpoint)
        finally:
            response.release()
        document = _json_object(data, "token answer", endpoint.url)
        value = document.get("token") or document.get("access_token")
        if not isinstance(value, str) or not value:
            raise UpstreamError("the token server's answer has no token", url=endpoint.url)
        lifetime = document.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) and lifetime > TOKEN_LIFETIME else TOKEN_LIFETIME
        return _Token(value, time.monotonic() + seconds - min(TOKEN_MARGIN, seconds / 2))

    async def _send(
        self, endpoint: _Endpoint, method: str, target: str, scope: str | None, headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        """A 2xx response to `method target` on `endpoint` (its body unread: the caller releases it),
        after the probe, authentication and retries; else the typed error."""
        await self._probe(endpoint)
        url = URL(endpoint.origin + target, encoded=True)
        failures = 0
        fresh: str | None = None
        refused: str | None = None
        reauthenticated = False
        last: UpstreamError | None = None
        for _ in range(self.settings.max_retries + 2):  # the retries, and one round after a challenge
            try:
                authorization = await self._authorization(endpoint, scope, fresh, refused)
                fresh = refused = None
                response = await self._exchange(method, url, dict(headers or {}), authorization, endpoint.url)
            except Unavailable as err:
                last = err
            else:
                status = response.status
                if status < 300:
                    return response
                if status == 401 and not reauthenticated:
                    reauthenticated = True
                    challenge = self._learn(endpoint, response)
                    response.release()
                    retry, fresh = self._after_challenge(endpoint, challenge, authorization, scope)
                    refused = authorization
                    if retry:
                        continue
                    raise self._refused(endpoint, method, target, status, authorization)
                if status in (401, 403):
                    response.release()
                    raise self._refused(endpoint, method, target, status, authorization)
                if status == 429 or status >= 500:
                    response.release()
                    last = Unavailable(f"{method} {target} answered {status}", url=endpoint.url, status=status)
                else:
                    raise await self._answer_error(endpoint, method, target, response)
            failures += 1
            if failures > self.settings.max_retries:
                break
            await asyncio.sleep(self.settings.retry_delay)
        assert last is not None
        raise last

    def _after_challenge(
        self, endpoint: _Endpoint, challenge: _Challenge | None, sent: str | None, scope: str | None
    ) -> tuple[bool, str | None]:
        """Whether a request refused with `challenge` is worth sending again, and the token scope to ask
        for (the challenge's) when it is Bearer."""
        if challenge is None:
            return False, None
        if challenge.scheme == "basic":
            # Credentials already sent were wrong: another try costs the upstream a bcrypt for nothing.
            return sent is None and endpoint.credentials is not None, None
        wanted = challenge.params.get("scope") or scope
        if wanted is None:
            return False, None
        return True, wanted

    def _refused(
        self, endpoint: _Endpoint, method: str, target: str, status: int, authorization: str | None
    ) -> Unauthorized:
        if authorization is None and endpoint.credentials is None:
            how = "anonymously (no credentials for this registry)"
        elif authorization is None:
            how = "anonymously"
        else:
            how = f"with {authorization.split(' ', 1)[0]} authorization"
        return Unauthorized(f"{method} {target} refused {how} ({status})", url=endpoint.url, status=status)

    async def _answer_error(
        self, endpoint: _Endpoint, method: str, target: str, response: aiohttp.ClientResponse
    ) -> UpstreamError:
        status = response.status
        codes: list[str] = []
        message = ""
        try:
            if method != "HEAD":
                data = await response.content.read(MAX_ERROR_BODY)
                with contextlib.suppress(ValueError, UnicodeDecodeError):
                    document = json.loads(data)
                    errors = document.get("errors") if isinstance(document, dict) else None
                    for entry in errors if isinstance(errors, list) else []:
                        if isinstance(entry, dict):
                            codes.append(str(entry.get("code", "")))
                            message = message or str(entry.get("message", ""))
        except (aiohttp.ClientError, TimeoutError):
            pass
        finally:
            response.release()
        text = f"{method} {target} answered {status}" + (f" {codes[0]}: {message}" if codes else "")
        if status == 404 or NOT_FOUND_CODES.intersection(codes):
            return NotFound(text, url=endpoint.url, status=status)
        return UpstreamError(text, url=endpoint.url, status=status)


def _retrieve(future: asyncio.Future[None]) -> None:
    """Marks a shared probe's failure as retrieved: the callers that awaited it got it already."""
    if not future.cancelled():
        future.exception()
