"""A tiny HTTP/1.1 client for etcd's JSON gateway, so the harness never needs the client under test.

etcd 3.4 serves a grpc-gateway on its client port next to gRPC: ``POST /v3/<service>/<method>`` with a JSON
body (bytes as base64, 64-bit integers as JSON *strings*) and ``GET /health``. That is all the harness needs
to tell whether a member answers and who it thinks the leader is.

The module is split the sans-IO way:

* :func:`build_request` and :func:`parse_response` are pure functions over bytes;
* :func:`request` (trio) and :func:`request_sync` (blocking sockets, for session-scoped pytest fixtures, which
  run outside any trio run) only move those bytes. Every request says ``Connection: close``, so a response
  ends at EOF.

Nothing here sets a timeout on the trio side: callers bound each probe with ``trio.move_on_after``.
"""

from __future__ import annotations

import json
import socket
import ssl

import attrs
import trio

__all__ = (
    "GatewayError",
    "HttpResponse",
    "MemberStatus",
    "build_request",
    "gateway_post",
    "health",
    "health_sync",
    "member_status",
    "parse_response",
    "parse_status",
    "request",
    "request_sync",
)

# A gateway reply is a few hundred bytes; anything near this is not etcd talking.
_MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class GatewayError(Exception):
    """The peer's reply was not a well-formed HTTP/1.1 response, or not the JSON the gateway sends.

    Example:
        >>> parse_response(b"garbage")
        Traceback (most recent call last):
        ...
        etcdsync.testing.GatewayError: malformed HTTP status line: b'garbage'
    """


@attrs.frozen(kw_only=True)
class HttpResponse:
    """A parsed HTTP/1.1 response.

    Attributes:
        status: The status code, e.g. ``200``.
        headers: Header names lower-cased, values as sent.
        body: The body, de-chunked.
    """

    status: int
    headers: dict[str, str]
    body: bytes


@attrs.frozen(kw_only=True)
class MemberStatus:
    """What ``/v3/maintenance/status`` says about one member.

    Attributes:
        member_id: The answering member's raft id.
        leader: The id of the leader it knows of, or ``0`` when it knows none.
        revision: The member's current store revision.
        raft_term: The member's raft term.

    Example:
        >>> status = parse_status(b'{"header":{"member_id":"7","revision":"1"},"leader":"7","raftTerm":"2"}')
        >>> status.is_leader
        True
    """

    member_id: int
    leader: int
    revision: int
    raft_term: int

    @property
    def is_leader(self) -> bool:
        """Whether the member believes it is the leader."""
        return self.leader != 0 and self.leader == self.member_id


def _split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"endpoint must look like 'host:port', got {endpoint!r}")
    return host, int(port)


