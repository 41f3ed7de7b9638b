"""Compaction while recipes wait: a Mutex waiter and an Election observer are cut off (their connection
black-holed, then reset) while the history they would resume from is compacted away. Both must re-query,
not fail and not go back: the waiter acquires, the observer reaches the latest leader in order."""

from __future__ import annotations

import pytest
import trio

import etcdsync
from etcdsync.testing import EtcdServer, etcd_server
from etcdsync.testing.faults import TcpProxy, compact, open_tcp_proxy

from .checkers import Observed, Win, check_election
from .workloads import TIMING, now, report_line

#: After the heal, the waiter resumes its watch, finds it compacted, re-queries and acquires.
RESUME_BOUND = 3.0 * TIMING


async def _cut_compact_and_heal(
    server: EtcdServer, proxy: TcpProxy, client: etcdsync.Client, writes: int
) -> int:
    """Hold the cut-off client's traffic, write, compact everything, then drop its connections and heal."""
    for i in range(writes):
        await client.put(b"/faults/compaction/noise", b"%d" % i)
    revision = await compact(server.endpoint)
    proxy.reset()  # the held bytes are lost with the connection: the client must resume from its revision
    proxy.heal()
    return revision


@pytest.mark.deadline(60)
async def test_mutex_waiter_survives_compaction_of_its_wait() -> None:
    async with (
        etcd_server(unsafe_no_fsync=True) as server,
        open_tcp_proxy(server.endpoint) as proxy,
        etcdsync.open_client(server.endpoint) as direct,
        etcdsync.open_client(proxy.endpoint) as waiting_client,
        etcdsync.open_session(direct, ttl=10) as holder_session,
        etcdsync.open_session(waiting_client, ttl=10) as waiter_session,
    ):
        holder = etcdsync.Mutex(holder_session, b"/faults/compaction/lock")
        waiter = etcdsync.Mutex(waiter_session, b"/faults/compaction/lock")
        await holder.acquire()
        acquired = trio.Event()

        async def wait() -> None:
            await waiter.acquire()
            acquired.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            while waiter.statistics().watches == 0:  # it is watching its predecessor
                await trio.sleep(0.01)
            proxy.blackhole()
            await holder.release()
            compacted_at = await _cut_compact_and_heal(server, proxy, direct, 20)
            healed = now()
            with trio.fail_after(RESUME_BOUND * 2):
                await acquired.wait()
            took = now() - healed
        report_line(
            f"mutex waiter acquired {took:.2f} s after the heal (compacted at {compacted_at}; bound {RESUME_BOUND:.1f} s)"
        )
        assert took <= RESUME_BOUND
        assert waiter.fencing_token > 0
        await direct.put(b"/faults/compaction/guarded", b"ok", guard=waiter.is_owner())
        await waiter.release()


@pytest.mark.deadline(60)
async def test_election_observer_survives_compaction_without_going_back() -> None:
    name = b"/faults/compaction/election"
    observed: list[Observed] = []
    async with (
        etcd_server(unsafe_no_fsync=True) as server,
        open_tcp_proxy(server.endpoint) as proxy,
        etcdsync.open_client(server.endpoint) as direct,
        etcdsync.open_client(proxy.endpoint) as observing_client,
        etcdsync.open_session(observing_client, ttl=10) as observer_session,
    ):
        wins: list[Win] = []

        async def observe() -> None:
            async with etcdsync.Election(observer_session, name).observe() as leaders:
                async for kv in leaders:
                    if kv is not None:
                        observed.append(Observed(kv.key, kv.create_revision, kv.mod_revision, kv.value))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(observe)
            # Three leaders one after the other; the observer is cut off during the last two.
            sessions = []
            for i in range(3):
                session_cm = etcdsync.open_session(direct, ttl=10)
                session = await session_cm.__aenter__()
                sessions.append(session_cm)
                election = etcdsync.Election(session, name)
                await election.campaign(f"L{i}:campaign")
                wins.append(Win(f"L{i}", election.key, election.revision))
                await direct.put(election.key, f"L{i}:1", lease=session.lease_id, guard=election.is_leader())
                if i == 0:
                    while not observed or observed[-1].value != b"L0:1":
                        await trio.sleep(0.01)
                    proxy.blackhole()
                if i < 2:
                    await election.resign()
            await _cut_compact_and_heal(server, proxy, direct, 20)
            with trio.fail_after(RESUME_BOUND * 2):
                while not observed or observed[-1].value != b"L2:1":
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        for session_cm in sessions:
            await session_cm.__aexit__(None, None, None)
    report = check_election(wins, [], {"observer": observed})
    report_line(report.summary() + f"; observed {[o.value.decode() for o in observed]}")
    assert report.ok, report.summary()
    assert observed[-1].term == wins[-1].term
