"""Liveness after recovery: for each fault, the majority keeps making progress while it lasts, and after it
heals a write succeeds and every member serves linearizable reads again within a stated bound."""

from __future__ import annotations

import pytest

from etcdsync.testing.faults import peer_proxied_cluster

from .checkers import check_recovery
from .recovery import DURING_FAULT_BOUND, RECOVERY_BOUND, SCENARIOS, measure
from .workloads import report_line


@pytest.mark.deadline(180)
async def test_progress_resumes_after_each_fault_heals() -> None:
    measured = []
    async with peer_proxied_cluster(3) as net:
        for fault in SCENARIOS:
            measured.append(await measure(net.cluster, fault, net=net))
            await net.cluster.wait_healthy()
    for m in measured:
        during = "none" if m.during is None else f"{m.during:.2f} s"
        assert m.recovery.progressed is not None
        report_line(
            f"{m.fault}: majority progress after {during}; "
            f"everything back {m.recovery.progressed - m.recovery.healed:.2f} s after the heal"
        )
    report = check_recovery([m.recovery for m in measured], bound=RECOVERY_BOUND)
    report_line(report.summary() + f" (bound {RECOVERY_BOUND:.1f} s)")
    assert report.ok, report.summary()
    slow = [(m.fault, m.during) for m in measured if m.during is None or m.during > DURING_FAULT_BOUND]
    assert not slow, f"the majority stalled during a fault (bound {DURING_FAULT_BOUND} s): {slow}"
