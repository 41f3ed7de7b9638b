"""Recipe benchmarks: Mutex (against python-etcd3's and aetcd's Lock), Election, Semaphore and STM.

Usage::

    python bench/recipes.py [--quick] [--repetitions 3] [--seconds 3] [--out FILE]
    python bench/recipes.py --summarize bench/results/recipes-<date>.json

Method (shared part: ``bench/_harness.py``, ``docs/benchmarks.md``). Every run is one process pinned
to CPU 1, with every contender in it on **one** client (etcdsync: default h2 transport; one session,
TTL 10 s, per contender); etcd is pinned to CPU 0. Cells:

* ``mutex 1``: one contender, ``acquire(); release()`` in a loop (cycles/s), paired with ``put`` --
  etcdsync's ``client.put`` at concurrency 1 in the same repetition, the physical floor being two
  round trips per cycle. The peers run the same loop on their ``Lock`` (a fresh lease and a Txn to
  acquire, a Txn to release).
* ``mutex 16`` / ``mutex 256``: N contenders on one lock, each looping acquire/release with no work
  in between; ``... hold``: the holder keeps the lock 5 ms. A *handoff* is an acquisition by another
  contender than the last holder (an unfair lock lets the releaser take it straight back).
  Handoff latency: from the moment the holder starts ``release()`` to the moment the next holder's
  ``acquire()`` returns. Per handoff: unary RPCs and Watch-stream requests
  (create/cancel) as counted by etcd, watch events etcd sent, and the waiters' wake-ups (etcdsync:
  ``Mutex.statistics()``; peers: ``watch_once`` calls that returned an event). The peers' locks are
  used as shipped: python-etcd3 0.12.0's ``Lock.acquire()`` (default 10 s timeout; its retry
  callback needs ``tenacity < 7``: 6.3.1 here) and aetcd 1.0.0's ``Lock.acquire()`` (default
  10 s timeout); timeouts are counted. Their locks grant a lease per attempt and never revoke it:
  leftover leases are revoked between runs.
* ``election resign``: two candidates; the leader resigns (at once, or after leading 5 ms), the
  other's ``campaign()`` returns, it resigns, ...: latency from ``resign()`` start to the new leader's
  ``campaign()`` return.
* ``election kill``: a leader process (session TTL 2 s) and a follower process; the leader is
  SIGKILLed at a random point of its keep-alive cycle; latency until the follower's ``campaign()``
  returns (bounded by the TTL plus etcd's expiry check).
* ``semaphore``: limit 4, 64 contenders looping acquire/release: acquisitions/s, and the retry rate
  (wake-ups that did not yield a permit, per acquisition).
* ``stm <isolation>``: bank transfers between 10 accounts by 8 tasks through ``run_stm``, each
  isolation level: commits/s, retry rate (attempts / commits - 1), and whether the total balance was
  conserved.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import _harness as h
import trio

LOCK = "bench/lock"
TTL = 10
KILL_TTL = 2
SEM_LIMIT, SEM_CONTENDERS = 4, 64
STM_TASKS, STM_ACCOUNTS, STM_START = 8, 10, 1000
ISOLATIONS = ("SERIALIZABLE_SNAPSHOT", "SERIALIZABLE", "REPEATABLE_READS", "READ_COMMITTED")
MUTEX_CLIENTS = ("h2", "aetcd", "etcd3")
HOLD_MS = 5  # the "hold" variant of the contended cells: the holder keeps the lock this long


class Handoffs:
    """Counts acquisitions, and which of them were handoffs: the lock passing to *another* contender.

    An unfair lock lets the releasing contender take it straight back (barging) while the others
    sleep; that is an acquisition but not a handoff. Latency of a handoff: from the start of the
    previous holder's release to the return of the next holder's acquire. Uncontended (one
    contender), every cycle counts, with the whole acquire + release as its latency.
    """

    def __init__(self, meter: h.Meter, contended: bool):
        self.meter = meter
        self.contended = contended
        self.holder: int | None = None
        self.release_started = 0.0
        self.acquisitions = 0

    def acquired(self, contender: int) -> None:
        if self.meter.measuring:
            self.acquisitions += 1
        if self.contended and self.holder is not None and contender != self.holder:
            self.meter.record(self.release_started)
        self.holder = contender

    def releasing(self) -> None:
        self.release_started = time.perf_counter()

    def released(self, cycle_started: float) -> None:
        if not self.contended:
            self.meter.record(cycle_started)

    def snapshot(self) -> dict[str, float]:
        return {"acquisitions": float(self.acquisitions)}


def _meter(args: argparse.Namespace, **kw: Any) -> h.Meter:
    return h.Meter(etcd_pid=args.etcd_pid, metrics_url=args.metrics, **kw)


def _drive(args: argparse.Namespace) -> dict[str, float]:
    return {"warmup": args.warmup, "seconds": args.seconds}


# -- mutex: etcdsync -------------------------------------------------------------------------------------


async def etcdsync_mutex(args: argparse.Namespace, n: int, hold: float) -> h.Row:
    import etcdsync

    async with etcdsync.open_client(args.endpoint) as client, contextlib.AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(etcdsync.open_session(client, ttl=TTL)) for _ in range(n)]
        mutexes = [etcdsync.Mutex(s, LOCK) for s in sessions]

        def stats() -> dict[str, float]:
            total = {"queries": 0.0, "watches": 0.0, "wakeups": 0.0, "watch_events": 0.0}
            for m in mutexes:
                st = m.statistics()
                for k in total:
                    total[k] += getattr(st, k)
            return total

        meter = _meter(args, client_counters=lambda: {**stats(), **handoffs.snapshot()})
        handoffs = Handoffs(meter, contended=n > 1)

        async def contender(k: int) -> None:
            mutex = mutexes[k]
            while True:
                started = time.perf_counter()
                await mutex.acquire()
                handoffs.acquired(k)
                if hold:
                    await trio.sleep(hold)
                handoffs.releasing()
                await mutex.release()
                handoffs.released(started)

        return await h.trio_drive(contender, n, meter, **_drive(args))


async def etcdsync_put(args: argparse.Namespace) -> h.Row:
    """The baseline of ``mutex 1``: ``client.put`` at concurrency 1."""
    import etcdsync

    meter = _meter(args)
    async with etcdsync.open_client(args.endpoint) as client:
        worker = h.call_loop(lambda i: client.put(h.KEYS[i % len(h.KEYS)], h.VALUE), meter, 1)
        return await h.trio_drive(worker, 1, meter, **_drive(args))


# -- mutex: peers ----------------------------------------------------------------------------------------


class PeerCounters:
    """Wake-ups (``watch_once`` calls that returned an event), acquire timeouts and acquisitions of a
    peer's locks."""

    def __init__(self, args: argparse.Namespace, n: int, *, threads: bool = False) -> None:
        self.wakeups = 0
        self.timeouts = 0
        self.meter = _meter(args, threads=threads, client_counters=self.snapshot)
        self.handoffs = Handoffs(self.meter, contended=n > 1)

    def snapshot(self) -> dict[str, float]:
        return {"wakeups": float(self.wakeups), "timeouts": float(self.timeouts), **self.handoffs.snapshot()}


