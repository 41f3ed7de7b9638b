"""Leader election for a pool of workers: one schedules the work, and another takes over if it dies.

Run it::

    python recipes/leader_worker.py                      # 3 workers on a local etcd it starts
    python recipes/leader_worker.py --endpoints 10.0.0.1:2379 --workers 5

Each worker is a separate process with its own etcd session. All of them campaign in one election;
the leader assigns jobs, and every assignment it writes is *fenced* by its leadership
(``guard=election.is_leader()``), so a leader that lost its lease — paused, partitioned, or killed —
can never write another assignment, even if it does not know yet that it lost. The other workers
follow the leadership with ``election.observe()``.

After ``--kill-leader-after`` seconds the program SIGKILLs the leader's process. Its lease expires
within ``--ttl`` seconds, the next worker in line becomes leader, and scheduling resumes. At the end
the program reads the assignment log back and checks that job numbers are gapless and that each
assignment came from the leader of its time (leader revisions never go back).
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
from etcdsync.client import Compare, Op

PREFIX = "/recipes/leader-worker"
ELECTION = PREFIX + "/election"
CURSOR = PREFIX + "/cursor"
JOBS = PREFIX + "/jobs/"


# --- one worker ----------------------------------------------------------------------------------------


async def schedule_as_leader(client: etcdsync.Client, election: etcdsync.Election, me: str) -> None:
    """Assign jobs while we lead; each assignment is one transaction guarded by our leadership."""
    while True:
        cursor = await client.get(CURSOR)
        job = int(cursor.value) + 1 if cursor is not None else 1
        record = json.dumps({"job": job, "leader": me, "leader_revision": election.revision})
        await client.txn(
            # The cursor must be what we read (no double assignment), and we must still lead.
            compare=[Compare.mod_revision(CURSOR) == (cursor.mod_revision if cursor is not None else 0)],
            success=[Op.put(CURSOR, str(job)), Op.put(JOBS + f"{job:08d}", record)],
            guard=election.is_leader(),
        )
        print(f"assigned job {job}", flush=True)
        await trio.sleep(0.1)


async def worker(endpoints: str, me: str, ttl: int) -> None:
    async with etcdsync.open_client(endpoints) as client, etcdsync.open_session(client, ttl=ttl) as session:
        election = etcdsync.Election(session, ELECTION)

        async def follow() -> None:
            async with election.observe() as leaders:
                async for leader in leaders:
                    who = leader.value.decode() if leader is not None else "nobody"
                    print(f"sees leader: {who}", flush=True)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            async with election.leadership(me):
                print(f"LEADER (leader revision {election.revision})", flush=True)
                await schedule_as_leader(client, election, me)


# --- the driver: start workers, kill the leader, check the log ------------------------------------------


async def drive(args: argparse.Namespace) -> int:
    async with etcd_endpoints(args.endpoints) as endpoints, etcdsync.open_client(endpoints) as client:
        await client.delete(PREFIX + "/", prefix=True)
        lines_send, lines_receive = trio.open_memory_channel[tuple[str, str]](1000)
        leaders: list[str] = []
        first_leader, second_leader = trio.Event(), trio.Event()
        async with trio.open_nursery() as nursery:
            hosts: dict[str, Host] = {}
            for i in range(1, args.workers + 1):
                name = f"worker-{i}"
                argv = [__file__, "--as-worker", name, "--endpoints", endpoints, "--ttl", str(args.ttl)]
                hosts[name] = await nursery.start(host_process, name, argv, lines_send)

            async def show() -> None:
                async for name, line in lines_receive:
                    print(f"[{name}] {line}", flush=True)
                    if line.startswith("LEADER"):
                        leaders.append(name)
                        (first_leader if len(leaders) == 1 else second_leader).set()

            nursery.start_soon(show)
            with trio.fail_after(args.ttl * 5 + 10):
                await first_leader.wait()
            await trio.sleep(args.kill_leader_after)
            victim = leaders[-1]
            print(f"[driver] SIGKILL {victim}, the leader; its lease expires within {args.ttl} s", flush=True)
            hosts[victim].process.send_signal(signal.SIGKILL)
            with trio.fail_after(args.ttl * 5 + 10):
                await second_leader.wait()
            print(f"[driver] {leaders[-1]} took over from {victim}", flush=True)
            await trio.sleep(args.after_failover)
            nursery.cancel_scope.cancel()
        return await check_log(client, leaders)


async def check_log(client: etcdsync.Client, leaders: list[str]) -> int:
    jobs = [json.loads(kv.value) async for kv in client.iter_range(JOBS)]
    numbers = [j["job"] for j in jobs]
    revisions = [j["leader_revision"] for j in jobs]
    by = sorted({j["leader"] for j in jobs})
    gapless = numbers == list(range(1, len(jobs) + 1))
    monotonic = revisions == sorted(revisions)
    ok = gapless and monotonic and len(by) >= 2
    print(
        f"[driver] {len(jobs)} jobs assigned by {', '.join(by)}; job numbers gapless: {gapless}; "
        f"leader revisions never went back: {monotonic}"
    )
    print("[driver] OK" if ok else "[driver] FAILED", flush=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_endpoint_argument(parser)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--ttl", type=int, default=2, help="session TTL in seconds (failover time)")
    parser.add_argument("--kill-leader-after", type=float, default=1.5)
    parser.add_argument("--after-failover", type=float, default=1.0)
    parser.add_argument("--as-worker", metavar="NAME", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.as_worker:
        try:
            trio.run(worker, args.endpoints, args.as_worker, args.ttl)
        except KeyboardInterrupt:
            return 130
        return 0
    return trio.run(drive, args)


if __name__ == "__main__":
    sys.exit(main())
