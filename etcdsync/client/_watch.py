"""Watches: ``async with client.watch(key) as events: async for response in events: ...``.

Every watcher of a :class:`~etcdsync.client.Client` shares **one** etcd ``Watch`` stream per
connection. A ``WatchHub`` (one per client, started on the first watch as a background task in
the client's nursery) owns that stream: it feeds what the stream says into the pure multiplexer
:class:`~etcdsync.client._sansio._watch.WatchMux` and carries out what the mux answers (send a
create, a cancel or a progress request; put a response on a watcher's buffer; fail a watcher;
reconnect). The bookkeeping — watch ids, next revisions, fragments, pauses — is the mux's; the shell
only moves messages.

Guarantees
----------

**Exactly once, in revision order.** A watcher's iterator yields every event in its range from its
start revision on, each once, in revision order, with no gap — across stream breaks, connection
losses, member failures and backpressure pauses. Each (re)create asks etcd for the history from the
watcher's *next revision* (the last delivered event's ``mod_revision`` + 1) and the mux drops anything
below it, so a replay delivers nothing twice. Fragmented responses (etcd splits responses larger than
its request limit when asked; we always ask) are reassembled before delivery.

**Responses.** Each :class:`~etcdsync.client.WatchResponse` holds the events of one etcd response,
with one exception that saves a wake-up per event under load: event responses that arrive while the
consumer has been woken for the previous one but has not run yet are joined to it (up to 64 events,
with the header of the last). Empty responses (bookmarks) are never joined.

**Start revision.** ``start_revision=r`` delivers history from revision ``r`` (it may be in the
past; replayed from etcd's history). ``start_revision=0`` (the default) means "from when the watch
is established on the server": the watch covers everything after the ``header.revision`` of etcd's
``created`` answer. ``await watch.established()`` waits for that answer and returns the revision
``r`` such that the watch delivers every event with ``mod_revision > r`` (that header revision, or
``start_revision - 1`` for an explicit start).

**Reconnecting.** The stream is opened with ``hasleader: true`` metadata, so a member that loses its
raft leader ends it instead of silently serving nothing. When the stream or its connection breaks,
the member has no leader, or etcd cancels watchers for a reason that indicts the member, the hub
marks the endpoint failed in the client's endpoint picker, waits a jittered exponential backoff
(50 ms growing by 1.6 up to 2 s, ±20 % jitter; reset once a stream serves), and re-creates every watcher
on the next healthy endpoint from its next revision. A rejected auth token ("invalid auth token",
"revision of auth store is old") is renewed first and does not count against the endpoint. It
retries for as long as there are watchers; bound the wait with a trio deadline around your loop if
you need to.

**Compaction.** If a watcher's next revision has been compacted away when it is (re)created — a
fresh watch below the compaction revision, or a resume after an outage or a pause during which etcd
compacted — its iterator first yields every response it had already buffered and then raises
:class:`~etcdsync.client.CompactedError` with ``compact_revision`` set to etcd's compaction revision. The
other watchers are not affected. Re-list and watch again from the new revision (or use
:func:`~etcdsync.client.list_and_watch`, which does that for you).

**Backpressure.** Each watcher buffers at most ``max_buffer`` responses, ``DEFAULT_MAX_BUFFER`` = 64
by default (``list_and_watch`` takes ``max_buffer=``). When its buffer is full the hub *pauses* it:
the mux cancels its server-side watch and drops whatever still arrives for it — nothing more is
buffered. Once the consumer has drained the buffer to half (32 of 64) the watcher is resumed:
re-created from its next revision, and etcd replays what was missed from its history. A slow consumer
therefore never grows client memory without bound and never stalls its siblings on the shared
stream. (STYLE rule 24 says a slow consumer stops acknowledging its HTTP/2 DATA; on a *shared*
stream that would stall every watcher, so this pause/resume design replaces it. The HTTP/2 window
still bounds what is in flight.) A paused watcher whose history is compacted before it resumes
raises ``CompactedError`` after draining its buffer, like any other resume.

**Cancellation.** Leaving the ``async with`` — normally, by an exception in the body, or by
cancellation — removes the watcher at once and queues a ``WatchCancelRequest`` for its server-side
watch (sent by the hub right after; if no watcher is left, the hub closes the stream, which cancels
it on the server too). Exceptions from the body propagate unwrapped; there is no nursery to leak an
``ExceptionGroup`` from.

**Progress.** :meth:`~etcdsync.client.Watch.request_progress` (sync: it only queues) asks etcd for a
stream-wide progress notification; this watcher then receives one empty
:class:`~etcdsync.client.WatchResponse` whose ``header.revision`` is etcd's current revision. On
etcd 3.4.23 that answer is *not* ordered with the events still queued for the watcher (etcd fixed
that in 3.4.25/3.5.8), so the bookmark is a hint — "the watch is established and the store was at
this revision" — and does not advance the watcher's next revision; events at or below it may still
follow. ``progress_notify=True`` asks for etcd's own periodic per-watcher notifications (every 10
minutes by default), which *are* ordered and do advance it.
"""