async def aetcd_mutex(args: argparse.Namespace, n: int, hold: float) -> h.Row:
    import asyncio

    import aetcd

    host, port = h.split_endpoint(args.endpoint)
    counters = PeerCounters(args, n)
    meter, handoffs = counters.meter, counters.handoffs
    # Not closed: with hundreds of contenders cancelled, aetcd's watcher can deadlock on close (its
    # request queue holds 10); the child leaves with os._exit once the row is out.
    client = aetcd.Client(host=host, port=port)
    await client.connect()
    watch_once = client.watch_once

    async def counted_watch_once(*a: Any, **kw: Any) -> Any:
        event = await watch_once(*a, **kw)  # raises WatchTimeoutError when it times out
        counters.wakeups += 1
        return event

    client.watch_once = counted_watch_once  # what Lock._wait_for_delete_event calls
    locks = [client.lock(LOCK.encode(), ttl=TTL) for _ in range(n)]

    async def contender(k: int) -> None:
        lock = locks[k]
        while True:
            started = time.perf_counter()
            if not await lock.acquire():  # default timeout: 10 s
                counters.timeouts += 1
                continue
            handoffs.acquired(k)
            if hold:
                await asyncio.sleep(hold)
            handoffs.releasing()
            await lock.release()
            handoffs.released(started)

    return await h.asyncio_drive(contender, n, meter, **_drive(args))


