"""The fast path of ``H2Protocol`` against h2's generic path, step by step.

Two clients with our settings see the same bytes and make the same calls: one as shipped, one whose
``receive_data``, ``send_data`` and ``start_request`` are h2's own. After every step the events, the
output, the errors and every piece of h2 state the fast path touches must be identical. The scripted
tests cover each rule of the fast path; the seeded random ones mix ordinary and broken frames,
delivered in arbitrary chunks.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable
from typing import Any

import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
)

from etcdsync.client._sansio._grpc import RequestHeaderTemplate
from etcdsync.client._transport._h2proto import H2Protocol, PreEncodedBlock, new_h2_protocol

BLOCK = RequestHeaderTemplate(scheme="http", authority="h:1", user_agent="u").encode_prefix("/a/b")
OK_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]
OK_TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"")]


class _Generic(H2Protocol):
    """``H2Protocol`` with the fast path switched off: h2's own frame handling throughout."""

    def receive_data(self, data: Any) -> list[h2.events.Event]:
        return h2.connection.H2Connection.receive_data(self, data)

    def send_data(
        self, stream_id: int, data: bytes | memoryview, end_stream: bool = False, pad_length: Any = None
    ) -> None:
        h2.connection.H2Connection.send_data(self, stream_id, data, end_stream, pad_length)

    def start_request(self, block: bytes, *, end_stream: bool) -> int:
        stream_id = self.get_next_available_stream_id()
        self.send_headers(stream_id, [PreEncodedBlock(b"", block)], end_stream=end_stream)
        return stream_id