from __future__ import annotations

import copy
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, final

import attrs
import trio

from ._convert import _methods as rpc, _watch as cv
from ._errors import (
    CompactedError,
    EtcdInternalError,
    InvalidAuthTokenError,
    RpcError,
    TransportError,
    UnavailableError,
    error_from_status,
)
from ._keys import key_range
from ._sansio._backoff import Backoff
from ._sansio._namespace import Namespace
from ._sansio._watch import (
    Deliver,
    Established,
    Reconnect,
    SendCancel,
    SendCreate,
    SendProgressRequest,
    WatchAction,
    Watcher,
    WatcherFailed,
    WatchFilter,
    WatchMux,
    WatchSpec,
)
from ._transport import ConnectionLost, StatusError, Stream
from ._txn import check_int
from ._types import WatchResponse

if TYPE_CHECKING:
    from ._client import Client

__all__ = [
    "DEFAULT_MAX_BUFFER",
    "Watch",
    "WatchFilter",
    "WatchHub",
    "WatchHubStatistics",
    "WatchStatistics",
    "open_watch",
    "start_watch",
]

logger = logging.getLogger(__name__)

#: How many responses a watcher buffers before it is paused (see "Backpressure" above).
DEFAULT_MAX_BUFFER: Final = 64

# The most events a response handed to a consumer gets by joining a burst (see Watch._deliver).
_JOIN_LIMIT: Final = 64

# gRPC status code used to map a server-side cancel reason that names no known error.
_CANCELLED: Final = 1

_PRIVATE: Final = object()


class _StreamEnded(Exception):
    """Internal: why the current stream is over (never leaves this module)."""

    def __init__(
        self, reason: str, *, idle: bool = False, blame: bool = True, reauthenticate: bool = False
    ) -> None:
        super().__init__(reason)
        self.idle = idle  # closed on purpose (no watcher left): reopen at once when one comes
        self.blame = blame  # the endpoint is to blame: mark it failed in the picker
        self.reauthenticate = reauthenticate  # the token was rejected: get a new one first


# What ends one stream and makes the hub open another one.
_STREAM_ERRORS: Final = (ConnectionLost, StatusError, trio.EndOfChannel, trio.BrokenResourceError)


@attrs.frozen(kw_only=True)
class WatchStatistics:
    """A snapshot of one watcher, from :meth:`~etcdsync.client.Watch.statistics`.

    Attributes:
        buffered: responses waiting in its buffer.
        max_buffer: the buffer's bound.
        paused: whether backpressure has paused its server-side watch.
        pauses: how often it was paused so far.
        next_revision: the first revision not yet delivered (0: a start-0 watch not yet established).
    """

    buffered: int
    max_buffer: int
    paused: bool
    pauses: int
    next_revision: int


