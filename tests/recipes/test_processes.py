"""Recipes across processes: mutual exclusion, crashes (SIGKILL), and interop with etcdctl lock/elect."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from etcdsync import Election, Mutex, open_session
from etcdsync.client import Client, KeyValue

WORKER = str(Path(__file__).with_name("worker.py"))


class Lines:
    """Reads a child's stdout line by line."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise EOFError(f"the child closed its output; got {self._buffer!r}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    async def json(self) -> dict[str, object]:
        result = json.loads(await self.next())
        assert isinstance(result, dict)
        return result


@asynccontextmanager
async def spawn(*argv: str) -> AsyncIterator[tuple[trio.Process, Lines]]:
    """A child process in its own session; SIGKILLed and reaped on exit, whatever happens."""
    process = await trio.lowlevel.open_process(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        assert process.stdout is not None
        yield process, Lines(process.stdout)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()


def etcdctl() -> str:
    path = shutil.which("etcdctl")
    if path is None:
        pytest.fail("etcdctl not found: install Debian's etcd-client (make test's bootstrap does)")
    return path


async def queue(client: Client, name: bytes) -> list[KeyValue]:
    return list((await client.range(name + b"/", prefix=True)).kvs)


async def wait_queue_len(client: Client, name: bytes, n: int) -> None:
    while len(await queue(client, name)) != n:
        await trio.sleep(0.02)


@pytest.mark.deadline(240)
async def test_two_processes_exclude_each_other(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    """8 tasks in 2 processes x 200 acquisitions: a guarded counter ends exact; tokens only grow."""
    name, counter = etcd_prefix + b"lock", etcd_prefix + b"counter"
    tasks, rounds = 4, 50 if os.environ.get("ETCDSYNC_QUICK") else 200
    records: list[tuple[int, int]] = []

    async def local_worker() -> None:
        async with open_session(client, ttl=10) as session:
            for _ in range(rounds):
                async with Mutex(session, name) as mutex:
                    kv = await client.get(counter)
                    value = int(kv.value) + 1 if kv is not None else 1
                    await client.put(counter, b"%d" % value, guard=mutex.is_owner())
                    records.append((value, mutex.fencing_token))

    async with spawn(
        sys.executable,
        WORKER,
        "counter",
        etcd_endpoint,
        name.decode(),
        counter.decode(),
        str(tasks),
        str(rounds),
    ) as (process, lines):

        async def read_child() -> None:
            for _ in range(tasks * rounds):
                record = await lines.json()
                value, token = record["value"], record["token"]
                assert isinstance(value, int) and isinstance(token, int)
                records.append((value, token))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_child)
            for _ in range(tasks):
                nursery.start_soon(local_worker)
        assert await process.wait() == 0

    total = 2 * tasks * rounds
    kv = await client.get(counter)
    assert kv is not None and int(kv.value) == total
    records.sort()
    assert [value for value, _ in records] == list(range(1, total + 1))  # no lost or doubled update
    tokens = [token for _, token in records]
    assert all(a < b for a, b in itertools.pairwise(tokens))  # successive holders' tokens grow


@pytest.mark.deadline(60)
async def test_killed_holder_releases_within_its_ttl(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name, ttl = etcd_prefix + b"lock", 2
    async with spawn(sys.executable, WORKER, "hold", etcd_endpoint, name.decode(), str(ttl)) as (
        process,
        lines,
    ):
        held = await lines.json()
        lease = held["lease"]
        assert isinstance(lease, int)
        async with open_session(client, ttl=5) as session:
            waiter = Mutex(session, name)
            with pytest.raises(trio.WouldBlock):
                await waiter.try_acquire()
            process.send_signal(signal.SIGKILL)
            with trio.fail_after(ttl + 10):  # a hang guard, not a timing assertion
                await waiter.acquire()
            # It was the lease expiring that freed the lock.
            assert (await client.lease_time_to_live(lease)).ttl == -1
            assert waiter.fencing_token > held["token"]  # type: ignore[operator]
            await waiter.release()


@pytest.mark.deadline(90)
async def test_killed_leader_is_replaced_and_observers_agree(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name, ttl = etcd_prefix + b"elect", 2
    observed: list[KeyValue | None] = []
    async with open_session(client, ttl=5) as session:
        follower = Election(session, name)

        async def observe() -> None:
            async with Election(session, name).observe() as leaders:
                async for kv in leaders:
                    observed.append(kv)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(observe)
            async with spawn(
                sys.executable, WORKER, "lead", etcd_endpoint, name.decode(), "child", str(ttl)
            ) as (
                process,
                lines,
            ):
                first = await lines.json()
                campaign_done = trio.Event()

                async def campaign() -> None:
                    await follower.campaign(b"parent")
                    campaign_done.set()

                nursery.start_soon(campaign)
                await wait_queue_len(client, name, 2)
                assert (await follower.leader()).value == b"child"
                process.send_signal(signal.SIGKILL)
                with trio.fail_after(ttl + 10):  # a hang guard, not a timing assertion
                    await campaign_done.wait()
            assert follower.revision > first["rev"]  # type: ignore[operator]
            while not observed or observed[-1] is None or observed[-1].value != b"parent":
                await trio.sleep(0.02)
            await follower.resign()
            nursery.cancel_scope.cancel()
    leaders = [kv for kv in observed if kv is not None]
    assert [kv.value for kv in leaders][-2:] == [b"child", b"parent"]
    revisions = [kv.create_revision for kv in leaders]
    assert revisions == sorted(revisions)  # leader revisions only grow
    by_revision: dict[int, bytes] = {}
    for kv in leaders:
        assert by_revision.setdefault(kv.create_revision, kv.key) == kv.key  # one leader per revision


@pytest.mark.deadline(60)
async def test_etcdctl_lock_excludes_our_mutex(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"shared-lock"
    async with spawn(etcdctl(), f"--endpoints={etcd_endpoint}", "lock", "--ttl=3", name.decode()) as (
        process,
        lines,
    ):
        their_key = await lines.next()  # etcdctl prints the key once it holds the lock
        assert their_key.startswith(name.decode() + "/")
        async with open_session(client, ttl=5) as session:
            mutex = Mutex(session, name)
            with pytest.raises(trio.WouldBlock):
                await mutex.try_acquire()
            got = trio.Event()

            async def acquire() -> None:
                await mutex.acquire()
                got.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(acquire)
                await wait_queue_len(client, name, 2)
                assert not got.is_set()
                process.send_signal(signal.SIGINT)  # etcdctl unlocks and exits
                await got.wait()
            assert await client.get(their_key) is None  # etcdctl released its key
            await mutex.release()


@pytest.mark.deadline(60)
async def test_our_mutex_excludes_etcdctl_lock(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"shared-lock"
    async with open_session(client, ttl=5) as session:
        mutex = Mutex(session, name)
        await mutex.acquire()
        async with spawn(etcdctl(), f"--endpoints={etcd_endpoint}", "lock", "--ttl=3", name.decode()) as (
            process,
            lines,
        ):
            await wait_queue_len(client, name, 2)  # etcdctl queued behind us ...
            with trio.move_on_after(0.5):
                line = await lines.next()
                pytest.fail(f"etcdctl got the lock while we held it: {line!r}")
            await mutex.release()
            their_key = await lines.next()  # ... and gets it once we release
            kvs = await queue(client, name)
            assert [kv.key.decode() for kv in kvs] == [their_key]
            process.send_signal(signal.SIGINT)
            await process.wait()


@pytest.mark.deadline(60)
async def test_etcdctl_elect_is_seen_by_us(client: Client, etcd_endpoint: str, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"shared-elect"
    async with spawn(etcdctl(), f"--endpoints={etcd_endpoint}", "elect", name.decode(), "their-proposal") as (
        process,
        lines,
    ):
        their_key = await lines.next()  # etcdctl prints key then value once elected
        assert await lines.next() == "their-proposal"
        async with open_session(client, ttl=5) as session:
            election = Election(session, name)
            leader = await election.leader()
            assert (leader.key.decode(), leader.value) == (their_key, b"their-proposal")
            async with election.observe() as leaders:
                first = await leaders.__anext__()
                assert first is not None and first.value == b"their-proposal"
            process.send_signal(signal.SIGINT)
            await process.wait()


@pytest.mark.deadline(60)
async def test_our_election_is_seen_by_etcdctl_listen(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"shared-elect"
    async with open_session(client, ttl=5) as session:
        election = Election(session, name)
        async with (
            election.leadership(b"our-proposal"),
            spawn(etcdctl(), f"--endpoints={etcd_endpoint}", "elect", "--listen", name.decode()) as (
                _,
                lines,
            ),
        ):
            assert await lines.next() == election.key.decode()
            assert await lines.next() == "our-proposal"
            await election.proclaim(b"second")
            assert await lines.next() == election.key.decode()
            assert await lines.next() == "second"
