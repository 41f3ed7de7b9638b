"""Transport benchmark: etcdsync over h2, etcdsync over grpcio, and aetcd, in one run.

Usage::

    python bench/transport.py [--repetitions 3] [--seconds 3] [--warmup 1] [--no-pin] [--out FILE]

Starts its own etcd (``etcdsync.testing.etcd_server(unsafe_no_fsync=True)``), then measures each
cell -- unary Put and Range at 1, 16 and 128 concurrent calls, and LeaseKeepAlive round trips on
one stream -- for each client, every measurement in a fresh process (aetcd's generated modules
clash with etcdsync's in protobuf's descriptor pool, and a fresh process keeps runs independent).
Within a repetition the clients of a cell run back to back, in an order rotated each repetition.

What is measured:

* Unary: the public client API, ``client.put(key, value)`` (1000 keys, 16-byte values) and
  ``client.get(key)`` (linearizable), i.e. request building and response conversion included.
* Keepalive: round trips on one LeaseKeepAlive stream, each response parsed, with one request in
  flight (ping-pong: etcd's round trip bounds the rate) and with 64 in flight (a sender keeps 64
  requests outstanding, a receiver takes the responses in order: the stream's throughput, as a lease
  keeper that shares one stream among many leases uses it). etcdsync through its Channel protocol
  (the client has no ping-pong API), aetcd through its grpc.aio stub (``aetcd.Client.refresh_lease``
  opens a new stream per refresh; measured ping-pong only, as ``aetcd-refresh``).

Per run: ops/s over ``--seconds`` after ``--warmup`` s, client CPU per op (``getrusage`` of the
child: all its threads), p50/p99 latency. Reported: medians over repetitions, and the paired ratio
to aetcd (median over repetitions of client/aetcd in the same cell and repetition). With
``--pin`` (the default on >= 2 CPUs) etcd runs on CPU 0 and each client on CPU 1.

Needs ``pip install aetcd`` (not a project dependency). Raw results go to
``bench/results/transport-<date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

from _harness import Meter, call_loop, client_order, pin_process, versions as _versions

CLIENTS = ("h2", "grpcio", "aetcd")
#: aetcd's own keep-alive API, ``refresh_lease``, which opens a new stream per refresh (keepalive only).
AETCD_REFRESH = "aetcd-refresh"
#: (op, concurrency); for keepalive the concurrency is the number of requests in flight on the one stream.
CELLS = [
    ("put", 1),
    ("put", 16),
    ("put", 128),
    ("range", 1),
    ("range", 16),
    ("range", 128),
    ("keepalive", 1),
    ("keepalive", 64),
]
KEYS = [b"bench/key/%04d" % i for i in range(1000)]
VALUE = b"v" * 16


# -- children --------------------------------------------------------------------------------------------


Call = Callable[[int], Awaitable[object]]


def _unary(put: Callable[[bytes], Awaitable[object]], get: Callable[[], Awaitable[object]], op: str) -> Call:
    """The i-th call of a unary workload: Put over the 1000 keys, or Get of one key."""
    if op == "put":
        return lambda i: put(KEYS[i % len(KEYS)])
    return lambda i: get()


async def _etcdsync_child(
    transport: str, endpoint: str, op: str, concurrency: int, args: argparse.Namespace
) -> dict[str, float]:
    import etcdsync
    from etcdsync.client._pb import rpc_pb2

    meter = Meter(etcd_pid=args.etcd_pid)
    async with etcdsync.open_client(endpoint, transport=transport) as client:  # type: ignore[arg-type]
        await client.put(KEYS[0], VALUE)
        if op != "keepalive":
            call = _unary(lambda key: client.put(key, VALUE), lambda: client.get(KEYS[0]), op)
            return await _trio_drive(call_loop(call, meter, concurrency), concurrency, meter, args)
        lease = await client.lease_grant(600)
        channel = await client._channel(endpoint)
        request = rpc_pb2.LeaseKeepAliveRequest(ID=lease.id).SerializeToString()
        async with channel.stream("/etcdserverpb.Lease/LeaseKeepAlive") as stream:
            if concurrency == 1:

                async def ping_pong(_: int) -> None:
                    while True:
                        started = time.perf_counter()
                        await stream.send(request)
                        rpc_pb2.LeaseKeepAliveResponse.FromString(await stream.receive())
                        meter.record(started)

                return await _trio_drive(ping_pong, 1, meter, args)
            import trio

            credits = trio.Semaphore(concurrency)
            starts: deque[float] = deque()

            async def pipeline(role: int) -> None:
                while True:
                    if role == 0:  # the sender: keeps `concurrency` requests outstanding
                        await credits.acquire()
                        starts.append(time.perf_counter())
                        await stream.send(request)
                    else:  # the receiver: responses come in request order on one stream
                        rpc_pb2.LeaseKeepAliveResponse.FromString(await stream.receive())
                        meter.record(starts.popleft())
                        credits.release()

            return await _trio_drive(pipeline, 2, meter, args)


async def _trio_drive(
    worker: Callable[[int], Awaitable[None]], n: int, meter: Meter, args: argparse.Namespace
) -> dict[str, float]:
    import trio

    async with trio.open_nursery() as nursery:
        for k in range(n):
            nursery.start_soon(worker, k)
        await trio.sleep(args.warmup)
        meter.start()
        await trio.sleep(args.seconds)
        result = meter.stop()
        nursery.cancel_scope.cancel()
    return result


async def _aetcd_child(
    endpoint: str, op: str, concurrency: int, args: argparse.Namespace, *, refresh: bool
) -> dict[str, float]:
    import aetcd
    from aetcd import rpc

    host, port = endpoint.rsplit(":", 1)
    meter = Meter(etcd_pid=args.etcd_pid)
    async with aetcd.Client(host=host, port=int(port)) as client:
        await client.put(KEYS[0], VALUE)
        if op == "keepalive" and refresh:
            lease = await client.lease(600)

            async def refresh_loop(_: int) -> None:
                while True:
                    started = time.perf_counter()
                    await client.refresh_lease(lease.id)
                    meter.record(started)

            return await _asyncio_drive(refresh_loop, 1, meter, args)
        if op == "keepalive":
            lease = await client.lease(600)
            call = client.leasestub.LeaseKeepAlive()
            request = rpc.LeaseKeepAliveRequest(ID=lease.id)

            async def ping_pong(_: int) -> None:
                while True:
                    started = time.perf_counter()
                    await call.write(request)
                    await call.read()
                    meter.record(started)

            credits = asyncio.Semaphore(concurrency)
            starts: deque[float] = deque()

            async def pipeline(role: int) -> None:
                while True:
                    if role == 0:
                        await credits.acquire()
                        starts.append(time.perf_counter())
                        await call.write(request)
                    else:
                        await call.read()
                        meter.record(starts.popleft())
                        credits.release()

            try:
                if concurrency == 1:
                    return await _asyncio_drive(ping_pong, 1, meter, args)
                return await _asyncio_drive(pipeline, 2, meter, args)
            finally:
                call.cancel()
        call = _unary(lambda key: client.put(key, VALUE), lambda: client.get(KEYS[0]), op)
        return await _asyncio_drive(call_loop(call, meter, concurrency), concurrency, meter, args)


async def _asyncio_drive(
    worker: Callable[[int], Awaitable[None]], n: int, meter: Meter, args: argparse.Namespace
) -> dict[str, float]:
    tasks = [asyncio.ensure_future(worker(k)) for k in range(n)]
    try:
        await asyncio.sleep(args.warmup)
        meter.start()
        await asyncio.sleep(args.seconds)
        return meter.stop()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def child(args: argparse.Namespace) -> None:
    client, op, concurrency = args.child[0], args.child[1], int(args.child[2])
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if client in ("aetcd", AETCD_REFRESH):
        result = asyncio.run(
            _aetcd_child(args.endpoint, op, concurrency, args, refresh=client == AETCD_REFRESH)
        )
    else:
        import trio

        result = trio.run(_etcdsync_child, client, args.endpoint, op, concurrency, args)
    print(json.dumps(result))


# -- parent ----------------------------------------------------------------------------------------------


async def parent(args: argparse.Namespace) -> dict[str, object]:
    import trio

    from etcdsync.testing import etcd_server

    pin = args.pin and (os.cpu_count() or 1) >= 2
    runs: list[dict[str, object]] = []
    async with etcd_server(unsafe_no_fsync=True) as server:
        if pin:
            pin_process(server.pid, {0})  # every thread of etcd, not only its main one
        started = time.monotonic()
        for repetition in range(args.repetitions):
            for op, concurrency in CELLS:
                if args.only and op != args.only:
                    continue
                order = client_order(CLIENTS, repetition)
                if op == "keepalive" and concurrency == 1:
                    order.append(AETCD_REFRESH)
                for client in order:
                    command = [sys.executable, __file__, "--endpoint", server.endpoint]
                    command += ["--seconds", str(args.seconds), "--warmup", str(args.warmup)]
                    command += ["--child", client, op, str(concurrency), "--etcd-pid", str(server.pid)]
                    if pin:
                        command += ["--cpu", "1"]
                    done = await trio.run_process(
                        command, capture_stdout=True, capture_stderr=True, check=False
                    )
                    if done.returncode:
                        sys.stderr.write(done.stderr.decode())
                        raise SystemExit(f"{client} {op} c={concurrency} failed")
                    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
                    runs.append(
                        {
                            "repetition": repetition,
                            "client": client,
                            "op": op,
                            "concurrency": concurrency,
                            **result,
                        }
                    )
                    print(
                        f"[{time.monotonic() - started:6.1f} s] rep {repetition} {op:<9} c={concurrency:<3} "
                        f"{client:<6} {result['ops']:8,.0f} ops/s  {result['cpu_us_per_op']:6.1f} µs CPU/op",
                        file=sys.stderr,
                    )
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_end": os.getloadavg(),
        },
        "versions": _versions(),
        "settings": {
            "repetitions": args.repetitions,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "pinned": pin,
        },
        "runs": runs,
    }


def summarize(report: dict[str, object]) -> str:
    """A Markdown table: medians, and paired ratios to aetcd (throughput, and CPU per op)."""
    runs: list[dict[str, float | str | int]] = report["runs"]  # type: ignore[assignment]
    lines = [
        "| cell | client | ops/s | vs aetcd: ops/s ratio [min-max] | CPU µs/op | vs aetcd: CPU efficiency "
        "| p50 / p99 ms |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for op, concurrency in CELLS:
        cell = [r for r in runs if r["op"] == op and r["concurrency"] == concurrency]
        base = {r["repetition"]: r for r in cell if r["client"] == "aetcd"}
        for client in (*CLIENTS, AETCD_REFRESH):
            mine = [r for r in cell if r["client"] == client]
            if not mine:
                continue

            def med(key: str, rows: list[dict[str, float | str | int]] = mine) -> float:
                return statistics.median(float(r[key]) for r in rows)

            paired = [(r, base[r["repetition"]]) for r in mine if r["repetition"] in base]
            ratios = [float(r["ops"]) / float(b["ops"]) for r, b in paired]
            efficiency = [float(b["cpu_us_per_op"]) / float(r["cpu_us_per_op"]) for r, b in paired]
            if client == "aetcd" or not paired:
                ratio = eff = "1"
            else:
                ratio = f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
                eff = f"{statistics.median(efficiency):.2f}"
            name = f"{op} c={concurrency}"
            if op == "keepalive":
                name = f"keepalive, 1 stream, {concurrency} in flight"
            lines.append(
                f"| {name} | {client} | {med('ops'):,.0f} | {ratio} | {med('cpu_us_per_op'):.0f} | {eff} "
                f"| {med('p50_ms'):.2f} / {med('p99_ms'):.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only", default=None, help="measure only this op's cells (put, range, keepalive)")
    parser.add_argument("--summarize", type=Path, default=None, help="print the table of a saved JSON file")
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--etcd-pid", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.summarize:
        print(summarize(json.loads(args.summarize.read_text())))
        return
    import trio

    report = trio.run(parent, args)
    out = (
        args.out or Path(__file__).parent / "results" / f"transport-{datetime.date.today().isoformat()}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(summarize(report))
    print(f"\nraw results: {out}")


if __name__ == "__main__":
    main()