@attrs.frozen(kw_only=True)
class WatchHubStatistics:
    """A snapshot of a client's watch hub.

    Attributes:
        watchers: open watchers.
        active: of those, established on the current stream.
        paused: of those, paused by backpressure.
        stream_up: whether a Watch stream is open.
        endpoint: the endpoint of the open stream, or ``None``.
        streams_opened: Watch streams opened so far (one per connection; more after reconnects).
        last_failure: why the last stream (or attempt to open one) failed, ``None`` if none did.
    """

    watchers: int
    active: int
    paused: int
    stream_up: bool
    endpoint: str | None
    streams_opened: int
    last_failure: str | None


@final
class Watch:
    """One watcher: an async iterator of :class:`~etcdsync.client.WatchResponse`, from ``client.watch()``.

    Example::

        async with client.watch(b"/jobs/", prefix=True, start_revision=rev + 1) as events:
            async for response in events:
                for event in response.events:
                    print(event.type.name, event.kv.key, event.kv.mod_revision)

    A response with no events is a progress notification (a bookmark). Iteration raises
    :class:`~etcdsync.client.CompactedError` when the history it needs is compacted, after yielding what it
    had buffered; :class:`trio.ClosedResourceError` once the client is closed.

    To act on a state read at revision ``rev`` and miss no change after it, watch from
    ``start_revision=0`` and compare with :meth:`established`::

        async with client.watch(key) as events:
            if await events.established() > rev:
                ...  # something changed between the read and the watch: read again
            async for response in events:
                ...
    """

    def __init__(self, _private: object, hub: WatchHub, watcher: Watcher, max_buffer: int) -> None:
        if _private is not _PRIVATE:
            raise TypeError("Watch handles come from `async with client.watch(...)`")
        self._hub = hub
        self._watcher = watcher
        self._max_buffer = max_buffer
        # The buffer: a deque and the one task waiting on it, rather than a trio memory channel. Every
        # delivered response passes here, and the channel's general machinery (several receivers, send
        # waiters, statistics objects) cost more per response than the rest of this class.
        self._buffer: deque[WatchResponse] = deque()
        self._waiter: trio.lowlevel.Task | None = None
        self._woken = False  # the waiter was rescheduled and has not run yet
        self._failure: BaseException | None = None
        self._namespace = Namespace(b"")
        self._paused = False
        self._pauses = 0
        self._established_revision: int | None = None
        self._settled: trio.Event | None = None  # set once established or failed; made on demand

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchResponse:
        """The next response. A checkpoint.

        Raises:
            CompactedError: the watch's history was compacted (after every buffered response).
            RpcError: etcd cancelled the watch for another reason (e.g. permission denied).
            trio.ClosedResourceError: the client was closed, or the watch's block was left.
            trio.BusyResourceError: another task is waiting for this watch's next response.
        """
        # The same checkpoints as trio's MemoryReceiveChannel.receive.
        await trio.lowlevel.checkpoint_if_cancelled()
        buffer = self._buffer
        if buffer or self._failure is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            if self._waiter is not None:
                raise trio.BusyResourceError("another task is already iterating this watch")
            self._waiter = trio.lowlevel.current_task()

            def abort(_: object) -> trio.lowlevel.Abort:
                self._waiter = None
                return trio.lowlevel.Abort.SUCCEEDED

            # Woken by _deliver once the buffer has a response, or by _fail (and remove).
            await trio.lowlevel.wait_task_rescheduled(abort)
            self._woken = False
        if not buffer:
            assert self._failure is not None
            raise self._failure
        response = buffer.popleft()
        if self._paused:
            self._hub._consumed(self)
        return self._namespace.watch_response(response) if self._namespace else response

    async def established(self) -> int:
        """Wait until etcd has confirmed (``created``) this watch; return the revision it starts after.

        The watch delivers every event with ``mod_revision > r`` for the returned ``r``: the
        ``header.revision`` of etcd's ``created`` answer for ``start_revision=0``, else
        ``start_revision - 1``. Returns at once when already established; a stream break before the
        answer only delays it. Always a checkpoint.

        Raises:
            CompactedError: the start revision is compacted (the failure iteration raises).
            RpcError: etcd refused the watch for another reason (e.g. permission denied).
            trio.ClosedResourceError: the client was closed, or the watch's block was left, before it
                was established.
        """
        if self._settled is None:
            self._settled = trio.Event()
            if self._failure is None:
                self._hub._apply(self._hub._mux.request_established(self._watcher))
            else:  # over already (and forgotten by the mux): established before that, or never
                self._established_revision = self._watcher.established_revision
                self._settled.set()
        await self._settled.wait()
        if self._established_revision is None:
            assert self._failure is not None  # the event is set only by one of the two
            raise self._failure
        return self._established_revision

    def request_progress(self) -> None:
        """Ask etcd for a progress notification; this watch then yields one empty response (a bookmark).

        Sync: it only queues the request. Asking again before the bookmark arrived yields one
        bookmark. See the module docstring for what the bookmark means on etcd 3.4.23.
        """
        self._hub._apply(self._hub._mux.request_progress(self._watcher))

    def statistics(self) -> WatchStatistics:
        """A snapshot of this watcher (no I/O)."""
        return WatchStatistics(
            buffered=len(self._buffer),
            max_buffer=self._max_buffer,
            paused=self._paused,
            pauses=self._pauses,
            next_revision=self._watcher.next_revision,
        )

    def __repr__(self) -> str:
        spec = self._watcher.spec
        state = "failed" if self._failure is not None else self._watcher.state.value
        return (
            f"<etcdsync.client.Watch at {id(self):#x}, {state}, key={spec.key!r}, "
            f"range_end={spec.range_end!r}, next_revision={self._watcher.next_revision}, "
            f"{len(self._buffer)}/{self._max_buffer} buffered>"
        )

    # ----- called by the watch layer -----

    def _close(self) -> None:
        """Remove the watcher (sync): cancel it on the server, end its iteration."""
        self._hub.remove(self)

    def _deliver(self, response: WatchResponse) -> bool:
        """Buffer ``response`` and wake the consumer; return whether the buffer is now full."""
        buffer = self._buffer
        if self._woken and response.events and buffer:
            # A burst: the consumer was woken for the last response but has not run yet. Join these
            # events to it, so that the burst costs it one wake-up and one checkpoint. Only then: a
            # consumer that is busy elsewhere gets separate responses, so backpressure sees them.
            # Bookmarks are never joined.
            last = buffer[-1]
            if last.events and len(last.events) + len(response.events) <= _JOIN_LIMIT:
                buffer[-1] = WatchResponse(header=response.header, events=last.events + response.events)
                return False
        if len(buffer) >= self._max_buffer:
            # The hub pauses a watcher as soon as its buffer fills, and the mux delivers nothing to a
            # paused watcher, so this cannot happen.
            raise EtcdInternalError(f"watch buffer overflow on {self!r}; please report a bug")
        buffer.append(response)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            self._woken = True
            trio.lowlevel.reschedule(waiter)
        return len(buffer) >= self._max_buffer

    def _set_established(self, revision: int) -> None:
        self._established_revision = revision
        assert self._settled is not None  # the mux emits Established only to a watch that asked
        self._settled.set()

    def _fail(self, failure: BaseException) -> None:
        """End the watch: the consumer gets what is buffered, then ``failure``."""
        if self._failure is None:
            self._failure = failure
            waiter = self._waiter
            if waiter is not None:  # so nothing is buffered
                self._waiter = None
                trio.lowlevel.reschedule(waiter)
            if self._settled is not None:
                self._settled.set()


