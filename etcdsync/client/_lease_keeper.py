"""One LeaseKeepAlive stream per client, shared by every lease it keeps alive (every session).

Thousands of sessions must not mean thousands of streams. :class:`LeaseKeeper` runs one background
task in the client's nursery, started when the first lease is added. The task keeps one
LeaseKeepAlive stream open to the client's preferred endpoint, sends what the pure
:class:`~etcdsync.client._sansio._keepalive.KeepAliveSchedule` says is due, and feeds the answers
back. When the stream or its connection breaks, it reconnects (to the next endpoint if the current
one failed) with jittered backoff and keeps sending: trouble shorter than a lease's TTL is ridden out.

A lease is declared lost — its :class:`KeptLease` ``lost`` event is set — when the schedule says so:
the server answered TTL <= 0, or no keep-alive was acknowledged within the TTL counted from the send
time of the last acknowledged one. Expiry is checked by its own task, so it is declared on time even
while no connection can be made.

Both tasks sleep in a cancel scope whose deadline is the schedule's next send (or expiry) time. Adding
a lease that is due sooner moves that deadline earlier instead of waking the task, so granting n
sessions costs O(n log n), not n wake-ups; removing one needs no wake-up at all (a task that wakes
for nothing just finds nothing due).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final, final

import attrs
import trio

from ._convert import _kv as cv, _methods as rpc
from ._errors import InvalidAuthTokenError, error_from_status
from ._sansio._backoff import Backoff
from ._sansio._keepalive import KeepAliveSchedule
from ._transport import ConnectionLost, StatusError, Stream

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["KeptLease", "LeaseKeepAlive", "LeaseKeeper"]

logger = logging.getLogger(__name__)

_STREAM_ERRORS: Final = (ConnectionLost, StatusError, trio.EndOfChannel, trio.BrokenResourceError)


@attrs.define(eq=False)
class KeptLease:
    """A lease registered with the keeper. ``lost`` is set once, when the lease counts as lost."""

    lease_id: int
    ttl: int
    lost: trio.Event = attrs.field(factory=trio.Event)
    reason: str | None = None
    keepalives_acknowledged: int = 0
    #: Cancel scopes to cancel when the lease is lost (see LeaseKeepAlive.cancel_on_loss).
    scopes: set[trio.CancelScope] = attrs.field(factory=set)
    #: The serialized LeaseKeepAliveRequest, built once rather than per keep-alive.
    request: bytes = attrs.field(init=False, repr=False)

    @request.default
    def _request(self) -> bytes:
        return cv.lease_keep_alive_request(self.lease_id)


_PRIVATE: Final = object()


def mark_lost(kept: KeptLease, reason: str) -> None:
    """Record the loss of a lease (once) and cancel the work registered to end with it."""
    if kept.lost.is_set():
        return
    kept.reason = reason
    kept.lost.set()
    for scope in kept.scopes:
        scope.cancel()
    logger.debug("lease %x lost: %s", kept.lease_id, reason)


@final
class LeaseKeepAlive:
    """A lease being kept alive by its client, from :meth:`Client.keep_alive`.

    Example::

        grant_sent = trio.current_time()
        grant = await client.lease_grant(10)
        async with client.keep_alive(grant.id, ttl=grant.ttl, granted_at=grant_sent) as ka:
            await ka.wait_lost()   # returns if the lease is lost; ka.reason says why
    """

    def __init__(self, _private: object, kept: KeptLease, keeper: LeaseKeeper) -> None:
        if _private is not _PRIVATE:
            raise TypeError("LeaseKeepAlive handles come from `async with client.keep_alive(...)`")
        self._kept = kept
        self._keeper = keeper

    @property
    def lease_id(self) -> int:
        """The lease kept alive."""
        return self._kept.lease_id

    @property
    def lost(self) -> bool:
        """Whether the lease counts as lost (final)."""
        return self._kept.lost.is_set()

    @property
    def reason(self) -> str | None:
        """Why the lease counts as lost, or ``None`` while it does not."""
        return self._kept.reason

    @property
    def ttl(self) -> int:
        """The TTL the server last granted."""
        return self._kept.ttl

    @property
    def valid_until(self) -> float:
        """The trio clock time until which the lease is known to live on the server."""
        state = self._keeper.schedule.get(self._kept.lease_id)
        return state.valid_until if state is not None else -math.inf

    @property
    def keepalives_acknowledged(self) -> int:
        """How many keep-alives the server has acknowledged for this lease."""
        return self._kept.keepalives_acknowledged

    async def wait_lost(self) -> None:
        """Wait until the lease counts as lost. A checkpoint."""
        await self._kept.lost.wait()

    @contextmanager
    def cancel_on_loss(self) -> Iterator[trio.CancelScope]:
        """A cancel scope that is cancelled when the lease is lost (at once if it already is).

        Example::

            with keepalive.cancel_on_loss() as scope:
                await do_work_that_needs_the_lease()
            if scope.cancelled_caught and keepalive.lost:
                raise SessionExpiredError(keepalive.reason)
        """
        with trio.CancelScope() as scope:
            if self.lost:
                scope.cancel()
            self._kept.scopes.add(scope)
            try:
                yield scope
            finally:
                self._kept.scopes.discard(scope)

    def stop(self, reason: str) -> None:
        """Stop keeping the lease alive and count it as lost locally (the lease is not revoked)."""
        self._keeper.remove(self.lease_id)
        mark_lost(self._kept, reason)

    def __repr__(self) -> str:
        state = f"lost ({self.reason})" if self.lost else f"alive, ttl {self.ttl}"
        return f"<etcdsync.client.LeaseKeepAlive at {id(self):#x}, lease {self.lease_id:x}, {state}>"


@attrs.define(eq=False)
class LeaseKeeper:
    """Keeps leases alive over one shared stream; owned by a :class:`Client`."""

    client: Client
    schedule: KeepAliveSchedule = attrs.field(factory=KeepAliveSchedule)
    leases: dict[int, KeptLease] = attrs.field(factory=dict)
    streams_opened: int = 0
    #: Set by add() while the task waits for a first lease (there is nothing to stream for before).
    _lease_added: trio.Event | None = None
    #: The sleeps of the send loop and of the expiry watcher, while they sleep (see the module docstring).
    _send_sleep: trio.CancelScope | None = None
    _expiry_sleep: trio.CancelScope | None = None
    _running: bool = False

    def add(self, lease_id: int, *, ttl: int, granted_at: float) -> KeptLease:
        """Keep ``lease_id`` alive from now on; ``granted_at`` is the send time of the request that
        granted or last renewed it. Starts the background task if needed."""
        state = self.schedule.add(lease_id, ttl=ttl, granted_at=granted_at)
        kept = KeptLease(lease_id, ttl)
        self.leases[lease_id] = kept
        _wake_by(self._send_sleep, state.next_send_at)
        _wake_by(self._expiry_sleep, state.valid_until)
        if self._lease_added is not None:
            self._lease_added.set()
        if not self._running:
            self._running = True
            self.client._nursery.start_soon(self._run, name=f"etcdsync lease keeper {id(self):#x}")
        return kept

    def handle(self, kept: KeptLease) -> LeaseKeepAlive:
        """The public handle of a registered lease."""
        return LeaseKeepAlive(_PRIVATE, kept, self)

    def remove(self, lease_id: int) -> None:
        """Stop keeping ``lease_id`` alive (it is not revoked)."""
        self.schedule.remove(lease_id)
        self.leases.pop(lease_id, None)

    def _declare_lost(self, lease_id: int, reason: str) -> None:
        kept = self.leases.get(lease_id)
        if kept is not None:
            mark_lost(kept, reason)

    async def _run(self) -> None:
        with self.client._service():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_expiry)
                await self._keep_streaming()

    async def _watch_expiry(self) -> None:
        """Declare leases lost when their validity runs out, connection or not."""
        while True:
            for lease_id in self.schedule.expired(trio.current_time()):
                self._declare_lost(lease_id, "no keep-alive was acknowledged within the lease's TTL")
            with trio.CancelScope(deadline=self.schedule.next_expiry()) as self._expiry_sleep:
                try:
                    await trio.sleep_forever()
                finally:
                    self._expiry_sleep = None

    async def _keep_streaming(self) -> None:
        backoff = Backoff(initial=0.05, maximum=2.0, rng=random.Random())
        while True:
            if not self.leases:
                self._lease_added = trio.Event()
                try:
                    await self._lease_added.wait()
                finally:
                    self._lease_added = None
                continue
            address = self.client._picker.current
            token = self.client._token
            # The stream's send and receive loops share a nursery, so their errors arrive grouped
            # (both sides may fail at once when the connection breaks): hence except*.
            failures: list[BaseException] = []
            closing = False
            try:
                await self._one_stream(address, backoff)
            except* _STREAM_ERRORS as group:
                failures.extend(group.exceptions)
            except* trio.ClosedResourceError:
                closing = True  # the client is closing its channels
            if closing:
                return
            self.schedule.on_stream_down(trio.current_time())
            if await self._renewed_token(failures, token):
                continue  # a rejected token is not the endpoint's fault: retry at once with a new one
            logger.debug("lease keep-alive stream to %s ended: %r", address, failures)
            self.client._picker.failed(address, trio.current_time())
            await trio.sleep(backoff.next_delay())

    async def _renewed_token(self, failures: list[BaseException], token: str | None) -> bool:
        """If the server rejected our auth token, get a new one; returns whether it did."""
        for exc in failures:
            if (
                isinstance(exc, StatusError)
                and self.client._credentials is not None
                and isinstance(error_from_status(exc.code, exc.message), InvalidAuthTokenError)
            ):
                await self.client._authenticate(token)
                return True
        return False

    async def _one_stream(self, address: str, backoff: Backoff) -> None:
        channel = await self.client._channel(address)
        async with channel.stream(rpc.LEASE_KEEP_ALIVE.path, metadata=self.client._metadata()) as stream:
            self.streams_opened += 1
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_loop, stream)
                answered = False
                while True:
                    data = await stream.receive()
                    _, lease_id, ttl = cv.lease_keep_alive_ttl(data)
                    if not answered:
                        answered = True
                        backoff.reset()  # the stream works (once per stream: this loop is hot)
                    kept = self.leases.get(lease_id)
                    if kept is not None:
                        kept.keepalives_acknowledged += 1
                        if ttl > 0:
                            kept.ttl = ttl
                    if self.schedule.on_response(lease_id, ttl=ttl):
                        self._declare_lost(lease_id, "the server says the lease has expired or was revoked")
                    elif self._send_sleep is not None and (state := self.schedule.get(lease_id)) is not None:
                        _wake_by(self._send_sleep, state.next_send_at)  # (rarely) due sooner now

    async def _send_loop(self, stream: Stream) -> None:
        # Everything due within the schedule's coalescing window goes out on one wake-up; the
        # transport's writer then puts the whole batch into one socket write.
        while True:
            for lease_id in self.schedule.due(trio.current_time()):
                kept = self.leases.get(lease_id)
                await stream.send(kept.request if kept is not None else cv.lease_keep_alive_request(lease_id))
            with trio.CancelScope(deadline=self.schedule.next_send()) as self._send_sleep:
                try:
                    await trio.sleep_forever()
                finally:
                    self._send_sleep = None


def _wake_by(sleep: trio.CancelScope | None, when: float) -> None:
    """Make a task sleeping in ``sleep`` wake no later than ``when``."""
    if sleep is not None and when < sleep.deadline:
        sleep.deadline = when
