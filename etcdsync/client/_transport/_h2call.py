"""The client side of one gRPC call on an HTTP/2 connection: what the reader delivers to it, and what
its consumer takes from it. :class:`~._h2conn.Connection` owns the calls; see there for the model.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, NoReturn

import attrs
import trio

from .._sansio._grpc import MESSAGE_HEADER_LENGTH, GrpcStatus, MessageDecoder, StatusCode
from ._base import ConnectionLost, StatusError

if TYPE_CHECKING:
    from ._h2conn import Connection

__all__ = ["Call", "ConnectionParams"]


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
