"""etcdsync.client._sansio._grpc: framing, grpc-timeout, statuses, metadata and header blocks (no I/O)."""

from __future__ import annotations

import random

import hpack
import pytest

from etcdsync.client._sansio._grpc import (
    HPACK_TABLE_SIZE_ZERO,
    FramingError,
    GrpcStatus,
    MessageDecoder,
    RequestHeaderTemplate,
    StatusCode,
    decode_grpc_message,
    decode_timeout,
    encode_grpc_message,
    encode_message,
    encode_metadata,
    encode_timeout,
    status_from_http,
    status_from_reset,
    status_from_response_headers,
    status_from_trailers,
    validate_metadata,
)

# ---------------------------------------------------------------------------------------------------------
# Framing


def test_encode_message_prefix() -> None:
    assert encode_message(b"") == b"\x00\x00\x00\x00\x00"
    assert encode_message(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert encode_message(b"x" * 70000)[:5] == b"\x00\x00\x01\x11\x70"


def test_decoder_whole_messages_in_one_chunk() -> None:
    decoder = MessageDecoder(100)
    data = encode_message(b"a") + encode_message(b"") + encode_message(b"ccc")
    assert decoder.feed(data) == [b"a", b"", b"ccc"]
    assert decoder.buffered == 0
    assert decoder.feed(b"") == []


@pytest.mark.parametrize("seed", range(20))
def test_decoder_reassembles_across_arbitrary_chunk_boundaries(seed: int) -> None:
    rng = random.Random(seed)
    messages = [rng.randbytes(rng.choice([0, 1, 4, 5, 6, 100, 3000])) for _ in range(30)]
    stream = b"".join(encode_message(m) for m in messages)
    decoder = MessageDecoder(10_000)
    out: list[bytes] = []
    position = 0
    while position < len(stream):
        step = rng.choice([1, 2, 3, 4, 5, 6, 7, 64, 1000, 5000])
        out.extend(decoder.feed(stream[position : position + step]))
        position += step
    assert out == messages
    assert decoder.buffered == 0


def test_decoder_byte_by_byte_and_buffered_count() -> None:
    decoder = MessageDecoder(100)
    framed = encode_message(b"hello")
    for i, byte in enumerate(framed[:-1]):
        assert decoder.feed(bytes([byte])) == []
        assert decoder.buffered == i + 1
    assert decoder.feed(framed[-1:]) == [b"hello"]
    assert decoder.buffered == 0
    # A partial message after a whole one stays buffered.
    assert decoder.feed(framed + framed[:7]) == [b"hello"]
    assert decoder.buffered == 7
    assert decoder.feed(framed[7:]) == [b"hello"]


def test_decoder_max_length_is_inclusive_and_checked_at_the_header() -> None:
    decoder = MessageDecoder(4)
    assert decoder.feed(encode_message(b"1234")) == [b"1234"]
    with pytest.raises(FramingError) as info:
        decoder.feed(b"\x00\x00\x00\x00\x05")  # only the header: no payload needed to refuse
    assert info.value.code is StatusCode.RESOURCE_EXHAUSTED
    assert info.value.message == "received message larger than max (5 vs. 4)"
    assert str(info.value) == info.value.message


def test_decoder_refuses_oversized_message_split_in_its_header() -> None:
    decoder = MessageDecoder(10)
    assert decoder.feed(b"\x00\xff") == []
    with pytest.raises(FramingError, match=r"\(4294967295 vs\. 10\)"):
        decoder.feed(b"\xff\xff\xff")


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (1, "compressed message received, but no compression was negotiated"),
        (2, "invalid message flags 0x02"),
        (0x80, "invalid message flags 0x80"),
    ],
)
def test_decoder_refuses_flags(flag: int, message: str) -> None:
    with pytest.raises(FramingError) as info:
        MessageDecoder(100).feed(bytes([flag]) + b"\x00\x00\x00\x01x")
    assert (info.value.code, info.value.message) == (StatusCode.INTERNAL, message)


# ---------------------------------------------------------------------------------------------------------
# grpc-timeout


