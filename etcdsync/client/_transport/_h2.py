"""The default transport: gRPC over HTTP/2 with ``h2`` on trio streams (TCP, or TLS with ALPN ``h2``).

:func:`open_h2_channel` gives a :class:`H2Channel` to one endpoint. The channel connects lazily (on
the first call), keeps at most one connection that accepts new calls, and opens a new one on the
next call after it broke or received a GOAWAY. Failed connection attempts are spaced by a jittered
exponential backoff (``_sansio/_backoff.py``); calls that arrive meanwhile wait for the next attempt
within their own deadline, and fail with ``ConnectionLost(request_sent=False)`` if it fails.

Per call: the caller's trio deadline becomes ``grpc-timeout``; a call whose deadline has passed is
never sent; cancelling the caller resets the stream (RST_STREAM(CANCEL)) synchronously and raises
``trio.Cancelled`` without waiting for the server.

Keepalive defaults (10 s interval, 5 s timeout) detect a frozen or unreachable server within 15 s
while a call is open, and stay clear of etcd's server policy: grpc-go's ``EnforcementPolicy`` in
etcd has ``MinTime`` 5 s (``--grpc-keepalive-min-time``) and forbids pings without open streams;
three violations get the connection closed with GOAWAY "too_many_pings". We ping only while calls
are open and at most once per ``keepalive_interval`` of silence, so keep that >= 5 s against etcd.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final, final

import h2.exceptions
import trio

from ..._version import __version__
from .._sansio._backoff import Backoff
from .._sansio._grpc import (
    RequestHeaderTemplate,
    StatusCode,
    encode_message,
    encode_metadata,
    encode_timeout,
    validate_metadata,
)
from ._base import ChannelState, ChannelStatistics, ConnectionLost, StatusError
from ._h2conn import Call, Connection, ConnectionParams, Unusable
from ._h2proto import GoAwayReceived, NotHTTP2Error, establish_connection

__all__ = ["H2Channel", "H2Stream", "connect_h2_channel", "open_h2_channel"]

logger = logging.getLogger(__name__)

#: Per-stream (and connection) receive window: large, so one round trip moves a big watch
#: catch-up response, while a slow consumer still stops the server after this many bytes.
DEFAULT_RECEIVE_WINDOW: Final = 16 * 1024 * 1024
#: gRPC's default minimum connect timeout.
DEFAULT_CONNECT_TIMEOUT: Final = 20.0
#: How many connections a call tries to get a stream on before giving up (see ``_start_call``).
_MAX_CONNECTIONS_PER_CALL: Final = 3
_USER_AGENT: Final = f"etcdsync/{__version__}"
_CONNECT_ERRORS: Final = (
    OSError,  # refused, unreachable, DNS (socket.gaierror), TLS (ssl.SSLError)
    trio.BrokenResourceError,  # TLS handshake failures, resets during the preface
    trio.TooSlowError,  # connect_timeout
    h2.exceptions.ProtocolError,  # not an HTTP/2 server
    NotHTTP2Error,  # not an HTTP/2 server, known from its first bytes
    EOFError,
    GoAwayReceived,
)


def _describe(exc: BaseException) -> str:
    # trio wraps TLS errors in a bare BrokenResourceError; the cause is the informative part.
    return f"{exc!r} caused by {exc.__cause__!r}" if exc.__cause__ is not None else repr(exc)


def _split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'endpoint must be "host:port", not {endpoint!r}')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


async def _start_tls(
    stream: trio.abc.Stream, context: ssl.SSLContext, host: str
) -> trio.SSLStream[trio.abc.Stream]:
    tls = trio.SSLStream(stream, context, server_hostname=host)
    await tls.do_handshake()
    alpn = tls.selected_alpn_protocol()
    if alpn not in (None, "h2"):
        raise trio.BrokenResourceError(f"the server chose ALPN protocol {alpn!r}, not 'h2'")
    return tls


class _Attempt:
    """One connection attempt that any number of calls may wait for."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: BaseException | None = None


