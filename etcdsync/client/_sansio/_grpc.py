"""gRPC over HTTP/2, the parts that are pure byte and header manipulation.

What lives here (spec: grpc/grpc ``doc/PROTOCOL-HTTP2.md``):

* message framing: each message is ``compressed-flag (1 byte) | length (4 bytes, big-endian) |
  payload``; :func:`encode_message` and the incremental :class:`MessageDecoder`;
* ``grpc-timeout`` encoding and decoding;
* status decoding from trailers, trailers-only responses, HTTP statuses and RST_STREAM codes,
  including the percent-decoding of ``grpc-message``;
* the request header block, HPACK-encoded here *statelessly* (see :class:`RequestHeaderTemplate`)
  so the constant part can be computed once per method and reused for every call.

Nothing here does I/O or knows about h2 or trio; the transport shell feeds bytes and header lists
in and turns the results into frames and exceptions.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from urllib.parse import unquote

import attrs

__all__ = [
    "FramingError",
    "GrpcStatus",
    "MessageDecoder",
    "RequestHeaderTemplate",
    "StatusCode",
    "decode_grpc_message",
    "decode_timeout",
    "encode_grpc_message",
    "encode_message",
    "encode_metadata",
    "encode_timeout",
    "status_from_http",
    "status_from_reset",
    "status_from_response_headers",
    "status_from_trailers",
    "validate_metadata",
]

Headers = Sequence[tuple[bytes, bytes]]


class StatusCode(enum.IntEnum):
    """The gRPC status codes (``grpc/status.h``)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


@attrs.frozen
class GrpcStatus:
    """How a call ended: ``code`` 0 is OK. ``trailers`` excludes the fields decoded into the others."""

    code: int
    message: str = ""
    trailers: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------------------------------------------------
# Message framing

#: Length-prefixed-message header: 1 flag byte + 4 length bytes.
MESSAGE_HEADER_LENGTH = 5


