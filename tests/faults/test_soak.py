"""The soak tier (``make soak``, marker ``soak``): every workload of the fast tier, bigger and longer, with
randomised fault schedules, cycled until ``$ETCDSYNC_SOAK_SECONDS`` (default 20 minutes) have passed.

The seed is printed first (``$ETCDSYNC_SOAK_SEED`` replays a run: the schedules, not the timing). Each
iteration runs on a fresh cluster. At the end a summary table (ops, faults injected, violations, negative
controls) is written to ``docs/reliability.md`` (``$ETCDSYNC_SOAK_REPORT`` overrides the path), and the test
fails if any checker found a violation (negative controls are reported, never asserted).
"""

from __future__ import annotations

import datetime
import os
import platform
import random
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import pytest
import trio

import etcdsync
from etcdsync import Isolation
from etcdsync.testing import etcd_cluster, find_etcd
from etcdsync.testing.faults import netns_cluster, netns_support, peer_proxied_cluster

from .bank_workload import BankConfig, run_bank_workload
from .checkers import Report, check_recovery
from .election_workload import ElectionConfig, run_election_workload
from .mutex_workload import MutexConfig, run_mutex_workload
from .recipes_workload import HANDOVER_BOUND, run_double_barrier_workload, run_semaphore_workload
from .recovery import RECOVERY_BOUND, SCENARIOS, measure
from .watch_workload import WatchConfig, run_watch_workload
from .workloads import report_line

SOAK_SECONDS = float(os.environ.get("ETCDSYNC_SOAK_SECONDS", "1200"))
REPORT_PATH = Path(
    os.environ.get("ETCDSYNC_SOAK_REPORT") or Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
)

pytestmark = pytest.mark.soak


@attrs.define
class Row:
    """One line of the summary: a workload's totals over every run."""

    workload: str
    checks: str
    runs: int = 0
    ops: int = 0
    faults: int = 0
    violations: int = 0
    control_anomalies: int | None = None  # negative control: reported, not asserted
    worst: float = 0.0  # the worst measured bound (failover, handover, recovery), seconds
    bound: float = 0.0
    messages: list[str] = attrs.field(factory=list)

    def add(self, report: Report, *, ops: float, faults: float, worst: float = 0.0) -> None:
        self.runs += 1
        self.ops += int(ops)
        self.faults += int(faults)
        self.violations += len(report.violations)
        self.messages.extend(report.violations[:5])
        self.worst = max(self.worst, worst)


@attrs.define
class Soak:
    rng: random.Random
    rows: dict[str, Row]

    def row(self, key: str) -> Row:
        return self.rows[key]


def _rows() -> dict[str, Row]:
    rows = [
        Row("mutex (fenced)", "token order, no lost update, acked writes visible, rejected writes absent"),
        Row("election", "one leader per revision, ordered observers, fenced proclaims, failover bound"),
        Row("semaphore", "≤ limit holders at every revision (replayed), handover bound"),
        Row("double barrier", "nobody passes enter/leave early, ≤ count per round, release bound"),
        Row("watch", "events == server history (no gap/dup/reorder), atomic revisions"),
        Row(
            "STM bank (serializable levels)",
            "every audit sums to the total and equals the replay; zero-sum revisions",
        ),
        Row("recovery (peer proxies)", "majority progress during the fault; all members back after the heal"),
        Row("recovery (netns + nft)", "same, with real partitions and packet loss"),
    ]
    return {r.workload: r for r in rows}


async def _mutex(soak: Soak) -> None:
    rng = soak.rng
    config = MutexConfig(
        workers=rng.randint(3, 5),
        seconds=rng.uniform(20, 30),
        critical_section=rng.uniform(0.1, 0.4),
        pauses=rng.randint(2, 4),
        pause_seconds=rng.uniform(3.0, 4.0),
    )
    async with (
        etcd_cluster(3, unsafe_no_fsync=True) as cluster,
        etcdsync.open_client(cluster.endpoints) as client,
    ):
        outcomes = {}

        async def run(fenced: bool) -> None:
            outcomes[fenced] = await run_mutex_workload(
                client,
                cluster.endpoints,
                b"/soak/mutex/%d/" % fenced,
                fenced=fenced,
                config=config,
                rng=random.Random(rng.random()),
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, True)
            nursery.start_soon(run, False)
    fenced, unfenced = outcomes[True].report, outcomes[False].report
    row = soak.row("mutex (fenced)")
    row.add(fenced, ops=fenced.stats["committed"], faults=fenced.stats["pauses"])
    anomalies = int(unfenced.stats["lost_updates"] + unfenced.stats["token_inversions"])
    row.control_anomalies = (row.control_anomalies or 0) + anomalies
    report_line(fenced.summary())
    report_line(f"unfenced control: {anomalies} anomalies ({unfenced.summary().splitlines()[0]})")


