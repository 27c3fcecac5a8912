"""The shared-storage peers start and speak their protocol (what the S3/cache drivers will rely on)."""

from __future__ import annotations

import socket

import httpx

from tests.support.peers import Peer


def test_redis_answers_ping(redis_server: Peer) -> None:
    with socket.create_connection((redis_server.host, redis_server.port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(64) == b"+PONG\r\n"


def test_s3_gateway_refuses_unsigned_requests(s3_server: Peer) -> None:
    # versitygw checks SigV4 signatures, so the registry's S3 client is tested as against real S3.
    response = httpx.get(f"{s3_server.url}/", timeout=5)
    assert response.status_code == 403
    assert "AccessDenied" in response.text


def test_dynamodb_lists_no_tables_when_fresh(dynamodb_server: Peer) -> None:
    # dynalite needs an Authorization header and a date but does not verify the signature.
    headers = {
        "X-Amz-Date": "20260101T000000Z",
        "X-Amz-Target": "DynamoDB_20120810.ListTables",
        "Content-Type": "application/x-amz-json-1.0",
        "Authorization": "AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/dynamodb/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=0",
    }
    response = httpx.post(dynamodb_server.url, headers=headers, content=b"{}", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"TableNames": []}
