"""RWMutex: many readers or one writer, FIFO by create revision, herd-free, fenced, loss-aware.

Layout follows etcd's Go ``recipes.RWMutex`` prefixes: readers queue at ``NAME/read/<id>`` and
writers at ``NAME/write/<id>``, both attached to the session's lease. A reader holds the lock once no
*writer* key is older than its own; a writer once no key of either kind is older. So readers that
arrive together share the lock, writers exclude everyone, and nobody overtakes an earlier arrival of
the other kind (no writer starvation).

Each waiter watches only its nearest older blocker (the greatest create revision below its own in
the range it must wait for): a writer's release wakes the readers directly behind it, which may all
proceed, and a reader's release wakes at most the writer directly behind it. Order is by create
revision, not by Go's mod revision, so a retried acquisition keeps its place.

Keys are made unique per lock object (``<hex lease>-<random>``), so one session can hold several
read locks at once. Everything else — fencing with :meth:`~etcdsync.QueueLock.is_owner`, loss
cancelling the ``async with`` body, cleanup of cancelled waits — is :class:`~etcdsync.Mutex`'s.
"""

from __future__ import annotations

import secrets
from typing import final

import trio

from ._keys import name_prefix
from ._mutex import QueueLock
from ._session import Session

__all__ = ["RWMutex"]


@final
class RWMutex:
    """A readers-writer lock named ``name``, held through ``session``.

    Example::

        rw = etcdsync.RWMutex(session, "/locks/config")
        async with rw.read():                 # shared with other readers
            config = await client.get(b"/config")
        async with rw.write() as lock:        # exclusive
            await client.put(b"/config", new, guard=lock.is_owner())

    Each call to :meth:`read` or :meth:`write` returns a new, single-use-at-a-time lock object; use it
    with ``async with`` or its ``acquire``/``try_acquire``/``release`` methods.
    """

    def __init__(self, session: Session, name: bytes | str, *, cleanup_timeout: float | None = None) -> None:
        if not isinstance(session, Session):
            raise TypeError(f"RWMutex needs a Session, not {type(session).__name__}")
        self._session = session
        self._prefix = name_prefix(name)
        self._cleanup_timeout = cleanup_timeout

    @property
    def prefix(self) -> bytes:
        """``name + "/"``, under which the ``read/`` and ``write/`` queues live."""
        return self._prefix

    def _lock(self, kind: bytes, scan_prefix: bytes) -> QueueLock:
        key = (
            self._prefix + kind + b"/" + f"{self._session.lease_id:x}-{secrets.token_hex(4)}".encode("ascii")
        )
        return QueueLock(
            self._session,
            key=key,
            scan_prefix=scan_prefix,
            local_turn=trio.Semaphore(1),
            cleanup_timeout=self._cleanup_timeout,
        )

    def read(self) -> QueueLock:
        """A read lock: held once no writer arrived before it."""
        return self._lock(b"read", self._prefix + b"write/")

    def write(self) -> QueueLock:
        """A write lock: held once nobody (reader or writer) arrived before it."""
        return self._lock(b"write", self._prefix)

    def __repr__(self) -> str:
        return f"<etcdsync.RWMutex at {id(self):#x}, {self._prefix!r}>"
