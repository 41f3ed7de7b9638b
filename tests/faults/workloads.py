"""Shared pieces of the fault workloads: child processes, the server-history replay, and timing helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

import etcdsync
from etcdsync.client import Event, EventType

from .checkers import KeyEvent, WatchEvent

WORKER = str(Path(__file__).with_name("worker.py"))

#: Scales every bound of the fast tier (e.g. ETCDSYNC_TIMING=2 on a slow machine). Printed in reports.
TIMING = float(os.environ.get("ETCDSYNC_TIMING", "1"))


def now() -> float:
    """The clock histories use: system-wide CLOCK_MONOTONIC, comparable across processes."""
    return time.monotonic()


@attrs.define(eq=False)
class Child:
    """A worker process whose JSON lines are collected into ``records`` (and handed to ``on_record``)."""

    name: str
    process: trio.Process
    records: list[dict[str, object]] = attrs.field(factory=list)
    done: trio.Event = attrs.field(factory=trio.Event)

    async def pump(self, on_record: Callable[[Child, dict[str, object]], None] | None = None) -> None:
        """Read the child's stdout to EOF (or until it dies)."""
        assert self.process.stdout is not None
        buffer = b""
        try:
            while chunk := await self.process.stdout.receive_some(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    record = json.loads(line)
                    assert isinstance(record, dict)
                    self.records.append(record)
                    if on_record is not None:
                        on_record(self, record)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.done.set()


@asynccontextmanager
async def spawn_worker(name: str, *args: str) -> AsyncIterator[Child]:
    """Start ``worker.py`` in its own session; it is SIGKILLed and reaped on exit, whatever happens."""
    process = await trio.lowlevel.open_process(
        [sys.executable, WORKER, args[0], name, *args[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield Child(name, process)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            with trio.move_on_after(10):
                await process.wait()


async def replay_raw(client: etcdsync.Client, prefix: bytes, start: int) -> list[Event]:
    """The server's history of every key under ``prefix`` from revision ``start`` on, as etcd replays it.

    Writes a sentinel key under the prefix first, so the replay knows where the history ends; the sentinel
    is left out. Needs the history not to be compacted.
    """
    sentinel = prefix + b"\xff~end"
    end = (await client.put(sentinel, b"")).header.revision
    events: list[Event] = []
    with trio.fail_after(30 * TIMING):
        async with client.watch(prefix, prefix=True, start_revision=start) as watch:
            async for response in watch:
                events.extend(e for e in response.events if e.kv.key != sentinel)
                if response.events and response.events[-1].kv.mod_revision >= end:
                    return events
    raise AssertionError("unreachable")


def as_watch_event(e: Event) -> WatchEvent:
    kind = "put" if e.type is EventType.PUT else "delete"
    return WatchEvent(e.kv.mod_revision, e.kv.key, kind, e.kv.value if kind == "put" else b"")


def as_key_event(e: Event) -> KeyEvent:
    kind = "put" if e.type is EventType.PUT else "delete"
    return KeyEvent(e.kv.mod_revision, kind, e.kv.key, e.kv.create_revision)


async def replay(client: etcdsync.Client, prefix: bytes, start: int) -> list[WatchEvent]:
    """:func:`replay_raw` as checker events."""
    return [as_watch_event(e) for e in await replay_raw(client, prefix, start)]


async def current_revision(client: etcdsync.Client) -> int:
    return (await client.range(b"\x00", count_only=True)).header.revision


async def first_success(
    operation: Callable[[], Awaitable[object]],
    *,
    bound: float,
    attempt_timeout: float = 1.0,
    pause: float = 0.02,
) -> float | None:
    """Retry ``operation`` (each try bounded) until it succeeds; return the ``now()`` of success, or None when
    ``bound`` seconds passed first."""
    with trio.move_on_after(bound):
        while True:
            with trio.move_on_after(attempt_timeout):
                try:
                    await operation()
                    return now()
                except etcdsync.EtcdError:
                    pass
            await trio.sleep(pause)
    return None


def report_line(text: str) -> None:
    """Print a measurement for the test log (visible with -s, and in the soak summary)."""
    print(f"[faults] {text}", flush=True)
