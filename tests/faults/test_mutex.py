"""Mutex with fencing under holder pauses longer than the lease TTL (worker processes, SIGSTOP)."""

from __future__ import annotations

import random

import pytest
import trio

import etcdsync
from etcdsync.testing import EtcdCluster

from .mutex_workload import MutexConfig, run_mutex_workload
from .workloads import report_line


@pytest.mark.deadline(120)
async def test_fenced_counter_survives_paused_holders_and_unfenced_one_does_not(
    cluster: EtcdCluster, rng: random.Random
) -> None:
    """Fenced: no lost update, tokens in order, every acknowledged write visible, stale writes rejected.

    The unfenced run gets the same nemesis at the same time; its anomalies are printed, not asserted.
    """
    config = MutexConfig()
    async with etcdsync.open_client(cluster.endpoints) as client:
        outcomes = {}

        async def run(fenced: bool) -> None:
            outcomes[fenced] = await run_mutex_workload(
                client,
                cluster.endpoints,
                b"/faults/mutex/%s/" % (b"fenced" if fenced else b"unfenced"),
                fenced=fenced,
                config=config,
                rng=random.Random(rng.random()),
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, True)
            nursery.start_soon(run, False)
    fenced, unfenced = outcomes[True], outcomes[False]
    report_line(fenced.report.summary())
    report_line(unfenced.report.summary() + "  <- reported, not asserted: this is why writes need the fence")
    assert fenced.report.ok, fenced.report.summary()
    assert fenced.pauses == config.pauses
    assert fenced.report.stats["committed"] >= 5, "the counter barely moved: liveness"
    # The pauses really exercised the fence: a holder woke up after its lease expired and was refused.
    assert fenced.report.stats["rejected_by_fence"] >= 1, fenced.report.summary()
    # And every paused holder learned that its session was gone.
    assert fenced.lost_sessions_after_pause == fenced.pauses
