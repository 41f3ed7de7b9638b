"""Software transactional memory over etcd: :func:`run_stm` runs ``apply`` until it commits.

The semantics are those of etcd's Go ``concurrency.NewSTM`` (``client/v3/concurrency/stm.go``), checked
against its source: ``apply`` reads through the STM (each key once per attempt; later reads of it are
served from the attempt's *read set*), its writes are buffered in a *write set*, and when it returns
they are committed in **one** transaction whose compares detect conflicts. A conflict re-runs ``apply``
from scratch with the keys read at the failing revision already known.

``apply`` therefore **may run several times** and must have no side effects outside the STM: no I/O
except through ``stm``, no mutation of outside state that a retry would repeat. Its return value from
the attempt that committed is what :func:`run_stm` returns.

Isolation levels (:class:`Isolation`; Go's ``WithIsolation``), with how each reads and what its
commit transaction checks (``MR`` is a key's mod revision, 0 for an absent key):

- ``SERIALIZABLE_SNAPSHOT`` (the default): every read of an attempt is at one *snapshot revision*, that
  of its first read (which is linearizable). Commit ``If``: ``MR(k) == MR as read`` for every key read,
  **and** ``MR(k) < snapshot + 1`` for every key written — nothing read or written changed since the
  snapshot.
- ``SERIALIZABLE``: reads as above. Commit ``If``: the read-set compares only, so blind writes (keys
  written but never read) are not checked.
- ``REPEATABLE_READS``: each key is read when first asked for, member-locally (Go's
  ``WithSerializable``; possibly stale), and repeated reads agree. Commit ``If``: the read-set compares.
- ``READ_COMMITTED``: reads as ``REPEATABLE_READS``. Commit: no compares — it always commits and never
  retries, so concurrent read-modify-writes lose updates.

The first three commit only if everything ``apply`` read is unchanged at commit time, so a
read-modify-write (such as moving money between two accounts that both were read) is serializable
under each of them; ``READ_COMMITTED`` offers no such guarantee. The two serializable levels also give
``apply`` a consistent snapshot to look at; ``REPEATABLE_READS`` may show it a mix of revisions (the
commit then fails and ``apply`` runs again).

A failed commit's ``Else`` branch reads the read set's keys (and, for ``SERIALIZABLE_SNAPSHOT``, the
written keys) at the failing revision, as Go does; the next attempt starts with those values, and for
the serializable levels uses that revision as its snapshot, so the retry needs no read round trip for
them.

Where this differs from Go (``shared/notes/etcd-reference.md`` §1.4, §6.5):

- retries back off (full jitter, exponential from 5 ms, capped at 0.1 s) and can be bounded with
  ``max_attempts``; Go retries immediately and forever.
- pinned reads that land on a member lagging behind the snapshot revision (Go's
  "required revision is a future revision", etcd #11963) are re-sent as linearizable reads; a snapshot
  compacted away mid-attempt restarts the attempt instead of failing.
- a read-only attempt at a serializable level needs no commit (its reads are already one consistent,
  linearizable snapshot), and ``READ_COMMITTED`` without writes sends nothing; Go sends an empty txn.
- keys not prefetched on a retry are read at the retry's snapshot revision rather than at a new one.
- ``REPEATABLE_READS`` also gets the ``Else`` prefetch (Go only gives it to the serializable levels).

Non-guarantees and limits: there is no range read (as in Go: etcd #7383); the read set and write set
are each bounded by etcd's ``--max-txn-ops`` (128 by default) — a larger one raises ``ValueError``. A
commit whose answer is lost (:class:`~etcdsync.OutcomeUnknownError`) or that is cancelled in flight may
or may not have been applied; it is not retried (a retry could apply ``apply`` twice).
"""

from __future__ import annotations

import enum
import inspect
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, TypeVar, TypeVarTuple, Unpack, final

import trio

from .client import (
    Client,
    CompactedError,
    Compare,
    FutureRevisionError,
    KeyValue,
    Op,
    RangeResponse,
    STMConflictError,
)