@final
class WatchHub:
    """The one Watch stream of a client and every watcher on it (private; see the module docstring).

    Created on the first watch (``client._watch_hub``); its task runs in the client's nursery and
    closes its stream whenever no watcher is left.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._mux = WatchMux()
        self._watches: dict[Watcher, Watch] = {}
        # Serialized requests for the *current* stream, oldest first. Dropped when the stream goes
        # down: the mux voids every watch id then, and re-creates from on_stream_up. This is a command
        # queue bounded by the watchers' own actions, not a data buffer.
        self._outgoing: list[bytes] = []
        self._changed = trio.Event()
        self._running = False
        self._endpoint: str | None = None
        self._streams_opened = 0
        self._last_failure: str | None = None

    def statistics(self) -> WatchHubStatistics:
        """A snapshot of the hub (no I/O)."""
        mux = self._mux.statistics()
        return WatchHubStatistics(
            watchers=len(self._watches),
            active=mux.active,
            paused=mux.paused,
            stream_up=mux.stream_up,
            endpoint=self._endpoint,
            streams_opened=self._streams_opened,
            last_failure=self._last_failure,
        )

    # ----- the consumer side (sync) -----

    def add(self, spec: WatchSpec, max_buffer: int) -> Watch:
        """Register a watcher; starts the hub's task if it is not running."""
        watcher, actions = self._mux.add(spec)
        watch = Watch(_PRIVATE, self, watcher, max_buffer)
        self._watches[watcher] = watch
        self._apply(actions)
        self._poke()  # wake the hub's task even when there is no stream to send a create on yet
        if not self._running:
            self._running = True
            self._client._nursery.start_soon(self._run, name=f"etcdsync watch hub {id(self):#x}")
        return watch

    def remove(self, watch: Watch) -> None:
        """The consumer left the watch's block: cancel it on the server (now or once it is created)."""
        if self._watches.pop(watch._watcher, None) is not None:
            self._apply(self._mux.remove(watch._watcher))
        left = trio.ClosedResourceError("this watch's `async with` block was left")
        watch._fail(left)
        # Iterating after the block raises that, whatever was buffered or had failed it before.
        watch._buffer.clear()
        watch._failure = left

    def _consumed(self, watch: Watch) -> None:
        """The consumer took a response: resume a paused watcher once its buffer is half empty."""
        if watch._paused and watch._failure is None and len(watch._buffer) <= watch._max_buffer // 2:
            watch._paused = False
            self._apply(self._mux.resume(watch._watcher))

    # ----- carrying out the mux's actions -----

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _apply(self, actions: list[WatchAction]) -> str | None:
        """Carry out ``actions``; return the reason of a :class:`Reconnect` among them, if any."""
        reconnect: str | None = None
        for action in actions:
            if isinstance(action, Deliver):  # by far the most common: tested first
                watch = self._watches[action.watcher]
                if watch._deliver(action.response):
                    watch._paused = True
                    watch._pauses += 1
                    self._apply(self._mux.pause(action.watcher))
            elif isinstance(action, SendCreate | SendCancel | SendProgressRequest):
                self._outgoing.append(cv.watch_request(action))
                self._poke()
            elif isinstance(action, Established):
                self._watches[action.watcher]._set_established(action.revision)
            elif isinstance(action, WatcherFailed):
                # The mux has forgotten it; the consumer gets its buffer, then the error.
                self._watches.pop(action.watcher)._fail(_failure_of(action))
            else:
                assert isinstance(action, Reconnect)
                reconnect = action.reason
        return reconnect

    # ----- the background task -----

    async def _run(self) -> None:
        with self._client._service():
            await self._run_until_closed()

    async def _run_until_closed(self) -> None:
        backoff = Backoff(initial=0.05, maximum=2.0, rng=random.Random())
        try:
            while True:
                if not self._watches:
                    await self._changed.wait()
                    continue
                address = self._client._picker.order(trio.current_time())[0]
                try:
                    await self._one_stream(address, backoff)
                except trio.ClosedResourceError:
                    return  # the client is closing its channels
                except _StreamEnded as ended:
                    if ended.idle:
                        continue
                    logger.debug("watch stream to %s ended: %s", address, ended)
                    self._last_failure = f"{address}: {ended}"
                    if ended.blame:
                        self._client._picker.failed(address, trio.current_time())
                    await trio.sleep(backoff.next_delay())
        finally:
            # The client is closing (or a bug escaped): no consumer may wait forever.
            for watch in self._watches.values():
                watch._fail(trio.ClosedResourceError("the etcd client is closed"))
            self._running = False

    async def _one_stream(self, address: str, backoff: Backoff) -> None:
        """Run one Watch stream on ``address`` until it ends; always raises :class:`_StreamEnded`."""
        client = self._client
        # What ended the stream, first come first served: a _StreamEnded or one of _STREAM_ERRORS. The
        # two loops record it and cancel each other instead of raising, so no ExceptionGroup forms.
        ended: list[BaseException] = []
        if client._credentials is not None and client._token is None:
            await self._reauthenticate(None)
        token = client._token  # the one this stream sends: the stale one if the server rejects it
        try:
            channel = await client._channel(address)
            async with channel.stream(rpc.WATCH.path, metadata=client._metadata()) as stream:
                self._streams_opened += 1
                self._endpoint = address
                self._apply(self._mux.on_stream_up(progress_all_ordered=False))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._send_loop, stream, ended, nursery.cancel_scope)
                    try:
                        await self._receive_loop(stream, address, backoff)
                    except (*_STREAM_ERRORS, _StreamEnded) as exc:
                        ended.append(exc)
                    nursery.cancel_scope.cancel()
        except _STREAM_ERRORS as exc:
            ended.append(exc)
        finally:
            # Atomically (no checkpoint in between): every watch id is void, queued requests with it.
            self._mux.on_stream_down()
            self._outgoing.clear()
            self._endpoint = None
        first = ended[0]
        if not isinstance(first, _StreamEnded):
            first = self._stream_error(first)
        if first.reauthenticate and client._credentials is not None:
            await self._reauthenticate(token)
        raise first

    def _stream_error(self, exc: BaseException) -> _StreamEnded:
        """Classify what ended a stream."""
        if isinstance(exc, StatusError):
            err = error_from_status(exc.code, exc.message, exc.trailers)
            ended = _StreamEnded(f"{type(err).__name__}: {err}")
            if isinstance(err, InvalidAuthTokenError):
                ended.blame, ended.reauthenticate = False, True
        else:
            ended = _StreamEnded(f"{type(exc).__name__}: {exc}")
        ended.__cause__ = exc
        return ended

    async def _reauthenticate(self, stale_token: str | None) -> None:
        """Get a fresh token. If the server refuses the credentials, every watcher fails with that error."""
        try:
            await self._client._authenticate(stale_token)
        except (TransportError, UnavailableError) as exc:
            raise _StreamEnded(f"could not authenticate: {exc}") from exc
        except RpcError as exc:
            # Wrong credentials will not get better by retrying: tell every consumer.
            for watcher, watch in list(self._watches.items()):
                del self._watches[watcher]
                self._mux.remove(watcher)
                watch._fail(copy.copy(exc))
            raise _StreamEnded(f"authentication failed: {exc}", blame=False) from exc

    async def _receive_loop(self, stream: Stream, address: str, backoff: Backoff) -> None:
        healthy = False
        while True:
            data = await stream.receive()
            reason = self._apply(self._mux.on_response(cv.watch_response(data)))
            if reason is not None:
                # The token ones are the client's fault, not the member's (see _RECONNECT_REASONS).
                auth = "auth" in reason
                raise _StreamEnded(f"etcd cancelled a watch: {reason}", blame=not auth, reauthenticate=auth)
            if not healthy:
                # The member serves this stream: the next failure starts its backoff from scratch.
                healthy = True
                backoff.reset()
                self._client._picker.succeeded(address)

    async def _send_loop(self, stream: Stream, ended: list[BaseException], scope: trio.CancelScope) -> None:
        try:
            while True:
                while self._outgoing:
                    batch, self._outgoing = self._outgoing, []
                    for message in batch:
                        await stream.send(message)
                if not self._watches:
                    # Nothing left to watch (and every cancel sent): close the stream. Checked with
                    # no checkpoint since the queue was seen empty, so no create can be lost.
                    ended.append(_StreamEnded("no watcher left", idle=True))
                    scope.cancel()
                    return
                await self._changed.wait()
        except _STREAM_ERRORS as exc:
            ended.append(exc)
            scope.cancel()


