"""RWMutex against a real etcd: shared reads, exclusive writes, FIFO phases, cancellation, loss."""

from __future__ import annotations

import pytest
import trio

from etcdsync import QueueLock, RWMutex, SessionExpiredError, open_session
from etcdsync.client import Client

TTL = 5


async def keys(client: Client, prefix: bytes) -> list[bytes]:
    return [kv.key for kv in (await client.range(prefix, prefix=True, keys_only=True)).kvs]


async def wait_keys(client: Client, prefix: bytes, n: int) -> None:
    while len(await keys(client, prefix)) != n:
        await trio.sleep(0.01)


async def _acquire_then_set(lock: QueueLock, event: trio.Event) -> None:
    await lock.acquire()
    event.set()


async def test_readers_share_writers_exclude(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"rw"
    async with open_session(client, ttl=TTL) as s1, open_session(client, ttl=TTL) as s2:
        rw1, rw2 = RWMutex(s1, name), RWMutex(s2, name)
        r1, r2 = rw1.read(), rw2.read()
        await r1.acquire()
        await r2.try_acquire()  # readers share
        assert r1.key.startswith(name + b"/read/")
        w = rw2.write()
        assert w.key.startswith(name + b"/write/")
        with pytest.raises(trio.WouldBlock):
            await w.try_acquire()
        assert len(await keys(client, name + b"/")) == 2  # the failed try left no key
        got = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_acquire_then_set, w, got)
            await wait_keys(client, name + b"/", 3)
            await r1.release()
            await trio.sleep(0.2)
            assert not got.is_set()  # one reader still holds
            await r2.release()
            await got.wait()
        r3 = rw1.read()
        with pytest.raises(trio.WouldBlock):
            await r3.try_acquire()  # the writer excludes readers
        await w.release()
        await r3.try_acquire()
        await r3.release()


async def test_reader_after_waiting_writer_waits_for_it(client: Client, etcd_prefix: bytes) -> None:
    """FIFO phases: a reader that arrives after a queued writer does not overtake it (no writer starvation)."""
    name = etcd_prefix + b"rw"
    async with open_session(client, ttl=TTL) as session:
        rw = RWMutex(session, name)
        first_reader, writer, late_reader = rw.read(), rw.write(), rw.read()
        await first_reader.acquire()
        writer_got, late_got = trio.Event(), trio.Event()
        order: list[str] = []

        async def track(lock: QueueLock, event: trio.Event, label: str) -> None:
            await _acquire_then_set(lock, event)
            order.append(label)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(track, writer, writer_got, "writer")
            await wait_keys(client, name + b"/", 2)
            nursery.start_soon(track, late_reader, late_got, "late reader")
            await wait_keys(client, name + b"/", 3)
            await trio.sleep(0.2)
            assert not writer_got.is_set() and not late_got.is_set()
            await first_reader.release()
            await writer_got.wait()
            await trio.sleep(0.2)
            assert not late_got.is_set()
            assert writer.fencing_token < late_reader.revision or late_reader.revision == 0
            await writer.release()
            await late_got.wait()
        assert order == ["writer", "late reader"]
        await late_reader.release()


async def test_writer_release_wakes_all_readers_behind_it(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"rw"
    async with open_session(client, ttl=TTL) as session:
        rw = RWMutex(session, name)
        writer = rw.write()
        await writer.acquire()
        readers = [rw.read() for _ in range(5)]
        later_writer = rw.write()
        got = [trio.Event() for _ in readers]
        later_got = trio.Event()
        async with trio.open_nursery() as nursery:
            for reader, event in zip(readers, got, strict=True):
                nursery.start_soon(_acquire_then_set, reader, event)
            await wait_keys(client, name + b"/", 6)
            nursery.start_soon(_acquire_then_set, later_writer, later_got)
            await wait_keys(client, name + b"/", 7)
            await writer.release()
            for event in got:
                await event.wait()
            await trio.sleep(0.2)
            assert not later_got.is_set()
            # The readers were queued by concurrent tasks: find the newest by create revision.
            readers.sort(key=lambda r: r.revision)
            before = later_writer.statistics()
            for reader in readers[:-1]:
                await reader.release()
            await trio.sleep(0.2)
            assert not later_got.is_set()  # the newest reader still holds
            # The later writer waits on its nearest older key only: releases of other readers do not wake it.
            assert later_writer.statistics().wakeups == before.wakeups
            await readers[-1].release()
            await later_got.wait()
        await later_writer.release()


async def test_cancelled_waits_leave_no_key_and_loss_cancels_body(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"rw"
    async with open_session(client, ttl=TTL) as s1, open_session(client, ttl=TTL) as s2:
        writer = RWMutex(s1, name).write()
        await writer.acquire()
        for delay in (0, 0.002, 0.02, 0.2):
            with trio.move_on_after(delay):
                await RWMutex(s2, name).read().acquire()
            with trio.move_on_after(delay):
                await RWMutex(s2, name).write().acquire()
            assert await keys(client, name + b"/") == [writer.key], delay
        await writer.release()
        with pytest.raises(SessionExpiredError):
            async with RWMutex(s2, name).write():
                await client.lease_revoke(s2.lease_id)
                await trio.sleep_forever()
