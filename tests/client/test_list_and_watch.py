"""``list_and_watch`` against a real etcd: the listing, the live events, and the resync after compaction."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

import etcdsync
from etcdsync.client import (
    Event,
    EventType,
    KeyValue,
    ListAndWatch,
    ListDone,
    Op,
    Resynced,
    list_and_watch,
)
from etcdsync.testing import etcd_server

Item = Event | ListDone | Resynced


async def take(items: ListAndWatch, count: int) -> list[Item]:
    return [await items.__anext__() for _ in range(count)]


def apply(state: dict[bytes, bytes], items: list[Item]) -> None:
    for item in items:
        if isinstance(item, Event):
            if item.type is EventType.PUT:
                state[item.kv.key] = item.kv.value
            else:
                del state[item.kv.key]


async def store(client: etcdsync.Client, prefix: bytes) -> dict[bytes, bytes]:
    return {kv.key: kv.value async for kv in client.iter_range(prefix)}


@pytest.fixture
async def own_client() -> AsyncIterator[etcdsync.Client]:
    """A client of a dedicated etcd: these tests compact its history."""
    async with etcd_server(unsafe_no_fsync=True) as server, etcdsync.open_client(server.endpoint) as client:
        yield client


async def test_lists_then_marks_then_watches(client: etcdsync.Client, etcd_prefix: bytes) -> None:
    p = etcd_prefix
    for key in (b"b", b"c", b"a"):
        await client.put(p + key, key * 2)
    await client.put(p[:-1], b"outside the prefix")
    async with list_and_watch(client, p) as items:
        with trio.testing.assert_checkpoints():  # also when the item is at hand
            first = await items.__anext__()
        listed = [first, *await take(items, 3)]
        assert [(i.kv.key, i.kv.value) for i in listed[:3] if isinstance(i, Event)] == [
            (p + b"a", b"aa"),
            (p + b"b", b"bb"),
            (p + b"c", b"cc"),
        ]
        assert all(isinstance(i, Event) and i.type is EventType.PUT for i in listed[:3])
        done = listed[3]
        assert isinstance(done, ListDone)
        assert items.revision == done.revision

        put = await client.put(p + b"d", b"dd")
        deleted = await client.delete(p + b"a")
        live = await take(items, 2)
        assert [(i.type, i.kv.key, i.kv.mod_revision) for i in live if isinstance(i, Event)] == [
            (EventType.PUT, p + b"d", put.header.revision),
            (EventType.DELETE, p + b"a", deleted.header.revision),
        ]
        assert done.revision < put.header.revision
        assert items.revision == deleted.header.revision
        assert items.resyncs == 0
        hub = client._watch_hub
        assert hub is not None and hub.statistics().watchers == 1
    assert hub.statistics().watchers == 0
    with pytest.raises(trio.ClosedResourceError):
        await items.__anext__()


async def test_listing_pages_at_one_revision(client: etcdsync.Client, etcd_prefix: bytes) -> None:
    count = 1500  # more than one page of iter_range
    for start in range(0, count, 125):
        await client.txn(success=[Op.put(etcd_prefix + b"%05d" % i, b"v") for i in range(start, start + 125)])
    async with list_and_watch(client, etcd_prefix.decode()) as items:
        listed = await take(items, count + 1)
    keys = [i.kv.key for i in listed[:count] if isinstance(i, Event)]
    assert keys == [etcd_prefix + b"%05d" % i for i in range(count)]
    assert isinstance(listed[count], ListDone)


@pytest.mark.deadline(30)
async def test_compaction_mid_stream_resyncs_with_the_exact_difference(own_client: etcdsync.Client) -> None:
    client, p = own_client, b"/inf/"
    for i in range(6):
        await client.put(p + b"k%d" % i, b"v0")
    await client.put(b"/other", b"x")
    local: dict[bytes, bytes] = {}
    # A one-response buffer: the first live response fills it and pauses the watch, so everything
    # after it must come from history, which the compaction below removes.
    async with list_and_watch(client, p, max_buffer=1) as items:
        initial = await take(items, 7)
        apply(local, initial)
        assert isinstance(initial[-1], ListDone)

        first = await client.put(p + b"k0", b"first")  # delivered before the pause
        await client.put(p + b"k1", b"changed")
        await client.delete(p + b"k2")
        await client.delete(p + b"k3")
        await client.put(p + b"k3", b"recreated")
        await client.put(p + b"k4", b"twice")
        await client.put(p + b"k4", b"twice")  # same value, new mod revision: still a change
        await client.put(p + b"new", b"n")
        await client.put(p + b"gone", b"g")
        await client.delete(p + b"gone")  # created and deleted inside the gap: not in the diff
        await client.put(b"/other", b"y")  # outside the prefix
        last = await client.put(p + b"k5", b"", ignore_value=True)  # k5 rewritten, same value
        compacted = await client.compact(last.header.revision)
        assert compacted.revision >= last.header.revision

        [delivered] = await take(items, 1)
        assert isinstance(delivered, Event)
        assert (delivered.kv.key, delivered.kv.mod_revision) == (p + b"k0", first.header.revision)
        apply(local, [delivered])

        diff = await take(items, 6)
        resynced = await items.__anext__()
        assert isinstance(resynced, Resynced)
        assert resynced.compact_revision == last.header.revision
        assert resynced.revision >= last.header.revision
        listing = {kv.key: kv for kv in (await client.range(p, prefix=True, revision=resynced.revision)).kvs}
        assert [(i.type, i.kv.key) for i in diff if isinstance(i, Event)] == [
            (EventType.PUT, p + b"k1"),
            (EventType.DELETE, p + b"k2"),
            (EventType.PUT, p + b"k3"),
            (EventType.PUT, p + b"k4"),
            (EventType.PUT, p + b"k5"),
            (EventType.PUT, p + b"new"),
        ]
        for item in diff:
            assert isinstance(item, Event)
            if item.type is EventType.PUT:
                assert item.kv == listing[item.kv.key]
            else:
                assert item.kv == KeyValue(key=item.kv.key, mod_revision=resynced.revision)
        apply(local, diff)
        assert local == await store(client, p)
        assert items.resyncs == 1
        assert items.revision == resynced.revision

        # And it goes on watching from the new listing.
        live = await client.put(p + b"k0", b"live")
        [event] = await take(items, 1)
        assert isinstance(event, Event)
        assert (event.kv.key, event.kv.value, event.kv.mod_revision) == (
            p + b"k0",
            b"live",
            live.header.revision,
        )


async def test_bad_arguments(client: etcdsync.Client) -> None:
    with pytest.raises(TypeError, match=r"^prefix must be bytes or str, not int$"):
        async with list_and_watch(client, 5):  # type: ignore[arg-type]
            pass
    with pytest.raises(ValueError, match=r"^max_buffer must be >= 1$"):
        async with list_and_watch(client, b"/x/", max_buffer=0):
            pass
    with pytest.raises(TypeError, match=r"^ListAndWatch iterators come from"):
        ListAndWatch(object(), client, b"k", b"l", 1)