def _failure_of(action: WatcherFailed) -> RpcError:
    if action.compact_revision > 0:
        return CompactedError(compact_revision=action.compact_revision)
    return error_from_status(_CANCELLED, action.reason)


@asynccontextmanager
async def open_watch(
    client: Client,
    key: bytes | str,
    range_end: bytes | str | None = None,
    *,
    prefix: bool = False,
    start_revision: int = 0,
    prev_kv: bool = False,
    filters: Sequence[WatchFilter] = (),
    progress_notify: bool = False,
    max_buffer: int = DEFAULT_MAX_BUFFER,
) -> AsyncIterator[Watch]:
    """Watch ``key`` (or ``[key, range_end)``, or every key starting with ``key`` when ``prefix``).

    The body gets a :class:`~etcdsync.client.Watch`; see the module docstring for the guarantees.
    Entering is a checkpoint; exiting is not (it only queues the server-side cancel, so it also runs
    when the body was cancelled).

    Args:
        start_revision: the first revision to deliver (0: from when the watch is established).
        prev_kv: events carry the key's previous value.
        filters: event types the server leaves out (:attr:`~etcdsync.client.WatchFilter.NOPUT`,
            :attr:`~etcdsync.client.WatchFilter.NODELETE`).
        progress_notify: etcd sends periodic empty responses while nothing changes.
        max_buffer: responses buffered before backpressure pauses the watch.

    Raises:
        ValueError, TypeError: (on entry) invalid arguments.
        trio.ClosedResourceError: (on entry) the client is closed.
    """
    k, end = key_range(key, range_end, prefix=prefix, from_key=False)
    check_int("start_revision", start_revision)
    check_int("max_buffer", max_buffer, minimum=1)
    if isinstance(filters, WatchFilter | str | bytes) or not all(isinstance(f, WatchFilter) for f in filters):
        raise TypeError("filters must be a sequence of WatchFilter values")
    spec = WatchSpec(
        key=k,
        range_end=end,
        start_revision=start_revision,
        prev_kv=bool(prev_kv),
        filters=tuple(dict.fromkeys(filters)),
        progress_notify=bool(progress_notify),
    )
    client._check_open()
    await trio.lowlevel.checkpoint()
    watch = start_watch(client, spec, max_buffer)
    try:
        yield watch
    finally:
        watch._close()


def start_watch(client: Client, spec: WatchSpec, max_buffer: int) -> Watch:
    """Register a watcher on ``client``'s hub (created on first use); end it with ``watch._close()``.

    Sync. For the watch layer's own users (``open_watch``, ``list_and_watch``).

    Raises:
        trio.ClosedResourceError: the client is closed.
    """
    client._check_open()
    hub = client._watch_hub
    if hub is None:
        hub = client._watch_hub = WatchHub(client)
    namespace = client._ns
    if namespace:
        # A namespaced view watches below its prefix and sees its own key names in the events.
        key, range_end = namespace.key_range(spec.key, spec.range_end)
        spec = attrs.evolve(spec, key=key, range_end=range_end)
    watch = hub.add(spec, max_buffer)
    watch._namespace = namespace
    return watch
