"""Watches under faults, checked against an exact oracle of the server's history.

A writer makes thousands of puts and deletes over dozens of keys while several watchers read (a
prefix watch from "now", a prefix watch and a single-key watch from a past revision, and a prefix
watch opened halfway that starts in the past). Every write's revision comes from etcd's own
response, so the writer's log *is* the history of the prefix; a write whose outcome is unknown
(the connection broke after it was sent) is resolved by reading the store back, including the exact
revision of an unknown delete by bisecting over ``get(key, revision=r)``. Each watcher's events
must equal that history restricted to its range and start: no gap, no duplicate, revision order.

The check runs with no fault, on a 3-member cluster while the member serving the watch is killed
and restarted, and across client-side connection drops made by a small TCP proxy on loopback.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import pytest
import trio

import etcdsync
from etcdsync.client import (
    CompactedError,
    Event,
    EventType,
    KeyValue,
    NoEndpointAvailableError,
    OutcomeUnknownError,
    Watch,
)
from etcdsync.client._watch import WatchHub
from etcdsync.testing import etcd_cluster, etcd_server

N_KEYS = 60
N_OPS = 2400
WRITERS = 4
END = b"END"


# ---------------------------------------------------------------------------------------------------------
# A TCP proxy on loopback whose connections the test can drop


@attrs.define(eq=False)
class Proxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``.

    ``drop()`` closes every open connection; ``cut()`` also closes every new one at once until
    ``heal()``. The client sees exactly what a broken network path shows it: EOF on its socket.
    """

    target: str
    endpoint: str = ""
    accepted: int = 0
    _refusing: bool = False
    _connections: set[trio.CancelScope] = attrs.field(factory=set)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.endpoint = f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, downstream: trio.SocketStream) -> None:
        async with downstream:
            with trio.CancelScope() as scope:
                self._connections.add(scope)
                try:
                    if self._refusing:
                        return
                    host, port = self.target.rsplit(":", 1)
                    upstream = await trio.open_tcp_stream(host, int(port))
                    async with upstream, trio.open_nursery() as nursery:
                        self.accepted += 1
                        nursery.start_soon(_pump, downstream, upstream, scope)
                        nursery.start_soon(_pump, upstream, downstream, scope)
                finally:
                    self._connections.discard(scope)

    def drop(self) -> None:
        for scope in list(self._connections):
            scope.cancel()

    def cut(self) -> None:
        self._refusing = True
        self.drop()

    def heal(self) -> None:
        self._refusing = False


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(1 << 16):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()  # one direction ended: end the connection


@pytest.fixture
async def proxy_nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


async def open_proxy(nursery: trio.Nursery, target: str) -> Proxy:
    proxy = Proxy(target)
    await nursery.start(proxy.serve)
    return proxy


# ---------------------------------------------------------------------------------------------------------
# The oracle: a writer that knows the exact history of its prefix


@attrs.frozen
class Change:
    revision: int
    type: EventType
    key: bytes
    value: bytes  # b"" for a delete
    prev_value: bytes | None  # the value before, None if the key did not exist


