"""h2, adjusted for a gRPC client: pre-encoded request headers, O(1) stream counting, GOAWAY drain,
and a fast path for the frames of every call.

Deliberate deviations from plain h2 usage, each explained where it is made:

* pre-encoded request header blocks and cached decoding of response blocks (``_h2hpack.py``);
* :class:`H2Protocol` counts open streams in O(1) rather than h2's scan of every stream per new
  stream;
* :class:`H2Protocol` keeps the connection usable after GOAWAY so the streams the GOAWAY allows can
  finish (h2 4.x treats GOAWAY as the end of everything);
* :class:`H2Protocol` parses and writes the frames of an ordinary call itself (request HEADERS and
  DATA; response HEADERS, DATA, trailers; PING; WINDOW_UPDATE) and hands every other frame, and
  every frame in an unusual state, to h2 unchanged;
* h2's per-frame dispatch (what the fast path leaves to h2) runs without its eager ``repr(frame)``.

These rely on h2 internals (``H2Connection.encoder``/``decoder``, ``_open_streams``,
``_receive_goaway_frame``, ``_receive_frame``, ``_data_to_send``, the window managers and the
stream state machines), which is why ``pyproject.toml`` pins ``h2<5``; ``tests/transport``
exercises all of them, the fast path frame by frame against plain h2 (``test_h2_fastpath.py``).
"""

from __future__ import annotations

import struct
from typing import Final, Protocol

