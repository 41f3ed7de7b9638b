"""Election: leader election with fenced proclamations, loss detection, and an observer that never ends.

Key layout is etcd's Go ``concurrency.Election`` (``etcdctl elect NAME`` sees ours and we see its):
candidates live under ``NAME/``, each at ``NAME/<hex lease id>`` with its proposal as the value; the
candidate with the lowest create revision leads. A leader's create revision is its *leader revision*,
which grows with every new leader.

Where Go's version has known bugs (``shared/notes/etcd-reference.md`` §1.3), this one does not:

- :meth:`Election.campaign` confirms, atomically after the wait, that our key still exists with our
  create revision, and watches our own key and the session while waiting — no phantom leadership when
  the lease expires in the queue (etcd #19597); a failed or cancelled campaign removes our key
  (etcd #21128).
- :meth:`Election.resign` clears local state only when the fenced delete succeeded (etcd #22123), so
  a retry after a connection error still deletes the key.
- :meth:`Election.observe` never ends on compaction or reconnect: it re-reads the leader.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import final

import attrs
import trio

from ._keys import (
    WaitStatistics,
    name_prefix,
    older_seen,
    participant_key,
    remove_own_key,
    wait_for_predecessors,
)
from ._session import Session
from .client import (
    Client,
    CompactedError,
    Compare,
    EtcdError,
    EventType,
    KeyValue,
    NoLeaderError,
    NotLeaderError,
    Op,
    RangeResponse,
    ResponseHeader,
    SessionExpiredError,
    SortOrder,
    SortTarget,
)
from .client._nursery import open_owned_nursery

__all__ = ["Election", "LeaderStream"]

logger = logging.getLogger(__name__)


def _value(value: bytes | str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    raise TypeError(f"a proposal must be bytes or str, not {type(value).__name__}")


@final
class Election:
    """An election named ``name``, campaigned in through ``session``.

    Example::

        election = etcdsync.Election(session, "/elections/scheduler")
        async with election.leadership(b"worker-7"):   # waits to lead; body cancelled if lost
            await client.put(b"/schedule", plan, guard=election.is_leader())

    Args:
        session: the session whose lease our candidate key is attached to.
        name: the election's name; candidates live under ``name + "/"``.
        cleanup_timeout: bound on the shielded removal of our key after a failed campaign or on
            resign; defaults to the session's TTL.
    """

    def __init__(self, session: Session, name: bytes | str, *, cleanup_timeout: float | None = None) -> None:
        if not isinstance(session, Session):
            raise TypeError(f"Election needs a Session, not {type(session).__name__}")
        if cleanup_timeout is not None and not cleanup_timeout > 0:
            raise ValueError("cleanup_timeout must be > 0")
        self._session = session
        self._prefix = name_prefix(name)
        self._key = participant_key(self._prefix, session.lease_id)
        self._cleanup_timeout = cleanup_timeout
        self._revision = 0  # our key's create revision while we lead
        self._campaigning = False
        self._stats = WaitStatistics()
        # Parts of the campaign transaction, built once: if our key is absent, create it and read
        # the newest keys (ours and, if any, the nearest older one: we wait for that one).
        self._absent = (Compare.create_revision(self._key) == 0,)
        self._newest = Op.get(
            self._prefix,
            prefix=True,
            sort_target=SortTarget.CREATE,
            sort_order=SortOrder.DESCEND,
            limit=2,
            keys_only=True,
        )
        self._find = (Op.get(self._key),)

    @property
    def key(self) -> bytes:
        """Our candidate key, ``name/<hex lease id>``."""
        return self._key

    @property
    def prefix(self) -> bytes:
        """``name + "/"``, under which every candidate's key lives."""
        return self._prefix

    @property
    def revision(self) -> int:
        """Our leader revision (our key's create revision) while we lead, else 0."""
        return self._revision

    @property
    def leading(self) -> bool:
        """Whether this object won its campaign and has not resigned (as far as it knows)."""
        return self._revision != 0

    def is_leader(self) -> Compare:
        """A compare that holds exactly while our leadership lasts; use it as ``guard=`` on writes.

        Raises:
            NotLeaderError: we are not the leader.
        """
        if not self._revision:
            raise NotLeaderError(f"{self._key!r} is not the leader")
        return Compare.create_revision(self._key) == self._revision

    def statistics(self) -> WaitStatistics:
        """What waiting to lead has cost so far."""
        return attrs.evolve(self._stats)

    def __repr__(self) -> str:
        state = f"leader (revision {self._revision})" if self._revision else "not leader"
        return f"<etcdsync.Election at {id(self):#x}, {self._key!r}, {state}>"

    def _bound(self) -> float:
        bound = self._session.ttl if self._cleanup_timeout is None else self._cleanup_timeout
        return bound if bound > 0 else math.inf

    async def campaign(self, value: bytes | str) -> None:
        """Become a candidate with proposal ``value`` and wait until we lead. A checkpoint.

        If our session already has a candidate key here (e.g. a resumed session), it keeps its place
        in the queue and its value is replaced by a fenced proclamation.

        Raises:
            SessionExpiredError: the session expired (or our key vanished) before we led.
            RuntimeError: this object is already campaigning or leading.
        """
        proposal = _value(value)
        if self._campaigning or self._revision:
            raise RuntimeError(f"this Election ({self._key!r}) is already campaigning or leading")
        if self._session.expired:
            raise self._session.expired_error()
        self._campaigning = True
        my_rev = 0
        try:
            my_rev, seen = await self._join_queue(proposal)
            if seen is None or seen[1]:
                await wait_for_predecessors(
                    self._session, self._prefix, self._key, my_rev, self._stats, seen=seen
                )
        except BaseException:
            await self._remove_key(my_rev)
            raise
        finally:
            self._campaigning = False
        self._revision = my_rev

    async def _join_queue(
        self, proposal: bytes
    ) -> tuple[int, tuple[ResponseHeader, tuple[KeyValue, ...]] | None]:
        """Create our candidate key (or find the one our session has); return its create revision and,
        if this created it, what the transaction saw: its header and the nearest older candidate, if
        any (every other key is older than one created just now). ``None``: the wait must query.
        """
        client = self._session.client
        resp = await client.txn(
            self._absent,
            (Op.put(self._key, proposal, lease=self._session.lease_id), self._newest),
            self._find,
        )
        if resp.succeeded:
            newest = resp.responses[1]
            assert isinstance(newest, RangeResponse)
            return resp.header.revision, older_seen(resp.header, newest, self._key)
        (existing,) = resp.responses
        assert isinstance(existing, RangeResponse)
        my_rev = existing.kvs[0].create_revision
        if existing.kvs[0].value != proposal:
            fenced = await client.txn(
                compare=[Compare.create_revision(self._key) == my_rev],
                success=[Op.put(self._key, proposal, lease=self._session.lease_id)],
            )
            if not fenced.succeeded:
                raise SessionExpiredError(f"our candidate key {self._key!r} vanished while campaigning")
        return my_rev, None

    async def _remove_key(self, my_rev: int) -> bool:
        """Delete our candidate key, fenced (by revision, or by lease when the revision is unknown)."""
        return await remove_own_key(self._session, self._key, my_rev, self._bound(), what="candidate")

    async def proclaim(self, value: bytes | str) -> None:
        """Announce a new value as the leader, without losing leadership. A checkpoint.

        Fenced on our leader revision: it writes only while we still lead.

        Raises:
            NotLeaderError: we are not the leader (never were, resigned, or lost it).
        """
        proposal = _value(value)
        if not self._revision:
            await trio.lowlevel.checkpoint()
            raise NotLeaderError(f"{self._key!r} is not the leader; campaign first")
        resp = await self._session.client.txn(
            compare=[self.is_leader()], success=[Op.put(self._key, proposal, lease=self._session.lease_id)]
        )
        if not resp.succeeded:
            self._revision = 0
            raise NotLeaderError(f"{self._key!r} lost the leadership (its key is gone or was replaced)")

    async def resign(self) -> None:
        """Give up leadership: delete our key if it is still the one we won with. A checkpoint.

        Does nothing if we do not lead. Local state is cleared only when the delete is done, so after
        a connection error a second :meth:`resign` still removes the key.
        """
        if not self._revision:
            await trio.lowlevel.checkpoint()
            return
        await self._session.client.txn(compare=[self.is_leader()], success=[Op.delete(self._key)])
        self._revision = 0

    async def leader(self) -> KeyValue:
        """The current leader's key and proposal (its ``create_revision`` is the leader revision).

        A checkpoint.

        Raises:
            NoLeaderError: nobody leads right now.
        """
        resp = await self._session.client.range(
            self._prefix, prefix=True, sort_target=SortTarget.CREATE, sort_order=SortOrder.ASCEND, limit=1
        )
        if not resp.kvs:
            raise NoLeaderError(f"nobody leads the election {self._prefix[:-1]!r}")
        return resp.kvs[0]

    @asynccontextmanager
    async def leadership(self, value: bytes | str) -> AsyncIterator[Election]:
        """Campaign, run the body as the leader, resign on exit.

        The body runs in a scope that is cancelled when the session expires; the exit then raises
        :class:`~etcdsync.SessionExpiredError`. If our key vanished otherwise while we led, the exit
        raises :class:`~etcdsync.NotLeaderError`. Entering and exiting are checkpoints.
        """
        await self.campaign(value)
        lost_key = False
        try:
            with self._session.cancel_on_expiry() as scope:
                yield self
        finally:
            revision = self._revision
            if revision:
                with trio.move_on_after(self._bound(), shield=True):
                    try:
                        resp = await self._session.client.txn(
                            compare=[Compare.create_revision(self._key) == revision],
                            success=[Op.delete(self._key)],
                        )
                        lost_key = not resp.succeeded
                    except (EtcdError, trio.ClosedResourceError) as exc:
                        logger.warning(
                            "resigning %r failed (%r); the key goes with the lease", self._key, exc
                        )
                self._revision = 0
        if scope.cancelled_caught and self._session.expired:
            raise self._session.expired_error()
        if lost_key:
            raise NotLeaderError(f"{self._key!r} lost the leadership while leading (its key vanished)")

    @asynccontextmanager
    async def observe(self) -> AsyncIterator[LeaderStream]:
        """Watch who leads: ``async with election.observe() as leaders: async for kv in leaders:``.

        Yields the leader's :class:`~etcdsync.client.KeyValue` each time a new leader takes over or
        the leader proclaims a new value, in order, and ``None`` when the leadership falls vacant.
        Leader revisions (``kv.create_revision``) only grow. It never ends on compaction or
        reconnection (it re-reads the leader); it may skip intermediate values if leaders change
        faster than it reads, but always reaches the latest. Other errors (no endpoint reachable)
        end the iteration by raising. Entering is a checkpoint.
        """
        send, receive = trio.open_memory_channel[KeyValue | None](16)
        stream = LeaderStream(receive)

        async def produce() -> None:
            try:
                async with send:
                    await _observe(self, send)
            except (EtcdError, trio.ClosedResourceError) as exc:
                stream.error = exc

        async with open_owned_nursery() as nursery:
            nursery.start_soon(produce)
            yield stream


