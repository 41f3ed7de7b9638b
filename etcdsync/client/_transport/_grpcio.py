"""The optional transport: grpcio's ``grpc.aio`` on a private asyncio thread, bridged to trio.

Install with ``pip install 'etcdsync[grpcio]'``; choose with ``open_client(..., transport="grpcio")``.
It implements the :class:`~._base.Channel` / :class:`~._base.Stream` protocol of the h2 transport,
for differential testing and as an escape hatch to grpcio's C core.

Threading: each channel (one per endpoint) owns one asyncio loop in one daemon thread,
``etcdsync-grpcio <endpoint>``, started by :func:`open_grpcio_channel` and joined before it exits,
also when the body raised or was cancelled. The ``grpc.aio`` channel is used on that thread only.
grpcio adds one process-wide poller thread of its own, on first use, which outlives channels.

Bridging, batched both ways: trio appends a job to a queue and, unless a drain is already pending,
wakes the loop (``call_soon_threadsafe``); each finished job goes on a second queue drained in trio
through ``TrioToken.run_sync_soon``, which reschedules the waiting task (``wait_task_rescheduled``).

Cancellation: the cancelled trio task returns at once (``Abort.SUCCEEDED``) and the loop cancels the
grpc call, which resets its HTTP/2 stream; nothing waits for the server. Only a cancelled
``receive()`` leaves the call alone: its read stays pending for the next ``receive()``, as with h2.
The caller's trio deadline is the grpc call's ``timeout`` (sent as ``grpc-timeout``); a
DEADLINE_EXCEEDED that grpc raises at that deadline becomes the caller's own trio cancellation.

Errors: grpc reports everything as a status. grpc core's own UNAVAILABLE statuses about the
connection become :class:`ConnectionLost`, told apart from the server's by their text (the
:data:`_NOT_SENT` and :data:`_BROKEN` lists, grpc core's messages up to 1.85); every other status is
a :class:`StatusError`. ``request_sent=False`` is claimed only for "could not connect" texts: such a
call never had a connection. Limits: a connection failure in words grpc has not used before becomes
``StatusError(UNAVAILABLE)``, which the client treats as "may have been applied" for writes (never
resent blindly) and retries for reads. grpcio fails calls at once while reconnecting after a failed
attempt (it does not queue them for the next attempt, as h2 does): ``ConnectionLost(request_sent=
False)``, which the client core retries within the caller's deadline.

TLS: grpc wants PEM bytes, not an :class:`ssl.SSLContext`. The server is verified against the
context's CA certificates, read back with ``get_ca_certs(binary_form=True)`` (grpc's default roots
if it has none in memory). A client certificate cannot be read out of a plain SSLContext, so mutual TLS
needs a context made by :func:`etcdsync.client.tls_context`, which keeps the PEM bytes of the chain
it loads (a password-protected key is refused with ValueError: grpc takes no password). With a plain
context no client certificate is sent: a server that wants one refuses the handshake, and the
``ConnectionLost`` says why. Contexts that skip verification are refused with ValueError.

Statistics: ``reconnects`` counts the connection coming back after a failed call saw it down; a
drop and reconnect between two calls that both work goes uncounted. (Watching grpc's connectivity
state instead would leave an operation pending past ``close()``, which grpc's shared poller then
hands to a closed loop.)

Size: over the 800-line mark because the bridge (two queues, two drains, the abort protocol), the
jobs that run on the loop and the mapping of grpc's errors share the channel's state and its
threading rules; split across modules they would need those rules restated in each.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import math
import ssl
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Final, NoReturn, Protocol, cast, final

import grpc
import grpc.aio
import trio

from ..._version import __version__
from .._sansio._grpc import StatusCode, validate_metadata
from .._tls import client_pem
from ._base import ChannelState, ChannelStatistics, ConnectionLost, StatusError

__all__ = ["GrpcioChannel", "GrpcioStream", "open_grpcio_channel"]

#: gRPC's default minimum connect timeout.
DEFAULT_CONNECT_TIMEOUT: Final = 20.0
#: Bound on waiting for the I/O thread (and its grpc operations) when the channel closes.
_CLOSE_TIMEOUT: Final = 5.0
#: grpc's deadline starts after the caller's, so it fires later, up to clock-conversion noise.
_DEADLINE_SLACK: Final = 0.05
#: grpc core's UNAVAILABLE details for a call that never had a connection (request not sent).
_NOT_SENT: Final = (
    "failed to connect to all addresses",
    "Failed to connect to remote host",
    "DNS resolution failed",
    "empty address list",
    "connection attempt timed out",
)
#: grpc core's UNAVAILABLE details for a connection that broke under a call (request maybe sent).
_BROKEN: Final = (
    "Socket closed",
    "Stream removed",
    "Connection reset",
    "Connection refused",
    "Broken pipe",
    "keepalive watchdog timeout",
    "ping timeout",
    "GOAWAY",
    "Endpoint closing",
    "Transport closed",
    "Connection lost",
    "Broken stream",
)
_READY: Final = grpc.ChannelConnectivity.READY
_STATES: Final = {
    grpc.ChannelConnectivity.IDLE: ChannelState.IDLE,
    grpc.ChannelConnectivity.CONNECTING: ChannelState.CONNECTING,
    grpc.ChannelConnectivity.READY: ChannelState.READY,
    grpc.ChannelConnectivity.TRANSIENT_FAILURE: ChannelState.TRANSIENT_FAILURE,
}


# What we use of grpc.aio (grpcio ships no type information).
class _Code(Protocol):
    @property
    def value(self) -> tuple[int, str]: ...


class _Call(Protocol):
    def cancel(self) -> bool: ...


class _UnaryCall(_Call, Protocol):
    def __await__(self) -> Generator[object, None, bytes]: ...


class _StreamCall(_Call, Protocol):
    def cancelled(self) -> bool: ...
    async def wait_for_connection(self) -> None: ...
    async def write(self, message: bytes) -> None: ...
    async def read(self) -> bytes | object: ...
    async def done_writing(self) -> None: ...
    async def code(self) -> _Code: ...
    async def details(self) -> str | None: ...
    async def trailing_metadata(self) -> Sequence[tuple[str, str | bytes]] | None: ...


class _RpcError(Protocol):
    def code(self) -> _Code: ...
    def details(self) -> str | None: ...
    def trailing_metadata(self) -> Sequence[tuple[str, str | bytes]] | None: ...


class _AioChannel(Protocol):
    def unary_unary(self, method: str) -> Callable[..., _UnaryCall]: ...
    def stream_stream(self, method: str) -> Callable[..., _StreamCall]: ...
    def get_state(self, try_to_connect: bool = ...) -> object: ...
    async def close(self, grace: float | None = ...) -> None: ...


class _Status:
    """A non-OK status, captured on the I/O thread."""

    __slots__ = ("cause", "code", "details", "trailers")

    def __init__(
        self, code: int, details: str, trailers: Sequence[tuple[str, str | bytes]], cause: Exception
    ) -> None:
        self.code = code
        self.details = details
        # Binary trailers come decoded from grpc; the protocol has them as (unpadded) base64 text.
        self.trailers = tuple(
            (k, base64.b64encode(v).decode().rstrip("=") if isinstance(v, bytes) else v) for k, v in trailers
        )
        self.cause = cause


@final
class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


#: The call was cancelled on our side (by its caller, by leaving its stream, by closing the channel).
_LOCALLY_CANCELLED: Final = _Sentinel("locally cancelled")
#: A write found the stream already ended by the server with status OK.
_ENDED_OK: Final = _Sentinel("ended OK")
_Failure = _Status | _Sentinel | BaseException
_Job = Callable[..., Coroutine[object, object, None]]


class _Op:
    """One job for the I/O thread, its outcome, and the trio task waiting for it (if any)."""

    __slots__ = ("call", "done", "error", "loop_task", "stream", "task", "value")

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None  # None: nobody waits (yet, or any more)
        self.done = False  # set in trio
        self.value: bytes | None = None  # a message; None for EOF
        self.error: _Failure | None = None
        self.call: _Call | None = None  # what to cancel, set on the I/O thread
        self.stream: _StreamCall | None = None
        self.loop_task: asyncio.Task[None] | None = None


def _failure(exc: BaseException) -> _Failure:
    """What a job's exception means (on the I/O thread)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        error = cast("_RpcError", exc)
        trailers = error.trailing_metadata() or ()
        return _Status(int(error.code().value[0]), error.details() or "", trailers, exc)
    if isinstance(exc, asyncio.CancelledError):  # grpc's way of saying "cancelled locally", or ours
        return _LOCALLY_CANCELLED
    return exc


