"""Key layout and the herd-free wait shared by Mutex, RWMutex, Election and Semaphore.

Layout (etcd's Go ``concurrency`` package, so ``etcdctl lock``/``elect`` interoperate): a recipe
named ``NAME`` keeps its queue under ``NAME + "/"``; each participant's key is
``NAME + "/" + lowercase hex of its session's lease ID`` (Go's ``%x``). Queue order is the keys'
create revisions.

The wait (:func:`wait_for_predecessors`) is etcd's ``waitDeletes`` with the fixes its known bugs need
(``shared/notes/etcd-reference.md`` §1.2-1.3):

- it waits on the *nearest* older key only (the greatest create revision below ours), so one release
  wakes exactly one waiter — no thundering herd;
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
from collections.abc import Awaitable, Callable

import attrs
import trio

from ._session import Session
from .client import (
    CompactedError,
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

__all__ = ["WaitStatistics", "name_prefix", "participant_key", "wait_for_predecessors"]


def name_prefix(name: bytes | str) -> bytes:
    """``name`` as bytes with the ``/`` that etcd's Go recipes always append.

    ``str`` is UTF-8 encoded; an empty name or anything but ``bytes``/``str`` is a caller mistake.
    """
    if isinstance(name, str):
        raw = name.encode("utf-8")
    elif isinstance(name, bytes):
        raw = name
    else:
        raise TypeError(f"a recipe name must be bytes or str, not {type(name).__name__}")
    if not raw:
        raise ValueError("a recipe name must not be empty")
    return raw + b"/"


def participant_key(prefix: bytes, lease_id: int) -> bytes:
    """The key of the participant holding ``lease_id`` under ``prefix`` (Go's ``fmt.Sprintf("%s%x")``)."""
    return prefix + format(lease_id, "x").encode("ascii")


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
    session: Session, prefix: bytes, my_key: bytes, my_rev: int
) -> tuple[ResponseHeader, KeyValue | None]:
    """In one transaction: the nearest older participant, and a check that our key is still ours."""
    resp = await session.client.txn(
        success=[
            Op.get(
                prefix,
                prefix=True,
                sort_target=SortTarget.CREATE,
                sort_order=SortOrder.DESCEND,
                max_create_revision=my_rev - 1,
                limit=1,
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
    return resp.header, older.kvs[0] if older.kvs else None


async def wait_for_predecessors(
    session: Session, prefix: bytes, my_key: bytes, my_rev: int, stats: WaitStatistics
) -> ResponseHeader:
    """Wait until no participant under ``prefix`` is older than ``my_rev``; return the confirming header.

    Raises:
        SessionExpiredError: the session expired, or our key vanished, while waiting.
    """
    while True:
        if session.expired:
            raise session.expired_error()
        stats.queries += 1
        header, predecessor = await _query(session, prefix, my_key, my_rev)
        if predecessor is None:
            return header
        start = header.revision + 1
        result = await _race(
            functools.partial(_until_deleted, session, predecessor.key, start, stats),
            functools.partial(_own_key_deleted, session, my_key, start),
            functools.partial(_session_expired, session),
        )
        if result is not None:
            raise result
        stats.wakeups += 1
