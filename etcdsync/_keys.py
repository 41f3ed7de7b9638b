"""Key layout and the herd-free wait shared by Mutex, RWMutex, Election, Semaphore and DoubleBarrier.

Layout (etcd's Go ``concurrency`` package, so ``etcdctl lock``/``elect`` interoperate): a recipe
named ``NAME`` keeps its queue under ``NAME + "/"``; each participant's key is
``NAME + "/" + lowercase hex of its session's lease ID`` (Go's ``%x``). Queue order is the keys'
create revisions. Recipes where one session may take part several times at once (Semaphore,
DoubleBarrier) give the session's first concurrent participant that key and the others
``<hex lease>-1``, ``-2``, ... (:func:`claim_index`): names stay deterministic, so a retried create
finds its key instead of making a second one.

The wait (:func:`wait_for_predecessors`) is etcd's ``waitDeletes`` with the fixes its known bugs need
(``shared/notes/etcd-reference.md`` §1.2-1.3):

- it waits on the *nearest* older key only (the greatest create revision below ours), so one release
  wakes exactly one waiter — no thundering herd; with ``window=N`` (Semaphore) it waits until fewer
  than N keys are older and watches exactly the N newest older keys, so a release wakes at most N
  waiters (``shared/notes/etcd-reference.md`` §2.7);
- after every wake it re-queries, so a predecessor that gave up while an older holder remains does not
  hand us the lock (``TestMutexWaitsOnCurrentHolder``);
- it also watches our own key and the session: losing either ends the wait with
  :class:`~etcdsync.SessionExpiredError` instead of a phantom ownership (etcd #19597);
- a compacted watch start is not an error: it re-queries (etcd #9715);
- the read of the queue and of our own key happen in one transaction at one revision, so "no older key
  and our key still exists with our create revision" is checked atomically before returning.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import attrs
import trio

from ._session import Session
from .client import (
    CompactedError,
    Compare,
    EtcdError,
    EventType,
    KeyValue,
    Op,
    RangeResponse,
    ResponseHeader,
    SessionExpiredError,
    SortOrder,
    SortTarget,
)

__all__ = [
    "WaitStatistics",
    "claim_index",
    "name_prefix",
    "participant_key",
    "recipe_name",
    "release_index",
    "remove_own_key",
    "wait_for_deletion",
    "wait_for_predecessors",
]

logger = logging.getLogger(__name__)


def recipe_name(name: bytes | str) -> bytes:
    """``name`` as bytes: the one place where the recipes accept ``str`` (UTF-8 encoded).

    An empty name or anything but ``bytes``/``str`` is a caller mistake.
    """
    if isinstance(name, str):
        raw = name.encode("utf-8")
    elif isinstance(name, bytes):
        raw = name
    else:
        raise TypeError(f"a recipe name must be bytes or str, not {type(name).__name__}")
    if not raw:
        raise ValueError("a recipe name must not be empty")
    return raw


def name_prefix(name: bytes | str) -> bytes:
    """``name`` as bytes with the ``/`` that etcd's Go recipes always append (see :func:`recipe_name`)."""
    return recipe_name(name) + b"/"


def participant_key(prefix: bytes, lease_id: int, index: int = 0) -> bytes:
    """The key of the participant holding ``lease_id`` under ``prefix`` (Go's ``fmt.Sprintf("%s%x")``).

    ``index`` > 0 names the session's further concurrent participants: ``<hex lease>-<index>``.
    """
    key = prefix + format(lease_id, "x").encode("ascii")
    return key + b"-%d" % index if index else key


#: Indices in use per (session, prefix) by objects of this process (see :func:`claim_index`).
_CLAIMED: Final[weakref.WeakKeyDictionary[Session, dict[bytes, set[int]]]] = weakref.WeakKeyDictionary()


def claim_index(session: Session, prefix: bytes) -> int:
    """Claim the lowest participant index under ``prefix`` that no other object of ``session`` uses.

    So each concurrent participant of one session gets its own key, and the names are deterministic:
    the session's first participant is always ``<hex lease>``. Give it back with :func:`release_index`.
    """
    used = _CLAIMED.setdefault(session, {}).setdefault(prefix, set())
    index = 0
    while index in used:
        index += 1
    used.add(index)
    return index


def release_index(session: Session, prefix: bytes, index: int) -> None:
    """Give back an index claimed with :func:`claim_index`."""
    per_session = _CLAIMED.get(session, {})
    used = per_session.get(prefix)
    if used is not None:
        used.discard(index)
        if not used:
            del per_session[prefix]


async def remove_own_key(session: Session, key: bytes, my_rev: int, bound: float, *, what: str) -> bool:
    """Delete our participant ``key`` if it is still ours; shielded from cancellation, bounded by ``bound``.

    Fenced on its create revision ``my_rev`` (never a newer incarnation of the same name, etcd
    #22082), or on our lease when the creating transaction's outcome is unknown (``my_rev == 0``:
    cancelled mid-flight). Failures are logged, not raised: the key goes with the lease anyway, and
    this runs in cleanup paths that must not hide the exception being handled. Returns whether the
    delete happened.
    """
    if my_rev:
        fence = Compare.create_revision(key) == my_rev
    else:
        fence = Compare.lease(key) == session.lease_id
    with trio.move_on_after(bound, shield=True):
        try:
            resp = await session.client.txn(compare=[fence], success=[Op.delete(key)])
        except (EtcdError, trio.ClosedResourceError) as exc:
            logger.warning(
                "could not remove %s key %r (%r); it goes with the session's lease", what, key, exc
            )
            return False
        return resp.succeeded
    logger.warning("removing %s key %r took over %.1f s; it goes with the session's lease", what, key, bound)
    return False


