"""Mutex: a distributed lock with fencing tokens, herd-free waiting, and loss detection.

Key layout and acquisition are etcd's Go ``concurrency.Mutex`` (so ``etcdctl lock NAME`` and
``Mutex(session, NAME)`` exclude each other): the lock's queue lives under ``NAME/``; a contender's
key is ``NAME/<hex lease id>``, attached to its session's lease; the contender whose key has the
lowest create revision holds the lock. Acquiring when the lock is free is one transaction; when it
is not, that same transaction names the key to wait for (the nearest older one), so waiting starts
without another read. Its requests are built once per Mutex and sent unchanged on every cycle.

Where Go's version has known bugs (``shared/notes/etcd-reference.md`` §1.2), this one does not:

- **Release is fenced**: ``delete if create_revision == mine``, so a retried release can never delete a
  newer holder's key (etcd #22082); local state is cleared only once the release succeeded.
- **Waiting watches the predecessor, our own key and the session**: a lost session ends the wait with
  :class:`~etcdsync.SessionExpiredError` (etcd #19597); ownership is confirmed atomically after the
  wait; a compacted watch re-queries instead of failing (etcd #9715).
- **Cancellation leaves no key**: cancelling :meth:`Mutex.acquire` anywhere (a ``fail_after`` timeout
  included) deletes our queue key in a shielded, bounded cleanup.
- **Work under the lock ends with the lease**: the body of ``async with mutex:`` runs in a scope
  that is cancelled when the session expires, and then :class:`~etcdsync.SessionExpiredError` is
  raised.

A lease-based lock alone is **not** mutual exclusion under process pauses: a holder paused past its
TTL still believes it holds the lock while another process does. Make every write that the lock
protects conditional on still holding it, with the fencing token::

    async with mutex:
        await client.put(b"/reports/today", data, guard=mutex.is_owner())   # GuardFailedError if lost

or hand ``mutex.fencing_token`` (the key's create revision, which grows with every new holder) to
the resource you protect, and have it refuse tokens lower than the highest it has seen.

One session, several Mutex objects on the same name: in Go they share the key, so both "hold" the lock
at once. Here they exclude each other: a per-session, per-name local lock lets one object at a time
use the key (each acquisition creates it anew, so each gets its own fencing token). One Mutex object
is not re-entrant: acquiring it while it is held or being acquired raises ``RuntimeError``.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import AbstractContextManager
from typing import Final, final

import attrs
import trio

from ._hold import SessionHold
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
    Compare,
    KeyValue,
    LockReleasedError,
    Op,
    RangeResponse,
    ResponseHeader,
    SortOrder,
    SortTarget,
)

__all__ = ["Mutex", "QueueLock"]

logger = logging.getLogger(__name__)

#: One local turn per (session, queue key): objects of one session take turns with the shared key.
#: A semaphore rather than a trio.Lock, which would tie the release to the acquiring task.
_LOCAL_TURNS: Final[weakref.WeakKeyDictionary[Session, dict[bytes, trio.Semaphore]]] = (
    weakref.WeakKeyDictionary()
)


def _local_turn(session: Session, key: bytes) -> trio.Semaphore:
    turns = _LOCAL_TURNS.setdefault(session, {})
    turn = turns.get(key)
    if turn is None:
        turn = turns[key] = trio.Semaphore(1)
    return turn


class QueueLock(SessionHold):
    """A place in a create-revision-ordered queue of keys: the machinery of :class:`Mutex` and of
    :class:`~etcdsync.RWMutex`'s read and write locks.

    The lock is held once no key under ``scan_prefix`` is older (by create revision) than ours.
    Build one through :class:`Mutex` or :meth:`RWMutex.read`/:meth:`RWMutex.write`.
    """

    def __init__(
        self,
        session: Session,
        *,
        key: bytes,
        scan_prefix: bytes,
        local_turn: trio.Semaphore,
        cleanup_timeout: float | None,
    ) -> None:
        if not isinstance(session, Session):
            raise TypeError(f"{type(self).__name__} needs a Session, not {type(session).__name__}")
        if cleanup_timeout is not None and not cleanup_timeout > 0:
            raise ValueError("cleanup_timeout must be > 0")
        self._session = session
        self._prefix = scan_prefix
        self._key = key
        self._cleanup_timeout = cleanup_timeout
        self._revision = 0  # create revision of our key while held; 0 when not held
        self._busy = False  # acquiring or held
        self._local = local_turn
        self._holds_local = False
        self._scope_cm: AbstractContextManager[trio.CancelScope] | None = None
        self._stats = WaitStatistics()
        # The requests of every cycle, built once and sent as they are (the client can then reuse
        # their serialized form). Enqueue: if our key is absent, create it and read the newest keys
        # (ours and, if any, the nearest older one: we wait for that one); else read our key and the
        # head of the queue.
        self._absent = (Compare.create_revision(key) == 0,)
        self._create = (
            Op.put(key, b"", lease=session.lease_id),
            Op.get(
                scan_prefix,
                prefix=True,
                sort_target=SortTarget.CREATE,
                sort_order=SortOrder.DESCEND,
                limit=2,
                keys_only=True,
            ),
        )
        self._find = (
            Op.get(key, keys_only=True),
            Op.get(
                scan_prefix,
                prefix=True,
                sort_target=SortTarget.CREATE,
                sort_order=SortOrder.ASCEND,
                limit=1,
                keys_only=True,
            ),
        )
        self._delete = (Op.delete(key),)
        self._owner: Compare | None = None  # CR(key) == our revision, while held

    # ---------------------------------------------------------------------------------------------------
    # Queries (no I/O)

    @property
    def key(self) -> bytes:
        """Our key in the lock's queue, ``name/<hex lease id>``."""
        return self._key

    @property
    def session(self) -> Session:
        """The session the lock is held through."""
        return self._session

    @property
    def fencing_token(self) -> int:
        """The create revision of our lock key, which grows with every new holder.

        Raises:
            LockReleasedError: the lock is not held by this object.
        """
        if not self._revision:
            raise LockReleasedError(f"{self._key!r} is not held by this Mutex")
        return self._revision

    @property
    def revision(self) -> int:
        """Same as :attr:`fencing_token`, but 0 instead of an error when not held."""
        return self._revision

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock (as far as it knows; see :meth:`is_owner` for writes)."""
        return self._revision != 0

    def is_owner(self) -> Compare:
        """A compare that holds exactly while this object's acquisition still holds the lock.

        Use it as ``guard=`` on writes, or in ``client.txn(compare=[...])``.

        Raises:
            LockReleasedError: the lock is not held by this object.
        """
        if self._owner is None:
            raise LockReleasedError(f"{self._key!r} is not held by this Mutex")
        return self._owner

    def statistics(self) -> WaitStatistics:
        """What waiting for this lock has cost so far (queries, watches, wake-ups, watch events)."""
        return attrs.evolve(self._stats)

    def __repr__(self) -> str:
        state = (
            f"held (token {self._revision})" if self._revision else ("acquiring" if self._busy else "free")
        )
        return f"<etcdsync.{type(self).__name__} at {id(self):#x}, {self._key!r}, {state}>"

    # ---------------------------------------------------------------------------------------------------
    # Acquire and release

    def _begin(self) -> None:
        if self._busy:
            raise RuntimeError(
                f"this Mutex ({self._key!r}) is already held or being acquired; it is not re-entrant"
            )
        if self._session.expired:
            raise self._session.expired_error()
        self._busy = True

    async def _enqueue(self) -> tuple[int, bool, tuple[ResponseHeader, tuple[KeyValue, ...]] | None]:
        """Create our key if absent and read the queue, in one transaction.

        Returns our key's create revision; whether we are at the head of the queue; and, when we are
        not and the transaction created our key, what it saw, for the wait to start from: its header
        and the nearest older key (every other key is older than one created just now).
        """
        resp = await self._session.client.txn(self._absent, self._create, self._find)
        mine, queue = resp.responses
        assert isinstance(queue, RangeResponse)
        if resp.succeeded:
            seen = older_seen(resp.header, queue, self._key)
            return resp.header.revision, not seen[1], seen if seen[1] else None
        assert isinstance(mine, RangeResponse)
        my_rev = mine.kvs[0].create_revision
        return my_rev, not queue.kvs or queue.kvs[0].create_revision >= my_rev, None

    async def acquire(self) -> None:
        """Wait until this object holds the lock. A checkpoint.

        Cancelling it (e.g. by ``trio.fail_after``) at any point removes our queue key before the
        cancellation propagates (shielded, bounded by ``cleanup_timeout``).

        Raises:
            SessionExpiredError: the session expired (or our queue key vanished) before we got the lock.
            RuntimeError: this object already holds the lock or is acquiring it.
        """
        self._begin()
        my_rev = 0
        try:
            try:
                self._local.acquire_nowait()  # the usual case; the transaction below checkpoints
            except trio.WouldBlock:
                await self._local.acquire()
            self._holds_local = True
            my_rev, at_head, seen = await self._enqueue()
            if not at_head:
                await wait_for_predecessors(
                    self._session, self._prefix, self._key, my_rev, self._stats, seen=seen
                )
        except BaseException:
            await self._cleanup(my_rev)
            raise
        self._held(my_rev)

    def _held(self, my_rev: int) -> None:
        self._revision = my_rev
        self._owner = Compare.create_revision(self._key) == my_rev

    async def try_acquire(self) -> None:
        """Take the lock if nobody holds it, else raise ``trio.WouldBlock`` and leave no key. A checkpoint.

        Raises:
            trio.WouldBlock: the lock is held elsewhere (or by another Mutex object on this session).
            SessionExpiredError: the session has expired.
            RuntimeError: this object already holds the lock or is acquiring it.
        """
        self._begin()
        my_rev = 0
        try:
            self._local.acquire_nowait()  # raises trio.WouldBlock
            self._holds_local = True
            my_rev, at_head, _ = await self._enqueue()
        except BaseException:
            await self._cleanup(my_rev)
            raise
        if not at_head:
            await self._cleanup(my_rev)
            raise trio.WouldBlock(f"{self._prefix!r} is locked by another session")
        self._held(my_rev)

    async def _cleanup(self, my_rev: int) -> None:
        """After a failed or cancelled acquire: delete our key if we made it, and reset. Shielded."""
        try:
            if self._holds_local:
                await self._delete_own_key(my_rev)
        finally:
            self._reset()

    async def _delete_own_key(self, my_rev: int) -> bool:
        """Delete our key, fenced; returns whether it was ours and is now gone. Shielded and bounded.

        With ``my_rev == 0`` (the creating txn's outcome is unknown) the fence is our lease: the key,
        if it exists, is ours, since the local turn lets only this object use it.
        """
        return await remove_own_key(self._session, self._key, my_rev, self._bound(), what="lock")

    def _reset(self) -> None:
        self._revision = 0
        self._owner = None
        self._busy = False
        if self._holds_local:
            self._holds_local = False
            self._local.release()

    async def release(self) -> None:
        """Release the lock: delete our key if it is still the one we acquired. A checkpoint.

        The delete is fenced on our key's create revision, so a retried release can never delete a
        newer holder's key. Local state is cleared only when the release is done.

        Raises:
            LockReleasedError: this object does not hold the lock (never acquired, or released twice).
            SessionExpiredError: the lock had already been lost with the session before this release.
            OutcomeUnknownError: the connection broke mid-release; the lock is still counted as held
                here, and calling :meth:`release` again is safe.
        """
        if not self._revision:
            await trio.lowlevel.checkpoint()
            raise LockReleasedError(
                f"{self._key!r} is not held by this Mutex (never acquired or already released)"
            )
        # A list, not a tuple: this transaction is sent once per acquisition (its compare names our
        # revision), so the client need not keep its serialized form.
        resp = await self._session.client.txn([self.is_owner()], self._delete)
        self._reset()
        if not resp.succeeded:
            raise self._lost("was no longer ours when released (its lease expired or it was deleted)")


@final
class Mutex(QueueLock):
    """A distributed mutual-exclusion lock named ``name``, held through ``session``.

    Example::

        async with etcdsync.open_session(client, ttl=10) as session:
            mutex = etcdsync.Mutex(session, "/locks/nightly-report")
            async with mutex:          # waits for the lock; the body is cancelled if the session is lost
                await client.put(b"/reports/x", data, guard=mutex.is_owner())

    Args:
        session: the session whose lease the lock key is attached to.
        name: the lock's name (``bytes`` or ``str``); its queue lives under ``name + "/"``.
        cleanup_timeout: bound on the shielded cleanup (deleting our key) after a cancelled acquire or
            on release; defaults to the session's TTL, after which the key goes with the lease anyway.
    """

    def __init__(self, session: Session, name: bytes | str, *, cleanup_timeout: float | None = None) -> None:
        if not isinstance(session, Session):
            raise TypeError(f"Mutex needs a Session, not {type(session).__name__}")
        prefix = name_prefix(name)
        key = participant_key(prefix, session.lease_id)
        super().__init__(
            session,
            key=key,
            scan_prefix=prefix,
            local_turn=_local_turn(session, key),
            cleanup_timeout=cleanup_timeout,
        )
