"""A loopback TCP proxy with delay, blackhole and reset controls: :class:`TcpProxy`, :func:`open_tcp_proxy`.

Put one between a client and a member (point the client at :attr:`TcpProxy.endpoint`) to make the client's
connection slow or silent without touching the member, or between members (a member advertises the proxy as
its peer URL; see :func:`~etcdsync.testing.faults.peer_proxied_cluster`) to partition or slow the raft
traffic without root. It is the userspace proxy of ``shared/notes/fault-injection.md`` §2e, the same idea as
the peer proxy of etcd's robustness tests.

Semantics of the controls, chosen to look like a real network to both ends:

* **delay**: every chunk read in either direction is forwarded ``delay`` seconds after it was read; order is
  kept, so a delay change never reorders bytes.
* **blackhole**: nothing moves any more, in either direction, and new connections are accepted but not
  connected upstream: the peers see silence, like packets vanishing. Bytes are *held*, not dropped (TCP would
  retransmit them after a partition heals), so :meth:`TcpProxy.heal` resumes every connection intact.
* **reset**: every open connection is aborted with a TCP RST at once (``SO_LINGER`` 0); new connections are
  served normally.

Buffers are bounded (:data:`MAX_QUEUED_CHUNKS` chunks of at most 64 KiB per direction): a blackholed or slow
proxy pushes back on the sender instead of growing.

A proxy may create its *upstream* sockets inside a network namespace (``upstream_netns``), which is how the
netns cluster exposes members living in namespaces on loopback addresses of this one; that needs root.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Final, final

import attrs
import trio

from ._util import FaultError, open_task_nursery

__all__ = ("MAX_QUEUED_CHUNKS", "ProxyStatistics", "TcpProxy", "open_tcp_proxy")

logger = logging.getLogger(__name__)

#: Chunks queued per direction of one connection before the proxy stops reading (backpressure).
MAX_QUEUED_CHUNKS: Final = 64
_CHUNK: Final = 65536
_CLONE_NEWNET: Final = 0x40000000


@attrs.frozen(kw_only=True)
class ProxyStatistics:
    """What a :class:`TcpProxy` has done (from :meth:`TcpProxy.statistics`).

    Attributes:
        accepted: connections accepted so far.
        open: connections open now.
        resets: connections aborted by :meth:`TcpProxy.reset`.
        bytes_forwarded: bytes delivered in both directions.
        delay: the current delay in seconds.
        blackholed: whether the proxy is blackholed now.
    """

    accepted: int
    open: int
    resets: int
    bytes_forwarded: int
    delay: float
    blackholed: bool


def _split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"endpoint must be host:port, not {endpoint!r}")
    return host, int(port)


def socket_in_netns(netns: str) -> socket.socket:
    """A new TCP socket that belongs to the network namespace ``netns`` (``/run/netns/<netns>``).

    A socket stays in the namespace it was created in, so only the creation switches this thread's
    namespace (``setns``), and it switches straight back. Needs ``CAP_SYS_ADMIN`` (root).

    Raises:
        FaultError: The namespace does not exist or ``setns`` was refused.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        target = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise FaultError(f"no network namespace {netns!r}: {exc}") from exc
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise FaultError(f"setns into {netns!r} failed: {os.strerror(err)}")
            try:
                return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            finally:
                if libc.setns(home, _CLONE_NEWNET) != 0:  # pragma: no cover - we opened our own namespace
                    # Staying in the other namespace would put every later socket there: fail loudly.
                    err = ctypes.get_errno()
                    raise RuntimeError(
                        f"could not return to this thread's network namespace: {os.strerror(err)}"
                    )
        finally:
            os.close(home)
    finally:
        os.close(target)


