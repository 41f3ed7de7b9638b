"""``client.watch`` against a real etcd: the API, backpressure, cancellation and compaction.

Fault tolerance (reconnects, member failures, connection drops) and the long history check are in
``test_watch_history.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing

import etcdsync
from etcdsync.client import (
    CompactedError,
    Event,
    EventType,
    Watch,
    WatchFilter,
    WatchResponse,
)
from etcdsync.client._convert import _watch as cv_watch
from etcdsync.client._sansio._watch import WatchResponseIn
from etcdsync.client._watch import DEFAULT_MAX_BUFFER, open_watch
from etcdsync.testing import etcd_server, metric

WATCHER_GAUGE = "etcd_debugging_mvcc_watcher_total"


# ---------------------------------------------------------------------------------------------------------
# Helpers


async def next_response(watch: Watch) -> WatchResponse:
    return await watch.__anext__()


async def events_until(watch: Watch, count: int) -> list[Event]:
    """Exactly ``count`` events (more would be a test failure), skipping bookmarks."""
    events: list[Event] = []
    while len(events) < count:
        events.extend((await next_response(watch)).events)
    assert len(events) == count, events
    return events


async def establish(*watches: Watch) -> None:
    """Wait until every watch is established on the server: ask for a bookmark and take it."""
    for watch in watches:
        watch.request_progress()
    for watch in watches:
        response = await next_response(watch)
        assert response.events == (), response


async def gauge(endpoint: str, name: str = WATCHER_GAUGE) -> float:
    return await metric(endpoint, name)


async def server_processed_everything(sentinel: Watch) -> None:
    """Wait until etcd has processed every request sent so far on the shared stream.

    etcd reads a stream's requests in order and answers a progress request only after the ones
    before it; the second round covers cancels that go out only once a ``created`` came back.
    """
    await establish(sentinel)
    await establish(sentinel)


def summary(events: Sequence[Event]) -> list[tuple[int, EventType, bytes, bytes]]:
    return [(e.kv.mod_revision, e.type, e.kv.key, e.kv.value) for e in events]


@pytest.fixture
async def own_server() -> AsyncIterator[str]:
    """A dedicated etcd, for tests that compact or count server-side watchers."""
    async with etcd_server(unsafe_no_fsync=True) as server:
        yield server.endpoint


# ---------------------------------------------------------------------------------------------------------
# The API


async def test_single_key_range_and_prefix(client: etcdsync.Client, etcd_prefix: bytes) -> None:
    p = etcd_prefix
    async with (
        client.watch(p + b"b") as single,
        client.watch(p + b"b", p + b"d") as ranged,
        client.watch(p, prefix=True) as prefixed,
    ):
        await establish(single, ranged, prefixed)
        revs = []
        for key in (b"a", b"b", b"c", b"d", b"bb"):
            revs.append((await client.put(p + key, key)).header.revision)
        assert [e.kv.mod_revision for e in await events_until(prefixed, 5)] == revs
        assert [(e.kv.key, e.kv.mod_revision) for e in await events_until(single, 1)] == [(p + b"b", revs[1])]
        assert [e.kv.key for e in await events_until(ranged, 3)] == [p + b"b", p + b"c", p + b"bb"]
        assert single.statistics().next_revision == revs[1] + 1


async def test_start_revision_replays_history_with_prev_kv(
    client: etcdsync.Client, etcd_prefix: bytes
) -> None:
    key = etcd_prefix + b"k"
    first = await client.put(key, b"1")
    await client.put(key, b"2")
    deleted = await client.delete(key)
    async with client.watch(key, start_revision=first.header.revision, prev_kv=True) as watch:
        events = await events_until(watch, 3)
    assert [(e.type, e.kv.value) for e in events] == [
        (EventType.PUT, b"1"),
        (EventType.PUT, b"2"),
        (EventType.DELETE, b""),
    ]
    assert events[0].prev_kv is None
    assert events[1].prev_kv is not None and events[1].prev_kv.value == b"1"
    assert events[2].prev_kv is not None and events[2].prev_kv.value == b"2"
    assert events[2].kv.mod_revision == deleted.header.revision


async def test_start_revision_zero_means_from_when_established(
    client: etcdsync.Client, etcd_prefix: bytes
) -> None:
    await client.put(etcd_prefix + b"old", b"x")
    async with client.watch(etcd_prefix, prefix=True) as watch:
        await establish(watch)
        new = await client.put(etcd_prefix + b"new", b"y")
        [event] = await events_until(watch, 1)
    assert (event.kv.key, event.kv.mod_revision) == (etcd_prefix + b"new", new.header.revision)


async def test_established_returns_the_revision_the_watch_starts_after(
    client: etcdsync.Client, etcd_prefix: bytes
) -> None:
    before = await client.put(etcd_prefix + b"old", b"x")
    async with client.watch(etcd_prefix, prefix=True) as watch:
        revision = await watch.established()
        # Nothing else writes to this server meanwhile: the watch starts at the revision of its creation.
        assert revision == before.header.revision
        with trio.testing.assert_checkpoints():
            assert await watch.established() == revision  # at once, still a checkpoint
        new = await client.put(etcd_prefix + b"new", b"y")
        [event] = await events_until(watch, 1)
    assert (event.kv.key, event.kv.mod_revision) == (etcd_prefix + b"new", new.header.revision)
    async with client.watch(etcd_prefix, prefix=True, start_revision=before.header.revision) as watch:
        assert await watch.established() == before.header.revision - 1
        replayed = await events_until(watch, 2)
    assert [e.kv.mod_revision for e in replayed] == [before.header.revision, new.header.revision]


async def test_established_waits_for_created_and_raises_if_never_established() -> None:
    async with etcd_server(unsafe_no_fsync=True) as server, etcdsync.open_client(server.endpoint) as client:
        first = await client.put(b"/c/k", b"1")  # connected
        server.pause()  # nothing answers: no `created` either

        async def expect_closed(watch: Watch) -> None:
            with pytest.raises(trio.ClosedResourceError):
                await watch.established()

        # Leaving the block (inside the nursery) fails the waiter.
        async with trio.open_nursery() as nursery, client.watch(b"/c/", prefix=True) as watch:
            nursery.start_soon(expect_closed, watch)
            await trio.testing.wait_all_tasks_blocked()
        async with client.watch(b"/c/", prefix=True) as watch:
            revisions: list[int] = []

            async def wait_established() -> None:
                revisions.append(await watch.established())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_established)
                await trio.testing.wait_all_tasks_blocked()
                assert revisions == []  # etcd answered nothing yet
                server.resume()
            [revision] = revisions
            assert revision >= first.header.revision
            put = await client.put(b"/c/k", b"2")
            [event] = await events_until(watch, 1)
            assert event.kv.mod_revision == put.header.revision
        assert await watch.established() == revision  # established before it was closed
        # etcd confirms a create before it checks the history: a compacted start shows in iteration.
        await client.compact(put.header.revision)
        async with client.watch(b"/c/", prefix=True, start_revision=first.header.revision) as watch:
            assert await watch.established() == first.header.revision - 1
            with pytest.raises(CompactedError):
                await next_response(watch)
            assert await watch.established() == first.header.revision - 1


async def test_filters(client: etcdsync.Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"
    async with (
        client.watch(key, filters=[WatchFilter.NOPUT]) as deletes_only,
        client.watch(key, filters=[WatchFilter.NODELETE]) as puts_only,
    ):
        await establish(deletes_only, puts_only)
        await client.put(key, b"1")
        await client.delete(key)
        await client.put(key, b"2")
        [deleted] = await events_until(deletes_only, 1)
        assert deleted.type is EventType.DELETE
        assert [e.kv.value for e in await events_until(puts_only, 2)] == [b"1", b"2"]


async def test_request_progress_gives_one_bookmark_per_request_round(
    client: etcdsync.Client, etcd_prefix: bytes
) -> None:
    async with client.watch(etcd_prefix, prefix=True) as watch:
        watch.request_progress()
        watch.request_progress()  # coalesced: one bookmark
        bookmark = await next_response(watch)
        assert bookmark.events == ()
        put = await client.put(etcd_prefix + b"k", b"v")
        response = await next_response(watch)  # the event, not a second bookmark
        assert [e.kv.mod_revision for e in response.events] == [put.header.revision]
        assert response.header.revision >= bookmark.header.revision


async def test_progress_notify_bookmarks_advance_without_events() -> None:
    interval = "--experimental-watch-progress-notify-interval=100ms"
    async with (
        etcd_server(unsafe_no_fsync=True, extra_args=[interval]) as server,
        etcdsync.open_client(server.endpoint) as client,
    ):
        put = await client.put(b"/elsewhere", b"x")
        async with client.watch(b"/quiet/", prefix=True, progress_notify=True) as watch:
            bookmark = await next_response(watch)
            assert bookmark.events == ()
            assert bookmark.header.revision >= put.header.revision
            assert watch.statistics().next_revision == bookmark.header.revision + 1


async def test_large_responses_are_reassembled_from_fragments(monkeypatch: pytest.MonkeyPatch) -> None:
    # etcd fragments a watch response over --max-request-bytes + 512 KiB (its gRPC overhead allowance)
    # when asked to (we always ask).
    fragments = 0
    parse = cv_watch.watch_response

    def counting(data: bytes) -> WatchResponseIn:
        nonlocal fragments
        response = parse(data)
        fragments += response.fragment
        return response

    monkeypatch.setattr(cv_watch, "watch_response", counting)
    limit = 64 * 1024
    async with (
        etcd_server(unsafe_no_fsync=True, extra_args=[f"--max-request-bytes={limit}"]) as server,
        etcdsync.open_client(server.endpoint) as client,
    ):
        value = b"x" * (limit // 2)
        revs = [(await client.put(b"/big/%02d" % i, value)).header.revision for i in range(24)]
        async with client.watch(b"/big/", prefix=True, start_revision=revs[0]) as watch:
            response = await next_response(watch)  # one response over the limit: it came in fragments
        assert [e.kv.mod_revision for e in response.events] == revs
        assert all(e.kv.value == value for e in response.events)
        assert fragments >= 1  # parts flagged "more to come"; the last one is not


async def test_all_watchers_share_one_stream(client: etcdsync.Client, etcd_prefix: bytes) -> None:
    async with AsyncExitStack() as stack:
        watches = [await stack.enter_async_context(client.watch(etcd_prefix + b"%d" % i)) for i in range(20)]
        await establish(*watches)
        hub = client._watch_hub
        assert hub is not None
        stats = hub.statistics()
        assert (stats.watchers, stats.active, stats.streams_opened) == (20, 20, 1)
        assert client.statistics().watchers == 20
        assert client.statistics().open_streams == 1


async def test_entering_is_a_checkpoint(client: etcdsync.Client, etcd_prefix: bytes) -> None:
    async with AsyncExitStack() as stack:
        with trio.testing.assert_checkpoints():
            await stack.enter_async_context(client.watch(etcd_prefix, prefix=True))
        await trio.lowlevel.checkpoint()


async def test_bad_arguments(client: etcdsync.Client) -> None:
    with pytest.raises(ValueError, match=r"^start_revision must be >= 0$"):
        async with client.watch(b"k", start_revision=-1):
            pass
    with pytest.raises(TypeError, match=r"^filters must be a sequence of WatchFilter values$"):
        async with client.watch(b"k", filters=[0]):  # type: ignore[list-item]
            pass
    with pytest.raises(ValueError, match=r"^key must not be empty$"):
        async with client.watch(b""):
            pass
    with pytest.raises(ValueError, match=r"^max_buffer must be >= 1$"):
        async with open_watch(client, b"k", max_buffer=0):
            pass
    with pytest.raises(TypeError, match=r"^Watch handles come from"):
        Watch(object(), None, None, 1)  # type: ignore[arg-type]


async def test_watch_after_client_closed_and_watch_ended_by_close(etcd_endpoint: str) -> None:
    async with etcdsync.open_client(etcd_endpoint) as client:
        pass
    with pytest.raises(trio.ClosedResourceError):
        async with client.watch(b"k"):
            pass

    # A consumer outside the client's block is woken up when the client closes.
    ended = trio.Event()

    async def consume(watch: Watch) -> None:
        with pytest.raises(trio.ClosedResourceError, match="client is closed"):
            await next_response(watch)
        ended.set()

    async with trio.open_nursery() as nursery:
        async with etcdsync.open_client(etcd_endpoint) as client:
            opening = client.watch(b"/nothing/", prefix=True)
            watch = await opening.__aenter__()
            await establish(watch)
            nursery.start_soon(consume, watch)
            await trio.testing.wait_all_tasks_blocked()
        await ended.wait()
        await opening.__aexit__(None, None, None)


async def test_a_rejected_token_is_renewed_and_every_watcher_recreated() -> None:
    etcdctl = shutil.which("etcdctl") or "/usr/bin/etcdctl"
    async with etcd_server(unsafe_no_fsync=True) as server:

        async def ctl(*args: str) -> None:
            await trio.run_process([etcdctl, f"--endpoints={server.endpoint}", *args], capture_stdout=True)

        await ctl("user", "add", "root:pw")
        await ctl("user", "grant-role", "root", "root")
        await ctl("auth", "enable")
        async with (
            etcdsync.open_client(server.endpoint, username="root", password="pw") as client,
            client.watch(b"/a") as first,
        ):
            await establish(first)
            # Re-enabling auth invalidates every simple token, ours included.
            await ctl("--user=root:pw", "auth", "disable")
            await ctl("auth", "enable")
            async with client.watch(b"/b") as second:
                # Its create is refused ("invalid auth token"); the hub gets a new token, reconnects
                # and re-creates both watchers.
                await establish(second)
                hub = client._watch_hub
                assert hub is not None and hub.statistics().streams_opened == 2
                assert "invalid auth token" in (hub.statistics().last_failure or "")
                a = await client.put(b"/a", b"1")
                b = await client.put(b"/b", b"2")
                assert [e.kv.mod_revision for e in await events_until(first, 1)] == [a.header.revision]
                assert [e.kv.mod_revision for e in await events_until(second, 1)] == [b.header.revision]


# ---------------------------------------------------------------------------------------------------------
# Backpressure


@pytest.mark.deadline(60)
async def test_slow_consumer_is_bounded_and_never_stalls_its_sibling(
    client: etcdsync.Client, etcd_prefix: bytes
) -> None:
    count = 4 * DEFAULT_MAX_BUFFER + 50
    async with client.watch(etcd_prefix, prefix=True) as slow, client.watch(etcd_prefix, prefix=True) as fast:
        await establish(slow, fast)
        written: list[int] = []

        async def write() -> None:
            for i in range(count):
                written.append(
                    (await client.put(etcd_prefix + b"%03d" % (i % 40), b"%d" % i)).header.revision
                )

        fast_events: list[Event] = []
        most_buffered = 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            # The slow consumer takes nothing until the fast one has seen every event.
            while len(fast_events) < count:
                fast_events.extend((await next_response(fast)).events)
                most_buffered = max(most_buffered, slow.statistics().buffered)
        assert [e.kv.mod_revision for e in fast_events] == written
        stats = slow.statistics()
        assert stats.paused and stats.pauses >= 1
        assert 0 < stats.buffered <= DEFAULT_MAX_BUFFER
        assert most_buffered <= DEFAULT_MAX_BUFFER
        hub = client._watch_hub
        assert hub is not None and hub.statistics().paused == 1

        # Now it catches up: every event exactly once, in order, replayed from etcd's history.
        slow_events = await events_until(slow, count)
        assert summary(slow_events) == summary(fast_events)
        assert not slow.statistics().paused
        assert slow.statistics().next_revision == written[-1] + 1


async def test_small_buffer_pauses_and_resumes_many_times(
    client: etcdsync.Client, etcd_prefix: bytes
) -> None:
    async with open_watch(client, etcd_prefix, prefix=True, max_buffer=2) as watch:
        await establish(watch)
        revs = [(await client.put(etcd_prefix + b"k", b"%d" % i)).header.revision for i in range(30)]
        got: list[int] = []
        while len(got) < len(revs):
            got.extend(e.kv.mod_revision for e in (await next_response(watch)).events)
            assert watch.statistics().buffered <= 2
        assert got == revs
        assert watch.statistics().pauses >= 1


# ---------------------------------------------------------------------------------------------------------
# Cancellation: closing cancels the server-side watcher


async def test_closing_cancels_on_the_server_also_when_the_body_raises_or_is_cancelled(
    own_server: str,
) -> None:
    async with etcdsync.open_client(own_server) as client, client.watch(b"/sentinel") as sentinel:
        await establish(sentinel)
        baseline = await gauge(own_server)
        assert baseline == 1

        # Normal exit.
        async with client.watch(b"/a/", prefix=True) as watch:
            await establish(watch)
            assert await gauge(own_server) == baseline + 1
        await server_processed_everything(sentinel)
        assert await gauge(own_server) == baseline

        # The body raises: the exception comes out unwrapped.
        with pytest.raises(KeyError, match="boom") as info:
            async with client.watch(b"/a/", prefix=True) as watch:
                await establish(watch)
                raise KeyError("boom")
        assert type(info.value) is KeyError
        await server_processed_everything(sentinel)
        assert await gauge(own_server) == baseline

        # The consuming task is cancelled while it waits for an event.
        async with trio.open_nursery() as nursery:
            established = trio.Event()

            async def consume() -> None:
                async with client.watch(b"/a/", prefix=True) as watch:
                    await establish(watch)
                    established.set()
                    async for _ in watch:
                        raise AssertionError("no event expected")

            nursery.start_soon(consume)
            await established.wait()
            assert await gauge(own_server) == baseline + 1
            nursery.cancel_scope.cancel()
        await server_processed_everything(sentinel)
        assert await gauge(own_server) == baseline
        assert client.statistics().watchers == 1


@pytest.mark.deadline(60)
async def test_a_thousand_watchers_opened_and_closed_leave_none_behind(own_server: str) -> None:
    async with etcdsync.open_client(own_server) as client, client.watch(b"/sentinel") as sentinel:
        await establish(sentinel)
        baseline = await gauge(own_server)

        # 500 closed at once, most of them while their create is still in flight.
        async with AsyncExitStack() as stack:
            for i in range(500):
                await stack.enter_async_context(client.watch(b"/w/%d" % i))
        # 500 established, then closed.
        async with AsyncExitStack() as stack:
            watches = [await stack.enter_async_context(client.watch(b"/w/", prefix=True)) for _ in range(500)]
            await establish(*watches)
            assert await gauge(own_server) == baseline + 500
        await server_processed_everything(sentinel)
        assert await gauge(own_server) == baseline
        hub = client._watch_hub
        assert hub is not None
        assert hub.statistics().watchers == 1
        assert hub._mux.statistics().watchers == 1
        assert hub.statistics().streams_opened == 1


async def test_stream_closes_when_the_last_watcher_leaves(own_server: str) -> None:
    async with etcdsync.open_client(own_server) as client:
        async with client.watch(b"/a") as watch:
            await establish(watch)
        hub = client._watch_hub
        assert hub is not None
        while hub.statistics().stream_up:  # the hub's task closes it next; no I/O needed
            await trio.testing.wait_all_tasks_blocked()
        assert client.statistics().open_streams == 0
        # And a new watcher opens a new one.
        async with client.watch(b"/a") as watch:
            await establish(watch)
            assert hub.statistics().streams_opened == 2


# ---------------------------------------------------------------------------------------------------------
# Compaction


async def test_fresh_watcher_below_the_compaction_raises_compacted(own_server: str) -> None:
    async with etcdsync.open_client(own_server) as client:
        first = await client.put(b"/c/k", b"1")
        last = await client.put(b"/c/k", b"2")
        await client.compact(last.header.revision)
        async with client.watch(b"/other") as sibling:
            await establish(sibling)
            async with client.watch(b"/c/", prefix=True, start_revision=first.header.revision) as watch:
                with pytest.raises(CompactedError) as info:
                    await next_response(watch)
                assert info.value.compact_revision == last.header.revision
                with pytest.raises(CompactedError), trio.testing.assert_checkpoints():
                    await next_response(watch)  # it stays failed, and raising is a checkpoint too
            # The sibling is unaffected.
            put = await client.put(b"/other", b"x")
            [event] = await events_until(sibling, 1)
            assert event.kv.mod_revision == put.header.revision
            # At the compaction revision itself there is history.
            async with client.watch(b"/c/", prefix=True, start_revision=last.header.revision) as watch:
                [event] = await events_until(watch, 1)
                assert event.kv.value == b"2"