def encode_message(payload: bytes) -> bytes:
    """Frame one uncompressed message: flag 0, 4-byte big-endian length, then ``payload``."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


class FramingError(Exception):
    """The response's message stream breaks a rule; the call must fail with ``code``/``message``."""

    def __init__(self, code: StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class MessageDecoder:
    """Reassembles length-prefixed messages from DATA payloads cut at arbitrary points.

    ``feed`` returns the messages that are complete so far; bytes of an incomplete message stay
    inside (:attr:`buffered`). A message is copied once, when it completes, and a chunk holding whole
    messages only is never buffered at all (the common case for small responses).

    A message header announcing more than ``max_message_length`` bytes, or a set compressed flag (we
    never negotiate compression), raises :class:`FramingError` as soon as the 5-byte header has
    arrived, before the payload is buffered. The decoder is unusable afterwards.
    """

    def __init__(self, max_message_length: int) -> None:
        self._max = max_message_length
        self._buffer = bytearray()
        # Bytes the buffer must hold before parsing can make progress: a header, or a whole message.
        self._need = MESSAGE_HEADER_LENGTH

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held back."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every message it completes, in order."""
        if not self._buffer and len(data) >= MESSAGE_HEADER_LENGTH and not data[0]:
            # The usual DATA frame: exactly one whole uncompressed message.
            length = int.from_bytes(data[1:5], "big")
            if len(data) == MESSAGE_HEADER_LENGTH + length and length <= self._max:
                return [data[MESSAGE_HEADER_LENGTH:]]
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._need:
                return []
            view = memoryview(self._buffer)
        else:
            view = memoryview(data)
        messages: list[bytes] = []
        offset = 0
        end = len(view)
        need = MESSAGE_HEADER_LENGTH
        while end - offset >= MESSAGE_HEADER_LENGTH:
            length = self._check_header(view[offset], int.from_bytes(view[offset + 1 : offset + 5], "big"))
            stop = offset + MESSAGE_HEADER_LENGTH + length
            if stop > end:
                need = MESSAGE_HEADER_LENGTH + length
                break
            messages.append(view[offset + MESSAGE_HEADER_LENGTH : stop].tobytes())
            offset = stop
        rest = view[offset:].tobytes() if offset < end else b""
        view.release()
        # Rebuild rather than trim in place: trimming a bytearray's head is a memmove of the rest anyway,
        # and the rest is at most one partial message.
        self._buffer = bytearray(rest)
        self._need = need
        return messages

    def _check_header(self, flag: int, length: int) -> int:
        if flag == 1:
            raise FramingError(
                StatusCode.INTERNAL, "compressed message received, but no compression was negotiated"
            )
        if flag != 0:
            raise FramingError(StatusCode.INTERNAL, f"invalid message flags {flag:#04x}")
        if length > self._max:
            raise FramingError(
                StatusCode.RESOURCE_EXHAUSTED, f"received message larger than max ({length} vs. {self._max})"
            )
        return length


# ---------------------------------------------------------------------------------------------------------
# grpc-timeout

# Why this order: the spec allows at most 8 digits, and the finest unit that fits loses the least
# precision. Nanoseconds fit timeouts below 0.1 s, microseconds below 100 s, milliseconds below
# ~27.7 h; beyond that seconds, minutes, hours.
_TIMEOUT_UNITS: tuple[tuple[str, int], ...] = (
    ("n", 1),
    ("u", 1_000),
    ("m", 1_000_000),
    ("S", 1_000_000_000),
    ("M", 60_000_000_000),
    ("H", 3_600_000_000_000),
)
_TIMEOUT_SECONDS = {unit: size / 1e9 for unit, size in _TIMEOUT_UNITS}
_MAX_TIMEOUT_DIGITS = 99_999_999
_TIMEOUT_RE = re.compile(r"([0-9]{1,8})([HMSmun])")


def encode_timeout(seconds: float) -> str:
    """The ``grpc-timeout`` value for ``seconds`` from now, e.g. ``"1500000u"``.

    Rounds *up* to the unit, so the server's deadline is never earlier than ours: when it expires
    first, it is because of the network, not our rounding. Timeouts beyond the largest encodable one
    (99999999 hours) are clamped to it.

    Raises:
        ValueError: ``seconds`` is not > 0; a call whose deadline has passed must not be sent.
    """
    if not seconds > 0:  # also rejects NaN
        raise ValueError(f"timeout must be > 0 seconds, not {seconds}")
    if math.isinf(seconds):
        return f"{_MAX_TIMEOUT_DIGITS}H"
    # round() first: seconds * 1e9 carries float noise (0.3 s -> 300000000.00000006 ns) that ceil()
    # would turn into a spurious extra unit.
    nanos = max(1, math.ceil(round(seconds * 1e9, 3)))
    for unit, size in _TIMEOUT_UNITS:
        value = -(-nanos // size)
        if value <= _MAX_TIMEOUT_DIGITS:
            return f"{value}{unit}"
    return f"{_MAX_TIMEOUT_DIGITS}H"


def decode_timeout(value: str) -> float:
    """Seconds for a ``grpc-timeout`` value such as ``"123m"``.

    Raises:
        ValueError: not 1-8 digits followed by one of ``H M S m u n``.
    """
    match = _TIMEOUT_RE.fullmatch(value)
    if match is None:
        raise ValueError(f"invalid grpc-timeout {value!r}")
    return int(match[1]) * _TIMEOUT_SECONDS[match[2]]


# ---------------------------------------------------------------------------------------------------------
# Statuses

# Why: grpc-message is percent-encoded UTF-8 where everything outside printable ASCII, and '%'
# itself, is escaped (PROTOCOL-HTTP2.md "Responses").
_MESSAGE_SAFE = frozenset(range(0x20, 0x7F)) - {ord("%")}


def encode_grpc_message(message: str) -> str:
    """Percent-encode a status message for the ``grpc-message`` field."""
    return "".join(chr(byte) if byte in _MESSAGE_SAFE else f"%{byte:02X}" for byte in message.encode("utf-8"))


def decode_grpc_message(value: str) -> str:
    """Decode a ``grpc-message`` value.

    The spec says a decoder must never fail or drop the message: malformed escapes are kept as
    they are and invalid UTF-8 becomes U+FFFD.
    """
    return unquote(value, encoding="utf-8", errors="replace") if "%" in value else value


# Why: the HTTP statuses gRPC clients map when a response is not gRPC at all, typically an error
# page from a proxy (doc/http-grpc-status-mapping.md). Anything else is UNKNOWN.
_HTTP_TO_GRPC: dict[int, StatusCode] = {
    400: StatusCode.INTERNAL,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.UNIMPLEMENTED,
    429: StatusCode.UNAVAILABLE,
    502: StatusCode.UNAVAILABLE,
    503: StatusCode.UNAVAILABLE,
    504: StatusCode.UNAVAILABLE,
}

# Why: a RST_STREAM from the server ends a call without a status; PROTOCOL-HTTP2.md "Errors" gives
# the mapping. REFUSED_STREAM means the stream was not processed at all (safe to retry); CANCEL is
# the server cancelling; ENHANCE_YOUR_CALM is the server shedding load. Everything else is a bug
# somewhere, i.e. INTERNAL.
_RESET_TO_GRPC: dict[int, StatusCode] = {
    0x7: StatusCode.UNAVAILABLE,  # REFUSED_STREAM
    0x8: StatusCode.CANCELLED,  # CANCEL
    0xB: StatusCode.RESOURCE_EXHAUSTED,  # ENHANCE_YOUR_CALM
    0xC: StatusCode.PERMISSION_DENIED,  # INADEQUATE_SECURITY
}

# Fields that a status already describes, left out of GrpcStatus.trailers.
_STATUS_FIELDS = frozenset({b"content-type", b"grpc-status", b"grpc-message"})


def status_from_http(http_status: int) -> GrpcStatus:
    """The status of a response whose HTTP status is not 200."""
    code = _HTTP_TO_GRPC.get(http_status, StatusCode.UNKNOWN)
    return GrpcStatus(code, f"unexpected HTTP status code received from server: {http_status}")


def status_from_reset(error_code: int) -> GrpcStatus:
    """The status of a call the server reset with RST_STREAM(``error_code``)."""
    code = _RESET_TO_GRPC.get(error_code, StatusCode.INTERNAL)
    return GrpcStatus(code, f"stream reset by the server with HTTP/2 error code {error_code:#x}")


def status_from_trailers(headers: Headers) -> GrpcStatus:
    """The status carried by a trailer block (or a trailers-only response's header block).

    A missing ``grpc-status`` is UNKNOWN and an unparsable one INTERNAL, as in grpc-go.
    """
    status: bytes | None = None
    message = ""
    trailers: list[tuple[str, str]] = []
    for name, value in headers:
        if name == b"grpc-status":
            status = value
        elif name == b"grpc-message":
            message = decode_grpc_message(value.decode("latin-1"))
        elif name not in _STATUS_FIELDS and not name.startswith(b":"):
            trailers.append((name.decode("latin-1"), value.decode("latin-1")))
    if status is None:
        return GrpcStatus(StatusCode.UNKNOWN, "server sent trailers without grpc-status", tuple(trailers))
    if not (status.isdigit() and len(status) <= 10):
        return GrpcStatus(StatusCode.INTERNAL, f"malformed grpc-status {status!r}", tuple(trailers))
    return GrpcStatus(int(status), message, tuple(trailers))


def status_from_response_headers(headers: Headers, *, end_stream: bool) -> GrpcStatus | None:
    """Check a response's first header block; return the call's status if these headers end it.

    * ``end_stream`` (a trailers-only response): the status in the block, or the HTTP status's
      mapping when it is not 200 and carries no ``grpc-status``.
    * otherwise ``None`` when the response is a gRPC response (``:status 200`` and an
      ``application/grpc`` content type), else the status describing why it is not.
    """
    http_status = b""
    content_type = b""
    has_status = False
    for name, value in headers:
        if name == b":status":
            http_status = value
        elif name == b"content-type":
            content_type = value
        elif name == b"grpc-status":
            has_status = True
    if end_stream and has_status:
        return status_from_trailers(headers)
    if http_status != b"200":
        return status_from_http(int(http_status) if http_status.isdigit() else 0)
    if not (
        content_type == b"application/grpc"
        or content_type.startswith((b"application/grpc+", b"application/grpc;"))
    ):
        return GrpcStatus(StatusCode.UNKNOWN, f"unexpected content-type {content_type.decode('latin-1')!r}")
    if end_stream:
        return GrpcStatus(StatusCode.UNKNOWN, "server ended the response without grpc-status")
    return None


# ---------------------------------------------------------------------------------------------------------
# Request headers, HPACK-encoded without state
#
# Why stateless: the client never needs HPACK's dynamic table to win. Request headers are ~10
# fields of which all but the timeout and metadata are constant per method, so encoding them once
# and concatenating bytes per call is far cheaper than running an HPACK encoder (the prototype's
# profile: h2 + hpack are two thirds of the client's CPU). Using only the static table and
# "literal without indexing" representations (RFC 7541 6.1, 6.2.2) leaves the server's decoder
# state untouched, so blocks can be reused across calls and connections.

# RFC 7541 Appendix A entries we use: full matches are one byte; name matches save the name.
_HPACK_METHOD_POST = 3
_HPACK_PATH = 4
_HPACK_SCHEME_HTTP = 6
_HPACK_SCHEME_HTTPS = 7
_HPACK_AUTHORITY = 1
_HPACK_CONTENT_TYPE = 31
_HPACK_USER_AGENT = 58


def _hpack_int(value: int, prefix_bits: int, flags: int) -> bytes:
    """RFC 7541 5.1 integer with an N-bit prefix; ``flags`` fills the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_str(value: bytes) -> bytes:
    # Raw octets, no Huffman: cheaper to produce, and loopback/LAN bytes are not the bottleneck.
    return _hpack_int(len(value), 7, 0x00) + value


def _literal_indexed_name(index: int, value: bytes) -> bytes:
    return _hpack_int(index, 4, 0x00) + _hpack_str(value)


def _literal(name: bytes, value: bytes) -> bytes:
    return b"\x00" + _hpack_str(name) + _hpack_str(value)


#: An HPACK "dynamic table size update" to 0, for the start of a header block (RFC 7541 6.3).
HPACK_TABLE_SIZE_ZERO = _hpack_int(0, 5, 0x20)

_METADATA_NAME_RE = re.compile(r"[0-9a-z_.\-]+")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/=]*")
# Why reserved: these are set by the transport itself, or are HTTP/2 connection-specific fields
# that must not appear at all (RFC 9113 8.2.2); "grpc-" names are reserved by the gRPC spec.
_RESERVED_METADATA = frozenset(
    {
        "content-type",
        "te",
        "user-agent",
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    }
)


def validate_metadata(metadata: Sequence[tuple[str, str]]) -> None:
    """Check call metadata against the gRPC spec.

    Raises:
        ValueError: a name that is not lowercase ``[0-9a-z_.-]``, a reserved name, or a value that
            is not printable ASCII (base64 for ``-bin`` names).
    """
    for name, value in metadata:
        if not _METADATA_NAME_RE.fullmatch(name):
            raise ValueError(f"invalid metadata name {name!r}: use lowercase [0-9a-z_.-]")
        if name in _RESERVED_METADATA or name.startswith("grpc-"):
            raise ValueError(f"metadata name {name!r} is reserved")
        if name.endswith("-bin"):
            if not _BASE64_RE.fullmatch(value):
                raise ValueError(f"metadata {name!r} must be base64-encoded")
        elif not (value.isascii() and value.isprintable()):
            raise ValueError(f"metadata {name!r} must be printable ASCII")


def encode_metadata(metadata: Sequence[tuple[str, str]]) -> bytes:
    """HPACK-encode validated ``metadata`` as literal fields without indexing."""
    return b"".join(_literal(name.encode("ascii"), value.encode("ascii")) for name, value in metadata)


@attrs.frozen
class RequestHeaderTemplate:
    """The constant part of the request header block of every call to one method on one server.

    Example::

        template = RequestHeaderTemplate(
            scheme="http", authority="127.0.0.1:2379", user_agent="etcdsync/0.1"
        )
        prefix = template.encode_prefix("/etcdserverpb.KV/Range")      # cache this per path
        block = prefix + template.encode_variable("4999000u", encode_metadata(md))

    The fields come in the order gRPC requires: pseudo-headers, ``content-type``, ``te``,
    ``user-agent``, then ``grpc-timeout`` and custom metadata.
    """

    scheme: str
    authority: str
    user_agent: str

    def encode_prefix(self, path: str) -> bytes:
        """The encoded constant fields for calls to ``path``."""
        scheme = _HPACK_SCHEME_HTTPS if self.scheme == "https" else _HPACK_SCHEME_HTTP
        return b"".join(
            (
                _hpack_int(_HPACK_METHOD_POST, 7, 0x80),
                _hpack_int(scheme, 7, 0x80),
                _literal_indexed_name(_HPACK_PATH, path.encode("ascii")),
                _literal_indexed_name(_HPACK_AUTHORITY, self.authority.encode("ascii")),
                _literal_indexed_name(_HPACK_CONTENT_TYPE, b"application/grpc"),
                _literal(b"te", b"trailers"),
                _literal_indexed_name(_HPACK_USER_AGENT, self.user_agent.encode("ascii")),
            )
        )

    @staticmethod
    def encode_variable(timeout: str | None, encoded_metadata: bytes) -> bytes:
        """The per-call fields: ``grpc-timeout`` (when there is a deadline) and metadata."""
        if timeout is None:
            return encoded_metadata
        return _literal(b"grpc-timeout", timeout.encode("ascii")) + encoded_metadata
