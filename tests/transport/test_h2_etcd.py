"""The h2 channel against a real etcd 3.4: unary calls, error statuses, streams, big responses,
load, cancellation seen from the server, a frozen server, a restarted server, TLS."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from etcdsync.client._pb import rpc_pb2, v3lock_pb2
from etcdsync.client._transport import ChannelState, ConnectionLost, H2Channel, StatusError, open_h2_channel
from etcdsync.client._transport._h2conn import KeepaliveTimeout
from etcdsync.client._transport._h2proto import GoAwayReceived

from .certs import make_pki
from .etcd_process import EtcdProcess, etcd_process, metric

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
WATCH = "/etcdserverpb.Watch/Watch"
LEASE_GRANT = "/etcdserverpb.Lease/LeaseGrant"
LEASE_KEEP_ALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"
LOCK = "/v3lockpb.Lock/Lock"
UNLOCK = "/v3lockpb.Lock/Unlock"
MiB = 1024 * 1024
HASLEADER = (("hasleader", "true"),)


@pytest.fixture(scope="session")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    with etcd_process(tmp_path_factory.mktemp("etcd")) as etcd:
        yield etcd


@pytest.fixture
def private_etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    """A member of the test's own, for SIGSTOP and restarts."""
    with etcd_process(tmp_path) as etcd:
        yield etcd


def put(key: bytes, value: bytes, lease: int = 0) -> bytes:
    return rpc_pb2.PutRequest(key=key, value=value, lease=lease).SerializeToString()


def range_(key: bytes, *, prefix: bool = False, revision: int = 0, count_only: bool = False) -> bytes:
    range_end = key[:-1] + bytes([key[-1] + 1]) if prefix else b""
    return rpc_pb2.RangeRequest(
        key=key, range_end=range_end, revision=revision, count_only=count_only
    ).SerializeToString()


async def test_unary_put_and_range(shared_etcd: EtcdProcess) -> None:
    with trio.fail_after(10):
        async with open_h2_channel(shared_etcd.endpoint) as channel:
            put_response = rpc_pb2.PutResponse.FromString(
                await channel.unary(PUT, put(b"/t/unary", b"v1"), metadata=HASLEADER)
            )
            got = rpc_pb2.RangeResponse.FromString(await channel.unary(RANGE, range_(b"/t/unary")))
            assert [(kv.key, kv.value) for kv in got.kvs] == [(b"/t/unary", b"v1")]
            assert got.kvs[0].mod_revision == put_response.header.revision


async def test_error_statuses(shared_etcd: EtcdProcess) -> None:
    with trio.fail_after(10):
        async with open_h2_channel(shared_etcd.endpoint) as channel:
            with pytest.raises(StatusError) as info:
                await channel.unary(RANGE, range_(b"/t/x", revision=10**9))
            assert (info.value.code, info.value.message) == (
                11,
                "etcdserver: mvcc: required revision is a future revision",
            )
            with pytest.raises(StatusError) as info:
                await channel.unary(PUT, put(b"", b"v"))
            assert (info.value.code, info.value.message) == (3, "etcdserver: key is not provided")
            assert await channel.unary(RANGE, range_(b"/t/x"))  # the channel is fine afterwards
            assert channel.statistics().calls_failed == 2


async def test_watch_create_event_cancel_and_end(shared_etcd: EtcdProcess) -> None:
    key = b"/t/watch"
    with trio.fail_after(10):
        async with open_h2_channel(shared_etcd.endpoint) as channel:
            async with channel.stream(WATCH) as stream:
                create = rpc_pb2.WatchCreateRequest(key=key)
                await stream.send(rpc_pb2.WatchRequest(create_request=create).SerializeToString())
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
            assert channel.statistics().open_streams == 0


async def test_lease_keepalive_ping_pong(shared_etcd: EtcdProcess) -> None:
    with trio.fail_after(10):
        async with open_h2_channel(shared_etcd.endpoint) as channel:
            grant = rpc_pb2.LeaseGrantResponse.FromString(
                await channel.unary(LEASE_GRANT, rpc_pb2.LeaseGrantRequest(TTL=60).SerializeToString())
            )
            async with channel.stream(LEASE_KEEP_ALIVE) as stream:
                for _ in range(20):
                    await stream.send(rpc_pb2.LeaseKeepAliveRequest(ID=grant.ID).SerializeToString())
                    response = rpc_pb2.LeaseKeepAliveResponse.FromString(await stream.receive())
                    assert response.ID == grant.ID and response.TTL == 60
                # etcd ends LeaseKeepAlive with status OK when we half-close.
                await stream.close_send()
                with pytest.raises(trio.EndOfChannel):
                    await stream.receive()
            assert channel.statistics().open_streams == 0


async def test_range_response_over_8_mib(shared_etcd: EtcdProcess) -> None:
    # etcd refuses requests over 1.5 MiB, so write 9 keys of 1 MiB and read them back at once.
    with trio.fail_after(30):
        async with open_h2_channel(shared_etcd.endpoint) as channel:
            for i in range(9):
                await channel.unary(PUT, put(b"/t/big/%d" % i, bytes([i]) * MiB))
            data = await channel.unary(RANGE, range_(b"/t/big/", prefix=True))
            assert len(data) > 9 * MiB
            response = rpc_pb2.RangeResponse.FromString(data)
            assert [kv.value for kv in response.kvs] == [bytes([i]) * MiB for i in range(9)]


