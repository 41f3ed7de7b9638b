"""Both transports against a real etcd 3.4, through the same Channel protocol.

Every test runs once with the h2 transport and once with the grpcio one: unary calls, every error
path, streams (including the server ending them), cancellation of each kind as seen by the server,
deadlines against a frozen server, big responses, load, a restarted server, keepalive.
Transport-specific cases live in ``test_h2_*.py`` and ``test_grpcio.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import pytest
import trio

from etcdsync.client._pb import rpc_pb2, v3lock_pb2
from etcdsync.client._transport import Channel, ChannelState, ConnectionLost, StatusError, open_h2_channel
from etcdsync.client._transport._grpcio import open_grpcio_channel
from etcdsync.client._transport._h2conn import KeepaliveTimeout
from etcdsync.testing import etcd_server, metric

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
WATCH = "/etcdserverpb.Watch/Watch"
LEASE_GRANT = "/etcdserverpb.Lease/LeaseGrant"
LEASE_REVOKE = "/etcdserverpb.Lease/LeaseRevoke"
LEASE_KEEP_ALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"
LOCK = "/v3lockpb.Lock/Lock"
UNLOCK = "/v3lockpb.Lock/Unlock"
WATCHERS = "etcd_debugging_mvcc_watcher_total"
MiB = 1024 * 1024
HASLEADER = (("hasleader", "true"),)

OpenChannel = Callable[..., AbstractAsyncContextManager[Channel]]
OPENERS: dict[str, OpenChannel] = {"h2": open_h2_channel, "grpcio": open_grpcio_channel}


@pytest.fixture(params=sorted(OPENERS))
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_channel(transport: str) -> OpenChannel:
    """``open_h2_channel`` or ``open_grpcio_channel``."""
    return OPENERS[transport]


# -- helpers (also used by test_h2_etcd.py and test_grpcio.py) ----------------------------------------------


def put(key: bytes, value: bytes, lease: int = 0) -> bytes:
    return rpc_pb2.PutRequest(key=key, value=value, lease=lease).SerializeToString()


def range_(key: bytes, *, prefix: bool = False, revision: int = 0, count_only: bool = False) -> bytes:
    range_end = key[:-1] + bytes([key[-1] + 1]) if prefix else b""
    return rpc_pb2.RangeRequest(
        key=key, range_end=range_end, revision=revision, count_only=count_only
    ).SerializeToString()


def watch_create(key: bytes) -> bytes:
    return rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key)).SerializeToString()


def keepalive(lease: int) -> bytes:
    return rpc_pb2.LeaseKeepAliveRequest(ID=lease).SerializeToString()


async def grant(channel: Channel, ttl: int) -> int:
    request = rpc_pb2.LeaseGrantRequest(TTL=ttl).SerializeToString()
    return int(rpc_pb2.LeaseGrantResponse.FromString(await channel.unary(LEASE_GRANT, request)).ID)


async def wait_until(predicate: Callable[[], Awaitable[bool]]) -> None:
    """Poll a server-side condition (etcd has no way to push it to us)."""
    while not await predicate():
        await trio.sleep(0.01)


async def prefix_count(channel: Channel, key: bytes) -> int:
    data = await channel.unary(RANGE, range_(key, prefix=True, count_only=True))
    return int(rpc_pb2.RangeResponse.FromString(data).count)


async def watchers_are(endpoint: str, expected: float) -> bool:
    return await metric(endpoint, WATCHERS) == expected


# -- unary calls --------------------------------------------------------------------------------------------


async def test_unary_put_and_range(open_channel: OpenChannel, etcd_endpoint: str, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"unary"
    with trio.fail_after(10):
        async with open_channel(etcd_endpoint) as channel:
            put_response = rpc_pb2.PutResponse.FromString(
                await channel.unary(PUT, put(key, b"v1"), metadata=HASLEADER)
            )
            got = rpc_pb2.RangeResponse.FromString(await channel.unary(RANGE, range_(key)))
            assert [(kv.key, kv.value) for kv in got.kvs] == [(key, b"v1")]
            assert got.kvs[0].mod_revision == put_response.header.revision
            stats = channel.statistics()
            assert (stats.state, stats.calls_started, stats.calls_failed, stats.open_streams) == (
                ChannelState.READY,
                2,
                0,
                0,
            )


async def test_error_statuses(open_channel: OpenChannel, etcd_endpoint: str, etcd_prefix: bytes) -> None:
    with trio.fail_after(10):
        async with open_channel(etcd_endpoint) as channel:
            with pytest.raises(StatusError) as info:
                await channel.unary(RANGE, range_(etcd_prefix, revision=10**9))
            assert (info.value.code, info.value.message) == (
                11,
                "etcdserver: mvcc: required revision is a future revision",
            )
            with pytest.raises(StatusError) as info:
                await channel.unary(PUT, put(b"", b"v"))
            assert (info.value.code, info.value.message) == (3, "etcdserver: key is not provided")
            revoke = rpc_pb2.LeaseRevokeRequest(ID=0x7EADBEEF).SerializeToString()
            with pytest.raises(StatusError) as info:
                await channel.unary(LEASE_REVOKE, revoke)
            assert (info.value.code, info.value.message) == (5, "etcdserver: requested lease not found")
            assert await channel.unary(RANGE, range_(etcd_prefix))  # the channel is fine afterwards
            assert channel.statistics().calls_failed == 3


async def test_message_size_limits(
    transport: str, open_channel: OpenChannel, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    with trio.fail_after(10):
        async with open_channel(
            etcd_endpoint, max_send_message_length=1000, max_receive_message_length=2000
        ) as channel:
            with pytest.raises(StatusError) as info:
                await channel.unary(PUT, put(etcd_prefix + b"big", b"x" * 1000))
            assert info.value.code == 8  # RESOURCE_EXHAUSTED, and nothing was sent
            assert info.value.message.startswith("trying to send message larger than max (")
            await channel.unary(PUT, put(etcd_prefix + b"big", b"x" * 900))
            await channel.unary(PUT, put(etcd_prefix + b"big2", b"x" * 900))
            with pytest.raises(StatusError) as info:
                await channel.unary(RANGE, range_(etcd_prefix + b"big", prefix=True))
            assert info.value.code == 8
            assert await prefix_count(channel, etcd_prefix) == 2


async def test_range_response_over_8_mib(
    open_channel: OpenChannel, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    # etcd refuses requests over 1.5 MiB, so write 9 keys of 1 MiB and read them back at once.
    with trio.fail_after(30):
        async with open_channel(etcd_endpoint) as channel:
            for i in range(9):
                await channel.unary(PUT, put(etcd_prefix + b"big/%d" % i, bytes([i]) * MiB))
            data = await channel.unary(RANGE, range_(etcd_prefix + b"big/", prefix=True))
            assert len(data) > 9 * MiB
            response = rpc_pb2.RangeResponse.FromString(data)
            assert [kv.value for kv in response.kvs] == [bytes([i]) * MiB for i in range(9)]


async def test_thousand_concurrent_unary_calls(
    open_channel: OpenChannel, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    with trio.fail_after(30):
        async with open_channel(etcd_endpoint) as channel:
            done = 0

            async def one(i: int) -> None:
                nonlocal done
                key = etcd_prefix + b"load/%d" % (i % 50)
                if i % 2:
                    await channel.unary(PUT, put(key, b"%d" % i), metadata=HASLEADER)
                else:
                    await channel.unary(RANGE, range_(key))
                done += 1

            async with trio.open_nursery() as nursery:
                for i in range(1000):
                    nursery.start_soon(one, i)
            assert done == 1000
            stats = channel.statistics()
            assert (stats.calls_started, stats.calls_failed, stats.open_streams, stats.reconnects) == (
                1000,
                0,
                0,
                0,
            )


# -- streams -----------------------------------------------------------------------------------------------


async def test_watch_create_event_cancel(
    open_channel: OpenChannel, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    key = etcd_prefix + b"watch"
    with trio.fail_after(10):
        async with open_channel(etcd_endpoint) as channel:
            async with channel.stream(WATCH) as stream:
                await stream.send(watch_create(key))
                created = rpc_pb2.WatchResponse.FromString(await stream.receive())
                assert created.created
                await channel.unary(PUT, put(key, b"event"))
                event = rpc_pb2.WatchResponse.FromString(await stream.receive())
                assert [(e.kv.key, e.kv.value) for e in event.events] == [(key, b"event")]
                cancel = rpc_pb2.WatchCancelRequest(watch_id=created.watch_id)
                await stream.send(rpc_pb2.WatchRequest(cancel_request=cancel).SerializeToString())
                cancelled = rpc_pb2.WatchResponse.FromString(await stream.receive())
                assert cancelled.canceled and cancelled.watch_id == created.watch_id
                # etcd 3.4 ignores a half-close on Watch (it waits for the stream's context), so
                # leaving the block resets the stream.
                await stream.close_send()
                with pytest.raises(trio.ClosedResourceError):
                    await stream.send(watch_create(key))
            assert channel.statistics().open_streams == 0


async def test_lease_keepalive_ping_pong_and_server_end(
    open_channel: OpenChannel, etcd_endpoint: str
) -> None:
    with trio.fail_after(10):
        async with open_channel(etcd_endpoint) as channel:
            lease = await grant(channel, 60)
            async with channel.stream(LEASE_KEEP_ALIVE) as stream:
                for _ in range(20):
                    await stream.send(keepalive(lease))
                    response = rpc_pb2.LeaseKeepAliveResponse.FromString(await stream.receive())
                    assert lease == response.ID and response.TTL == 60
                # Requests still in flight when we half-close are all answered before the server
                # ends the stream with status OK, even when we read them late.
                for _ in range(5):
                    await stream.send(keepalive(lease))
                await stream.close_send()
                await trio.sleep(0.2)
                answers = 0
                with pytest.raises(trio.EndOfChannel):
                    while True:
                        await stream.receive()
                        answers += 1
                assert answers == 5
                with pytest.raises(trio.EndOfChannel):
                    await stream.receive()
            async with channel.stream(LEASE_KEEP_ALIVE) as stream:
                await stream.close_send()
                with pytest.raises(trio.EndOfChannel):
                    await stream.receive()
                with pytest.raises(trio.ClosedResourceError):
                    await stream.send(keepalive(lease))
            assert channel.statistics().open_streams == 0
            assert channel.statistics().calls_failed == 0


async def test_cancelled_receive_leaves_the_stream_usable(
    open_channel: OpenChannel, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    key = etcd_prefix + b"later"
    with trio.fail_after(10):
        async with open_channel(etcd_endpoint) as channel, channel.stream(WATCH) as stream:
            await stream.send(watch_create(key))
            assert rpc_pb2.WatchResponse.FromString(await stream.receive()).created
            with trio.move_on_after(0.05) as scope:
                await stream.receive()
            assert scope.cancelled_caught
            await channel.unary(PUT, put(key, b"v"))
            event = rpc_pb2.WatchResponse.FromString(await stream.receive())
            assert [e.kv.value for e in event.events] == [b"v"]


async def test_send_on_a_stream_the_server_ended(open_channel: OpenChannel, etcd_endpoint: str) -> None:
    # An unknown method ends the stream with UNIMPLEMENTED right away; sending afterwards reports it.
    with trio.fail_after(10):
        async with (
            open_channel(etcd_endpoint) as channel,
            channel.stream("/etcdserverpb.Lease/NoSuchMethod") as stream,
        ):
            with pytest.raises(StatusError) as info:
                await stream.receive()
            assert info.value.code == 12
            with pytest.raises(StatusError) as info:
                await stream.send(b"")
            assert info.value.code == 12
            assert channel.statistics().calls_failed == 1  # one call, counted once


# -- cancellation ------------------------------------------------------------------------------------------


async def test_cancelled_unary_call_is_cancelled_on_the_server(
    open_channel: OpenChannel, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    # v3lock's Lock blocks on the server while the lock is held; when the client's cancellation
    # reaches the server-side context, etcd deletes the waiter's key.
    name = etcd_prefix + b"lock"
    with trio.fail_after(20):
        async with open_channel(etcd_endpoint) as channel:
            leases = [await grant(channel, 60), await grant(channel, 60)]
            held = v3lock_pb2.LockResponse.FromString(
                await channel.unary(
                    LOCK, v3lock_pb2.LockRequest(name=name, lease=leases[0]).SerializeToString()
                )
            )

            async def count_is(expected: int) -> bool:
                return await prefix_count(channel, name + b"/") == expected

            async with trio.open_nursery() as nursery:
                waiter_scope = trio.CancelScope()

                async def wait_for_lock() -> None:
                    with waiter_scope:
                        request = v3lock_pb2.LockRequest(name=name, lease=leases[1]).SerializeToString()
                        await channel.unary(LOCK, request)
                    assert waiter_scope.cancelled_caught

                nursery.start_soon(wait_for_lock)
                # The waiter's key exists on the server ...
                await wait_until(lambda: count_is(2))
                waiter_scope.cancel()
            # ... and is gone again once the cancellation reached the server.
            await wait_until(lambda: count_is(1))
            await channel.unary(UNLOCK, v3lock_pb2.UnlockRequest(key=held.key).SerializeToString())
            stats = channel.statistics()
            assert (stats.open_streams, stats.calls_failed) == (0, 0)


async def test_cancelled_watch_receive_frees_the_server_watcher(
    open_channel: OpenChannel, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    with trio.fail_after(20):
        async with open_channel(etcd_endpoint) as channel:
            baseline = await metric(etcd_endpoint, WATCHERS)
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    async with channel.stream(WATCH) as stream:
                        await stream.send(watch_create(etcd_prefix + b"quiet"))
                        assert rpc_pb2.WatchResponse.FromString(await stream.receive()).created
                        await stream.receive()  # blocks: nothing is written to the key

                nursery.start_soon(watch)
                await wait_until(lambda: watchers_are(etcd_endpoint, baseline + 1))
                nursery.cancel_scope.cancel()
            await wait_until(lambda: watchers_are(etcd_endpoint, baseline))
            assert channel.statistics().open_streams == 0


async def test_cancelled_watch_send_frees_the_server_watcher(
    open_channel: OpenChannel, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    progress = rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()).SerializeToString()
    with trio.fail_after(20):
        async with open_channel(etcd_endpoint) as channel:
            baseline = await metric(etcd_endpoint, WATCHERS)
            sent = 0
            async with trio.open_nursery() as nursery:

                async def watch_and_send() -> None:
                    nonlocal sent
                    async with channel.stream(WATCH) as stream:
                        await stream.send(watch_create(etcd_prefix + b"quiet"))
                        assert rpc_pb2.WatchResponse.FromString(await stream.receive()).created
                        while True:  # never receives: the task is cancelled while sending
                            await stream.send(progress)
                            sent += 1

                nursery.start_soon(watch_and_send)
                await wait_until(lambda: watchers_are(etcd_endpoint, baseline + 1))
                while sent < 100:
                    await trio.sleep(0.001)
                nursery.cancel_scope.cancel()
            await wait_until(lambda: watchers_are(etcd_endpoint, baseline))
            assert channel.statistics().open_streams == 0
            assert await channel.unary(RANGE, range_(etcd_prefix))


# -- deadlines, frozen and restarted servers ----------------------------------------------------------------


async def test_call_to_a_stopped_server_returns_within_its_cancel_scope(
    transport: str, open_channel: OpenChannel
) -> None:
    delays: list[float] = []
    with trio.fail_after(30):
        async with (
            etcd_server(unsafe_no_fsync=True) as server,
            open_channel(server.endpoint) as connected,
            open_channel(server.endpoint) as fresh,
        ):
            await connected.unary(RANGE, range_(b"k"))
            server.pause()
            try:
                for channel in (connected, fresh):  # an open connection, and one still to connect
                    with trio.move_on_after(0.3) as scope:
                        await channel.unary(PUT, put(b"k", b"v"))
                    assert scope.cancelled_caught
                    delays.append(trio.current_time() - scope.deadline)
                    with pytest.raises(trio.TooSlowError), trio.fail_after(0.3):
                        await channel.unary(RANGE, range_(b"k"))
                    # A stream receive and a stream entry, cancelled from outside.
                    async with trio.open_nursery() as nursery:
                        cancelled_at = trio.current_time() + 0.2

                        async def watch(channel: Channel = channel) -> None:
                            async with channel.stream(WATCH) as stream:
                                await stream.send(watch_create(b"k"))
                                await stream.receive()

                        nursery.start_soon(watch)
                        await trio.sleep_until(cancelled_at)
                        nursery.cancel_scope.cancel()
                    delays.append(trio.current_time() - cancelled_at)
            finally:
                server.resume()
            # Both recover once the server runs again.
            for channel in (connected, fresh):
                await channel.unary(RANGE, range_(b"k"))
                assert channel.statistics().open_streams == 0
    print(
        f"{transport}: cancelled calls to a frozen server returned after",
        [f"{d * 1e3:.2f} ms" for d in delays],
    )
    assert all(delay < 0.25 for delay in delays)  # generous: "at once", not waiting for the server


async def test_frozen_server_is_detected_by_keepalive(transport: str, open_channel: OpenChannel) -> None:
    with trio.fail_after(30):
        async with (
            etcd_server(unsafe_no_fsync=True) as server,
            open_channel(server.endpoint, keepalive_interval=0.5, keepalive_timeout=0.5) as channel,
        ):
            async with channel.stream(WATCH) as stream:
                await stream.send(watch_create(b"frozen"))
                assert rpc_pb2.WatchResponse.FromString(await stream.receive()).created
                server.pause()
                try:
                    with pytest.raises(ConnectionLost) as info:
                        await stream.receive()
                finally:
                    server.resume()
            assert info.value.request_sent is True
            if transport == "h2":
                assert isinstance(info.value.__cause__, KeepaliveTimeout)
            # The same channel reconnects for the next call.
            await channel.unary(RANGE, range_(b"k"))
            assert channel.statistics().reconnects == 1


async def test_server_restart_mid_stream_then_reconnect(open_channel: OpenChannel) -> None:
    with trio.fail_after(30):
        async with etcd_server(unsafe_no_fsync=True) as server, open_channel(server.endpoint) as channel:
            async with channel.stream(WATCH) as stream:
                await stream.send(watch_create(b"restart"))
                assert rpc_pb2.WatchResponse.FromString(await stream.receive()).created
                await server.kill()
                with pytest.raises(ConnectionLost) as info:
                    await stream.receive()
                assert info.value.request_sent is True
            # Calls while the server is down fail without having been sent.
            with pytest.raises(ConnectionLost) as refused:
                await channel.unary(PUT, put(b"k", b"v"))
            assert refused.value.request_sent is False
            assert channel.statistics().last_error is not None
            await server.restart()
            # The same channel connects again (after its backoff delay, if an attempt fails meanwhile).
            failures: list[ConnectionLost] = []
            for _ in range(100):
                try:
                    await channel.unary(PUT, put(b"k", b"v"))
                    break
                except ConnectionLost as exc:
                    failures.append(exc)
                    await trio.sleep(0.05)
            else:
                pytest.fail("no reconnect")  # pragma: no cover
            assert not any(exc.request_sent for exc in failures)
            async with channel.stream(WATCH) as stream:  # and streams work again
                await stream.send(watch_create(b"restart"))
                assert rpc_pb2.WatchResponse.FromString(await stream.receive()).created
            assert channel.statistics().state is ChannelState.READY
            assert channel.statistics().reconnects == 1


async def test_calls_on_a_closed_channel(open_channel: OpenChannel, etcd_endpoint: str) -> None:
    with trio.fail_after(10):
        async with open_channel(etcd_endpoint) as channel, trio.open_nursery() as nursery:
            watching = trio.Event()

            async def watch() -> None:
                async with channel.stream(WATCH) as stream:
                    await stream.send(watch_create(b"closing"))
                    await stream.receive()
                    watching.set()
                    with pytest.raises(ConnectionLost) as info:
                        await stream.receive()
                    assert info.value.request_sent is True

            nursery.start_soon(watch)
            await watching.wait()
            await channel.aclose()  # both transports have it; the protocol does not
        with pytest.raises(trio.ClosedResourceError):
            await channel.unary(RANGE, range_(b"k"))
        with pytest.raises(trio.ClosedResourceError):
            async with channel.stream(WATCH):
                pass  # pragma: no cover
        assert channel.statistics().state is ChannelState.CLOSED
