"""Running ``python -m etcdsync`` (and ``etcdctl``) as a user would, from trio tests.

Every spawned process runs in its own session (the test's signals never reach pytest), reads
nothing from stdin, and is SIGKILLed and reaped when its ``async with`` block ends. Processes that
a command started (child.py) report their pid, and are killed too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from etcdsync.client import Client, KeyValue

CHILD = str(Path(__file__).with_name("child.py"))


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any ETCDSYNC_*/ETCDCTL_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCDSYNC_", "ETCDCTL_"))}
    env.update(extra)
    return env


def cli(endpoint: str | None, *args: str) -> list[str]:
    """The argv of ``python -m etcdsync [--endpoints ENDPOINT] ARGS...``."""
    endpoints = ["--endpoints", endpoint] if endpoint is not None else []
    return [sys.executable, "-m", "etcdsync", *endpoints, *args]


def etcdctl(endpoint: str, *args: str) -> list[str]:
    path = shutil.which("etcdctl")
    if path is None:
        pytest.fail("etcdctl not found: install Debian's etcd-client (make test's bootstrap does)")
    return [path, f"--endpoints={endpoint}", *args]


class Lines:
    """Reads a stream line by line (bytes, without the newline)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise EOFError(f"the stream ended; got {self._buffer!r}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    async def text(self) -> str:
        return (await self.next()).decode()

    async def json(self) -> dict[str, object]:
        result = json.loads(await self.next())
        assert isinstance(result, dict)
        return result

    async def until(self, marker: bytes) -> bytes:
        """Everything up to and including the next ``marker``."""
        while marker not in self._buffer:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise EOFError(f"the stream ended before {marker!r}; got {self._buffer!r}")
            self._buffer += chunk
        at = self._buffer.index(marker) + len(marker)
        chunk, self._buffer = self._buffer[:at], self._buffer[at:]
        return chunk

    async def fill(self) -> None:
        """Read into the buffer until the stream ends (the reads that follow are served from it)."""
        while chunk := await self._stream.receive_some(65536):
            self._buffer += chunk

    def tail(self, size: int = 2000) -> bytes:
        """The last ``size`` bytes read so far (for failure messages)."""
        return self._buffer[-size:]

    async def rest(self) -> bytes:
        """Everything until the stream ends."""
        await self.fill()
        rest, self._buffer = self._buffer, b""
        return rest


@attrs.define
class Spawned:
    process: trio.Process
    stdout: Lines
    stderr: Lines
    grandchildren: list[int] = attrs.Factory(list)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def handles_signals(self) -> None:
        """Wait until etcdsync handles SIGTERM itself, i.e. its signal handling is installed.

        Python leaves SIGTERM alone at startup; etcdsync catches it (with SIGINT) from the moment its
        signal receiver exists, so from then on SIGINT/SIGTERM stop it through its own handling.
        """
        status = trio.Path(f"/proc/{self.process.pid}/status")
        while True:
            text = await status.read_text()
            caught = next(line for line in text.splitlines() if line.startswith("SigCgt:"))
            if int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)):
                return
            await trio.sleep(0.01)

    async def wait(self, *, bound: float = 45.0) -> int:
        """The exit status. Reads the child's stdout and stderr meanwhile, so that a child writing
        more than a pipe holds cannot block; a child still running after ``bound`` seconds fails the
        test with the end of what it wrote to stderr."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.stdout.fill)
            nursery.start_soon(self.stderr.fill)
            with trio.move_on_after(bound):
                status = await self.process.wait()
                nursery.cancel_scope.cancel()
                return status
            nursery.cancel_scope.cancel()
        raise AssertionError(
            f"pid {self.process.pid} ({self.process.args!r}) did not exit within {bound} s; "
            f"its stderr ends with {self.stderr.tail()!r}"
        )

    async def child_started(self) -> dict[str, object]:
        """Read child.py's first line (its pid and environment); remember the pid for cleanup."""
        first = await self.stdout.json()
        pid = first["pid"]
        assert isinstance(pid, int)
        self.grandchildren.append(pid)
        return first


@asynccontextmanager
async def spawn(argv: list[str], *, env: Mapping[str, str] | None = None) -> AsyncIterator[Spawned]:
    process = await trio.lowlevel.open_process(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=clean_env() if env is None else env,
    )
    assert process.stdout is not None and process.stderr is not None
    spawned = Spawned(process, Lines(process.stdout), Lines(process.stderr))
    try:
        yield spawned
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            for pid in spawned.grandchildren:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@attrs.frozen
class Result:
    status: int
    stdout: str
    stderr: str


async def run(argv: list[str], *, env: Mapping[str, str] | None = None) -> Result:
    """Run to completion; the status and the whole output."""
    done = await trio.run_process(
        argv,
        stdin=subprocess.DEVNULL,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=clean_env() if env is None else env,
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


async def queue(client: Client, name: bytes) -> list[KeyValue]:
    """The participants waiting for or holding ``name``, oldest first."""
    kvs = (await client.range(name + b"/", prefix=True)).kvs
    return sorted(kvs, key=lambda kv: kv.create_revision)


async def wait_queue_len(client: Client, name: bytes, n: int) -> list[KeyValue]:
    """Poll until ``name`` has ``n`` participants (bounded by the test's deadline)."""
    while len(kvs := await queue(client, name)) != n:
        await trio.sleep(0.02)
    return kvs


def one_line_error(stderr: str) -> str:
    """Assert ``stderr`` is exactly one line and no traceback; return it."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]
