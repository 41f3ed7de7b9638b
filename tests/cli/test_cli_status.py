"""``etcdsync status`` (one-shot and ``--watch``) and ``etcdsync semaphore``."""

from __future__ import annotations

import re
import signal
from contextlib import AsyncExitStack

from etcdsync import Mutex, open_session
from etcdsync._cli._status import CLEAR_SCREEN, Snapshot, classify, render
from etcdsync.client import Client, KeyValue

from .helpers import cli, run, spawn, wait_queue_len

FOOTER = b"Ctrl-C to stop\n"


def table(output: str) -> list[dict[str, str]]:
    """The rows of a status table as dicts keyed by the header's column names."""
    lines = output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("NAME "))
    header = lines[at].split()
    rows = []
    for line in lines[at + 1 :]:
        if not line.strip():
            break
        rows.append(dict(zip(header, line.split(None, len(header) - 1), strict=False)))
    return rows


def revision(output: str) -> int:
    match = re.search(r" at revision (\d+)$", output.splitlines()[0])
    assert match is not None, output
    return int(match[1])


async def test_status_shows_holder_and_waiters_in_order(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"jobs/nightly"
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(spawn(cli(etcd_endpoint, "lock", name.decode())))
        holder_key = await first.stdout.next()
        # The others queue one after the other (each once the previous one's key exists).
        await stack.enter_async_context(spawn(cli(etcd_endpoint, "lock", "--ttl", "7", name.decode())))
        await wait_queue_len(client, name, 2)
        await stack.enter_async_context(spawn(cli(etcd_endpoint, "lock", name.decode())))
        kvs = await wait_queue_len(client, name, 3)
        assert kvs[0].key == holder_key
        result = await run(cli(etcd_endpoint, "status", etcd_prefix.decode()))
        assert result.status == 0 and result.stderr == ""
        rows = table(result.stdout)
        at = revision(result.stdout)
        assert [(r["NAME"], r["KIND"], r["POS"], r["STATE"]) for r in rows] == [
            (name.decode(), "lock", "1", "held"),
            (name.decode(), "lock", "2", "waiting"),
            (name.decode(), "lock", "3", "waiting"),
        ]
        assert [int(r["LEASE"], 16) for r in rows] == [kv.lease for kv in kvs]
        assert [int(r["CREATED"]) for r in rows] == [kv.create_revision for kv in kvs]
        assert [int(r["AGE(REVS)"]) for r in rows] == [at - kv.create_revision for kv in kvs]
        ttls = [re.fullmatch(r"(\d+)/(\d+)s", r["TTL"]) for r in rows]
        assert all(ttls) and [m[2] for m in ttls if m] == ["10", "7", "10"]
        assert "VALUE" not in rows[0]  # locks have empty values


async def test_status_of_an_election_and_an_empty_prefix(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    empty = await run(cli(etcd_endpoint, "status", etcd_prefix.decode()))
    assert empty.status == 0 and "no locks, elections or semaphores" in empty.stdout
    name = etcd_prefix + b"leader"
    await client.put(etcd_prefix + b"unrelated", b"x")
    async with spawn(cli(etcd_endpoint, "elect", name.decode(), "worker 7")) as leader:
        await leader.stdout.next()
        result = await run(cli(etcd_endpoint, "status", etcd_prefix.decode()))
        (row,) = table(result.stdout)
        assert (row["KIND"], row["STATE"], row["VALUE"]) == ("election", "leader", "worker 7")
        assert "(1 other key under" in result.stdout


async def test_semaphore_admits_two_and_queues_the_third(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"rollout"

    def semaphore() -> list[str]:
        return cli(etcd_endpoint, "semaphore", "--limit", "2", name.decode())

    async with spawn(semaphore()) as a, spawn(semaphore()) as b:
        keys = [await a.stdout.next(), await b.stdout.next()]
        tokens = [int(await a.stdout.next()), int(await b.stdout.next())]
        assert len(set(keys)) == 2 and all(k.startswith(name + b"/") for k in keys)
        async with spawn(semaphore()) as c:
            kvs = await wait_queue_len(client, name, 3)
            assert [kv.create_revision for kv in kvs[:2]] == sorted(tokens)
            result = await run(cli(etcd_endpoint, "status", name.decode() + "/"))  # limit key outside PREFIX
            rows = table(result.stdout)
            assert [(r["KIND"], r["STATE"]) for r in rows] == [
                ("semaphore(2)", "held"),
                ("semaphore(2)", "held"),
                ("semaphore(2)", "waiting"),
            ]
            assert rows[2]["LEASE"] == format(kvs[2].lease, "x")
            a.signal(signal.SIGINT)
            assert await a.wait() == 0
            assert await c.stdout.next() == kvs[2].key  # the third gets the freed permit
            c.signal(signal.SIGINT)
            assert await c.wait() == 0
        b.signal(signal.SIGINT)
        assert await b.wait() == 0
    # A different limit is refused: one line, non-zero.
    await client.put(name, b"2")
    refused = await run(cli(etcd_endpoint, "semaphore", "--limit", "3", name.decode()))
    assert refused.status == 1 and "SemaphoreLimitMismatchError" in refused.stderr


async def test_status_watch_redraws_on_change(client: Client, etcd_endpoint: str, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"lock"
    argv = cli(etcd_endpoint, "status", "--watch", "--interval", "60", etcd_prefix.decode())
    async with spawn(argv) as status:
        first = (await status.stdout.until(FOOTER)).decode()
        assert first.startswith(CLEAR_SCREEN)
        assert "no locks, elections or semaphores" in first
        async with open_session(client, ttl=5) as session, Mutex(session, name) as mutex:
            del mutex
            frame, lease = first, format(session.lease_id, "x")
            while lease not in frame:  # the next frame(s), bounded by the test deadline
                frame = (await status.stdout.until(FOOTER)).decode()
            assert frame.startswith(CLEAR_SCREEN)
            (row,) = table(frame.removeprefix(CLEAR_SCREEN))
            assert (row["STATE"], int(row["LEASE"], 16)) == ("held", session.lease_id)
            assert re.fullmatch(r"\d+s", row["SEEN"])
        while "no locks, elections or semaphores" not in frame:  # released: redrawn again
            frame = (await status.stdout.until(FOOTER)).decode()
        status.signal(signal.SIGINT)
        assert await status.wait() == 0


def kv(key: bytes, rev: int, lease: int, value: bytes = b"") -> KeyValue:
    return KeyValue(key=key, value=value, create_revision=rev, mod_revision=rev, version=1, lease=lease)


def test_classify_and_render_every_kind() -> None:
    kvs = [
        kv(b"/p/rw/write/a2-0badcafe", 12, 0xA2),
        kv(b"/p/rw/read/a1-1234abcd", 11, 0xA1),
        kv(b"/p/rw/read/a3-00000001", 13, 0xA3),
        kv(b"/p/sem", 20, 0, b"2"),  # the semaphore's limit
        kv(b"/p/sem/b1", 21, 0xB1),
        kv(b"/p/sem/b1-1", 22, 0xB1),  # a second permit of the same session
        kv(b"/p/sem/b2", 23, 0xB2),
        kv(b"/p/vote/c1", 30, 0xC1, b"me\nand you"),
        kv(b"/p/vote/c2", 31, 0xC2, b"x" * 50),
        kv(b"/p/plain/ab", 40, 0),  # hex-looking, but attached to no lease: not a participant
        kv(b"/p/stray/ab", 41, 0xCD),  # attached to another lease than its name says
    ]
    groups, others = classify(kvs)
    assert others == 2
    assert [(g.name, g.kind, g.holders()) for g in groups] == [
        (b"/p/rw", "rwlock", 1),
        (b"/p/sem", "semaphore(2)", 2),
        (b"/p/vote", "election", 1),
    ]
    ttls = {0xA1: (5, 10), 0xB1: (-1, 10)}
    snapshot = Snapshot(prefix=b"/p/", revision=50, groups=groups, ttls=ttls, others=others)
    rows = table("\n".join(render(snapshot)))
    assert [(r["NAME"], r["KIND"], r["POS"], r["STATE"], r["TTL"], r["AGE(REVS)"]) for r in rows] == [
        ("/p/rw", "rwlock(read)", "1", "held", "5/10s", "39"),  # readers ahead of the first writer
        ("/p/rw", "rwlock(write)", "2", "waiting", "expired", "38"),
        ("/p/rw", "rwlock(read)", "3", "waiting", "expired", "37"),
        ("/p/sem", "semaphore(2)", "1", "held", "expired", "29"),
        ("/p/sem", "semaphore(2)", "2", "held", "expired", "28"),
        ("/p/sem", "semaphore(2)", "3", "waiting", "expired", "27"),
        ("/p/vote", "election", "1", "leader", "expired", "20"),
        ("/p/vote", "election", "2", "waiting", "expired", "19"),
    ]
    assert rows[6]["VALUE"] == "me\\nand you"  # escaped: one row per participant
    assert rows[7]["VALUE"] == "x" * 39 + "…"
    assert render(snapshot)[-1] == "(2 other keys under /p/ not shown)"
