"""DoubleBarrier: ``count`` participants enter together, and leave together.

:meth:`~DoubleBarrier.enter` returns once ``count`` participants have entered;
:meth:`~DoubleBarrier.leave` returns once every participant of the round has left. The same name can
be used for any number of rounds in a row.

**Key layout.** Only participant keys, no shared "ready" key to leak: ``NAME/waiters/<hex lease>``
(``-1``, ``-2``, ... for a session's further concurrent participants), attached to the session's
lease, so a crashed participant's key goes with its lease. Names are deterministic, so a create whose
answer was lost, or a resumed session, finds its key again instead of counting twice.

**Enter.** Create our key and read all keys, in one transaction. The first ``count`` unmarked keys by
create revision form the next round. The ``count``-th participant *marks* the round: one transaction
that, if none of the ``count`` keys changed since it read them, sets each one's value to the round's
revision ``R`` (its own key's create revision), keeping their leases. Everyone else watches only its
own key: the mark is the one event it waits for (a DELETE there means its lease was lost). Someone
who arrives while marked keys exist (a round under way), or behind ``count`` unmarked keys, gets
:class:`~etcdsync.TooManyParticipantsError` and leaves no key.

**Leave.** The round's members are the keys created at or before ``R``. The oldest member is the
*closer*: it keeps its key and waits, one departure at a time, until it is the last, then deletes it.
Every other member deletes its key at once and waits for the closer's key to go. So each member
returns only once no member key is left — everyone has called :meth:`~DoubleBarrier.leave` or died —
and keys of the next round (created after ``R``) are never waited for.

**Crashes.** A participant that dies before the round fills just drops out (its key expires): the
round waits for someone else to fill it. One that dies after the round formed counts as having left
once its lease expires, so the others' :meth:`~DoubleBarrier.leave` completes then (at most its TTL
later); no one waits forever.

**Cost (herd).** Per round: one transaction per participant to enter, plus the mark (``2 * count``
compares and puts: ``count`` is bounded by etcd's ``--max-txn-ops``, 128 by default); each waiting
participant receives exactly one watch event for entering. Leaving costs each non-closer two
transactions and one wake-up, and the closer at most one wake-up per other member. O(count) events
per round in all, never O(count²).

What it does not guarantee: membership is by lease. A participant paused past its TTL is counted as
having left, and may still run afterwards.
"""

from __future__ import annotations

import enum
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Self, final

import attrs
import trio

from ._keys import (
    REREAD,
    KeyWatches,
    WaitStatistics,
    claim_index,
    is_delete,
    name_prefix,
    participant_key,
    release_index,
    remove_own_key,
)
from ._session import Session
from .client import (
    Compare,
    Event,
    EventType,
    KeyValue,
    Op,
    RangeResponse,
    ResponseHeader,
    SessionExpiredError,
    SortOrder,
    SortTarget,
    TooManyParticipantsError,
    TxnResponse,
)

__all__ = ["DoubleBarrier"]


def _marked_or_deleted(event: Event) -> bool:
    return event.type is EventType.DELETE or bool(event.kv.value)


class _Phase(enum.Enum):
    IDLE = "idle"
    ENTERING = "entering"
    ENTERED = "entered"
    LEAVING = "leaving"


