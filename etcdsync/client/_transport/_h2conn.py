"""One HTTP/2 connection carrying many gRPC calls: h2's state machine plus a reader, a writer, a lazy
flusher and a keepalive task.

Concurrency model: every state change (opening a stream, queueing data, resetting, crediting flow
control) is a *synchronous* call on the :class:`h2.connection.H2Connection` made by whichever task
wants it; it appends frames to h2's output buffer and wakes the single writer task, which sends
everything accumulated so far in one ``send_all``. So many calls' frames coalesce into one write,
and a cancelled caller queues its RST_STREAM without awaiting anything. (With a single call open
there is nothing to coalesce: its task writes to the socket directly, see ``flush_now``.) The
reader task hands received bytes to h2, which delivers what they mean to the :class:`Connection`
(a ``FrameSink``), which dispatches it to the calls by stream id. On plain TCP on POSIX both the
direct writes and the reader use the socket's descriptor rather than trio's ``SocketStream``
methods, whose machinery per read and write cost about a quarter of the CPU of a round trip.

Output nobody waits for is flushed lazily: it rides along with the next write, and the lazy flusher
sends it if no write comes within a bound (LAZY_FLUSH_DELAY for flow-control credit,
ACK_FLUSH_DELAY for acknowledgements: with one call at a time, grpc-go's BDP PING arrives with every
response, and its ACK then always shares the next request's write).

Flow control (receive side):

* The connection window is credited as soon as DATA arrives, so a stream whose consumer is slow
  never stalls the other streams on the connection.
* A stream's window is credited as its messages are *consumed* by ``receive()``: the bytes of
  complete messages waiting in the stream's queue are withheld, so a slow consumer pushes back on
  the server and buffering stays bounded by the window. When the queue is empty, every received
  byte is credited at once, including the bytes of a message still being reassembled: a message
  larger than the window can never deadlock (the prototype's bug).
* Credits are batched (a WINDOW_UPDATE once a quarter of the window is owed) and flushed lazily,
  within LAZY_FLUSH_DELAY.

Keepalive: after ``keepalive_interval`` seconds without receiving anything *while calls are open*,
send a PING; no ACK (and no other frame) within ``keepalive_timeout`` declares the connection dead.
Idle connections are never pinged: etcd's gRPC server (grpc-go, ``PermitWithoutStream: false``)
counts pings without active streams as abuse and answers with GOAWAY "too_many_pings".

The h2 connection object itself is the adjusted one of ``_h2proto.py`` (pre-encoded headers, O(1)
stream counting, GOAWAY drain, a fast path for the frames of ordinary calls).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Final, TypeVar

import h2.events
import h2.exceptions
import h2.settings
import trio
from h2.errors import ErrorCodes
from hpack.struct import Header

from .._sansio._grpc import (
    FramingError,
    GrpcStatus,
    StatusCode,
    status_from_reset,
    status_from_response_headers,
    status_from_trailers,
)
from ._h2call import Call, ConnectionParams, _Lost
from ._h2proto import RECEIVE_SIZE, GoAwayReceived, H2Protocol

__all__ = ["Call", "Connection", "ConnectionParams", "KeepaliveTimeout", "Unusable"]

logger = logging.getLogger(__name__)

#: How long flow-control credit (WINDOW_UPDATE) may wait for a write to share: the server may be
#: waiting for it.
LAZY_FLUSH_DELAY: Final = 0.002
#: How long acknowledgements (PING and SETTINGS ACK) may wait for a write to share. Long enough that
#: the flusher's timer, which is not disarmed by writes, fires rarely while calls keep the writer busy;
#: far below any keepalive timeout of a server's.
ACK_FLUSH_DELAY: Final = 0.05
#: Stream ids are 31-bit and odd for clients; stop opening streams this close to the end.
_LAST_STREAM_ID: Final = 2**31 - 1 - 2
#: Distinct header blocks whose meaning a connection remembers (see ``Connection._header_statuses``).
_STATUS_CACHE_SIZE: Final = 64
_K = TypeVar("_K")
_V = TypeVar("_V")
#: Whether to read and write a TCP socket's descriptor directly (see ``Connection.flush_now``):
#: POSIX only, where a socket is a file descriptor.
_DIRECT_IO: Final = os.name == "posix"
#: ``os.write`` and ``os.read``; the tests replace them to make the socket do less than asked.
_write_nonblocking = os.write
_read_nonblocking = os.read
_STREAM_ENDED_WITHOUT_TRAILERS: Final = GrpcStatus(
    StatusCode.INTERNAL, "server closed the stream without sending trailers"
)


class KeepaliveTimeout(trio.TooSlowError):
    """No PING acknowledgement arrived in time: the peer or the path to it is stalled."""


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
        # Writer state: an event for "flush now"; for "flush soon", the lazy flusher's deadline and
        # cancel scope (see _lazy_flush_loop).
        self._wake = trio.Event()
        # Direct I/O (see flush_now, _read_loop): the socket's descriptor (-1: not plain TCP), whether
        # the writer is in send_all, and what a direct write could not send (the writer's first job).
        self._fd = stream.socket.fileno() if _DIRECT_IO and isinstance(stream, trio.SocketStream) else -1
        self._writing = False
        self._unsent = b""
        self._lazy_deadline = math.inf
        self._lazy_scope: trio.CancelScope | None = None
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
        # What a header block means for its call, by the block's fields: the server sends the same
        # few blocks over and over (":status 200", "grpc-status 0"), and statuses are immutable.
        self._header_statuses: dict[tuple[object, ...], GrpcStatus | None] = {}
        self._trailer_statuses: dict[tuple[object, ...], GrpcStatus] = {}
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
                    nursery.start_soon(self._lazy_flush_loop)
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
        fd = self._fd
        data: bytes | bytearray
        try:
            while True:
                if fd >= 0:
                    # What SocketStream.receive_some does, minus a failing read before the wait and a
                    # yield after the read (see flush_now for why the descriptor is used directly).
                    await trio.lowlevel.wait_readable(fd)
                    try:
                        data = _read_nonblocking(fd, RECEIVE_SIZE)
                    except BlockingIOError:
                        continue
                else:
                    data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    self._lost("the server closed the connection", EOFError("end of stream"))
                    return
                self._last_received = trio.current_time()
                h2conn.receive_data_into(data, self)
                if h2conn.output_pending:  # acknowledgements (PING, SETTINGS), RST_STREAM from h2
                    self.flush_soon(ACK_FLUSH_DELAY)
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
                    await self._wake.wait()
                self._wake = trio.Event()
                # This write takes whatever waited; the flusher's deadline stays armed (see there).
                data = h2conn.data_to_send()
                if self._unsent:
                    data = self._unsent + data
                    self._unsent = b""
                if data:
                    self._taken_epoch += 1
                    self._writing = True
                    try:
                        await stream.send_all(data)
                    finally:
                        self._writing = False
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._lost(f"the connection broke: {exc!r}", exc)

    async def _lazy_flush_loop(self) -> None:
        """Send "flush soon" output that no write took in time (see :meth:`flush_soon`).

        A long-lived cancel scope whose deadline is the earliest one asked for, rather than a
        deadline on the writer's wait: with one call at a time every response leaves a PING ACK to
        share the next request's write, and a cancel scope per writer round plus a deadline change
        per response cost more than the rest of the writer. A write that takes the output does not
        disarm the deadline (that is another change per round); it fires, an exception inside trio
        and the expensive part, at most once per ACK_FLUSH_DELAY while only acknowledgements wait,
        sometimes with nothing left to send.
        """
        while True:
            with trio.CancelScope(deadline=self._lazy_deadline) as scope:
                self._lazy_scope = scope
                await trio.sleep_forever()
            self._lazy_scope = None
            self._lazy_deadline = math.inf
            if self.h2.output_pending:
                self.flush_now()

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
        """Have h2's output sent at once: by this task, else by the writer at its next chance.

        With one call open there is nothing to coalesce, so the calling task writes to the socket
        itself, saving the writer's wake-up and trio's send machinery (a sixth of the CPU of a call
        at concurrency 1). The write is synchronous and non-blocking, so it cannot be cancelled
        halfway; whatever the socket does not take at once, and any error, is left to the writer,
        which sends it before anything else. Only while the writer is idle, on plain TCP (not TLS).
        """
        if self._fd >= 0 and len(self.calls) <= 1 and not (self._writing or self._unsent or self.dead):
            data = self.h2.data_to_send()
            if not data:
                return
            self._taken_epoch += 1
            try:
                sent = _write_nonblocking(self._fd, data)
            except OSError:  # would block, or broken: the writer finds out which
                sent = 0
            if sent == len(data):
                return
            self._unsent = data[sent:]
        self._wake.set()

    def flush_soon(self, delay: float = LAZY_FLUSH_DELAY) -> None:
        """Have the writer send h2's output within ``delay`` seconds (or with an earlier write)."""
        deadline = trio.current_time() + delay
        if deadline < self._lazy_deadline:
            self._lazy_deadline = deadline
            if self._lazy_scope is not None:
                self._lazy_scope.deadline = deadline

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
        stream_id = h2conn.start_request(header_block, end_stream=end_stream)
        call = Call(self, stream_id)
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
            try:
                self.h2.reset_stream(call.stream_id, ErrorCodes.CANCEL)
            except h2.exceptions.StreamClosedError:
                pass  # both sides ended already (a bad final DATA frame with END_STREAM): nothing to reset
            else:
                self.flush_now()
        self._release(call)

    def credit_stream(self, call: Call) -> None:
        if call.owed >= self._stream_credit_threshold and not (call.remote_ended or call.closed or self.dead):
            try:
                self.h2.increment_flow_control_window(call.owed, call.stream_id)
            except h2.exceptions.StreamClosedError:
                return  # its final DATA frame (END_STREAM) is being handled: no credit is due
            call.owed = 0
            self.flush_soon()

    def _release(self, call: Call) -> None:
        """The h2 stream is closed: free its slot and forget it."""
        if call.closed:
            return
        call.closed = True
        if self.calls.pop(call.stream_id, None) is not None:
            self.h2.open_calls -= 1
            self.h2.forget_stream(call.stream_id)
            if self._slots:
                self._slots.unpark()
        if self.draining and not self.calls and not self.dead:
            self._shutdown(None, None)

    # -- what the server sent: a FrameSink for H2Protocol.receive_data_into --------------------------

    def response_received(self, stream_id: int, headers: list[Header], ended: bool) -> None:
        self._response(stream_id, headers, ended)
        if ended:
            self._stream_ended(stream_id)

    def trailers_received(self, stream_id: int, headers: list[Header]) -> None:
        self._trailers(stream_id, headers)
        self._stream_ended(stream_id)

    def data_received(self, stream_id: int, data: bytes, flow_controlled_length: int, ended: bool) -> None:
        self._data(stream_id, data, flow_controlled_length)
        if ended:
            self._stream_ended(stream_id)

    def window_updated(self, stream_id: int, delta: int) -> None:
        if stream_id == 0:
            self._wake_senders()
        else:
            call = self.calls.get(stream_id)
            if call is not None and call.window_event is not None:
                call.window_event.set()

    def ping_received(self, ping_data: bytes) -> None:
        pass  # h2 queued the ACK; the read loop has it flushed

    def ping_ack_received(self, ping_data: bytes) -> None:
        self._ping_ack.set()

    def h2_events(self, events: list[h2.events.Event]) -> None:
        handlers = self._handlers
        for event in events:
            handler = handlers.get(type(event))
            if handler is not None:
                handler(event)

    @staticmethod
    def _remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
        if len(cache) >= _STATUS_CACHE_SIZE:
            cache.clear()
        cache[key] = value
        return value

    def _response(self, stream_id: int, headers: list[Header], ended: bool) -> None:
        call = self.calls.get(stream_id)
        if call is None or call.end is not None:
            return
        key = (ended, *headers)
        try:
            status = self._header_statuses[key]
        except KeyError:
            status = self._remember(
                self._header_statuses, key, status_from_response_headers(headers, end_stream=ended)
            )
        if status is None:
            return
        if ended:
            call.finish(status)
        else:
            call.fail_and_reset(status)

    def _data(self, stream_id: int, data: bytes, size: int) -> None:
        if size:
            self._conn_owed += size
            if self._conn_owed >= self._conn_credit_threshold:
                self.h2.increment_flow_control_window(self._conn_owed)
                self._conn_owed = 0
                self.flush_soon()
        call = self.calls.get(stream_id)
        if call is None or call.end is not None:
            return
        try:
            messages = call.decoder.feed(data)
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

    def _trailers(self, stream_id: int, headers: list[Header]) -> None:
        call = self.calls.get(stream_id)
        if call is None:
            return
        key = tuple(headers)
        status = self._trailer_statuses.get(key)
        if status is None:
            status = self._remember(self._trailer_statuses, key, status_from_trailers(headers))
        if status.code == 0 and call.decoder.buffered:
            status = GrpcStatus(StatusCode.INTERNAL, "server ended the stream in the middle of a message")
        call.finish(status)

    def _stream_ended(self, stream_id: int) -> None:
        call = self.calls.get(stream_id)
        if call is None:
            return
        call.remote_ended = True
        call.finish(_STREAM_ENDED_WITHOUT_TRAILERS)
        if call.local_ended:
            self._release(call)

    # The same, as h2 events: what h2's own path produces (frames the fast path leaves to h2).

    def _on_response(self, event: h2.events.Event) -> None:
        assert isinstance(event, h2.events.ResponseReceived)
        self._response(event.stream_id, event.headers, event.stream_ended is not None)

    def _on_data(self, event: h2.events.Event) -> None:
        assert isinstance(event, h2.events.DataReceived)
        self._data(event.stream_id, event.data, event.flow_controlled_length)

    def _on_trailers(self, event: h2.events.Event) -> None:
        assert isinstance(event, h2.events.TrailersReceived)
        self._trailers(event.stream_id, event.headers)

    def _on_stream_ended(self, event: h2.events.Event) -> None:
        assert isinstance(event, h2.events.StreamEnded)
        self._stream_ended(event.stream_id)

    def _on_stream_reset(self, event: h2.events.Event) -> None:
        assert isinstance(event, h2.events.StreamReset)
        call = self.calls.get(event.stream_id)
        if call is None:
            return
        call.finish(status_from_reset(int(event.error_code)))
        self._release(call)

    def _on_window_updated(self, event: h2.events.Event) -> None:
        assert isinstance(event, h2.events.WindowUpdated)
        self.window_updated(event.stream_id, event.delta)

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