__all__ = ["STM", "Isolation", "run_stm"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_PRIVATE: Final = object()
#: Retry backoff: the n-th retry waits uniformly in [0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**(n-1))).
_BACKOFF_BASE: Final = 0.005
_BACKOFF_CAP: Final = 0.1


class Isolation(enum.Enum):
    """How much an STM attempt is isolated from concurrent writers; the values are Go's ``iota`` order."""

    #: Reads from one snapshot; commits only if nothing read *or written* changed since (default).
    SERIALIZABLE_SNAPSHOT = 0
    #: Reads from one snapshot; commits only if nothing read changed since.
    SERIALIZABLE = 1
    #: Each key is read once per attempt; commits only if nothing read changed since it was read.
    REPEATABLE_READS = 2
    #: Reads whatever is committed; always commits.
    READ_COMMITTED = 3


_SNAPSHOT_LEVELS: Final = (Isolation.SERIALIZABLE_SNAPSHOT, Isolation.SERIALIZABLE)


def _key(key: bytes | str) -> bytes:
    return Op.get(key).key  # validated (bytes or str, non-empty) and encoded, as every client call does


def _mod(kv: KeyValue | None) -> int:
    return 0 if kv is None else kv.mod_revision


@final
class STM:
    """One attempt's view of etcd, handed to ``apply`` by :func:`run_stm`; do not build it yourself.

    Example::

        async def transfer(stm: etcdsync.STM, src: str, dst: str, amount: int) -> None:
            a, b = int(await stm.get(src) or 0), int(await stm.get(dst) or 0)
            stm.put(src, str(a - amount))
            stm.put(dst, str(b + amount))

        await etcdsync.run_stm(client, transfer, "/acct/a", "/acct/b", 10)

    It is valid only while its attempt runs; using it afterwards raises ``RuntimeError``.
    """

    def __init__(
        self,
        _private: object,
        client: Client,
        isolation: Isolation,
        attempt: int,
        carried: dict[bytes, KeyValue | None],
        carried_revision: int,
    ) -> None:
        if _private is not _PRIVATE:
            raise TypeError("STM objects are made by run_stm()")
        self._client = client
        self._isolation = isolation
        self._attempt = attempt
        self._carried = carried  # read at the previous attempt's failing revision; moved in on first use
        self._reads: dict[bytes, KeyValue | None] = {}
        self._writes: dict[bytes, tuple[bytes | None, int]] = {}  # key -> (value or None: delete, lease)
        pinned = isolation in _SNAPSHOT_LEVELS and carried
        self._snapshot: int | None = carried_revision if pinned else None
        self._lock = trio.Lock()
        self._open = True
        self._doomed = False  # a pinned read found its snapshot compacted: the attempt must restart

    @property
    def isolation(self) -> Isolation:
        """The isolation level this STM runs at."""
        return self._isolation

    @property
    def attempt(self) -> int:
        """Which attempt this is: 1 for the first run of ``apply``, 2 for its first retry, ..."""
        return self._attempt

    def __repr__(self) -> str:
        state = "open" if self._open else "over"
        return (
            f"<etcdsync.STM at {id(self):#x}, {self._isolation.name}, attempt {self._attempt} ({state}), "
            f"{len(self._reads)} read, {len(self._writes)} written>"
        )

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("this STM's attempt is over; use the STM only inside apply()")

    async def get(self, key: bytes | str) -> bytes | None:
        """The key's value as this attempt sees it, or ``None`` if it does not exist. A checkpoint.

        A key written (or deleted) earlier in this attempt reads back as written (read-your-writes);
        otherwise the first read adds the key to the read set and later reads return the same value.

        Raises:
            EtcdError: the read failed (the attempt is abandoned and the error propagates).
        """
        k = _key(key)
        self._check_open()
        if k in self._writes:
            await trio.lowlevel.checkpoint()
            return self._writes[k][0]
        kv = (await self._fetch((k,)))[k]
        return None if kv is None else kv.value

    async def rev(self, key: bytes | str) -> int:
        """The key's mod revision as read by this attempt (0 if absent). A checkpoint.

        Like Go's ``Rev``, it reads the key (adding it to the read set) even if this attempt wrote it:
        the revision a pending write will get is not known before the commit.

        Raises:
            EtcdError: the read failed (the attempt is abandoned and the error propagates).
        """
        k = _key(key)
        self._check_open()
        kv = (await self._fetch((k,)))[k]
        return 0 if kv is None else kv.mod_revision

    def put(self, key: bytes | str, value: bytes | str, *, lease: int = 0) -> None:
        """Buffer a put of ``value`` at ``key`` (attached to ``lease`` if given) for the commit."""
        op = Op.put(key, value, lease=lease)  # validates, as the commit will
        self._check_open()
        self._writes[op.key] = (op.value, op.lease)

    def delete(self, key: bytes | str) -> None:
        """Buffer a delete of ``key`` for the commit (a single key; there are no range deletes)."""
        k = _key(key)
        self._check_open()
        self._writes[k] = (None, 0)

    async def _fetch(self, keys: Iterable[bytes]) -> dict[bytes, KeyValue | None]:
        """Read the keys not yet in the read set, in one transaction, and return them all."""
        # The lock (a checkpoint even when free) lets tasks inside apply share one read set and snapshot.
        async with self._lock:
            keys = tuple(dict.fromkeys(keys))
            for k in keys:
                if k not in self._reads and k in self._carried:
                    self._reads[k] = self._carried.pop(k)
            missing = [k for k in keys if k not in self._reads]
            if missing:
                await self._read(missing)
            return {k: self._reads[k] for k in keys}

    async def _read(self, keys: list[bytes]) -> None:
        snapshot = self._snapshot or 0
        # Go: the serializable levels read linearizably until the snapshot is fixed, then at it
        # (member-local is fine for a fixed revision); the others read member-locally.
        serializable = bool(snapshot) or self._isolation not in _SNAPSHOT_LEVELS
        try:
            try:
                resp = await self._client.txn(
                    success=[Op.get(k, revision=snapshot, serializable=serializable) for k in keys]
                )
            except FutureRevisionError:
                # This member lags behind our snapshot (etcd #11963): a linearizable read waits for it.
                resp = await self._client.txn(success=[Op.get(k, revision=snapshot) for k in keys])
        except CompactedError:
            if snapshot:
                self._doomed = True
            raise
        for k, r in zip(keys, resp.responses, strict=True):
            assert isinstance(r, RangeResponse)
            self._reads[k] = r.kvs[0] if r.kvs else None
        if self._isolation in _SNAPSHOT_LEVELS and self._snapshot is None:
            self._snapshot = resp.header.revision

    def _close(self) -> None:
        self._open = False

    async def _commit(self) -> tuple[bool, dict[bytes, KeyValue | None], int, list[bytes]]:
        """Commit the write set under this level's compares.

        Returns ``(committed, current values of the checked keys, their revision, conflicting keys)``.
        """
        level = self._isolation
        if not self._writes and (level is Isolation.READ_COMMITTED or level in _SNAPSHOT_LEVELS):
            await trio.lowlevel.checkpoint()
            return True, {}, 0, []
        compares: list[Compare] = []
        checked = list(self._reads)
        if level is not Isolation.READ_COMMITTED:
            compares = [Compare.mod_revision(k) == _mod(kv) for k, kv in self._reads.items()]
        if self._checks_writes():
            assert self._snapshot is not None
            compares += [Compare.mod_revision(k) < self._snapshot + 1 for k in self._writes]
            checked += [k for k in self._writes if k not in self._reads]
        if not compares and not self._writes:
            await trio.lowlevel.checkpoint()
            return True, {}, 0, []
        failure = [Op.get(k) for k in checked] if compares else []
        puts = [Op.put(k, v, lease=lease) for k, (v, lease) in self._writes.items() if v is not None]
        deletes = [Op.delete(k) for k, (v, _) in self._writes.items() if v is None]
        resp = await self._client.txn(compares, [*puts, *deletes], failure)
        if resp.succeeded:
            return True, {}, 0, []
        current: dict[bytes, KeyValue | None] = {}
        for k, r in zip(checked, resp.responses, strict=True):
            assert isinstance(r, RangeResponse)
            current[k] = r.kvs[0] if r.kvs else None
        return False, current, resp.header.revision, self._conflicts(current)

    def _checks_writes(self) -> bool:
        # Go compares the write set against rset.first(), "MaxInt64 - 1" when nothing was read.
        return self._isolation is Isolation.SERIALIZABLE_SNAPSHOT and bool(self._reads)

    def _conflicts(self, current: dict[bytes, KeyValue | None]) -> list[bytes]:
        keys = [k for k, kv in self._reads.items() if _mod(current[k]) != _mod(kv)]
        if self._checks_writes():
            assert self._snapshot is not None
            keys += [k for k in self._writes if k not in keys and _mod(current[k]) > self._snapshot]
        return keys


async def run_stm(
    client: Client,
    apply: Callable[[STM, Unpack[Ts]], Awaitable[T]],
    *args: *Ts,
    isolation: Isolation = Isolation.SERIALIZABLE_SNAPSHOT,
    prefetch: Iterable[bytes | str] = (),
    max_attempts: int | None = None,
) -> T:
    """Run ``await apply(stm, *args)`` and commit its writes atomically, re-running it on conflict.

    ``apply`` **may run several times** (once per attempt) and must not have side effects outside the
    STM; only the writes of the attempt that commits are applied, all in one transaction. An exception
    raised by ``apply`` ends the STM at once, writes nothing, and propagates unchanged. See the module
    docstring for what each isolation level guarantees.

    Example::

        async def bump(stm: etcdsync.STM, key: str) -> int:
            n = int(await stm.get(key) or 0) + 1
            stm.put(key, str(n))
            return n

        n = await etcdsync.run_stm(client, bump, "/counters/jobs", prefetch=["/counters/jobs"])

    Args:
        client: the client to run on.
        apply: an async callable taking the :class:`STM` and ``args``; its result is returned.
        isolation: see :class:`Isolation`; Go's default, ``SERIALIZABLE_SNAPSHOT``, by default.
        prefetch: keys read (in one transaction) before each attempt runs ``apply``, so that ``apply``
            does not pay a round trip per key; they join the read set.
        max_attempts: give up with :class:`~etcdsync.STMConflictError` after this many conflicting
            attempts; ``None`` (the default, as in Go) retries until it commits.

    Returns:
        What ``apply`` returned on the attempt that committed.

    A checkpoint. Cancellation is honoured everywhere; if it arrives while the commit is in flight, the
    commit may or may not have been applied.

    Raises:
        STMConflictError: ``max_attempts`` attempts conflicted (``keys``: the last conflict's keys,
            ``attempts``: how many attempts ran).
        TypeError, ValueError: a caller mistake (``apply`` not an async callable, a bad ``isolation``,
            ``prefetch`` or ``max_attempts``), before any RPC.
        EtcdError: a read or the commit failed; :class:`~etcdsync.OutcomeUnknownError` when the
            commit's answer was lost (it may have been applied).
    """
    if not isinstance(client, Client):
        raise TypeError(f"run_stm needs a Client, not {type(client).__name__}")
    if not callable(apply):
        raise TypeError(f"apply must be an async callable taking the STM, not {type(apply).__name__}")
    if not isinstance(isolation, Isolation):
        raise TypeError(f"isolation must be an etcdsync.Isolation, not {isolation!r}")
    if isinstance(prefetch, str | bytes):
        raise TypeError("prefetch must be a sequence of keys, not a single key")
    prefetch_keys = tuple(dict.fromkeys(_key(k) for k in prefetch))
    if max_attempts is not None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
            raise TypeError(f"max_attempts must be an int or None, not {type(max_attempts).__name__}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
    carried: dict[bytes, KeyValue | None] = {}
    carried_revision = 0
    attempt = 0
    while True:
        attempt += 1
        stm = STM(_PRIVATE, client, isolation, attempt, carried, carried_revision)
        try:
            pending = apply(stm, *args)
            if not inspect.isawaitable(pending):
                raise TypeError(f"apply must be an async callable; it returned {type(pending).__name__}")
            try:
                if prefetch_keys:
                    await stm._fetch(prefetch_keys)
                result = await pending
            except CompactedError:
                if not stm._doomed:
                    raise
                # Our snapshot was compacted mid-attempt: start over from fresh reads (not a conflict).
            finally:
                if inspect.iscoroutine(pending):
                    pending.close()  # not awaited (the prefetch failed) or finished: no warning either way
        finally:
            stm._close()
        conflicts: list[bytes] = []
        if stm._doomed:
            carried, carried_revision = {}, 0
        else:
            committed, carried, carried_revision, conflicts = await stm._commit()
            if committed:
                return result
        if max_attempts is not None and attempt >= max_attempts:
            shown = ", ".join(repr(k) for k in conflicts) or "(the snapshot was compacted)"
            raise STMConflictError(
                f"the STM conflicted on each of its {attempt} attempt(s); last conflict on {shown}",
                keys=conflicts,
                attempts=attempt,
            )
        await trio.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1))))