def etcd3_mutex(args: argparse.Namespace, n: int, hold: float) -> h.Row:
    etcd3 = h.import_etcd3()
    host, port = h.split_endpoint(args.endpoint)
    client = etcd3.client(host=host, port=port)
    counters = PeerCounters(args, n, threads=True)
    meter, handoffs = counters.meter, counters.handoffs
    watch_once = client.watch_once
    lock = threading.Lock()

    def counted_watch_once(*a: Any, **kw: Any) -> Any:
        event = watch_once(*a, **kw)  # raises WatchTimedOut when it times out
        with lock:
            counters.wakeups += 1
        return event

    client.watch_once = counted_watch_once  # what Lock.acquire's wait callback calls
    locks = [client.lock(LOCK, ttl=TTL) for _ in range(n)]

    def contender(k: int, stop: threading.Event) -> None:
        mine = locks[k]
        while not stop.is_set():
            started = time.perf_counter()
            if not mine.acquire():  # default timeout: 10 s
                with lock:
                    counters.timeouts += 1
                continue
            handoffs.acquired(k)
            if hold:
                time.sleep(hold)
            handoffs.releasing()
            mine.release()
            handoffs.released(started)

    return h.thread_drive(contender, n, meter, **_drive(args))


# -- election --------------------------------------------------------------------------------------------


async def election_resign(args: argparse.Namespace, hold: float) -> h.Row:
    import etcdsync

    meter = _meter(args)
    async with etcdsync.open_client(args.endpoint) as client, contextlib.AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(etcdsync.open_session(client, ttl=TTL)) for _ in range(2)]
        elections = [etcdsync.Election(s, "bench/election") for s in sessions]
        handoffs = Handoffs(meter, contended=True)

        async def candidate(k: int) -> None:
            while True:
                await elections[k].campaign(b"candidate-%d" % k)
                handoffs.acquired(k)
                if hold:
                    await trio.sleep(hold)
                handoffs.releasing()
                await elections[k].resign()

        return await h.trio_drive(candidate, 2, meter, **_drive(args))


async def election_process(args: argparse.Namespace, role: str) -> None:
    """``leader``: campaign, say so, hold until killed. ``follower``: say so, campaign, say when it leads."""
    import etcdsync

    async with (
        etcdsync.open_client(args.endpoint) as client,
        etcdsync.open_session(client, ttl=KILL_TTL) as session,
    ):
        election = etcdsync.Election(session, "bench/election-kill")
        if role == "follower":
            print("campaigning", flush=True)
        await election.campaign(role.encode())
        h.emit({"role": role, "leading_at": time.time()})
        await trio.sleep_forever()


async def _read_line(process: trio.Process, buffer: bytearray) -> str:
    assert process.stdout is not None
    while b"\n" not in buffer:
        chunk = await process.stdout.receive_some()
        if not chunk:
            raise RuntimeError("election child exited early")
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line.decode()


