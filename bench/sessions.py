"""Sessions benchmark: 10,000 leases kept alive by one process -- client CPU, streams, memory, and what the
same workload costs with aetcd.

Usage::

    python bench/sessions.py [--quick] [--repetitions 3] [--sessions 10000] [--ttl 10] [--seconds 20]
    python bench/sessions.py --summarize bench/results/sessions-<date>.json

Method (shared part: ``bench/_harness.py``, ``docs/benchmarks.md``):

* ``h2``: ``--sessions`` tasks each enter ``etcdsync.open_session(client, ttl=--ttl)`` on **one**
  client (default transport) and hold it. Entering grants the lease; at most 64 grants are in flight
  (a ``trio.CapacityLimiter``), and the time until all are granted is reported separately. The
  client's lease keeper then keeps them all alive over its one LeaseKeepAlive stream, each lease
  every TTL/3.
* ``aetcd``: the same number of leases granted the same way (64 in flight), then kept alive the only
  way aetcd offers, ``client.refresh_lease(id)`` (which opens a LeaseKeepAlive stream per call) --
  every lease every TTL/3, 64 refreshes in flight.
* After a 2 s settle, a window of ``--seconds`` (two TTLs by default) measures: client CPU (% of one
  core), keep-alive round trips/s (acknowledged keep-alives; etcd's own counter agrees) and round
  trips per client CPU-second, keep-alive streams open and opened, RSS, and leases lost. Then every
  lease is revoked (64 in flight, timed). One process per run, pinned to CPU 1; etcd on CPU 0.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import _harness as h
import trio

CLIENTS = ("h2", "aetcd")
IN_FLIGHT = 64
SETTLE = 2.0


# -- children --------------------------------------------------------------------------------------------


async def etcdsync_child(args: argparse.Namespace, transport: str) -> h.Row:
    import etcdsync

    n, ttl = args.sessions, args.ttl
    async with etcdsync.open_client(args.endpoint, transport=transport) as client:  # type: ignore[arg-type]
        await client.put(b"bench/sessions", b"")  # connect before the baseline
        rss0 = h.rss_mib()
        limiter = trio.CapacityLimiter(IN_FLIGHT)
        sessions: list[etcdsync.Session] = []
        all_granted, release = trio.Event(), trio.Event()

        async def hold() -> None:
            async with contextlib.AsyncExitStack() as stack:
                async with limiter:
                    session = await stack.enter_async_context(etcdsync.open_session(client, ttl=ttl))
                sessions.append(session)
                if len(sessions) == n:
                    all_granted.set()
                await release.wait()
                async with limiter:
                    await stack.aclose()  # revokes the lease

        async with trio.open_nursery() as nursery:
            t0 = time.perf_counter()
            for _ in range(n):
                nursery.start_soon(hold)
            await all_granted.wait()
            grant_seconds = time.perf_counter() - t0
            await trio.sleep(SETTLE)

            def acked() -> int:
                return sum(s.statistics().keepalives_acknowledged for s in sessions)

            meter = h.Meter(etcd_pid=args.etcd_pid, metrics_url=args.metrics)
            acks0 = acked()
            meter.start()
            open_streams = []
            for _ in range(int(args.seconds)):
                await trio.sleep(args.seconds / int(args.seconds))
                open_streams.append(client.statistics().open_streams)
            meter.count = acked() - acks0
            row = meter.stop()
            row.update(
                rss_mib=h.rss_mib(),
                rss0_mib=rss0,
                max_open_streams=max(open_streams, default=0),
                keepalive_streams_opened=client._keeper.streams_opened,
                lost=sum(s.expired for s in sessions),
                grant_seconds=grant_seconds,
            )
            t1 = time.perf_counter()
            release.set()
        row["revoke_seconds"] = time.perf_counter() - t1
    return row


async def aetcd_child(args: argparse.Namespace) -> h.Row:
    import asyncio

    import aetcd

    n, ttl = args.sessions, args.ttl
    host, port = h.split_endpoint(args.endpoint)
    async with aetcd.Client(host=host, port=port) as client:
        await client.put(b"bench/sessions", b"")
        rss0 = h.rss_mib()

        async def in_parallel(fn: Callable[[Any], Awaitable[object]], items: Iterable[Any]) -> None:
            """``await fn(item)`` for every item, IN_FLIGHT at a time."""
            it = iter(items)

            async def worker() -> None:
                for item in it:
                    await fn(item)

            await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))

        ids: list[int] = []

        async def grant(_: int) -> None:
            ids.append((await client.lease(ttl)).id)

        t0 = time.perf_counter()
        await in_parallel(grant, range(n))
        grant_seconds = time.perf_counter() - t0

        stats = {"acks": 0, "lost": 0, "late_rounds": 0}

        async def refresh(lease_id: int) -> None:
            reply = await client.refresh_lease(lease_id)
            stats["acks"] += 1
            if reply.TTL <= 0:
                stats["lost"] += 1

        async def keep_alive() -> None:
            # Every lease every TTL/3 (the cadence of etcd's Go client and of etcdsync's keeper).
            loop = asyncio.get_running_loop()
            while True:
                started = loop.time()
                await in_parallel(refresh, ids)
                if loop.time() - started > ttl / 3:
                    stats["late_rounds"] += 1
                await asyncio.sleep(max(0.0, started + ttl / 3 - loop.time()))

        keeper = asyncio.ensure_future(keep_alive())
        await asyncio.sleep(SETTLE)
        meter = h.Meter(etcd_pid=args.etcd_pid, metrics_url=args.metrics)
        acks0 = stats["acks"]
        meter.start()
        await asyncio.sleep(args.seconds)
        meter.count = stats["acks"] - acks0
        row = meter.stop()
        row.update(
            rss_mib=h.rss_mib(),
            rss0_mib=rss0,
            max_open_streams=None,
            keepalive_streams_opened=None,
            lost=stats["lost"],
            late_rounds=stats["late_rounds"],
            grant_seconds=grant_seconds,
        )
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        t1 = time.perf_counter()
        await in_parallel(client.revoke_lease, ids)
        row["revoke_seconds"] = time.perf_counter() - t1
    return row


def child(args: argparse.Namespace) -> None:
    if args.child[0] == "aetcd":
        import asyncio

        row = asyncio.run(aetcd_child(args))
    else:
        row = trio.run(etcdsync_child, args, args.child[0])
    h.emit(row)


# -- parent ----------------------------------------------------------------------------------------------


async def revoke_leftovers(endpoint: str) -> int:
    """Revoke any lease a previous run left behind (none, normally); returns how many."""
    import etcdsync

    async with etcdsync.open_client(endpoint) as client:
        leftovers = await client.leases()
        for lease_id in leftovers:
            with contextlib.suppress(etcdsync.LeaseNotFoundError):
                await client.lease_revoke(lease_id)
    return len(leftovers)


async def parent(args: argparse.Namespace, report: h.Row) -> None:
    clients, missing = h.available(CLIENTS)
    report["settings"].update(
        clients=clients, missing=missing, sessions=args.sessions, ttl=args.ttl, in_flight=IN_FLIGHT
    )
    progress = h.Progress()
    async with h.bench_server(args) as server:
        for rep in range(args.repetitions):
            for client in h.client_order(clients, rep):
                command = h.child_command(__file__, args, server, [client])
                command += ["--sessions", str(args.sessions), "--ttl", str(args.ttl)]
                row = await h.run_child(command, time_limit=600)
                row["leftover_leases"] = await revoke_leftovers(server.endpoint)
                report["runs"].append({"repetition": rep, "client": client, **row})
                progress.run(
                    f"rep {rep} {client:<6}",
                    row,
                    lambda r: (
                        f"granted {args.sessions} in {r['grant_seconds']:.1f} s; "
                        f"{r['ops']:,.0f} keep-alives/s, CPU {r['cpu_busy']:.0%}, "
                        f"RSS {r['rss_mib']:.0f} MiB, lost {r['lost']}"
                    ),
                )


def summarize(report: h.Row) -> str:
    runs = report["runs"]
    s = report["settings"]
    base = h.select(runs, client="aetcd")
    rows = []
    for client in s["clients"]:
        mine = h.select(runs, client=client)
        if not mine:
            continue

        def per_cpu(r: h.Row) -> float:
            return r["ops"] / r["cpu_busy"] if r["cpu_busy"] else float("nan")

        streams = {(r["max_open_streams"], r["keepalive_streams_opened"]) for r in mine}
        rows.append(
            [
                client,
                f"{h.med(mine, 'grant_seconds'):.1f}",
                h.fmt(h.med(mine, "ops")),
                f"{h.med(mine, 'cpu_busy'):.1%}",
                h.fmt(h.med(mine, per_cpu)),
                "1" if client == "aetcd" else h.fmt_ratio(h.paired_ratio(mine, base, per_cpu)),
                " / ".join("-" if v is None else str(v) for v in sorted(streams, key=str)[0]),
                f"{h.med(mine, 'rss_mib'):.0f} ({h.med(mine, lambda r: r['rss_mib'] - r['rss0_mib']):.0f})",
                str(max(r["lost"] for r in mine)),
                f"{h.med(mine, 'revoke_seconds'):.1f}",
            ]
        )
    header = [
        "client",
        "grant s",
        "keep-alives/s",
        "client CPU (one core)",
        "keep-alives per CPU-s",
        "per CPU-s ÷ aetcd",
        "streams open / opened",
        "RSS MiB (for the leases)",
        "leases lost",
        "revoke s",
    ]
    intro = (
        f"{s['sessions']:,} leases, TTL {s['ttl']} s, kept alive for {s['seconds']:.0f} s; "
        f"{s['in_flight']} grants/refreshes/revokes in flight. Medians over {s['repetitions']} repetitions."
    )
    return intro + "\n\n" + h.table(header, rows, "lrrrrlrrrr")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=None, help="leases to keep alive (10,000)")
    parser.add_argument("--ttl", type=int, default=None, help="their TTL in seconds (10)")


def finish_args(args: argparse.Namespace) -> None:
    if args.sessions is None:
        args.sessions = 200 if args.quick else 10_000
    if args.ttl is None:
        args.ttl = 3 if args.quick else 10
    if args.quick:
        args.seconds = max(args.seconds, 2.0)


if __name__ == "__main__":
    h.main_loop(
        __doc__,
        "sessions",
        parent,
        child,
        summarize,
        seconds=20.0,
        warmup=0.0,
        add_arguments=add_arguments,
        finish_args=finish_args,
    )
