"""The client's shared keep-alive stream against a real etcd: wake-ups moved by new leases, batching."""

from __future__ import annotations

from collections.abc import Callable

import trio

from etcdsync.client import Client


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a condition that has no event of its own (acknowledgement counts, the keeper's sleep)."""
    with trio.fail_after(20):
        while not condition():
            await trio.sleep(0.02)


async def test_a_lease_due_sooner_moves_the_sleeping_keeper_forward(client: Client) -> None:
    sent = trio.current_time()
    long = await client.lease_grant(60)
    async with client.keep_alive(long.id, ttl=long.ttl, granted_at=sent) as long_ka:
        keeper = client._keeper
        # Both tasks asleep: the send loop until the long lease's first keep-alive (~20 s away), the
        # expiry watcher until its expiry (~60 s away).
        await wait_until(lambda: keeper._send_sleep is not None and keeper._expiry_sleep is not None)
        sent = trio.current_time()
        short = await client.lease_grant(2)
        async with client.keep_alive(short.id, ttl=short.ttl, granted_at=sent) as short_ka:
            # Three keep-alives, every 2/3 s: longer than the TTL, so the lease was kept alive by them.
            await wait_until(lambda: short_ka.keepalives_acknowledged >= 3)
            assert not short_ka.lost
            assert long_ka.keepalives_acknowledged == 0
        await client.lease_revoke(short.id)

        # A lease whose validity has already run out is declared lost by the (woken) expiry watcher,
        # before the answer to its first keep-alive could come back.
        stale = await client.lease_grant(2)
        async with client.keep_alive(stale.id, ttl=2, granted_at=trio.current_time() - 5) as stale_ka:
            with trio.fail_after(5):
                await stale_ka.wait_lost()
            assert stale_ka.reason == "no keep-alive was acknowledged within the lease's TTL"
        assert not long_ka.lost
        await client.lease_revoke(stale.id)
    await client.lease_revoke(long.id)


async def test_many_leases_share_one_stream(client: Client) -> None:
    ids: list[int] = []

    async def grant() -> None:
        ids.append((await client.lease_grant(3)).id)

    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(grant)
    async with trio.open_nursery() as nursery:
        handles = []

        async def hold(lease_id: int) -> None:
            async with client.keep_alive(lease_id) as ka:
                handles.append(ka)
                await done.wait()

        done = trio.Event()
        for lease_id in ids:
            nursery.start_soon(hold, lease_id)
        await wait_until(lambda: len(handles) == len(ids))
        await wait_until(lambda: all(ka.keepalives_acknowledged >= 3 for ka in handles))
        assert not any(ka.lost for ka in handles)
        assert client._keeper.streams_opened == 1
        assert client.statistics().sessions == len(ids)
        done.set()
    assert client.statistics().sessions == 0
    for lease_id in ids:
        await client.lease_revoke(lease_id)
