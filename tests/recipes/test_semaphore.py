"""Semaphore against a real etcd: the limit, FIFO, the N-window wait's herd bound, fencing, loss,
cancellation, and a two-process run checked against the replayed history of the keys."""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from test_processes import WORKER, spawn  # tests/recipes is on sys.path (pytest's prepend import mode)

from etcdsync import LockReleasedError, Mutex, Session, SessionExpiredError, open_session
from etcdsync._semaphore import Semaphore, SemaphoreLimitMismatchError
from etcdsync.client import Client, Event, EventType, Op

TTL = 10


async def _session_task(client: Client, *, task_status: trio.TaskStatus[Session]) -> None:
    async with open_session(client, ttl=TTL) as session:
        task_status.started(session)
        await trio.sleep_forever()


@asynccontextmanager
async def sessions(client: Client, n: int) -> AsyncIterator[list[Session]]:
    async with trio.open_nursery() as nursery:
        yield [await nursery.start(_session_task, client) for _ in range(n)]
        nursery.cancel_scope.cancel()


async def slot_keys(client: Client, name: bytes) -> list[bytes]:
    resp = await client.range(name + b"/", prefix=True, keys_only=True)
    return [kv.key for kv in sorted(resp.kvs, key=lambda kv: kv.create_revision)]


async def wait_slots(client: Client, name: bytes, n: int) -> None:
    while len(await slot_keys(client, name)) != n:
        await trio.sleep(0.01)


async def wait_until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await trio.sleep(0.01)


async def _acquire_then_set(sem: Semaphore, event: trio.Event) -> None:
    await sem.acquire()
    event.set()


async def test_uncontended_acquire_release_and_key_layout(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"sem"
    async with open_session(client, ttl=TTL) as session:
        sem = Semaphore(session, name, 3)
        assert sem.key == b"" and not sem.held
        await sem.acquire()
        assert sem.key == name + b"/" + format(session.lease_id, "x").encode()
        kv = await client.get(sem.key)
        assert kv is not None and kv.lease == session.lease_id
        assert sem.fencing_token == kv.create_revision == sem.revision
        limit = await client.get(name)
        assert limit is not None and limit.value == b"3" and limit.lease == 0
        assert sem.statistics().queries == 0  # a free permit: no wait
        assert [h.key for h in await sem.holders()] == [sem.key]
        await sem.release()
        assert await slot_keys(client, name) == []
        assert not sem.held and sem.revision == 0
        with trio.testing.assert_checkpoints(), pytest.raises(LockReleasedError):
            await sem.release()
        with pytest.raises(LockReleasedError):
            _ = sem.fencing_token
        with pytest.raises(LockReleasedError):
            sem.is_owner()
        assert await client.get(name) is not None  # the limit stays


async def test_caller_mistakes(client: Client, etcd_prefix: bytes) -> None:
    async with open_session(client, ttl=TTL) as session:
        with pytest.raises(ValueError, match="^limit must be >= 1$"):
            Semaphore(session, etcd_prefix + b"s", 0)
        with pytest.raises(TypeError, match="^limit must be an int, not str$"):
            Semaphore(session, etcd_prefix + b"s", "2")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="^limit must be an int, not bool$"):
            Semaphore(session, etcd_prefix + b"s", True)
        with pytest.raises(ValueError, match="^a recipe name must not be empty$"):
            Semaphore(session, "", 2)
        with pytest.raises(ValueError, match="^cleanup_timeout must be > 0$"):
            Semaphore(session, "s", 2, cleanup_timeout=0)
        with pytest.raises(TypeError, match="^Semaphore needs a Session, not Client$"):
            Semaphore(client, "s", 2)  # type: ignore[arg-type]
        sem = Semaphore(session, etcd_prefix + b"s", 2)
        await sem.acquire()
        with pytest.raises(RuntimeError, match="not re-entrant"):
            await sem.acquire()
        with pytest.raises(RuntimeError, match="not re-entrant"):
            await sem.try_acquire()
        await sem.release()