@attrs.define(eq=False)
class History:
    """Writes ``N_OPS`` puts and deletes over ``N_KEYS`` keys from ``WRITERS`` tasks (each owns its keys)."""

    client: etcdsync.Client
    prefix: bytes
    seed: int
    changes: list[Change] = attrs.field(factory=list)
    done: int = 0
    unknown_outcomes: int = 0
    _milestones: dict[int, trio.Event] = attrs.field(factory=dict)

    @property
    def keys(self) -> list[bytes]:
        return [self.prefix + b"k%02d" % i for i in range(N_KEYS)]

    @property
    def end_key(self) -> bytes:
        return self.keys[7]

    def at(self, ops: int) -> trio.Event:
        """An event set once ``ops`` writes are done."""
        return self._milestones.setdefault(ops, trio.Event())

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for w in range(WRITERS):
                nursery.start_soon(self._writer, w)
        # The last write: every watcher's range contains it, so it tells the readers to stop.
        resp = await self.client.put(self.end_key, END, prev_kv=True)
        prev = resp.prev_kv.value if resp.prev_kv is not None else None
        self.changes.append(Change(resp.header.revision, EventType.PUT, self.end_key, END, prev))
        self.changes.sort(key=lambda c: c.revision)
        revisions = [c.revision for c in self.changes]
        assert len(set(revisions)) == len(revisions), "one write per revision"

    def _tick(self) -> None:
        self.done += 1
        event = self._milestones.get(self.done)
        if event is not None:
            event.set()

    async def _writer(self, w: int) -> None:
        rng = random.Random(self.seed * 100 + w)
        mine = [k for i, k in enumerate(self.keys) if i % WRITERS == w]
        current: dict[bytes, KeyValue] = {}
        for seq in range(N_OPS // WRITERS):
            key = rng.choice(mine)
            before = current.get(key)
            if before is not None and rng.random() < 0.3:
                revision = await self._delete(key, before)
                if revision is not None:
                    del current[key]
                    self.changes.append(Change(revision, EventType.DELETE, key, b"", before.value))
            else:
                value = b"%d:%d" % (w, seq)
                revision = await self._put(key, value)
                if revision is not None:
                    current[key] = KeyValue(key=key, value=value, mod_revision=revision)
                    prev = before.value if before is not None else None
                    self.changes.append(Change(revision, EventType.PUT, key, value, prev))
            self._tick()

    async def _put(self, key: bytes, value: bytes) -> int | None:
        """The put's revision, or None if it was not applied."""
        try:
            return (await self.client.put(key, value)).header.revision
        except NoEndpointAvailableError:
            return None  # provably never applied
        except OutcomeUnknownError:
            self.unknown_outcomes += 1
        # Nobody else writes this key, and every value is unique: read it back.
        kv = await self.client.get(key)
        return kv.mod_revision if kv is not None and kv.value == value else None

    async def _delete(self, key: bytes, before: KeyValue) -> int | None:
        """The delete's revision, or None if it was not applied."""
        try:
            resp = await self.client.delete(key)
        except NoEndpointAvailableError:
            return None
        except OutcomeUnknownError:
            self.unknown_outcomes += 1
        else:
            assert resp.deleted == 1
            return resp.header.revision
        now = await self.client.range(key)
        if now.kvs:
            assert now.kvs[0].mod_revision == before.mod_revision
            return None
        # It went at the one revision r in (before, now] where the key exists at r - 1 and not at r.
        low, high = before.mod_revision, now.header.revision
        while high - low > 1:
            middle = (low + high) // 2
            if await self.client.get(key, revision=middle) is None:
                high = middle
            else:
                low = middle
        return high

    def expected(
        self, *, start: int, key: bytes | None = None, with_prev: bool = False
    ) -> list[tuple[object, ...]]:
        return [
            (c.revision, c.type, c.key, c.value, *((c.prev_value,) if with_prev else ()))
            for c in self.changes
            if c.revision >= start and (key is None or c.key == key)
        ]


def observed(events: list[Event], *, with_prev: bool = False) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for e in events:
        row: tuple[object, ...] = (e.kv.mod_revision, e.type, e.kv.key, e.kv.value)
        if with_prev:
            row += (e.prev_kv.value if e.prev_kv is not None else None,)
        rows.append(row)
    return rows


async def collect(watch: Watch, into: list[Event]) -> None:
    """Read until the END write; check each response on the way."""
    async for response in watch:
        revisions = [e.kv.mod_revision for e in response.events]
        assert revisions == sorted(revisions)
        if revisions:
            assert response.header.revision >= revisions[-1]
        into.extend(response.events)
        if any(e.kv.value == END for e in response.events):
            return


async def establish(watch: Watch) -> None:
    watch.request_progress()
    assert (await watch.__anext__()).events == ()


Faults = Callable[[History, WatchHub], Awaitable[None]]


async def check_history(
    watch_client: etcdsync.Client, write_client: etcdsync.Client, prefix: bytes, faults: Faults | None = None
) -> History:
    """Run the writer against four watchers (and ``faults``); assert every watcher saw the exact history."""
    base = (await write_client.range(prefix, prefix=True, count_only=True)).header.revision
    history = History(write_client, prefix, seed=base)
    seen: dict[str, list[Event]] = {"now": [], "past": [], "key": [], "late": []}
    async with (
        watch_client.watch(prefix, prefix=True) as from_now,
        watch_client.watch(prefix, prefix=True, start_revision=base + 1, prev_kv=True) as from_past,
        watch_client.watch(history.end_key, start_revision=base + 1) as one_key,
    ):
        await establish(from_now)
        hub = watch_client._watch_hub
        assert hub is not None

        async def late() -> None:
            await history.at(N_OPS // 2).wait()
            async with watch_client.watch(prefix, prefix=True, start_revision=base + 1) as watch:
                await collect(watch, seen["late"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect, from_now, seen["now"])
            nursery.start_soon(collect, from_past, seen["past"])
            nursery.start_soon(collect, one_key, seen["key"])
            nursery.start_soon(late)
            if faults is not None:
                nursery.start_soon(faults, history, hub)
            await history.run()

    assert len(history.changes) >= N_OPS * 9 // 10
    assert observed(seen["now"]) == history.expected(start=base + 1)
    assert observed(seen["past"], with_prev=True) == history.expected(start=base + 1, with_prev=True)
    assert observed(seen["key"]) == history.expected(start=base + 1, key=history.end_key)
    assert observed(seen["late"]) == history.expected(start=base + 1)
    return history


# ---------------------------------------------------------------------------------------------------------
# (a) no fault, (b) member killed and restarted, (c) connection drops


@pytest.mark.deadline(60)
async def test_history_without_faults(client: etcdsync.Client, etcd_prefix: bytes) -> None:
    history = await check_history(client, client, etcd_prefix)
    assert history.unknown_outcomes == 0
    hub = client._watch_hub
    assert hub is not None and hub.statistics().streams_opened == 1


@pytest.mark.cluster
@pytest.mark.deadline(90)
async def test_history_while_the_member_serving_the_watch_is_killed_and_restarted() -> None:
    async with etcd_cluster(3, unsafe_no_fsync=True) as cluster:
        leader = await cluster.leader()
        follower = (leader + 1) % 3
        # The watch client knows every member and starts on a follower; the writer uses the leader,
        # which stays up.
        order = [cluster.endpoints[(follower + i) % 3] for i in range(3)]
        async with (
            etcdsync.open_client(order) as watch_client,
            etcdsync.open_client(cluster.endpoints[leader]) as write_client,
        ):
            killed: list[int] = []

            async def kill_and_restart(history: History, hub: WatchHub) -> None:
                await history.at(N_OPS // 4).wait()
                serving = hub.statistics().endpoint
                assert serving is not None
                index = cluster.endpoints.index(serving)
                assert index != leader
                await cluster.kill(index)
                killed.append(index)
                await history.at(N_OPS // 2).wait()
                await cluster.restart(index)

            await check_history(watch_client, write_client, b"/history/", kill_and_restart)
            assert killed == [follower]
            hub = watch_client._watch_hub
            assert hub is not None and hub.statistics().streams_opened >= 2


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll for a condition set by the server's own timing (nothing to wait on); the test deadline bounds it."""
    while not predicate():
        await trio.sleep(0.02)


@pytest.mark.cluster
@pytest.mark.deadline(60)
async def test_member_losing_its_leader_ends_the_stream_and_watchers_move_on() -> None:
    async with etcd_cluster(3, unsafe_no_fsync=True) as cluster:
        serving = await cluster.leader()
        others = [i for i in range(3) if i != serving]
        order = [cluster.endpoints[(serving + i) % 3] for i in range(3)]
        async with (
            etcdsync.open_client(order) as watch_client,
            etcdsync.open_client(cluster.endpoints[serving]) as write_client,
            watch_client.watch(b"/p/", prefix=True) as watch,
        ):
            await establish(watch)
            hub = watch_client._watch_hub
            assert hub is not None and hub.statistics().endpoint == cluster.endpoints[serving]
            before = [(await write_client.put(b"/p/%d" % i, b"a")).header.revision for i in range(20)]
            # Cut the serving member off from every peer: it loses its leader, and because the stream
            # carries `hasleader`, etcd ends it (after a few election timeouts) instead of going quiet.
            for index in others:
                await cluster.kill(index)
            await wait_until(lambda: "no leader" in (hub.statistics().last_failure or ""))
            for index in others:
                await cluster.restart(index)
            await cluster.wait_healthy()
            after = [(await write_client.put(b"/p/%d" % i, b"b")).header.revision for i in range(20)]
            got: list[int] = []
            while len(got) < len(before) + len(after):
                got.extend(e.kv.mod_revision for e in (await watch.__anext__()).events)
            assert got == before + after
            assert hub.statistics().streams_opened >= 2


@pytest.mark.deadline(60)
async def test_history_across_client_side_connection_drops(
    client: etcdsync.Client, etcd_endpoint: str, etcd_prefix: bytes, proxy_nursery: trio.Nursery
) -> None:
    proxy = await open_proxy(proxy_nursery, etcd_endpoint)
    async with etcdsync.open_client(proxy.endpoint) as watch_client:

        async def drop_connections(history: History, hub: WatchHub) -> None:
            for step in range(1, 5):
                await history.at(N_OPS * step // 5).wait()
                proxy.drop()

        await check_history(watch_client, client, etcd_prefix, drop_connections)
        hub = watch_client._watch_hub
        assert hub is not None and hub.statistics().streams_opened >= 2
        assert proxy.accepted >= 2


# ---------------------------------------------------------------------------------------------------------
# Compaction while a watcher is cut off


@pytest.mark.deadline(30)
async def test_watcher_resuming_below_the_compaction_raises_after_its_buffer(
    proxy_nursery: trio.Nursery,
) -> None:
    async with etcd_server(unsafe_no_fsync=True) as server:
        proxy = await open_proxy(proxy_nursery, server.endpoint)
        async with (
            etcdsync.open_client(server.endpoint) as direct,
            etcdsync.open_client(proxy.endpoint) as client,
            client.watch(b"/c/", prefix=True) as watch,
            client.watch(b"/s/", prefix=True) as sibling,
        ):
            await establish(watch)
            await establish(sibling)
            buffered = [(await direct.put(b"/c/%d" % i, b"v")).header.revision for i in range(5)]
            marker = await direct.put(b"/s/x", b"1")
            # etcd sends the responses of one stream's synced watchers in revision order, so once
            # the sibling has its event, the hub has buffered the watch's five.
            [event] = (await sibling.__anext__()).events
            assert event.kv.mod_revision == marker.header.revision
            assert watch.statistics().buffered == 5

            proxy.cut()
            for i in range(5, 10):
                await direct.put(b"/c/%d" % i, b"v")
            # Compact just past the watch's next revision and exactly at the sibling's.
            compact_at = marker.header.revision + 1
            assert watch.statistics().next_revision < compact_at == sibling.statistics().next_revision
            await direct.compact(compact_at)
            proxy.heal()

            for revision in buffered:
                [event] = (await watch.__anext__()).events
                assert event.kv.mod_revision == revision
            with pytest.raises(CompactedError) as info:
                await watch.__anext__()
            assert info.value.compact_revision == compact_at

            # The sibling on the same stream is unaffected.
            after = await direct.put(b"/s/y", b"2")
            [event] = (await sibling.__anext__()).events
            assert (event.kv.key, event.kv.mod_revision) == (b"/s/y", after.header.revision)
