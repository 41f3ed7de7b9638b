"""A small in-process HTTP/2 gRPC server for transport edge cases a real etcd won't produce on demand.

Built on h2 in server mode over loopback TCP (optionally TLS), so connection resets, EOFs and
reconnects are real socket events. It never stands in for etcd semantics: each test scripts what
the "server" does per call with a handler::

    async def handler(call: FakeCall) -> None:
        request = await call.receive()
        await call.send(request)          # echo
        await call.finish()               # grpc-status 0

    async with open_fake_server(handler) as server:
        async with open_h2_channel(server.endpoint) as channel:
            assert await channel.unary("/test.Echo/Unary", b"hi") == b"hi"

What it records for assertions: every call (path, request headers, RST_STREAM received from the
client), PINGs received and acknowledged, connections accepted, the peak number of concurrently open
calls.

Knobs: ``max_concurrent_streams`` (enforced by h2: a client exceeding it is a protocol error that
kills the connection), ``initial_window_size`` (the server's receive window), ``answer_pings``,
``auto_ack`` (acknowledge received DATA), ``refuse`` (close new connections at once), and
per connection ``send_goaway``, ``abort`` (TCP RST), ``close`` (FIN), ``freeze``/``unfreeze`` (stop
reading and writing, like a SIGSTOPped process). The server's own GOAWAY is written as a raw frame so
that h2's server state machine (which refuses to send anything after GOAWAY) can still complete the
streams the GOAWAY allows.

The server side deliberately uses its own message framing and status encoding, not etcdsync's, so
a bug there cannot hide a bug in the client.
"""

from __future__ import annotations

import functools
import math
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from urllib.parse import quote

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trio
from h2.errors import ErrorCodes
from hyperframe.frame import Frame, GoAwayFrame, PingFrame

Handler = Callable[["FakeCall"], Awaitable[None]]


class CallGone(Exception):
    """The client reset the stream or the connection closed while the handler was using it."""


