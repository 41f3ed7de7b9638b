"""Throughput and client CPU of the h2 transport vs grpcio's sync channel bridged to trio with futures.

Usage::

    python bench/h2_transport_bench.py --endpoint 127.0.0.1:2379 [--repetitions 3] [--seconds 3]
    python bench/h2_transport_bench.py --endpoint 127.0.0.1:2379 --cell h2 keepalive 1   # one cell

Each cell (transport x {Put, Range} x concurrency {1, 128}, plus LeaseKeepAlive ping-pong on one
stream) runs in a fresh process: 1 s warm-up, then ``--seconds`` measured; cells run back to back
with the transport order alternating per repetition; medians are reported, with the client's CPU
per call (``getrusage`` of the process: all its threads). ``grpcio_future`` is the "a_fut" bridge of
shared/notes/transport.md: ``multicallable.future(request)`` plus a done-callback that wakes the trio
task through ``TrioToken.run_sync_soon``. Pin processes yourself (e.g. ``taskset -c 1``) if wanted.
Requests are pre-serialized bytes, so protobuf cost is excluded from both sides.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import trio

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"


KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"


def _requests(op: str) -> tuple[str, list[bytes]]:
    from etcdsync.client._pb import rpc_pb2

    if op == "put":
        return PUT, [
            rpc_pb2.PutRequest(key=b"bench/key/%04d" % i, value=b"v" * 16).SerializeToString()
            for i in range(1000)
        ]
    return RANGE, [rpc_pb2.RangeRequest(key=b"bench/key/0000").SerializeToString()]


async def _drive(
    call: Callable[[bytes], Awaitable[object]], requests: list[bytes], concurrency: int, seconds: float
) -> tuple[float, float]:
    """Run ``concurrency`` tasks calling in a loop; return (calls/s, CPU-seconds per 10k calls).

    For ``keepalive``, ``call`` is one round trip on a stream and ``requests`` its one request.
    """
    count = 0
    measuring = False

    async def worker(offset: int) -> None:
        nonlocal count
        i = offset
        while True:
            await call(requests[i % len(requests)])
            i += 1
            if measuring:
                count += 1

    async with trio.open_nursery() as nursery:
        for k in range(concurrency):
            nursery.start_soon(worker, k)
        await trio.sleep(1.0)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        measuring = True
        start = time.perf_counter()
        await trio.sleep(seconds)
        measuring = False
        elapsed = time.perf_counter() - start
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        nursery.cancel_scope.cancel()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return count / elapsed, cpu / max(1, count) * 1e4


async def _run_h2(endpoint: str, op: str, concurrency: int, seconds: float) -> dict[str, float]:
    from etcdsync.client._transport import open_h2_channel

    async with open_h2_channel(endpoint) as channel:
        await channel.unary(PUT, _requests("put")[1][0])
        if op == "keepalive":
            from etcdsync.client._pb import rpc_pb2

            grant = rpc_pb2.LeaseGrantResponse.FromString(
                await channel.unary(
                    "/etcdserverpb.Lease/LeaseGrant", rpc_pb2.LeaseGrantRequest(TTL=600).SerializeToString()
                )
            )
            request = rpc_pb2.LeaseKeepAliveRequest(ID=grant.ID).SerializeToString()
            async with channel.stream(KEEPALIVE) as stream:

                async def round_trip(request: bytes) -> bytes:
                    await stream.send(request)
                    return await stream.receive()

                rate, cpu = await _drive(round_trip, [request], 1, seconds)
            return {"ops": rate, "cpu_per_10k": cpu}
        path, requests = _requests(op)

        async def call(request: bytes) -> bytes:
            return await channel.unary(path, request)

        rate, cpu = await _drive(call, requests, concurrency, seconds)
    return {"ops": rate, "cpu_per_10k": cpu}


async def _run_grpcio(endpoint: str, op: str, concurrency: int, seconds: float) -> dict[str, float]:
    import grpc

    path, requests = _requests(op)
    channel = grpc.insecure_channel(endpoint, options=[("grpc.max_receive_message_length", -1)])
    try:
        if op == "keepalive":
            return await _grpcio_keepalive(channel, seconds)
        multicallable = channel.unary_unary(path)
        token = trio.lowlevel.current_trio_token()

        async def call(request: bytes) -> object:
            event = trio.Event()
            future = multicallable.future(request)
            future.add_done_callback(lambda _: token.run_sync_soon(event.set))
            try:
                await event.wait()
            except BaseException:
                future.cancel()
                raise
            return future.result()

        await call(_requests("put")[1][0])
        rate, cpu = await _drive(call, requests, concurrency, seconds)
    finally:
        channel.close()
    return {"ops": rate, "cpu_per_10k": cpu}


async def _grpcio_keepalive(channel: object, seconds: float) -> dict[str, float]:
    """Ping-pong on one LeaseKeepAlive stream through the sync grpcio API, bridged like ``call``."""
    import queue
    import threading

    import grpc

    from etcdsync.client._pb import rpc_pb2

    assert isinstance(channel, grpc.Channel)
    grant = rpc_pb2.LeaseGrantResponse.FromString(
        channel.unary_unary("/etcdserverpb.Lease/LeaseGrant")(
            rpc_pb2.LeaseGrantRequest(TTL=600).SerializeToString()
        )
    )
    request = rpc_pb2.LeaseKeepAliveRequest(ID=grant.ID).SerializeToString()
    outbox: queue.Queue[bytes | None] = queue.Queue()
    responses = channel.stream_stream(KEEPALIVE)(iter(outbox.get, None))
    token = trio.lowlevel.current_trio_token()
    inbox: trio.MemorySendChannel[bytes]
    inbox, received = trio.open_memory_channel[bytes](1)

    def pump() -> None:
        try:
            for response in responses:
                token.run_sync_soon(inbox.send_nowait, response)
        except grpc.RpcError as exc:  # the cancel() below ends the stream
            if exc.code() != grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                raise
        except trio.RunFinishedError:  # a response that raced with the end of the run
            return

    threading.Thread(target=pump, daemon=True).start()

    async def round_trip(request: bytes) -> bytes:
        outbox.put(request)
        return await received.receive()

    try:
        rate, cpu = await _drive(round_trip, [request], 1, seconds)
    finally:
        outbox.put(None)
        responses.cancel()
    return {"ops": rate, "cpu_per_10k": cpu}


def _cell(transport: str, endpoint: str, op: str, concurrency: int, seconds: float) -> dict[str, float]:
    runner = _run_h2 if transport == "h2" else _run_grpcio
    return trio.run(runner, endpoint, op, concurrency, seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--cpu", default="", help="taskset CPU list for client processes")
    parser.add_argument("--cell", nargs=3, metavar=("TRANSPORT", "OP", "CONCURRENCY"))
    args = parser.parse_args()
    if args.cell:
        transport, op, concurrency = args.cell
        print(json.dumps(_cell(transport, args.endpoint, op, int(concurrency), args.seconds)))
        return
    transports = ["h2", "grpcio_future"]
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    for repetition in range(args.repetitions):
        for op, concurrencies in (("put", (1, 128)), ("range", (1, 128)), ("keepalive", (1,))):
            for concurrency in concurrencies:
                order = transports if repetition % 2 == 0 else transports[::-1]
                for transport in order:
                    command = [
                        sys.executable,
                        __file__,
                        "--endpoint",
                        args.endpoint,
                        "--seconds",
                        str(args.seconds),
                    ]
                    command += ["--cell", transport, op, str(concurrency)]
                    if args.cpu:
                        command = ["taskset", "-c", args.cpu, *command]
                    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                    results.setdefault((transport, op, concurrency), []).append(json.loads(out))
    print(
        f"{'transport':<15} {'op':<9} {'c':>4} {'ops/s (median)':>15} {'runs':>28} {'CPU-s/10k':>10} "
        f"{'CPU µs/op':>10}"
    )
    for (transport, op, concurrency), runs in sorted(
        results.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])
    ):
        ops = [r["ops"] for r in runs]
        cpu = statistics.median(r["cpu_per_10k"] for r in runs)
        shown = ", ".join(f"{o:,.0f}" for o in ops)
        median = statistics.median(ops)
        print(
            f"{transport:<15} {op:<9} {concurrency:>4} {median:>15,.0f} {shown:>28} {cpu:>10.2f} "
            f"{cpu * 100:>10.1f}"
        )


if __name__ == "__main__":
    main()