async def _final_status(call: _StreamCall) -> _Failure:
    """How an ended stream ended (on the I/O thread)."""
    code = await call.code()
    if code == grpc.StatusCode.OK:
        return _ENDED_OK
    if call.cancelled():
        return _LOCALLY_CANCELLED
    details = await call.details() or ""
    trailers = await call.trailing_metadata() or ()
    return _Status(int(code.value[0]), details, trailers, RuntimeError(f"the stream ended: {details}"))


def _grpc_metadata(metadata: Sequence[tuple[str, str]]) -> object:
    """grpc's form of ``metadata``: a ``grpc.aio.Metadata``, which a call takes as it is (a tuple it
    converts into one first, on every call: about 25 µs per call in one measurement)."""
    validate_metadata(metadata)  # same rules (and ValueErrors) as h2; grpc wants -bin values decoded
    return grpc.aio.Metadata(
        *(
            (name, base64.b64decode(value + "=" * (-len(value) % 4)) if name.endswith("-bin") else value)
            for name, value in metadata
        )
    )


def _credentials(context: ssl.SSLContext) -> object:
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        raise ValueError(
            "the grpcio transport always verifies the server's certificate and host name; "
            "use transport='h2' for a context that does not"
        )
    roots = b"".join(ssl.DER_cert_to_PEM_cert(der).encode() for der in context.get_ca_certs(binary_form=True))
    pem = client_pem(context)
    if pem is not None and pem.key is None:
        raise ValueError(
            "the grpcio transport cannot use a password-protected client key (grpc takes no password); "
            "use transport='h2', or an unencrypted key file"
        )
    credentials: object = grpc.ssl_channel_credentials(
        root_certificates=roots or None,
        private_key=None if pem is None else pem.key,
        certificate_chain=None if pem is None else pem.chain,
    )
    return credentials


