"""Watch benchmark: events per second delivered to a consumer, and the client CPU each event costs --
etcdsync (h2 and grpcio) against aetcd, with a separate writer process generating the puts.

Usage::

    python bench/watch.py [--quick] [--repetitions 3] [--rate 6000] [--seconds 3] [--out FILE]
    python bench/watch.py --summarize bench/results/watch-<date>.json

Method (shared part: ``bench/_harness.py``, ``docs/benchmarks.md``):

* **Writer.** A separate process, pinned with etcd to CPU 0, puts 16-byte values to 1000 keys
  ``bench/watch/0000..0999`` round-robin at a fixed offered rate (``--rate`` puts/s, paced; 64 in
  flight), through etcdsync's h2 channel with pre-serialized requests so that it costs as little CPU
  as possible. It starts 1 s before each consumer and stops after it, so every client of a pair sees
  the same load. History is compacted between runs.
* **Consumers** (one process per run, pinned to CPU 1), each counting every event it is handed:

  * ``prefix``: one watch on the prefix ``bench/watch/`` -- every put is one event to it;
  * ``1000 watchers``: one watch per key, all 1000 in one process -- every put is an event to one
    of them (etcdsync and aetcd both multiplex them over one Watch stream).

  ``h2``/``grpcio``: ``async with client.watch(...)`` + ``async for resp in w``, one trio task per
  watch. ``aetcd``: ``await client.watch(...)`` / ``watch_prefix`` + ``async for event in w``, one
  asyncio task per watch.
* **Reported:** events/s delivered to the consumer, the puts/s etcd received from the writer in the
  same window (etcd's own counter), client CPU per delivered event (µs) and the CPU-per-event ratio
  to aetcd, paired per repetition.
"""

from __future__ import annotations

import argparse
import functools
import time

import _harness as h
import trio

CLIENTS = ("h2", "grpcio", "aetcd")
CELLS = ("prefix", "1000 watchers")
PREFIX = b"bench/watch/"
WATCH_KEYS = [PREFIX + b"%04d" % i for i in range(1000)]
WRITER_IN_FLIGHT = 64


# -- the writer ------------------------------------------------------------------------------------------


async def writer(args: argparse.Namespace, rate: float) -> None:
    """Put round-robin over the 1000 keys at ``rate`` puts/s until killed."""
    import etcdsync
    from etcdsync.client._pb import rpc_pb2

    requests = [rpc_pb2.PutRequest(key=k, value=h.VALUE).SerializeToString() for k in WATCH_KEYS]
    interval = 1.0 / rate
    async with etcdsync.open_client(args.endpoint) as client:
        channel = await client._channel(args.endpoint)
        next_slot = trio.current_time()

        async def put_loop(offset: int) -> None:
            nonlocal next_slot
            i = offset
            while True:
                # Pacing: each put takes the next slot of the schedule; a writer that falls behind
                # runs flat out (sleep_until in the past returns at once).
                slot, next_slot = next_slot, max(next_slot + interval, trio.current_time() - 0.1)
                await trio.sleep_until(slot)
                await channel.unary("/etcdserverpb.KV/Put", requests[i % len(requests)])
                i += WRITER_IN_FLIGHT

        async with trio.open_nursery() as nursery:
            for k in range(WRITER_IN_FLIGHT):
                nursery.start_soon(put_loop, k)


# -- consumers -------------------------------------------------------------------------------------------


async def etcdsync_consumer(args: argparse.Namespace, transport: str, cell: str) -> h.Row:
    import etcdsync

    meter = h.Meter(etcd_pid=args.etcd_pid, metrics_url=args.metrics)
    async with etcdsync.open_client(args.endpoint, transport=transport) as client:  # type: ignore[arg-type]

        async def consume(key: bytes, prefix: bool) -> None:
            async with client.watch(key, prefix=prefix) as events:
                async for resp in events:
                    meter.add(len(resp.events))

        specs = [(PREFIX, True)] if cell == "prefix" else [(k, False) for k in WATCH_KEYS]
        created = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for key, prefix in specs:
                nursery.start_soon(consume, key, prefix)
            # Watches are established in the background; wait until the server confirmed them all
            # (the hub's count of active watchers), to report how long that took.
            hub = client._watch_hub
            while hub is None or hub.statistics().active < len(specs):
                await trio.sleep(0.001)
                hub = client._watch_hub
            created = time.perf_counter() - created
            await trio.sleep(args.warmup)
            meter.start()
            await trio.sleep(args.seconds)
            row = meter.stop()
            nursery.cancel_scope.cancel()
    return {**row, "create_seconds": created}


