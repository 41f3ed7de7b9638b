"""Nothing is left behind: no etcd process, no ``etcdsync-*`` directory, after failures and cancellation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from etcdsync.testing import EtcdProcess, etcd_cluster, etcd_server

Leftovers = Callable[[Path], tuple[list[tuple[int, str]], list[str]]]
ProcessesMatching = Callable[[str], list[tuple[int, str]]]

INNER_INI = """\
[pytest]
trio_mode = true
addopts = -p no:cacheprovider
filterwarnings = error
"""

# Runs inside the inner pytest after every fixture is torn down, while the inner process (whose children would
# otherwise be killed with it) is still alive: it records leaked processes, and children it failed to reap.
INNER_CONFTEST = """\
import json, os

def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""

def pytest_unconfigure(config):
    marker = os.environ["ETCDSYNC_HARNESS_RUN"].encode()
    live, zombies = [], []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        if int(entry) == os.getpid():
            continue
        stat = _read(f"/proc/{entry}/stat")
        fields = stat[stat.rfind(b")") + 2 :].split()
        if not fields:
            continue
        if fields[0] == b"Z" and int(fields[1]) == os.getpid():
            zombies.append(int(entry))
        elif marker in _read(f"/proc/{entry}/environ"):
            live.append(int(entry))
    with open(os.environ["INNER_REPORT"], "w") as f:
        json.dump({"live": live, "zombies": zombies}, f)
"""

INNER_TESTS = """\
import trio
from etcdsync.testing._http import member_status

async def test_passes():
    await trio.sleep(0)

async def test_fails_with_a_damaged_cluster(etcd_cluster):
    with trio.fail_after(30):
        await etcd_cluster.kill(await etcd_cluster.leader())
        etcd_cluster.pause(await etcd_cluster.leader())
    assert False, "deliberate failure"

async def test_uses_the_shared_server(etcd_endpoint, etcd_prefix):
    with trio.fail_after(10):
        assert (await member_status(etcd_endpoint)).leader != 0
"""


def inner_env(base: Path, marker: str, report: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(ETCDSYNC_TMPDIR=str(base), ETCDSYNC_HARNESS_RUN=marker, INNER_REPORT=str(report))
    return env


async def run_inner_pytest(directory: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "pytest", "-q", str(directory)],
        cwd=directory,
        env=env,
        capture_stdout=True,
        stderr=subprocess.STDOUT,
        check=False,
    )


async def test_inner_session_with_a_failing_test_leaves_nothing(
    tmp_path: Path, processes_matching: ProcessesMatching, leftovers: Leftovers
) -> None:
    (tmp_path / "inner").mkdir()
    inner = tmp_path / "inner"
    (inner / "pytest.ini").write_text(INNER_INI)
    (inner / "conftest.py").write_text(INNER_CONFTEST)
    (inner / "test_inner.py").write_text(INNER_TESTS)
    base = tmp_path / "base"
    base.mkdir()
    marker = f"inner-{uuid.uuid4().hex}"
    report = tmp_path / "report.json"

    with trio.fail_after(90):
        done = await run_inner_pytest(inner, inner_env(base, marker, report))

    output = done.stdout.decode(errors="replace")
    assert done.returncode == 1, output
    assert "1 failed, 2 passed" in output, output
    assert "deliberate failure" in output
    assert report.read_text() == '{"live": [], "zombies": []}', output
    assert processes_matching(marker) == []
    assert leftovers(base) == ([], [])


async def test_missing_etcd_fails_the_fixtures_never_skips(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pytest.ini").write_text(INNER_INI)
    (inner / "test_inner.py").write_text(
        textwrap.dedent(
            """\
            async def test_endpoint(etcd_endpoint):
                pass

            async def test_cluster(etcd_cluster):
                pass
            """
        )
    )
    env = inner_env(tmp_path, "unused", tmp_path / "unused.json")
    env["PATH"] = str(tmp_path)  # no etcd here
    env.pop("ETCD_BIN", None)

    with trio.fail_after(60):
        done = await run_inner_pytest(inner, env)

    output = done.stdout.decode(errors="replace")
    assert done.returncode == 1, output
    assert "2 errors" in output, output
    assert "skipped" not in output
    assert "apt-get install etcd-server" in output


async def test_cancelled_cluster_body_reaps_everything(isolated_tmpdir: Path, leftovers: Leftovers) -> None:
    members: list[EtcdProcess] = []
    with trio.fail_after(30):
        with trio.CancelScope() as scope:
            async with etcd_cluster(size=3) as cluster:
                members = [member.process for member in cluster.members]
                cluster.pause(0)
                await cluster.kill(1)
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught
    assert len(members) == 3
    assert all(not process.running for process in members)
    assert leftovers(isolated_tmpdir) == ([], [])


async def test_cancelled_start_reaps_everything(
    isolated_tmpdir: Path, leftovers: Leftovers, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[EtcdProcess] = []
    original_start = EtcdProcess.start

    def recording_start(self: EtcdProcess, *, existing: bool = False) -> None:
        original_start(self, existing=existing)
        started.append(self)

    monkeypatch.setattr(EtcdProcess, "start", recording_start)
    with trio.fail_after(30):
        with trio.CancelScope() as scope:
            scope.cancel()  # cancelled at the first checkpoint: the processes are spawned, not yet healthy
            async with etcd_cluster(size=3):
                pytest.fail("the body must not run")
        assert scope.cancelled_caught
        with trio.move_on_after(0):
            async with etcd_server():
                pytest.fail("the body must not run")
    assert len(started) == 4
    assert not any(process.running for process in started)
    assert leftovers(isolated_tmpdir) == ([], [])