@final
class GrpcioChannel:
    """A gRPC channel to one endpoint through ``grpc.aio``; implements ``_transport.Channel``.

    Made by :func:`open_grpcio_channel` only. Public methods run in trio; ``_*_job`` coroutines and
    ``_drain_to_loop`` run on the channel's I/O thread.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        options: list[tuple[str, object]],
        credentials: object,
        sends_client_certificate: bool = False,
        max_send_message_length: int,
        _private: object = None,
    ) -> None:
        if _private is not _PRIVATE:
            raise TypeError("use `async with open_grpcio_channel(endpoint) as channel:`")
        self.endpoint = endpoint
        self._options = options
        self._credentials = credentials
        self._sends_client_certificate = sends_client_certificate
        self._max_send = max_send_message_length
        self._trio_token = trio.lowlevel.current_trio_token()
        self._loop = asyncio.new_event_loop()
        name = f"etcdsync-grpcio {endpoint}"
        self._thread = threading.Thread(target=self._run_loop, name=name, daemon=True)
        self._thread_done = trio.Event()
        self._grpc: _AioChannel | None = None
        self._unary_methods: dict[str, Callable[..., _UnaryCall]] = {}
        self._stream_methods: dict[str, Callable[..., _StreamCall]] = {}
        self._metadata_cache: dict[tuple[tuple[str, str], ...], object] = {}
        self._to_loop: deque[tuple[_Op, _Job, tuple[object, ...]]] = deque()
        self._loop_drain_pending = False
        self._to_trio: deque[_Op] = deque()
        self._trio_drain_pending = False
        self._closed = False
        self._was_ready = False
        self._connects = 0
        self._open_streams = 0
        self._calls_started = 0
        self._calls_failed = 0
        self._last_error: str | None = None

    def __repr__(self) -> str:
        return (
            f"<etcdsync GrpcioChannel to {self.endpoint} at {id(self):#x}, {self._state().value}, "
            f"{self._open_streams} open streams>"
        )

    # -- the bridge -------------------------------------------------------------------------------------

    def _run_loop(self) -> None:  # the I/O thread's body
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            tasks = asyncio.all_tasks(loop)  # what _shutdown_job's bounded wait left, if anything
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            try:
                self._trio_token.run_sync_soon(self._thread_done.set)
            except trio.RunFinishedError:
                pass

    def _submit(self, op: _Op, job: _Job, *args: object) -> None:
        """Start ``job(op, *args)`` as a task on the I/O thread, soon. Called in trio."""
        self._to_loop.append((op, job, args))
        if not self._loop_drain_pending:
            self._loop_drain_pending = True
            self._loop.call_soon_threadsafe(self._drain_to_loop)

    def _drain_to_loop(self) -> None:
        self._loop_drain_pending = False
        queue = self._to_loop
        while queue:
            op, job, args = queue.popleft()
            if job is _cancel_job:
                if op.call is not None:
                    op.call.cancel()
                if op.loop_task is not None:  # also before the job ran: then it never does
                    op.loop_task.cancel()
            elif job is _unary_job:
                self._start_unary(op, *args)  # type: ignore[arg-type]
            else:
                op.loop_task = self._loop.create_task(job(op, *args))

    def _finish(self, op: _Op) -> None:
        """Hand a finished call's job back to trio (on the I/O thread)."""
        # A call that worked had a connection; one that lost it saw it down, even if grpc has
        # reconnected by now; after a server's error status, ask grpc. See "Statistics" above.
        if op.error is None:
            ready = True
        elif isinstance(op.error, ConnectionLost) or (
            isinstance(op.error, _Status) and self._connection_failure(op.error) is not None
        ):
            ready = False
        else:
            ready = self._grpc is not None and self._grpc.get_state() is _READY
        self._connects += ready and not self._was_ready
        self._was_ready = ready
        self._hand_back(op)

    def _hand_back(self, op: _Op) -> None:
        self._to_trio.append(op)
        if not self._trio_drain_pending:
            self._trio_drain_pending = True
            try:
                self._trio_token.run_sync_soon(self._drain_to_trio)
            except trio.RunFinishedError:
                pass

    def _drain_to_trio(self) -> None:
        self._trio_drain_pending = False
        queue = self._to_trio
        while queue:
            op = queue.popleft()
            op.done = True
            if op.task is not None:
                trio.lowlevel.reschedule(op.task)
                op.task = None

    async def _wait(self, op: _Op, *, cancel_call: bool = True) -> None:
        """Wait until ``op`` is done. A cancelled caller returns at once and, if ``cancel_call``,
        cancels the job's grpc call; otherwise the job runs on, unwatched."""

        def abort(_: object) -> trio.lowlevel.Abort:
            op.task = None
            if cancel_call and not self._closed:
                self._submit(op, _cancel_job)
            return trio.lowlevel.Abort.SUCCEEDED

        op.task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(abort)

    # -- jobs (on the I/O thread) -----------------------------------------------------------------------

    async def _setup_job(self, op: _Op) -> None:
        try:
            if self._credentials is None:
                self._grpc = grpc.aio.insecure_channel(self.endpoint, options=self._options)
            else:
                self._grpc = grpc.aio.secure_channel(self.endpoint, self._credentials, options=self._options)
        except Exception as exc:  # noqa: BLE001 - raised in trio
            op.error = exc
        self._hand_back(op)

    async def _shutdown_job(self, op: _Op) -> None:
        try:
            if self._grpc is not None:
                await self._grpc.close(grace=None)  # cancels every call at once
            # Let every grpc operation complete on this loop before it closes: grpc's shared poller
            # would hand a late completion to the closed loop (and log a RuntimeError).
            others = asyncio.all_tasks() - {asyncio.current_task()}
            if others:
                await asyncio.wait(others, timeout=_CLOSE_TIMEOUT / 2)
        finally:
            self._loop.stop()

    def _start_unary(self, op: _Op, path: str, request: bytes, timeout_: float | None, md: object) -> None:
        """Start a unary call and await it without a task of our own: drive its ``__await__`` by hand,
        resuming it from the done-callback of what it waits for (grpc's own task), instead of
        wrapping it in a task of ours (measured at 128 concurrent puts: 142 -> 106 µs of client CPU
        per call, docs/benchmarks.md)."""
        try:
            call = op.call = self._unary_methods[path](request, timeout=timeout_, metadata=md)
            awaiting = call.__await__()
        except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the trio task
            op.error = _failure(exc)
            self._finish(op)
            return
        self._resume_unary(op, awaiting)

    def _resume_unary(self, op: _Op, awaiting: Generator[object, None, bytes], _: object = None) -> None:
        try:
            waits_for = awaiting.send(None)
        except StopIteration as stop:
            op.value = stop.value
        except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the trio task
            op.error = _failure(exc)
        else:
            cast("asyncio.Future[object]", waits_for).add_done_callback(
                functools.partial(self._resume_unary, op, awaiting)
            )
            return
        self._finish(op)

    async def _open_job(self, op: _Op, path: str, timeout_: float | None, md: object) -> None:
        try:
            call = op.call = op.stream = self._stream_methods[path](timeout=timeout_, metadata=md)
            await call.wait_for_connection()
        except BaseException as exc:  # noqa: BLE001
            op.error = _failure(exc)
        self._finish(op)

    async def _write_job(self, op: _Op, call: _StreamCall, message: bytes) -> None:
        try:
            await call.write(message)
        except asyncio.InvalidStateError:  # the call has ended
            op.error = await _final_status(call)
        except BaseException as exc:  # noqa: BLE001
            op.error = _failure(exc)
        self._finish(op)

    async def _read_job(self, op: _Op, call: _StreamCall) -> None:
        try:
            message = await call.read()
            if isinstance(message, bytes):
                op.value = message  # else grpc.aio.EOF: the call ended with status OK
        except BaseException as exc:  # noqa: BLE001
            op.error = _failure(exc)
        self._finish(op)

    async def _done_writing_job(self, op: _Op, call: _StreamCall) -> None:
        try:
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass  # the call has ended; its reader finds out how

    # -- trio side --------------------------------------------------------------------------------------

    async def _start(self) -> None:
        self._thread.start()
        op = _Op()
        self._submit(op, self._setup_job)
        # Quick; shielded so that the thread is never left behind half set up; bounded all the same.
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
            await self._wait(op, cancel_call=False)
        if not op.done:
            raise RuntimeError(f"the grpcio I/O thread for {self.endpoint} did not start")
        if op.error is not None:
            await self._raise(op.error)

    async def aclose(self) -> None:
        """Close the channel: open calls fail with ConnectionLost, new ones raise ClosedResourceError,
        the I/O thread ends. A checkpoint; leaving :func:`open_grpcio_channel` does the same."""
        await self._close()
        await trio.lowlevel.checkpoint()

    async def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._submit(_Op(), self._shutdown_job)
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
            await self._thread_done.wait()
            self._thread.join()

    def _prepare(self, path: str, table: Mapping[str, object], factory: str) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the channel is closed")
        if path not in table:
            if not path.startswith("/") or not path.isascii():
                raise ValueError(f'method path must look like "/package.Service/Method", not {path!r}')
            cast("dict[str, object]", table)[path] = getattr(self._grpc, factory)(path)

    def _check_send_size(self, size: int) -> None:
        if size > self._max_send:
            raise StatusError(
                StatusCode.RESOURCE_EXHAUSTED,
                f"trying to send message larger than max ({size} vs. {self._max_send})",
            )

    def _metadata(self, metadata: Sequence[tuple[str, str]]) -> object:
        # Callers pass the same few tuples over and over (hasleader, a token): cache the conversion.
        if not isinstance(metadata, tuple):
            return _grpc_metadata(metadata)
        converted = self._metadata_cache.get(metadata)
        if converted is None:
            if len(self._metadata_cache) >= 64:
                self._metadata_cache.clear()
            converted = self._metadata_cache[metadata] = _grpc_metadata(metadata)
        return converted

    async def _timeout(self) -> float | None:
        """The grpc timeout of a call starting now. A checkpoint only when the caller is cancelled."""
        deadline = trio.current_effective_deadline()
        timeout = None if deadline == math.inf else deadline - trio.current_time()
        if timeout is not None and timeout <= 0:
            await trio.sleep_forever()  # never send a call that is already too late
        await trio.lowlevel.checkpoint_if_cancelled()
        return timeout

    def _connection_failure(self, status: _Status) -> bool | None:
        """None for a status from the server; else whether the request may have been sent."""
        if status.code == StatusCode.UNAVAILABLE:
            if any(text in status.details for text in _NOT_SENT):
                return False
            if any(text in status.details for text in _BROKEN):
                return True
        if status.code == StatusCode.CANCELLED and self._closed:
            return True
        return None

    async def _raise(self, error: _Failure, *, count: bool = True) -> NoReturn:
        """Raise what a job's failure means in trio; ``count`` it in the statistics (once per call)."""
        if isinstance(error, _Status):
            if error.code == StatusCode.DEADLINE_EXCEEDED:
                deadline = trio.current_effective_deadline()
                if trio.current_time() >= deadline - _DEADLINE_SLACK:
                    await trio.sleep_until(deadline)  # the caller's own scope raises from here
            self._calls_failed += count
            request_sent = self._connection_failure(error)
            if request_sent is None:
                raise StatusError(error.code, error.details, error.trailers)
            if self._closed:
                message = f"the channel to {self.endpoint} was closed"
            elif request_sent:
                message = f"the connection to {self.endpoint} broke: {error.details}"
            else:
                message = f"could not connect to {self.endpoint}: {error.details}"
                if self._credentials is not None and not self._sends_client_certificate:
                    message += (
                        " (TLS without a client certificate: this transport can send one only from a "
                        "context made by etcdsync.client.tls_context)"
                    )
            self._last_error = message
            raise ConnectionLost(message, endpoint=self.endpoint, request_sent=request_sent) from error.cause
        if error is _LOCALLY_CANCELLED:
            if not self._closed:
                raise StatusError(StatusCode.CANCELLED, "cancelled by the client")
            self._calls_failed += count
            raise ConnectionLost(
                f"the channel to {self.endpoint} was closed", endpoint=self.endpoint, request_sent=True
            ) from trio.ClosedResourceError("the channel is closed")
        if error is _ENDED_OK:
            raise trio.BrokenResourceError("the server already ended this stream")
        assert isinstance(error, BaseException)
        raise error

    def _state(self) -> ChannelState:
        if self._closed or self._grpc is None:
            return ChannelState.CLOSED
        # A synchronous read of grpc core's state (thread-safe there; no asyncio involved).
        return _STATES.get(self._grpc.get_state(), ChannelState.CLOSED)

    # -- public API -------------------------------------------------------------------------------------

    async def unary(self, path: str, request: bytes, *, metadata: Sequence[tuple[str, str]] = ()) -> bytes:
        """Call the unary method ``path`` and return its serialized response (see ``Channel.unary``).

        A checkpoint. The caller's deadline is the grpc timeout; cancelling the caller cancels the
        grpc call at once (RST_STREAM) and raises ``trio.Cancelled``.

        Raises:
            StatusError: the server's non-OK status; RESOURCE_EXHAUSTED for a message over a limit.
            ConnectionLost: no connection, or it broke before the status arrived.
            trio.ClosedResourceError: the channel is closed.
            ValueError: invalid metadata or path.
        """
        self._prepare(path, self._unary_methods, "unary_unary")
        self._check_send_size(len(request))
        md = self._metadata(metadata)
        timeout = await self._timeout()
        op = _Op()
        self._calls_started += 1
        self._open_streams += 1
        try:
            self._submit(op, _unary_job, path, request, timeout, md)
            await self._wait(op)
        finally:
            self._open_streams -= 1
        if op.error is not None:
            await self._raise(op.error)
        assert op.value is not None
        return op.value

    @asynccontextmanager
    async def stream(
        self, path: str, *, metadata: Sequence[tuple[str, str]] = ()
    ) -> AsyncIterator[GrpcioStream]:
        """Open a bidirectional stream to ``path`` (see ``Channel.stream``).

        Entering is a checkpoint and waits until grpc has put the call on a connection; a status
        the server already sent is left for ``receive()``/``send()``. Exiting is not a checkpoint;
        it cancels the grpc call unless that has ended.

        Raises (on entry):
            ConnectionLost: no connection could be had.
            trio.ClosedResourceError: the channel is closed.
            ValueError: invalid metadata or path.
        """
        self._prepare(path, self._stream_methods, "stream_stream")
        md = self._metadata(metadata)
        timeout = await self._timeout()
        op = _Op()
        self._calls_started += 1
        self._submit(op, self._open_job, path, timeout, md)
        await self._wait(op)
        error = op.error
        if error is not None and not (isinstance(error, _Status) and self._connection_failure(error) is None):
            await self._raise(error)
        assert op.stream is not None
        self._open_streams += 1
        try:
            yield GrpcioStream._create(self, op.stream)
        finally:
            self._open_streams -= 1
            if not self._closed:
                self._submit(op, _cancel_job)

    def statistics(self) -> ChannelStatistics:
        """A snapshot of the channel's state (no I/O). See the module docstring on ``reconnects``."""
        return ChannelStatistics(
            endpoint=self.endpoint,
            state=self._state(),
            open_streams=self._open_streams,
            calls_started=self._calls_started,
            calls_failed=self._calls_failed,
            reconnects=max(0, self._connects - 1),
            last_error=self._last_error,
        )