@final
class LeaderStream:
    """What :meth:`Election.observe` yields: an async iterator of ``KeyValue | None``."""

    def __init__(self, receive: trio.MemoryReceiveChannel[KeyValue | None]) -> None:
        self._receive = receive
        self.error: EtcdError | trio.ClosedResourceError | None = None

    def __aiter__(self) -> LeaderStream:
        return self

    async def __anext__(self) -> KeyValue | None:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if self.error is not None:
                raise self.error from None
            raise StopAsyncIteration from None


async def _observe(election: Election, send: trio.MemorySendChannel[KeyValue | None]) -> None:
    client = election._session.client
    last: tuple[bytes, int] | bool | None = False  # False: nothing sent yet; None: vacancy sent
    while True:
        resp = await client.range(
            election.prefix, prefix=True, sort_target=SortTarget.CREATE, sort_order=SortOrder.ASCEND, limit=1
        )
        read_at = resp.header.revision
        if not resp.kvs:
            if last is not None:
                await send.send(None)
                last = None
            await _wait_for_any_put(election, read_at)
            continue
        kv = resp.kvs[0]
        if last != (kv.key, kv.mod_revision):
            await send.send(kv)
            last = (kv.key, kv.mod_revision)
        last = await _follow_leader(election, send, kv, read_at, last)


