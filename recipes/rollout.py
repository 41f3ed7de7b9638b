"""A coordinated rollout: hosts restart wave by wave, at most K at a time, and a failed health check
halts it.

Run it::

    python recipes/rollout.py                                  # 6 hosts in 3 waves, local etcd
    python recipes/rollout.py --crash host-3                   # one host dies mid-restart
    python recipes/rollout.py --fail-health host-4             # a bad release: the rollout halts
    python recipes/rollout.py --endpoints 10.0.0.1:2379 --hosts 9 --waves 3 --parallel 2

Every host is a separate process with its own etcd session. The pieces:

- **Waves** (``DoubleBarrier`` per wave): the hosts of a wave enter together once all of them are
  ready, and leave together once all of them have finished — a host that crashes counts as gone when
  its lease expires, so it cannot wedge its wave.
- **At most K restarting** (``Semaphore``): a host holds a permit while it restarts. A host that
  crashes while restarting frees its permit when its lease expires.
- **A coordinator** (``Election``): one process leads and tracks every host's status (kept on the
  host's lease) with ``list_and_watch``. It opens the next wave's gate (a ``Barrier``) when a wave is
  complete, and halts the rollout when a host reports a failed health check. All of its writes are
  fenced by its leadership, so a coordinator that lost the lead cannot open a gate.

The program prints the progress of each wave as it changes (bars on a terminal), then an account of
what happened, and checks from etcd's own history that no more than K hosts ever restarted at once.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections import Counter
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_endpoint_argument, etcd_endpoints, host_process

import etcdsync
from etcdsync.client import Event, EventType, ListDone, Resynced

PREFIX = "/recipes/rollout"
PLAN = PREFIX + "/plan"
HOSTS = PREFIX + "/hosts/"
HALT = PREFIX + "/halt"
RESULT = PREFIX + "/result"
SLOTS = PREFIX + "/restart-slots"


def gate(wave: int) -> str:
    return f"{PREFIX}/gate/{wave}"


async def wait_for_key(client: etcdsync.Client, key: str) -> bytes:
    """The value of ``key`` once it exists (watching, not polling)."""
    while True:
        resp = await client.range(key)
        if resp.kvs:
            return resp.kvs[0].value
        async with client.watch(key, start_revision=resp.header.revision + 1) as events:
            async for batch in events:
                for event in batch.events:
                    if event.type is EventType.PUT:
                        return event.kv.value


# --- a host ---------------------------------------------------------------------------------------------


async def run_host(args: argparse.Namespace) -> None:
    async with (
        etcdsync.open_client(args.endpoints) as client,
        etcdsync.open_session(client, ttl=args.ttl) as session,
    ):
        plan = json.loads(await wait_for_key(client, PLAN))
        wave = next(i for i, names in enumerate(plan["waves"], 1) if args.as_host in names)
        size = len(plan["waves"][wave - 1])

        async def report(state: str) -> None:
            status = json.dumps({"wave": wave, "state": state})
            await client.put(HOSTS + args.as_host, status, lease=session.lease_id)

        await report("waiting")
        await etcdsync.Barrier(client, gate(wave)).wait()
        if await client.get(HALT) is not None:
            await report("skipped")
        else:
            async with (
                etcdsync.DoubleBarrier(session, f"{PREFIX}/wave/{wave}", size),  # the wave enters together
                etcdsync.Semaphore(session, SLOTS, plan["parallel"]),  # at most K restart at once
            ):
                await report("restarting")
                if args.crash_self:
                    os._exit(1)  # a host dying mid-restart: no cleanup, its lease will expire
                await trio.sleep(random.uniform(0.2, 0.6))  # stop, upgrade, start
                await report("unhealthy" if args.fail_health_self else "done")
        await wait_for_key(client, RESULT)  # stay alive (and keep our status) until the end


# --- the coordinator ------------------------------------------------------------------------------------


async def run_coordinator(args: argparse.Namespace) -> None:
    async with (
        etcdsync.open_client(args.endpoints) as client,
        etcdsync.open_session(client, ttl=args.ttl) as session,
    ):
        plan = json.loads(await wait_for_key(client, PLAN))
        waves: list[list[str]] = plan["waves"]
        election = etcdsync.Election(session, PREFIX + "/coordinator")
        async with election.leadership(args.as_coordinator):
            fence = election.is_leader()
            states: dict[str, str] = {}
            opened = 1
            async with etcdsync.list_and_watch(client, HOSTS) as stream:
                async for item in stream:
                    if isinstance(item, ListDone | Resynced):
                        continue
                    assert isinstance(item, Event)
                    name = item.kv.key.decode()[len(HOSTS) :]
                    if item.type is EventType.PUT:
                        states[name] = json.loads(item.kv.value)["state"]
                    elif states.get(name) != "done":
                        states[name] = "lost"  # its lease expired before it finished
                        print(f"{name} is lost (its session expired)", flush=True)
                    unhealthy = sorted(n for n, s in states.items() if s == "unhealthy")
                    if unhealthy:
                        reason = f"halted: {', '.join(unhealthy)} failed the health check"
                        await client.put(HALT, reason, guard=fence)
                        for w in range(opened + 1, len(waves) + 1):
                            await client.delete(gate(w), guard=fence)  # let waiting hosts see the halt
                        await client.put(RESULT, reason, guard=fence)
                        print(reason, flush=True)
                        return
                    while all(states.get(n) in ("done", "lost") for n in waves[opened - 1]):
                        if opened == len(waves):
                            await client.put(RESULT, "complete", guard=fence)
                            print("rollout complete", flush=True)
                            return
                        opened += 1
                        await client.delete(gate(opened), guard=fence)
                        print(f"wave {opened - 1} finished; opened wave {opened}", flush=True)


# --- the driver -----------------------------------------------------------------------------------------


MARKS = {"done": "#", "restarting": ">", "unhealthy": "!", "lost": "x", "skipped": "-"}


def progress_line(waves: list[list[str]], states: dict[str, str]) -> str:
    parts = []
    for i, names in enumerate(waves, 1):
        done = sum(states.get(n) == "done" for n in names)
        marks = "".join(
            {"done": "#", "restarting": ">", "unhealthy": "!", "lost": "x", "skipped": "-"}.get(
                states.get(n, ""), "."
            )
            for n in names
        )
        parts.append(f"wave {i} [{marks}] {done}/{len(names)}")
    return "   ".join(parts)


async def drive(args: argparse.Namespace) -> int:
    names = [f"host-{i}" for i in range(1, args.hosts + 1)]
    per_wave = -(-args.hosts // args.waves)
    waves = [names[i : i + per_wave] for i in range(0, len(names), per_wave)]
    async with etcd_endpoints(args.endpoints) as endpoints, etcdsync.open_client(endpoints) as client:
        await client.delete(PREFIX + "/", prefix=True)
        for w in range(2, len(waves) + 1):
            await etcdsync.Barrier(client, gate(w)).hold()  # later waves wait for the coordinator
        print(
            f"[rollout] {args.hosts} hosts in {len(waves)} waves, at most {args.parallel} restarting at once"
        )
        lines_send, lines_receive = trio.open_memory_channel[tuple[str, str]](1000)
        progress = Progress(waves)
        async with trio.open_nursery() as nursery:
            common = ["--endpoints", endpoints, "--ttl", str(args.ttl)]
            coordinator = [__file__, "--as-coordinator", "coordinator", *common]
            await nursery.start(host_process, "coordinator", coordinator, lines_send)
            for name in names:
                extra = ["--crash-self"] if name == args.crash else []
                extra += ["--fail-health-self"] if name == args.fail_health else []
                await nursery.start(
                    host_process, name, [__file__, "--as-host", name, *common, *extra], lines_send
                )

            async def show_lines() -> None:
                async for name, line in lines_receive:
                    progress.interrupt()
                    print(f"[{name}] {line}", flush=True)

            nursery.start_soon(show_lines)
            # Follow every status change from before the plan exists, so nothing is missed.
            with trio.fail_after(args.ttl * 10 + 60):
                await nursery.start(progress.follow, client)
                await client.put(PLAN, json.dumps({"waves": waves, "parallel": args.parallel}))
                await progress.finished.wait()
            nursery.cancel_scope.cancel()
        return report(progress, args)


class Progress:
    """The rollout as seen from etcd's event history (every status change, in revision order)."""

    def __init__(self, waves: list[list[str]]) -> None:
        self.waves = waves
        self.states: dict[str, str] = {}
        self.restarting: set[str] = set()
        self.most_restarting = 0
        self.result = ""
        self.finished = trio.Event()
        self._tty = sys.stdout.isatty()
        self._last = ""

    async def follow(self, client: etcdsync.Client, *, task_status: trio.TaskStatus[None]) -> None:
        async with etcdsync.list_and_watch(client, PREFIX + "/") as stream:
            async for item in stream:
                if isinstance(item, ListDone):
                    task_status.started()
                if isinstance(item, Event):
                    self.apply(item)
                if self.finished.is_set():
                    return

    def apply(self, event: Event) -> None:
        key = event.kv.key.decode()
        if key == RESULT and event.type is EventType.PUT:
            self.result = event.kv.value.decode()
            self.finished.set()
            return
        if not key.startswith(HOSTS):
            return
        name = key[len(HOSTS) :]
        if event.type is EventType.PUT:
            state = json.loads(event.kv.value)["state"]
        else:
            state = "done" if self.states.get(name) == "done" else "lost"
        self.states[name] = state
        (self.restarting.add if state == "restarting" else self.restarting.discard)(name)
        self.most_restarting = max(self.most_restarting, len(self.restarting))
        self.draw()

    def draw(self) -> None:
        line = progress_line(self.waves, self.states)
        if line != self._last:
            self._last = line
            print(("\r" if self._tty else "") + line, end="" if self._tty else "\n", flush=True)

    def interrupt(self) -> None:
        """Another line is about to be printed: end the redrawn progress line first."""
        if self._tty and self._last:
            print()
            self._last = ""


