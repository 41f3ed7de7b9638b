"""Network partition of one member, with network namespaces and nftables (root only; skipped, with the
reason, where namespaces cannot be made). The members live in their own namespaces; the test reaches them
through loopback proxies, so nothing but loopback and the test's own namespaces carries its traffic."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
import trio

import etcdsync
from etcdsync.client import EventType
from etcdsync.testing.faults import (
    NetnsCluster,
    NetnsUnavailableError,
    leftover_namespaces,
    netns_cluster,
    netns_support,
)

from .checkers import Recovery, WatchEvent, check_recovery, check_watch
from .recovery import DURING_FAULT_BOUND, RECOVERY_BOUND, measure
from .workloads import TIMING, current_revision, first_success, now, replay, report_line

#: A request to the cut-off member, once it knows it has no leader, fails fast (hasleader metadata).
FAIL_FAST_BOUND = 1.0 * TIMING


@pytest.fixture
async def net() -> AsyncIterator[NetnsCluster]:
    reason = netns_support()
    if reason is not None:
        pytest.skip(f"network-namespace partitions cannot run here: {reason}")
    try:
        async with netns_cluster(3) as cluster:
            yield cluster
    except NetnsUnavailableError as exc:
        pytest.skip(f"the kernel refused network namespaces: {exc}")
    assert leftover_namespaces() == []


@pytest.mark.deadline(120)
async def test_partitioned_member_fails_fast_and_the_rest_carries_on(
    net: NetnsCluster, rng: random.Random
) -> None:
    """Cut the leader off from its peers: the majority elects another and keeps writing; requests to the
    cut-off member fail fast with "no leader"; a watch and a session on it move to other members without
    losing an event; after the heal the member serves linearizable reads again within a bound."""
    cluster = net.cluster
    leader = await cluster.leader()
    order = [cluster.endpoints[(leader + i) % 3] for i in range(3)]  # the cut-off member first
    prefix = b"/faults/partition/"
    received: list[list[WatchEvent]] = []
    async with (
        etcdsync.open_client(order) as minority_first,
        etcdsync.open_client(cluster.endpoints[leader], max_rounds=1) as only_minority,
        etcdsync.open_client(cluster.endpoints) as writer,
        etcdsync.open_session(minority_first, ttl=3) as session,
    ):
        base = await current_revision(writer)

        async def watch() -> None:
            async with minority_first.watch(prefix, prefix=True, start_revision=base + 1) as events:
                async for response in events:
                    received.append(
                        [
                            WatchEvent(
                                e.kv.mod_revision,
                                e.kv.key,
                                "put" if e.type is EventType.PUT else "delete",
                                e.kv.value if e.type is EventType.PUT else b"",
                            )
                            for e in response.events
                        ]
                    )
                    if any(e.kv.value == b"END" for e in response.events):
                        return

        async def write(n: int) -> None:
            for i in range(n):
                try:
                    await writer.put(prefix + b"k%d" % rng.randrange(5), b"%d" % i)
                except etcdsync.EtcdError:
                    await trio.sleep(0.02)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await write(50)
            cut_at = now()
            await net.isolate(leader)
            async with etcdsync.open_client([e for e in cluster.endpoints if e != order[0]]) as majority:
                progressed = await first_success(
                    lambda: majority.put(prefix + b"during", b"1"), bound=DURING_FAULT_BOUND * 2
                )
            assert progressed is not None
            report_line(
                f"partition: majority wrote again {progressed - cut_at:.2f} s after the leader was cut off"
            )
            assert progressed - cut_at <= DURING_FAULT_BOUND
            await write(100)
            # The cut-off member has noticed by now (check-quorum): it answers "no leader" at once.
            with trio.fail_after(10 * TIMING):
                while True:
                    asked = trio.current_time()
                    try:
                        await only_minority.get(prefix)
                    except etcdsync.NoEndpointAvailableError as exc:
                        failed_after = trio.current_time() - asked
                        if any(isinstance(e, etcdsync.NoClusterLeaderError) for e in exc.errors.values()):
                            break
                    await trio.sleep(0.1)
            report_line(
                f"partition: request to the cut-off member failed with 'no leader' after {failed_after:.3f} s"
            )
            assert failed_after <= FAIL_FAST_BOUND
            await trio.sleep(3 * 0.5 * 2)  # past etcd's 3 election timeouts: the stream on it is cancelled
            await write(50)
            healed = now()
            await net.heal()
            back = await first_success(lambda: only_minority.get(prefix), bound=RECOVERY_BOUND * 2)
            await write(50)
            while True:
                try:
                    await writer.put(prefix + b"zz-end", b"END")
                    break
                except etcdsync.EtcdError:
                    await trio.sleep(0.05)
        assert not session.expired, "the session on the cut-off member should have moved on"
        reference = await replay(writer, prefix, base + 1)
    report = check_watch(reference, received, start=base + 1, name="watch on the cut-off member")
    report_line(report.summary())
    assert report.ok, report.summary()
    recovery = check_recovery([Recovery("partition of the leader", healed, back)], bound=RECOVERY_BOUND)
    report_line(recovery.summary() + f" (bound {RECOVERY_BOUND:.1f} s)")
    assert recovery.ok, recovery.summary()


@pytest.mark.deadline(120)
async def test_progress_resumes_after_partitions_heal(net: NetnsCluster) -> None:
    measured = [
        await measure(net.cluster, fault, net=net, duration=2.0)
        for fault in ("isolate-leader", "isolate-follower")
    ]
    for m in measured:
        assert m.recovery.progressed is not None and m.during is not None
        report_line(
            f"netns {m.fault}: majority progress after {m.during:.2f} s; everything back "
            f"{m.recovery.progressed - m.recovery.healed:.2f} s after the heal"
        )
    report = check_recovery([m.recovery for m in measured], bound=RECOVERY_BOUND)
    assert report.ok, report.summary()
    assert all(m.during is not None and m.during <= DURING_FAULT_BOUND for m in measured)