async def election_kill_trial(args: argparse.Namespace, server: Any) -> h.Row:
    """Leader process, follower process; SIGKILL the leader; when does the follower lead?"""

    def command(role: str) -> list[str]:
        return h.child_command(__file__, args, server, ["election-process", role])

    leader = await trio.lowlevel.open_process(command("leader"), stdout=subprocess.PIPE)
    follower: trio.Process | None = None
    try:
        leader_out, follower_out = bytearray(), bytearray()
        with trio.fail_after(30):
            await _read_line(leader, leader_out)  # it leads
            follower = await trio.lowlevel.open_process(command("follower"), stdout=subprocess.PIPE)
            await _read_line(follower, follower_out)  # "campaigning"
            # Kill at a random point of the leader's keep-alive cycle (a keep-alive every TTL/3).
            await trio.sleep(1.0 + random.uniform(0, KILL_TTL / 3))
            killed_at = time.time()
            leader.send_signal(signal.SIGKILL)
            led = json.loads(await _read_line(follower, follower_out))
    finally:
        for p in (leader, follower):
            if p is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            await p.wait()
    return {"latency_s": led["leading_at"] - killed_at, "ttl": KILL_TTL}


# -- semaphore -------------------------------------------------------------------------------------------


async def semaphore_child(args: argparse.Namespace) -> h.Row:
    import etcdsync

    async with etcdsync.open_client(args.endpoint) as client, contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(etcdsync.open_session(client, ttl=TTL))
            for _ in range(SEM_CONTENDERS)
        ]
        sems = [etcdsync.Semaphore(s, "bench/sem", SEM_LIMIT) for s in sessions]
        retries = {"retries": 0.0, "waited": 0.0}

        def stats() -> dict[str, float]:
            total = dict(retries)
            for sem in sems:
                st = sem.statistics()
                for k in ("queries", "watches", "wakeups", "watch_events"):
                    total[k] = total.get(k, 0.0) + getattr(st, k)
            return total

        meter = _meter(args, client_counters=stats)

        async def contender(k: int) -> None:
            sem = sems[k]
            while True:
                started = time.perf_counter()
                before = sem.statistics().wakeups
                await sem.acquire()
                woke = sem.statistics().wakeups - before
                if woke:
                    retries["waited"] += 1
                    retries["retries"] += woke - 1  # woken, but still not a permit: waited again
                meter.record(started)
                await sem.release()

        return await h.trio_drive(contender, SEM_CONTENDERS, meter, **_drive(args))


# -- STM -------------------------------------------------------------------------------------------------


async def stm_child(args: argparse.Namespace, isolation_name: str) -> h.Row:
    import etcdsync

    isolation = etcdsync.Isolation[isolation_name]
    accounts = [f"bench/bank/{i:02d}" for i in range(STM_ACCOUNTS)]
    attempts = {"attempts": 0.0}
    meter = _meter(args, client_counters=lambda: dict(attempts))
    async with etcdsync.open_client(args.endpoint) as client:
        for a in accounts:
            await client.put(a, str(STM_START))

        async def transfer(stm: etcdsync.STM, src: str, dst: str, amount: int) -> None:
            attempts["attempts"] += 1
            a = int(await stm.get(src) or 0)
            b = int(await stm.get(dst) or 0)
            if a >= amount:
                stm.put(src, str(a - amount))
                stm.put(dst, str(b + amount))

        async def teller(k: int) -> None:
            rng = random.Random(k)
            while True:
                src, dst = rng.sample(accounts, 2)
                started = time.perf_counter()
                await etcdsync.run_stm(client, transfer, src, dst, rng.randint(1, 50), isolation=isolation)
                meter.record(started)

        row = await h.trio_drive(teller, STM_TASKS, meter, **_drive(args))
        total = 0
        for a in accounts:
            kv = await client.get(a)
            total += int(kv.value) if kv else 0
    return {**row, "conserved": total == STM_START * STM_ACCOUNTS, "total": total}