async def _election(soak: Soak) -> None:
    rng = soak.rng
    seconds = rng.uniform(20, 30)
    kills = tuple(sorted(rng.uniform(1.5, seconds - 6) for _ in range(rng.randint(2, 4))))
    members = tuple(sorted(rng.uniform(2, seconds - 6) for _ in range(rng.randint(1, 2))))
    config = ElectionConfig(
        candidates=rng.randint(3, 5),
        seconds=seconds,
        candidate_kills=_spread(kills, 5.0),
        member_kills=_spread(members, 4.0),
    )
    async with etcd_cluster(3, unsafe_no_fsync=True) as cluster:
        outcome = await run_election_workload(cluster, b"/soak/election", config=config, rng=rng)
    row = soak.row("election")
    row.bound = config.failover_bound
    worst = max(outcome.failovers, default=0.0)
    row.add(
        outcome.report,
        ops=outcome.report.stats["proclaims_ok"],
        faults=len(outcome.failovers) + outcome.member_kills,
        worst=worst,
    )
    report_line(outcome.report.summary())


def _spread(times: tuple[float, ...], gap: float) -> tuple[float, ...]:
    """Times at least ``gap`` apart (a failover measurement must not overlap the next kill)."""
    out: list[float] = []
    for t in times:
        if not out or t - out[-1] >= gap:
            out.append(t)
    return tuple(out)


async def _semaphore(soak: Soak) -> None:
    rng = soak.rng
    seconds = rng.uniform(15, 25)
    revokes = _spread(tuple(sorted(rng.uniform(1, seconds - 4) for _ in range(rng.randint(2, 5)))), 2.0)
    async with etcd_cluster(3, unsafe_no_fsync=True) as cluster:
        report, handovers = await run_semaphore_workload(
            cluster, rng, limit=rng.randint(2, 3), tasks=rng.randint(5, 8), seconds=seconds, revoke_at=revokes
        )
    row = soak.row("semaphore")
    row.bound = HANDOVER_BOUND
    worst = max(handovers, default=0.0)
    if worst > HANDOVER_BOUND:
        report.fail(f"permit handover took {worst:.2f} s > {HANDOVER_BOUND} s")
    row.add(
        report,
        ops=report.stats["claims"],
        faults=report.stats["revokes"] + report.stats["member_kills"],
        worst=worst,
    )
    report_line(report.summary())


async def _double_barrier(soak: Soak) -> None:
    rng = soak.rng
    rounds = rng.randint(6, 10)
    async with etcd_cluster(3, unsafe_no_fsync=True) as cluster:
        report, released = await run_double_barrier_workload(
            cluster,
            rng,
            count=rng.randint(3, 5),
            rounds=rounds,
            revoke_round=rng.randint(1, rounds - 2),
            kill_round=rng.randint(0, rounds - 2),
        )
    row = soak.row("double barrier")
    row.bound = HANDOVER_BOUND
    worst = max(released, default=0.0)
    if worst > HANDOVER_BOUND:
        report.fail(f"leave released {worst:.2f} s after the revoke > {HANDOVER_BOUND} s")
    row.add(report, ops=report.stats["visits"], faults=2, worst=worst)
    report_line(report.summary())


