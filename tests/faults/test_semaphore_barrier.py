"""Semaphore and DoubleBarrier under lease revocation from outside and an etcd leader kill.

Semaphore: never more than ``limit`` holders at any revision (replayed from the server's history), and a
revoked holder's permit goes to a waiter within a bound. DoubleBarrier: nobody passes enter or leave early,
and a participant revoked after the round formed does not block the others' leave beyond a bound.
"""

from __future__ import annotations

import random

import pytest

from etcdsync.testing import EtcdCluster

from .recipes_workload import HANDOVER_BOUND, run_double_barrier_workload, run_semaphore_workload
from .workloads import report_line


@pytest.mark.deadline(90)
async def test_semaphore_never_exceeds_its_limit(cluster: EtcdCluster, rng: random.Random) -> None:
    report, handovers = await run_semaphore_workload(cluster, rng)
    report_line(report.summary())
    report_line("permit handover after revoking a holder: " + ", ".join(f"{h:.2f} s" for h in handovers))
    assert report.ok, report.summary()
    assert report.stats["peak_holders"] == 2, "the semaphore was never full: the test did not test much"
    assert handovers and max(handovers) <= HANDOVER_BOUND, handovers


@pytest.mark.deadline(90)
async def test_double_barrier_nobody_passes_early(cluster: EtcdCluster, rng: random.Random) -> None:
    report, released = await run_double_barrier_workload(cluster, rng)
    report_line(report.summary())
    report_line(
        "leave released after a member's lease was revoked: " + ", ".join(f"{d:.2f} s" for d in released)
    )
    assert report.ok, report.summary()
    assert report.stats["rounds"] >= 4
    assert released and max(released) <= HANDOVER_BOUND