# -- child dispatch --------------------------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    cell, rest = args.child[0], args.child[1:]
    if cell == "election-process":
        trio.run(election_process, args, rest[0])
        return
    row: h.Row
    if cell == "mutex":
        client, n, hold = rest[0], int(rest[1]), float(rest[2]) / 1000
        if client == "put":
            row = trio.run(etcdsync_put, args)
        elif client in ("aetcd", "etcd3"):
            if client == "aetcd":
                import asyncio

                loop = asyncio.new_event_loop()
                row = loop.run_until_complete(aetcd_mutex(args, n, hold))
            else:
                row = etcd3_mutex(args, n, hold)
            h.emit(row)
            # Stuck peer tasks (aetcd) or threads (python-etcd3's watcher, grpc) can hold up the exit.
            os._exit(0)
        else:
            row = trio.run(etcdsync_mutex, args, n, hold)
    elif cell == "election-resign":
        row = trio.run(election_resign, args, float(rest[0]) / 1000)
    elif cell == "semaphore":
        row = trio.run(semaphore_child, args)
    elif cell == "stm":
        row = trio.run(stm_child, args, rest[0])
    else:
        raise SystemExit(f"unknown cell {cell}")
    h.emit(row)


# -- parent ----------------------------------------------------------------------------------------------


async def revoke_all_leases(endpoint: str) -> int:
    """Revoke every lease on the server (the peers' locks leak one per attempt); returns how many."""
    import etcdsync

    async with etcdsync.open_client(endpoint) as client:
        leases = list(await client.leases())
        limiter = trio.CapacityLimiter(64)

        async def revoke(lease_id: int) -> None:
            async with limiter:
                with contextlib.suppress(etcdsync.LeaseNotFoundError):
                    await client.lease_revoke(lease_id)

        async with trio.open_nursery() as nursery:
            for lease_id in leases:
                nursery.start_soon(revoke, lease_id)
    return len(leases)


def plan(args: argparse.Namespace, mutex_clients: list[str]) -> list[tuple[str, list[list[str]]]]:
    """The cells of one repetition: (name, the child arguments of each of its runs, to be ordered)."""
    sizes = (4,) if args.quick else (16, 256)
    cells: list[tuple[str, list[list[str]]]] = [
        ("mutex 1", [["mutex", c, "1", "0"] for c in ["put", *mutex_clients]]),
    ]
    for hold in (0, HOLD_MS):
        name = "mutex {n}" + (" hold" if hold else "")
        cells += [(name.format(n=n), [["mutex", c, str(n), str(hold)] for c in mutex_clients]) for n in sizes]
    cells += [
        ("election resign", [["election-resign", "0"]]),
        ("election resign hold", [["election-resign", str(HOLD_MS)]]),
        ("election kill", [["election-kill"]] * (1 if args.quick else 2)),
        ("semaphore", [["semaphore"]]),
        ("stm", [["stm", i] for i in ISOLATIONS]),
    ]
    return cells


async def parent(args: argparse.Namespace, report: h.Row) -> None:
    mutex_clients, missing = h.available(MUTEX_CLIENTS)
    report["settings"].update(
        mutex_clients=mutex_clients,
        missing=missing,
        ttl=TTL,
        kill_ttl=KILL_TTL,
        semaphore=[SEM_LIMIT, SEM_CONTENDERS],
        stm=[STM_TASKS, STM_ACCOUNTS],
    )
    progress = h.Progress()
    async with h.bench_server(args) as server:
        for rep in range(args.repetitions):
            for cell, runs in plan(args, mutex_clients):
                for child_args in h.client_order(runs, rep):
                    if child_args == ["election-kill"]:
                        try:
                            row = await election_kill_trial(args, server)
                        except (trio.TooSlowError, RuntimeError) as exc:
                            row = {"failed": repr(exc)}
                    else:
                        row = await h.run_child(h.child_command(__file__, args, server, child_args))
                    row["leases_revoked_after"] = await revoke_all_leases(server.endpoint)
                    await h.compact(server.endpoint)
                    name = (
                        child_args[1] if len(child_args) > 1 and cell.startswith(("mutex", "stm")) else "h2"
                    )
                    report["runs"].append({"repetition": rep, "cell": cell, "client": name, **row})
                    progress.run(f"rep {rep} {cell:<15} {name:<22}", row, _line)


