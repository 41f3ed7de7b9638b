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
- a compacted watch history is not an error: it re-queries (etcd #9715);
- the read of the queue and of our own key happen in one transaction at one revision, so "no older key
  and our key still exists with our create revision" is checked atomically before returning;
- its watches start at revision 0, not at the query's revision + 1, so etcd serves them from its
  *synced* watcher group at once; a start revision in the past puts a watch in the *unsynced* group
  that etcd catches up only every 100 ms, so a write landing between the query and the watch's
  creation would delay the hand-off by up to 100 ms. Instead, the wait checks the revision each watch
  was established at, and re-queries once if a watch began after the query (:class:`KeyWatches`).
  The watches stay open across re-queries as long as their keys still matter.

Barrier and DoubleBarrier wait through :class:`KeyWatches` the same way.
"""

from __future__ import annotations

import enum
import functools
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Final, TypeVar, final

import attrs
import trio

from ._session import Session
from .client import (
    Client,
    CompactedError,
    Compare,
    EtcdError,
    Event,
    EventType,
    KeyValue,
    Op,
    RangeResponse,
    ResponseHeader,
    SessionExpiredError,
    SortOrder,
    SortTarget,
    TxnResponse,
    Watch,
)

__all__ = [
    "REREAD",
    "KeyWatches",
    "Reread",
    "WaitStatistics",
    "claim_index",
    "is_delete",
    "name_prefix",
    "older_seen",
    "own_key_deleted",
    "participant_key",
    "recipe_name",
    "release_index",
    "remove_own_key",
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


def older_seen(
    header: ResponseHeader, newest: RangeResponse, my_key: bytes, window: int = 1
) -> tuple[ResponseHeader, tuple[KeyValue, ...]]:
    """What the transaction that created ``my_key`` saw, as :func:`wait_for_predecessors` takes it
    (``seen=``): the header and the ``window`` nearest older keys, nearest first. ``newest`` is that
    transaction's read of the ``window + 1`` newest keys (by create revision, descending) under the
    prefix: ours, since nothing is newer than that transaction, and the ones we wait on. (The read
    is spelled out in each recipe: its op type is private to the client.)"""
    return header, tuple(kv for kv in newest.kvs if kv.key != my_key)[:window]


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
        queries: transactions issued to find the predecessor (``rereads`` included).
        watches: watches opened on a predecessor (one stays open while it remains the predecessor).
        wakeups: times a predecessor's deletion woke the waiter.
        watch_events: watch events received while waiting.
        rereads: queries made only because the watches could not vouch for the time since the last
            one: a watch was established after it (a write landed in between), or lost its history
            to compaction while it was resuming.
    """

    queries: int = 0
    watches: int = 0
    wakeups: int = 0
    watch_events: int = 0
    rereads: int = 0


class Reread(enum.Enum):
    """What :meth:`KeyWatches.wait` returns when the caller must read again (see there)."""

    REREAD = "reread"


#: See :class:`Reread`.
REREAD: Final = Reread.REREAD

_T = TypeVar("_T")


async def _race(*fns: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``fns`` concurrently until the first returns; return what it returned.

    Each function reports expected outcomes by returning them (an exception object included); only
    bugs escape as exceptions, so no ExceptionGroup reaches the caller on the normal paths.
    """
    outcome: list[_T] = []
    async with trio.open_nursery() as nursery:
        for fn in fns:

            async def run(fn: Callable[[], Awaitable[_T]] = fn) -> None:
                result = await fn()
                if not outcome:
                    outcome.append(result)
                nursery.cancel_scope.cancel()

            nursery.start_soon(run)
    assert outcome  # the nursery ends early only by an outer cancellation, which raised above
    return outcome[0]


async def _session_expired(session: Session) -> EtcdError:
    await session.wait_expired()
    return session.expired_error()


def is_delete(event: Event) -> bool:
    """Whether ``event`` is a DELETE (the ``wanted`` of most waits)."""
    return event.type is EventType.DELETE


@final
class KeyWatches:
    """Watches of single keys for a read-then-wait loop, kept open across its reads.

    Use as ``async with KeyWatches(client, stats) as watches:`` around the loop: read (at revision
    ``R``), :meth:`watch_only` the keys the read says to wait for, :meth:`wait` with ``after=R``,
    read again.

    Every watch starts at revision 0 ("from when etcd establishes it"), never at ``R + 1``. etcd
    puts a watch whose start revision is at or below its current revision into its *unsynced*
    group, which it catches up only every 100 ms: if any write lands between the read and the
    watch's creation (typically another contender enqueueing), the awaited event would come up to
    100 ms late. A start-0 watch is synced at once. It covers every event after the revision ``r``
    it was established at (:meth:`~etcdsync.client.Watch.established`), so what it may miss is
    ``(R, r]``: :meth:`wait` first waits until each watch is established and returns
    :data:`REREAD` if one was established after ``R``. The caller then reads again, at a revision
    ``R' >= r`` (reads are linearizable, and ``r`` was committed before the read began), and waits
    again on the *same* watches, which cover everything after ``R'``. Events at or below the read's
    revision are skipped: the read already reflects them.

    Every outcome of :meth:`wait` must make the caller read again or end its wait: when several
    watches report at once, only the first outcome is returned.
    """

    def __init__(self, client: Client, stats: WaitStatistics) -> None:
        self._client = client
        self._stats = stats
        self._open: dict[bytes, tuple[AsyncExitStack, Watch]] = {}
        self._failed: set[bytes] = set()  # watches that lost their history: reopened by watch_only

    async def __aenter__(self) -> KeyWatches:
        """Nothing is opened yet. A checkpoint."""
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close every watch (no checkpoint: leaving a watch only queues its cancel)."""
        await self.watch_only(())

    async def watch_only(self, keys: Iterable[bytes], *, own: bytes | None = None) -> None:
        """Watch exactly ``keys`` and ``own``: keep those already watched, open the others, close the rest.

        ``own`` (the waiter's own key) is not counted in the statistics' ``watches``. A checkpoint
        when a watch is opened.
        """
        wanted = dict.fromkeys(keys)
        if own is not None:
            wanted[own] = None
        for key in [k for k in self._open if k not in wanted or k in self._failed]:
            stack, _ = self._open.pop(key)
            self._failed.discard(key)
            await stack.aclose()
        for key in wanted:
            if key not in self._open:
                stack = AsyncExitStack()
                self._open[key] = (stack, await stack.enter_async_context(self._client.watch(key)))
                if key != own:
                    self._stats.watches += 1

    async def wait(
        self, after: int, wanted: Callable[[Event], bool], *, session: Session | None = None
    ) -> Event | Reread | BaseException:
        """The first event after revision ``after`` on a watched key that ``wanted`` accepts.

        Returns that event (a DELETE also closes its key's watch); :data:`REREAD` if a watch was
        established after ``after`` (or lost its history to compaction while resuming): read again
        and wait again; or an error for the caller to raise: ``session`` expired, etcd ended a watch
        (e.g. permission denied), or the client was closed. A checkpoint.
        """
        fns: list[Callable[[], Awaitable[Event | Reread | BaseException]]] = [
            functools.partial(self._next, key, watch, after, wanted) for key, (_, watch) in self._open.items()
        ]
        if session is not None:
            fns.append(functools.partial(_session_expired, session))
        outcome = await _race(*fns)
        if isinstance(outcome, Event) and outcome.type is EventType.DELETE:
            # That incarnation of the key is gone and a new one would be newer than any waiter: stop
            # the watch now rather than at the next watch_only, so it sees no re-creation meanwhile.
            entry = self._open.pop(outcome.kv.key, None)
            if entry is not None:
                await entry[0].aclose()
        return outcome

    async def _next(
        self, key: bytes, watch: Watch, after: int, wanted: Callable[[Event], bool]
    ) -> Event | Reread | BaseException:
        try:
            if await watch.established() > after:
                return REREAD  # events in (after, established] may be missing
            async for resp in watch:
                self._stats.watch_events += len(resp.events)
                for event in resp.events:
                    if event.kv.mod_revision > after and wanted(event):
                        return event
        except CompactedError:
            self._failed.add(key)  # a resume found its history compacted (etcd #9715): re-query
            return REREAD
        except (EtcdError, trio.ClosedResourceError) as exc:
            return exc
        raise AssertionError("a watch ended without an error")  # pragma: no cover - watches do not end


def _queried(
    session: Session, resp: TxnResponse, my_key: bytes, my_rev: int
) -> tuple[ResponseHeader, tuple[KeyValue, ...]]:
    """The header and the older participants from a query of :func:`wait_for_predecessors`.

    Raises:
        SessionExpiredError: our key is gone, or is not ours any more.
    """
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


def own_key_deleted(key: bytes) -> SessionExpiredError:
    """The error for "our queue key was deleted while we waited"."""
    return SessionExpiredError(
        f"our queue key {key!r} was deleted while waiting (lease expired or key removed)"
    )


async def wait_for_predecessors(
    session: Session,
    prefix: bytes,
    my_key: bytes,
    my_rev: int,
    stats: WaitStatistics,
    *,
    window: int = 1,
    seen: tuple[ResponseHeader, Sequence[KeyValue]] | None = None,
) -> ResponseHeader:
    """Wait until fewer than ``window`` participants under ``prefix`` are older than ``my_rev``; return
    the confirming header.

    With ``window=1`` (Mutex, Election) that is "no older participant", watching only the nearest.
    With ``window=N`` (Semaphore) it watches the N newest older keys: only their deletion can change
    the answer, since deleting an older key outside them leaves N older keys, and newer keys never
    count (``shared/notes/etcd-reference.md`` §2.7). The watches (see :class:`KeyWatches`) stay open
    while their keys stay in the window.

    ``seen`` is what a read that also saw our key at ``my_rev`` (the transaction that created it,
    typically) found: its header and the ``window`` nearest older keys, nearest first. The wait then
    starts from it instead of querying.

    Raises:
        SessionExpiredError: the session expired, or our key vanished, while waiting.
    """
    # One transaction, built once and sent as is on every query: the ``window`` nearest older
    # participants, and our key (to check that it is still ours).
    query = (
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
    )
    async with KeyWatches(session.client, stats) as watches:
        while True:
            if session.expired:
                raise session.expired_error()
            if seen is not None:
                (header, older), seen = seen, None
            else:
                stats.queries += 1
                header, older = _queried(session, await session.client.txn(success=query), my_key, my_rev)
            if len(older) < window:
                return header
            await watches.watch_only([kv.key for kv in older], own=my_key)
            outcome = await watches.wait(header.revision, is_delete, session=session)
            if outcome is REREAD:
                stats.rereads += 1
            elif isinstance(outcome, Event):
                if outcome.kv.key == my_key:
                    raise own_key_deleted(my_key)
                stats.wakeups += 1
                if window == 1:
                    # Our predecessor is gone, so we almost surely hold now: stop watching our own
                    # key before the confirming query, so that the holder's prompt release does not
                    # race its cancel (an event etcd would send for nothing). In the rare case that
                    # an older key remains, the next round opens the watches again.
                    await watches.watch_only(())
            else:
                assert isinstance(outcome, BaseException)
                raise outcome
