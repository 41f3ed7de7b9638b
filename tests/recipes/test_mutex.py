"""Mutex against a real etcd: exclusion, fencing, herd-freedom, loss, cancellation, Go's pitfalls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio

import etcdsync
from etcdsync import LockReleasedError, Mutex, SessionExpiredError, open_session
from etcdsync.client import Client, Compare, Op

TTL = 5


@asynccontextmanager
async def session_on(client: Client, ttl: int = TTL) -> AsyncIterator[etcdsync.Session]:
    async with open_session(client, ttl=ttl) as s:
        yield s


async def queue_keys(client: Client, name: bytes) -> list[bytes]:
    return [kv.key for kv in (await client.range(name + b"/", prefix=True, keys_only=True)).kvs]


async def wait_until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await trio.sleep(0.01)


async def wait_queue_len(client: Client, name: bytes, n: int) -> None:
    while len(await queue_keys(client, name)) != n:
        await trio.sleep(0.01)


async def test_uncontended_acquire_release_and_key_layout(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"lock"
    async with session_on(client) as session:
        mutex = Mutex(session, name)
        assert mutex.key == name + b"/" + format(session.lease_id, "x").encode()
        assert not mutex.locked
        await mutex.acquire()
        kv = await client.get(mutex.key)
        assert kv is not None
        assert mutex.fencing_token == kv.create_revision
        assert kv.lease == session.lease_id
        assert mutex.statistics().queries == 0  # free lock: one transaction, no wait
        await mutex.release()
        assert await client.get(mutex.key) is None
        assert not mutex.locked
        with pytest.raises(LockReleasedError):
            await mutex.release()
        with pytest.raises(LockReleasedError):
            _ = mutex.fencing_token


async def test_release_before_acquire_raises(client: Client, etcd_prefix: bytes) -> None:
    async with session_on(client) as session:
        with pytest.raises(LockReleasedError):
            await Mutex(session, etcd_prefix + b"l").release()


@pytest.mark.parametrize("name", [b"", ""])
async def test_empty_name_is_a_caller_mistake(client: Client, name: bytes) -> None:
    async with session_on(client) as session:
        with pytest.raises(ValueError, match="^a recipe name must not be empty$"):
            Mutex(session, name)
        with pytest.raises(TypeError, match="a recipe name must be bytes or str"):
            Mutex(session, 7)  # type: ignore[arg-type]


async def test_fencing_tokens_increase_and_guarded_counter_is_exact(
    client: Client, etcd_prefix: bytes
) -> None:
    name, counter = etcd_prefix + b"lock", etcd_prefix + b"counter"
    await client.put(counter, b"0")
    tokens: list[int] = []

    async def worker(session: etcdsync.Session, n: int) -> None:
        for _ in range(n):
            async with Mutex(session, name) as m:
                tokens.append(m.fencing_token)
                kv = await client.get(counter)
                assert kv is not None
                await client.put(counter, b"%d" % (int(kv.value) + 1), guard=m.is_owner())

    async with trio.open_nursery() as sessions:
        started = [await sessions.start(_session_task, client) for _ in range(4)]
        async with trio.open_nursery() as workers:
            for session in started:
                workers.start_soon(worker, session, 25)
        sessions.cancel_scope.cancel()
    kv = await client.get(counter)
    assert kv is not None and int(kv.value) == 100
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


async def _session_task(client: Client, *, task_status: trio.TaskStatus[etcdsync.Session]) -> None:
    async with session_on(client) as session:
        task_status.started(session)
        await trio.sleep_forever()


async def test_try_acquire_when_held_raises_would_block_and_leaves_no_key(
    client: Client, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"lock"
    async with session_on(client) as s1, session_on(client) as s2:
        holder = Mutex(s1, name)
        await holder.try_acquire()
        other = Mutex(s2, name)
        with pytest.raises(trio.WouldBlock):
            await other.try_acquire()
        assert await queue_keys(client, name) == [holder.key]
        await holder.release()
        await other.try_acquire()
        assert other.locked
        await other.release()


async def test_waiter_wakes_on_release(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"lock"
    async with session_on(client) as s1, session_on(client) as s2:
        holder = Mutex(s1, name)
        await holder.acquire()
        waiter = Mutex(s2, name)
        got = trio.Event()

        async def wait() -> None:
            await waiter.acquire()
            got.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await wait_queue_len(client, name, 2)
            assert not got.is_set()
            first = holder.fencing_token
            await holder.release()
            await got.wait()
        assert waiter.fencing_token > first
        await waiter.release()


async def test_waits_on_current_holder_when_middle_waiter_leaves(client: Client, etcd_prefix: bytes) -> None:
    """Go's TestMutexWaitsOnCurrentHolder: A holds, B and C wait; B's session closes; C must still wait for A."""
    name = etcd_prefix + b"lock"
    async with session_on(client) as sa, session_on(client) as sc:
        a = Mutex(sa, name)
        await a.acquire()
        c = Mutex(sc, name)
        c_got = trio.Event()
        b_outcome: list[BaseException] = []
        async with trio.open_nursery() as nursery:
            async with session_on(client) as sb:
                b = Mutex(sb, name)
                nursery.start_soon(_acquire_recording, b, b_outcome)
                await wait_queue_len(client, name, 2)
                nursery.start_soon(_acquire_then_set, c, c_got)
                await wait_queue_len(client, name, 3)
            # B's session closed (its lease revoked): B's key is gone, B's wait ended; C now waits for A.
            await wait_queue_len(client, name, 2)
            await trio.sleep(0.3)  # give a wrong implementation the chance to misbehave
            assert not c_got.is_set()
            assert a.locked
            await a.release()
            await c_got.wait()
        assert len(b_outcome) == 1 and isinstance(b_outcome[0], SessionExpiredError)
        await c.release()


async def _acquire_recording(m: Mutex, outcome: list[BaseException]) -> None:
    try:
        await m.acquire()
    except SessionExpiredError as exc:
        outcome.append(exc)


async def _acquire_then_set(m: Mutex, event: trio.Event) -> None:
    await m.acquire()
    event.set()


async def test_session_expiry_while_waiting_ends_the_wait(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"lock"
    async with session_on(client) as s1:
        holder = Mutex(s1, name)
        await holder.acquire()
        async with session_on(client) as s2:
            waiter = Mutex(s2, name)
            result: list[BaseException] = []

            async def wait() -> None:
                try:
                    await waiter.acquire()
                except SessionExpiredError as exc:
                    result.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait)
                await wait_queue_len(client, name, 2)
                await client.lease_revoke(s2.lease_id)  # from "outside"
            # The waiter learned while the holder still holds: no phantom ownership.
            assert len(result) == 1
            assert holder.locked
            assert not waiter.locked
        await holder.release()


async def test_waiter_key_deleted_ends_the_wait(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"lock"
    async with session_on(client) as s1, session_on(client) as s2:
        holder = Mutex(s1, name)
        await holder.acquire()
        waiter = Mutex(s2, name)
        outcome: list[BaseException] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_acquire_recording, waiter, outcome)
            await wait_queue_len(client, name, 2)
            await client.delete(waiter.key)
        assert len(outcome) == 1
        assert "deleted while waiting" in str(outcome[0]) or "is gone" in str(outcome[0])
        assert holder.locked
        assert not waiter.locked
        await holder.release()


async def test_lease_loss_cancels_body_and_raises(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"lock"
    body_cancelled = False
    async with session_on(client) as s1, session_on(client) as s2:
        waiter = Mutex(s2, name)
        with pytest.raises(SessionExpiredError):
            async with Mutex(s1, name):
                try:
                    await client.lease_revoke(s1.lease_id)
                    await trio.sleep_forever()  # cancelled when the keeper learns of the loss
                finally:
                    body_cancelled = True
        assert body_cancelled
        assert s1.expired
        # The next waiter gets the lock.
        await waiter.acquire()
        await waiter.release()


async def test_cancelled_acquire_leaves_no_key(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"lock"
    async with session_on(client) as s1, session_on(client) as s2:
        holder = Mutex(s1, name)
        await holder.acquire()
        waiter = Mutex(s2, name)
        # Cancel at many different points of the acquire: right away, mid-transaction, while waiting.
        for delay in (0, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.05, 0.2):
            with trio.move_on_after(delay):
                await waiter.acquire()
            assert not waiter.locked
            assert await queue_keys(client, name) == [holder.key], delay
        # A fail_after timeout is a cancellation too.
        with pytest.raises(trio.TooSlowError):
            with trio.fail_after(0.1):
                await waiter.acquire()
        assert await queue_keys(client, name) == [holder.key]
        await holder.release()
        await waiter.acquire()  # the object is still usable
        await waiter.release()


async def test_release_is_fenced_against_a_newer_acquisition(client: Client, etcd_prefix: bytes) -> None:
    """etcd #22082: a stale, retried release must not delete the same session's newer key."""
    name = etcd_prefix + b"lock"
    async with session_on(client) as session:
        mutex = Mutex(session, name)
        await mutex.acquire()
        stale_fence = mutex.is_owner()
        await mutex.release()
        await mutex.acquire()  # same session: same key name, new create revision
        resp = await client.txn(compare=[stale_fence], success=[Op.delete(mutex.key)])
        assert not resp.succeeded
        kv = await client.get(mutex.key)
        assert kv is not None and kv.create_revision == mutex.fencing_token
        await mutex.release()


