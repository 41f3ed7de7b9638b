"""The Election workload: candidate processes campaign, proclaim guarded values and resign, observers in this
process record every leader they see, and the nemesis SIGKILLs leading candidates (measuring how long until
an observer sees the next leader) and kills the etcd leader member in between (shared/notes §3.ii)."""

from __future__ import annotations

import contextlib
import random
import signal

import attrs
import trio

import etcdsync
from etcdsync.testing import EtcdCluster

from .checkers import Observed, Proclaim, Report, Win, check_election
from .workloads import TIMING, Child, spawn_worker


@attrs.frozen
class ElectionConfig:
    candidates: int = 3
    seconds: float = 12.0
    ttl: int = 2
    proclaims: int = 3
    interval: float = 0.15
    #: When to SIGKILL the candidate that leads (seconds into the run); a replacement is started each time.
    candidate_kills: tuple[float, ...] = (1.5, 8.0)
    #: When to SIGKILL the etcd leader member, and how long before it is restarted.
    member_kills: tuple[float, ...] = (4.5,)
    member_down: float = 1.5

    @property
    def failover_bound(self) -> float:
        """TTL (the dead leader's lease expires) + election timeout + margin (watch, query, scheduling)."""
        return (self.ttl + 0.5 + 1.5) * TIMING


@attrs.define
class ElectionOutcome:
    report: Report
    failovers: list[float]
    member_kills: int


async def run_election_workload(
    cluster: EtcdCluster, name: bytes, *, config: ElectionConfig, rng: random.Random
) -> ElectionOutcome:
    records: list[dict[str, object]] = []
    observations: dict[str, list[Observed]] = {"o0": [], "o2": []}
    seen_at: list[tuple[float, int]] = []  # (trio time, term) as observer o0 saw new leaders
    leading: dict[str, int] = {}  # worker -> term it leads in (from its records)
    children: dict[str, Child] = {}
    failovers: list[float] = []
    member_kills = 0
    endpoints = cluster.endpoints

    def on_record(child: Child, record: dict[str, object]) -> None:
        records.append(record)
        if record["f"] == "win":
            leading[child.name] = int(record["term"])  # type: ignore[call-overload]
        elif record["f"] in ("resign", "session", "done"):
            leading.pop(child.name, None)

    async def observe(observer: str, client: etcdsync.Client) -> None:
        async with (
            etcdsync.open_session(client, ttl=5) as session,
            etcdsync.Election(session, name).observe() as leaders,
        ):
            async for kv in leaders:
                if kv is None:
                    continue
                observations[observer].append(Observed(kv.key, kv.create_revision, kv.mod_revision, kv.value))
                if observer == "o0":
                    seen_at.append((trio.current_time(), kv.create_revision))

    async with (
        contextlib.AsyncExitStack() as stack,
        etcdsync.open_client(endpoints) as client0,
        etcdsync.open_client(endpoints[::-1]) as client2,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(observe, "o0", client0)
        nursery.start_soon(observe, "o2", client2)
        spawned = 0

        async def start_candidate(seconds: float) -> None:
            nonlocal spawned
            worker = f"c{spawned}"
            spawned += 1
            child = await stack.enter_async_context(
                spawn_worker(
                    worker,
                    "elect",
                    ",".join(endpoints),
                    name.decode(),
                    str(config.ttl),
                    str(seconds),
                    str(config.proclaims),
                    str(config.interval),
                )
            )
            children[worker] = child
            nursery.start_soon(child.pump, on_record)

        start = trio.current_time()
        for _ in range(config.candidates):
            await start_candidate(config.seconds)

        async def kill_leading_candidate(at: float) -> None:
            await trio.sleep_until(start + at)
            while not leading:  # someone wins within a moment; the test deadline bounds this
                await trio.sleep(0.01)
            worker, term = rng.choice(sorted(leading.items()))
            children[worker].process.send_signal(signal.SIGKILL)
            killed_at = trio.current_time()
            leading.pop(worker, None)
            await start_candidate(max(1.0, config.seconds - at))
            with trio.move_on_after(config.failover_bound * 3):
                while True:
                    later = [t for t, seen in seen_at if seen > term and t >= killed_at]
                    if later:
                        failovers.append(later[0] - killed_at)
                        return
                    await trio.sleep(0.01)
            failovers.append(float("inf"))

        async def kill_leader_member(at: float) -> None:
            nonlocal member_kills
            await trio.sleep_until(start + at)
            index = await cluster.leader()
            await cluster.kill(index)
            member_kills += 1
            await trio.sleep(config.member_down)
            await cluster.restart(index)

        async with trio.open_nursery() as nemesis:
            for at in config.candidate_kills:
                nemesis.start_soon(kill_leading_candidate, at)
            for at in config.member_kills:
                nemesis.start_soon(kill_leader_member, at)
        with trio.fail_after(config.seconds + 30 * TIMING):
            for child in list(children.values()):
                await child.done.wait()
        await trio.sleep(0.5)  # let the observers catch up with the last proclamations
        nursery.cancel_scope.cancel()

    wins = [Win(str(r["p"]), str(r["key"]).encode(), int(r["term"])) for r in records if r["f"] == "win"]  # type: ignore[call-overload]
    proclaims = [
        Proclaim(str(r["p"]), int(r["term"]), str(r["value"]).encode(), str(r["type"]), int(r.get("rev", 0)))  # type: ignore[call-overload]
        for r in records
        if r["f"] == "proclaim"
    ]
    report = check_election(
        wins, proclaims, observations, failovers=failovers, failover_bound=config.failover_bound
    )
    report.stats["member_kills"] = member_kills
    return ElectionOutcome(report, failovers, member_kills)
