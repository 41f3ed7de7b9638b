"""Semaphore and DoubleBarrier workloads under lease revocation from outside and an etcd leader kill.

Semaphore: tasks take permits and make guarded writes (claims) while the nemesis revokes holders' leases
from outside and kills the etcd leader; the checker replays the server's history of the slot keys.
DoubleBarrier: participants pass rounds with staggered arrivals; one is revoked after its round formed.
"""

from __future__ import annotations

import random

import pytest
import trio

import etcdsync
from etcdsync import DoubleBarrier, Semaphore
from etcdsync.testing import EtcdCluster
from etcdsync.testing.faults import revoke_lease

from .checkers import BarrierVisit, Claim, Report, check_double_barrier, check_semaphore
from .workloads import TIMING, as_key_event, current_revision, now, replay_raw

#: After a holder's lease is revoked, a waiter must get the permit within this (watch + query + slack).
HANDOVER_BOUND = 3.0 * TIMING


async def run_semaphore_workload(
    cluster: EtcdCluster,
    rng: random.Random,
    *,
    name: bytes = b"/faults/sem",
    limit: int = 2,
    tasks: int = 5,
    seconds: float = 8.0,
    ttl: int = 2,
    revoke_at: tuple[float, ...] = (1.5, 4.0),
    kill_leader: bool = True,
) -> tuple[Report, list[float]]:
    """Tasks take permits and do guarded work; the nemesis revokes holders from outside at ``revoke_at``
    seconds and then kills the etcd leader. Returns the checker's report and the permit handover times."""
    claims: list[Claim] = []
    holders: dict[str, int] = {}  # task -> lease of a current holder (for the nemesis)
    acquired_at: list[tuple[float, str, int]] = []
    handovers: list[float] = []
    rejected = 0
    revokes = member_kills = 0

    async with etcdsync.open_client(cluster.endpoints) as client:
        base = await current_revision(client)
        deadline = now() + seconds

        async def task(me: str) -> None:
            nonlocal rejected
            seq = 0
            while now() < deadline:
                try:
                    async with etcdsync.open_session(client, ttl=ttl) as session:
                        while now() < deadline and not session.expired:
                            sem = Semaphore(session, name, limit)
                            with trio.move_on_after(max(0.0, deadline - now())):
                                await sem.acquire()
                            if not sem.held:
                                break
                            token, key = sem.fencing_token, sem.key
                            holders[me] = session.lease_id
                            acquired_at.append((now(), me, token))
                            for _ in range(2):
                                try:
                                    resp = await client.put(
                                        name + b"-work/" + me.encode(), b"%d" % seq, guard=sem.is_owner()
                                    )
                                except etcdsync.GuardFailedError:
                                    rejected += 1
                                    break
                                seq += 1
                                claims.append(Claim(me, key, token, resp.header.revision))
                                await trio.sleep(rng.uniform(0.02, 0.12))
                            holders.pop(me, None)
                            try:
                                await sem.release()
                            except (etcdsync.SessionExpiredError, etcdsync.LockReleasedError):
                                pass
                except etcdsync.SessionExpiredError:
                    pass
                except etcdsync.EtcdError:
                    await trio.sleep(0.1)
                finally:
                    holders.pop(me, None)

        async def nemesis() -> None:
            nonlocal revokes, member_kills
            for at in revoke_at:
                await trio.sleep_until(trio.current_time() + (deadline - seconds + at - now()))
                while not holders:
                    await trio.sleep(0.01)
                victim, lease = rng.choice(sorted(holders.items()))
                revoked_at = now()
                assert await revoke_lease(cluster.endpoints[0], lease)
                revokes += 1
                with trio.move_on_after(HANDOVER_BOUND * 2):
                    while not any(t >= revoked_at and who != victim for t, who, _ in acquired_at):
                        await trio.sleep(0.01)
                later = [t for t, who, _ in acquired_at if t >= revoked_at and who != victim]
                handovers.append(later[0] - revoked_at if later else float("inf"))
            if kill_leader:
                index = await cluster.leader()
                await cluster.kill(index)
                member_kills += 1
                await trio.sleep(1.0)
                await cluster.restart(index)

        async with trio.open_nursery() as nursery:
            for i in range(tasks):
                nursery.start_soon(task, f"s{i}")
            nursery.start_soon(nemesis)
        events = [as_key_event(e) for e in await replay_raw(client, name + b"/", base + 1)]

    report = check_semaphore(limit, events, claims)
    report.stats.update(revokes=revokes, member_kills=member_kills, rejected_by_fence=rejected)
    return report, handovers


async def run_double_barrier_workload(
    cluster: EtcdCluster,
    rng: random.Random,
    *,
    name: bytes = b"/faults/dbar",
    count: int = 3,
    rounds: int = 4,
    ttl: int = 2,
    revoke_round: int = 2,
    kill_round: int = 1,
) -> tuple[Report, list[float]]:
    """Participants retry after errors (an etcd leader kill makes some calls indeterminate) and go on
    until each has passed ``rounds`` rounds; then the rest are cancelled. One participant's lease is revoked
    once round ``revoke_round`` formed; the leader is killed after round ``kill_round``. Returns the report
    and how long the others' leave took after the revoke."""
    visits: list[BarrierVisit] = []
    released_after_revoke: list[float] = []
    revoked: dict[str, float] = {}
    done = {f"b{i}": 0 for i in range(count)}
    errors: list[str] = []

    async with etcdsync.open_client(cluster.endpoints) as client:

        async def one_pass(me: str, victim: bool, barrier: DoubleBarrier, session: etcdsync.Session) -> bool:
            """One round; False when this participant was the victim (its session is gone)."""
            await trio.sleep(rng.uniform(0, 0.3))  # staggered arrivals
            enter_invoke = now()
            await barrier.enter()
            enter_return, round_ = now(), barrier.round
            if victim and done[me] == revoke_round and not revoked:
                # Killed from outside once the round formed: it never leaves; the others must.
                revoked[me] = now()
                assert await revoke_lease(cluster.endpoints[-1], session.lease_id)
                visits.append(BarrierVisit(me, round_, enter_invoke, enter_return, revoked[me], None))
                done[me] += 1
                with pytest.raises(etcdsync.SessionExpiredError):
                    await barrier.leave()
                return False
            await trio.sleep(rng.uniform(0, 0.2))  # the body
            leave_invoke = now()
            await barrier.leave()
            leave_return = now()
            if revoked and done[me] == revoke_round:
                released_after_revoke.append(leave_return - max(revoked.values()))
            visits.append(BarrierVisit(me, round_, enter_invoke, enter_return, leave_invoke, leave_return))
            done[me] += 1
            if done[me] == kill_round + 1 and me == "b0":
                index = await cluster.leader()  # a leader kill while the others enter the next round
                await cluster.kill(index)
                await cluster.restart(index)
            return True

        async def participant(me: str, victim: bool) -> None:
            while True:
                try:
                    async with etcdsync.open_session(client, ttl=ttl) as session:
                        barrier = DoubleBarrier(session, name, count)
                        while await one_pass(me, victim, barrier, session):
                            pass
                except etcdsync.EtcdError as exc:
                    errors.append(f"{me}: {exc!r}")
                    await trio.sleep(0.1)

        with trio.fail_after(60 * TIMING):
            async with trio.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(participant, f"b{i}", i == count - 1)
                while min(done.values()) < rounds:
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
    report = check_double_barrier(count, visits)
    report.stats["errors_retried"] = len(errors)
    return report, released_after_revoke
