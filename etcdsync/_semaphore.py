"""Semaphore: at most ``limit`` holders, FIFO by create revision, herd-bounded, fenced, loss-aware.

Key layout (etcd's Go ``concurrency`` naming; design in ``shared/notes/etcd-reference.md`` §2.7):

- ``NAME`` holds the limit as decimal ASCII, with no lease. The first acquirer creates it
  (``If[Version(NAME) = 0]``); every acquisition compares it in the transaction that creates its
  slot key, so a participant that disagrees gets :class:`SemaphoreLimitMismatchError` and creates
  nothing. The key stays after use: to change the limit, delete it while nobody uses the semaphore.
- ``NAME/<hex lease>``: one slot key per acquisition, attached to the session's lease. Further
  Semaphore objects of one session acquiring at the same time use ``NAME/<hex lease>-1``, ``-2``, ...
  (each holds its own permit); names stay deterministic, so a lost create answer finds its key again.

**Invariant.** A slot key holds a permit iff fewer than ``limit`` slot keys have a smaller create
revision. A new key always gets a larger revision, so a key's position only ever decreases: once it
holds a permit it keeps it until deleted. Hence: at most ``limit`` holders at every revision; permits
are granted in create-revision (FIFO) order; and ``Compare.create_revision(key) == token`` is a valid
fence, with the token (:attr:`Semaphore.fencing_token`) growing with every new acquisition.

**Acquiring** a free permit is one transaction::

    If[Value(NAME) = limit, CreateRevision(key) = 0]
    Then[Put(key, lease), Range(NAME/, the `limit` + 1 newest)]   # ours and the `limit` nearest older
    Else[Range(NAME), Range(key), Range(NAME/, the `limit` oldest)]

It holds iff fewer than ``limit`` keys are older. Otherwise the acquirer waits on its *window* W,
the ``limit`` newest keys older than its own, which that transaction has just read: it watches
each key of W (and its own key, and the session) as of that read, and re-reads after a deletion.
Deleting an older key outside W leaves ``limit`` older keys and W unchanged, and newer keys never
count, so watching W alone misses no wake-up. A release wakes at most ``limit``
waiters (those whose window holds the released key), and exactly one acquires. With ``limit=1`` this
is :class:`~etcdsync.Mutex`'s wait, and it excludes ``etcdctl lock NAME``.

**What it does not guarantee.** Permits are leases: a holder paused or partitioned past its TTL may
still run while its permit went to someone else. Only writes fenced with :meth:`Semaphore.is_owner`
(or checked against the fencing token downstream) are safe. Names must not nest (a semaphore ``a``
and one named ``a/b`` share keys), and one session must not use a Mutex and a Semaphore on one name
(they would share the key ``NAME/<hex lease>``).
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import final

import attrs
import trio

from ._hold import SessionHold
from ._keys import (
    WaitStatistics,
    claim_index,
    name_prefix,
    older_seen,
    participant_key,
    release_index,
    remove_own_key,
    wait_for_predecessors,
)
from ._session import Session
from .client import (
    Compare,
    KeyValue,
    LockReleasedError,
    Op,
    RangeResponse,
    RecipeError,
    ResponseHeader,
    SortOrder,
    SortTarget,
)

__all__ = ["Semaphore", "SemaphoreLimitMismatchError"]

logger = logging.getLogger(__name__)


class SemaphoreLimitMismatchError(RecipeError):
    """The semaphore's stored limit differs from the one this participant was built with.

    Attributes:
        limit: the limit this participant asked for.
        stored: the value stored at the semaphore's name (normally a decimal limit).
    """

    def __init__(self, message: str, *, limit: int, stored: bytes) -> None:
        super().__init__(message)
        self.limit = limit
        self.stored = stored


@final
class Semaphore(SessionHold):
    """A distributed counting semaphore named ``name`` with ``limit`` permits, taken through ``session``.

    Example::

        sem = etcdsync.Semaphore(session, "/sem/rollout", limit=2)
        async with sem:                 # waits for a permit; the body is cancelled if the session is lost
            await client.put(b"/rollout/host-7", b"upgrading", guard=sem.is_owner())
        print([kv.key for kv in await sem.holders()])

    One object holds at most one permit at a time and is not re-entrant (a second acquire while it
    holds or acquires raises ``RuntimeError``); use one object per concurrent task. Objects on the
    same session hold separate permits.

    Args:
        session: the session whose lease the slot keys are attached to.
        name: the semaphore's name (``bytes`` or ``str``); the limit is stored at ``name`` and the
            slots live under ``name + "/"``.
        limit: the number of permits (>= 1); every participant must use the same one.
        cleanup_timeout: bound on the shielded cleanup (deleting our slot key) after a cancelled
            acquire or on release; defaults to the session's TTL, after which the key goes anyway.
    """

    def __init__(
        self, session: Session, name: bytes | str, limit: int, *, cleanup_timeout: float | None = None
    ) -> None:
        if not isinstance(session, Session):
            raise TypeError(f"Semaphore needs a Session, not {type(session).__name__}")
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if cleanup_timeout is not None and not cleanup_timeout > 0:
            raise ValueError("cleanup_timeout must be > 0")
        self._session = session
        self._prefix = name_prefix(name)
        self._limit_key = self._prefix[:-1]
        self._limit = limit
        self._cleanup_timeout = cleanup_timeout
        self._index = -1  # our claimed participant index while acquiring or holding, else -1
        self._key = b""
        self._revision = 0  # our slot key's create revision while we hold a permit, else 0
        self._scope_cm: AbstractContextManager[trio.CancelScope] | None = None
        self._stats = WaitStatistics()

    # ---------------------------------------------------------------------------------------------------
    # Queries (no I/O)

    @property
    def prefix(self) -> bytes:
        """``name + "/"``, under which the slot keys live."""
        return self._prefix

    @property
    def limit_key(self) -> bytes:
        """The key that stores the limit (``name`` itself)."""
        return self._limit_key

    @property
    def limit(self) -> int:
        """The number of permits."""
        return self._limit

    @property
    def key(self) -> bytes:
        """Our slot key ``name/<hex lease>[-n]`` (of the last acquisition; ``b""`` before the first)."""
        return self._key

    @property
    def held(self) -> bool:
        """Whether this object holds a permit (as far as it knows; see :meth:`is_owner` for writes)."""
        return self._revision != 0

    @property
    def fencing_token(self) -> int:
        """Our slot key's create revision, which grows with every new acquisition.

        Raises:
            LockReleasedError: this object holds no permit.
        """
        if not self._revision:
            raise LockReleasedError(f"this Semaphore ({self._prefix!r}) holds no permit")
        return self._revision

    @property
    def revision(self) -> int:
        """Same as :attr:`fencing_token`, but 0 instead of an error when no permit is held."""
        return self._revision

    def is_owner(self) -> Compare:
        """A compare that holds exactly while this object's permit lasts; use it as ``guard=``.

        Raises:
            LockReleasedError: this object holds no permit.
        """
        return Compare.create_revision(self._key) == self.fencing_token

    def statistics(self) -> WaitStatistics:
        """What waiting for permits has cost so far (queries, watches, wake-ups, watch events)."""
        return attrs.evolve(self._stats)

    def __repr__(self) -> str:
        state = "acquiring" if self._index >= 0 else "free"
        state = f"held (token {self._revision})" if self._revision else state
        return f"<etcdsync.Semaphore at {id(self):#x}, {self._prefix!r}, limit {self._limit}, {state}>"

    async def holders(self) -> list[KeyValue]:
        """The slot keys that hold a permit now, oldest first (at most ``limit``). A checkpoint."""
        resp = await self._session.client.range(
            self._prefix,
            prefix=True,
            sort_target=SortTarget.CREATE,
            sort_order=SortOrder.ASCEND,
            limit=self._limit,
        )
        return list(resp.kvs)

    # ---------------------------------------------------------------------------------------------------
    # Acquire and release

    def _begin(self) -> None:
        if self._index >= 0:
            raise RuntimeError(
                f"this Semaphore ({self._prefix!r}) already holds or is acquiring a permit; "
                "it is not re-entrant (use one object per concurrent holder)"
            )
        if self._session.expired:
            raise self._session.expired_error()
        self._index = claim_index(self._session, self._prefix)
        self._key = participant_key(self._prefix, self._session.lease_id, self._index)

    def _reset(self) -> None:
        self._revision = 0
        if self._index >= 0:
            release_index(self._session, self._prefix, self._index)
            self._index = -1

    def _mismatch(self, stored: bytes) -> SemaphoreLimitMismatchError:
        return SemaphoreLimitMismatchError(
            f"semaphore {self._limit_key!r} has limit {stored.decode('utf-8', 'replace')!r}, "
            f"not {self._limit}: every participant must use the same limit",
            limit=self._limit,
            stored=stored,
        )

    async def _enqueue(self) -> tuple[int, bool, tuple[ResponseHeader, tuple[KeyValue, ...]] | None]:
        """Create our slot key (if the stored limit is ours) and learn whether it holds a permit.

        Returns our key's create revision; whether it holds; and, when it does not and the
        transaction created it, what the transaction saw, for the wait to start from: its header and
        the ``limit`` nearest older keys, nearest first. One transaction, unless the limit is not
        stored yet.
        """
        client = self._session.client
        limit = b"%d" % self._limit
        while True:
            resp = await client.txn(
                compare=[Compare.value(self._limit_key) == limit, Compare.create_revision(self._key) == 0],
                success=[
                    Op.put(self._key, b"", lease=self._session.lease_id),
                    # Ours (the newest: nothing is newer than this transaction) and the ``limit``
                    # nearest older keys.
                    Op.get(
                        self._prefix,
                        prefix=True,
                        sort_target=SortTarget.CREATE,
                        sort_order=SortOrder.DESCEND,
                        limit=self._limit + 1,
                        keys_only=True,
                    ),
                ],
                failure=[
                    Op.get(self._limit_key),
                    Op.get(self._key, keys_only=True),
                    Op.get(
                        self._prefix,
                        prefix=True,
                        sort_target=SortTarget.CREATE,
                        sort_order=SortOrder.ASCEND,
                        limit=self._limit,
                        keys_only=True,
                    ),
                ],
            )
            if resp.succeeded:
                queue = resp.responses[1]
                assert isinstance(queue, RangeResponse)
                # Our Put is visible to the Range after it, and nothing is newer than it.
                seen = older_seen(resp.header, queue, self._key, self._limit)
                holds = len(seen[1]) < self._limit
                return resp.header.revision, holds, None if holds else seen
            stored, mine, head = resp.responses
            assert isinstance(stored, RangeResponse)
            assert isinstance(mine, RangeResponse)
            assert isinstance(head, RangeResponse)
            if not stored.kvs:  # the first acquisition ever: store the limit (once), then try again
                await client.txn(
                    compare=[Compare.version(self._limit_key) == 0], success=[Op.put(self._limit_key, limit)]
                )
                continue
            if stored.kvs[0].value != limit:
                raise self._mismatch(stored.kvs[0].value)
            if not mine.kvs:  # pragma: no cover - both compares are read at one revision
                continue
            # The limit matched, so our key exists already (a create whose answer was lost, or a
            # resumed session): keep its place in the queue.
            my_rev = mine.kvs[0].create_revision
            return my_rev, any(kv.create_revision == my_rev for kv in head.kvs), None

    async def acquire(self) -> None:
        """Wait until this object holds a permit. A checkpoint.

        Cancelling it (e.g. by ``trio.fail_after``) at any point removes our slot key before the
        cancellation propagates (shielded, bounded by ``cleanup_timeout``).

        Raises:
            SemaphoreLimitMismatchError: the semaphore's stored limit is not ours (no key was created).
            SessionExpiredError: the session expired (or our slot key vanished) before we got a permit.
            RuntimeError: this object already holds a permit or is acquiring one.
        """
        self._begin()
        my_rev = 0
        try:
            my_rev, holds, seen = await self._enqueue()
            if not holds:
                await wait_for_predecessors(
                    self._session, self._prefix, self._key, my_rev, self._stats, window=self._limit, seen=seen
                )
        except BaseException:
            await self._cleanup(my_rev)
            raise
        self._revision = my_rev

    async def try_acquire(self) -> None:
        """Take a permit if one is free now, else raise ``trio.WouldBlock`` and leave no key. A checkpoint.

        Raises:
            trio.WouldBlock: all permits are held (or queued for) by others.
            SemaphoreLimitMismatchError: the semaphore's stored limit is not ours.
            SessionExpiredError: the session has expired.
            RuntimeError: this object already holds a permit or is acquiring one.
        """
        self._begin()
        my_rev = 0
        try:
            my_rev, holds, _ = await self._enqueue()
        except BaseException:
            await self._cleanup(my_rev)
            raise
        if not holds:
            await self._cleanup(my_rev)
            raise trio.WouldBlock(f"all {self._limit} permits of {self._limit_key!r} are taken")
        self._revision = my_rev

    async def _cleanup(self, my_rev: int) -> None:
        """After a failed or cancelled acquire: delete our key if we made it, and reset. Shielded."""
        try:
            await remove_own_key(self._session, self._key, my_rev, self._bound(), what="semaphore slot")
        finally:
            self._reset()

    async def release(self) -> None:
        """Give the permit back: delete our slot key if it is still the one we acquired. A checkpoint.

        The delete is fenced on the key's create revision. Local state is cleared once it is done.

        Raises:
            LockReleasedError: this object holds no permit (never acquired, or released twice).
            SessionExpiredError: the permit had already been lost (lease expired, key deleted).
            OutcomeUnknownError: the connection broke mid-release; the permit still counts as held
                here, and calling :meth:`release` again is safe.
        """
        if not self._revision:
            await trio.lowlevel.checkpoint()
            raise LockReleasedError(f"this Semaphore ({self._prefix!r}) holds no permit")
        resp = await self._session.client.txn(compare=[self.is_owner()], success=[Op.delete(self._key)])
        self._reset()
        if not resp.succeeded:
            raise self._lost("was no longer ours when released (its lease expired or it was deleted)")
