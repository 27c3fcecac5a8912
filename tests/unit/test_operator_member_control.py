"""The operator's client of the members' control API against a small mutual-TLS server in this process:
what each kind of answer becomes, that it shows a client certificate from the cluster CA and checks the
member's, and when it issues itself a new certificate."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from zot_operator import member_control
from zot_operator.member_control import ClientCache, HttpMemberApi, NotSupported, Refused, Unreachable
from zot_registry.certs import KeyPair, make_ca, make_client_cert, make_server_cert
from zot_registry.cluster.control_models import CHANGE_PATH, STATE_PATH, ChangeRequest, MemberState

STATE = {"epoch": 3, "members": ["a:5000", "b:5000"], "self": 1, "change": None, "version": "test"}


@dataclass
class Member:
    """What the fake member answers (path -> (status, body)) and what it was asked, with the client's name."""

    answers: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    seen: list[tuple[str, str, str, Any]] = field(default_factory=list)  # (method, path, client CN, body)
    stall: threading.Event = field(default_factory=threading.Event)


def _server(ca: KeyPair, member: Member) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            if member.stall.is_set():  # answer nothing: the client's read timeout ends the call
                time.sleep(1)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            cert: Any = self.connection.getpeercert()
            name = dict(pair[0] for pair in cert["subject"])["commonName"]
            member.seen.append((self.command, self.path, name, body))
            status, answer = member.answers.get((self.command, self.path), (404, {"errors": [{"code": "NOT_FOUND"}]}))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    pair = make_server_cert(ca, ["localhost", "127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.verify_mode = ssl.CERT_REQUIRED  # as the members' control API: a client certificate from the CA
    context.load_verify_locations(cadata=ca.cert_pem.decode())
    member_control._load_client_pair(context, pair)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


@pytest.fixture
def ca() -> KeyPair:
    return make_ca("test cluster CA")


@pytest.fixture
def member(ca: KeyPair) -> Iterator[tuple[str, Member]]:
    fake = Member()
    server = _server(ca, fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"localhost:{server.server_address[1]}", fake
    server.shutdown()
    server.server_close()


def api(ca: KeyPair) -> HttpMemberApi:
    return HttpMemberApi(ca, make_client_cert(ca, "zot-operator"))


def test_a_state_is_read_with_a_client_certificate_from_the_cluster_ca(ca: KeyPair, member: tuple[str, Member]) -> None:
    address, fake = member
    fake.answers[("GET", STATE_PATH)] = (200, STATE)
    state = api(ca).state(address)
    assert isinstance(state, MemberState) and state.epoch == 3 and state.self_index == 1
    assert fake.seen == [("GET", STATE_PATH, "zot-operator", None)]


def test_a_change_is_sent_as_the_contract_spells_it_and_a_refusal_says_why(
    ca: KeyPair, member: tuple[str, Member]
) -> None:
    address, fake = member
    request = ChangeRequest.model_validate(
        {
            "epoch": 4,
            "from": ["a:5000", "c:5000"],
            "to": ["a:5000", "b:5000"],
            "step": "copy",
            "keepOldCopiesSeconds": 60,
            "absent": ["c:5000"],
        }
    )
    fake.answers[("PUT", CHANGE_PATH)] = (200, STATE)
    assert isinstance(api(ca).change(address, request), MemberState)
    assert fake.seen[-1][3] == {
        "epoch": 4,
        "from": ["a:5000", "c:5000"],
        "to": ["a:5000", "b:5000"],
        "step": "copy",
        "keepOldCopiesSeconds": 60.0,
        "absent": ["c:5000"],
    }
    fake.answers[("PUT", CHANGE_PATH)] = (409, {"errors": [{"code": "DENIED", "message": "epoch 4 is older than 5"}]})
    assert api(ca).change(address, request) == Refused(409, "DENIED: epoch 4 is older than 5")
    fake.answers[("DELETE", CHANGE_PATH)] = (200, STATE)
    assert isinstance(api(ca).abandon(address), MemberState)


def test_no_control_api_is_not_supported_and_an_error_or_a_bad_body_unreachable(
    ca: KeyPair, member: tuple[str, Member]
) -> None:
    address, fake = member
    assert isinstance(api(ca).state(address), NotSupported)  # what an upstream zot answers
    fake.answers[("GET", STATE_PATH)] = (503, {"errors": [{"code": "UNAVAILABLE", "message": "starting"}]})
    assert api(ca).state(address) == Unreachable("answered HTTP 503: UNAVAILABLE: starting")
    fake.answers[("GET", STATE_PATH)] = (200, {"epoch": "three"})
    answer = api(ca).state(address)
    assert isinstance(answer, Unreachable) and "cannot read" in answer.reason


def test_a_member_that_does_not_answer_is_unreachable_and_says_how(
    ca: KeyPair, member: tuple[str, Member], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert api(ca).state(f"127.0.0.1:{port}") == Unreachable("connection refused")
    assert api(ca).state("no-such-member.invalid:5000") == Unreachable("its name does not resolve")
    address, fake = member
    monkeypatch.setattr(member_control, "READ_TIMEOUT", 0.3)
    fake.stall.set()
    assert api(ca).state(address) == Unreachable("no answer within 0.3s")


def test_a_member_with_a_certificate_from_another_ca_is_not_trusted(ca: KeyPair, member: tuple[str, Member]) -> None:
    address, fake = member
    fake.answers[("GET", STATE_PATH)] = (200, STATE)
    answer = api(make_ca("someone else")).state(address)
    assert isinstance(answer, Unreachable) and answer.reason.startswith("TLS failed")
    assert fake.seen == []


def test_one_client_per_ca_with_a_new_certificate_after_half_its_life(ca: KeyPair) -> None:
    now = [datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)]
    issued: list[x509.Certificate] = []
    real = member_control.make_client_cert

    def spy(ca: KeyPair, name: str, days: float = 1) -> KeyPair:
        pair = real(ca, name, days)
        issued.append(x509.load_pem_x509_certificate(pair.cert_pem))
        return pair

    cache = ClientCache(clock=lambda: now[0])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(member_control, "make_client_cert", spy)
        first = cache.connect(ca)
        assert cache.connect(ca) is first and len(issued) == 1
        assert cache.connect(make_ca("another cluster")) is not first
        now[0] += member_control.RENEW_AFTER
        assert cache.connect(ca) is not first and len(issued) == 3
    assert all(c.not_valid_after_utc - c.not_valid_before_utc < datetime.timedelta(days=2) for c in issued)