@pytest.mark.parametrize(
    ("seconds", "encoded"),
    [
        (1e-9, "1n"),
        (1e-12, "1n"),  # never 0: the smallest positive timeout
        (0.0999999, "99999900n"),
        (0.099999999, "99999999n"),
        (0.1, "100000u"),  # 9 digits of ns do not fit: next unit
        (0.3, "300000u"),  # no float noise (0.3 * 1e9 = 300000000.00000006)
        (1.5, "1500000u"),
        (5.0, "5000000u"),
        (99.999999, "99999999u"),
        (100.0, "100000m"),
        (0.1234567891, "123457u"),  # rounded up, never down
        (99_999.999, "99999999m"),
        (100_000.0, "100000S"),
        (99_999_999.0, "99999999S"),
        (100_000_000.0, "1666667M"),
        (6e9, "1666667H"),
        (99_999_999 * 3600.0, "99999999H"),
        (1e20, "99999999H"),
        (float("inf"), "99999999H"),
    ],
)
def test_encode_timeout(seconds: float, encoded: str) -> None:
    assert encode_timeout(seconds) == encoded
    assert len(encoded) <= 9
    if seconds < 1e15:
        assert decode_timeout(encoded) >= seconds * (1 - 1e-12)


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), float("-inf")])
def test_encode_timeout_refuses_non_positive(seconds: float) -> None:
    with pytest.raises(ValueError, match="timeout must be > 0"):
        encode_timeout(seconds)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1n", 1e-9), ("5000000u", 5.0), ("123m", 0.123), ("7S", 7.0), ("2M", 120.0), ("1H", 3600.0)],
)
def test_decode_timeout(value: str, seconds: float) -> None:
    assert decode_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "5", "S", "123456789S", "1s", "1.5S", "-1S", " 1S"])
def test_decode_timeout_refuses_garbage(value: str) -> None:
    with pytest.raises(ValueError, match="invalid grpc-timeout"):
        decode_timeout(value)


# ---------------------------------------------------------------------------------------------------------
# Statuses


@pytest.mark.parametrize(
    ("message", "encoded"),
    [
        ("", ""),
        ("plain text: ok!", "plain text: ok!"),
        ("100%", "100%25"),
        ("é", "%C3%A9"),
        ("line\nbreak\t", "line%0Abreak%09"),
        ("\x7f", "%7F"),
    ],
)
def test_grpc_message_percent_encoding_roundtrip(message: str, encoded: str) -> None:
    assert encode_grpc_message(message) == encoded
    assert decode_grpc_message(encoded) == message


def test_grpc_message_decoding_is_lenient() -> None:
    assert decode_grpc_message("bad %ZZ escape %") == "bad %ZZ escape %"
    assert decode_grpc_message("%FF") == "\ufffd"  # invalid UTF-8 is replaced, not an error
    assert decode_grpc_message("a+b") == "a+b"  # not form encoding


def test_status_from_trailers() -> None:
    status = status_from_trailers(
        [
            (b"grpc-status", b"11"),
            (b"grpc-message", b"etcdserver: mvcc: required revision is a future revision"),
            (b"x-etcd", b"1"),
            (b"content-type", b"application/grpc"),
            (b":status", b"200"),
        ]
    )
    assert status == GrpcStatus(
        11, "etcdserver: mvcc: required revision is a future revision", (("x-etcd", "1"),)
    )
    assert status_from_trailers([(b"grpc-status", b"0")]) == GrpcStatus(0)


def test_status_from_trailers_missing_or_malformed() -> None:
    assert status_from_trailers([(b"x", b"y")]) == GrpcStatus(
        StatusCode.UNKNOWN, "server sent trailers without grpc-status", (("x", "y"),)
    )
    for bad in (b"", b"abc", b"-1", b"12345678901"):
        status = status_from_trailers([(b"grpc-status", bad)])
        assert status.code == StatusCode.INTERNAL
        assert status.message == f"malformed grpc-status {bad!r}"


@pytest.mark.parametrize(
    ("http_status", "code"),
    [(400, 13), (401, 16), (403, 7), (404, 12), (429, 14), (502, 14), (503, 14), (504, 14), (500, 2), (0, 2)],
)
def test_status_from_http(http_status: int, code: int) -> None:
    assert status_from_http(http_status) == GrpcStatus(
        code, f"unexpected HTTP status code received from server: {http_status}"
    )


@pytest.mark.parametrize(
    ("error_code", "code"), [(0, 13), (1, 13), (2, 13), (7, 14), (8, 1), (0xB, 8), (0xC, 7), (0x99, 13)]
)
def test_status_from_reset(error_code: int, code: int) -> None:
    status = status_from_reset(error_code)
    assert status.code == code
    assert status.message == f"stream reset by the server with HTTP/2 error code {error_code:#x}"


OK_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]


