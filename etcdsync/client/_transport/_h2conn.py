"""One HTTP/2 connection carrying many gRPC calls: h2's state machine plus a reader, a writer and a
keepalive task.

Concurrency model: every state change (opening a stream, queueing data, resetting, crediting flow
control) is a *synchronous* call on the :class:`h2.connection.H2Connection` made by whichever task
wants it; it appends frames to h2's output buffer and wakes the single writer task, which sends
everything accumulated so far in one ``send_all``. So many calls' frames coalesce into one write,
and a cancelled caller queues its RST_STREAM without awaiting anything. The reader task turns
received bytes into h2 events and dispatches them to the calls by stream id.

Flow control (receive side):

* The connection window is credited as soon as DATA arrives, so a stream whose consumer is slow
  never stalls the other streams on the connection.
* A stream's window is credited as its messages are *consumed* by ``receive()``: the bytes of
  complete messages waiting in the stream's queue are withheld, so a slow consumer pushes back on
  the server and buffering stays bounded by the window. When the queue is empty, every received
  byte is credited at once, including the bytes of a message still being reassembled: a message
  larger than the window can never deadlock (the prototype's bug).
* Credits are batched (a WINDOW_UPDATE once a quarter of the window is owed) and flushed lazily.

Keepalive: after ``keepalive_interval`` seconds without receiving anything *while calls are open*,
send a PING; no ACK (and no other frame) within ``keepalive_timeout`` declares the connection dead.
Idle connections are never pinged: etcd's gRPC server (grpc-go, ``PermitWithoutStream: false``)
counts pings without active streams as abuse and answers with GOAWAY "too_many_pings".

The h2 connection object itself is the adjusted one of ``_h2proto.py`` (pre-encoded headers, O(1)
stream counting, GOAWAY drain).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Final, NoReturn

import attrs
import h2.events
import h2.exceptions
import h2.settings
import trio
from h2.errors import ErrorCodes

from .._sansio._grpc import (
    MESSAGE_HEADER_LENGTH,
    FramingError,
    GrpcStatus,
    MessageDecoder,
    StatusCode,
    status_from_reset,
    status_from_response_headers,
    status_from_trailers,
)
from ._base import ConnectionLost, StatusError
from ._h2proto import RECEIVE_SIZE, GoAwayReceived, H2Protocol, PreEncodedBlock

__all__ = ["Call", "Connection", "ConnectionParams", "KeepaliveTimeout", "Unusable"]

logger = logging.getLogger(__name__)

#: How long acknowledgements (PING ACK, SETTINGS ACK, WINDOW_UPDATE) may wait for a write to share.
LAZY_FLUSH_DELAY: Final = 0.002
#: Stream ids are 31-bit and odd for clients; stop opening streams this close to the end.
_LAST_STREAM_ID: Final = 2**31 - 1 - 2
_STREAM_ENDED_WITHOUT_TRAILERS: Final = GrpcStatus(
    StatusCode.INTERNAL, "server closed the stream without sending trailers"
)


class KeepaliveTimeout(trio.TooSlowError):
    """No PING acknowledgement arrived in time: the peer or the path to it is stalled."""


# ---------------------------------------------------------------------------------------------------------
# Calls


@attrs.frozen
class _Lost:
    """Why a call ended without a status (becomes :class:`ConnectionLost`)."""

    message: str
    request_sent: bool
    cause: BaseException


@attrs.define(kw_only=True, eq=False)
class ConnectionParams:
    """What a connection needs from its channel; ``keepalive_interval`` may be raised at run time."""

    endpoint: str
    keepalive_interval: float
    keepalive_timeout: float
    max_receive_message_length: int
    receive_window: int
    calls_failed: int = 0


class Call:
    """The client side of one HTTP/2 stream (one gRPC call)."""

    __slots__ = (
        "closed",
        "conn",
        "decoder",
        "end",
        "event",
        "held",
        "local_ended",
        "messages",
        "owed",
        "queued_epoch",
        "remote_ended",
        "stream_id",
        "window_event",
    )

    def __init__(self, conn: Connection, stream_id: int) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.decoder = MessageDecoder(conn.params.max_receive_message_length)
        self.messages: deque[bytes] = deque()
        #: Set by the reader whenever a message or the end arrives; replaced by the consumer.
        self.event = trio.Event()
        #: Set while a sender waits for the flow-control window.
        self.window_event: trio.Event | None = None
        #: How the call ended: a status (code 0 is OK) or a lost connection; None while running.
        self.end: GrpcStatus | _Lost | None = None
        #: Received bytes whose stream window we withhold while complete messages wait in the queue.
        self.held = 0
        #: Bytes we decided to credit, batched until a quarter window is owed.
        self.owed = 0
        self.local_ended = False
        self.remote_ended = False
        #: The h2 stream is closed and its concurrency slot is free.
        self.closed = False
        #: The writer round that will put this call's HEADERS on the wire (see Connection).
        self.queued_epoch = 0

    # -- reader side ------------------------------------------------------------------------------------

    def finish(self, end: GrpcStatus | _Lost) -> None:
        """Record how the call ended (first one wins) and wake its waiters."""
        if self.end is not None:
            return
        self.end = end
        if not isinstance(end, GrpcStatus) or end.code != 0:
            self.conn.params.calls_failed += 1
        self.event.set()
        if self.window_event is not None:
            self.window_event.set()

    def fail_and_reset(self, status: GrpcStatus) -> None:
        """End the call locally with ``status`` and reset the stream (we will not read it anymore)."""
        self.finish(status)
        self.cancel()

    # -- consumer side ----------------------------------------------------------------------------------

    def consumed(self, size: int) -> None:
        """The consumer took a message of ``size`` wire bytes: reopen the stream window for it."""
        release = min(self.held, size)
        self.held -= release
        self.owed += release
        if not self.messages:
            self.owed += self.held
            self.held = 0
        self.conn.credit_stream(self)

    def raise_end(self) -> NoReturn:
        """Raise what the recorded end means for the consumer."""
        end = self.end
        assert end is not None
        if isinstance(end, _Lost):
            raise ConnectionLost(
                end.message, endpoint=self.conn.params.endpoint, request_sent=end.request_sent
            ) from end.cause
        if end.code == 0:
            raise trio.EndOfChannel
        raise StatusError(end.code, end.message, end.trailers)

    async def receive_message(self) -> bytes:
        """The next message; EndOfChannel/StatusError/ConnectionLost at the end. A checkpoint."""
        if self.messages or self.end is not None:
            await trio.lowlevel.checkpoint()
        while not self.messages:
            if self.end is not None:
                self.raise_end()
            if self.event.is_set():
                self.event = trio.Event()
            await self.event.wait()
        message = self.messages.popleft()
        self.consumed(len(message) + MESSAGE_HEADER_LENGTH)
        return message

    async def wait_end(self) -> None:
        """Wait until the call has ended (status or connection loss)."""
        while self.end is None:
            if self.event.is_set():
                self.event = trio.Event()
            await self.event.wait()

    def unary_result(self) -> bytes:
        """The response of a finished unary call, or raise its error."""
        end = self.end
        if isinstance(end, GrpcStatus) and end.code == 0:
            if len(self.messages) == 1:
                return self.messages.popleft()
            kind = "no response message" if not self.messages else "more than one response message"
            end = self.end = GrpcStatus(StatusCode.INTERNAL, f"received {kind} for a unary call")
            self.conn.params.calls_failed += 1
        self.raise_end()

    def cancel(self) -> None:
        """Reset the stream with CANCEL unless it is already closed. Synchronous; flushes promptly."""
        if self.closed:
            return
        if self.end is None:
            # Not counted as a failure: the caller gave up, the channel did nothing wrong.
            self.end = GrpcStatus(StatusCode.CANCELLED, "cancelled by the client")
            self.event.set()
        self.conn.reset_call(self)

    def close(self) -> None:
        """Leave the call: reset it if the server has not finished, else end our side cleanly."""
        if self.closed:
            return
        if not self.remote_ended:
            self.cancel()
        else:
            self.conn.end_call(self)


# ---------------------------------------------------------------------------------------------------------
# Connection


class Unusable(Exception):
    """The connection stopped accepting calls while the caller waited for a stream slot."""


class Connection:
    """One HTTP/2 connection: ``establish_connection`` gives its h2 side, then ``nursery.start(conn.run)``."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        h2conn: H2Protocol,
        params: ConnectionParams,
        on_state_change: Callable[[Connection], None],
    ) -> None:
        self.params = params
        self.h2 = h2conn
        self.calls: dict[int, Call] = {}
        self.dead = False
        self.draining = False
        self.error: str | None = None
        self._stream = stream
        self._on_state_change = on_state_change
        self._max_streams = h2conn.remote_settings.max_concurrent_streams
        self._slots = trio.lowlevel.ParkingLot()
        self._window_waiters: set[Call] = set()
        self._goaway_last_id = 2**31 - 1
        #: The last GOAWAY received: explains the connection loss that usually follows it.
        self._goaway: GoAwayReceived | None = None
        self._scope = trio.CancelScope()
        # Writer state: an event for "flush now", a deadline for "flush soon".
        self._wake = trio.Event()
        self._lazy_deadline = math.inf
        self._writer_scope: trio.CancelScope | None = None
        # Rounds of output handed to the socket. A call whose HEADERS are in round N has provably
        # not reached the server while fewer than N rounds were taken.
        self._taken_epoch = 0
        # Connection-level flow-control credit owed to the server (see the module docstring).
        self._conn_owed = 0
        self._stream_credit_threshold = max(1, params.receive_window // 4)
        self._conn_credit_threshold = max(1, max(params.receive_window, 65535) // 4)
        # Keepalive.
        self._last_received = trio.current_time()
        self._became_active = trio.Event()
        self._ping_ack = trio.Event()
        self._ping_count = 0
        self._handlers: dict[type[h2.events.Event], Callable[[h2.events.Event], None]] = {
            h2.events.ResponseReceived: self._on_response,
            h2.events.DataReceived: self._on_data,
            h2.events.TrailersReceived: self._on_trailers,
            h2.events.StreamEnded: self._on_stream_ended,
            h2.events.StreamReset: self._on_stream_reset,
            h2.events.WindowUpdated: self._on_window_updated,
            h2.events.RemoteSettingsChanged: self._on_settings,
            h2.events.PingAckReceived: self._on_ping_ack,
            h2.events.ConnectionTerminated: self._on_goaway,
        }

    def __repr__(self) -> str:
        state = "dead" if self.dead else "draining" if self.draining else "open"
        return f"<Connection to {self.params.endpoint}, {state}, {len(self.calls)} calls>"

    @property
    def accepting(self) -> bool:
        """Whether new calls may be started on this connection."""
        return not (self.dead or self.draining)

    @property
    def open_streams(self) -> int:
        return self.h2.open_calls

    # -- tasks ------------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the reader, writer and keepalive until the connection ends; then close the socket."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop)
                    nursery.start_soon(self._keepalive_loop)
                    task_status.started()
                    await self._read_loop()
        finally:
            # Normally a no-op (the connection ended itself); else the channel's nursery was cancelled.
            self.close("the channel was closed")
            await trio.aclose_forcefully(self._stream)

    async def _read_loop(self) -> None:
        stream = self._stream
        h2conn = self.h2
        handlers = self._handlers
        try:
            while True:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    self._lost("the server closed the connection", EOFError("end of stream"))
                    return
                self._last_received = trio.current_time()
                for event in h2conn.receive_data(data):
                    handler = handlers.get(type(event))
                    if handler is not None:
                        handler(event)
                self.flush_soon()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._lost(f"the connection broke: {exc!r}", exc)
        except h2.exceptions.ProtocolError as exc:
            self._shutdown(f"HTTP/2 protocol error: {exc}", exc)

    async def _write_loop(self) -> None:
        stream = self._stream
        h2conn = self.h2
        try:
            while True:
                if not self._wake.is_set():
                    with trio.CancelScope(deadline=self._lazy_deadline) as scope:
                        self._writer_scope = scope
                        await self._wake.wait()
                    self._writer_scope = None
                    if self._wake.is_set():
                        self._wake = trio.Event()
                else:
                    self._wake = trio.Event()
                self._lazy_deadline = math.inf
                data = h2conn.data_to_send()
                if data:
                    self._taken_epoch += 1
                    await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._lost(f"the connection broke: {exc!r}", exc)

    async def _keepalive_loop(self) -> None:
        params = self.params
        while True:
            due = self._last_received + params.keepalive_interval
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            if not self.calls:
                # Idle: wait for a call rather than ping (see the module docstring).
                self._became_active = trio.Event()
                await self._became_active.wait()
                continue
            self._ping_count += 1
            self._ping_ack = trio.Event()
            sent_at = trio.current_time()
            self.h2.ping(self._ping_count.to_bytes(8, "big"))
            self.flush_now()
            with trio.move_on_after(params.keepalive_timeout):
                await self._ping_ack.wait()
            if not self._ping_ack.is_set() and self._last_received <= sent_at:
                timeout = params.keepalive_timeout
                self._shutdown(
                    f"no answer to a keepalive PING within {timeout} s: the server or the network is stalled",
                    KeepaliveTimeout(f"no PING acknowledgement within {timeout} s"),
                )
                return

    # -- output -----------------------------------------------------------------------------------------

    def flush_now(self) -> None:
        """Have the writer send h2's output at its next chance."""
        self._wake.set()

    def flush_soon(self) -> None:
        """Have the writer send h2's output within LAZY_FLUSH_DELAY (or with an earlier write)."""
        if self._lazy_deadline == math.inf:
            self._lazy_deadline = trio.current_time() + LAZY_FLUSH_DELAY
            if self._writer_scope is not None:
                self._writer_scope.deadline = self._lazy_deadline

    # -- calls ------------------------------------------------------------------------------------------

    def has_free_slot(self) -> bool:
        return self.h2.open_calls < self._max_streams and not len(self._slots)

    async def wait_for_slot(self) -> None:
        """Wait until the server's MAX_CONCURRENT_STREAMS allows one more stream.

        Raises:
            Unusable: the connection died or got a GOAWAY meanwhile.
        """
        while True:
            if not self.accepting:
                raise Unusable
            if self.h2.open_calls < self._max_streams:
                return
            await self._slots.park()

    def start_call(self, header_block: bytes, *, end_stream: bool = False) -> Call:
        """Open a stream with the pre-encoded ``header_block``. Needs a free slot; synchronous."""
        h2conn = self.h2
        stream_id = h2conn.get_next_available_stream_id()
        call = Call(self, stream_id)
        h2conn.send_headers(stream_id, [PreEncodedBlock(b"", header_block)], end_stream=end_stream)
        h2conn.open_calls += 1
        self.calls[stream_id] = call
        call.local_ended = end_stream
        call.queued_epoch = self._taken_epoch + 1
        if len(self.calls) == 1:
            self._became_active.set()
        if stream_id >= _LAST_STREAM_ID:
            self._start_draining()
        self.flush_now()
        return call

    def send_some(self, call: Call, data: memoryview, *, end_stream: bool) -> memoryview:
        """Queue as much of ``data`` as flow control allows; return the rest. Synchronous."""
        h2conn = self.h2
        stream_id = call.stream_id
        window = max(0, h2conn.local_flow_control_window(stream_id))
        frame = h2conn.max_outbound_frame_size
        while True:
            size = min(window, frame, len(data))
            if size < len(data):
                if size == 0:
                    break
                h2conn.send_data(stream_id, data[:size])
                data = data[size:]
                window -= size
                continue
            h2conn.send_data(stream_id, data, end_stream=end_stream)
            data = data[len(data) :]
            call.local_ended = end_stream
            if end_stream and call.remote_ended:
                self._release(call)
            break
        self.flush_now()
        return data

    async def send_message(self, call: Call, data: bytes, *, end_stream: bool) -> None:
        """Queue ``data`` on ``call``'s stream, waiting for flow control as needed.

        Returns early, without error, when the call ends meanwhile; the caller checks ``call.end``.
        """
        rest = memoryview(data)
        while not (call.end is not None or call.closed):
            rest = self.send_some(call, rest, end_stream=end_stream)
            if not rest:
                return
            call.window_event = trio.Event()
            self._window_waiters.add(call)
            try:
                await call.window_event.wait()
            finally:
                call.window_event = None
                self._window_waiters.discard(call)

    def end_call(self, call: Call) -> None:
        """Half-close ``call`` (END_STREAM with no data). Synchronous."""
        if call.local_ended or call.closed:
            return
        self.h2.end_stream(call.stream_id)
        call.local_ended = True
        if call.remote_ended:
            self._release(call)
        self.flush_now()

    def reset_call(self, call: Call) -> None:
        """RST_STREAM(CANCEL) ``call``. Synchronous; the writer is woken at once."""
        if call.closed:
            return
        if not self.dead:
            self.h2.reset_stream(call.stream_id, ErrorCodes.CANCEL)
            self.flush_now()
        self._release(call)

    def credit_stream(self, call: Call) -> None:
        if call.owed >= self._stream_credit_threshold and not (call.remote_ended or call.closed or self.dead):
            self.h2.increment_flow_control_window(call.owed, call.stream_id)
            call.owed = 0
            self.flush_soon()

    def _release(self, call: Call) -> None:
        """The h2 stream is closed: free its slot and forget it."""
        if call.closed:
            return
        call.closed = True
        if self.calls.pop(call.stream_id, None) is not None:
            self.h2.open_calls -= 1
            self._slots.unpark()
        if self.draining and not self.calls and not self.dead:
            self._shutdown(None, None)

    # -- events -----------------------------------------------------------------------------------------

    def _on_response(self, event: h2.events.Event) -> None:
        assert isinstance(event, h2.events.ResponseReceived)
        call = self.calls.get(event.stream_id)
        if call is None or call.end is not None:
            return
        end_stream = event.stream_ended is not None
        status = status_from_response_headers(event.headers, end_stream=end_stream)
        if status is None:
            return
        if end_stream:
            call.finish(status)
        else:
            call.fail_and_reset(status)

    def _on_data(self, event: h2.events.Event) -> None:
        assert isinstance(event, h2.events.DataReceived)
        size = event.flow_controlled_length
        if size:
            self._conn_owed += size
            if self._conn_owed >= self._conn_credit_threshold:
                self.h2.increment_flow_control_window(self._conn_owed)
                self._conn_owed = 0
        call = self.calls.get(event.stream_id)
        if call is None or call.end is not None:
            return
        try:
            messages = call.decoder.feed(event.data)
        except FramingError as exc:
            call.fail_and_reset(GrpcStatus(exc.code, exc.message))
            return
        call.held += size
        if messages:
            call.messages.extend(messages)
            call.event.set()
        if not call.messages:
            call.owed += call.held
            call.held = 0
            self.credit_stream(call)

    def _on_trailers(self, event: h2.events.Event) -> None:
        assert isinstance(event, h2.events.TrailersReceived)
        call = self.calls.get(event.stream_id)
        if call is None:
            return
        status = status_from_trailers(event.headers)
        if status.code == 0 and call.decoder.buffered:
            status = GrpcStatus(StatusCode.INTERNAL, "server ended the stream in the middle of a message")
        call.finish(status)

    def _on_stream_ended(self, event: h2.events.Event) -> None:
        assert isinstance(event, h2.events.StreamEnded)
        call = self.calls.get(event.stream_id)
        if call is None:
            return
        call.remote_ended = True
        call.finish(_STREAM_ENDED_WITHOUT_TRAILERS)
        if call.local_ended:
            self._release(call)

    def _on_stream_reset(self, event: h2.events.Event) -> None:
        assert isinstance(event, h2.events.StreamReset)
        call = self.calls.get(event.stream_id)
        if call is None:
            return
        call.finish(status_from_reset(int(event.error_code)))
        self._release(call)

    def _on_window_updated(self, event: h2.events.Event) -> None:
        assert isinstance(event, h2.events.WindowUpdated)
        if event.stream_id == 0:
            self._wake_senders()
        else:
            call = self.calls.get(event.stream_id)
            if call is not None and call.window_event is not None:
                call.window_event.set()

    def _on_settings(self, event: h2.events.Event) -> None:
        assert isinstance(event, h2.events.RemoteSettingsChanged)
        changed = event.changed_settings
        if h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS in changed:
            self._max_streams = self.h2.remote_settings.max_concurrent_streams
            self._slots.unpark_all()
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in changed:
            self._wake_senders()

    def _on_ping_ack(self, event: h2.events.Event) -> None:
        self._ping_ack.set()

    def _on_goaway(self, event: h2.events.Event) -> None:
        assert isinstance(event, h2.events.ConnectionTerminated)
        code = int(event.error_code or 0)
        last = event.last_stream_id if event.last_stream_id is not None else 2**31 - 1
        debug = event.additional_data or b""
        logger.debug("%s: %s", self, GoAwayReceived(code, last, debug))
        if code == ErrorCodes.ENHANCE_YOUR_CALM and debug == b"too_many_pings":
            # What gRPC clients do: the server's keepalive policy is stricter than our interval.
            self.params.keepalive_interval *= 2
            logger.warning(
                "%s rejected our keepalive PINGs as too frequent; keepalive_interval is now %s s",
                self.params.endpoint,
                self.params.keepalive_interval,
            )
        self._goaway_last_id = min(self._goaway_last_id, last)
        cause = self._goaway = GoAwayReceived(code, last, debug)
        for stream_id, call in list(self.calls.items()):
            if stream_id > self._goaway_last_id:
                call.finish(_Lost(f"the server refused the call: {cause}", False, cause))
                self.reset_call(call)
        self._start_draining()

    # -- end of life ------------------------------------------------------------------------------------

    def _start_draining(self) -> None:
        if self.draining:
            return
        self.draining = True
        self._slots.unpark_all()
        self._on_state_change(self)
        if not self.calls and not self.dead:
            self._shutdown(None, None)

    def _wake_senders(self) -> None:
        for call in list(self._window_waiters):
            assert call.window_event is not None
            call.window_event.set()

    def close(self, message: str) -> None:
        """Shut the connection down now; open calls fail with ``ConnectionLost(message)``."""
        self._shutdown(message, trio.ClosedResourceError(message))

    def _lost(self, message: str, cause: BaseException) -> None:
        """The socket failed or closed; after a GOAWAY, that GOAWAY is the better explanation."""
        if self._goaway is not None:
            message = f"{message} after {self._goaway}"
            if isinstance(cause, EOFError):
                cause = self._goaway
        self._shutdown(message, cause)

    def _shutdown(self, message: str | None, cause: BaseException | None) -> None:
        """End the connection: fail every open call, stop the tasks. ``message`` None: a clean end."""
        if self.dead:
            return
        self.dead = True
        self.error = message
        if message is not None:
            assert cause is not None
            logger.debug("%s: %s", self, message)
            taken = self._taken_epoch
            for call in self.calls.values():
                call.closed = True
                call.finish(_Lost(message, call.queued_epoch <= taken, cause))
        self.calls.clear()
        self.h2.open_calls = 0
        self._slots.unpark_all()
        self._wake_senders()
        self._scope.cancel()
        self._on_state_change(self)
