"""Election under candidate SIGKILLs and an etcd leader kill: one leader per leader revision, ordered
observers, fenced proclamations, and failover within TTL + election timeout + margin."""

from __future__ import annotations

import random

import pytest

from etcdsync.testing import EtcdCluster

from .election_workload import ElectionConfig, run_election_workload
from .workloads import report_line


@pytest.mark.deadline(120)
async def test_election_safety_and_failover_time(cluster: EtcdCluster, rng: random.Random) -> None:
    config = ElectionConfig()
    outcome = await run_election_workload(cluster, b"/faults/election", config=config, rng=rng)
    report_line(outcome.report.summary())
    report_line(
        "failover after SIGKILL of the leading candidate: "
        + ", ".join(f"{d:.2f} s" for d in outcome.failovers)
        + f" (bound TTL {config.ttl} s + election timeout 0.5 s + margin = {config.failover_bound:.1f} s)"
    )
    assert outcome.report.ok, outcome.report.summary()
    assert len(outcome.failovers) == len(config.candidate_kills)
    assert outcome.member_kills == len(config.member_kills)
    assert outcome.report.stats["terms"] >= 4, "leadership barely changed hands: liveness"