async def test_thousand_concurrent_unary_calls(shared_etcd: EtcdProcess) -> None:
    with trio.fail_after(30):
        async with open_h2_channel(shared_etcd.endpoint) as channel:
            done = 0

            async def one(i: int) -> None:
                nonlocal done
                if i % 2:
                    await channel.unary(PUT, put(b"/t/load/%d" % (i % 50), b"%d" % i), metadata=HASLEADER)
                else:
                    await channel.unary(RANGE, range_(b"/t/load/%d" % (i % 50)))
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


async def wait_until(predicate: Callable[[], Awaitable[bool]]) -> None:
    """Poll a server-side condition (etcd has no way to push it to us)."""
    while not await predicate():
        await trio.sleep(0.01)


async def _prefix_count(channel: H2Channel, key: bytes) -> int:
    data = await channel.unary(RANGE, range_(key, prefix=True, count_only=True))
    return int(rpc_pb2.RangeResponse.FromString(data).count)


async def _count_is(channel: H2Channel, key: bytes, expected: int) -> bool:
    return await _prefix_count(channel, key) == expected


async def _metric_is(endpoint: str, name: str, expected: float) -> bool:
    return await metric(endpoint, name) == expected


async def test_cancelled_unary_call_is_cancelled_on_the_server(shared_etcd: EtcdProcess) -> None:
    # v3lock's Lock blocks on the server while the lock is held; when the client's RST_STREAM
    # cancels the server-side context, etcd deletes the waiter's key.
    name = b"/t/lock"
    with trio.fail_after(20):
        async with open_h2_channel(shared_etcd.endpoint) as channel:
            leases = [
                rpc_pb2.LeaseGrantResponse.FromString(
                    await channel.unary(LEASE_GRANT, rpc_pb2.LeaseGrantRequest(TTL=60).SerializeToString())
                ).ID
                for _ in range(2)
            ]
            held = v3lock_pb2.LockResponse.FromString(
                await channel.unary(
                    LOCK, v3lock_pb2.LockRequest(name=name, lease=leases[0]).SerializeToString()
                )
            )
            async with trio.open_nursery() as nursery:
                waiter_scope = trio.CancelScope()

                async def wait_for_lock() -> None:
                    with waiter_scope:
                        request = v3lock_pb2.LockRequest(name=name, lease=leases[1]).SerializeToString()
                        await channel.unary(LOCK, request)
                    assert waiter_scope.cancelled_caught

                nursery.start_soon(wait_for_lock)
                # The waiter's key exists on the server ...
                await wait_until(lambda: _count_is(channel, name + b"/", 2))
                waiter_scope.cancel()
            # ... and is gone again once the cancellation reached the server.
            await wait_until(lambda: _count_is(channel, name + b"/", 1))
            await channel.unary(UNLOCK, v3lock_pb2.UnlockRequest(key=held.key).SerializeToString())
            assert channel.statistics().open_streams == 0


async def test_cancelled_watch_stream_frees_the_server_watcher(shared_etcd: EtcdProcess) -> None:
    watchers = "etcd_debugging_mvcc_watcher_total"
    with trio.fail_after(20):
        async with open_h2_channel(shared_etcd.endpoint) as channel:
            baseline = await metric(shared_etcd.endpoint, watchers)
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    async with channel.stream(WATCH) as stream:
                        create = rpc_pb2.WatchCreateRequest(key=b"/t/cancelled-watch")
                        await stream.send(rpc_pb2.WatchRequest(create_request=create).SerializeToString())
                        assert rpc_pb2.WatchResponse.FromString(await stream.receive()).created
                        await stream.receive()  # blocks: nothing is written to the key

                nursery.start_soon(watch)
                await wait_until(lambda: _metric_is(shared_etcd.endpoint, watchers, baseline + 1))
                nursery.cancel_scope.cancel()
            await wait_until(lambda: _metric_is(shared_etcd.endpoint, watchers, baseline))
            assert channel.statistics().open_streams == 0


async def test_call_to_a_stopped_server_returns_within_its_cancel_scope(private_etcd: EtcdProcess) -> None:
    with trio.fail_after(20):
        async with (
            open_h2_channel(private_etcd.endpoint) as connected,
            open_h2_channel(private_etcd.endpoint) as fresh,
        ):
            await connected.unary(RANGE, range_(b"/t/x"))
            private_etcd.pause()
            try:
                for channel in (connected, fresh):  # an open connection, and one still to connect
                    with trio.move_on_after(0.3) as scope:
                        await channel.unary(PUT, put(b"/t/stopped", b"v"))
                    assert scope.cancelled_caught
                    with pytest.raises(trio.TooSlowError):
                        with trio.fail_after(0.3):
                            await channel.unary(RANGE, range_(b"/t/x"))
            finally:
                private_etcd.resume()
            # Both recover once the server runs again.
            for channel in (connected, fresh):
                await channel.unary(RANGE, range_(b"/t/x"))


