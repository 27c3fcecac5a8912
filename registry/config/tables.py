"""zot's settings as tables: the driver names it knows and those we implement, and every key it
knows that this registry does not implement (UNSUPPORTED_KEYS), with the decision for each.

Later work fills these in or shrinks them: an issue that adds a driver or a feature edits a table
here, and the models (models.py) gain the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Drivers zot accepts in storage.storageDriver.name / storage.cacheDriver.name (azure since 2.1.18).
ZOT_STORAGE_DRIVERS: frozenset[str] = frozenset({"s3", "gcs", "azure"})
ZOT_CACHE_DRIVERS: frozenset[str] = frozenset({"boltdb", "dynamodb", "redis"})
# Where the redis cache's URL comes from when the config has none (it may carry a password).
REDIS_URL_ENV = "ZOT_REDIS_URL"
# The ones this registry implements; an issue that adds a driver adds its name here. A driver zot
# knows and we do not is refused: reading gcs or azure settings as S3 would talk to the wrong service.
SUPPORTED_STORAGE_DRIVERS: set[str] = {"s3"}
# zot itself accepts only these two as a remote cache (boltdb is its local one).
SUPPORTED_CACHE_DRIVERS: set[str] = {"redis", "dynamodb"}


def _in_use(value: Any) -> bool:
    """Whether a zot setting asks for something: null, false, "" and 0 ask for nothing, and neither
    does an object with "enable": false (zot's extensions; an absent "enable" means on, as in zot)."""
    if isinstance(value, dict):
        return next((item for key, item in value.items() if str(key).lower() == "enable"), None) is not False
    return value not in (None, False, "")


def _lint_in_use(value: Any) -> bool:
    # zot's linter refuses manifests only when it has mandatory annotations to look for.
    return _in_use(value) and isinstance(value, dict) and bool(value.get("mandatoryannotations"))


@dataclass(frozen=True)
class Unsupported:
    """A zot setting that this registry does not implement, and what ignoring it would mean.

    refuse: ignoring the setting would let someone do what it forbids (fail open), so a config that
    uses it is an error, in `verify` and in `serve`. Otherwise a warning says what is ignored."""

    why: str
    refuse: bool = False
    in_use: Callable[[Any], bool] = _in_use


_IGNORED = "not supported yet, ignored"
_ENFORCED = "which this registry does not enforce yet"
_IMPLEMENTED = "which this registry does not implement yet"
REFUSE_HINT = "remove it or run zot"

# Every key path that zot's config (pkg/api/config/config.go, pkg/extensions/config) knows and that
# we do not implement, in one table: the decision for each, and why. Names are the canonical
# spelling; matching is case-insensitive; anything below one of these paths is not checked key by
# key. Remove an entry when its feature lands (and add the field to the models).
UNSUPPORTED_KEYS: dict[str, Unsupported] = {
    # Build information that zot fills in itself; harmless in a config dumped from zot.
    "goVersion": Unsupported("build information, ignored"),
    "commit": Unsupported("build information, ignored"),
    "releaseTag": Unsupported("build information, ignored"),
    "binaryType": Unsupported("build information, ignored"),
    # zot's background task pool; we have no such tasks to size.
    "scheduler": Unsupported(_IGNORED),
    # Ignoring retention keeps every image (nothing is deleted that zot would have kept), so it can
    # neither expose nor lose data: a warning. The disk may grow where zot would have pruned.
    "storage.retention": Unsupported(
        f"{_IGNORED}: no image is deleted by retention policies, "
        "every image is kept until it is deleted through the API"
    ),
    # Ignoring subPaths would read and write those repositories under rootDirectory: images already
    # stored under a subpath would look deleted, and new ones would land on the wrong disk.
    "storage.subPaths": Unsupported(
        f"stores repositories in other directories, {_IMPLEMENTED}: they would "
        "be read from and written to rootDirectory instead",
        refuse=True,
    ),
    # A quota on repositories (zot 2.1.16): ignoring it lets users create what zot would refuse.
    "storage.maxRepos": Unsupported(f"limits the number of repositories, {_ENFORCED}", refuse=True),
    # Blobs are then served through the registry, as without the setting (zot 2.1.18).
    "storage.redirectBlobURL": Unsupported(f"{_IGNORED}: blobs are served by this registry, not redirected"),
    # A startup shortcut of zot's metadata database (zot 2.1.18); we have no such walk to skip.
    "storage.fastRestart": Unsupported(_IGNORED),
    # Some zot versions keep the session store under storage, others under http.auth.
    "storage.remoteSessionCache": Unsupported(_IGNORED),
    "storage.sessionDriver": Unsupported(_IGNORED),
    "http.externalUrl": Unsupported(_IGNORED),
    # Without it no CORS header is sent, so browsers refuse cross-origin reads: stricter, not looser.
    "http.allowOrigin": Unsupported(f"{_IGNORED}: no CORS headers are sent"),
    # Who may do what: ignoring any of these would accept anonymous or over-privileged requests.
    # (http.accessControl, http.auth.ldap, http.tls.cacert and http.auth.mtls are implemented:
    # config/access.py, config/ldap.py, config/mtls.py, registry/access/, registry/authn/.)
    "http.auth.bearer": Unsupported(f"requires bearer tokens, {_IMPLEMENTED}", refuse=True),
    "http.auth.openid": Unsupported(f"requires OpenID logins, {_IMPLEMENTED}", refuse=True),
    "http.auth.apikey": Unsupported(f"requires API keys, {_IMPLEMENTED}", refuse=True),
    # A rate limit bounds load, not who may do what: nobody gains access by its absence, so a
    # warning, which says plainly that nothing is limited.
    "http.ratelimit": Unsupported(
        f"{_IGNORED}: requests are not rate limited (put a rate-limiting proxy in front if you rely on it)"
    ),
    # Cookies of zot's web UI and OpenID sessions, which we do not serve.
    "http.auth.sessionKeysFile": Unsupported(_IGNORED),
    "http.auth.sessionDriver": Unsupported(_IGNORED),
    "http.auth.secureSession": Unsupported(_IGNORED),
    "log.audit": Unsupported(f"{_IGNORED}: no audit log is written"),
    # Every extension zot has but sync (implemented: ZotConfig.sync, sync.py). Their contents are
    # kept in ZotConfig.extensions, unchecked. Missing features (search, UI, ...) answer 404; none
    # of them restricts access, except these:
    "extensions.lint": Unsupported(
        f"refuses manifests without the mandatory annotations, {_ENFORCED}", refuse=True, in_use=_lint_in_use
    ),
    "extensions.apikey": Unsupported(f"requires API keys, {_IMPLEMENTED}", refuse=True),
    "extensions.search": Unsupported(_IGNORED),
    "extensions.metrics": Unsupported(_IGNORED),
    "extensions.scrub": Unsupported(_IGNORED),
    "extensions.ui": Unsupported(_IGNORED),
    "extensions.mgmt": Unsupported(_IGNORED),
    # zot's trust extension verifies signatures and reports them through search; it blocks nothing.
    "extensions.trust": Unsupported(_IGNORED),
    "extensions.events": Unsupported(_IGNORED),
}