# The watches below start at revision 0, which etcd serves at once, not at the read's revision + 1,
# which etcd serves up to 100 ms late once a write has overtaken it (see ``_keys.KeyWatches``). A
# start-0 watch covers only what comes after it is established: if that is after the read, what
# happened in between is read again.


async def _wait_for_any_put(election: Election, read_at: int) -> None:
    """Return at the first PUT under the election's prefix after ``read_at``, or when one may have
    been missed (the watch began after the read, or compaction hid history): the caller reads again."""
    try:
        async with election._session.client.watch(election.prefix, prefix=True) as events:
            if await events.established() > read_at:
                return
            async for resp in events:
                if any(e.type is EventType.PUT and e.kv.mod_revision > read_at for e in resp.events):
                    return
    except CompactedError:
        return


async def _follow_leader(
    election: Election,
    send: trio.MemorySendChannel[KeyValue | None],
    kv: KeyValue,
    read_at: int,
    last: tuple[bytes, int],
) -> tuple[bytes, int]:
    """Send each proclamation of the leader ``kv`` (read at ``read_at``), in order; return once its
    key is deleted (or on compaction)."""
    client = election._session.client
    try:
        async with client.watch(kv.key) as events:
            established = await events.established()
            if established > read_at:  # the watch misses (read_at, established]: read it back
                values = await _values_between(client, kv, read_at, established)
                if values is None:
                    return last
                for value in values:
                    await send.send(value)
                    last = (value.key, value.mod_revision)
                read_at = established
            async for resp in events:
                for event in resp.events:
                    if event.kv.mod_revision <= read_at:
                        continue  # the read reflects it
                    if event.type is EventType.DELETE or event.kv.create_revision != kv.create_revision:
                        return last  # gone (or re-created as a new candidacy): re-read who leads
                    await send.send(event.kv)
                    last = (event.kv.key, event.kv.mod_revision)
    except CompactedError:
        return last
    return last


async def _values_between(client: Client, kv: KeyValue, after: int, upto: int) -> list[KeyValue] | None:
    """The values the leader key ``kv`` took in revisions ``(after, upto]``, oldest first: read at
    ``upto``, then back through each value's predecessor (``mod_revision - 1``). None if the key is
    gone by ``upto`` or compaction hid its history: the caller reads who leads again (skipping the
    values in between, as after any change of leader)."""
    values: list[KeyValue] = []
    at = upto
    while True:
        try:
            resp = await client.range(kv.key, revision=at)
        except CompactedError:
            return None
        value = resp.kvs[0] if resp.kvs else None
        if value is None or value.create_revision != kv.create_revision or value.mod_revision <= after:
            if at == upto and (value is None or value.create_revision != kv.create_revision):
                return None
            break
        values.append(value)
        at = value.mod_revision - 1
    values.reverse()
    return values