async def test_release_after_loss_says_so(client: Client, etcd_prefix: bytes) -> None:
    async with session_on(client) as s1:
        mutex = Mutex(s1, etcd_prefix + b"lock")
        await mutex.acquire()
        await client.delete(mutex.key)  # someone removed it
        with pytest.raises(SessionExpiredError, match="no longer ours"):
            await mutex.release()
        assert not mutex.locked


async def test_two_mutexes_on_one_session_exclude_each_other(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"lock"
    async with session_on(client) as session:
        m1, m2 = Mutex(session, name), Mutex(session, name)
        await m1.acquire()
        with pytest.raises(trio.WouldBlock):
            await m2.try_acquire()
        got = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_acquire_then_set, m2, got)
            await trio.sleep(0.2)
            assert not got.is_set()
            first = m1.fencing_token
            await m1.release()
            await got.wait()
        assert m2.fencing_token > first  # each acquisition has its own token
        await m2.release()


async def test_one_mutex_object_is_not_reentrant(client: Client, etcd_prefix: bytes) -> None:
    async with session_on(client) as session:
        mutex = Mutex(session, etcd_prefix + b"lock")
        await mutex.acquire()
        with pytest.raises(RuntimeError, match="not re-entrant"):
            await mutex.acquire()
        with pytest.raises(RuntimeError, match="not re-entrant"):
            await mutex.try_acquire()
        await mutex.release()