@final
class H2Channel:
    """A gRPC channel to one endpoint over h2; implements ``etcdsync.client._transport.Channel``.

    Make one with :func:`open_h2_channel` (or :func:`connect_h2_channel`).

    Example::

        async with open_h2_channel("127.0.0.1:2379") as channel:
            response = await channel.unary("/etcdserverpb.KV/Range", request_bytes)
            async with channel.stream("/etcdserverpb.Watch/Watch") as stream:
                await stream.send(create_request_bytes)
                first = await stream.receive()
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        endpoint: str,
        *,
        ssl_context: ssl.SSLContext | None,
        keepalive_interval: float,
        keepalive_timeout: float,
        max_receive_message_length: int,
        max_send_message_length: int,
        connect_backoff: Backoff | None,
        connect_timeout: float,
        receive_window: int,
    ) -> None:
        self._host, self._port = _split_endpoint(endpoint)
        for name, value in (
            ("keepalive_interval", keepalive_interval),
            ("keepalive_timeout", keepalive_timeout),
            ("connect_timeout", connect_timeout),
            ("max_receive_message_length", max_receive_message_length),
            ("max_send_message_length", max_send_message_length),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0")
        if not 65535 <= receive_window <= 2**31 - 1:
            raise ValueError("receive_window must be between 65535 and 2**31 - 1")
        if ssl_context is not None:
            # Required: etcd (Go's HTTP/2 server) treats a TLS client without ALPN "h2" as HTTP/1.
            ssl_context.set_alpn_protocols(["h2"])
        self.endpoint = endpoint
        self._nursery = nursery
        self._ssl_context = ssl_context
        self._max_send = max_send_message_length
        self._connect_timeout = connect_timeout
        self._backoff = connect_backoff if connect_backoff is not None else Backoff(rng=random.Random())
        self._params = ConnectionParams(
            endpoint=endpoint,
            keepalive_interval=keepalive_interval,
            keepalive_timeout=keepalive_timeout,
            max_receive_message_length=max_receive_message_length,
            receive_window=receive_window,
        )
        self._template = RequestHeaderTemplate(
            scheme="https" if ssl_context is not None else "http",
            authority=endpoint,
            user_agent=_USER_AGENT,
        )
        self._prefixes: dict[str, bytes] = {}
        self._metadata_blocks: dict[tuple[tuple[str, str], ...], bytes] = {}
        self._connection: Connection | None = None
        self._connections: set[Connection] = set()
        self._attempt: _Attempt | None = None
        self._attempt_scope: trio.CancelScope | None = None
        self._retry_at = -math.inf
        self._closed = False
        self._state = ChannelState.IDLE
        self._calls_started = 0
        self._connects = 0
        self._last_error: str | None = None

    def __repr__(self) -> str:
        return (
            f"<etcdsync H2Channel to {self.endpoint} at {id(self):#x}, {self._state.value}, "
            f"{sum(c.open_streams for c in self._connections)} open streams>"
        )

    # -- public API -------------------------------------------------------------------------------------

    async def unary(self, path: str, request: bytes, *, metadata: Sequence[tuple[str, str]] = ()) -> bytes:
        """Call the unary method ``path`` and return its serialized response.

        A checkpoint. The caller's deadline is sent as ``grpc-timeout``; cancelling the caller sends
        RST_STREAM(CANCEL) at once and raises ``trio.Cancelled``.

        Raises:
            StatusError: the server's non-OK status; RESOURCE_EXHAUSTED locally for a request over
                ``max_send_message_length`` (not sent) or a response over
                ``max_receive_message_length``.
            ConnectionLost: no connection, or it broke before the status arrived.
            trio.ClosedResourceError: the channel is closed.
            ValueError: invalid metadata.
        """
        self._check_send_size(len(request))
        call = await self._start_call(path, metadata, encode_message(request), end_stream=True)
        try:
            await call.wait_end()
        finally:
            call.cancel()  # a no-op once the stream is closed
        return call.unary_result()

    @asynccontextmanager
    async def stream(self, path: str, *, metadata: Sequence[tuple[str, str]] = ()) -> AsyncIterator[H2Stream]:
        """Open a bidirectional stream to ``path``.

        Entering is a checkpoint and may wait for a connection and a stream slot; exiting is not a
        checkpoint: before the server's trailers it resets the stream with RST_STREAM(CANCEL), after
        them it only half-closes our side if needed.

        Raises (on entry):
            ConnectionLost: no connection could be had.
            trio.ClosedResourceError: the channel is closed.
            ValueError: invalid metadata.
        """
        await trio.lowlevel.checkpoint()
        call = await self._start_call(path, metadata, None, end_stream=False)
        try:
            yield H2Stream._create(call, self._max_send)
        finally:
            call.close()

    def statistics(self) -> ChannelStatistics:
        """A snapshot of the channel's state (no I/O)."""
        return ChannelStatistics(
            endpoint=self.endpoint,
            state=self._state,
            open_streams=sum(c.open_streams for c in self._connections),
            calls_started=self._calls_started,
            calls_failed=self._params.calls_failed,
            reconnects=max(0, self._connects - 1),
            last_error=self._last_error,
        )

    async def aclose(self) -> None:
        """Close the channel: fail open calls with ConnectionLost, refuse new ones. A checkpoint."""
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Synchronous :meth:`aclose` (what leaving :func:`open_h2_channel` does)."""
        if self._closed:
            return
        self._closed = True
        self._state = ChannelState.CLOSED
        if self._attempt_scope is not None:
            self._attempt_scope.cancel()
        for connection in list(self._connections):
            connection.close("the channel was closed")

    # -- calls ------------------------------------------------------------------------------------------

    def _check_send_size(self, size: int) -> None:
        if size > self._max_send:
            raise StatusError(
                StatusCode.RESOURCE_EXHAUSTED,
                f"trying to send message larger than max ({size} vs. {self._max_send})",
            )

    def _metadata_block(self, metadata: Sequence[tuple[str, str]]) -> bytes:
        # Callers usually pass the same few tuples over and over (hasleader, a token): cache them.
        if isinstance(metadata, tuple):
            block = self._metadata_blocks.get(metadata)
            if block is not None:
                return block
        validate_metadata(metadata)
        block = encode_metadata(metadata)
        if isinstance(metadata, tuple):
            if len(self._metadata_blocks) >= 64:
                self._metadata_blocks.clear()
            self._metadata_blocks[metadata] = block
        return block

    def _prefix(self, path: str) -> bytes:
        prefix = self._prefixes.get(path)
        if prefix is None:
            if not path.startswith("/") or not path.isascii():
                raise ValueError(f'method path must look like "/package.Service/Method", not {path!r}')
            prefix = self._prefixes[path] = self._template.encode_prefix(path)
        return prefix

    async def _start_call(
        self, path: str, metadata: Sequence[tuple[str, str]], message: bytes | None, *, end_stream: bool
    ) -> Call:
        """Get a connection and a stream slot, send HEADERS (and ``message``); return the call."""
        prefix = self._prefix(path)
        metadata_block = self._metadata_block(metadata)
        connection = self._connection
        if connection is None or not (connection.accepting and connection.has_free_slot()):
            connection = await self._usable_connection()
        deadline = trio.current_effective_deadline()
        timeout = None
        if deadline != math.inf:
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                # Never send a call that is already too late; the caller's scope cancels this.
                await trio.sleep_forever()
            timeout = encode_timeout(remaining)
        block = prefix + RequestHeaderTemplate.encode_variable(timeout, metadata_block)
        if message is None:
            call = connection.start_call(block, end_stream=False)
        else:
            call = connection.start_call(block)
            rest = connection.send_some(call, memoryview(message), end_stream=end_stream)
            if rest:
                try:
                    await connection.send_message(call, rest.tobytes(), end_stream=end_stream)
                except BaseException:
                    call.cancel()
                    raise
        self._calls_started += 1
        return call

    # -- connections ------------------------------------------------------------------------------------

    async def _usable_connection(self) -> Connection:
        """A connection with a free stream slot, waiting (and connecting) as needed."""
        for _ in range(_MAX_CONNECTIONS_PER_CALL):
            connection = await self._get_connection()
            if not connection.has_free_slot():
                try:
                    await connection.wait_for_slot()
                except Unusable:
                    continue
            return connection
        raise ConnectionLost(
            f"{self.endpoint}: connections kept closing before the call could start",
            endpoint=self.endpoint,
            request_sent=False,
        ) from trio.BrokenResourceError(self._last_error)

    async def _get_connection(self) -> Connection:
        """The connection that accepts calls, connecting (after the backoff delay) if there is none."""
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the channel is closed")
            connection = self._connection
            if connection is not None and connection.accepting:
                return connection
            attempt = self._attempt
            if attempt is None:
                attempt = self._attempt = _Attempt()
                self._nursery.start_soon(self._connect, attempt)
            await attempt.done.wait()
            if attempt.error is not None and not self._closed:
                raise ConnectionLost(
                    f"could not connect to {self.endpoint}: {_describe(attempt.error)}",
                    endpoint=self.endpoint,
                    request_sent=False,
                ) from attempt.error

    async def _connect(self, attempt: _Attempt) -> None:
        self._state = ChannelState.CONNECTING
        try:
            with trio.CancelScope() as self._attempt_scope:
                await trio.sleep_until(self._retry_at)
                await self._open_connection()
        except _CONNECT_ERRORS as exc:
            attempt.error = exc
            self._last_error = f"connect: {_describe(exc)}"
            delay = self._backoff.next_delay()
            self._retry_at = trio.current_time() + delay
            self._state = ChannelState.TRANSIENT_FAILURE
            logger.debug("connecting to %s failed (%r); next attempt in %.3f s", self.endpoint, exc, delay)
        finally:
            self._attempt_scope = None
            self._attempt = None
            attempt.done.set()
            if self._closed:
                self._state = ChannelState.CLOSED

    async def _open_connection(self) -> None:
        with trio.fail_after(self._connect_timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
            try:
                if self._ssl_context is not None:
                    stream = await _start_tls(stream, self._ssl_context, self._host)
                h2conn, _ = await establish_connection(stream, self._params.receive_window)
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        connection = Connection(stream, h2conn, self._params, self._connection_changed)
        self._connections.add(connection)
        await self._nursery.start(connection.run)
        self._connection = connection
        self._connects += 1
        self._backoff.reset()
        self._retry_at = -math.inf
        self._state = ChannelState.READY
        logger.debug("connected to %s", self.endpoint)

    def _connection_changed(self, connection: Connection) -> None:
        """A connection started draining (GOAWAY) or ended."""
        if connection.dead:
            self._connections.discard(connection)
            if connection.error is not None:
                self._last_error = connection.error
        if self._connection is connection:
            self._connection = None
            if not self._closed and self._attempt is None:
                self._state = ChannelState.IDLE


@final
class H2Stream:
    """One bidirectional gRPC stream; implements ``etcdsync.client._transport.Stream``.

    Only :meth:`H2Channel.stream` makes these. One task may send while another receives.
    """

    def __init__(self, call: Call, max_send: int, *, _private: object = None) -> None:
        if _private is not _PRIVATE:
            raise TypeError("use `async with channel.stream(path) as stream:`")
        self._call = call
        self._max_send = max_send
        self._send_closed = False
        self._sending = False
        self._receiving = False

    @classmethod
    def _create(cls, call: Call, max_send: int) -> H2Stream:
        return cls(call, max_send, _private=_PRIVATE)

    def __repr__(self) -> str:
        call = self._call
        state = "open" if call.end is None else f"ended ({call.end})"
        return f"<etcdsync H2Stream {call.stream_id} at {id(self):#x}, {state}, {len(call.messages)} queued>"

    async def send(self, message: bytes) -> None:
        """Send one message; waits while flow control holds it back. A checkpoint.

        Raises:
            StatusError: RESOURCE_EXHAUSTED for a message over ``max_send_message_length`` (nothing
                is sent), or the call's non-OK status if it already ended.
            ConnectionLost: the connection broke.
            trio.BrokenResourceError: the server already ended the call with status OK.
            trio.ClosedResourceError: :meth:`close_send` was called.
            trio.BusyResourceError: another task is sending on this stream.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        if self._send_closed:
            raise trio.ClosedResourceError("close_send() was called on this stream")
        if len(message) > self._max_send:
            raise StatusError(
                StatusCode.RESOURCE_EXHAUSTED,
                f"trying to send message larger than max ({len(message)} vs. {self._max_send})",
            )
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            call = self._call
            if call.end is None:
                await call.conn.send_message(call, encode_message(message), end_stream=False)
            if call.end is not None:
                self._raise_send_end()
        finally:
            self._sending = False

    def _raise_send_end(self) -> None:
        end = self._call.end
        if getattr(end, "code", None) == 0:
            raise trio.BrokenResourceError("the server already ended this stream")
        self._call.raise_end()

    async def receive(self) -> bytes:
        """The next message. A checkpoint.

        Raises:
            trio.EndOfChannel: the server ended the stream with status OK (all messages received).
            StatusError: the server's non-OK status (after the messages that came before it).
            ConnectionLost: the connection broke.
            trio.BusyResourceError: another task is receiving on this stream.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            return await self._call.receive_message()
        finally:
            self._receiving = False

    async def close_send(self) -> None:
        """Tell the server we will send nothing more (END_STREAM). Idempotent; a checkpoint."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        await trio.lowlevel.checkpoint()
        self._send_closed = True
        call = self._call
        if not call.closed:
            call.conn.end_call(call)


