"""The h2 adjustments of ``_h2proto``, driven synchronously against h2's own server side."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import hpack
import pytest

from etcdsync.client._sansio._grpc import HPACK_TABLE_SIZE_ZERO, RequestHeaderTemplate
from etcdsync.client._transport._h2hpack import _BlockEncoder, _CachingDecoder
from etcdsync.client._transport._h2proto import H2Protocol, PreEncodedBlock, new_h2_protocol


def test_caching_decoder_never_returns_stale_headers() -> None:
    encoder = hpack.Encoder()
    decoder = _CachingDecoder()
    plain = hpack.Decoder()

    def roundtrip(headers: list[tuple[bytes, bytes]]) -> bytes:
        block = encoder.encode(headers)
        assert decoder.decode(block, raw=True) == plain.decode(block, raw=True) == headers
        return block

    first = roundtrip([(b"content-type", b"application/grpc"), (b"x-a", b"1")])  # inserts
    warm = roundtrip([(b"content-type", b"application/grpc"), (b"x-a", b"1")])  # indexed only
    assert warm != first
    assert roundtrip([(b"content-type", b"application/grpc"), (b"x-a", b"1")]) == warm  # cache hit
    # "Index 62" means the newest entry: the same bytes change meaning after an insertion.
    newest = b"\xbe"
    assert decoder.decode(newest, raw=True) == plain.decode(newest, raw=True) == [(b"x-a", b"1")]
    roundtrip([(b"x-b", b"2")])
    assert decoder.decode(newest, raw=True) == plain.decode(newest, raw=True) == [(b"x-b", b"2")]
    # A table size update evicts everything: the cached meaning of `warm` must not survive it.
    encoder.header_table_size = 0
    block = encoder.encode([(b"x-c", b"3")])
    assert block.startswith(b"\x20")
    assert decoder.decode(block, raw=True) == [(b"x-c", b"3")]
    assert decoder.header_table_size == 0
    with pytest.raises(hpack.HPACKDecodingError):
        decoder.decode(warm, raw=True)
    # Non-raw decoding is passed through.
    assert decoder.decode(hpack.Encoder().encode([(b"k", b"v")])) == [("k", "v")]


def test_caching_decoder_bounds_its_cache() -> None:
    decoder = _CachingDecoder()
    for i in range(300):
        block = b"\x00\x01k" + bytes([len(str(i))]) + str(i).encode()  # literal without indexing
        assert decoder.decode(block, raw=True) == [(b"k", str(i).encode())]
    assert len(decoder._cache) <= 256


def test_block_encoder_passes_pre_encoded_blocks_and_signals_table_size_changes() -> None:
    encoder = _BlockEncoder()
    block = RequestHeaderTemplate(scheme="http", authority="h:1", user_agent="u").encode_prefix("/a/b")
    assert encoder.encode([PreEncodedBlock(b"", block)]) == block
    encoder.header_table_size = 1024  # the server's SETTINGS_HEADER_TABLE_SIZE changed
    assert encoder.header_table_size == 0
    assert encoder.encode([PreEncodedBlock(b"", block)]) == HPACK_TABLE_SIZE_ZERO + block
    assert encoder.encode([PreEncodedBlock(b"", block)]) == block
    with pytest.raises(TypeError, match="pre-encoded"):
        encoder.encode([(b":path", b"/")])


def _server() -> h2.connection.H2Connection:
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    return server


def _exchange(client: H2Protocol, server: h2.connection.H2Connection) -> list[h2.events.Event]:
    events = server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    return events


def _request(client: H2Protocol, path: str = "/a/b") -> int:
    stream_id = client.get_next_available_stream_id()
    block = RequestHeaderTemplate(scheme="http", authority="h:1", user_agent="u").encode_prefix(path)
    client.send_headers(stream_id, [PreEncodedBlock(b"", block)], end_stream=True)
    client.open_calls += 1
    return stream_id


def test_requests_are_valid_for_a_validating_server() -> None:
    client = new_h2_protocol(16 * 1024 * 1024)
    server = _server()
    _exchange(client, server)
    _request(client)
    (event,) = [e for e in _exchange(client, server) if isinstance(e, h2.events.RequestReceived)]
    assert (b":path", b"/a/b") in event.headers
    # Our windows: 16 MiB per stream (a setting) and for the connection (a WINDOW_UPDATE).
    assert server.remote_settings.initial_window_size == 16 * 1024 * 1024
    assert server.local_flow_control_window(event.stream_id) == 16 * 1024 * 1024


def test_open_stream_count_is_ours_and_closed_streams_are_swept() -> None:
    client = new_h2_protocol(65535)
    server = _server()
    _exchange(client, server)
    for _ in range(200):
        stream_id = _request(client)
        _exchange(client, server)
        server.send_headers(stream_id, [(b":status", b"200"), (b"grpc-status", b"0")], end_stream=True)
        _exchange(client, server)
        client.open_calls -= 1  # what Connection does when the stream closes
        assert client.open_outbound_streams == 0
        assert len(client.streams) <= 64 + 1


def test_goaway_keeps_the_connection_usable_for_lower_streams() -> None:
    client = new_h2_protocol(65535)
    server = _server()
    _exchange(client, server)
    low, high = _request(client), _request(client)
    _exchange(client, server)
    server.close_connection(last_stream_id=low)  # h2's server would refuse to send more after this,
    goaway = server.data_to_send()  # so take its frame and answer on a fresh server state instead
    (event,) = client.receive_data(goaway)
    assert isinstance(event, h2.events.ConnectionTerminated)
    assert (event.last_stream_id, event.error_code) == (low, 0)
    # Frames for the lower stream still flow both ways.
    client.reset_stream(high, 8)
    client.increment_flow_control_window(100, low)
    assert client.data_to_send()


def test_server_preface_check_refuses_what_is_not_http2() -> None:
    from etcdsync.client._transport._h2proto import NotHTTP2Error, check_server_preface

    check_server_preface(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00")  # SETTINGS, 3 entries
    check_server_preface(b"\x00\x00\x00\x04")  # too short to judge yet
    for head in (b"HTTP", b"HTTP/1.1 400 Bad Request", b"\x00\x00\x08\x06\x00\x00\x00\x00\x00", b"SSH-2.0-O"):
        with pytest.raises(NotHTTP2Error, match="not an etcd"):
            check_server_preface(head[:9])