import h2.config
import h2.connection
import h2.events
import h2.settings
import trio
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from h2.events import (
    DataReceived,
    PingAckReceived,
    PingReceived,
    ResponseReceived,
    StreamEnded,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import FrameTooLargeError, ProtocolError, StreamClosedError, StreamIDTooLowError
from h2.stream import H2Stream, H2StreamStateMachine, StreamClosedBy, StreamState
from hpack.struct import Header
from hyperframe.exceptions import InvalidDataError, InvalidFrameError
from hyperframe.frame import Frame, GoAwayFrame, RstStreamFrame

from ._h2hpack import PreEncodedBlock, _BlockEncoder, _CachingDecoder

__all__ = [
    "RECEIVE_SIZE",
    "GoAwayReceived",
    "H2Protocol",
    "NotHTTP2Error",
    "PreEncodedBlock",
    "check_server_preface",
    "establish_connection",
]

#: Bytes asked for per read.
RECEIVE_SIZE: Final = 1 << 16


class GoAwayReceived(Exception):
    """The server sent GOAWAY; the ``__cause__`` of the :class:`ConnectionLost` it led to."""

    def __init__(self, error_code: int, last_stream_id: int, debug_data: bytes) -> None:
        try:
            name = ErrorCodes(error_code).name
        except ValueError:
            name = hex(error_code)
        super().__init__(
            f"GOAWAY {name} (last stream id {last_stream_id})"
            + (f": {debug_data.decode('utf-8', 'replace')}" if debug_data else "")
        )
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.debug_data = debug_data


# The frame header (RFC 9113 4.1): a 24-bit length, split here as 8 + 16 bits, type, flags, stream id.
_FRAME_HEADER: Final = struct.Struct(">BHBBL")
_DATA: Final = 0x0
_HEADERS: Final = 0x1
_PING: Final = 0x6
_WINDOW_UPDATE: Final = 0x8
_END_STREAM: Final = 0x1  # DATA, HEADERS
_ACK: Final = 0x1  # PING
_END_HEADERS: Final = 0x4
_PADDED: Final = 0x8
_PRIORITY: Final = 0x20
_MAX_WINDOW: Final = 2**31 - 1
_OPEN: Final = StreamState.OPEN
_HALF_CLOSED_LOCAL: Final = StreamState.HALF_CLOSED_LOCAL
_HALF_CLOSED_REMOTE: Final = StreamState.HALF_CLOSED_REMOTE
_CLOSED: Final = StreamState.CLOSED
_CLIENT_OPEN: Final = ConnectionState.CLIENT_OPEN
_SEND_END_STREAM: Final = StreamClosedBy.SEND_END_STREAM
_RECV_END_STREAM: Final = StreamClosedBy.RECV_END_STREAM


def _frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    return _FRAME_HEADER.pack(length >> 16, length & 0xFFFF, kind, flags, stream_id)


class FrameSink(Protocol):
    """Where :meth:`H2Protocol.receive_data_into` delivers what it reads.

    The first six methods stand for the h2 events of the frames the fast path handles (``ended``:
    the frame also ended the stream, h2's ``StreamEnded``; trailers always do); ``h2_events`` gets
    the events of every other frame, from h2 itself.
    """

    def response_received(self, stream_id: int, headers: list[Header], ended: bool) -> None: ...
    def trailers_received(self, stream_id: int, headers: list[Header]) -> None: ...
    def data_received(
        self, stream_id: int, data: bytes, flow_controlled_length: int, ended: bool
    ) -> None: ...
    def window_updated(self, stream_id: int, delta: int) -> None: ...
    def ping_received(self, ping_data: bytes) -> None: ...
    def ping_ack_received(self, ping_data: bytes) -> None: ...
    def h2_events(self, events: list[h2.events.Event]) -> None: ...


class _EventList:
    """A :class:`FrameSink` that rebuilds the h2 events, for ``receive_data``."""

    def __init__(self) -> None:
        self.events: list[h2.events.Event] = []

    def _ended(self, event: ResponseReceived | TrailersReceived | DataReceived) -> None:
        ended = StreamEnded(stream_id=event.stream_id)
        event.stream_ended = ended
        self.events.append(ended)

    def response_received(self, stream_id: int, headers: list[Header], ended: bool) -> None:
        event = ResponseReceived(stream_id=stream_id, headers=headers)
        self.events.append(event)
        if ended:
            self._ended(event)

    def trailers_received(self, stream_id: int, headers: list[Header]) -> None:
        event = TrailersReceived(stream_id=stream_id, headers=headers)
        self.events.append(event)
        self._ended(event)

    def data_received(self, stream_id: int, data: bytes, flow_controlled_length: int, ended: bool) -> None:
        event = DataReceived(stream_id=stream_id, data=data, flow_controlled_length=flow_controlled_length)
        self.events.append(event)
        if ended:
            self._ended(event)

    def window_updated(self, stream_id: int, delta: int) -> None:
        self.events.append(WindowUpdated(stream_id=stream_id, delta=delta))

    def ping_received(self, ping_data: bytes) -> None:
        self.events.append(PingReceived(ping_data=ping_data))

    def ping_ack_received(self, ping_data: bytes) -> None:
        self.events.append(PingAckReceived(ping_data=ping_data))

    def h2_events(self, events: list[h2.events.Event]) -> None:
        self.events += events


class H2Protocol(h2.connection.H2Connection):
    """h2's connection state machine with these deliberate deviations.

    * ``open_outbound_streams`` is h2's check against the server's MAX_CONCURRENT_STREAMS. h2 counts
      by scanning every stream it knows on each new stream (O(n) per call, O(n^2) under load); here
      it returns :attr:`open_calls`, which :class:`Connection` maintains exactly, and runs h2's own
      sweep of closed streams only when the table has grown to twice the open count (amortised O(1)).
    * On GOAWAY h2 4.x moves the connection to CLOSED and drops queued output, so frames for the
      streams the GOAWAY still lets complete (id <= last_stream_id, RFC 9113 6.8) would raise
      ProtocolError. Here GOAWAY only produces its event; :class:`Connection` stops opening streams,
      fails the refused ones and closes the socket once the rest have finished.
    * The frames of an ordinary call skip h2's generic machinery (see "Fast path" below), and
      ``_receive_frame``, h2's dispatch for the rest, skips a trace log line nobody reads.

    Fast path. h2 builds a hyperframe object per frame (with a set of flag names, padding and
    priority mixins), runs two state machines, validates and formats a trace line with ``repr(frame)``
    that is then dropped; that was half of the transport's CPU per call. :meth:`receive_data` splits
    the bytes into frames itself and handles DATA, HEADERS, PING and WINDOW_UPDATE when the
    connection is open and the frame is the ordinary case for an open client stream: it makes exactly
    the state changes and events h2 would (windows, stream states, ``StreamEnded``...). Anything
    else -- another frame type, padding, priority, CONTINUATION, a closed or unknown stream, a window
    that would overflow, content-length -- is handed to h2's own ``receive_data`` as the complete
    frame, so h2 still decides every error. :meth:`start_request` and :meth:`send_data` do the same
    for our outbound HEADERS (a pre-encoded block in one frame) and DATA.
    """

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config)
        self.encoder = self._block_encoder = _BlockEncoder()
        decoder = self._response_decoder = _CachingDecoder()
        decoder.max_header_list_size = self.decoder.max_header_list_size
        self.decoder = decoder
        self.open_calls = 0
        #: Bytes of an incomplete frame, kept until the rest arrives.
        self._partial = b""
        self._settings: tuple[int, int, int] | None = None
        # Response header blocks are used as decoded only when h2 would not change them.
        self._plain_headers = not (
            config.validate_inbound_headers or config.normalize_inbound_headers or config.header_encoding
        )

    @property
    def open_outbound_streams(self) -> int:
        if len(self.streams) > 2 * self.open_calls + 64:
            self._open_streams(1)  # h2's sweep: forgets closed streams (client stream ids are odd)
        return self.open_calls

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[h2.events.Event]]:
        event = h2.events.ConnectionTerminated()
        event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    # -- outbound -------------------------------------------------------------------------------------

    def start_request(self, block: bytes, *, end_stream: bool) -> int:
        """Open the next client stream with the pre-encoded header ``block``; return its id.

        What ``send_headers(get_next_available_stream_id(), [PreEncodedBlock(b"", block)])`` does,
        which it falls back to when the block needs CONTINUATION frames or the connection is not open.
        """
        last = self.highest_outbound_stream_id
        stream_id = last + 2 if last else 1
        size = self._block_encoder.block_size(block)
        settings = self._settings or self._load_settings()
        if (
            self.state_machine.state is not _CLIENT_OPEN
            or size > self.max_outbound_frame_size
            or stream_id > self.HIGHEST_ALLOWED_STREAM_ID
            or self.open_outbound_streams >= settings[2]
        ):
            stream_id = self.get_next_available_stream_id()
            self.send_headers(stream_id, [PreEncodedBlock(b"", block)], end_stream=end_stream)
            return stream_id
        stream = H2Stream(
            stream_id, config=self.config, inbound_window_size=settings[0], outbound_window_size=settings[1]
        )
        stream.max_outbound_frame_size = self.max_outbound_frame_size
        self.streams[stream_id] = stream
        self.highest_outbound_stream_id = stream_id
        machine = stream.state_machine
        # IDLE --SEND_HEADERS--> OPEN (request_sent), then --SEND_END_STREAM--> HALF_CLOSED_LOCAL.
        machine.client = True
        machine.headers_sent = True
        machine.state = _HALF_CLOSED_LOCAL if end_stream else _OPEN
        flags = _END_HEADERS | _END_STREAM if end_stream else _END_HEADERS
        self._data_to_send += _frame_header(size, _HEADERS, flags, stream_id)
        self._data_to_send += self._block_encoder.block(block)
        return stream_id

    @property
    def output_pending(self) -> bool:
        """Whether ``data_to_send()`` would return anything."""
        return bool(self._data_to_send)

    def _load_settings(self) -> tuple[int, int, int]:
        """Our and the server's initial window sizes and the server's stream limit, for new streams.

        Cached (h2's ``Settings`` lookups cost more than the rest of opening a stream); they change
        only by SETTINGS frames and their ACKs, which take h2's path, and that clears the cache.
        """
        remote = self.remote_settings
        self._settings = (
            self.local_settings.initial_window_size,
            remote.initial_window_size,
            remote.max_concurrent_streams,
        )
        return self._settings

    def forget_stream(self, stream_id: int) -> None:
        """Drop a closed stream from h2's table now, as h2's sweep in ``_open_streams`` would later."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.state_machine.state is _CLOSED:
            del self.streams[stream_id]
            self._closed_streams[stream_id] = stream.state_machine.stream_closed_by

    def send_data(
        self,
        stream_id: int,
        data: bytes | memoryview,
        end_stream: bool = False,
        pad_length: int | None = None,
    ) -> None:
        """h2's ``send_data``, writing the frame directly in the ordinary case."""
        size = len(data)
        stream = self.streams.get(stream_id)
        if (
            stream is not None
            and pad_length is None
            and self.state_machine.state is _CLIENT_OPEN
            and size <= self.max_outbound_frame_size
            and size <= self.outbound_flow_control_window
            and size <= stream.outbound_flow_control_window
        ):
            machine = stream.state_machine
            state = machine.state
            if state is _OPEN or state is _HALF_CLOSED_REMOTE:
                if end_stream:
                    if state is _OPEN:
                        machine.state = _HALF_CLOSED_LOCAL
                    else:
                        machine.state = _CLOSED
                        machine.stream_closed_by = _SEND_END_STREAM
                self._data_to_send += _frame_header(size, _DATA, _END_STREAM if end_stream else 0, stream_id)
                self._data_to_send += data
                stream.outbound_flow_control_window -= size
                self.outbound_flow_control_window -= size
                return
        super().send_data(stream_id, data, end_stream, pad_length)

    # -- inbound --------------------------------------------------------------------------------------

    # Narrower than h2's PEP 688 ``Buffer``: the only caller passes what a trio stream returns.
    def receive_data(self, data: bytes | bytearray | memoryview) -> list[h2.events.Event]:  # type: ignore[override]
        """h2's ``receive_data``: the events of ``data``, fast path included (see the class docstring)."""
        events = _EventList()
        self.receive_data_into(data, events)
        return events.events

    def receive_data_into(self, data: bytes | bytearray | memoryview, sink: FrameSink) -> None:
        """Like ``receive_data``, but deliver to ``sink`` as the frames are read.

        The fast path calls the sink's methods directly, with no h2 event objects in between; what
        h2's path produces reaches ``sink.h2_events`` at its place in the order of frames.
        """
        buf = self._partial + data if self._partial else bytes(data)
        end = len(buf)
        pos = 0
        machine = self.state_machine
        max_size = self.max_inbound_frame_size
        # Inside a header block (HEADERS without END_HEADERS), only h2 may take the next frame.
        fast = machine.state is _CLIENT_OPEN and not self.incoming_buffer._headers_buffer
        while end - pos >= 9:
            high, low, kind, flags, stream_id = _FRAME_HEADER.unpack_from(buf, pos)
            length = high << 16 | low
            start = pos + 9
            stop = start + length
            if stop > end or length > max_size:
                # h2 checks a header as soon as it is complete; so do we.
                self._partial = buf[pos:]
                self._check_frame_header(buf[pos:start], length)
                return
            handled = False
            if fast:
                stream_id &= 0x7FFFFFFF
                try:
                    if kind == _DATA:
                        handled = self._fast_data(flags, stream_id, buf, start, stop, sink)
                    elif kind == _HEADERS:
                        handled = self._fast_headers(flags, stream_id, buf[start:stop], sink)
                    elif kind == _PING:
                        handled = self._fast_ping(flags, stream_id, buf[start:stop], sink)
                    elif kind == _WINDOW_UPDATE:
                        handled = self._fast_window_update(stream_id, buf[start:stop], sink)
                except ProtocolError as exc:
                    self._terminate_connection(exc.error_code)
                    raise
            pos = stop
            if not handled:
                sink.h2_events(super().receive_data(buf[start - 9 : stop]))
                self._settings = None
                fast = machine.state is _CLIENT_OPEN and not self.incoming_buffer._headers_buffer
                max_size = self.max_inbound_frame_size
        self._partial = buf[pos:] if pos < end else b""

    def _check_frame_header(self, header: bytes, length: int) -> None:
        """Raise what h2 raises for a bad or overlong frame header (h2 would buffer the whole frame)."""
        try:
            Frame.parse_frame_header(memoryview(header))
        except (InvalidDataError, InvalidFrameError) as exc:
            self._terminate_connection(ErrorCodes.PROTOCOL_ERROR)
            raise ProtocolError(f"Received frame with invalid header: {exc!s}") from exc
        if length > self.max_inbound_frame_size:
            self._terminate_connection(ErrorCodes.FRAME_SIZE_ERROR)
            raise FrameTooLargeError(
                f"Received overlong frame: length {length}, max {self.max_inbound_frame_size}"
            )

    def _fast_data(
        self, flags: int, stream_id: int, buf: bytes, start: int, stop: int, sink: FrameSink
    ) -> bool:
        stream = self.streams.get(stream_id)
        if stream is None or flags & _PADDED:
            return False
        machine = stream.state_machine
        state = machine.state
        if (
            not (state is _OPEN or state is _HALF_CLOSED_LOCAL)
            or not machine.headers_received
            or stream._expected_content_length is not None
        ):
            return False
        length = stop - start
        connection_window = self._inbound_flow_control_window_manager
        stream_window = stream._inbound_window_manager
        if length > connection_window.current_window_size or length > stream_window.current_window_size:
            return False  # h2 raises FlowControlError
        connection_window.current_window_size -= length
        stream_window.current_window_size -= length
        stream._actual_content_length += length
        ended = bool(flags & _END_STREAM)
        if ended:
            self._remote_ended(machine)
        sink.data_received(stream_id, buf[start:stop], length, ended)
        return True

    def _fast_headers(self, flags: int, stream_id: int, block: bytes, sink: FrameSink) -> bool:
        if flags & (_PADDED | _PRIORITY) or not flags & _END_HEADERS or not self._plain_headers:
            return False
        stream = self.streams.get(stream_id)
        if stream is None:
            return False
        machine = stream.state_machine
        state = machine.state
        if not (state is _OPEN or state is _HALF_CLOSED_LOCAL):
            return False
        # From here on the frame is ours: decoding changed the HPACK state.
        headers, plain = self._response_decoder.decode_response(block)
        ended = bool(flags & _END_STREAM)
        if not plain or machine.trailers_received or (machine.headers_received and not ended):
            # Unusual (informational response, trailers without END_STREAM, content-length): h2's
            # stream logic decides, and raises the ProtocolError h2 would.
            sink.h2_events(stream.receive_headers(headers, ended, self.config.header_encoding)[1])
            return True
        if ended:
            self._remote_ended(machine)
        if not machine.headers_received:
            machine.headers_received = True
            sink.response_received(stream_id, headers, ended)
        else:
            machine.trailers_received = True
            sink.trailers_received(stream_id, headers)
        return True

    def _fast_ping(self, flags: int, stream_id: int, payload: bytes, sink: FrameSink) -> bool:
        if stream_id or len(payload) != 8:
            return False
        if flags & _ACK:
            sink.ping_ack_received(payload)
        else:
            self._data_to_send += _frame_header(8, _PING, _ACK, 0)
            self._data_to_send += payload
            sink.ping_received(payload)
        return True

    def _fast_window_update(self, stream_id: int, payload: bytes, sink: FrameSink) -> bool:
        if len(payload) != 4:
            return False
        increment = int.from_bytes(payload, "big")
        if not 1 <= increment <= _MAX_WINDOW:
            return False
        if not stream_id:
            window = self.outbound_flow_control_window + increment
            if window > _MAX_WINDOW:
                return False
            self.outbound_flow_control_window = window
        else:
            stream = self.streams.get(stream_id)
            if stream is None:
                return False
            state = stream.state_machine.state
            if not (state is _OPEN or state is _HALF_CLOSED_LOCAL or state is _HALF_CLOSED_REMOTE):
                return False
            window = stream.outbound_flow_control_window + increment
            if window > _MAX_WINDOW:
                return False  # h2 resets the stream with FLOW_CONTROL_ERROR
            stream.outbound_flow_control_window = window
        sink.window_updated(stream_id, increment)
        return True

    @staticmethod
    def _remote_ended(machine: H2StreamStateMachine) -> None:
        """RECV_END_STREAM: OPEN -> HALF_CLOSED_REMOTE, HALF_CLOSED_LOCAL -> CLOSED."""
        if machine.state is _OPEN:
            machine.state = _HALF_CLOSED_REMOTE
        else:
            machine.state = _CLOSED
            machine.stream_closed_by = _RECV_END_STREAM

    def _receive_frame(self, frame: Frame) -> list[h2.events.Event]:
        """h2's ``_receive_frame`` without its first line, a trace log of ``repr(frame)``.

        h2 formats the frame eagerly even though the logger drops the line (about 5 % of the CPU per
        call). The rest is h2 4.x's code as is.
        """
        events: list[h2.events.Event]
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events


