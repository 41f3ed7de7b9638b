"""The recipe programs in recipes/ run end to end against a local etcd, failover paths included."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

RECIPES = Path(__file__).resolve().parent.parent.parent / "recipes"


async def run_program(*argv: str) -> tuple[int, str]:
    result = await trio.run_process(
        [sys.executable, *argv], capture_stdout=True, capture_stderr=True, check=False
    )
    output = result.stdout.decode() + result.stderr.decode()
    return result.returncode, output


@pytest.mark.deadline(120)
async def test_leader_worker_fails_over_and_keeps_a_fenced_log(etcd_endpoint: str) -> None:
    code, out = await run_program(str(RECIPES / "leader_worker.py"), "--endpoints", etcd_endpoint)
    assert code == 0, out
    assert "took over from" in out
    assert "job numbers gapless: True; leader revisions never went back: True" in out
    assert out.rstrip().endswith("[driver] OK")


@pytest.mark.deadline(120)
async def test_job_mutex_survives_a_paused_holder(etcd_endpoint: str) -> None:
    code, out = await run_program(str(RECIPES / "job_mutex.py"), "--endpoints", etcd_endpoint)
    assert code == 0, out
    assert "SIGSTOP" in out and "SIGCONT" in out
    # The paused holder either noticed its lost session or had its late write refused by the fence.
    assert "work abandoned" in out or "REFUSED" in out
    assert "every tick exactly once: True; fencing tokens grow: True" in out


@pytest.mark.deadline(120)
async def test_demo_program_runs_with_its_own_etcd() -> None:
    code, out = await run_program(str(RECIPES / "demo.py"))
    assert code == 0, out
    assert "started a local etcd" in out
    assert "was refused" in out


@pytest.mark.deadline(120)
async def test_rollout_goes_on_when_a_host_crashes_mid_restart(etcd_endpoint: str) -> None:
    code, out = await run_program(
        str(RECIPES / "rollout.py"), "--endpoints", etcd_endpoint, "--crash", "host-3"
    )
    assert code == 0, out
    assert "[rollout] result: complete" in out
    assert "host-3 is lost" in out
    assert "upgraded 5, lost 1" in out
    assert (
        "most hosts restarting at once: 2 (limit 2)" in out
        or "most hosts restarting at once: 1 (limit 2)" in out
    )


@pytest.mark.deadline(120)
async def test_rollout_halts_on_a_failed_health_check(etcd_endpoint: str) -> None:
    code, out = await run_program(
        str(RECIPES / "rollout.py"),
        "--endpoints",
        etcd_endpoint,
        "--fail-health",
        "host-4",
        "--parallel",
        "1",
    )
    assert code == 0, out
    assert "[rollout] result: halted: host-4 failed the health check" in out
    assert "unhealthy 1" in out
    assert "most hosts restarting at once: 1 (limit 1)" in out