async def _unary_job(op: _Op) -> None:
    """A marker for :meth:`GrpcioChannel._drain_to_loop` ("start a unary call"); never run."""


async def _cancel_job(op: _Op) -> None:
    """A marker for :meth:`GrpcioChannel._drain_to_loop` ("cancel ``op``"); never run."""


@final
class GrpcioStream:
    """One bidirectional gRPC stream; implements ``_transport.Stream``. Made by ``GrpcioChannel.stream``.

    One task may send while another receives.
    """

    def __init__(self, channel: GrpcioChannel, call: _StreamCall, *, _private: object = None) -> None:
        if _private is not _PRIVATE:
            raise TypeError("use `async with channel.stream(path) as stream:`")
        self._channel = channel
        self._call = call
        self._read: _Op | None = None
        self._failure_counted = False
        self._send_closed = False
        self._sending = False
        self._receiving = False

    @classmethod
    def _create(cls, channel: GrpcioChannel, call: _StreamCall) -> GrpcioStream:
        return cls(channel, call, _private=_PRIVATE)

    def __repr__(self) -> str:
        return f"<etcdsync GrpcioStream at {id(self):#x} on {self._channel.endpoint}>"

    async def _raise(self, error: _Failure) -> NoReturn:
        count, self._failure_counted = not self._failure_counted, True
        await self._channel._raise(error, count=count)

    async def send(self, message: bytes) -> None:
        """Send one message. A checkpoint; cancelling it cancels the whole call (the message may or may
        not have gone out).

        Raises:
            StatusError: RESOURCE_EXHAUSTED for a message over ``max_send_message_length`` (not sent),
                or the call's non-OK status if it already ended.
            ConnectionLost: the connection broke, or the channel was closed.
            trio.BrokenResourceError: the server already ended the call with status OK.
            trio.ClosedResourceError: :meth:`close_send` was called.
            trio.BusyResourceError: another task is sending on this stream.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        if self._send_closed:
            raise trio.ClosedResourceError("close_send() was called on this stream")
        channel = self._channel
        channel._check_send_size(len(message))
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            if channel._closed:
                await self._raise(_LOCALLY_CANCELLED)
            op = _Op()
            op.call = self._call
            channel._submit(op, channel._write_job, self._call, message)
            await channel._wait(op)
            if op.error is not None:
                await self._raise(op.error)
        finally:
            self._sending = False

    async def receive(self) -> bytes:
        """The next message. A checkpoint; a cancelled receive leaves its read pending, and the next
        ``receive()`` returns what it reads.

        Raises:
            trio.EndOfChannel: the server ended the stream with status OK (all messages received).
            StatusError: the server's non-OK status.
            ConnectionLost: the connection broke, or the channel was closed.
            trio.BusyResourceError: another task is receiving on this stream.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        channel = self._channel
        self._receiving = True
        try:
            op = self._read
            if op is None:
                await trio.lowlevel.checkpoint_if_cancelled()
                if channel._closed:
                    await self._raise(_LOCALLY_CANCELLED)
                op = self._read = _Op()
                channel._submit(op, channel._read_job, self._call)
            if op.done:
                await trio.lowlevel.checkpoint()
            else:
                await channel._wait(op, cancel_call=False)
            self._read = None
            if op.error is not None:
                await self._raise(op.error)
            if op.value is None:
                raise trio.EndOfChannel
            return op.value
        finally:
            self._receiving = False

    async def close_send(self) -> None:
        """Tell the server we will send nothing more (grpc ``done_writing``). Idempotent; a checkpoint."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        await trio.lowlevel.checkpoint()
        channel = self._channel
        if not self._send_closed and not channel._closed:
            channel._submit(_Op(), channel._done_writing_job, self._call)
        self._send_closed = True


_PRIVATE: Final = object()


@asynccontextmanager
async def open_grpcio_channel(
    endpoint: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    keepalive_interval: float = 10.0,
    keepalive_timeout: float = 5.0,
    max_receive_message_length: int = -1,
    max_send_message_length: int = 2**31 - 1,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> AsyncIterator[GrpcioChannel]:
    """Open a gRPC channel to ``endpoint`` (``"host:port"``) through grpcio's ``grpc.aio``.

    Example::

        async with open_grpcio_channel("127.0.0.1:2379") as channel:
            data = await channel.unary("/etcdserverpb.KV/Range", request)

    Entering starts the channel's I/O thread and waits, shielded, until its loop runs (a schedule
    point, not a cancellation point, as with ``open_h2_channel``); nothing connects before the first
    call. Exiting cancels every open call (they raise :class:`ConnectionLost`), closes the grpc
    channel and waits, shielded and bounded, for the thread to end, also when the body raised or was
    cancelled.

    Args:
        endpoint: ``"host:port"``; with TLS also the name the server's certificate must carry.
        ssl_context: use TLS, trusting this context's CA certificates (see the module docstring:
            no client certificate; verification cannot be turned off).
        keepalive_interval: ``grpc.keepalive_time_ms``. Pings go out only while calls are open;
            keep it >= 5 s against etcd (its ``--grpc-keepalive-min-time``).
        keepalive_timeout: how long a ping may go unanswered before the connection is declared dead
            and its calls fail with ``ConnectionLost(request_sent=True)``.
        max_receive_message_length: larger responses fail with StatusError(RESOURCE_EXHAUSTED);
            -1 (the default) is unlimited, not grpc's own 4 MiB.
        max_send_message_length: larger requests fail with StatusError(RESOURCE_EXHAUSTED), unsent.
        connect_timeout: the least time grpc core gives one connection attempt.

    Raises:
        ValueError: a bad option, or an ``ssl_context`` that does not verify the server.
    """
    for name, value in (
        ("keepalive_interval", keepalive_interval),
        ("keepalive_timeout", keepalive_timeout),
        ("connect_timeout", connect_timeout),
        ("max_send_message_length", max_send_message_length),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be > 0")
    if not (max_receive_message_length > 0 or max_receive_message_length == -1):
        raise ValueError("max_receive_message_length must be > 0, or -1 for unlimited")
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'endpoint must be "host:port", not {endpoint!r}')
    credentials = _credentials(ssl_context) if ssl_context is not None else None
    ping_timeout_ms = max(1, round(keepalive_timeout * 1000))
    options: list[tuple[str, object]] = [
        ("grpc.max_receive_message_length", min(max_receive_message_length, 2**31 - 1)),
        ("grpc.max_send_message_length", min(max_send_message_length, 2**31 - 1)),
        ("grpc.keepalive_time_ms", max(1, round(keepalive_interval * 1000))),
        ("grpc.keepalive_timeout_ms", ping_timeout_ms),
        ("grpc.http2.ping_timeout_ms", ping_timeout_ms),  # what grpc 1.85 really times pings out by
        ("grpc.keepalive_permit_without_calls", 0),  # etcd punishes pings without calls
        ("grpc.http2.max_pings_without_data", 0),  # but a quiet watch must still be checked
        # The h2 transport's reconnect schedule (0.1 s growing to 5 s), not grpc's 1 s to 120 s.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 5000),
        ("grpc.min_reconnect_backoff_ms", max(100, round(connect_timeout * 1000))),  # min connect timeout
        ("grpc.primary_user_agent", f"etcdsync/{__version__}"),
    ]
    channel = GrpcioChannel(
        endpoint,
        options=options,
        credentials=credentials,
        sends_client_certificate=ssl_context is not None and client_pem(ssl_context) is not None,
        max_send_message_length=max_send_message_length,
        _private=_PRIVATE,
    )
    try:
        await channel._start()
        yield channel
    finally:
        await channel._close()