async def test_frozen_server_is_detected_by_keepalive(private_etcd: EtcdProcess) -> None:
    with trio.fail_after(20):
        async with open_h2_channel(
            private_etcd.endpoint, keepalive_interval=0.5, keepalive_timeout=0.5
        ) as channel:
            async with channel.stream(WATCH) as stream:
                create = rpc_pb2.WatchCreateRequest(key=b"/t/frozen")
                await stream.send(rpc_pb2.WatchRequest(create_request=create).SerializeToString())
                assert rpc_pb2.WatchResponse.FromString(await stream.receive()).created
                private_etcd.pause()
                try:
                    with pytest.raises(ConnectionLost) as info:
                        await stream.receive()
                finally:
                    private_etcd.resume()
            assert info.value.request_sent is True
            assert isinstance(info.value.__cause__, KeepaliveTimeout)
            # The same channel reconnects for the next call.
            await channel.unary(RANGE, range_(b"/t/x"))
            assert channel.statistics().reconnects == 1


async def test_server_restart_mid_stream_then_reconnect(private_etcd: EtcdProcess) -> None:
    with trio.fail_after(30):
        async with open_h2_channel(private_etcd.endpoint) as channel:
            async with channel.stream(WATCH) as stream:
                create = rpc_pb2.WatchCreateRequest(key=b"/t/restart")
                await stream.send(rpc_pb2.WatchRequest(create_request=create).SerializeToString())
                assert rpc_pb2.WatchResponse.FromString(await stream.receive()).created
                await trio.to_thread.run_sync(private_etcd.stop)
                with pytest.raises(ConnectionLost) as info:
                    await stream.receive()
                assert info.value.request_sent is True
            await trio.to_thread.run_sync(private_etcd.start)
            # The same channel connects again (after its backoff if an attempt fails meanwhile).
            refused: list[ConnectionLost] = []
            for _ in range(100):
                try:
                    await channel.unary(PUT, put(b"/t/after-restart", b"v"))
                    break
                except ConnectionLost as exc:
                    refused.append(exc)
                    await trio.sleep(0.05)
            else:
                pytest.fail("no reconnect")  # pragma: no cover
            assert not any(exc.request_sent for exc in refused)
            assert channel.statistics().state is ChannelState.READY
            assert channel.statistics().reconnects >= 1


async def test_too_frequent_pings_are_punished_and_backed_off(private_etcd: EtcdProcess) -> None:
    # etcd's grpc-go server allows one ping per 5 s (--grpc-keepalive-min-time) while streams are
    # open; the third violation closes the connection with GOAWAY "too_many_pings". This is why the
    # default interval is 10 s. The channel doubles its interval in response.
    with trio.fail_after(20):
        async with open_h2_channel(
            private_etcd.endpoint, keepalive_interval=0.1, keepalive_timeout=2
        ) as channel:
            async with channel.stream(WATCH) as stream:
                create = rpc_pb2.WatchCreateRequest(key=b"/t/pings")
                await stream.send(rpc_pb2.WatchRequest(create_request=create).SerializeToString())
                assert rpc_pb2.WatchResponse.FromString(await stream.receive()).created
                with pytest.raises(ConnectionLost, match="ENHANCE_YOUR_CALM.*too_many_pings") as info:
                    await stream.receive()
                assert isinstance(info.value.__cause__, GoAwayReceived)
            assert channel._params.keepalive_interval == 0.2


async def test_mutual_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = [
        f"--cert-file={pki.server_cert}",
        f"--key-file={pki.server_key}",
        "--client-cert-auth",
        f"--trusted-ca-file={pki.ca}",
    ]
    with etcd_process(tmp_path, tls=tls) as etcd:
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.load_cert_chain(pki.client_cert, pki.client_key)
        with trio.fail_after(20):
            async with open_h2_channel(etcd.endpoint, ssl_context=context) as channel:
                unavailable: list[int] = []
                for _ in range(100):  # the member may still be electing itself
                    try:
                        await channel.unary(PUT, put(b"/t/tls", b"secret"), metadata=HASLEADER)
                        break
                    except StatusError as exc:
                        unavailable.append(exc.code)
                        await trio.sleep(0.05)
                assert set(unavailable) <= {14}  # UNAVAILABLE: no leader yet
                got = rpc_pb2.RangeResponse.FromString(await channel.unary(RANGE, range_(b"/t/tls")))
                assert got.kvs[0].value == b"secret"
                async with channel.stream(LEASE_KEEP_ALIVE) as stream:
                    await stream.close_send()
                    with pytest.raises(trio.EndOfChannel):
                        await stream.receive()
            # Without a client certificate the handshake fails: nothing was sent.
            anonymous = ssl.create_default_context(cafile=str(pki.ca))
            async with open_h2_channel(etcd.endpoint, ssl_context=anonymous) as channel:
                with pytest.raises(ConnectionLost) as info:
                    await channel.unary(RANGE, range_(b"/t/tls"))
                assert info.value.request_sent is False