def _line(row: h.Row) -> str:
    if "latency_s" in row:
        return f"new leader after {row['latency_s']:.2f} s"
    return (
        f"{row['ops']:8,.0f}/s  {row['cpu_us_per_op']:6.0f} µs CPU/op  p50 {row['p50_ms']:.2f} ms  "
        f"p99 {row['p99_ms']:.2f} ms  {row['stats']}"
    )


# -- tables ----------------------------------------------------------------------------------------------


def _per_op(key: str, where: str = "server") -> Callable[[h.Row], float]:
    """``key`` per counted operation (handoff, cycle, commit ...); NaN when none was counted."""
    return lambda r: r[where].get(key, 0.0) / r["count"] if r["count"] else float("nan")


def _unary_per_op(r: h.Row) -> float:
    unary = sum(r["server"].get(f"recv:{m}", 0.0) for m in h.UNARY_METHODS)
    return unary / r["count"] if r["count"] else float("nan")


def summarize(report: h.Row) -> str:
    runs = report["runs"]
    s = report["settings"]
    out = []

    # Mutex, uncontended
    cell = h.select(runs, cell="mutex 1")
    put = h.select(cell, client="put")
    rows = []
    for client in ["put", *s["mutex_clients"]]:
        mine = h.select(cell, client=client)
        if mine:
            rows.append(
                [
                    "etcdsync `client.put`, c=1" if client == "put" else _mutex_name(client),
                    h.fmt(h.med(mine, "ops")),
                    "1" if client == "put" else h.fmt_ratio(h.paired_ratio(mine, put)),
                    f"{h.med(mine, 'p50_ms'):.2f} / {h.med(mine, 'p99_ms'):.2f}",
                    h.fmt(h.med(mine, "cpu_us_per_op")),
                    f"{h.med(mine, _unary_per_op):.1f}",
                ]
            )
    out += [
        "Mutex, uncontended (one contender, acquire + release per cycle)",
        "",
        h.table(
            [
                "client",
                "cycles/s",
                "÷ put rate (paired)",
                "cycle p50 / p99 ms",
                "client CPU µs/cycle",
                "RPCs/cycle",
            ],
            rows,
            "lrlrrr",
        ),
    ]

    # Mutex, contended
    rows = []
    sizes = sorted({int(r["cell"].split()[1]) for r in runs if r["cell"].startswith("mutex ")} - {1})
    for hold in ("", " hold"):
        for client in s["mutex_clients"]:
            base = h.select(runs, cell=f"mutex {sizes[0]}{hold}", client=client) if sizes else []
            for n in sizes:
                mine = h.select(runs, cell=f"mutex {n}{hold}", client=client)
                if not mine:
                    continue
                rows.append(
                    [
                        _mutex_name(client),
                        f"{n}{', hold ' + str(HOLD_MS) + ' ms' if hold else ''}",
                        h.fmt(h.med(mine, "ops")),
                        h.fmt(h.med(mine, lambda r: r["stats"].get("acquisitions", 0.0) / r["seconds"])),
                        "1" if n == sizes[0] else h.fmt_ratio(h.paired_ratio(mine, base)),
                        f"{h.med(mine, 'p50_ms'):.1f} / {h.med(mine, 'p99_ms'):.1f}",
                        h.fmt(h.med(mine, _unary_per_op), 1),
                        h.fmt(h.med(mine, _per_op("recv:Watch")), 1),
                        h.fmt(h.med(mine, _per_op("watch_events")), 1),
                        h.fmt(h.med(mine, _per_op("wakeups", "stats")), 1),
                        h.fmt(h.med(mine, lambda r: r["cpu_us_per_op"] if r["count"] else float("nan"))),
                        h.fmt(h.med(mine, lambda r: r["stats"].get("timeouts", 0.0))),
                    ]
                )
    out += [
        "",
        "Mutex, contended (N contenders, acquire + release in a loop). A handoff is an acquisition by "
        "another contender than the last holder; RPCs, watch requests, events, wake-ups and CPU are per "
        "handoff.",
        "",
        h.table(
            [
                "client",
                "waiters",
                "handoffs/s",
                "acquisitions/s",
                f"handoffs/s ÷ {sizes[0] if sizes else ''} waiters",
                "handoff p50 / p99 ms",
                "unary RPCs",
                "watch requests",
                "watch events",
                "wake-ups",
                "client CPU µs",
                "timeouts",
            ],
            rows,
            "lrrrlrrrrrrr",
        ),
    ]

    # Election
    kill = h.select(runs, cell="election kill")
    rows = []
    for hold in ("", " hold"):
        resign = h.select(runs, cell=f"election resign{hold}")
        if resign:
            rows.append(
                [
                    "resign → new leader" + (f", leader holds {HOLD_MS} ms" if hold else ", immediately"),
                    str(len(resign)),
                    f"{h.med(resign, 'p50_ms'):.2f} ms",
                    f"{h.med(resign, 'p99_ms'):.2f} ms",
                    f"{h.fmt(h.med(resign, 'ops'))} handovers/s",
                ]
            )
    if kill:
        lat = sorted(r["latency_s"] for r in kill)
        rows.append(
            [
                f"leader SIGKILLed (TTL {s['kill_ttl']} s) → new leader",
                str(len(kill)),
                f"{h.percentile(lat, 0.5):.2f} s",
                f"{lat[-1]:.2f} s (max)",
                f"min {lat[0]:.2f} s",
            ]
        )
    out += [
        "",
        "Election (etcdsync, h2)",
        "",
        h.table(["transition", "runs", "p50", "p99", "note"], rows, "lrrrl"),
    ]

    # Semaphore and STM
    rows = []
    sem = h.select(runs, cell="semaphore")
    if sem:
        rows.append(
            [
                f"Semaphore, limit {s['semaphore'][0]}, {s['semaphore'][1]} contenders",
                h.fmt(h.med(sem, "ops")),
                f"{h.med(sem, lambda r: r['stats'].get('retries', 0.0) / max(1, r['count'])):.3f}",
                f"{h.med(sem, _unary_per_op):.1f}",
                h.fmt(h.med(sem, "cpu_us_per_op")),
                "",
            ]
        )
    for isolation in ISOLATIONS:
        mine = h.select(runs, cell="stm", client=isolation)
        if mine:
            rows.append(
                [
                    f"STM bank, {isolation}",
                    h.fmt(h.med(mine, "ops")),
                    f"{h.med(mine, lambda r: r['stats'].get('attempts', 0.0) / max(1, r['count']) - 1):.3f}",
                    f"{h.med(mine, _unary_per_op):.1f}",
                    h.fmt(h.med(mine, "cpu_us_per_op")),
                    "yes" if all(r["conserved"] for r in mine) else "**no**",
                ]
            )
    out += [
        "",
        f"Semaphore and STM (etcdsync, h2; STM: {s['stm'][0]} tasks, {s['stm'][1]} accounts)",
        "",
        h.table(
            [
                "workload",
                "acquisitions or commits/s",
                "retries per success",
                "RPCs per success",
                "client CPU µs",
                "total conserved",
            ],
            rows,
            "lrrrrl",
        ),
    ]
    return "\n".join(out)


def _mutex_name(client: str) -> str:
    return {"h2": "etcdsync Mutex (h2)", "aetcd": "aetcd Lock", "etcd3": "python-etcd3 Lock"}[client]


if __name__ == "__main__":
    h.main_loop(__doc__, "recipes", parent, child, summarize, seconds=3.0, warmup=1.0)
