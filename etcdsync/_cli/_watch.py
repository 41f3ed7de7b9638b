"""``etcdsync watch`` (events printed as ``etcdctl watch`` prints them) and ``etcdsync barrier``."""

from __future__ import annotations

import os

from .._barrier import Barrier
from ..client import CompactedError
from ._connect import ConnectOptions, connect
from ._runtime import EXIT_OK, CliError, Interrupts, out, out_bytes, warn

__all__ = ["run_barrier", "run_watch"]


async def run_watch(
    connect_options: ConnectOptions,
    key: bytes,
    interrupts: Interrupts,
    *,
    prefix: bool,
    start_revision: int,
    prev_kv: bool,
) -> int:
    """Print every event on ``key`` (or under it) until stopped.

    Each event is its type (``PUT`` or ``DELETE``), then, with ``--prev-kv``, the previous key and
    value lines, then the key and value lines (a DELETE's value line is empty) — as ``etcdctl watch``.
    """
    interrupts.status_on_signal = EXIT_OK
    async with connect(connect_options) as client:
        try:
            async with client.watch(
                key, prefix=prefix, start_revision=start_revision, prev_kv=prev_kv
            ) as events:
                async for resp in events:
                    for event in resp.events:
                        out(event.type.name)
                        if event.prev_kv is not None:
                            out_bytes(event.prev_kv.key)
                            out_bytes(event.prev_kv.value)
                        out_bytes(event.kv.key)
                        out_bytes(event.kv.value)
        except CompactedError as exc:
            oldest = f"; the oldest revision left is {exc.compact_revision}" if exc.compact_revision else ""
            raise CliError(f"revision {start_revision} has been compacted{oldest} (--rev)") from exc
    return EXIT_OK  # pragma: no cover - a watch only ends by an error or a signal


async def run_barrier(
    connect_options: ConnectOptions, action: str, name: bytes, interrupts: Interrupts
) -> int:
    """``etcdsync barrier hold|release|wait NAME``: close, open, or wait until open."""
    async with connect(connect_options) as client:
        barrier = Barrier(client, name)
        with interrupts.cancellable():
            if action == "hold":
                if not await barrier.hold():
                    warn("barrier", f"{os.fsdecode(name)} was already held")
            elif action == "release":
                if not await barrier.release():
                    warn("barrier", f"{os.fsdecode(name)} was not held")
            else:
                await barrier.wait()
            return EXIT_OK
    return interrupts.exit_status()
