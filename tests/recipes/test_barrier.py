"""Barrier against a real etcd: hold/wait/release, exact-key waits, lease-bound barriers, checkpoints."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from etcdsync import LeaseNotFoundError, open_session
from etcdsync._barrier import Barrier
from etcdsync.client import Client


async def _wait_then_set(barrier: Barrier, done: trio.Event) -> None:
    await barrier.wait()
    done.set()


async def _until_watching(client: Client, watchers_before: int) -> None:
    """Wait until one more watch is open on the client (the waiter's), i.e. it is really waiting."""
    while client.statistics().watchers <= watchers_before:
        await trio.sleep(0.01)


async def test_hold_wait_release(client: Client, etcd_prefix: bytes) -> None:
    barrier = Barrier(client, etcd_prefix + b"freeze")
    assert barrier.key == etcd_prefix + b"freeze"
    assert await barrier.hold() is True
    assert await barrier.hold() is False  # already held: left as it is
    kv = await client.get(barrier.key)
    assert kv is not None and kv.lease == 0
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        watchers = client.statistics().watchers
        nursery.start_soon(_wait_then_set, Barrier(client, barrier.key), done)
        await _until_watching(client, watchers)
        await client.put(etcd_prefix + b"other", b"x")  # unrelated writes do not open it
        await trio.sleep(0.1)  # give a wrong implementation the chance to return early
        assert not done.is_set()
        assert await barrier.release() is True
        await done.wait()
    assert await client.get(barrier.key) is None
    assert await barrier.release() is False  # open already


async def test_wait_on_an_open_barrier_returns_at_once_with_a_checkpoint(
    client: Client, etcd_prefix: bytes
) -> None:
    barrier = Barrier(client, etcd_prefix + b"freeze")
    watchers = client.statistics().watchers
    with trio.testing.assert_checkpoints():
        await barrier.wait()
    assert client.statistics().watchers == watchers  # no watch was needed
    # The other fast paths checkpoint too.
    with trio.testing.assert_checkpoints():
        assert await barrier.release() is False
    assert await barrier.hold() is True
    with trio.testing.assert_checkpoints():
        assert await barrier.hold() is False
    await barrier.release()


async def test_wait_uses_the_exact_key_not_a_prefix(client: Client, etcd_prefix: bytes) -> None:
    """etcd PR #16156: waiting on "a" must not be held back by "a0" (or "a/x") existing."""
    await client.put(etcd_prefix + b"a0", b"")
    await client.put(etcd_prefix + b"a/x", b"")
    with trio.fail_after(5):
        await Barrier(client, etcd_prefix + b"a").wait()
    # And releasing "a" does not touch "a0".
    assert await Barrier(client, etcd_prefix + b"a").release() is False
    assert await client.get(etcd_prefix + b"a0") is not None


async def test_wait_does_not_need_to_see_the_put(client: Client, etcd_prefix: bytes) -> None:
    """etcd PR #16223: the barrier was put long before the waiter read it; only the DELETE matters."""
    barrier = Barrier(client, etcd_prefix + b"freeze")
    await barrier.hold()
    for i in range(5):  # move the revision well past the hold
        await client.put(etcd_prefix + b"noise", b"%d" % i)
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        watchers = client.statistics().watchers
        nursery.start_soon(_wait_then_set, barrier, done)
        await _until_watching(client, watchers)
        await barrier.release()
        await done.wait()


async def test_a_release_and_rehold_still_lets_waiters_through(client: Client, etcd_prefix: bytes) -> None:
    barrier = Barrier(client, etcd_prefix + b"freeze")
    await barrier.hold()
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        watchers = client.statistics().watchers
        nursery.start_soon(_wait_then_set, barrier, done)
        await _until_watching(client, watchers)
        await barrier.release()
        await barrier.hold()  # closed again at once: the waiter saw it open, and returns
        await done.wait()
    await barrier.release()


async def test_lease_bound_barrier_opens_when_the_lease_goes(client: Client, etcd_prefix: bytes) -> None:
    async with open_session(client, ttl=30) as session:
        barrier = Barrier(client, etcd_prefix + b"freeze", lease=session.lease_id)
        assert await barrier.hold() is True
        kv = await client.get(barrier.key)
        assert kv is not None and kv.lease == session.lease_id
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            watchers = client.statistics().watchers
            nursery.start_soon(_wait_then_set, Barrier(client, barrier.key), done)
            await _until_watching(client, watchers)
            await client.lease_revoke(session.lease_id)  # the holder "dies"
            await done.wait()
        assert await client.get(barrier.key) is None


async def test_hold_with_a_dead_lease_raises(client: Client, etcd_prefix: bytes) -> None:
    grant = await client.lease_grant(30)
    await client.lease_revoke(grant.id)
    with pytest.raises(LeaseNotFoundError):
        await Barrier(client, etcd_prefix + b"freeze", lease=grant.id).hold()
    assert await client.get(etcd_prefix + b"freeze") is None


async def test_caller_mistakes(client: Client) -> None:
    with pytest.raises(ValueError, match="^a recipe name must not be empty$"):
        Barrier(client, b"")
    with pytest.raises(TypeError, match="^a recipe name must be bytes or str, not int$"):
        Barrier(client, 7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^lease must be >= 0$"):
        Barrier(client, "b", lease=-1)
    with pytest.raises(TypeError, match="^lease must be an int, not bool$"):
        Barrier(client, "b", lease=True)
    with pytest.raises(TypeError, match="^Barrier needs a Client, not str$"):
        Barrier("client", "b")  # type: ignore[arg-type]
    assert Barrier(client, "/b").key == b"/b"
