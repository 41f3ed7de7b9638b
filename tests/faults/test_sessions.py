"""Sessions under faults: revoked from outside (Curator's KillSession), a black-holed or slow client
connection, and the member serving the keep-alive stream killed. Bounds are stated per test."""

from __future__ import annotations

import pytest
import trio

import etcdsync
from etcdsync.testing import EtcdCluster
from etcdsync.testing.faults import open_tcp_proxy, revoke_lease

from .workloads import TIMING, now, report_line


async def _hold_until_revoked(cluster: EtcdCluster, client: etcdsync.Client, recipe: str, ttl: int) -> float:
    """Hold a lock (or lead) through a session, revoke its lease from outside; return how long after the
    revoke the body was cancelled and SessionExpiredError raised."""
    async with etcdsync.open_session(client, ttl=ttl) as session:
        entered = trio.Event()
        revoked_at: list[float] = []
        cancelled_after: list[float] = []

        async def hold() -> None:
            with pytest.raises(etcdsync.SessionExpiredError):
                if recipe == "mutex":
                    async with etcdsync.Mutex(session, b"/faults/sessions/lock"):
                        entered.set()
                        await trio.sleep_forever()
                else:
                    async with etcdsync.Election(session, b"/faults/sessions/elect").leadership(b"me"):
                        entered.set()
                        await trio.sleep_forever()
            cancelled_after.append(now() - revoked_at[0])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold)
            await entered.wait()
            revoked_at.append(now())
            assert await revoke_lease(cluster.endpoints[1], session.lease_id)
        assert session.expired
        return cancelled_after[0]


@pytest.mark.deadline(60)
async def test_revoked_session_cancels_the_lock_body_and_the_leadership(cluster: EtcdCluster) -> None:
    """The holder learns within one keep-alive interval (TTL/3) + a round trip + margin."""
    ttl = 3
    bound = (ttl / 3 + 1.0) * TIMING
    async with etcdsync.open_client(cluster.endpoints) as client:
        for recipe in ("mutex", "election"):
            with trio.fail_after(bound * 3):
                delay = await _hold_until_revoked(cluster, client, recipe, ttl)
            report_line(
                f"{recipe}: body cancelled {delay:.2f} s after an outside revoke (bound {bound:.1f} s)"
            )
            assert delay <= bound
        # Nothing of the lost sessions is left for others to trip over.
        assert (await client.range(b"/faults/sessions/", prefix=True)).kvs == ()


@pytest.mark.deadline(60)
async def test_blackholed_connection_loses_the_session_and_another_client_takes_over(
    cluster: EtcdCluster,
) -> None:
    """Through a black-holed proxy the holder declares its session lost within TTL + margin; a client on a
    healthy path acquires once the lease expired on the server (TTL + expiry check + margin). After the heal
    the first client works again, with a new session; the old lease is gone for good."""
    ttl = 2
    local_bound = (ttl + 0.5) * TIMING
    takeover_bound = (ttl + 2.0) * TIMING
    async with (
        open_tcp_proxy(cluster.endpoints[0]) as proxy,
        etcdsync.open_client(proxy.endpoint) as cut_off,
        etcdsync.open_client(cluster.endpoints[1:]) as healthy,
    ):
        async with etcdsync.open_session(cut_off, ttl=ttl) as session:
            mutex = etcdsync.Mutex(session, b"/faults/sessions/bh-lock")
            await mutex.acquire()
            old_lease = session.lease_id
            proxy.blackhole()
            cut_at = now()
            lost_after: list[float] = []
            async with etcdsync.open_session(healthy, ttl=5) as other:
                rival = etcdsync.Mutex(other, b"/faults/sessions/bh-lock")
                async with trio.open_nursery() as nursery:

                    async def lost() -> None:
                        await session.wait_expired()
                        lost_after.append(now() - cut_at)

                    nursery.start_soon(lost)
                    with trio.fail_after(takeover_bound * 2):
                        await rival.acquire()
                    took_over = now() - cut_at
                report_line(
                    f"blackhole: rival acquired after {took_over:.2f} s (bound {takeover_bound:.1f} s)"
                )
                report_line(
                    f"blackhole: session declared lost after {lost_after[0]:.2f} s (bound {local_bound:.1f} s)"
                )
                assert took_over <= takeover_bound
                assert lost_after[0] <= local_bound
                await rival.release()
            proxy.heal()
        async with etcdsync.open_session(cut_off, ttl=ttl) as fresh:
            assert fresh.lease_id != old_lease
            async with etcdsync.Mutex(fresh, b"/faults/sessions/bh-lock") as m:
                await cut_off.put(b"/faults/sessions/bh-guarded", b"ok", guard=m.is_owner())
        assert (await healthy.lease_time_to_live(old_lease)).ttl == -1


@pytest.mark.deadline(60)
async def test_slow_connection_keeps_the_session(cluster: EtcdCluster) -> None:
    """200 ms each way (far above etcd's heartbeat) is slow, not broken: the session lives on."""
    async with (
        open_tcp_proxy(cluster.endpoints[0], delay=0.2) as proxy,
        etcdsync.open_client(proxy.endpoint) as slow,
        etcdsync.open_session(slow, ttl=2) as session,
    ):
        started = now()
        async with etcdsync.Mutex(session, b"/faults/sessions/slow-lock") as m:
            await slow.put(b"/faults/sessions/slow", b"1", guard=m.is_owner())
            await trio.sleep(3.0)  # more than the TTL: keep-alives must get through the delay
        assert not session.expired
        assert proxy.statistics().bytes_forwarded > 0
        report_line(
            f"delay 200 ms: lock, guarded write and 3 s hold took {now() - started:.2f} s; session alive"
        )


@pytest.mark.deadline(60)
async def test_session_survives_killing_the_member_serving_its_keepalives(cluster: EtcdCluster) -> None:
    """The keep-alive stream moves to another member; the session is not lost and the client keeps working."""
    async with (
        etcdsync.open_client(cluster.endpoints) as client,
        etcdsync.open_session(client, ttl=3) as session,
    ):
        await client.put(b"/faults/sessions/k", b"1")
        serving = cluster.endpoints.index(client.statistics().current_endpoint)
        await cluster.kill(serving)
        await trio.sleep(3 * 1.5)  # longer than the TTL: keep-alives must have gone elsewhere
        assert not session.expired
        await client.put(b"/faults/sessions/k", b"2", lease=session.lease_id)
        await cluster.restart(serving)
