"""The access control matrix the registry and cluster suites share: users in an htpasswd file, a
zot accessControl stanza, what each user may do on each side of it, and every route of the API run
as one user, each against content an admin put there for it.

The stanza (zot's semantics, registry/access/policy.py):

- `**`: anonymous reads; reader reads, writer reads and creates, the maintainers group (maint)
  does everything; `nobody` has no policy, and does not get the anonymous policy's reads either;
- `private/**`, the longer pattern, alone decides there: writer reads, creates and updates; the
  maintainers' grant on `**` does not reach it;
- admin, by the admin policy, does everything everywhere; /metrics is admin's only;
- `certified` logs in with a client certificate (CN), where the registry asks for them
  (http.tls.cacert): it reads, creates and updates on `**` by name, and reads `private/**` as a
  member of the auditors group.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.images import MANIFEST, OCTETS, Image, make_image, push_image, sha256
from tests.support.registry import write_htpasswd

USERS = {"reader": "reader-pw", "writer": "writer-pw", "maint": "maint-pw", "admin": "admin-pw", "nobody": "nobody-pw"}
IDENTITIES = ("anonymous", "nobody", "reader", "writer", "maint", "admin")
# The identity of a client certificate (its CN), in a registry that asks for them.
CERTIFIED = "certified"
WITH_CERTIFICATES = (*IDENTITIES, CERTIFIED)
AREAS = ("pub", "private")
EVERYTHING = frozenset({"read", "create", "update", "delete"})

ACCESS_CONTROL: dict[str, Any] = {
    "groups": {"maintainers": {"users": ["maint"]}, "auditors": {"users": [CERTIFIED]}},
    "repositories": {
        "**": {
            "anonymousPolicy": ["read"],
            "policies": [
                {"users": ["reader"], "actions": ["read"]},
                {"users": ["writer"], "actions": ["read", "create"]},
                {"groups": ["maintainers"], "actions": ["read", "create", "update", "delete"]},
                {"users": [CERTIFIED], "actions": ["read", "create", "update"]},
            ],
        },
        "private/**": {
            "policies": [
                {"users": ["writer"], "actions": ["read", "create", "update"]},
                {"groups": ["auditors"], "actions": ["read"]},
            ]
        },
    },
    "adminPolicy": {"users": ["admin"], "actions": ["read", "create", "update", "delete"]},
    "metrics": {"users": ["admin"]},
}

# What each identity may do in each area, by the stanza above.
ALLOWED: dict[tuple[str, str], frozenset[str]] = {
    ("anonymous", "pub"): frozenset({"read"}),
    ("nobody", "pub"): frozenset(),
    ("reader", "pub"): frozenset({"read"}),
    ("writer", "pub"): frozenset({"read", "create"}),
    ("maint", "pub"): EVERYTHING,
    ("admin", "pub"): EVERYTHING,
    ("anonymous", "private"): frozenset(),
    ("nobody", "private"): frozenset(),
    ("reader", "private"): frozenset(),
    ("writer", "private"): frozenset({"read", "create", "update"}),
    ("maint", "private"): frozenset(),
    ("admin", "private"): EVERYTHING,
    (CERTIFIED, "pub"): frozenset({"read", "create", "update"}),
    (CERTIFIED, "private"): frozenset({"read"}),
}


def write_users(folder: Path, extra: dict[str, str] | None = None) -> Path:
    return write_htpasswd(folder / "access-htpasswd", {**USERS, **(extra or {})})


def credentials(who: str) -> tuple[str, str] | None:
    """Basic credentials of a password user; None for anonymous and for the certificate identity."""
    return None if who in ("anonymous", CERTIFIED) else (who, USERS[who])


def area_of(repo: str) -> str:
    return "private" if repo.startswith("private/") else "pub"


def may_list(who: str, repo: str) -> bool:
    return who == "admin" or "read" in ALLOWED[(who, area_of(repo))]


def denied_status(who: str) -> int:
    return 401 if who == "anonymous" else 403


# ---------------------------------------------------------------------------------------------
# Every route, as one user, on content the admin prepared
# ---------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """What the admin put in a repository before the matrix runs there."""

    repo: str
    image: Image  # pushed with the tag "base"
    source: str  # a repository of the same area holding `mountable`
    mountable: bytes


def _blobs(admin: httpx.Client, repo: str, image: Image) -> None:
    for blob in [image.config, *image.layers]:
        answer = admin.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
        assert answer.status_code == 201, answer.text


def _blob(admin: httpx.Client, repo: str) -> bytes:
    data = uuid.uuid4().bytes * 64
    answer = admin.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)}, content=data)
    assert answer.status_code == 201, answer.text
    return data


def _session(admin: httpx.Client, repo: str) -> str:
    answer = admin.post(f"/v2/{repo}/blobs/uploads/")
    assert answer.status_code == 202, answer.text
    return str(answer.headers["Location"])


def _image(label: str) -> Image:
    return make_image(f"{label}-{uuid.uuid4().hex}", (256,))


def prepare(admin: httpx.Client, repo: str, source: str) -> Prepared:
    image = _image("base")
    assert push_image(admin, repo, image, tag="base").status_code == 201
    return Prepared(repo, image, source, _blob(admin, source))


Op = Callable[[httpx.Client, httpx.Client, Prepared], httpx.Response]


def _put_manifest(client: httpx.Client, repo: str, reference: str, image: Image) -> httpx.Response:
    return client.put(f"/v2/{repo}/manifests/{reference}", content=image.manifest, headers=MANIFEST)


def _put_new_tag(user: httpx.Client, admin: httpx.Client, p: Prepared) -> httpx.Response:
    image = _image("new")
    _blobs(admin, p.repo, image)
    return _put_manifest(user, p.repo, f"new-{uuid.uuid4().hex[:8]}", image)


def _put_existing_tag(user: httpx.Client, admin: httpx.Client, p: Prepared) -> httpx.Response:
    tag = f"moved-{uuid.uuid4().hex[:8]}"
    assert push_image(admin, p.repo, _image("old"), tag=tag).status_code == 201
    image = _image("moved")
    _blobs(admin, p.repo, image)
    return _put_manifest(user, p.repo, tag, image)


def _put_digest(user: httpx.Client, admin: httpx.Client, p: Prepared) -> httpx.Response:
    image = _image("digest")
    _blobs(admin, p.repo, image)
    return _put_manifest(user, p.repo, image.digest, image)


def _delete_manifest(user: httpx.Client, admin: httpx.Client, p: Prepared) -> httpx.Response:
    image = _image("doomed")
    assert push_image(admin, p.repo, image, tag=f"doomed-{uuid.uuid4().hex[:8]}").status_code == 201
    return user.delete(f"/v2/{p.repo}/manifests/{image.digest}")


def _delete_blob(user: httpx.Client, admin: httpx.Client, p: Prepared) -> httpx.Response:
    return user.delete(f"/v2/{p.repo}/blobs/{sha256(_blob(admin, p.repo))}")


def _patch(user: httpx.Client, admin: httpx.Client, p: Prepared) -> httpx.Response:
    return user.patch(_session(admin, p.repo), content=b"chunk", headers=OCTETS)


def _close(user: httpx.Client, admin: httpx.Client, p: Prepared) -> httpx.Response:
    data = uuid.uuid4().bytes
    return user.put(_session(admin, p.repo), params={"digest": sha256(data)}, content=data, headers=OCTETS)


def _monolithic(user: httpx.Client, admin: httpx.Client, p: Prepared) -> httpx.Response:
    data = uuid.uuid4().bytes
    return user.post(f"/v2/{p.repo}/blobs/uploads/", params={"digest": sha256(data)}, content=data)


def _mount(user: httpx.Client, admin: httpx.Client, p: Prepared) -> httpx.Response:
    params = {"mount": sha256(p.mountable), "from": p.source}
    return user.post(f"/v2/{p.repo}/blobs/uploads/", params=params)


# name -> (action, status when allowed, the request)
OPS: dict[str, tuple[str, int, Op]] = {
    "tags": ("read", 200, lambda u, a, p: u.get(f"/v2/{p.repo}/tags/list")),
    "manifest GET": (
        "read",
        200,
        lambda u, a, p: u.get(f"/v2/{p.repo}/manifests/base", headers={"Accept": MANIFEST["Content-Type"]}),
    ),
    "manifest HEAD": (
        "read",
        200,
        lambda u, a, p: u.head(f"/v2/{p.repo}/manifests/base", headers={"Accept": MANIFEST["Content-Type"]}),
    ),
    "manifest PUT new tag": ("create", 201, _put_new_tag),
    "manifest PUT existing tag": ("update", 201, _put_existing_tag),
    "manifest PUT digest": ("create", 201, _put_digest),
    "manifest DELETE": ("delete", 202, _delete_manifest),
    "blob GET": ("read", 200, lambda u, a, p: u.get(f"/v2/{p.repo}/blobs/{sha256(p.image.layers[0])}")),
    "blob HEAD": ("read", 200, lambda u, a, p: u.head(f"/v2/{p.repo}/blobs/{sha256(p.image.layers[0])}")),
    "blob DELETE": ("delete", 202, _delete_blob),
    "upload POST": ("create", 202, lambda u, a, p: u.post(f"/v2/{p.repo}/blobs/uploads/")),
    "upload PATCH": ("create", 202, _patch),
    "upload PUT": ("create", 201, _close),
    "upload GET": ("read", 204, lambda u, a, p: u.get(_session(a, p.repo))),
    "upload DELETE": ("delete", 204, lambda u, a, p: u.delete(_session(a, p.repo))),
    "monolithic POST": ("create", 201, _monolithic),
    "mount": ("create", 201, _mount),  # and read on `from`, which is in the same area
    "referrers": ("read", 200, lambda u, a, p: u.get(f"/v2/{p.repo}/referrers/{p.image.digest}")),
}


def expected(who: str, area: str) -> dict[str, int]:
    allowed = ALLOWED[(who, area)]
    return {name: ok if action in allowed else denied_status(who) for name, (action, ok, _) in OPS.items()}


def run(user: httpx.Client, admin: httpx.Client, prepared: Prepared, who: str) -> dict[str, int]:
    """Each route's status as `user`; a denial must be the OCI error, with the challenge when anonymous."""
    found = {}
    for name, (_, _, op) in OPS.items():
        answer = op(user, admin, prepared)
        found[name] = answer.status_code
        if answer.status_code in (401, 403):
            code = "UNAUTHORIZED" if answer.status_code == 401 else "DENIED"
            if answer.request.method != "HEAD":
                assert answer.json()["errors"][0]["code"] == code, (name, answer.text)
            assert answer.headers["WWW-Authenticate"].startswith("Basic realm="), name
    return found
