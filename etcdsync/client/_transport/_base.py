"""The transport interface: what the client core needs from a gRPC implementation, and nothing more.

A *channel* speaks to one endpoint and owns (at most) one live HTTP/2 connection, reconnecting on
demand. It offers unary calls and bidirectional streams of opaque, already-serialized protobuf
messages; it knows nothing about etcd. Two things can go wrong, and they are kept apart:

* :class:`StatusError` -- the server answered with a non-OK gRPC status. The client core maps it
  onto the public error tree (``error_from_status(...) from status_error``); the transport never
  interprets codes.
* :class:`ConnectionLost` -- no status could be read because the connection could not be set up or
  broke. ``request_sent`` says whether the request may have reached the server, which is what
  decides whether a write can be retried.

Both the h2 transport and a later grpcio transport implement exactly :class:`Channel` and
:class:`Stream`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs

from .._errors import ConnectionFailedError

__all__ = [
    "Channel",
    "ChannelState",
    "ChannelStatistics",
    "ConnectionLost",
    "Metadata",
    "StatusError",
    "Stream",
]

#: Call metadata: ``(name, value)`` pairs sent as HTTP/2 headers (``("token", "...")``).
Metadata = Sequence[tuple[str, str]]


class StatusError(Exception):
    """The server ended a call with a non-OK gRPC status.

    Also raised locally, with the code gRPC itself would use, when a message breaks a size limit
    (RESOURCE_EXHAUSTED) or the response is not valid gRPC (INTERNAL, UNKNOWN, ...).

    Attributes:
        code: the numeric gRPC status code (never 0).
        message: the percent-decoded ``grpc-message``, ``""`` when absent.
        trailers: the remaining trailer (or trailers-only header) fields in arrival order, names
            lowercase; pseudo-headers, ``content-type``, ``grpc-status`` and ``grpc-message`` are
            left out.
    """

    def __init__(self, code: int, message: str, trailers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(code, message, trailers)
        self.code = code
        self.message = message
        self.trailers = trailers

    def __str__(self) -> str:
        return f"gRPC status {self.code}: {self.message}" if self.message else f"gRPC status {self.code}"


class ConnectionLost(ConnectionFailedError):
    """The connection to ``endpoint`` could not be established, or broke before the call ended.

    Always raised ``from`` the underlying cause (an ``OSError``, a TLS error, a missed keepalive
    PING, a GOAWAY, ...).

    Attributes:
        endpoint: the ``host:port`` of the channel.
        request_sent: False when the request provably never reached the server -- the connection
            was never up, the call was still waiting for it, or the server's GOAWAY said it would not
            process the stream -- so even a write can be sent again. True when the server may have
            received (and applied) it.
    """


class ChannelState(enum.Enum):
    """gRPC's connectivity states, as seen by one channel."""

    #: No connection, none wanted yet (before the first call, or after a connection ended cleanly).
    IDLE = "idle"
    #: A connection attempt is under way.
    CONNECTING = "connecting"
    #: A connection is up and accepts new calls.
    READY = "ready"
    #: The last connection attempt failed; the next call retries after the backoff delay.
    TRANSIENT_FAILURE = "transient_failure"
    #: The channel was closed; every call raises :class:`trio.ClosedResourceError`.
    CLOSED = "closed"


@attrs.frozen(kw_only=True)
class ChannelStatistics:
    """A snapshot of one channel's state (see :meth:`Channel.statistics`).

    Attributes:
        endpoint: the channel's ``host:port``.
        state: the connectivity state.
        open_streams: HTTP/2 streams currently open (unary calls in flight plus open streams),
            across the current connection and any connection still draining after a GOAWAY.
        calls_started: calls (unary or stream) that were given a stream so far.
        calls_failed: calls that ended with :class:`StatusError` or :class:`ConnectionLost`.
        reconnects: successful connection set-ups after the first one.
        last_error: a one-line description of the last connection failure, or ``None``.
    """

    endpoint: str
    state: ChannelState
    open_streams: int
    calls_started: int
    calls_failed: int
    reconnects: int
    last_error: str | None


class Stream(Protocol):
    """One bidirectional gRPC stream, used inside ``async with channel.stream(path) as stream:``.

    Leaving the ``async with`` before the server's trailers arrived (normally, by an exception or by
    cancellation) resets the stream with RST_STREAM(CANCEL) at once, without waiting.
    """

    async def send(self, message: bytes) -> None:
        """Send one serialized message. Waits while HTTP/2 flow control says the server is behind.

        A checkpoint. Raises :class:`StatusError` (RESOURCE_EXHAUSTED) before sending when the message
        is over the channel's ``max_send_message_length``; the stream's final error when the call
        has already failed; :class:`trio.ClosedResourceError` after :meth:`close_send`.
        """
        ...

    async def receive(self) -> bytes:
        """The next message from the server.

        A checkpoint. Raises :class:`trio.EndOfChannel` once the server ended the stream with status
        OK and every message was received, :class:`StatusError` on a non-OK status,
        :class:`ConnectionLost` when the connection broke.
        """
        ...

    async def close_send(self) -> None:
        """Half-close: tell the server no more messages will come (END_STREAM). A checkpoint."""
        ...


class Channel(Protocol):
    """A gRPC channel to one etcd endpoint (``host:port``)."""

    endpoint: str

    async def unary(self, path: str, request: bytes, *, metadata: Metadata = ()) -> bytes:
        """Call the unary method ``path`` (``"/etcdserverpb.KV/Range"``) and return the response.

        A checkpoint. The caller's trio deadline is sent as ``grpc-timeout``; cancelling the caller
        resets the stream at once. Raises :class:`StatusError`, :class:`ConnectionLost`,
        :class:`trio.ClosedResourceError` (channel closed), :class:`ValueError` (bad metadata).
        """
        ...

    def stream(self, path: str, *, metadata: Metadata = ()) -> AbstractAsyncContextManager[Stream]:
        """Open a bidirectional stream to the method ``path``; entering it is a checkpoint."""
        ...

    def statistics(self) -> ChannelStatistics:
        """A snapshot of the channel's state (no I/O)."""
        ...
