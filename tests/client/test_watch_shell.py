"""The watch shell's per-event path, without a server: the response conversion and a watch's buffer.

Both are shortcuts taken for speed (slot-filled value types; a deque and one waiting task instead of
a trio memory channel), so they are checked here against what they replace, on every edge a real etcd
cannot produce on demand: a burst reaching a consumer that was woken but has not run, two tasks
iterating one watch, a wait cancelled just before a delivery. Everything else about watches is tested
against a real etcd in ``test_watch.py``.
"""

from __future__ import annotations

from typing import cast

import attrs
import pytest
import trio
import trio.testing

from etcdsync.client import EtcdInternalError, Event, EventType, KeyValue, ResponseHeader, WatchResponse
from etcdsync.client._convert import _watch as cv_watch
from etcdsync.client._pb import kv_pb2, rpc_pb2
from etcdsync.client._sansio._watch import WatchMux, WatchResponseIn, WatchSpec
from etcdsync.client._watch import _PRIVATE, Watch, WatchHub

HEADER = rpc_pb2.ResponseHeader(cluster_id=0xC0FFEE0123456789, member_id=7, revision=12, raft_term=3)


def kv_pb(key: bytes, rev: int, value: bytes = b"v") -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(key=key, value=value, create_revision=2, mod_revision=rev, version=4, lease=99)


# ---------------------------------------------------------------------------------------------------------
# Conversion


def test_conversion_equals_the_attrs_constructors() -> None:
    msg = rpc_pb2.WatchResponse(
        header=HEADER,
        watch_id=5,
        fragment=True,
        events=[
            kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv_pb(b"a", 11), prev_kv=kv_pb(b"a", 10, b"old")),
            kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=kv_pb2.KeyValue(key=b"b", mod_revision=12)),
        ],
    )
    header = ResponseHeader(cluster_id=0xC0FFEE0123456789, member_id=7, revision=12, raft_term=3)
    put = Event(
        type=EventType.PUT,
        kv=KeyValue(key=b"a", value=b"v", create_revision=2, mod_revision=11, version=4, lease=99),
        prev_kv=KeyValue(key=b"a", value=b"old", create_revision=2, mod_revision=10, version=4, lease=99),
    )
    delete = Event(type=EventType.DELETE, kv=KeyValue(key=b"b", mod_revision=12))
    converted = cv_watch.watch_response(msg.SerializeToString())
    assert converted == WatchResponseIn(watch_id=5, header=header, events=(put, delete), fragment=True)
    assert converted.events[0].type is EventType.PUT
    assert converted.events[1].type is EventType.DELETE
    # Every field of a slot-filled instance is set, and they behave like the real thing.
    assert attrs.asdict(converted.events[1]) == attrs.asdict(delete)
    assert hash(converted.events[0]) == hash(put)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        converted.events[0].kv.key = b"x"  # type: ignore[misc]

    ended = rpc_pb2.WatchResponse(
        header=HEADER, watch_id=-1, created=True, canceled=True, compact_revision=3, cancel_reason="gone"
    )
    assert cv_watch.watch_response(ended.SerializeToString()) == WatchResponseIn(
        watch_id=-1, header=header, created=True, canceled=True, compact_revision=3, cancel_reason="gone"
    )


def test_conversion_refuses_an_unknown_event_type() -> None:
    msg = rpc_pb2.WatchResponse(header=HEADER, events=[kv_pb2.Event(type=7, kv=kv_pb(b"a", 11))])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="7 is not a valid EventType"):
        cv_watch.watch_response(msg.SerializeToString())


# ---------------------------------------------------------------------------------------------------------
# A watch's buffer, driven by hand (what the hub does on each delivery)


class _Hub:
    """Stands in for the hub: a watch only tells it when it takes a response while paused."""

    def __init__(self) -> None:
        self.consumed = 0

    def _consumed(self, watch: Watch) -> None:
        self.consumed += 1