_PRIVATE: Final = object()


def connect_h2_channel(
    nursery: trio.Nursery,
    endpoint: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    keepalive_interval: float = 10.0,
    keepalive_timeout: float = 5.0,
    max_receive_message_length: int = 2**31 - 1,
    max_send_message_length: int = 2**31 - 1,
    connect_backoff: Backoff | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    receive_window: int = DEFAULT_RECEIVE_WINDOW,
) -> H2Channel:
    """Low-level form of :func:`open_h2_channel`: the channel's tasks run in ``nursery``.

    Not a checkpoint (nothing connects until the first call). Close it with
    :meth:`H2Channel.aclose`; until then ``nursery`` cannot exit.
    """
    return H2Channel(
        nursery,
        endpoint,
        ssl_context=ssl_context,
        keepalive_interval=keepalive_interval,
        keepalive_timeout=keepalive_timeout,
        max_receive_message_length=max_receive_message_length,
        max_send_message_length=max_send_message_length,
        connect_backoff=connect_backoff,
        connect_timeout=connect_timeout,
        receive_window=receive_window,
    )


@asynccontextmanager
async def open_h2_channel(
    endpoint: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    keepalive_interval: float = 10.0,
    keepalive_timeout: float = 5.0,
    max_receive_message_length: int = 2**31 - 1,
    max_send_message_length: int = 2**31 - 1,
    connect_backoff: Backoff | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    receive_window: int = DEFAULT_RECEIVE_WINDOW,
) -> AsyncIterator[H2Channel]:
    """Open a gRPC channel to ``endpoint`` (``"host:port"``) over HTTP/2.

    Example::

        async with open_h2_channel("127.0.0.1:2379") as channel:
            data = await channel.unary("/etcdserverpb.KV/Range", request)

    Nothing connects until the first call. Entering and exiting are checkpoints; exiting closes the
    connection at once (calls still open fail with :class:`ConnectionLost`).

    Args:
        endpoint: ``"host:port"`` (IPv6 as ``"[::1]:2379"``); also the ``:authority``.
        ssl_context: use TLS with this context (with a client certificate loaded for mutual TLS).
            Its ALPN protocols are set to ``["h2"]`` -- an ``SSLContext`` cannot be copied -- so a
            context shared with HTTP/1 clients must not be passed.
        keepalive_interval: seconds without receiving anything, while calls are open, after which a
            PING checks the connection. Keep it >= 5 s against etcd (see the module docstring); if
            the server still says "too_many_pings", the channel doubles it.
        keepalive_timeout: seconds to wait for the PING's acknowledgement before declaring the
            connection dead; its calls then fail with ``ConnectionLost(request_sent=True)``.
        max_receive_message_length: larger responses fail with StatusError(RESOURCE_EXHAUSTED).
        max_send_message_length: larger requests fail with StatusError(RESOURCE_EXHAUSTED), unsent.
        connect_backoff: delays between failed connection attempts (owned by the channel; do not
            share an instance). Default: 0.1 s growing by 1.6x to 5 s, +-20 % jitter.
        connect_timeout: bound on one attempt (TCP, TLS and the HTTP/2 preface).
        receive_window: the HTTP/2 flow-control window we grant per stream and per connection.
    """
    try:
        async with trio.open_nursery() as nursery:
            channel = connect_h2_channel(
                nursery,
                endpoint,
                ssl_context=ssl_context,
                keepalive_interval=keepalive_interval,
                keepalive_timeout=keepalive_timeout,
                max_receive_message_length=max_receive_message_length,
                max_send_message_length=max_send_message_length,
                connect_backoff=connect_backoff,
                connect_timeout=connect_timeout,
                receive_window=receive_window,
            )
            try:
                yield channel
            finally:
                channel.close()
    except BaseExceptionGroup as group:
        _raise_sole(group)


def _raise_sole(group: BaseExceptionGroup[BaseException]) -> None:
    """Re-raise the only exception in ``group`` by itself (STYLE rule 22), else the group.

    The channel's own tasks never raise (connection errors become call errors), so a group here
    normally holds the body's exception alone.
    """
    if len(group.exceptions) != 1 or isinstance(group.exceptions[0], BaseExceptionGroup):
        raise group
    exc = group.exceptions[0]
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context  # undo the implicit chaining onto the group
        del exc, context
