"""The Mutex-with-fencing workload: worker processes increment a counter under the lock while the nemesis
SIGSTOPs the current holder for longer than its lease TTL (shared/notes/fault-injection.md §3.i).

Run fenced (every write guarded by ``mutex.is_owner()``) the checker must find nothing; run unfenced the
same schedule produces lost updates and token inversions, which are reported, not asserted: they are why
fencing matters.
"""

from __future__ import annotations

import contextlib
import random

import attrs
import trio

import etcdsync
from etcdsync.testing.faults import pause_process

from .checkers import CriticalSection, RegisterWrite, Report, check_fenced_register
from .workloads import TIMING, Child, current_revision, now, replay, spawn_worker


@attrs.frozen
class MutexConfig:
    workers: int = 3
    seconds: float = 12.0
    ttl: int = 2
    critical_section: float = 0.3
    pauses: int = 2
    #: Longer than the TTL plus the lessor's 0.5 s expiry check, so the lease is gone when the holder wakes.
    pause_seconds: float = 3.0
    first_pause_after: float = 1.0
    pause_gap: float = 0.5


@attrs.define
class MutexOutcome:
    report: Report
    pauses: int
    lost_sessions_after_pause: int
    records: list[dict[str, object]]


def writes_and_sections(
    records: list[dict[str, object]],
) -> tuple[list[RegisterWrite], list[CriticalSection]]:
    """Fold worker records into one entry per write (its final status) and critical sections."""
    status: dict[str, dict[str, object]] = {}
    sections: list[CriticalSection] = []
    acquired: dict[tuple[str, int], float] = {}
    for r in records:
        p, f, kind = str(r["p"]), r["f"], r["type"]
        if f == "write":
            value = str(r["value"])
            if kind == "invoke":
                status[value] = {"p": p, "token": r["token"], "status": "info", "rev": 0}
            else:
                status[value].update(status=kind, rev=r.get("rev", 0))
        elif f == "acquire":
            acquired[(p, int(r["token"]))] = float(r["t"])  # type: ignore[arg-type]
        elif f == "release" and kind == "invoke":
            token = int(r["token"])  # type: ignore[call-overload]
            start = acquired.pop((p, token), None)
            if start is not None:
                sections.append(CriticalSection(p, token, start, float(r["t"])))  # type: ignore[arg-type]
    writes = [
        RegisterWrite(str(s["p"]), int(s["token"]), v.encode(), str(s["status"]), int(s["rev"]))  # type: ignore[call-overload]
        for v, s in status.items()
    ]
    return writes, sections


async def run_mutex_workload(
    client: etcdsync.Client,
    endpoints: list[str],
    prefix: bytes,
    *,
    fenced: bool,
    config: MutexConfig,
    rng: random.Random,
) -> MutexOutcome:
    """Run the workload and check its history (the caller asserts or reports)."""
    lock, counter = prefix + b"lock", prefix + b"ctr"
    base = await current_revision(client)
    records: list[dict[str, object]] = []
    pauses: list[tuple[str, float, float]] = []  # (worker, paused at, resumed at)
    start = now()
    nemesis = {"busy": False, "started": 0}

    async with contextlib.AsyncExitStack() as stack, trio.open_nursery() as nursery:

        async def pause(child: Child) -> None:
            try:
                paused_at = now()
                await pause_process(child.process, config.pause_seconds * TIMING * rng.uniform(1.0, 1.2))
                pauses.append((child.name, paused_at, now()))
                await trio.sleep(config.pause_gap)
            finally:
                nemesis["busy"] = False

        def on_record(child: Child, record: dict[str, object]) -> None:
            # Pause a worker right after it acquired: it is in its critical section, between read and write.
            records.append(record)
            if (
                record["f"] == "acquire"
                and not nemesis["busy"]
                and nemesis["started"] < config.pauses
                and config.first_pause_after
                < now() - start
                < config.seconds - config.pause_seconds * TIMING * 1.2
            ):
                nemesis["busy"] = True
                nemesis["started"] += 1
                nursery.start_soon(pause, child)

        children = [
            await stack.enter_async_context(
                spawn_worker(
                    f"{'f' if fenced else 'u'}{i}",
                    "mutex",
                    ",".join(endpoints),
                    lock.decode(),
                    counter.decode(),
                    str(config.ttl),
                    str(config.seconds),
                    "1" if fenced else "0",
                    str(config.critical_section),
                )
            )
            for i in range(config.workers)
        ]
        for child in children:
            nursery.start_soon(child.pump, on_record)
        with trio.fail_after(config.seconds + 30 * TIMING):
            for child in children:
                await child.done.wait()
    committed = [
        (e.revision, e.value)
        for e in await replay(client, prefix, base + 1)
        if e.key == counter and e.type == "put"
    ]
    writes, sections = writes_and_sections(records)
    report = check_fenced_register(
        writes, committed, sections=sections, name="mutex (fenced)" if fenced else "mutex (UNFENCED)"
    )
    lost_after = 0
    for worker, _, resumed in pauses:
        if any(
            r["p"] == worker and r["f"] == "session" and r["type"] == "lost" and float(r["t"]) >= resumed  # type: ignore[arg-type]
            for r in records
        ):
            lost_after += 1
    report.stats["pauses"] = len(pauses)
    return MutexOutcome(report, len(pauses), lost_after, records)