async def _watch(soak: Soak) -> None:
    rng = soak.rng
    ops = rng.randint(2000, 4000)
    actions = ["proxy-reset", "proxy-blackhole", "kill-follower", "kill-leader"]
    rng.shuffle(actions)
    points = iter(sorted(rng.sample(range(100, ops - 200, 50), len(actions) * 2)))
    schedule: list[tuple[int, str]] = []
    for (
        action
    ) in actions:  # consumed in order: a kill's restart comes before the next fault, never overlapping
        schedule.append((next(points), action))
        if action.startswith("kill"):
            schedule.append((next(points), action.replace("kill", "restart")))
    config = WatchConfig(ops=ops, schedule=tuple(sorted(schedule)), blackhole_seconds=rng.uniform(0.5, 3))
    async with etcd_cluster(3, unsafe_no_fsync=True) as cluster:
        outcome = await run_watch_workload(cluster, b"/soak/watch/", config=config, rng=rng)
    row = soak.row("watch")
    for report in outcome.reports:
        if outcome.acknowledged_missing:
            report.fail(f"{outcome.acknowledged_missing} acknowledged puts missing from the server history")
        row.add(report, ops=report.stats["events"], faults=outcome.faults / len(outcome.reports))
        report_line(report.summary())


async def _bank(soak: Soak) -> None:
    rng = soak.rng
    seconds = rng.uniform(15, 25)
    config = BankConfig(
        accounts=rng.randint(4, 10),
        movers=rng.randint(3, 6),
        seconds=seconds,
        leader_kills=_spread(
            tuple(sorted(rng.uniform(1, seconds - 3) for _ in range(rng.randint(2, 4)))), 2.5
        ),
    )
    reports = {}
    async with (
        etcd_cluster(3, unsafe_no_fsync=True) as cluster,
        etcdsync.open_client(cluster.endpoints) as client,
    ):

        async def run(isolation: Isolation, nemesis: bool) -> None:
            reports[isolation] = await run_bank_workload(
                client,
                cluster if nemesis else None,
                b"/soak/bank/%s/" % isolation.name.encode(),
                config=config,
                isolation=isolation,
                rng=random.Random(rng.random()),
            )

        async with trio.open_nursery() as nursery:
            for i, isolation in enumerate(Isolation):
                nursery.start_soon(run, isolation, i == 0)
    row = soak.row("STM bank (serializable levels)")
    for isolation, report in reports.items():
        if isolation is Isolation.READ_COMMITTED:
            row.control_anomalies = (row.control_anomalies or 0) + len(report.violations)
        else:
            row.add(
                report,
                ops=report.stats["commits"],
                faults=len(config.leader_kills) if isolation is Isolation.SERIALIZABLE_SNAPSHOT else 0,
            )
        report_line(report.summary().splitlines()[0])


async def _recovery(soak: Soak) -> None:
    rng = soak.rng
    scenarios = list(SCENARIOS)
    rng.shuffle(scenarios)
    async with peer_proxied_cluster(3) as net:
        measured = []
        for fault in scenarios:
            measured.append(await measure(net.cluster, fault, net=net, duration=rng.uniform(1, 4)))
            await net.cluster.wait_healthy()
    report = check_recovery([m.recovery for m in measured], bound=RECOVERY_BOUND)
    for m in measured:
        if m.during is None:
            report.fail(f"{m.fault}: the majority made no progress during the fault")
    row = soak.row("recovery (peer proxies)")
    row.bound = RECOVERY_BOUND
    row.add(
        report, ops=len(measured) * 2, faults=len(measured), worst=report.stats.get("max_recovery_s", 0.0)
    )
    report_line(report.summary())


async def _netns(soak: Soak) -> None:
    rng = soak.rng
    row = soak.row("recovery (netns + nft)")
    if netns_support() is not None:
        row.messages.append(f"skipped: {netns_support()}")
        return
    extra = ["--pre-vote"] if rng.random() < 0.5 else []
    async with netns_cluster(3, extra_args=extra) as net:
        measured = []
        for fault in rng.sample(["isolate-leader", "isolate-follower"], 2):
            measured.append(await measure(net.cluster, fault, net=net, duration=rng.uniform(1, 4)))
            await net.cluster.wait_healthy()
        # 30 % packet loss on the leader's peer traffic: slow, but the cluster must keep making progress.
        leader = await net.cluster.leader()
        await net.set_loss(leader, rng.randint(10, 40))
        async with etcdsync.open_client(net.endpoints) as client:
            with trio.fail_after(60):
                for i in range(20):
                    while True:
                        try:
                            await client.put(b"/soak/netns/loss", b"%d" % i)
                            break
                        except etcdsync.EtcdError:
                            await trio.sleep(0.1)
        await net.heal()
    report = check_recovery([m.recovery for m in measured], bound=RECOVERY_BOUND)
    row.bound = RECOVERY_BOUND
    row.add(
        report,
        ops=len(measured) * 2 + 20,
        faults=len(measured) + 1,
        worst=report.stats.get("max_recovery_s", 0.0),
    )
    report_line(report.summary() + (" (pre-vote)" if extra else " (no pre-vote)"))