@attrs.define
class WaitStatistics:
    """What waiting cost, for tests and benchmarks of herd-freedom.

    Attributes:
        queries: transactions issued to find the predecessor.
        watches: watches opened on a predecessor.
        wakeups: times a predecessor's deletion (or a compaction) woke the waiter.
        watch_events: watch events received while waiting.
    """

    queries: int = 0
    watches: int = 0
    wakeups: int = 0
    watch_events: int = 0


async def _race(*fns: Callable[[], Awaitable[BaseException | None]]) -> BaseException | None:
    """Run ``fns`` concurrently until the first returns; return what it returned.

    Each function reports expected outcomes by returning them (an exception object or ``None``);
    only bugs escape as exceptions, so no ExceptionGroup reaches the caller on the normal paths.
    """
    outcome: list[BaseException | None] = []
    async with trio.open_nursery() as nursery:
        for fn in fns:

            async def run(fn: Callable[[], Awaitable[BaseException | None]] = fn) -> None:
                result = await fn()
                if not outcome:
                    outcome.append(result)
                nursery.cancel_scope.cancel()

            nursery.start_soon(run)
    return outcome[0] if outcome else None


async def _until_deleted(session: Session, key: bytes, start: int, stats: WaitStatistics) -> EtcdError | None:
    """Return once ``key`` is deleted at a revision >= ``start`` (or compaction hides whether it was)."""
    try:
        async with session.client.watch(key, start_revision=start) as events:
            stats.watches += 1
            async for resp in events:
                stats.watch_events += len(resp.events)
                if any(e.type is EventType.DELETE for e in resp.events):
                    return None
    except CompactedError:
        return None  # the history we needed is gone: re-query instead of failing (etcd #9715)
    except EtcdError as exc:
        return exc
    raise AssertionError("a watch ended without an error")  # pragma: no cover - watches do not end


async def _own_key_deleted(session: Session, key: bytes, start: int) -> EtcdError | None:
    try:
        async with session.client.watch(key, start_revision=start) as events:
            async for resp in events:
                if any(e.type is EventType.DELETE for e in resp.events):
                    return SessionExpiredError(
                        f"our queue key {key!r} was deleted while waiting (lease expired or key removed)"
                    )
    except CompactedError:
        return None  # re-query; the transaction below checks our key
    except EtcdError as exc:
        return exc
    raise AssertionError("a watch ended without an error")  # pragma: no cover


async def _session_expired(session: Session) -> EtcdError | None:
    await session.wait_expired()
    return session.expired_error()


async def _query(
    session: Session, prefix: bytes, my_key: bytes, my_rev: int, window: int
) -> tuple[ResponseHeader, tuple[KeyValue, ...]]:
    """In one transaction: the ``window`` nearest older participants, and a check that our key is ours."""
    resp = await session.client.txn(
        success=[
            Op.get(
                prefix,
                prefix=True,
                sort_target=SortTarget.CREATE,
                sort_order=SortOrder.DESCEND,
                max_create_revision=my_rev - 1,
                limit=window,
                keys_only=True,
            ),
            Op.get(my_key, keys_only=True),
        ]
    )
    older, mine = resp.responses
    assert isinstance(older, RangeResponse)
    assert isinstance(mine, RangeResponse)
    if not mine.kvs or mine.kvs[0].create_revision != my_rev:
        raise (
            session.expired_error()
            if session.expired
            else SessionExpiredError(
                f"our queue key {my_key!r} is gone (its lease expired or it was deleted)"
            )
        )
    return resp.header, older.kvs


async def wait_for_deletion(
    session: Session, keys: Sequence[bytes], my_key: bytes | None, start: int, stats: WaitStatistics
) -> BaseException | None:
    """Wait until any of ``keys`` is deleted at a revision >= ``start``, or compaction hides whether it
    was (``None``: re-query), or our own ``my_key`` (unless ``None``) is deleted or the session
    expires (the error to raise).

    All watches share the client's one watch stream; they end when this returns. A checkpoint.
    """
    own = () if my_key is None else (functools.partial(_own_key_deleted, session, my_key, start),)
    return await _race(
        *(functools.partial(_until_deleted, session, key, start, stats) for key in keys),
        *own,
        functools.partial(_session_expired, session),
    )


async def wait_for_predecessors(
    session: Session,
    prefix: bytes,
    my_key: bytes,
    my_rev: int,
    stats: WaitStatistics,
    *,
    window: int = 1,
) -> ResponseHeader:
    """Wait until fewer than ``window`` participants under ``prefix`` are older than ``my_rev``; return
    the confirming header.

    With ``window=1`` (Mutex, Election) that is "no older participant", watching only the nearest.
    With ``window=N`` (Semaphore) it watches the N newest older keys: only their deletion can change
    the answer, since deleting an older key outside them leaves N older keys, and newer keys never
    count (``shared/notes/etcd-reference.md`` §2.7).

    Raises:
        SessionExpiredError: the session expired, or our key vanished, while waiting.
    """
    while True:
        if session.expired:
            raise session.expired_error()
        stats.queries += 1
        header, older = await _query(session, prefix, my_key, my_rev, window)
        if len(older) < window:
            return header
        result = await wait_for_deletion(
            session, [kv.key for kv in older], my_key, header.revision + 1, stats
        )
        if result is not None:
            raise result
        stats.wakeups += 1
