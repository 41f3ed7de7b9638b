"""Handoff latency tail of a contended Mutex, outside the benchmark harness.

16 contenders (one session each, on one client) acquire and release one Mutex in a loop for a few
seconds. A handoff's latency runs from the previous holder's start of ``release()`` to the next
holder's return from ``acquire()``. Meanwhile etcd's ``etcd_debugging_mvcc_slow_watcher_total`` is
sampled every 50 ms: a nonzero value means a watcher in etcd's unsynced group (served every 100 ms).

    python bench/mutex_tail.py [--seconds 8] [--contenders 16] [--ttl 3] [--pin-etcd]

``--pin-etcd`` puts every etcd thread on CPU 0, as bench/recipes.py does; run the script itself
under ``taskset -c 1``.
"""

from __future__ import annotations

import argparse
import time

import trio
from _harness import pin_process  # bench/ is on sys.path when this runs as a script

import etcdsync
from etcdsync.testing import etcd_server, metric


async def main(args: argparse.Namespace) -> None:
    async with etcd_server(unsafe_no_fsync=True) as server, etcdsync.open_client(server.endpoint) as client:
        if args.pin_etcd:
            pin_process(server.pid, {0})
        latencies: list[float] = []
        releasing = [0.0]
        last_holder = [-1]
        slow: list[float] = []
        stop = trio.current_time() + args.seconds

        async def contender(k: int) -> None:
            async with etcdsync.open_session(client, ttl=args.ttl) as session:
                mutex = etcdsync.Mutex(session, "/mutex-tail")
                while trio.current_time() < stop:
                    await mutex.acquire()
                    if last_holder[0] not in (-1, k):
                        latencies.append(time.perf_counter() - releasing[0])
                    last_holder[0] = k
                    releasing[0] = time.perf_counter()
                    await mutex.release()

        async def probe() -> None:
            while trio.current_time() < stop:
                slow.append(await metric(server.endpoint, "etcd_debugging_mvcc_slow_watcher_total"))
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe)
            for k in range(args.contenders):
                nursery.start_soon(contender, k)
    latencies.sort()
    n = len(latencies)
    print(
        f"{n} handoffs in {args.seconds:g} s: p50 {latencies[n // 2] * 1e3:.2f} ms, "
        f"p99 {latencies[int(n * 0.99)] * 1e3:.2f} ms, max {latencies[-1] * 1e3:.2f} ms; "
        f"over 30 ms: {sum(1 for x in latencies if x > 0.03)}; "
        f"slow-watcher samples nonzero: {sum(1 for v in slow if v)} of {len(slow)}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--contenders", type=int, default=16)
    parser.add_argument("--ttl", type=int, default=3)
    parser.add_argument("--pin-etcd", action="store_true")
    trio.run(main, parser.parse_args())
