"""The sans-IO half of the gateway client: request bytes and response parsing."""

from __future__ import annotations

import pytest

from etcdsync.testing import GatewayError, MemberStatus
from etcdsync.testing._http import build_request, parse_response, parse_status


def test_build_request_with_and_without_body() -> None:
    assert build_request("GET", "/health", "127.0.0.1:2379") == (
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:2379\r\nConnection: close\r\n\r\n"
    )
    assert build_request("POST", "/v3/maintenance/status", "h:1", b"{}") == (
        b"POST /v3/maintenance/status HTTP/1.1\r\nHost: h:1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )


def test_parse_content_length_chunked_and_eof_bodies() -> None:
    fixed = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\n{}trailing")
    assert (fixed.status, fixed.body, fixed.headers["x-a"]) == (200, b"{}", "b")
    chunked = parse_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
    )
    assert chunked.body == b"abcde"
    assert parse_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\nbusy").body == b"busy"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_responses_raise(raw: bytes) -> None:
    with pytest.raises(GatewayError):
        parse_response(raw)


def test_parse_status_reads_string_integers_and_missing_leader() -> None:
    body = (
        b'{"header":{"cluster_id":"1","member_id":"12557951378378304903","revision":"5","raft_term":"2"},'
        b'"leader":"12557951378378304903","raftTerm":"2"}'
    )
    status = parse_status(body)
    assert status == MemberStatus(
        member_id=12557951378378304903, leader=12557951378378304903, revision=5, raft_term=2
    )
    assert status.is_leader
    leaderless = parse_status(b'{"header":{"member_id":"7","revision":"1"}}')
    assert (leaderless.leader, leaderless.raft_term, leaderless.is_leader) == (0, 0, False)
    with pytest.raises(GatewayError):
        parse_status(b'{"no":"header"}')
    with pytest.raises(GatewayError):
        parse_status(b'{"header":{"member_id":true}}')