def new_h2_protocol(receive_window: int, *, protocol: type[H2Protocol] = H2Protocol) -> H2Protocol:
    """A client-side h2 connection with our settings, its preface already queued.

    ``protocol`` lets the tests build a variant that runs h2's generic path, to compare against.
    """
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        # Our request headers are built and validated by _sansio._grpc; h2 would re-check each
        # field of every call. Inbound validation only protects against a broken server.
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
    )
    conn = protocol(config)
    conn.local_settings = h2.settings.Settings(
        client=True,
        initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: receive_window,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 16,
        },
    )
    conn.initiate_connection()
    if receive_window > 65535:
        conn.increment_flow_control_window(receive_window - 65535)
    return conn


class NotHTTP2Error(Exception):
    """The peer answered something other than an HTTP/2 server preface: it is not a gRPC server."""


def check_server_preface(head: bytes) -> None:
    """Refuse, from its first bytes, a peer that is not an HTTP/2 server.

    An HTTP/2 server's first frame is SETTINGS (type 4), whose payload is a few 6-byte entries. Without
    this check, an HTTP/1 reply such as ``HTTP/1.1 400`` is parsed as a frame header announcing a
    4.7 MB payload (the bytes ``HTT`` read as a length), and the handshake waits for it until the
    caller's deadline.
    """
    if head.startswith(b"HTTP/"[: len(head)]) and len(head) >= 4:
        raise NotHTTP2Error("the server answered in HTTP/1, not HTTP/2: it is not an etcd (gRPC) endpoint")
    if len(head) >= 9:
        length = int.from_bytes(head[:3], "big")
        if head[3] != 0x04 or length % 6 or length > 6 * 64:
            raise NotHTTP2Error(
                f"the server's first bytes {head!r} are not an HTTP/2 SETTINGS frame: "
                "it is not an etcd (gRPC) endpoint"
            )


async def establish_connection(
    stream: trio.abc.Stream, receive_window: int
) -> tuple[H2Protocol, list[h2.events.Event]]:
    """Send our preface and wait for the server's SETTINGS. Returns h2 and any other events read."""
    conn = new_h2_protocol(receive_window)
    await stream.send_all(conn.data_to_send())
    head = b""
    while True:
        data = await stream.receive_some(RECEIVE_SIZE)
        if not data:
            raise EOFError("the server closed the connection during the HTTP/2 handshake")
        if len(head) < 9:
            head += data[: 9 - len(head)]
            check_server_preface(head)
        events = conn.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.ConnectionTerminated):
                raise GoAwayReceived(int(event.error_code or 0), event.last_stream_id or 0, b"")
        if any(isinstance(event, h2.events.RemoteSettingsChanged) for event in events):
            return conn, events
