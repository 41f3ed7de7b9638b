"""Watches across member kills (follower and leader) and a reset and blackholed connection: every
watcher's events equal the server's history, with no gap, duplicate or reorder."""

from __future__ import annotations

import random

import pytest

from etcdsync.testing import EtcdCluster

from .watch_workload import WatchConfig, run_watch_workload
from .workloads import report_line


@pytest.mark.deadline(150)
async def test_every_watcher_sees_the_exact_history(cluster: EtcdCluster, rng: random.Random) -> None:
    config = WatchConfig()
    outcome = await run_watch_workload(cluster, b"/faults/watch/", config=config, rng=rng)
    for report in outcome.reports:
        report_line(report.summary())
    assert outcome.faults == len(config.schedule)
    assert outcome.acknowledged_missing == 0, "an acknowledged put is missing from the server's history"
    for report in outcome.reports:
        assert report.ok, report.summary()
        assert report.stats["events"] >= config.ops // 2