async def aetcd_consumer(args: argparse.Namespace, cell: str) -> h.Row:
    import asyncio

    import aetcd

    host, port = h.split_endpoint(args.endpoint)
    meter = h.Meter(etcd_pid=args.etcd_pid, metrics_url=args.metrics)
    async with aetcd.Client(host=host, port=port) as client:
        created = time.perf_counter()
        if cell == "prefix":
            watches = [await client.watch_prefix(PREFIX)]
        else:
            watches = [await client.watch(k) for k in WATCH_KEYS]  # aetcd creates one watch at a time
        created = time.perf_counter() - created

        async def consume(watch: object) -> None:
            async for _event in watch:  # type: ignore[attr-defined]
                meter.add(1)

        tasks = [asyncio.ensure_future(consume(w)) for w in watches]
        await asyncio.sleep(args.warmup)
        meter.start()
        await asyncio.sleep(args.seconds)
        row = meter.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {**row, "create_seconds": created}


def child(args: argparse.Namespace) -> None:
    role = args.child[0]
    if role == "writer":
        trio.run(writer, args, float(args.child[1]))
        return
    cell = args.child[1]
    if role == "aetcd":
        import asyncio

        row = asyncio.run(aetcd_consumer(args, cell))
    else:
        row = trio.run(etcdsync_consumer, args, role, cell)
    h.emit(row)


# -- parent ----------------------------------------------------------------------------------------------


async def one_run(args: argparse.Namespace, server: object, client: str, cell: str) -> h.Row:
    """Start the writer, give it 1 s, run the consumer, stop the writer."""
    writer_cmd = h.child_command(__file__, args, server, ["writer", args.rate], cpu=0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(trio.run_process, writer_cmd, check=False))
        await trio.sleep(1.0)
        row = await h.run_child(h.child_command(__file__, args, server, [client, cell]))
        nursery.cancel_scope.cancel()
    if "failed" in row:
        return row
    puts = row["server"].get("recv:Put", 0.0)
    return {
        **row,
        "writer_puts_per_s": puts / row["seconds"],
        "events_sent_per_s": row["server"].get("watch_events", 0.0) / row["seconds"],
    }


async def parent(args: argparse.Namespace, report: h.Row) -> None:
    clients, missing = h.available(CLIENTS)
    report["settings"].update(
        clients=clients, missing=missing, rate=args.rate, writer_in_flight=WRITER_IN_FLIGHT
    )
    progress = h.Progress()
    async with h.bench_server(args) as server:
        for rep in range(args.repetitions):
            for cell in CELLS:
                for client in h.client_order(clients, rep):
                    row = await one_run(args, server, client, cell)
                    await h.compact(server.endpoint)
                    report["runs"].append({"repetition": rep, "cell": cell, "client": client, **row})
                    progress.run(
                        f"rep {rep} {cell:<13} {client:<6}",
                        row,
                        lambda r: (
                            f"{r['ops']:7,.0f} events/s (writer {r['writer_puts_per_s']:6,.0f}/s) "
                            f"{r['cpu_us_per_op']:6.1f} µs CPU/event {r['cpu_busy']:.0%} busy"
                        ),
                    )


def summarize(report: h.Row) -> str:
    runs = report["runs"]
    lines = [
        f"Offered: {report['settings']['rate']:,.0f} puts/s. Medians; ratios paired per repetition.",
        "",
    ]
    rows = []
    for cell in CELLS:
        base = h.select(runs, cell=cell, client="aetcd")
        for client in report["settings"]["clients"]:
            mine = h.select(runs, cell=cell, client=client)
            if not mine:
                continue
            rows.append(
                [
                    cell,
                    client,
                    h.fmt(h.med(mine, "ops")),
                    h.fmt(h.med(mine, "writer_puts_per_s")),
                    h.fmt(h.med(mine, "cpu_us_per_op"), 1),
                    "1" if client == "aetcd" else h.fmt_ratio(h.paired_ratio(mine, base, "cpu_us_per_op")),
                    f"{h.med(mine, 'cpu_busy'):.0%}",
                    f"{h.med(mine, 'create_seconds'):.2f}",
                ]
            )
    lines.append(
        h.table(
            [
                "watch",
                "client",
                "events/s delivered",
                "puts/s (etcd)",
                "client CPU µs/event",
                "CPU/event ÷ aetcd",
                "client core busy",
                "watch setup s",
            ],
            rows,
            "llrrrlrr",
        )
    )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=6000.0, help="puts/s offered by the writer")


if __name__ == "__main__":
    h.main_loop(
        __doc__, "watch", parent, child, summarize, seconds=3.0, warmup=1.0, add_arguments=add_arguments
    )