@final
class TcpProxy:
    """A TCP proxy from ``listen_host:listen_port`` to ``target`` with fault controls.

    Run it with :func:`open_tcp_proxy` (or ``await nursery.start(proxy.run)``); its address is
    :attr:`endpoint` once it runs.

    Example:
        >>> import trio
        >>> from etcdsync.testing.faults import open_tcp_proxy
        >>> async def main(member_endpoint: str) -> None:
        ...     async with open_tcp_proxy(member_endpoint) as proxy:
        ...         ...  # open_client(proxy.endpoint) and start work
        ...         proxy.delay = 0.1  # 100 ms each way from now on
        ...         proxy.blackhole()  # silence: keepalives stop arriving, calls hang
        ...         await trio.sleep(3)
        ...         proxy.heal()  # held bytes flow again
        ...         proxy.reset()  # RST every connection: the client reconnects
        >>> trio.run(main, "127.0.0.1:2379")  # doctest: +SKIP

    Args:
        target: ``"host:port"`` to forward to.
        listen_host: a loopback address to listen on.
        listen_port: the port to listen on; 0 picks a free one.
        upstream_netns: create upstream sockets in this network namespace (root only).
        delay: initial delay in seconds.
    """

    def __init__(
        self,
        target: str,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        upstream_netns: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self._target = _split(target)
        self._listen = (listen_host, listen_port)
        self._netns = upstream_netns
        self.delay = delay
        self._blackholed = False
        self._healed = trio.Event()
        self._healed.set()
        self._endpoint: str | None = None
        self._connections: set[_Connection] = set()
        self._accepted = 0
        self._resets = 0
        self._forwarded = 0

    @property
    def target(self) -> str:
        """Where the proxy forwards to, ``"host:port"``."""
        return f"{self._target[0]}:{self._target[1]}"

    @property
    def endpoint(self) -> str:
        """Where the proxy listens, ``"host:port"``.

        Raises:
            RuntimeError: It is not running yet.
        """
        if self._endpoint is None:
            raise RuntimeError("the proxy is not running; use open_tcp_proxy() or nursery.start(proxy.run)")
        return self._endpoint

    @property
    def delay(self) -> float:
        """Seconds each chunk is held before it is forwarded (settable at any time; applies to new chunks)."""
        return self._delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError("delay must be >= 0")
        self._delay = float(seconds)

    @property
    def blackholed(self) -> bool:
        """Whether the proxy holds all traffic now."""
        return self._blackholed

    def blackhole(self) -> None:
        """Stop all traffic both ways, and leave new connections unconnected, until :meth:`heal`."""
        if not self._blackholed:
            self._blackholed = True
            self._healed = trio.Event()

    def heal(self) -> None:
        """End a blackhole and set the delay to 0: held bytes flow again, in order."""
        self._delay = 0.0
        if self._blackholed:
            self._blackholed = False
            self._healed.set()

    def reset(self) -> None:
        """Abort every open connection with a TCP RST (both sides see "connection reset")."""
        for connection in list(self._connections):
            connection.abort()
            self._resets += 1

    def statistics(self) -> ProxyStatistics:
        """A snapshot of what the proxy has done (no I/O)."""
        return ProxyStatistics(
            accepted=self._accepted,
            open=len(self._connections),
            resets=self._resets,
            bytes_forwarded=self._forwarded,
            delay=self._delay,
            blackholed=self._blackholed,
        )

    def __repr__(self) -> str:
        where = self._endpoint or "not running"
        state = "blackholed" if self._blackholed else f"delay {self._delay:g} s"
        return f"<etcdsync.testing.faults.TcpProxy {where} -> {self.target}, {state}>"

    async def _wait_healed(self) -> None:
        while self._blackholed:
            await self._healed.wait()

    async def _connect_upstream(self) -> trio.SocketStream:
        if self._netns is None:
            return await trio.open_tcp_stream(*self._target)
        sock = trio.socket.from_stdlib_socket(socket_in_netns(self._netns))
        try:
            await sock.connect(self._target)
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(sock)

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; reports :attr:`endpoint` through ``task_status``.

        Raises:
            OSError: The listen address cannot be bound.
        """
        listeners = await trio.open_tcp_listeners(self._listen[1], host=self._listen[0])
        host, port = listeners[0].socket.getsockname()[:2]
        self._endpoint = f"{host}:{port}"
        try:
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener, nursery)
                task_status.started(self._endpoint)
                await trio.sleep_forever()
        finally:
            for listener in listeners:
                with contextlib.suppress(trio.ClosedResourceError):
                    await listener.aclose()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    downstream = await listener.accept()
                except OSError as exc:  # e.g. EMFILE: back off instead of spinning
                    logger.warning("proxy %s: accept failed: %r", self._endpoint, exc)
                    await trio.sleep(0.1)
                    continue
                self._accepted += 1
                nursery.start_soon(self._serve, downstream)

    async def _serve(self, downstream: trio.SocketStream) -> None:
        connection = _Connection(self, downstream)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)


class _Connection:
    """One proxied connection: two ordered, delayed, holdable pumps."""

    def __init__(self, proxy: TcpProxy, downstream: trio.SocketStream) -> None:
        self._proxy = proxy
        self._downstream = downstream
        self._upstream: trio.SocketStream | None = None
        self._scope = trio.CancelScope()
        self._aborted = False

    def abort(self) -> None:
        self._aborted = True
        for stream in self._streams():
            with contextlib.suppress(OSError):
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._scope.cancel()

    async def run(self) -> None:
        try:
            with self._scope:
                await self._proxy._wait_healed()  # a blackholed SYN goes nowhere
                try:
                    self._upstream = await self._proxy._connect_upstream()
                except (OSError, FaultError) as exc:
                    logger.debug("proxy to %s: upstream connect failed: %r", self._proxy.target, exc)
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, self._downstream, self._upstream)
                    nursery.start_soon(self._pump, self._upstream, self._downstream)
        finally:
            # Also when cancelled from outside (the proxy stops): every socket is closed, here and now.
            for stream in self._streams():
                if self._aborted:  # SO_LINGER 0 is set: close() sends RST
                    stream.socket.close()
                with (
                    trio.CancelScope(shield=True),
                    contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError),
                ):
                    await stream.aclose()

    def _streams(self) -> list[trio.SocketStream]:
        return [s for s in (self._downstream, self._upstream) if s is not None]

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream) -> None:
        send, receive = trio.open_memory_channel[tuple[float, bytes]](MAX_QUEUED_CHUNKS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, source, send)
            await self._write(sink, receive)
            nursery.cancel_scope.cancel()

    async def _read(
        self, source: trio.SocketStream, send: trio.MemorySendChannel[tuple[float, bytes]]
    ) -> None:
        async with send:
            while True:
                await self._proxy._wait_healed()
                try:
                    data = await source.receive_some(_CHUNK)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                await send.send((trio.current_time() + self._proxy.delay, data))
                if not data:
                    return

    async def _write(
        self, sink: trio.SocketStream, receive: trio.MemoryReceiveChannel[tuple[float, bytes]]
    ) -> None:
        async with receive:
            async for due, data in receive:
                await trio.sleep_until(due)
                await self._proxy._wait_healed()
                try:
                    if not data:
                        await sink.send_eof()  # half-close, as the source did
                        return
                    await sink.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._scope.cancel()  # the other side is gone: end both directions
                    return
                self._proxy._forwarded += len(data)


@contextlib.asynccontextmanager
async def open_tcp_proxy(
    target: str,
    *,
    listen_host: str = "127.0.0.1",
    listen_port: int = 0,
    upstream_netns: str | None = None,
    delay: float = 0.0,
) -> AsyncIterator[TcpProxy]:
    """Run a :class:`TcpProxy` to ``target`` for the duration of the block; it stops (every connection closed)
    when the block ends.

    Entering is a checkpoint and returns once the proxy listens.

    Example:
        >>> async with open_tcp_proxy(server.endpoint) as proxy:  # doctest: +SKIP
        ...     async with etcdsync.open_client(proxy.endpoint) as client:
        ...         proxy.blackhole()

    Raises:
        OSError: The listen address cannot be bound.
    """
    proxy = TcpProxy(
        target, listen_host=listen_host, listen_port=listen_port, upstream_netns=upstream_netns, delay=delay
    )
    async with open_task_nursery() as nursery:
        await nursery.start(proxy.run)
        yield proxy
