"""The watch workload: a writer puts and deletes under a prefix while watchers on different members (one
through a proxy) record what they receive; the nemesis kills a follower and the leader and resets and
blackholes the proxied watcher's connection. Each watcher must receive exactly the server's history."""

from __future__ import annotations

import random

import attrs
import trio

import etcdsync
from etcdsync.client import EventType
from etcdsync.testing import EtcdCluster
from etcdsync.testing.faults import open_tcp_proxy

from .checkers import Report, WatchEvent, check_watch
from .workloads import TIMING, current_revision, replay

END = b"END"


@attrs.frozen
class WatchConfig:
    ops: int = 1200
    keys: int = 10
    #: (op number, action): "kill-follower", "restart-follower", "kill-leader", "restart-leader",
    #: "proxy-reset", "proxy-blackhole" (healed after ``blackhole_seconds``).
    schedule: tuple[tuple[int, str], ...] = (
        (150, "kill-follower"),
        (300, "proxy-reset"),
        (450, "restart-follower"),
        (600, "kill-leader"),
        (800, "restart-leader"),
        (900, "proxy-blackhole"),
    )
    blackhole_seconds: float = 1.5


@attrs.define
class WatchOutcome:
    reports: list[Report]
    acknowledged_missing: int
    faults: int


async def run_watch_workload(
    cluster: EtcdCluster, prefix: bytes, *, config: WatchConfig, rng: random.Random
) -> WatchOutcome:
    endpoints = cluster.endpoints
    leader = await cluster.leader()
    follower = (leader + 1) % cluster.size
    other = (leader + 2) % cluster.size
    acknowledged: list[tuple[int, bytes, bytes]] = []  # (revision, key, value) of ok puts
    progress = {"ops": 0}
    milestones: dict[int, trio.Event] = {op: trio.Event() for op, _ in config.schedule}
    received: dict[str, list[list[WatchEvent]]] = {"follower": [], "leader": [], "proxied": []}
    faults = 0

    async with (
        open_tcp_proxy(endpoints[other]) as proxy,
        etcdsync.open_client(endpoints) as writer_client,
        etcdsync.open_client([endpoints[(follower + i) % 3] for i in range(3)]) as follower_client,
        etcdsync.open_client([endpoints[(leader + i) % 3] for i in range(3)]) as leader_client,
        etcdsync.open_client(proxy.endpoint) as proxied_client,
    ):
        base = await current_revision(writer_client)

        async def watcher(name: str, client: etcdsync.Client, started: trio.Event) -> None:
            async with client.watch(prefix, prefix=True, start_revision=base + 1) as watch:
                started.set()
                async for response in watch:
                    events = [
                        WatchEvent(
                            e.kv.mod_revision,
                            e.kv.key,
                            "put" if e.type is EventType.PUT else "delete",
                            e.kv.value if e.type is EventType.PUT else b"",
                        )
                        for e in response.events
                    ]
                    if events:
                        received[name].append(events)
                    if any(e.value == END for e in events):
                        return

        async def writer() -> None:
            keys = [prefix + b"k%02d" % i for i in range(config.keys)]
            for seq in range(config.ops):
                key = rng.choice(keys)
                try:
                    if rng.random() < 0.25:
                        await writer_client.delete(key)
                    else:
                        value = b"v%d" % seq
                        resp = await writer_client.put(key, value)
                        acknowledged.append((resp.header.revision, key, value))
                except etcdsync.EtcdError:
                    await trio.sleep(0.02)  # indeterminate or refused: the server history decides
                progress["ops"] = seq + 1
                if seq + 1 in milestones:
                    milestones[seq + 1].set()
            while True:
                try:
                    await writer_client.put(prefix + b"zz-end", END)
                    return
                except etcdsync.EtcdError:
                    await trio.sleep(0.05)

        async def nemesis() -> None:
            nonlocal faults
            for op, action in config.schedule:
                await milestones[op].wait()
                faults += 1
                if action == "kill-follower":
                    await cluster.kill(follower)
                elif action == "restart-follower":
                    await cluster.restart(follower)
                elif action == "kill-leader":
                    await cluster.kill(leader)
                elif action == "restart-leader":
                    await cluster.restart(leader)
                elif action == "proxy-reset":
                    proxy.reset()
                elif action == "proxy-blackhole":
                    proxy.blackhole()
                    await trio.sleep(config.blackhole_seconds)
                    proxy.heal()
                else:
                    raise AssertionError(action)

        with trio.fail_after(120 * TIMING):
            async with trio.open_nursery() as nursery:
                for name, client in (
                    ("follower", follower_client),
                    ("leader", leader_client),
                    ("proxied", proxied_client),
                ):
                    started = trio.Event()
                    nursery.start_soon(watcher, name, client, started)
                    await started.wait()
                nursery.start_soon(nemesis)
                await writer()
            for index in range(cluster.size):
                if not cluster.members[index].running:
                    await cluster.restart(index)
        reference = await replay(writer_client, prefix, base + 1)
    in_reference = {(e.revision, e.key, e.value) for e in reference}
    missing = sum(1 for a in acknowledged if a not in in_reference)
    reports = [
        check_watch(reference, responses, start=base + 1, name=f"watch via {name}")
        for name, responses in received.items()
    ]
    return WatchOutcome(reports, missing, faults)
