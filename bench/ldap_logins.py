"""LDAP logins against a real slapd on loopback (the tests' peer, tests/support/ldap.py): how long
a user's first login takes (a bind as the service account, a search, a bind as the user) and a
repeated one (the minute's cache), over LDAPS and StartTLS, and how soon a login against a
directory that stopped is answered. Writes docs/ldap-logins.md.

    .venv/bin/python -m bench.ldap_logins

Absolute times of one machine, no peer beside them: what they show is the ratio of a first login
to a remembered one, and that a directory that is gone costs a client milliseconds, not a hang.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.ldap import USERS, Mode, ldap_config, running_slapd  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.registry import RegistryProcess, registry_config  # noqa: E402

ROUNDS = 5  # each user logs in fresh once per registry start: the cache would serve the rest
DOC = REPO_ROOT / "docs" / "ldap-logins.md"


def _timed(client: httpx.Client) -> float:
    started = time.perf_counter()
    answer = client.get("/v2/")
    assert answer.status_code == 200, answer.text
    return (time.perf_counter() - started) * 1000


def main() -> None:
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        with running_slapd(folder / "slapd") as slapd:
            modes: tuple[Mode, ...] = ("ldaps", "starttls")
            for mode in modes:
                first: list[float] = []
                cached: list[float] = []
                for round_ in range(ROUNDS):
                    here = folder / f"{mode}-{round_}"
                    here.mkdir()
                    auth = {"ldap": ldap_config(slapd, here, mode)}
                    config = registry_config(here / "root", free_port(), auth=auth)
                    with RegistryProcess(here / "config.json", config, here / "log", workers=1).start() as registry:
                        for user in USERS:
                            with httpx.Client(base_url=registry.url, auth=(user, USERS[user].password)) as client:
                                first.append(_timed(client))
                                cached.append(_timed(client))
                rows.append(
                    f"| {mode} | {statistics.median(first):.1f} ms | {statistics.median(cached):.1f} ms | "
                    f"{statistics.median(first) / statistics.median(cached):.0f}x |"
                )
            here = folder / "down"
            here.mkdir()
            config = registry_config(here / "root", free_port(), auth={"ldap": ldap_config(slapd, here, "ldaps")})
            registry = RegistryProcess(here / "config.json", config, here / "log", workers=1).start()
        try:  # slapd has stopped
            with httpx.Client(base_url=registry.url, auth=("alice", USERS["alice"].password), timeout=30) as client:
                started = time.perf_counter()
                answer = client.get("/v2/")
                down = (time.perf_counter() - started) * 1000
            assert answer.status_code == 503, answer.text
        finally:
            registry.stop()
    DOC.write_text(
        "# LDAP logins\n\n"
        "Written by `.venv/bin/python -m bench.ldap_logins` (bench/ldap_logins.py): a registry with "
        "`http.auth.ldap` (1 worker) against a real slapd on loopback, `GET /v2/` with Basic credentials; "
        f"medians of {ROUNDS} rounds of {len(USERS)} users, each user's first login (service bind, search, "
        "user bind) and its repeat (remembered for a minute).\n\n"
        "| connection | first login | repeated login | ratio |\n|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"A login against a directory that had stopped: `503 UNAVAILABLE` in {down:.0f} ms (connection refused; "
        "a silent directory is bounded by ZOT_LDAP_CONNECT_TIMEOUT and ZOT_LDAP_TIMEOUT, 3 s and 5 s).\n"
    )
    print(DOC.read_text())


if __name__ == "__main__":
    main()
