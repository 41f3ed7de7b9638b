"""Queue and PriorityQueue against a real etcd: exactly-once, order, waits without polling, cancellation."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from etcdsync._queue import PriorityQueue, Queue
from etcdsync.client import Client, EventType, Op, OutcomeUnknownError


class Rpcs:
    """Counts the unary KV calls a client makes (by wrapping the instance's methods)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, client: Client) -> None:
        self.calls: list[str] = []
        for name in ("txn", "range", "get", "put", "delete"):
            original = getattr(client, name)

            async def counted(
                *args: object,
                _original: Callable[..., Awaitable[object]] = original,
                _name: str = name,
                **kwargs: object,
            ) -> object:
                self.calls.append(_name)
                return await _original(*args, **kwargs)

            monkeypatch.setattr(client, name, counted)

    def __len__(self) -> int:
        return len(self.calls)


def is_claim(*args: object, **kwargs: object) -> bool:
    success = kwargs.get("success", args[1] if len(args) > 1 else ())
    return any(type(op).__name__ == "DeleteOp" for op in success)  # type: ignore[attr-defined]


async def items(client: Client, prefix: bytes) -> list[bytes]:
    return [kv.value for kv in (await client.range(prefix, prefix=True)).kvs]


async def wait_until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await trio.sleep(0.005)


# ----- construction and layout -------------------------------------------------------------------------


async def test_caller_mistakes(client: Client) -> None:
    with pytest.raises(ValueError, match="^a recipe name must not be empty$"):
        Queue(client, "")
    with pytest.raises(TypeError, match="^Queue needs a Client, not str$"):
        Queue("client", "q")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^claim_timeout must be > 0$"):
        PriorityQueue(client, "q", claim_timeout=0)
    q, pq = Queue(client, "/q"), PriorityQueue(client, "/pq")
    with pytest.raises(TypeError, match="^value must be bytes or str, not int$"):
        await q.enqueue(7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^priority must be between 0 and 65535$"):
        await pq.enqueue(b"x", 65536)
    with pytest.raises(ValueError, match="^priority must be between 0 and 65535$"):
        await pq.enqueue(b"x", -1)
    with pytest.raises(TypeError, match="^priority must be an int, not bool$"):
        await pq.enqueue(b"x", True)


async def test_key_layout(client: Client, etcd_prefix: bytes) -> None:
    q = Queue(client, etcd_prefix + b"q")
    key = await q.enqueue("héllo")
    assert re.fullmatch(re.escape(etcd_prefix + b"q/") + rb"[0-9a-f]{32}", key)
    kv = await client.get(key)
    assert kv is not None and kv.value == "héllo".encode() and kv.lease == 0
    pq = PriorityQueue(client, etcd_prefix + b"pq")
    key = await pq.enqueue(b"x", 7)
    assert re.fullmatch(re.escape(etcd_prefix + b"pq/00007/") + rb"[0-9a-f]{32}", key)
    assert q.prefix == etcd_prefix + b"q/"
    assert "Queue" in repr(q) and "0 dequeuing" in repr(q)


async def test_fifo_by_create_revision_not_by_key(client: Client, etcd_prefix: bytes) -> None:
    q = Queue(client, etcd_prefix + b"q")
    # Go's Queue names items by time; any key under the prefix is an item, served by create revision.
    await client.put(etcd_prefix + b"q/zzz", b"first")
    await q.enqueue(b"second")
    await client.put(etcd_prefix + b"q/000", b"third")
    assert [await q.dequeue() for _ in range(3)] == [b"first", b"second", b"third"]
    assert await items(client, q.prefix) == []


async def test_dequeue_checkpoints(client: Client, etcd_prefix: bytes) -> None:
    q = Queue(client, etcd_prefix + b"q")
    await q.enqueue(b"x")
    with trio.testing.assert_checkpoints():
        await q.dequeue()


# ----- exactly once, in order, under concurrency ------------------------------------------------------


@pytest.mark.deadline(90)
async def test_producers_and_consumers_each_item_exactly_once_in_order(
    client: Client, etcd_prefix: bytes
) -> None:
    producers, per_producer, consumers = 4, 500, 4
    total = producers * per_producer
    name = etcd_prefix + b"q"
    # Two consumers per Queue object (they take turns), two objects (they race, like two processes).
    queues = [Queue(client, name), Queue(client, name)]
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]
    start = (await client.range(name, count_only=True)).header.revision
    got = 0
    all_received = trio.Event()

    async def produce(p: int) -> None:
        producer_queue = Queue(client, name)
        for i in range(per_producer):
            await producer_queue.enqueue(b"%d:%d" % (p, i))

    async def consume(c: int) -> None:
        nonlocal got
        q = queues[c % len(queues)]
        while True:
            value = await q.dequeue()
            p, i = map(int, value.split(b":"))
            received[c].append((p, i))  # no checkpoint between dequeue() and recording it
            got += 1
            if got == total:
                all_received.set()

    async with trio.open_nursery() as nursery:
        for c in range(consumers):
            nursery.start_soon(consume, c)
        async with trio.open_nursery() as producing:
            for p in range(producers):
                producing.start_soon(produce, p)
        await all_received.wait()
        nursery.cancel_scope.cancel()

    everything = sorted(item for r in received for item in r)
    assert everything == sorted((p, i) for p in range(producers) for i in range(per_producer))
    for r in received:  # each consumer saw each producer's items in order
        for p in range(producers):
            mine = [i for q, i in r if q == p]
            assert mine == sorted(mine)
    assert await items(client, name + b"/") == []

    # Claims happened in queue order: the deletes' revisions grow with the items' create revisions.
    end = (await client.range(name, count_only=True)).header.revision
    created: list[int] = []
    async with client.watch(name + b"/", prefix=True, start_revision=start + 1, prev_kv=True) as events:
        async for resp in events:
            for event in resp.events:
                if event.type is EventType.DELETE:
                    assert event.prev_kv is not None
                    created.append(event.prev_kv.create_revision)
            if resp.events and resp.events[-1].kv.mod_revision >= end:
                break
    assert len(created) == total
    assert created == sorted(created)
    stats = [q.statistics() for q in queues]
    assert sum(s.claims - s.claims_lost for s in stats) == total
    assert sum(s.uncertain_claims for s in stats) == 0


# ----- waiting -----------------------------------------------------------------------------------------


async def test_waiting_dequeuer_issues_no_rpc_until_an_enqueue(
    client: Client, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = Queue(client, etcd_prefix + b"q")
    rpcs = Rpcs(monkeypatch, client)
    got: list[bytes] = []

    async def dequeue() -> None:
        got.append(await q.dequeue())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(dequeue)
        await wait_until(lambda: q.statistics().watches == 1)
        idle = len(rpcs)
        assert idle == 1  # the one read that found the queue empty
        await trio.sleep(1.0)  # an observation window: a polling dequeuer would show up here
        assert len(rpcs) == idle
        await Queue(client, etcd_prefix + b"q").enqueue(b"job")
    assert got == [b"job"]
    assert rpcs.calls == ["range", "txn", "txn"]  # read, enqueue, claim


async def test_local_waiters_share_one_watch_and_are_served_in_turn(
    client: Client, etcd_prefix: bytes
) -> None:
    q = Queue(client, etcd_prefix + b"q")
    got: list[tuple[int, bytes]] = []

    async def dequeue(n: int) -> None:
        got.append((n, await q.dequeue()))

    async with trio.open_nursery() as nursery:
        for n in range(3):
            nursery.start_soon(dequeue, n)
            await trio.testing.wait_all_tasks_blocked()
        await wait_until(lambda: q.statistics().watches == 1)
        assert client.statistics().watchers == 1
        producer = Queue(client, etcd_prefix + b"q")
        for value in (b"a", b"b", b"c"):
            await producer.enqueue(value)
    assert got == [(0, b"a"), (1, b"b"), (2, b"c")]
    assert q.statistics().claims_lost == 0


async def test_racing_queue_objects_cost_one_failed_claim_each_and_no_reread(
    client: Client, etcd_prefix: bytes
) -> None:
    """The remaining herd: every waiting Queue object claims each new item once; losers only wait again."""
    waiters = [Queue(client, etcd_prefix + b"q") for _ in range(3)]
    got: list[bytes] = []

    async def dequeue(q: Queue) -> None:
        got.append(await q.dequeue())

    async with trio.open_nursery() as nursery:
        for q in waiters:
            nursery.start_soon(dequeue, q)
        await wait_until(lambda: all(q.statistics().watches == 1 for q in waiters))
        await Queue(client, etcd_prefix + b"q").enqueue(b"one")
        await wait_until(lambda: len(got) == 1)
        await trio.testing.wait_all_tasks_blocked(cushion=0.1)  # the losers' claims are answered
        stats = [q.statistics() for q in waiters]
        claims = sum(s.claims for s in stats)
        # Each object claims at most once (one that sees the PUT and the winner's DELETE together, as a
        # watch that is still catching up may, does not claim at all); exactly one claim wins.
        assert 1 <= claims <= 3
        assert sum(s.claims_lost for s in stats) == claims - 1
        assert [s.reads for s in stats] == [1, 1, 1]  # nobody re-read: the losers went back to waiting
        assert [s.watches for s in stats] == [1, 1, 1]
        for value in (b"two", b"three"):
            await Queue(client, etcd_prefix + b"q").enqueue(value)
    assert sorted(got) == [b"one", b"three", b"two"]


async def test_cancelled_dequeue_leaves_the_queue_intact(
    client: Client, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = Queue(client, etcd_prefix + b"q")
    # While waiting for an item.
    with trio.move_on_after(0.2) as scope:
        await q.dequeue()
    assert scope.cancelled_caught
    await q.enqueue(b"a")
    # At the first checkpoint.
    with trio.CancelScope() as scope:
        scope.cancel()
        await q.dequeue()
    assert scope.cancelled_caught
    # While reading the head.
    original = client.range

    async def cancelled_range(*args: object, **kwargs: object) -> object:
        scope.cancel()
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(client, "range", cancelled_range)
        with trio.CancelScope() as scope:
            await q.dequeue()
        assert scope.cancelled_caught
    assert await items(client, q.prefix) == [b"a"]
    assert q.statistics().claims == 0
    # While queued behind another dequeuer of the same object.
    await q.enqueue(b"b")
    assert await q.dequeue() == b"a"
    assert await q.dequeue() == b"b"
    got: list[bytes] = []

    async def first() -> None:
        got.append(await q.dequeue())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await wait_until(lambda: q.statistics().watches == 2)
        with trio.move_on_after(0.1) as scope:
            await q.dequeue()
        assert scope.cancelled_caught
        await q.enqueue(b"c")
    assert got == [b"c"]
    await q.enqueue(b"d")
    assert await q.dequeue() == b"d"


async def test_an_item_put_between_the_read_and_the_watch_is_claimed(
    client: Client, etcd_prefix: bytes
) -> None:
    q = Queue(client, etcd_prefix + b"q")
    got: list[bytes] = []

    async def dequeue() -> None:
        got.append(await q.dequeue())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(dequeue)
        await wait_until(lambda: q.statistics().watches == 1)
        await Queue(client, etcd_prefix + b"q").enqueue(b"x")
    assert got == [b"x"]
    # The watch starts "now", not after the read (which etcd would serve from its 100 ms catch-up
    # loop): a waiter whose read is older than its watch, with an item put in between (even with the
    # history compacted), reads the head again and claims it.
    resp = await client.put(etcd_prefix + b"noise", b"n")
    await q.enqueue(b"y")
    await client.compact(resp.header.revision + 1)
    assert await q._wait_and_claim(resp.header.revision - 5) is None  # the re-read found "y"
    assert await q.dequeue() == b"y"  # claimed from the re-read's candidates
    assert q.statistics().reads == 2  # the one before the first item, and the re-read


@pytest.mark.deadline(20)
async def test_a_reread_whose_items_are_all_taken_by_others_reads_the_head_again(
    client: Client, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read sees only the head of a PriorityQueue (its most urgent priority). If the re-read after a
    # late watch found items and other consumers took them all, waiting on the watch would hang: the
    # less urgent item put before the re-read sends no event. The waiter must read the head again.
    pq = PriorityQueue(client, etcd_prefix + b"pq")
    other = PriorityQueue(client, etcd_prefix + b"pq")
    real_read = pq._read_head
    reads = 0

    async def read_head() -> int:
        nonlocal reads
        reads += 1
        revision = await real_read()
        if reads == 1:  # the queue was empty; two items arrive before the waiter's watch starts
            await other.enqueue(b"urgent", 0)
            await other.enqueue(b"later", 5)
        elif reads == 2:  # the re-read saw priority 0 only; another consumer takes that item
            assert await other.dequeue() == b"urgent"
        return revision

    monkeypatch.setattr(pq, "_read_head", read_head)
    assert await pq.dequeue() == b"later"  # (a hang is caught by the test's deadline)
    assert reads == 3


# ----- the claim is the commit point ----------------------------------------------------------------------


async def test_cancellation_during_the_claim_still_returns_the_item(
    client: Client, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = Queue(client, etcd_prefix + b"q")
    await q.enqueue(b"precious")
    original = client.txn
    scope = trio.CancelScope()

    async def txn(*args: object, **kwargs: object) -> object:
        if is_claim(*args, **kwargs):
            scope.cancel()  # cancellation arrives while the claim is in flight
            await trio.sleep(0.05)
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(client, "txn", txn)
    got = None
    with scope:
        got = await q.dequeue()
    assert got == b"precious"
    assert not scope.cancelled_caught
    assert await items(client, q.prefix) == []


async def test_lost_claim_answer_is_resent_and_claims_once(
    client: Client, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = Queue(client, etcd_prefix + b"q")
    await q.enqueue(b"a")
    await q.enqueue(b"b")
    original = client.txn
    lost = 0

    async def txn(*args: object, **kwargs: object) -> object:
        nonlocal lost
        if is_claim(*args, **kwargs) and not lost:
            lost += 1
            raise OutcomeUnknownError("the connection broke (before the claim reached etcd)")
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(client, "txn", txn)
    assert await q.dequeue() == b"a"
    assert q.statistics().uncertain_claims == 0
    assert await items(client, q.prefix) == [b"b"]


async def test_lost_answer_of_an_applied_claim_returns_the_item_at_least_once(
    client: Client, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    q = Queue(client, etcd_prefix + b"q")
    await q.enqueue(b"a")
    await q.enqueue(b"b")
    original = client.txn
    lost = 0

    async def txn(*args: object, **kwargs: object) -> object:
        nonlocal lost
        result = await original(*args, **kwargs)  # type: ignore[arg-type]
        if is_claim(*args, **kwargs) and not lost:
            lost += 1
            raise OutcomeUnknownError("the connection broke (after the claim was applied)")
        return result

    monkeypatch.setattr(client, "txn", txn)
    assert await q.dequeue() == b"a"
    assert q.statistics().uncertain_claims == 1
    assert "may or may not have been applied" in caplog.text
    assert await q.dequeue() == b"b"


async def test_lost_enqueue_answer_is_resent_without_duplicating(
    client: Client, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = Queue(client, etcd_prefix + b"q")
    original = client.txn
    calls = 0

    async def txn(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        result = await original(*args, **kwargs)  # type: ignore[arg-type]
        if calls == 1:
            raise OutcomeUnknownError("the connection broke (after the enqueue was applied)")
        return result

    monkeypatch.setattr(client, "txn", txn)
    key = await q.enqueue(b"once")
    assert calls == 2
    assert [kv.key for kv in (await client.range(q.prefix, prefix=True)).kvs] == [key]


# ----- PriorityQueue ----------------------------------------------------------------------------------------


async def test_priority_queue_lowest_number_first_then_fifo(client: Client, etcd_prefix: bytes) -> None:
    pq = PriorityQueue(client, etcd_prefix + b"pq")
    for value, priority in [(b"a", 5), (b"b", 1), (b"c", 5), (b"d", 0), (b"e", 1), (b"f", 65535), (b"g", 0)]:
        await pq.enqueue(value, priority)
    assert [await pq.dequeue() for _ in range(7)] == [b"d", b"g", b"b", b"e", b"a", b"c", b"f"]


async def test_priority_queue_serves_a_new_urgent_item_before_a_known_backlog(
    client: Client, etcd_prefix: bytes
) -> None:
    pq = PriorityQueue(client, etcd_prefix + b"pq")
    for i in range(5):
        await pq.enqueue(b"low-%d" % i, 9)
    assert await pq.dequeue() == b"low-0"  # this read a batch of candidates at priority 9
    other = PriorityQueue(client, etcd_prefix + b"pq")
    await other.enqueue(b"urgent", 3)
    assert await pq.dequeue() == b"urgent"  # the claim's fence saw it: no priority inversion
    assert [await pq.dequeue() for _ in range(4)] == [b"low-1", b"low-2", b"low-3", b"low-4"]


async def test_priority_queue_waiter_gets_items_by_priority(client: Client, etcd_prefix: bytes) -> None:
    pq = PriorityQueue(client, etcd_prefix + b"pq")
    got: list[bytes] = []

    async def dequeue() -> None:
        got.append(await pq.dequeue())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(dequeue)
        await wait_until(lambda: pq.statistics().watches == 1)
        # Both arrive in one transaction, so the waiter sees them together and must pick priority 2.
        await client.txn(
            success=[Op.put(pq.prefix + b"00008/x", b"later"), Op.put(pq.prefix + b"00002/y", b"sooner")]
        )
    assert got == [b"sooner"]
    assert await pq.dequeue() == b"later"


async def test_priority_queue_serves_go_style_sequential_keys(client: Client, etcd_prefix: bytes) -> None:
    pq = PriorityQueue(client, etcd_prefix + b"pq")
    # Go's PriorityQueue writes NAME/%05d/%016d (plus a __NAME bookkeeping key outside the prefix).
    await client.put(pq.prefix + b"00001/0000000000000002", b"go-2")
    await client.put(pq.prefix + b"00001/0000000000000001", b"go-1")
    await pq.enqueue(b"ours", 0)
    assert [await pq.dequeue() for _ in range(3)] == [b"ours", b"go-2", b"go-1"]  # FIFO by create revision
