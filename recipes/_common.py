"""Shared plumbing for the recipe programs: where etcd is, and running copies of a program as "hosts".

Not part of the etcdsync API; each recipe imports it from its own directory.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio


def add_endpoint_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoints",
        help="etcd endpoint(s), comma-separated; default: start a local etcd for this run, removed after",
    )


@asynccontextmanager
async def etcd_endpoints(given: str | None, *, say: bool = True) -> AsyncIterator[str]:
    """``given``, or the endpoint of a local etcd started for the duration of the block."""
    if given:
        yield given
        return
    from etcdsync.testing import etcd_server

    async with etcd_server() as server:
        if say:
            print(
                f"[etcd] started a local etcd at {server.endpoint} (pass --endpoints to use yours)",
                flush=True,
            )
        yield server.endpoint


class Host:
    """A copy of a recipe program running as a separate process (a "host"), with its output lines."""

    def __init__(self, name: str, process: trio.Process) -> None:
        self.name = name
        self.process = process
        self.lines: list[str] = []

    async def pump(self, on_line: trio.MemorySendChannel[tuple[str, str]]) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                line = raw.decode(errors="replace")
                self.lines.append(line)
                await on_line.send((self.name, line))


@asynccontextmanager
async def start_host(name: str, argv: Sequence[str]) -> AsyncIterator[Host]:
    """Run ``python argv...`` as a host; it is killed and reaped when the block ends."""
    process = await trio.lowlevel.open_process(
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield Host(name, process)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()


async def host_process(
    name: str,
    argv: Sequence[str],
    lines: trio.MemorySendChannel[tuple[str, str]],
    *,
    task_status: trio.TaskStatus[Host] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``nursery.start(host_process, ...)``: start a host, hand it over, and forward its output lines."""
    async with start_host(name, argv) as host:
        task_status.started(host)
        await host.pump(lines)