@final
class DoubleBarrier:
    """A double barrier named ``name`` for ``count`` participants, joined through ``session``.

    Example::

        dbar = etcdsync.DoubleBarrier(session, "/barriers/wave-1", count=5)
        for step in range(20):
            async with dbar:            # waits until 5 have entered; the body is cancelled on lease loss
                await run_step(step)
            # here all 5 have left step `step`

    One object is one participant at a time (reusable round after round); objects on one session are
    separate participants.

    Args:
        session: the session whose lease our participant key is attached to.
        name: the barrier's name; participant keys live under ``name + "/waiters/"``.
        count: how many participants make a round (>= 1; at most etcd's ``--max-txn-ops``, 128 by default).
        cleanup_timeout: bound on the shielded removal of our key after a failed or cancelled
            enter or leave; defaults to the session's TTL.
    """

    def __init__(
        self, session: Session, name: bytes | str, count: int, *, cleanup_timeout: float | None = None
    ) -> None:
        if not isinstance(session, Session):
            raise TypeError(f"DoubleBarrier needs a Session, not {type(session).__name__}")
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"count must be an int, not {type(count).__name__}")
        if count < 1:
            raise ValueError("count must be >= 1")
        if cleanup_timeout is not None and not cleanup_timeout > 0:
            raise ValueError("cleanup_timeout must be > 0")
        self._session = session
        self._prefix = name_prefix(name) + b"waiters/"
        self._count = count
        self._cleanup_timeout = cleanup_timeout
        self._phase = _Phase.IDLE
        self._index = -1
        self._key = b""
        self._my_rev = 0  # our key's create revision, once known
        self._round = 0  # the round's revision R while entered or leaving
        self._deleted = False  # our key was deleted by leave()
        #: Every participant key, oldest first.
        self._read = Op.get(
            self._prefix, prefix=True, sort_target=SortTarget.CREATE, sort_order=SortOrder.ASCEND
        )
        self._scope_cm: AbstractContextManager[trio.CancelScope] | None = None
        self._stats = WaitStatistics()

    @property
    def prefix(self) -> bytes:
        """``name + "/waiters/"``, under which participant keys live."""
        return self._prefix

    @property
    def count(self) -> int:
        """How many participants make a round."""
        return self._count

    @property
    def key(self) -> bytes:
        """Our key ``name/waiters/<hex lease>[-n]`` (of the last round; ``b""`` before the first)."""
        return self._key

    @property
    def round(self) -> int:
        """The current round's revision (the create revision of its last entrant) once entered, else 0.

        It is the same for every member of a round and grows from round to round.
        """
        return self._round

    @property
    def entered(self) -> bool:
        """Whether :meth:`enter` completed and :meth:`leave` has not begun."""
        return self._phase is _Phase.ENTERED

    def statistics(self) -> WaitStatistics:
        """What waiting has cost so far (queries, watches, wake-ups, watch events)."""
        return attrs.evolve(self._stats)

    def __repr__(self) -> str:
        return (
            f"<etcdsync.DoubleBarrier at {id(self):#x}, {self._prefix!r}, count {self._count}, "
            f"{self._phase.value}>"
        )

    @staticmethod
    def _view(resp: TxnResponse) -> tuple[ResponseHeader, tuple[KeyValue, ...]]:
        kvs = resp.responses[-1]
        assert isinstance(kvs, RangeResponse)
        return resp.header, kvs.kvs

    def _is_mine(self, kv: KeyValue) -> bool:
        return kv.key == self._key and kv.create_revision == self._my_rev

    def _lost(self) -> SessionExpiredError:
        gone = SessionExpiredError(f"our barrier key {self._key!r} is gone (lease expired or key deleted)")
        return self._session.expired_error() if self._session.expired else gone

    def _bound(self) -> float:
        return self._session.ttl if self._cleanup_timeout is None else self._cleanup_timeout

    def _reset(self) -> None:
        self._phase = _Phase.IDLE
        self._my_rev = self._round = 0
        self._deleted = False
        if self._index >= 0:
            release_index(self._session, self._prefix, self._index)
            self._index = -1

    async def _abandon(self) -> None:
        """Delete our key if it is still there (shielded, bounded) and reset."""
        try:
            if not self._deleted:
                await remove_own_key(self._session, self._key, self._my_rev, self._bound(), what="barrier")
        finally:
            self._reset()

    async def enter(self) -> None:
        """Join the next round and wait until ``count`` participants have joined it. A checkpoint.

        Cancelling it removes our key (shielded, bounded by ``cleanup_timeout``).

        Raises:
            TooManyParticipantsError: a round is under way, or ``count`` others are already waiting
                for this one; no key is left behind.
            SessionExpiredError: the session expired (or our key vanished) while waiting.
            RuntimeError: this object has entered already (or is entering or leaving).
        """
        if self._phase is not _Phase.IDLE or self._session.expired:
            await trio.lowlevel.checkpoint()
            if self._phase is not _Phase.IDLE:
                raise RuntimeError(f"this DoubleBarrier ({self._prefix!r}) is already {self._phase.value}")
            raise self._session.expired_error()
        self._phase = _Phase.ENTERING
        self._index = claim_index(self._session, self._prefix)
        self._key = participant_key(self._prefix, self._session.lease_id, self._index)
        try:
            resp = await self._session.client.txn(
                compare=[Compare.create_revision(self._key) == 0],
                success=[Op.put(self._key, b"", lease=self._session.lease_id), self._read],
                failure=[self._read],
            )
            header, view = self._view(resp)
            if resp.succeeded:
                self._my_rev = header.revision
            else:  # our key exists already: keep its place (and its round, if it was marked)
                self._my_rev = next((kv.create_revision for kv in view if kv.key == self._key), 0)
            self._round = await self._until_marked(header, view)
        except BaseException:
            await self._abandon()
            raise
        self._phase = _Phase.ENTERED

    async def _until_marked(self, header: ResponseHeader, view: tuple[KeyValue, ...]) -> int:
        """Loop until our key is marked with a round; return the round's revision."""
        client = self._session.client
        async with KeyWatches(client, self._stats) as watches:
            while True:
                mine = next((kv for kv in view if self._is_mine(kv)), None)
                if mine is None:
                    raise self._lost()
                if mine.value:
                    return int(mine.value)
                if any(kv.value for kv in view):
                    raise TooManyParticipantsError(
                        f"a round of {self._count} participants of {self._prefix!r} is under way; "
                        "enter once it is over"
                    )
                position = view.index(mine)
                if position >= self._count:
                    raise TooManyParticipantsError(
                        f"{self._count} participants of {self._prefix!r} are already entering this round"
                    )
                if position == self._count - 1:
                    # We complete the round: mark every member, if none changed since we read them.
                    members = view[: self._count]
                    mark = b"%d" % self._my_rev
                    resp = await client.txn(
                        compare=[Compare.mod_revision(kv.key) == kv.mod_revision for kv in members],
                        success=[Op.put(kv.key, mark, ignore_lease=True) for kv in members],
                        failure=[self._read],
                    )
                    if resp.succeeded:
                        return self._my_rev
                    header, view = self._view(resp)
                    continue
                # Wait for the mark on our key (a DELETE there: our lease is gone).
                await watches.watch_only([self._key])
                outcome = await watches.wait(header.revision, _marked_or_deleted, session=self._session)
                if isinstance(outcome, Event):
                    if outcome.type is EventType.DELETE:
                        raise self._lost()
                    self._stats.wakeups += 1
                    return int(outcome.kv.value)
                if outcome is not REREAD:
                    assert isinstance(outcome, BaseException)
                    raise outcome
                self._stats.rereads += 1
                self._stats.queries += 1
                header, view = self._view(await client.txn(success=[self._read]))

    # ---------------------------------------------------------------------------------------------------
    # Leave

    async def leave(self) -> None:
        """Leave the round and wait until every member has left it. A checkpoint.

        Cancelling it removes our key if it is still there (shielded, bounded).

        Raises:
            SessionExpiredError: the session expired (or our key vanished) before everyone left.
            RuntimeError: this object has not entered (or is leaving already).
        """
        if self._phase is not _Phase.ENTERED:
            await trio.lowlevel.checkpoint()
            raise RuntimeError(f"this DoubleBarrier ({self._prefix!r}) is {self._phase.value}, not entered")
        self._phase = _Phase.LEAVING
        try:
            await self._leave()
        except BaseException:
            await self._abandon()
            raise
        self._reset()

    async def _leave(self) -> None:
        client = self._session.client
        mine = Compare.create_revision(self._key) == self._my_rev
        members = Op.get(  # the round's members: keys created at or before the round's revision
            self._prefix,
            prefix=True,
            sort_target=SortTarget.CREATE,
            sort_order=SortOrder.ASCEND,
            keys_only=True,
            max_create_revision=self._round,
        )
        header, remaining = self._view(await client.txn(success=[members]))
        async with KeyWatches(client, self._stats) as watches:
            while True:
                if not self._deleted:
                    if not any(
                        kv.key == self._key and kv.create_revision == self._my_rev for kv in remaining
                    ):
                        raise self._lost()
                    if len(remaining) == 1:  # the last one (the closer, or everyone else died)
                        self._deleted = (
                            await client.txn(compare=[mine], success=[Op.delete(self._key)])
                        ).succeeded
                        if not self._deleted:
                            raise self._lost()
                        return
                    if remaining[0].key != self._key:
                        resp = await client.txn(compare=[mine], success=[Op.delete(self._key), members])
                        if not resp.succeeded:
                            raise self._lost()
                        self._deleted = True
                        header, remaining = self._view(resp)
                        continue
                    target = remaining[-1]  # we are the closer: wait for the others, newest first
                elif not remaining:
                    return
                else:
                    target = remaining[0]  # wait for the closer (or the oldest member still in the round)
                await watches.watch_only([target.key], own=None if self._deleted else self._key)
                outcome = await watches.wait(header.revision, is_delete, session=self._session)
                if isinstance(outcome, Event):
                    if outcome.kv.key == self._key:
                        raise self._lost()
                    self._stats.wakeups += 1
                elif outcome is REREAD:
                    self._stats.rereads += 1
                else:
                    assert isinstance(outcome, BaseException)
                    raise outcome
                self._stats.queries += 1
                header, remaining = self._view(await client.txn(success=[members]))

    # ---------------------------------------------------------------------------------------------------
    # async with

    async def __aenter__(self) -> Self:
        """:meth:`enter` (a checkpoint); the body then runs in a scope cancelled when the session expires."""
        await self.enter()
        cm = self._session.cancel_on_expiry()
        cm.__enter__()
        self._scope_cm = cm
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        """:meth:`leave` after a body that completed (a checkpoint). After a body that raised (or was
        cancelled) only remove our key, without waiting for the others, and let the exception through;
        after a lost session raise :class:`~etcdsync.SessionExpiredError`."""
        cm = self._scope_cm
        self._scope_cm = None
        assert cm is not None
        swallowed = bool(cm.__exit__(exc_type, exc, tb))
        if exc is None and not self._session.expired:
            await self.leave()
            return False
        await self._abandon()
        if self._session.expired and (swallowed or exc is None):
            raise self._session.expired_error()
        return swallowed
