"""Unary KV benchmark: Put, Range and Txn through etcdsync (h2 and grpcio), aetcd and python-etcd3, and the
server's ceiling under four client processes.

Usage::

    python bench/kv.py [--quick] [--repetitions 3] [--seconds 2] [--warmup 0.5] [--no-pin] [--out FILE]
    python bench/kv.py --summarize bench/results/kv-<date>.json

Method (the shared part is in ``bench/_harness.py`` and ``docs/benchmarks.md``):

* One etcd for the whole run; 1000 keys written first; history compacted after every run.
* Cells: Put (1000 keys round-robin, 16-byte values), Range (one key, linearizable) and Txn (``if
  version(key) > 0 then put(key) else get(key)``, over the 1000 keys) at 1, 16 and 128 concurrent
  callers sharing one client. Each client goes through its public API, so request building and
  response conversion are included:

  * ``h2``: ``etcdsync.open_client(endpoint)`` -- the default transport; trio tasks.
  * ``grpcio``: ``etcdsync.open_client(endpoint, transport="grpcio")``; trio tasks.
  * ``aetcd``: aetcd 1.0.0 (grpc.aio) on plain asyncio; asyncio tasks.
  * ``etcd3``: python-etcd3 0.12.0 (sync grpcio) driven by N OS threads.

* Every run is a fresh child process pinned to CPU 1 (etcd has CPU 0); the clients of a cell run
  back to back in an order rotated every repetition.
* Server ceiling: the same cells at concurrency 128 from **four** client processes at once (h2 and
  aetcd), measuring the same wall-clock window; nothing pinned, so etcd and the clients share both
  cores -- the most this machine serves, and how much of it etcd itself burns.

Needs ``pip install aetcd etcd3`` (benchmark-only, not project dependencies); a missing peer is
skipped and named in the report.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Awaitable, Callable

import _harness as h
import trio

CLIENTS = ("h2", "grpcio", "aetcd", "etcd3")
OPS = ("put", "range", "txn")
CONCURRENCY = (1, 16, 128)
CEILING_CLIENTS = ("h2", "aetcd")
CEILING_PROCESSES = 4
KEYS, VALUE = h.KEYS, h.VALUE


# -- children: one client, one op, N concurrent callers ---------------------------------------------------


async def etcdsync_child(args: argparse.Namespace, transport: str, op: str, concurrency: int) -> h.Row:
    import etcdsync
    from etcdsync import Compare, Op

    meter = h.Meter(etcd_pid=args.etcd_pid, metrics_url=args.metrics)
    async with etcdsync.open_client(args.endpoint, transport=transport) as client:  # type: ignore[arg-type]

        def txn(i: int) -> Awaitable[object]:
            key = KEYS[i % len(KEYS)]
            return client.txn(
                compare=[Compare.version(key) > 0], success=[Op.put(key, VALUE)], failure=[Op.get(key)]
            )

        calls = {
            "put": lambda i: client.put(KEYS[i % len(KEYS)], VALUE),
            "range": lambda i: client.get(KEYS[0]),
            "txn": txn,
        }
        worker = h.call_loop(calls[op], meter, concurrency)
        return await h.trio_drive(
            worker, concurrency, meter, warmup=args.warmup, seconds=args.seconds, start_at=args.start_at
        )


async def aetcd_child(args: argparse.Namespace, op: str, concurrency: int) -> h.Row:
    import aetcd

    host, port = h.split_endpoint(args.endpoint)
    meter = h.Meter(etcd_pid=args.etcd_pid, metrics_url=args.metrics)
    async with aetcd.Client(host=host, port=port) as client:
        t = client.transactions

        def txn(i: int) -> Awaitable[object]:
            key = KEYS[i % len(KEYS)]
            return client.transaction(
                compare=[t.version(key) > 0], success=[t.put(key, VALUE)], failure=[t.get(key)]
            )

        calls = {
            "put": lambda i: client.put(KEYS[i % len(KEYS)], VALUE),
            "range": lambda i: client.get(KEYS[0]),
            "txn": txn,
        }
        worker = h.call_loop(calls[op], meter, concurrency)
        return await h.asyncio_drive(
            worker, concurrency, meter, warmup=args.warmup, seconds=args.seconds, start_at=args.start_at
        )


def etcd3_child(args: argparse.Namespace, op: str, concurrency: int) -> h.Row:
    etcd3 = h.import_etcd3()
    host, port = h.split_endpoint(args.endpoint)
    client = etcd3.client(host=host, port=port)
    t = client.transactions
    meter = h.Meter(etcd_pid=args.etcd_pid, metrics_url=args.metrics, threads=True)

    def txn(i: int) -> object:
        key = KEYS[i % len(KEYS)]
        return client.transaction(
            compare=[t.version(key) > 0], success=[t.put(key, VALUE)], failure=[t.get(key)]
        )

    calls: dict[str, Callable[[int], object]] = {
        "put": lambda i: client.put(KEYS[i % len(KEYS)], VALUE),
        "range": lambda i: client.get(KEYS[0]),
        "txn": txn,
    }
    call = calls[op]

    def worker(offset: int, stop: threading.Event) -> None:
        i = offset
        while not stop.is_set():
            started = time.perf_counter()
            call(i)
            meter.record(started)
            i += concurrency

    try:
        return h.thread_drive(
            worker, concurrency, meter, warmup=args.warmup, seconds=args.seconds, start_at=args.start_at
        )
    finally:
        client.close()


def child(args: argparse.Namespace) -> None:
    client, op, concurrency = args.child[0], args.child[1], int(args.child[2])
    if client == "aetcd":
        import asyncio

        row = asyncio.run(aetcd_child(args, op, concurrency))
    elif client == "etcd3":
        row = etcd3_child(args, op, concurrency)
    else:
        row = trio.run(etcdsync_child, args, client, op, concurrency)
    h.emit(row)


# -- parent ----------------------------------------------------------------------------------------------


async def populate(endpoint: str) -> None:
    import etcdsync

    async with etcdsync.open_client(endpoint) as client:
        for key in KEYS:
            await client.put(key, VALUE)


async def ceiling_run(args: argparse.Namespace, server: object, client: str, op: str) -> h.Row:
    """Four unpinned processes of ``client`` doing ``op`` at c=128, measured over the same window."""
    start_at = time.time() + 3.0  # all four have imported and connected by then
    rows: list[h.Row] = []

    async def one() -> None:
        command = h.child_command(__file__, args, server, [client, op, max(CONCURRENCY)], cpu=None)
        rows.append(await h.run_child([*command, "--start-at", str(start_at)]))

    async with trio.open_nursery() as nursery:
        for _ in range(CEILING_PROCESSES):
            nursery.start_soon(one)
    failed = [r for r in rows if "failed" in r]
    if failed:
        return failed[0]
    return {
        "ops": sum(r["ops"] for r in rows),
        "per_process_ops": [r["ops"] for r in rows],
        "cpu_us_per_op": h.med(rows, "cpu_us_per_op"),
        "server_cpu_busy": h.med(rows, "server_cpu_busy"),
        "server_cpu_us_per_op": h.med(rows, "server_cpu_busy") / sum(r["ops"] for r in rows) * 1e6,
    }


async def parent(args: argparse.Namespace, report: h.Row) -> None:
    clients, missing = h.available(CLIENTS)
    ceiling_clients = [c for c in CEILING_CLIENTS if c in clients]
    report["settings"].update(clients=clients, missing=missing, ceiling_processes=CEILING_PROCESSES)
    concurrency = (1, 16) if args.quick else CONCURRENCY
    progress = h.Progress()
    async with h.bench_server(args) as server:
        await populate(server.endpoint)
        for rep in range(args.repetitions):
            for op in OPS:
                for c in concurrency:
                    for client in h.client_order(clients, rep):
                        row = await h.run_child(h.child_command(__file__, args, server, [client, op, c]))
                        await h.compact(server.endpoint)
                        report["runs"].append(
                            {
                                "repetition": rep,
                                "kind": "single",
                                "client": client,
                                "op": op,
                                "concurrency": c,
                                **row,
                            }
                        )
                        progress.run(
                            f"rep {rep} {op:<5} c={c:<3} {client:<6}",
                            row,
                            lambda r: f"{r['ops']:8,.0f} ops/s {r['cpu_us_per_op']:6.0f} µs CPU/op",
                        )
            if args.quick:
                continue
            if h.pinning(args):
                h.pin_process(server.pid, {0, 1})
            for op in OPS:
                for client in h.client_order(ceiling_clients, rep):
                    row = await ceiling_run(args, server, client, op)
                    await h.compact(server.endpoint)
                    report["runs"].append(
                        {
                            "repetition": rep,
                            "kind": "ceiling",
                            "client": client,
                            "op": op,
                            "concurrency": 128,
                            **row,
                        }
                    )
                    progress.run(
                        f"rep {rep} ceiling {op:<5} 4x{client:<6}",
                        row,
                        lambda r: f"{r['ops']:8,.0f} ops/s, etcd {r['server_cpu_busy']:.2f} cores",
                    )
            if h.pinning(args):
                h.pin_process(server.pid, {0})


# -- tables ----------------------------------------------------------------------------------------------


def summarize(report: h.Row) -> str:
    runs = report["runs"]
    clients = report["settings"]["clients"]
    out = [
        "Single client process (pinned to one core): medians; ratio = paired ratio to aetcd [min-max].",
        "",
    ]
    rows = []
    for op in OPS:
        for c in CONCURRENCY:
            cell = h.select(runs, kind="single", op=op, concurrency=c)
            if not cell:
                continue
            base = h.select(cell, client="aetcd")
            for client in clients:
                mine = h.select(cell, client=client)
                if not mine:
                    continue
                latency = f"{h.med(mine, 'p50_ms'):.2f} / {h.med(mine, 'p99_ms'):.2f}" if c == 1 else ""
                rows.append(
                    [
                        f"{op} c={c}",
                        client,
                        h.fmt(h.med(mine, "ops")),
                        "1" if client == "aetcd" else h.fmt_ratio(h.paired_ratio(mine, base)),
                        h.fmt(h.med(mine, "cpu_us_per_op")),
                        "1"
                        if client == "aetcd"
                        else h.fmt_ratio(h.paired_ratio(base, mine, "cpu_us_per_op")),
                        h.fmt(h.med(mine, "server_cpu_us_per_op")),
                        latency,
                    ]
                )
    out.append(
        h.table(
            [
                "cell",
                "client",
                "ops/s",
                "ops/s ÷ aetcd",
                "client CPU µs/op",
                "CPU efficiency vs aetcd",
                "etcd CPU µs/op",
                "p50 / p99 ms",
            ],
            rows,
            "llrlrlrl",
        )
    )
    ceiling = h.select(runs, kind="ceiling")
    if ceiling:
        out += [
            "",
            f"Server ceiling: {report['settings']['ceiling_processes']} client processes x 128 callers each, "
            "nothing pinned.",
            "",
        ]
        rows = []
        for op in OPS:
            for client in CEILING_CLIENTS:
                mine = h.select(ceiling, op=op, client=client)
                single = h.select(runs, kind="single", op=op, client=client, concurrency=128)
                if mine:
                    rows.append(
                        [
                            op,
                            f"4 x {client}",
                            h.fmt(h.med(mine, "ops")),
                            h.fmt_ratio(h.paired_ratio(mine, single)),
                            f"{h.med(mine, 'server_cpu_busy'):.2f}",
                            h.fmt(h.med(mine, "server_cpu_us_per_op")),
                        ]
                    )
        out.append(
            h.table(
                [
                    "op",
                    "clients",
                    "total ops/s",
                    "÷ one process (c=128)",
                    "etcd cores busy",
                    "etcd CPU µs/op",
                ],
                rows,
                "llrlrr",
            )
        )
    return "\n".join(out)


if __name__ == "__main__":
    h.main_loop(__doc__, "kv", parent, child, summarize, seconds=2.0, warmup=0.5)