def test_status_from_response_headers() -> None:
    assert status_from_response_headers(OK_HEADERS, end_stream=False) is None
    for content_type in (b"application/grpc+proto", b"application/grpc;charset=utf-8"):
        headers = [(b":status", b"200"), (b"content-type", content_type)]
        assert status_from_response_headers(headers, end_stream=False) is None
    # Trailers-only.
    trailers_only = [*OK_HEADERS, (b"grpc-status", b"5"), (b"grpc-message", b"not%20found")]
    assert status_from_response_headers(trailers_only, end_stream=True) == GrpcStatus(5, "not found")
    assert status_from_response_headers([*OK_HEADERS, (b"grpc-status", b"0")], end_stream=True) == GrpcStatus(
        0
    )
    # A grpc-status wins over a non-200 HTTP status in a trailers-only response.
    assert status_from_response_headers(
        [(b":status", b"503"), (b"grpc-status", b"14")], end_stream=True
    ) == GrpcStatus(14)
    # Ended without any status.
    assert status_from_response_headers(OK_HEADERS, end_stream=True) == GrpcStatus(
        StatusCode.UNKNOWN, "server ended the response without grpc-status"
    )


def test_status_from_response_headers_not_grpc() -> None:
    assert status_from_response_headers([(b":status", b"503")], end_stream=False) == status_from_http(503)
    assert status_from_response_headers([(b":status", b"5x3")], end_stream=True) == status_from_http(0)
    assert status_from_response_headers([], end_stream=False) == status_from_http(0)
    for content_type in (b"text/html", b"", b"application/grpcx"):
        status = status_from_response_headers(
            [(b":status", b"200"), (b"content-type", content_type)], end_stream=False
        )
        assert status == GrpcStatus(StatusCode.UNKNOWN, f"unexpected content-type {content_type.decode()!r}")


# ---------------------------------------------------------------------------------------------------------
# Metadata and header blocks


def test_validate_metadata_accepts() -> None:
    validate_metadata(
        [("token", "abc.DEF-123_~ !"), ("hasleader", "true"), ("x.y_z-1", ""), ("t-bin", "AAE+/w==")]
    )
    validate_metadata(())


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("Token", "x", "invalid metadata name 'Token'"),
        ("", "x", "invalid metadata name ''"),
        (":path", "x", "invalid metadata name"),
        ("to ken", "x", "invalid metadata name"),
        ("grpc-timeout", "1S", "'grpc-timeout' is reserved"),
        ("content-type", "x", "is reserved"),
        ("te", "x", "is reserved"),
        ("connection", "close", "is reserved"),
        ("token", "é", "must be printable ASCII"),
        ("token", "a\nb", "must be printable ASCII"),
        ("t-bin", "not base64!", "must be base64-encoded"),
    ],
)
def test_validate_metadata_refuses(name: str, value: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_metadata([("ok", "fine"), (name, value)])


def _decode(block: bytes) -> list[tuple[str, str]]:
    decoder = hpack.Decoder()
    return [(k.decode(), v.decode()) for k, v in decoder.decode(block, raw=True)]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_request_header_block_decodes_with_a_fresh_hpack_decoder(scheme: str) -> None:
    template = RequestHeaderTemplate(scheme=scheme, authority="127.0.0.1:2379", user_agent="etcdsync/0.1")
    metadata = [("token", "t" * 300), ("hasleader", "true")]
    prefix = template.encode_prefix("/etcdserverpb.KV/Range")
    block = prefix + template.encode_variable("4999000u", encode_metadata(metadata))
    expected = [
        (":method", "POST"),
        (":scheme", scheme),
        (":path", "/etcdserverpb.KV/Range"),
        (":authority", "127.0.0.1:2379"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "etcdsync/0.1"),
        ("grpc-timeout", "4999000u"),
        *metadata,
    ]
    assert _decode(block) == expected
    # Stateless: the same decoder can decode the same block again (nothing was added to its table),
    # and a block may start with a table size update.
    decoder = hpack.Decoder()
    for _ in range(3):
        assert [(k.decode(), v.decode()) for k, v in decoder.decode(block, raw=True)] == expected
        assert decoder.header_table_size == 4096 and len(decoder.header_table.dynamic_entries) == 0
    assert _decode(HPACK_TABLE_SIZE_ZERO + block) == expected
    assert _decode(prefix + template.encode_variable(None, b"")) == expected[:7]


def test_long_values_use_multi_byte_lengths() -> None:
    template = RequestHeaderTemplate(scheme="http", authority="h:1", user_agent="u")
    path = "/" + "p" * 20_000
    assert _decode(template.encode_prefix(path))[2] == (":path", path)