async def test_limit_mismatch_is_refused_and_leaves_no_key(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"sem"
    async with sessions(client, 2) as (s1, s2):
        first = Semaphore(s1, name, 3)
        await first.acquire()
        for acquire in (Semaphore(s2, name, 2).acquire, Semaphore(s2, name, 4).try_acquire):
            with pytest.raises(SemaphoreLimitMismatchError, match="has limit '3', not") as info:
                await acquire()
            assert info.value.stored == b"3"
            assert await slot_keys(client, name) == [first.key]
        await first.release()
        # Also when nobody holds a permit, and when the stored value is not a number.
        with pytest.raises(SemaphoreLimitMismatchError):
            await Semaphore(s2, name, 2).acquire()
        await client.put(etcd_prefix + b"odd", b"many")
        with pytest.raises(SemaphoreLimitMismatchError, match="has limit 'many', not 2"):
            await Semaphore(s2, etcd_prefix + b"odd", 2).acquire()
        assert await slot_keys(client, name) == []
        assert await slot_keys(client, etcd_prefix + b"odd") == []


@pytest.mark.deadline(30)  # a design that watches only the key `limit` places ahead hangs here
async def test_a_permit_freed_by_any_holder_goes_to_the_first_waiter(
    client: Client, etcd_prefix: bytes
) -> None:
    """Worked example of the design notes (limit 2; a, b hold; c, d, e wait in that order)."""
    name = etcd_prefix + b"sem"
    async with sessions(client, 5) as ss:
        a, b, c, d, e = (Semaphore(s, name, 2) for s in ss)
        await a.acquire()
        await b.acquire()
        got = {sem: trio.Event() for sem in (c, d, e)}
        async with trio.open_nursery() as nursery:
            for i, sem in enumerate((c, d, e)):  # one at a time, so create revisions are c < d < e
                nursery.start_soon(_acquire_then_set, sem, got[sem])
                await wait_slots(client, name, 3 + i)
            await wait_until(lambda: all(s.statistics().watches >= 2 for s in (c, d, e)))
            await trio.sleep(0.2)
            assert not any(event.is_set() for event in got.values())
            e_before = e.statistics()
            await b.release()  # not the oldest holder: c must get it now, with a still holding
            await got[c].wait()
            assert a.held and c.held
            await wait_until(
                lambda: d.statistics().queries >= 1
            )  # d re-read its window {a, c} (its first read was the enqueue)
            await trio.sleep(0.2)
            assert not got[d].is_set() and not got[e].is_set()
            assert e.statistics().wakeups == e_before.wakeups  # e's window {c, d} did not change
            await a.release()
            await got[d].wait()
            await trio.sleep(0.2)
            assert not got[e].is_set()
            assert e.statistics().wakeups == e_before.wakeups
            assert [h.key for h in await c.holders()] == [c.key, d.key]
            await c.release()
            await got[e].wait()
        for sem in (d, e):
            await sem.release()


@pytest.mark.deadline(90)
async def test_a_release_wakes_at_most_limit_waiters(client: Client, etcd_prefix: bytes) -> None:
    """Herd bound: with many waiters queued and limit L, a release wakes at most L of them (those whose
    window holds the released key), and exactly one acquires."""
    name, limit, n = etcd_prefix + b"sem", 3, 24
    async with sessions(client, limit + n) as ss:
        holders = [Semaphore(s, name, limit) for s in ss[:limit]]
        for sem in holders:  # in order: h0 < h1 < h2
            await sem.acquire()
        waiters = [Semaphore(s, name, limit) for s in ss[limit:]]
        acquired: list[Semaphore] = []
        async with trio.open_nursery() as nursery:
            for sem in waiters:

                async def wait(sem: Semaphore = sem) -> None:
                    await sem.acquire()
                    acquired.append(sem)

                nursery.start_soon(wait)
            await wait_slots(client, name, limit + n)
            await wait_until(lambda: sum(w.statistics().watches for w in waiters) >= limit * n)
            await trio.sleep(0.3)  # let the queue settle; nothing should be moving

            async def release_and_count(sem: Semaphore, expect_woken: int) -> None:
                before = [w.statistics() for w in waiters]
                had = len(acquired)

                def woken() -> int:
                    return sum(
                        w.statistics().wakeups > b.wakeups for w, b in zip(waiters, before, strict=True)
                    )

                await sem.release()
                await wait_until(lambda: len(acquired) == had + 1 and woken() >= expect_woken)
                await trio.sleep(0.3)  # a herd (or a second acquisition) would show up now
                after = [w.statistics() for w in waiters]
                events = sum(a.watch_events - b.watch_events for b, a in zip(before, after, strict=True))
                queries = sum(a.queries - b.queries for b, a in zip(before, after, strict=True))
                assert len(acquired) == had + 1  # exactly one acquired
                assert woken() == events == queries == expect_woken <= limit

            # The oldest holder is in one waiter's window; the newest holder (the waiter that just got
            # its permit, third in line) in the windows of the next three.
            await release_and_count(holders[0], 1)
            await release_and_count(acquired[0], 3)
            assert len(await sem.holders()) == limit
            nursery.cancel_scope.cancel()


@pytest.mark.deadline(120)
async def test_two_processes_never_exceed_the_limit_and_grant_in_order(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    """12 tasks in 2 processes, limit 3, 300 acquisitions. Afterwards the history of every key is
    replayed revision by revision: the guarded records the holders wrote (what each task *believed*)
    never number more than 3, each belongs to a key that holds by the invariant at every revision it
    exists, and permits were granted in create-revision order."""
    name, records, limit, tasks, rounds = etcd_prefix + b"sem", etcd_prefix + b"records/", 3, 6, 25
    start = (await client.put(etcd_prefix + b"start", b"")).header.revision
    sections: list[tuple[int, int, int]] = []
    inside = max_inside = 0

    async def local_worker() -> None:
        nonlocal inside, max_inside
        async with open_session(client, ttl=TTL) as session:
            sem = Semaphore(session, name, limit)
            for _ in range(rounds):
                async with sem:
                    inside += 1
                    max_inside = max(max_inside, inside)
                    record = records + b"%d" % sem.fencing_token
                    began = await client.put(record, b"in", guard=sem.is_owner())
                    await trio.sleep(0.001)
                    ended = await client.delete(record, guard=sem.is_owner())
                    sections.append((sem.fencing_token, began.header.revision, ended.header.revision))
                    inside -= 1

    async with spawn(
        sys.executable,
        WORKER,
        "semaphore",
        etcd_endpoint,
        name.decode(),
        str(limit),
        records.decode(),
        str(tasks),
        str(rounds),
    ) as (process, lines):

        async def read_child() -> None:
            for _ in range(tasks * rounds):
                r = await lines.json()
                token, began, ended = r["token"], r["start"], r["end"]
                assert isinstance(token, int) and isinstance(began, int) and isinstance(ended, int)
                sections.append((token, began, ended))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_child)
            for _ in range(tasks):
                nursery.start_soon(local_worker)
        assert await process.wait() == 0
    assert max_inside <= limit
    assert len(sections) == 2 * tasks * rounds
    assert len({token for token, _, _ in sections}) == len(sections)
    # What the tasks believed: at no revision were more than `limit` (start, end) intervals open.
    changes = sorted([(began, 1) for _, began, _ in sections] + [(ended, -1) for _, _, ended in sections])
    assert max(itertools.accumulate(change for _, change in changes)) <= limit

    # Replay the whole history of the test's keys.
    end_key = etcd_prefix + b"end"
    await client.put(end_key, b"")
    slots: dict[bytes, int] = {}  # slot key -> create revision
    live: set[int] = set()  # tokens with a record
    granted: list[int] = []  # create revisions of slot keys, in the order they came to hold a permit
    ever_held: set[int] = set()
    max_live = 0
    history: list[Event] = []  # every event, in revision order (a response may carry many revisions)
    async with client.watch(etcd_prefix, prefix=True, start_revision=start + 1) as events:
        async for resp in events:
            history.extend(resp.events)
            if any(e.kv.key == end_key for e in resp.events):
                break
    for revision, group in itertools.groupby(history, key=lambda e: e.kv.mod_revision):
        for event in group:
            key = event.kv.key
            if key.startswith(name + b"/"):
                if event.type is EventType.PUT:
                    slots.setdefault(key, event.kv.create_revision)
                else:
                    del slots[key]
            elif key.startswith(records):
                token = int(key[len(records) :])
                (live.add if event.type is EventType.PUT else live.discard)(token)
        # The state at this revision: by the invariant, the keys with fewer than `limit` older keys hold.
        holding = sorted(slots.values())[:limit]
        for rev in holding:
            if rev not in ever_held:
                ever_held.add(rev)
                granted.append(rev)
        max_live = max(max_live, len(live))
        assert live <= set(holding), (revision, live, holding)
    assert max_live <= limit
    assert granted == sorted(granted)  # FIFO: permits granted in create-revision order
    assert sorted(granted) == sorted(token for token, _, _ in sections)  # each acquisition was granted once
    assert max_live == limit  # and the limit was actually reached (the test exercised contention)


async def test_cancelled_acquire_leaves_no_key(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"sem"
    async with sessions(client, 3) as (s1, s2, s3):
        holders = [Semaphore(s1, name, 2), Semaphore(s2, name, 2)]
        for sem in holders:
            await sem.acquire()
        waiter = Semaphore(s3, name, 2)
        for delay in (0, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.05, 0.2):
            with trio.move_on_after(delay):
                await waiter.acquire()
            assert not waiter.held
            assert await slot_keys(client, name) == [h.key for h in holders], delay
            # Also on a fresh name, where the first acquire stores the limit first.
            fresh = Semaphore(s3, etcd_prefix + b"fresh%d" % int(delay * 10000), 1)
            with trio.move_on_after(delay):
                await fresh.acquire()
            assert await slot_keys(client, fresh.prefix[:-1]) == ([fresh.key] if fresh.held else []), delay
            if fresh.held:  # the acquire completed before the deadline
                await fresh.release()
        with pytest.raises(trio.TooSlowError):
            with trio.fail_after(0.1):
                await waiter.acquire()
        assert await slot_keys(client, name) == [h.key for h in holders]
        await holders[1].release()
        await waiter.acquire()  # still usable
        await waiter.release()
        await holders[0].release()


async def test_try_acquire(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"sem"
    async with sessions(client, 3) as (s1, s2, s3):
        a, b, c = Semaphore(s1, name, 2), Semaphore(s2, name, 2), Semaphore(s3, name, 2)
        await a.try_acquire()
        await b.try_acquire()
        with pytest.raises(trio.WouldBlock):
            await c.try_acquire()
        assert await slot_keys(client, name) == [a.key, b.key]
        await a.release()
        await c.try_acquire()
        assert c.held and c.fencing_token > b.fencing_token
        await b.release()
        await c.release()


async def test_several_objects_on_one_session(client: Client, etcd_prefix: bytes) -> None:
    """Each object holds its own permit, under keys <lease>, <lease>-1, ...; the limit still holds."""
    name = etcd_prefix + b"sem"
    async with open_session(client, ttl=TTL) as session:
        first, second, third = (Semaphore(session, name, 2) for _ in range(3))
        await first.acquire()
        await second.acquire()
        base = name + b"/" + format(session.lease_id, "x").encode()
        assert (first.key, second.key) == (base, base + b"-1")
        with pytest.raises(trio.WouldBlock):
            await third.try_acquire()
        got = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_acquire_then_set, third, got)
            await wait_slots(client, name, 3)
            await trio.sleep(0.1)
            assert not got.is_set()
            assert third.key == base + b"-2"
            await first.release()
            await got.wait()
        assert await slot_keys(client, name) == [second.key, third.key]
        await second.release()
        await first.acquire()  # the lowest free name again
        assert first.key == base
        assert [h.key for h in await first.holders()] == [third.key, first.key]
        for sem in (third, first):
            await sem.release()


async def test_limit_one_behaves_as_a_mutex(client: Client, etcd_prefix: bytes) -> None:
    """Same queue, same keys as Mutex: a Semaphore of limit 1 and a Mutex on one name exclude each other."""
    name = etcd_prefix + b"lock"
    async with sessions(client, 2) as (s1, s2):
        mutex = Mutex(s1, name)
        await mutex.acquire()
        sem = Semaphore(s2, name, 1)
        with pytest.raises(trio.WouldBlock):
            await sem.try_acquire()
        got = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_acquire_then_set, sem, got)
            await wait_slots(client, name, 2)
            await trio.sleep(0.1)
            assert not got.is_set()
            await mutex.release()
            await got.wait()
        with pytest.raises(trio.WouldBlock):
            await mutex.try_acquire()
        await sem.release()


async def test_release_is_fenced_and_loss_is_reported(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"sem"
    async with open_session(client, ttl=TTL) as session:
        sem = Semaphore(session, name, 2)
        await sem.acquire()
        stale = sem.is_owner()
        await sem.release()
        await sem.acquire()  # same key name, new create revision
        resp = await client.txn(compare=[stale], success=[Op.delete(sem.key)])
        assert not resp.succeeded
        await client.delete(sem.key)  # someone removes it
        with pytest.raises(SessionExpiredError, match="no longer ours"):
            await sem.release()
        assert not sem.held


async def test_session_expiry_while_waiting_and_while_holding(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"sem"
    async with open_session(client, ttl=TTL) as s1:
        holder = Semaphore(s1, name, 1)
        await holder.acquire()
        async with open_session(client, ttl=TTL) as s2:
            outcome: list[BaseException] = []

            async def wait() -> None:
                try:
                    await Semaphore(s2, name, 1).acquire()
                except SessionExpiredError as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait)
                await wait_slots(client, name, 2)
                await client.lease_revoke(s2.lease_id)
            assert len(outcome) == 1 and holder.held
        await holder.release()
    async with open_session(client, ttl=3) as s3:
        body_cancelled = False
        with pytest.raises(SessionExpiredError):
            async with Semaphore(s3, name, 1):
                try:
                    await client.lease_revoke(s3.lease_id)
                    await trio.sleep_forever()  # cancelled when the keeper learns of the loss
                finally:
                    body_cancelled = True
        assert body_cancelled
    assert await slot_keys(client, name) == []