def _raw(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big") + payload


class _Server:
    """Builds server frames; one HPACK encoder, so both clients' decoders see the same blocks."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()

    def headers(
        self,
        stream_id: int,
        headers: list[tuple[bytes, bytes]],
        *,
        end_stream: bool = False,
        padded: bool = False,
        priority: bool = False,
        split: int = 0,
    ) -> bytes:
        block = self.encoder.encode(headers)
        pieces = [block[:split], block[split:]] if 0 < split < len(block) else [block]
        frame = HeadersFrame(stream_id, data=pieces[0])
        if end_stream:
            frame.flags.add("END_STREAM")
        if padded:
            frame.flags.add("PADDED")
            frame.pad_length = 3
        if priority:
            frame.flags.add("PRIORITY")
            frame.stream_weight = 15
        if len(pieces) == 1:
            frame.flags.add("END_HEADERS")
            return frame.serialize()
        continuation = ContinuationFrame(stream_id, data=pieces[1])
        continuation.flags.add("END_HEADERS")
        return frame.serialize() + continuation.serialize()

    def data(
        self, stream_id: int, payload: bytes, *, end_stream: bool = False, pad: int | None = None
    ) -> bytes:
        frame = DataFrame(stream_id, data=payload)
        if end_stream:
            frame.flags.add("END_STREAM")
        if pad is not None:
            frame.flags.add("PADDED")
            frame.pad_length = pad
        return frame.serialize()

    @staticmethod
    def ping(opaque: bytes = b"12345678", *, ack: bool = False) -> bytes:
        frame = PingFrame(0, opaque_data=opaque)
        if ack:
            frame.flags.add("ACK")
        return frame.serialize()

    @staticmethod
    def window_update(stream_id: int, increment: int) -> bytes:
        return _raw(0x8, 0, stream_id, increment.to_bytes(4, "big"))

    @staticmethod
    def rst(stream_id: int, code: int = ErrorCodes.CANCEL) -> bytes:
        return RstStreamFrame(stream_id, error_code=code).serialize()

    @staticmethod
    def settings(**values: int) -> bytes:
        codes = {"initial_window_size": 0x4, "max_frame_size": 0x5, "header_table_size": 0x1}
        return SettingsFrame(0, settings={codes[name]: value for name, value in values.items()}).serialize()


def _window(manager: Any) -> tuple[int, int, int]:
    return (manager.max_window_size, manager.current_window_size, manager._bytes_processed)


def _state(conn: H2Protocol) -> tuple[object, ...]:
    streams = {}
    for stream_id, stream in conn.streams.items():
        machine = stream.state_machine
        streams[stream_id] = (
            machine.state,
            machine.client,
            machine.headers_sent,
            machine.trailers_sent,
            machine.headers_received,
            machine.trailers_received,
            machine.stream_closed_by,
            stream.outbound_flow_control_window,
            _window(stream._inbound_window_manager),
            stream._expected_content_length,
            stream._actual_content_length,
            stream.max_outbound_frame_size,
            stream.request_method,
        )
    return (
        conn.state_machine.state,
        conn.outbound_flow_control_window,
        _window(conn._inbound_flow_control_window_manager),
        conn.highest_outbound_stream_id,
        conn.highest_inbound_stream_id,
        dict(conn._closed_streams),
        streams,
        conn.max_outbound_frame_size,
        dict(conn.remote_settings),
        conn.decoder.header_table_size,
    )


def _fields(value: object) -> object:
    if isinstance(value, h2.events.Event):
        return (type(value).__name__, {name: _fields(item) for name, item in vars(value).items()})
    if isinstance(value, list):
        return [_fields(item) for item in value]
    if isinstance(value, dict):
        return {key: _fields(item) for key, item in value.items()}
    if isinstance(value, h2.settings.ChangedSetting) or hasattr(value, "serialize"):
        return repr(value)  # no __eq__ (ChangedSetting, the frame of UnknownFrameReceived)
    return value


class _Pair:
    """The fast client and the generic one, driven in lockstep and compared after every step."""

    def __init__(self, receive_window: int = 16 * 1024 * 1024) -> None:
        self.fast = new_h2_protocol(receive_window)
        self.generic = new_h2_protocol(receive_window, protocol=_Generic)
        self.server = _Server()
        self.broken = False
        assert self.fast.data_to_send() == self.generic.data_to_send()

    def step(self, action: Callable[[H2Protocol], object]) -> object:
        outcomes = []
        for conn in (self.fast, self.generic):
            try:
                result = _fields(action(conn))
            except (h2.exceptions.H2Error, KeyError) as exc:  # h2 raises KeyError for some unknown ids
                result = ("raised", type(exc).__name__, re.sub(" at 0x[0-9a-f]+", "", str(exc)))
            outcomes.append((result, conn.data_to_send(), _state(conn)))
        fast, generic = outcomes
        assert fast[0] == generic[0], "results differ"
        assert fast[1] == generic[1], "output differs"
        assert fast[2] == generic[2], "state differs"
        if isinstance(fast[0], tuple) and fast[0] and fast[0][0] == "raised":
            self.broken = True
        return fast[0]

    def receive(self, data: bytes, chunks: list[int] | None = None) -> list[object]:
        """Feed ``data`` to both, cut at ``chunks`` (offsets); the events of every piece."""
        cuts = [0, *sorted(chunks or []), len(data)]
        results = []
        for start, stop in itertools.pairwise(cuts):
            if self.broken:
                break
            results.append(self.step(lambda conn, piece=data[start:stop]: conn.receive_data(piece)))
        return results

    def handshake(self, **settings: int) -> None:
        self.receive(self.server.settings(**settings) + SettingsFrame(0, flags=["ACK"]).serialize())

    def start(self, *, end_stream: bool = True, block: bytes = BLOCK) -> int:
        stream_id = self.step(lambda conn: conn.start_request(block, end_stream=end_stream))
        assert isinstance(stream_id, int)
        return stream_id


def _events(results: list[object]) -> list[str]:
    names = []
    for result in results:
        assert isinstance(result, list)
        names += [name for name, _ in result]  # type: ignore[misc]
    return names


def test_an_ordinary_call_is_the_fast_path_and_matches_h2() -> None:
    pair = _Pair()
    pair.handshake()
    stream_id = pair.start()
    server = pair.server
    frames = (
        server.window_update(0, 26)
        + server.ping()
        + server.headers(stream_id, OK_HEADERS)
        + server.data(stream_id, b"\0\0\0\0\3abc")
        + server.headers(stream_id, OK_TRAILERS, end_stream=True)
    )
    results = pair.receive(frames)
    assert _events(results) == [
        "WindowUpdated",
        "PingReceived",
        "ResponseReceived",
        "DataReceived",
        "TrailersReceived",
        "StreamEnded",
    ]
    # Every frame was the fast path's: h2's frame buffer never saw a byte.
    assert not pair.fast.incoming_buffer._data and pair.fast._partial == b""


def test_streaming_call_both_directions() -> None:
    pair = _Pair(receive_window=65535)
    pair.handshake(initial_window_size=100)
    stream_id = pair.start(end_stream=False)
    server = pair.server
    pair.step(lambda conn: conn.send_data(stream_id, b"x" * 60))
    pair.step(lambda conn: conn.send_data(stream_id, memoryview(b"y" * 40)))
    assert pair.step(lambda conn: conn.send_data(stream_id, b"z")) == (
        "raised",
        "FlowControlError",
        "Cannot send 1 bytes, flow control window is 0",
    )
    pair.broken = False
    pair.receive(server.window_update(stream_id, 50) + server.window_update(0, 10))
    pair.receive(server.headers(stream_id, OK_HEADERS) + server.data(stream_id, b"m" * 1000))
    pair.step(lambda conn: conn.send_data(stream_id, b"z" * 10, end_stream=True))
    pair.receive(server.data(stream_id, b"n" * 10) + server.headers(stream_id, OK_TRAILERS, end_stream=True))
    assert pair.fast.streams[stream_id].closed


@pytest.mark.parametrize(
    "frames",
    [
        # Trailers-only response.
        lambda s, i: s.headers(i, [*OK_HEADERS, *OK_TRAILERS], end_stream=True),
        # DATA ending the stream (no trailers).
        lambda s, i: s.headers(i, OK_HEADERS) + s.data(i, b"abc", end_stream=True),
        # Padding, priority, CONTINUATION: h2's path.
        lambda s, i: s.headers(i, OK_HEADERS, padded=True) + s.data(i, b"abc", pad=7),
        lambda s, i: (
            s.headers(i, OK_HEADERS, priority=True) + s.headers(i, OK_TRAILERS, end_stream=True, split=3)
        ),
        lambda s, i: (
            s.headers(i, OK_HEADERS, split=2) + s.data(i, b"abc") + s.headers(i, OK_TRAILERS, end_stream=True)
        ),
        # Informational response first.
        lambda s, i: s.headers(i, [(b":status", b"100")]) + s.headers(i, OK_HEADERS) + s.data(i, b"a"),
        # content-length: checked by h2, matching or not.
        lambda s, i: (
            s.headers(i, [*OK_HEADERS, (b"content-length", b"3")]) + s.data(i, b"abc", end_stream=True)
        ),
        lambda s, i: s.headers(i, [*OK_HEADERS, (b"content-length", b"2")]) + s.data(i, b"abc"),
        lambda s, i: s.headers(i, [*OK_HEADERS, (b"content-length", b"x")]),
        # Protocol errors h2 must keep raising.
        lambda s, i: s.data(i, b"data before headers"),
        lambda s, i: s.headers(i, OK_HEADERS) + s.headers(i, OK_TRAILERS),  # trailers without END_STREAM
        lambda s, i: (
            s.headers(i, OK_HEADERS) + s.headers(i, OK_TRAILERS, end_stream=True) + s.data(i, b"late")
        ),
        lambda s, i: _raw(0x1, 0x4, i, b"\xff\xff\xff\xff"),  # undecodable header block
        lambda s, i: _raw(0x6, 0, 0, b"1234567"),  # PING of 7 bytes
        lambda s, i: _raw(0x6, 0, i, b"12345678"),  # PING on a stream
        lambda s, i: s.ping(ack=True),
        lambda s, i: s.window_update(0, 0),
        lambda s, i: s.window_update(i, 0),
        lambda s, i: s.window_update(0, 2**31 - 1),  # overflows the connection window
        lambda s, i: s.window_update(i, 2**31 - 1),  # overflows the stream window: a stream reset
        lambda s, i: s.window_update(0, 2**31),  # the reserved bit
        lambda s, i: _raw(0x8, 0, 0, b"\0\0\1"),  # WINDOW_UPDATE of 3 bytes
        lambda s, i: s.headers(i + 2, OK_HEADERS),  # a stream we never opened
        lambda s, i: s.headers(2, OK_HEADERS),  # an even (server-initiated) stream
        lambda s, i: s.data(i + 40, b"x"),
        lambda s, i: s.rst(i) + s.data(i, b"x"),
        lambda s, i: PriorityFrame(i, depends_on=0, stream_weight=3).serialize(),
        lambda s, i: _raw(0x20, 0, 0, b"extension frame"),
        lambda s, i: (
            GoAwayFrame(0, last_stream_id=i).serialize() + s.headers(i, OK_HEADERS) + s.data(i, b"x")
        ),
        lambda s, i: s.settings(initial_window_size=10) + s.window_update(i, 5) + s.headers(i, OK_HEADERS),
        lambda s, i: s.settings(header_table_size=0) + s.headers(i, OK_HEADERS),
    ],
)
def test_unusual_frames_get_h2s_answer(frames: Callable[[_Server, int], bytes]) -> None:
    for chunked in (False, True):
        pair = _Pair(receive_window=65535)
        pair.handshake()
        stream_id = pair.start(end_stream=False)
        data = frames(pair.server, stream_id)
        pair.receive(data, list(range(1, len(data))) if chunked else None)
        # Whatever happened, the connection agrees on the next steps too.
        if not pair.broken:
            pair.step(lambda conn, i=stream_id: conn.send_data(i, b"after", end_stream=True))
            pair.start()


def test_flow_control_violations_are_h2s() -> None:
    pair = _Pair(receive_window=65535)
    pair.handshake()
    stream_id = pair.start()
    pair.receive(pair.server.headers(stream_id, OK_HEADERS))
    for _ in range(3):
        pair.receive(pair.server.data(stream_id, b"x" * 16384))
    (result,) = pair.receive(pair.server.data(stream_id, b"x" * 16384))
    assert result == ("raised", "FlowControlError", "Flow control window shrunk below 0")


def test_an_overlong_frame_is_refused_from_its_header() -> None:
    # h2 would buffer the whole announced frame first; we raise the same error on its header.
    pair = _Pair()
    pair.handshake()
    frame = _raw(0x0, 0, 1, b"x" * 16385)
    with pytest.raises(h2.exceptions.FrameTooLargeError, match="length 16385, max 16384"):
        pair.fast.receive_data(frame[:9])
    with pytest.raises(h2.exceptions.FrameTooLargeError, match="length 16385, max 16384"):
        pair.generic.receive_data(frame)
    assert pair.fast.data_to_send() == pair.generic.data_to_send()  # GOAWAY(FRAME_SIZE_ERROR)


def test_outbound_fallbacks() -> None:
    pair = _Pair()
    pair.handshake(max_frame_size=16384)
    # A header block too big for one frame: h2 splits it into CONTINUATION frames.
    pair.start(block=BLOCK + b"\x00\x01k\x7f" + bytes([0x81, 0x7F]) + b"v" * 20000)
    stream_id = pair.start(end_stream=False)
    pair.step(lambda conn: conn.send_data(stream_id, b"x" * 16385))  # FrameTooLargeError
    pair.broken = False
    pair.step(lambda conn: conn.send_data(stream_id, b"p", pad_length=3))
    pair.step(lambda conn: conn.send_data(stream_id + 2, b"x"))  # no such stream
    pair.step(lambda conn: conn.reset_stream(stream_id, ErrorCodes.CANCEL))
    pair.step(lambda conn: conn.send_data(stream_id, b"x"))  # a closed stream
    # A table size change owed to the server goes in front of the next block.
    pair.receive(pair.server.settings(header_table_size=100))
    pair.start()
    pair.start()
    # After GOAWAY was sent by us, h2 refuses everything.
    pair.step(lambda conn: conn.close_connection())
    pair.step(lambda conn: conn.start_request(BLOCK, end_stream=True))


def _random_scenario(rng: random.Random) -> None:
    pair = _Pair(receive_window=rng.choice([65535, 1 << 20]))
    pair.handshake(initial_window_size=rng.choice([65535, 300]))
    server = pair.server
    streams: list[int] = []
    for _ in range(rng.randint(1, 40)):
        if pair.broken:
            return
        roll = rng.random()
        if roll < 0.15 or not streams:
            streams.append(pair.start(end_stream=rng.random() < 0.5))
            continue
        stream_id = rng.choice([*streams, streams[-1] + 2, 2])
        if roll < 0.3:
            size = rng.choice([0, 1, 100, 299, 300, 5000])
            end = rng.random() < 0.3
            pair.step(lambda conn, i=stream_id, n=size, end=end: conn.send_data(i, b"q" * n, end_stream=end))
            pair.broken = False  # a refused send leaves the connection usable
            continue
        if roll < 0.35:
            pair.step(lambda conn, i=stream_id: conn.reset_stream(i, ErrorCodes.CANCEL))
            pair.broken = False
            continue
        kind = rng.randrange(12)
        if kind == 0:
            data = server.headers(
                stream_id, OK_HEADERS, padded=rng.random() < 0.2, split=rng.choice([0, 0, 2])
            )
        elif kind == 1:
            data = server.headers(stream_id, OK_TRAILERS, end_stream=rng.random() < 0.9)
        elif kind in (2, 3, 4):
            payload = b"d" * rng.choice([0, 5, 100, 4000])
            data = server.data(
                stream_id, payload, end_stream=rng.random() < 0.1, pad=rng.choice([None] * 5 + [2])
            )
        elif kind == 5:
            data = server.ping(ack=rng.random() < 0.5)
        elif kind == 6:
            data = server.window_update(rng.choice([0, stream_id]), rng.choice([1, 1000, 2**31 - 1]))
        elif kind == 7:
            data = server.rst(stream_id)
        elif kind == 8:
            data = server.settings(initial_window_size=rng.choice([100, 65535, 2**20]))
        elif kind == 9:
            data = server.headers(stream_id, [*OK_HEADERS, *OK_TRAILERS], end_stream=True)
        elif kind == 10:
            data = GoAwayFrame(0, last_stream_id=rng.choice(streams)).serialize()
        else:
            data = server.headers(stream_id, [(b":status", b"100")])
        cuts = (
            rng.sample(range(1, len(data)), min(len(data) - 1, rng.choice([0, 1, 3])))
            if len(data) > 1
            else []
        )
        pair.receive(data, cuts)


@pytest.mark.parametrize("seed", range(40))
def test_random_frames_match_h2(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(10):
        _random_scenario(rng)