def frame_message(payload: bytes, *, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


class _ServerH2(h2.connection.H2Connection):
    answer_pings = True

    def _receive_ping_frame(self, frame: PingFrame) -> tuple[list[Frame], list[h2.events.Event]]:
        frames, events = super()._receive_ping_frame(frame)
        return (frames if self.answer_pings else []), events


class FakeCall:
    """The server side of one call."""

    def __init__(self, conn: FakeConnection, stream_id: int, headers: list[tuple[str, str]]) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.headers = headers
        self.path = self.header(":path") or ""
        self.reset_code: int | None = None
        self.reset = trio.Event()
        self.client_ended = trio.Event()
        self.finished = False
        self.bytes_sent = 0
        self.scope = trio.CancelScope()
        self._headers_sent = False
        self._send, self._inbox = trio.open_memory_channel[bytes](math.inf)
        self._buffer = b""

    def __repr__(self) -> str:
        return f"<FakeCall {self.stream_id} {self.path}>"

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def _feed(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 5:
            flags, length = struct.unpack(">BI", self._buffer[:5])
            assert flags == 0, "the client must never compress"
            if len(self._buffer) < 5 + length:
                break
            self._send.send_nowait(self._buffer[5 : 5 + length])
            self._buffer = self._buffer[5 + length :]

    async def receive(self) -> bytes:
        """The next request message; EndOfChannel after the client's END_STREAM."""
        return await self._inbox.receive()

    async def send_headers(self, extra: Sequence[tuple[str, str]] = ()) -> None:
        self._check_alive()
        self._headers_sent = True
        headers = [(":status", "200"), ("content-type", "application/grpc"), *extra]
        self.conn.h2.send_headers(self.stream_id, _encode(headers))
        await self.conn.flush()

    async def send(self, message: bytes, *, flags: int = 0) -> None:
        """Send one response message (response headers first if needed)."""
        await self.send_raw(frame_message(message, flags=flags))

    async def send_raw(self, data: bytes, *, end_stream: bool = False) -> None:
        if not self._headers_sent:
            await self.send_headers()
        await self.conn.send_data(self, data, end_stream=end_stream)
        if end_stream:
            self.finished = True  # ended without trailers: nothing more may be sent

    async def finish(
        self, code: int = 0, message: str = "", *, trailers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """End the call with a status: trailers, or a trailers-only response if nothing was sent."""
        self._check_alive()
        fields = [("grpc-status", str(code))]
        if message:
            fields.append(("grpc-message", quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")))
        fields.extend(trailers)
        if not self._headers_sent:
            fields = [(":status", "200"), ("content-type", "application/grpc"), *fields]
            self._headers_sent = True
        self.finished = True
        self.conn.h2.send_headers(self.stream_id, _encode(fields), end_stream=True)
        await self.conn.flush()

    async def reset_stream(self, error_code: int = ErrorCodes.INTERNAL_ERROR) -> None:
        self._check_alive()
        self.finished = True
        self.conn.h2.reset_stream(self.stream_id, error_code)
        await self.conn.flush()

    def _check_alive(self) -> None:
        if self.reset.is_set() or self.conn.closed:
            raise CallGone(self)


class FakeConnection:
    """One accepted connection."""

    def __init__(self, server: FakeServer, tcp: trio.SocketStream, stream: trio.abc.Stream) -> None:
        self.server = server
        self.tcp = tcp
        self.stream = stream
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = _ServerH2(config)
        self.h2.answer_pings = server.answer_pings
        settings: dict[h2.settings.SettingCodes | int, int] = {}
        if server.max_concurrent_streams is not None:
            settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = server.max_concurrent_streams
        if server.initial_window_size is not None:
            settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = server.initial_window_size
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values=settings)
        self.calls: dict[int, FakeCall] = {}
        self.closed = False
        #: Set once the connection is closed, by either side.
        self.closed_event = trio.Event()
        self.pings_received = 0
        self.goaway_last_id: int | None = None
        self._lock = trio.Lock()
        self._window = trio.Event()
        self._unfrozen = trio.Event()
        self._unfrozen.set()

    async def flush(self) -> None:
        async with self._lock:
            await self._unfrozen.wait()
            data = self.h2.data_to_send()
            if data and not self.closed:
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self.closed = True
                    raise CallGone(self) from exc

    async def send_data(self, call: FakeCall, data: bytes, *, end_stream: bool) -> None:
        view = memoryview(data)
        while True:
            call._check_alive()
            size = min(
                self.h2.local_flow_control_window(call.stream_id), self.h2.max_outbound_frame_size, len(view)
            )
            if size <= 0 and len(view):
                if self._window.is_set():
                    self._window = trio.Event()
                await self._window.wait()
                continue
            last = size == len(view)
            self.h2.send_data(call.stream_id, view[:size], end_stream=end_stream and last)
            call.bytes_sent += size
            view = view[size:]
            await self.flush()
            if last:
                return

    async def send_goaway(self, last_stream_id: int, error_code: int = 0, debug_data: bytes = b"") -> None:
        """Write a GOAWAY without telling h2, so streams <= last_stream_id can still complete."""
        self.goaway_last_id = last_stream_id
        frame = GoAwayFrame(
            0, last_stream_id=last_stream_id, error_code=error_code, additional_data=debug_data
        )
        async with self._lock:
            await self.stream.send_all(self.h2.data_to_send() + frame.serialize())

    async def abort(self) -> None:
        """Close with a TCP RST (SO_LINGER 0)."""
        self.closed = True
        self.tcp.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await trio.aclose_forcefully(self.tcp)

    async def close(self) -> None:
        """Close with a FIN, without GOAWAY."""
        self.closed = True
        await trio.aclose_forcefully(self.stream)

    def freeze(self) -> None:
        """Stop reading and writing, keeping the socket open (a stopped process)."""
        self._unfrozen = trio.Event()

    def unfreeze(self) -> None:
        self._unfrozen.set()

    async def run(self) -> None:
        self.h2.initiate_connection()
        async with trio.open_nursery() as nursery:
            try:
                await self.flush()
                while True:
                    await self._unfrozen.wait()
                    data = await self.stream.receive_some(1 << 16)
                    await self._unfrozen.wait()
                    if not data:
                        break
                    for event in self.h2.receive_data(data):
                        self._dispatch(event, nursery)
                    await self.flush()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, CallGone):
                pass
            self.closed = True
            for call in self.calls.values():
                call.scope.cancel()
            nursery.cancel_scope.cancel()
        await trio.aclose_forcefully(self.stream)
        self.closed_event.set()

    def _dispatch(self, event: h2.events.Event, nursery: trio.Nursery) -> None:
        server = self.server
        if isinstance(event, h2.events.RequestReceived):
            if self.goaway_last_id is not None and event.stream_id > self.goaway_last_id:
                return  # like grpc-go: streams above the GOAWAY's last id are ignored
            headers = [(k.decode(), v.decode()) for k, v in event.headers]
            call = FakeCall(self, event.stream_id, headers)
            self.calls[event.stream_id] = call
            server.calls.append(call)
            server.call_started.set()
            nursery.start_soon(self._run_handler, call)
        elif isinstance(event, h2.events.DataReceived):
            if event.flow_controlled_length and server.auto_ack:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            call = self.calls.get(event.stream_id)
            if call is not None:
                call._feed(event.data)
        elif isinstance(event, h2.events.StreamEnded):
            call = self.calls.get(event.stream_id)
            if call is not None:
                call.client_ended.set()
                call._send.close()
        elif isinstance(event, h2.events.StreamReset):
            server.resets.append((event.stream_id, int(event.error_code)))
            call = self.calls.get(event.stream_id)
            if call is not None:
                call.reset_code = int(event.error_code)
                call.reset.set()
                call._send.close()
                call.scope.cancel()
            server.reset_received.set()
        elif isinstance(event, h2.events.PingReceived):
            self.pings_received += 1
            server.pings_received += 1
        elif isinstance(event, h2.events.PingAckReceived):
            server.ping_acks.append(event.ping_data)
            server.ping_acked.set()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._window.set()

    async def _run_handler(self, call: FakeCall) -> None:
        server = self.server
        server.open_calls += 1
        server.peak_open_calls = max(server.peak_open_calls, server.open_calls)
        try:
            with call.scope:
                await server.handler(call)
                if not call.finished:
                    await call.finish()
        except CallGone:
            pass
        finally:
            server.open_calls -= 1
            self.calls.pop(call.stream_id, None)


def _encode(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in headers]


class FakeServer:
    """See the module docstring. ``handler`` may be replaced between calls."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_concurrent_streams: int | None,
        initial_window_size: int | None,
        answer_pings: bool,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.handler = handler
        self.max_concurrent_streams = max_concurrent_streams
        self.initial_window_size = initial_window_size
        self.answer_pings = answer_pings
        self.ssl_context = ssl_context
        self.endpoint = ""
        self.connections: list[FakeConnection] = []
        self.calls: list[FakeCall] = []
        self.resets: list[tuple[int, int]] = []
        self.pings_received = 0
        #: The payloads of the client's acknowledgements of our PINGs (``ping_acked`` is set on each).
        self.ping_acks: list[bytes] = []
        self.ping_acked = trio.Event()
        self.open_calls = 0
        self.peak_open_calls = 0
        self.call_started = trio.Event()
        self.reset_received = trio.Event()
        self.connection_accepted = trio.Event()
        #: When true, new connections are closed at once (a server that is down but listening).
        self.refuse = False
        #: When false, received DATA is never acknowledged: the client's send window runs out.
        self.auto_ack = True

    async def wait_for_calls(self, count: int) -> list[FakeCall]:
        """Wait until at least ``count`` calls arrived in total."""
        while len(self.calls) < count:
            self.call_started = trio.Event()
            await self.call_started.wait()
        return self.calls

    async def wait_for_reset(self, count: int = 1) -> list[tuple[int, int]]:
        while len(self.resets) < count:
            self.reset_received = trio.Event()
            await self.reset_received.wait()
        return self.resets

    async def _serve(self, tcp: trio.SocketStream) -> None:
        if self.refuse:
            await trio.aclose_forcefully(tcp)
            return
        stream: trio.abc.Stream = tcp
        if self.ssl_context is not None:
            tls = trio.SSLStream(tcp, self.ssl_context, server_side=True)
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError:
                await trio.aclose_forcefully(tcp)
                return
            stream = tls
        conn = FakeConnection(self, tcp, stream)
        self.connections.append(conn)
        self.connection_accepted.set()
        await conn.run()


@asynccontextmanager
async def open_fake_server(
    handler: Handler,
    *,
    max_concurrent_streams: int | None = None,
    initial_window_size: int | None = None,
    answer_pings: bool = True,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[FakeServer]:
    """Serve on a free 127.0.0.1 port until the block exits."""
    server = FakeServer(
        handler,
        max_concurrent_streams=max_concurrent_streams,
        initial_window_size=initial_window_size,
        answer_pings=answer_pings,
        ssl_context=ssl_context,
    )
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, server._serve, 0, host="127.0.0.1"))
        host, port = listeners[0].socket.getsockname()[:2]
        server.endpoint = f"{host}:{port}"
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


async def echo(call: FakeCall) -> None:
    """Reply to each request message with the same bytes; finish OK when the client half-closes."""
    while True:
        try:
            message = await call.receive()
        except trio.EndOfChannel:
            break
        await call.send(message)
    await call.finish()


async def never_answer(call: FakeCall) -> None:
    await trio.sleep_forever()