def report(progress: Progress, args: argparse.Namespace) -> int:
    """Say what happened, and check the rollout's promises against the history."""
    counts = Counter(progress.states.values())
    print()
    print(f"[rollout] result: {progress.result}")
    print(
        f"[rollout] upgraded {counts['done']}, lost {counts['lost']}, unhealthy {counts['unhealthy']}, "
        f"not started {counts['skipped'] + counts['waiting']}; most hosts restarting at once: "
        f"{progress.most_restarting} (limit {args.parallel})"
    )
    lost = sorted(n for n, s in progress.states.items() if s == "lost")
    if lost:
        print(
            f"[rollout] {', '.join(lost)} died mid-restart; its permit and its place in the wave were freed "
            f"when its {args.ttl} s lease expired, and the rollout went on"
        )
    ok = progress.most_restarting <= args.parallel and (progress.result == "complete") == (
        args.fail_health is None
    )
    print("[rollout] OK" if ok else "[rollout] FAILED", flush=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_endpoint_argument(parser)
    parser.add_argument("--hosts", type=int, default=6)
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=2, help="at most this many hosts restart at once")
    parser.add_argument("--ttl", type=int, default=2, help="session TTL: how long a dead host holds things")
    parser.add_argument("--crash", metavar="HOST", help="this host dies in the middle of its restart")
    parser.add_argument("--fail-health", metavar="HOST", help="this host fails its health check")
    parser.add_argument("--as-host", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument("--crash-self", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fail-health-self", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--as-coordinator", metavar="NAME", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.as_host:
            trio.run(run_host, args)
            return 0
        if args.as_coordinator:
            trio.run(run_coordinator, args)
            return 0
    except KeyboardInterrupt:
        return 130
    return trio.run(drive, args)


if __name__ == "__main__":
    sys.exit(main())