@pytest.mark.deadline(120)
async def test_release_wakes_exactly_one_waiter(client: Client, etcd_prefix: bytes) -> None:
    """Herd-freedom: with many waiters queued, one release costs one wake-up and O(1) watch events."""
    name = etcd_prefix + b"lock"
    n = 200
    async with session_on(client, ttl=30) as holder_session:
        holder = Mutex(holder_session, name)
        await holder.acquire()
        mutexes: list[Mutex] = []
        acquired: list[Mutex] = []
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                session = await nursery.start(_session_task, client)
                m = Mutex(session, name)
                mutexes.append(m)

                async def wait(m: Mutex = m) -> None:
                    await m.acquire()
                    acquired.append(m)

                nursery.start_soon(wait)
            await wait_queue_len(client, name, n + 1)
            await wait_until(lambda: sum(m.statistics().watches for m in mutexes) >= n)
            await trio.sleep(0.3)  # let the queue settle; nothing should be moving
            before = [m.statistics() for m in mutexes]
            await holder.release()
            await wait_until(lambda: len(acquired) == 1)
            await trio.sleep(0.3)  # any herd would show up now
            after = [m.statistics() for m in mutexes]
            woken = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if a.wakeups > b.wakeups]
            events = sum(a.watch_events - b.watch_events for b, a in zip(before, after, strict=True))
            queries = sum(a.queries - b.queries for b, a in zip(before, after, strict=True))
            assert len(woken) == 1
            assert acquired[0] is mutexes[woken[0]]
            assert events == 1
            assert queries == 1
            nursery.cancel_scope.cancel()


async def test_is_owner_compare_guards_writes(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"lock"
    async with session_on(client) as session:
        mutex = Mutex(session, name)
        await mutex.acquire()
        guard = mutex.is_owner()
        assert guard == (Compare.create_revision(mutex.key) == mutex.fencing_token)
        await client.put(etcd_prefix + b"data", b"ok", guard=guard)
        await mutex.release()
        with pytest.raises(etcdsync.GuardFailedError):
            await client.put(etcd_prefix + b"data", b"stale", guard=guard)