WORKLOADS: list[Callable[[Soak], Awaitable[None]]] = [
    _mutex,
    _election,
    _semaphore,
    _double_barrier,
    _watch,
    _bank,
    _recovery,
    _netns,
]


def _etcd_version() -> str:
    done = subprocess.run([find_etcd(), "--version"], capture_output=True, timeout=30, check=False)
    return done.stdout.decode().splitlines()[0] if done.stdout else "unknown"


def write_summary(path: Path, rows: dict[str, Row], *, seed: int, seconds: float, iterations: int) -> None:
    def control(r: Row) -> str:
        return "-" if r.control_anomalies is None else f"{r.control_anomalies}"

    def worst(r: Row) -> str:
        return f"{r.worst:.2f} s (bound {r.bound:.1f} s)" if r.bound else "-"

    lines = [
        "# Reliability: soak summary",
        "",
        "Written by `make soak` (`tests/faults/test_soak.py`); do not edit by hand.",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
        f"- seed: `{seed}` (replay the schedules with `ETCDSYNC_SOAK_SEED={seed}`)",
        f"- duration: {seconds / 60:.1f} min (`ETCDSYNC_SOAK_SECONDS={int(SOAK_SECONDS)}`), {iterations} workload runs",
        f"- etcd: {_etcd_version()}; Python {platform.python_version()}; {platform.system()} {platform.release()}; "
        f"{os.cpu_count()} CPUs",
        *([f"- note: {os.environ['ETCDSYNC_SOAK_NOTE']}"] if os.environ.get("ETCDSYNC_SOAK_NOTE") else []),
        "",
        "| workload | runs | ops | faults injected | violations | negative control (reported) | worst time (bound) | checks |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows.values():
        lines.append(
            f"| {r.workload} | {r.runs} | {r.ops} | {r.faults} | {r.violations} | {control(r)} | {worst(r)} | {r.checks} |"
        )
    total = sum(r.violations for r in rows.values())
    lines += [
        "",
        f"**Total violations: {total}.**",
        "",
        "Ops: committed counter writes (mutex), accepted proclamations (election), guarded writes by permit",
        "holders (semaphore), passes through a round (double barrier), watch events delivered (per watcher),",
        "committed transfers (bank), operations probed (recovery). Faults: holder pauses past the TTL, candidate",
        "and member SIGKILLs, lease revocations from outside, connection resets and blackholes, peer",
        "partitions and delays, nft partitions and packet loss. Negative controls run the same schedule without",
        "the protection (unfenced writes; READ_COMMITTED STM) and show why it is needed.",
    ]
    notes = [f"- {r.workload}: {m}" for r in rows.values() for m in r.messages]
    if notes:
        lines += ["", "## Notes and violations", "", *notes]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.deadline(SOAK_SECONDS + 900)
async def test_soak() -> None:
    seed = int(os.environ.get("ETCDSYNC_SOAK_SEED") or random.SystemRandom().randrange(1 << 32))
    report_line(f"soak: seed {seed}, {SOAK_SECONDS:.0f} s")
    soak = Soak(random.Random(seed), _rows())
    started = trio.current_time()
    iterations = 0
    order = list(WORKLOADS)
    while trio.current_time() - started < SOAK_SECONDS or iterations < len(order):
        if iterations % len(order) == 0:
            soak.rng.shuffle(order)
        workload = order[iterations % len(order)]
        report_line(
            f"soak: run {iterations + 1} ({workload.__name__.strip('_')}) at {trio.current_time() - started:.0f} s"
        )
        await workload(soak)
        iterations += 1
    elapsed = trio.current_time() - started
    write_summary(REPORT_PATH, soak.rows, seed=seed, seconds=elapsed, iterations=iterations)
    report_line(f"soak: summary written to {REPORT_PATH}")
    bad = {r.workload: r.messages for r in soak.rows.values() if r.violations}
    assert not bad, f"violations (seed {seed}): {bad}"
