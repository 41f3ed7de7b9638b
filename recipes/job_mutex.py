"""A cron-style job that must never run twice at once across hosts, with fenced output.

Run it::

    python recipes/job_mutex.py                        # 3 hosts on a local etcd it starts
    python recipes/job_mutex.py --endpoints 10.0.0.1:2379 --hosts 5 --ticks 10

Every host wakes up at each tick and tries to run the job for that tick under one distributed Mutex.
The first host to get the lock runs it; the others find the tick already done and skip it.

A lock whose lease can expire is **not** mutual exclusion by itself: a host that is paused (a long
GC, a VM migration, SIGSTOP) past its session's TTL still believes it holds the lock when it wakes up,
while another host has taken over. Two things protect the job's result. etcdsync cancels the body of
``async with mutex:`` as soon as the host notices its session is gone; and the result is written with
the lock's *fencing token* — ``guard=mutex.is_owner()`` makes the write conditional on our lock key
still being the one we acquired — so a write that gets out before the host notices is refused by
etcd (``GuardFailedError``). Either way the newer run's result stands.

``--pause-holder-at TICK`` makes the program SIGSTOP the host that runs that tick for longer than
the TTL, then SIGCONT it, to show exactly that. At the end it reads the results back and checks that
every tick was committed exactly once, by a holder whose fencing token was newer than the previous
tick's.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Host, add_endpoint_argument, etcd_endpoints, host_process

import etcdsync
from etcdsync.client import Op

PREFIX = "/recipes/job-mutex"
LOCK = PREFIX + "/lock"
DONE = PREFIX + "/done/"
TICK = PREFIX + "/tick"


# --- one host -------------------------------------------------------------------------------------------


async def run_tick(
    client: etcdsync.Client, session: etcdsync.Session, me: str, tick: int, work: float
) -> None:
    try:
        async with etcdsync.Mutex(session, LOCK) as mutex:
            if await client.get(DONE + f"{tick:06d}") is not None:
                return  # another host already ran this tick
            token = mutex.fencing_token
            print(f"running tick {tick} with fencing token {token}", flush=True)
            await trio.sleep(work)  # the job's work; a pause here outlives the lease
            result = json.dumps({"tick": tick, "host": me, "token": token})
            await client.txn(success=[Op.put(DONE + f"{tick:06d}", result)], guard=mutex.is_owner())
            print(f"committed tick {tick} (token {token})", flush=True)
    except etcdsync.GuardFailedError:
        print(f"tick {tick}: our result was REFUSED, the lock had passed to a newer holder", flush=True)
    except etcdsync.SessionExpiredError:
        print(f"tick {tick}: the session expired while running; work abandoned", flush=True)


async def host(endpoints: str, me: str, ttl: int, work: float) -> None:
    async with etcdsync.open_client(endpoints) as client:
        # Ticks come from the driver through etcd, so that every host sees the same schedule.
        seen = (await client.range(TICK)).header.revision
        async with client.watch(TICK, start_revision=seen + 1) as events:
            print("ready", flush=True)
            async for resp in events:
                for event in resp.events:
                    tick = int(event.kv.value)
                    async with etcdsync.open_session(client, ttl=ttl) as session:
                        await run_tick(client, session, me, tick, work)


# --- the driver ------------------------------------------------------------------------------------------


async def drive(args: argparse.Namespace) -> int:
    async with etcd_endpoints(args.endpoints) as endpoints, etcdsync.open_client(endpoints) as client:
        await client.delete(PREFIX + "/", prefix=True)
        lines_send, lines_receive = trio.open_memory_channel[tuple[str, str]](1000)
        running: dict[int, str] = {}
        ran = trio.Event()
        ready: set[str] = set()
        all_ready = trio.Event()
        async with trio.open_nursery() as nursery:
            hosts: dict[str, Host] = {}
            for i in range(1, args.hosts + 1):
                name = f"host-{i}"
                argv = [__file__, "--as-host", name, "--endpoints", endpoints, "--ttl", str(args.ttl)]
                argv += ["--work", str(args.work)]
                hosts[name] = await nursery.start(host_process, name, argv, lines_send)

            async def show() -> None:
                nonlocal ran
                async for name, line in lines_receive:
                    print(f"[{name}] {line}", flush=True)
                    if line == "ready":
                        ready.add(name)
                        if len(ready) == args.hosts:
                            all_ready.set()
                    if line.startswith("running tick"):
                        running[int(line.split()[2])] = name
                        ran.set()

            nursery.start_soon(show)
            with trio.fail_after(60):
                await all_ready.wait()  # every host watches the tick key before the first tick
            for tick in range(1, args.ticks + 1):
                ran = trio.Event()
                print(f"[driver] tick {tick}", flush=True)
                await client.put(TICK, str(tick))
                with trio.fail_after(args.ttl * 5 + 10):
                    await ran.wait()
                if tick == args.pause_holder_at:
                    victim = running[tick]
                    print(
                        f"[driver] SIGSTOP {victim} for {args.ttl * 2} s, past its {args.ttl} s TTL",
                        flush=True,
                    )
                    hosts[victim].process.send_signal(signal.SIGSTOP)
                    await trio.sleep(args.ttl * 2)
                    print(f"[driver] SIGCONT {victim}", flush=True)
                    hosts[victim].process.send_signal(signal.SIGCONT)
                await trio.sleep(args.work + 0.5)
            await trio.sleep(1.0)
            nursery.cancel_scope.cancel()
        return await check(client, args.ticks)


async def check(client: etcdsync.Client, ticks: int) -> int:
    results = [json.loads(kv.value) async for kv in client.iter_range(DONE)]
    committed = [r["tick"] for r in results]
    tokens = [r["token"] for r in results]
    every_tick_once = committed == list(range(1, ticks + 1))
    tokens_grow = tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    print(f"[driver] committed ticks {committed}; by {[r['host'] for r in results]}")
    print(f"[driver] every tick exactly once: {every_tick_once}; fencing tokens grow: {tokens_grow}")
    ok = every_tick_once and tokens_grow
    print("[driver] OK" if ok else "[driver] FAILED", flush=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_endpoint_argument(parser)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=4)
    parser.add_argument("--ttl", type=int, default=2, help="session TTL in seconds")
    parser.add_argument("--work", type=float, default=1.0, help="seconds each run of the job takes")
    parser.add_argument("--pause-holder-at", type=int, default=2, metavar="TICK", help="0: no pause")
    parser.add_argument("--as-host", metavar="NAME", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.as_host:
        try:
            trio.run(host, args.endpoints, args.as_host, args.ttl, args.work)
        except KeyboardInterrupt:
            return 130
        return 0
    return trio.run(drive, args)


if __name__ == "__main__":
    sys.exit(main())