def make_watch(max_buffer: int = 4) -> Watch:
    watcher, _ = WatchMux().add(WatchSpec(key=b"k"))
    return Watch(_PRIVATE, cast(WatchHub, _Hub()), watcher, max_buffer)


def response(*revs: int) -> WatchResponse:
    events = tuple(Event(type=EventType.PUT, kv=KeyValue(key=b"k", mod_revision=r)) for r in revs)
    return WatchResponse(header=ResponseHeader(revision=max(revs, default=100)), events=events)


def revisions(resp: WatchResponse) -> list[int]:
    return [e.kv.mod_revision for e in resp.events]


async def test_a_burst_to_a_woken_consumer_is_joined() -> None:
    watch = make_watch()
    got: list[WatchResponse] = []

    async def consume(count: int) -> None:
        for _ in range(count):
            got.append(await watch.__anext__())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume, 3)
        await trio.testing.wait_all_tasks_blocked()
        # One hub step: the consumer is woken by the first and has not run for the others.
        assert not watch._deliver(response(5))
        assert not watch._deliver(response(6, 6))
        assert not watch._deliver(response())  # a bookmark: never joined
        assert not watch._deliver(response(7))  # joined to nothing before the bookmark
        assert not watch._deliver(response(8))
        assert watch.statistics().buffered == 3
    assert [revisions(r) for r in got] == [[5, 6, 6], [], [7, 8]]
    assert got[0].header.revision == 6  # the header of the last response joined

    # A consumer that is not waiting gets separate responses, so that backpressure counts them.
    for rev in (9, 10, 11):
        assert not watch._deliver(response(rev))
    assert watch._deliver(response(12))  # full: the hub pauses it now
    with pytest.raises(EtcdInternalError, match="watch buffer overflow"):
        watch._deliver(response(13))
    assert [revisions(await watch.__anext__()) for _ in range(4)] == [[9], [10], [11], [12]]


async def test_joining_stops_at_64_events() -> None:
    watch = make_watch()
    got: list[WatchResponse] = []

    async def consume() -> None:
        got.append(await watch.__anext__())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.testing.wait_all_tasks_blocked()
        watch._deliver(response(*range(1, 61)))
        watch._deliver(response(*range(61, 65)))  # 64: joined
        watch._deliver(response(65))  # 65 would be too many
    assert revisions(got[0]) == list(range(1, 65))
    assert revisions(await watch.__anext__()) == [65]


async def test_every_receive_checkpoints_and_one_task_at_a_time() -> None:
    watch = make_watch()
    watch._deliver(response(5))
    with trio.testing.assert_checkpoints():
        assert revisions(await watch.__anext__()) == [5]

    async def wait() -> None:
        await watch.__anext__()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await watch.__anext__()
        nursery.cancel_scope.cancel()
    # The cancelled wait left no waiter behind: a delivery just buffers, and the next receive gets it.
    assert watch._waiter is None
    watch._deliver(response(6))
    assert revisions(await watch.__anext__()) == [6]


async def test_failure_comes_after_the_buffer_and_wakes_a_waiter() -> None:
    watch = make_watch()
    watch._deliver(response(5))
    watch._fail(RuntimeError("over"))
    watch._deliver(response(6))  # (the hub never delivers after a failure; the buffer would keep it)
    assert revisions(await watch.__anext__()) == [5]
    assert revisions(await watch.__anext__()) == [6]
    for _ in range(2):
        with pytest.raises(RuntimeError, match="over"), trio.testing.assert_checkpoints():
            await watch.__anext__()

    watch = make_watch()

    async def wait() -> None:
        with pytest.raises(RuntimeError, match="woken"):
            await watch.__anext__()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        watch._fail(RuntimeError("woken"))
        watch._fail(RuntimeError("ignored: the first failure stays"))


async def test_a_paused_watch_tells_the_hub_what_it_took() -> None:
    watch = make_watch()
    watch._deliver(response(5))
    watch._paused = True
    await watch.__anext__()
    assert cast(_Hub, watch._hub).consumed == 1