def build_request(method: str, path: str, endpoint: str, body: bytes | None = None) -> bytes:
    """Serialize one ``Connection: close`` HTTP/1.1 request.

    Example:
        >>> build_request("GET", "/health", "127.0.0.1:2379")
        b'GET /health HTTP/1.1\\r\\nHost: 127.0.0.1:2379\\r\\nConnection: close\\r\\n\\r\\n'
    """
    lines = [f"{method} {path} HTTP/1.1", f"Host: {endpoint}", "Connection: close"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (body or b"")


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, sep, rest = data.partition(b"\r\n")
        if not sep:
            raise GatewayError("truncated chunked body")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise GatewayError(f"malformed chunk size: {size_line[:40]!r}") from None
        if size == 0:
            return bytes(out)
        if len(rest) < size + 2:
            raise GatewayError("truncated chunked body")
        out += rest[:size]
        data = rest[size + 2 :]


def parse_response(data: bytes) -> HttpResponse:
    """Parse a complete HTTP/1.1 response, as read up to EOF.

    Raises:
        GatewayError: The bytes are not a complete HTTP/1.1 response.

    Example:
        >>> parse_response(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{}").body
        b'{}'
    """
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise GatewayError(f"malformed HTTP status line: {data[:80]!r}")
    status_line, *header_lines = head.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise GatewayError(f"malformed HTTP status line: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(b":")
        if not colon:
            raise GatewayError(f"malformed HTTP header: {line[:80]!r}")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(rest)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if len(rest) < length:
            raise GatewayError(f"truncated body: {len(rest)} of {length} bytes")
        body = rest[:length]
    else:
        body = rest
    return HttpResponse(status=int(parts[1]), headers=headers, body=body)


def _unverified_tls() -> ssl.SSLContext:
    # The harness only asks a member it started itself who leads; it has no business checking its certificate.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def request(
    method: str, path: str, endpoint: str, body: bytes | None = None, *, tls: bool = False
) -> HttpResponse:
    """Send one request to ``endpoint`` with trio and read the whole response.

    Waits as long as the server takes; bound it with ``trio.move_on_after``. Always checkpoints. With ``tls``,
    speaks HTTPS without verifying the certificate and without a client certificate.

    Raises:
        OSError: The connection could not be made.
        trio.BrokenResourceError: The connection broke.
        GatewayError: The reply was not HTTP/1.1.
    """
    host, port = _split_endpoint(endpoint)
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    if tls:
        stream = trio.SSLStream(stream, _unverified_tls(), https_compatible=True)
    async with stream:
        await stream.send_all(build_request(method, path, endpoint, body))
        received = bytearray()
        while chunk := await stream.receive_some(65536):
            received += chunk
            if len(received) > _MAX_RESPONSE_BYTES:
                raise GatewayError("response too large")
    return parse_response(bytes(received))


def request_sync(
    method: str, path: str, endpoint: str, body: bytes | None = None, *, timeout: float
) -> HttpResponse:
    """Blocking twin of :func:`request`, for code that runs outside trio (session-scoped fixtures).

    Raises:
        OSError: Connecting failed, the connection broke, or ``timeout`` seconds passed on a socket operation
            (``TimeoutError`` is an ``OSError``).
        GatewayError: The reply was not HTTP/1.1.
    """
    with socket.create_connection(_split_endpoint(endpoint), timeout=timeout) as sock:
        sock.sendall(build_request(method, path, endpoint, body))
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
            if len(received) > _MAX_RESPONSE_BYTES:
                raise GatewayError("response too large")
    return parse_response(bytes(received))


def _decode_json_object(response: HttpResponse, path: str) -> dict[str, object]:
    if response.status != 200:
        raise GatewayError(f"{path}: HTTP {response.status}: {response.body[:200]!r}")
    try:
        decoded: object = json.loads(response.body)
    except ValueError as exc:
        raise GatewayError(f"{path}: reply is not JSON: {response.body[:200]!r}") from exc
    if not isinstance(decoded, dict):
        raise GatewayError(f"{path}: reply is not a JSON object: {response.body[:200]!r}")
    return decoded


async def gateway_post(
    endpoint: str, path: str, body: dict[str, object], *, tls: bool = False
) -> dict[str, object]:
    """POST ``body`` as JSON to etcd's gateway and return the decoded JSON object.

    Bytes fields are base64 strings and 64-bit integers come back as strings, as in the grpc-gateway.

    Raises:
        OSError, trio.BrokenResourceError: The member is not reachable.
        GatewayError: A non-200 status or a reply that is not a JSON object.

    Example:
        >>> await gateway_post(server.endpoint, "/v3/kv/range", {"key": "YQ=="})  # doctest: +SKIP
        {'header': {...}, 'kvs': [...], 'count': '1'}
    """
    response = await request("POST", path, endpoint, json.dumps(body).encode(), tls=tls)
    return _decode_json_object(response, path)


def _as_int(value: object, what: str) -> int:
    if value is None:
        return 0  # proto3 JSON leaves zero values out
    if isinstance(value, str | int) and not isinstance(value, bool):
        return int(value)
    raise GatewayError(f"status field {what} is not an integer: {value!r}")


def parse_status(body: bytes) -> MemberStatus:
    """Decode a ``/v3/maintenance/status`` reply.

    Raises:
        GatewayError: The body is not a status reply.
    """
    try:
        decoded: object = json.loads(body)
    except ValueError as exc:
        raise GatewayError(f"status reply is not JSON: {body[:200]!r}") from exc
    if not isinstance(decoded, dict) or not isinstance(decoded.get("header"), dict):
        raise GatewayError(f"status reply has no header: {body[:200]!r}")
    header = decoded["header"]
    return MemberStatus(
        member_id=_as_int(header.get("member_id"), "header.member_id"),
        leader=_as_int(decoded.get("leader"), "leader"),
        revision=_as_int(header.get("revision"), "header.revision"),
        raft_term=_as_int(decoded.get("raftTerm"), "raftTerm"),
    )


async def member_status(endpoint: str, *, tls: bool = False) -> MemberStatus:
    """Ask one member for its status through the gateway.

    The call is answered locally by the member, even without a leader. It waits as long as the member
    takes, which is forever for a paused member: bound it with ``trio.move_on_after``.

    Raises:
        OSError, trio.BrokenResourceError: The member is not reachable.
        GatewayError: The reply was malformed.
    """
    response = await request("POST", "/v3/maintenance/status", endpoint, b"{}", tls=tls)
    if response.status != 200:
        raise GatewayError(f"status: HTTP {response.status}: {response.body[:200]!r}")
    return parse_status(response.body)


def _is_healthy(response: HttpResponse) -> bool:
    # 3.4 answers {"health":"true"} only with a leader, no alarm, and a served quorum read.
    try:
        decoded: object = json.loads(response.body)
    except ValueError:
        return False
    return response.status == 200 and isinstance(decoded, dict) and decoded.get("health") == "true"


async def health(endpoint: str) -> bool:
    """``GET /health`` and tell whether the member reports itself healthy.

    Raises:
        OSError, trio.BrokenResourceError: The member is not reachable.
        GatewayError: The reply was not HTTP/1.1.
    """
    return _is_healthy(await request("GET", "/health", endpoint))


def health_sync(endpoint: str, *, timeout: float) -> bool:
    """Blocking twin of :func:`health`; ``timeout`` bounds each socket operation."""
    return _is_healthy(request_sync("GET", "/health", endpoint, timeout=timeout))


async def metric(endpoint: str, name: str, *, tls: bool = False) -> float:
    """The value of the unlabelled Prometheus metric ``name`` from ``GET /metrics`` on ``endpoint``.

    For example ``await metric(server.endpoint, "etcd_debugging_mvcc_watcher_total")``.

    Raises:
        OSError, trio.BrokenResourceError: The member is not reachable.
        GatewayError: The reply was not HTTP/1.1 200, or has no such metric.
    """
    response = await request("GET", "/metrics", endpoint, tls=tls)
    if response.status != 200:
        raise GatewayError(f"/metrics: HTTP {response.status}")
    for line in response.body.decode("utf-8", "replace").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise GatewayError(f"/metrics has no unlabelled metric {name!r}")
