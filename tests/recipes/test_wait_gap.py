"""The read-then-watch gap of the recipes' waits, reproduced without timing.

A wait reads (at revision R), then watches what the read says to wait for. Its watches start at
revision 0, which etcd serves from its *synced* watcher group at once; a start revision R + 1 that a
write has already overtaken lands in the *unsynced* group, which etcd catches up only every 100 ms
(a 100 ms hand-off stall). A start-0 watch covers only what happens after it is established, so when
a write lands between the read and the watch the wait must read again. These tests put a write (or
the awaited change itself) exactly into that gap, by running it when the waiter's read returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trio
import trio.testing

import etcdsync
from etcdsync import Barrier, DoubleBarrier, Election, Mutex, Semaphore, SessionExpiredError, open_session
from etcdsync.client import Client, Watch
from etcdsync.testing import metric

SLOW_WATCHERS = "etcd_debugging_mvcc_slow_watcher_total"


def _no_compare(args: tuple[object, ...], kwargs: dict[str, object]) -> bool:
    """A transaction without compares: the query of ``wait_for_predecessors`` (not an enqueue)."""
    return not kwargs.get("compare", args[0] if args else ())


class Gap:
    """Spies on the waiter's client: records each watch's start revision, and runs ``hook`` once,
    right after the first call of ``method`` that ``when`` picks has returned (before the caller sees
    the answer, so before it can open a watch)."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        client: Client,
        hook: Callable[[], Awaitable[object]],
        *,
        method: str = "txn",
        when: Callable[[tuple[object, ...], dict[str, object]], bool] = _no_compare,
    ) -> None:
        self.starts: list[int] = []
        self.fired = False
        real_call = getattr(client, method)
        real_watch = client.watch

        async def call(*args: object, **kwargs: object) -> object:
            resp = await real_call(*args, **kwargs)
            if not self.fired and when(args, kwargs):
                self.fired = True
                await hook()
            return resp

        def watch(key: bytes, *args: object, **kwargs: object) -> AbstractAsyncContextManager[Watch]:
            start = kwargs.get("start_revision", 0)
            assert isinstance(start, int)
            self.starts.append(start)
            return real_watch(key, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(client, method, call)
        monkeypatch.setattr(client, "watch", watch)


@asynccontextmanager
async def waiter_client(endpoint: str) -> AsyncIterator[Client]:
    """A second client for the waiter, so that only the waiter's calls are spied on."""
    async with etcdsync.open_client(endpoint) as c:
        yield c


@asynccontextmanager
async def holder_and_waiter(
    client: Client, endpoint: str
) -> AsyncIterator[tuple[Client, etcdsync.Session, etcdsync.Session]]:
    """The waiter's own client, a session on ``client`` (the holder's) and one on the waiter's."""
    async with (
        waiter_client(endpoint) as wclient,
        open_session(client, ttl=10) as holder,
        open_session(wclient, ttl=10) as waiter,
    ):
        yield wclient, holder, waiter


class Queued:
    """One queue-based recipe under one interface: Mutex, Election, Semaphore with limit 1.

    ``read`` picks the waiter's read that the wait starts from: all three learn their predecessors
    in the transaction that creates their key (the first one). ``queries`` is how many queries a
    wait needs with nothing in the gap, if woken once.
    """

    def __init__(self, kind: str, session: etcdsync.Session, name: bytes) -> None:
        self.kind = kind
        self.obj: Mutex | Election | Semaphore
        self.read: Callable[[tuple[object, ...], dict[str, object]], bool] = lambda *_: True
        self.queries = 1
        if kind == "mutex":
            self.obj = Mutex(session, name)
        elif kind == "election":
            self.obj = Election(session, name)
        else:
            self.obj = Semaphore(session, name, 1)

    async def acquire(self) -> None:
        if isinstance(self.obj, Election):
            await self.obj.campaign(b"v")
        else:
            await self.obj.acquire()

    async def release(self) -> None:
        if isinstance(self.obj, Election):
            await self.obj.resign()
        else:
            await self.obj.release()

    def stats(self) -> etcdsync.WaitStatistics:
        return self.obj.statistics()


KINDS = ["mutex", "election", "semaphore"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_write_between_the_query_and_the_watch_costs_one_reread_and_no_stall(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    name = etcd_prefix + b"q"
    async with holder_and_waiter(client, etcd_endpoint) as (wclient, s1, s2):
        holder, waiter = Queued(kind, s1, name), Queued(kind, s2, name)
        await holder.acquire()
        # Another contender enqueueing, as it were: a write right after the waiter's query.
        gap = Gap(monkeypatch, wclient, lambda: client.put(etcd_prefix + b"noise", b"x"), when=waiter.read)
        acquired = trio.Event()

        async def wait() -> None:
            await waiter.acquire()
            acquired.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            while waiter.stats().rereads < 1:  # re-queried: its watches began after the read
                await trio.sleep(0.01)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            assert gap.fired and not acquired.is_set()
            # No watcher in etcd's unsynced group (served every 100 ms): every watch started "now".
            assert await metric(etcd_endpoint, SLOW_WATCHERS) == 0
            await holder.release()
        stats = waiter.stats()
        assert gap.starts and set(gap.starts) == {0}
        assert (stats.queries, stats.rereads, stats.wakeups) == (waiter.queries + 1, 1, 1)
        assert stats.watches == 1  # the predecessor's watch was kept across the re-query
        assert await metric(etcd_endpoint, SLOW_WATCHERS) == 0
        await waiter.release()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_predecessor_deleted_between_the_query_and_the_watch_is_not_missed(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    name = etcd_prefix + b"q"
    async with holder_and_waiter(client, etcd_endpoint) as (wclient, s1, s2):
        holder, waiter = Queued(kind, s1, name), Queued(kind, s2, name)
        await holder.acquire()
        gap = Gap(monkeypatch, wclient, holder.release, when=waiter.read)  # the awaited deletion
        await waiter.acquire()  # (the test's deadline catches a hang)
        stats = waiter.stats()
        assert gap.fired and set(gap.starts) == {0}
        assert (stats.queries, stats.rereads, stats.wakeups) == (waiter.queries, 1, 0)
        await waiter.release()


async def test_our_key_deleted_between_the_query_and_the_watch_ends_the_wait(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = etcd_prefix + b"lock"
    async with holder_and_waiter(client, etcd_endpoint) as (wclient, s1, s2):
        holder, waiter = Mutex(s1, name), Mutex(s2, name)
        await holder.acquire()
        Gap(monkeypatch, wclient, lambda: client.delete(waiter.key), when=lambda *_: True)
        with pytest.raises(SessionExpiredError, match="is gone"):
            await waiter.acquire()
        assert [kv.key for kv in (await client.range(name + b"/", prefix=True)).kvs] == [holder.key]
        await holder.release()


@pytest.mark.parametrize("release_in_gap", [False, True])
async def test_barrier_wait_across_the_gap(
    client: Client,
    etcd_endpoint: str,
    etcd_prefix: bytes,
    monkeypatch: pytest.MonkeyPatch,
    release_in_gap: bool,
) -> None:
    key = etcd_prefix + b"freeze"
    await Barrier(client, key).hold()
    async with waiter_client(etcd_endpoint) as wclient:
        if release_in_gap:
            hook: Callable[[], Awaitable[object]] = Barrier(client, key).release
        else:
            hook = lambda: client.put(etcd_prefix + b"noise", b"x")  # noqa: E731
        gap = Gap(monkeypatch, wclient, hook, method="range", when=lambda *_: True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(Barrier(wclient, key).wait)
            if not release_in_gap:
                while wclient.statistics().watchers < 1:
                    await trio.sleep(0.01)
                await trio.testing.wait_all_tasks_blocked(cushion=0.05)
                assert await metric(etcd_endpoint, SLOW_WATCHERS) == 0
                await Barrier(client, key).release()
        assert gap.fired and set(gap.starts) == {0}


@pytest.mark.deadline(20)
async def test_barrier_released_and_held_again_in_the_gap_lets_the_waiter_through(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As with Go's watch from the read's revision + 1: a release the waiter could have seen opens
    # the barrier for it, even if the key is held again before its watch starts.
    key = etcd_prefix + b"freeze"
    await Barrier(client, key).hold()

    async def release_and_hold() -> None:
        await Barrier(client, key).release()
        await Barrier(client, key).hold()

    async with waiter_client(etcd_endpoint) as wclient:
        gap = Gap(monkeypatch, wclient, release_and_hold, method="range", when=lambda *_: True)
        await Barrier(wclient, key).wait()  # (a hang is caught by the test's deadline)
        assert gap.fired and set(gap.starts) == {0}
    assert (await client.range(key)).kvs  # held again, and the waiter passed anyway
    await Barrier(client, key).release()


async def test_double_barrier_mark_in_the_gap_is_not_missed(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first entrant reads the participants; before it watches its key, the second enters and
    marks the round (the very event it waits for)."""
    name = etcd_prefix + b"dbar"
    async with holder_and_waiter(client, etcd_endpoint) as (wclient, s1, s2):
        first, second = DoubleBarrier(s2, name, 2), DoubleBarrier(s1, name, 2)
        gap = Gap(monkeypatch, wclient, second.enter, when=lambda *_: True)  # after the enter txn
        await first.enter()
        assert gap.fired and set(gap.starts) == {0}
        assert first.round == second.round
        assert (first.statistics().rereads, first.statistics().wakeups) == (1, 0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first.leave)
            nursery.start_soon(second.leave)


# -- Election.observe: the same gap, with every proclamation kept ----------------------------------------


async def _next_values(leaders: etcdsync.LeaderStream, n: int) -> list[bytes | None]:
    values: list[bytes | None] = []
    for _ in range(n):
        kv = await leaders.__anext__()
        values.append(None if kv is None else kv.value)
    return values


async def test_observe_reports_proclamations_made_in_the_gap_in_order(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = etcd_prefix + b"e"
    async with holder_and_waiter(client, etcd_endpoint) as (wclient, s1, s2):
        leader = Election(s1, name)
        await leader.campaign(b"v1")

        async def proclaim_twice() -> None:
            await leader.proclaim(b"v2")
            await leader.proclaim(b"v3")

        gap = Gap(monkeypatch, wclient, proclaim_twice, method="range", when=lambda *_: True)
        async with Election(s2, name).observe() as leaders:
            # v2 and v3 landed after the observer's read and before its watch: read back, in order.
            assert await _next_values(leaders, 3) == [b"v1", b"v2", b"v3"]
            await leader.proclaim(b"v4")  # and the watch goes on from there, without repeats
            assert await _next_values(leaders, 1) == [b"v4"]
        assert gap.fired and set(gap.starts) == {0}
        assert await metric(etcd_endpoint, SLOW_WATCHERS) == 0
        await leader.resign()


async def test_observe_sees_the_next_leader_when_the_leader_resigns_in_the_gap(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = etcd_prefix + b"e"
    async with (
        waiter_client(etcd_endpoint) as wclient,
        open_session(client, ttl=10) as s1,
        open_session(client, ttl=10) as s2,
        open_session(wclient, ttl=10) as s3,
        trio.open_nursery() as nursery,
    ):
        first, second = Election(s1, name), Election(s2, name)
        await first.campaign(b"first")
        nursery.start_soon(second.campaign, b"second")  # waits behind the first
        while (await client.range(name + b"/", prefix=True, count_only=True)).count < 2:
            await trio.sleep(0.01)
        gap = Gap(monkeypatch, wclient, first.resign, method="range", when=lambda *_: True)
        async with Election(s3, name).observe() as leaders:
            assert await _next_values(leaders, 2) == [b"first", b"second"]
        assert gap.fired and set(gap.starts) == {0}
        await second.resign()


async def test_observe_sees_a_leader_elected_in_the_gap_after_a_vacancy(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = etcd_prefix + b"e"
    async with holder_and_waiter(client, etcd_endpoint) as (wclient, s1, s2):
        leader = Election(s1, name)
        gap = Gap(monkeypatch, wclient, lambda: leader.campaign(b"v1"), method="range", when=lambda *_: True)
        async with Election(s2, name).observe() as leaders:
            assert await _next_values(leaders, 2) == [None, b"v1"]
        assert gap.fired and set(gap.starts) == {0}
        await leader.resign()
