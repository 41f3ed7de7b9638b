"""The h2 channel against a real etcd 3.4: unary calls, error statuses, streams, big responses,
load, cancellation seen from the server, a frozen server, a restarted server, TLS."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from etcdsync.client._pb import rpc_pb2, v3lock_pb2
from etcdsync.client._transport import ChannelState, ConnectionLost, H2Channel, StatusError, open_h2_channel
from etcdsync.client._transport._h2conn import KeepaliveTimeout
from etcdsync.client._transport._h2proto import GoAwayReceived
from etcdsync.testing import etcd_server

from .certs import make_pki

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
WATCH = "/etcdserverpb.Watch/Watch"
LEASE_GRANT = "/etcdserverpb.Lease/LeaseGrant"
LEASE_KEEP_ALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"
LOCK = "/v3lockpb.Lock/Lock"
UNLOCK = "/v3lockpb.Lock/Unlock"
MiB = 1024 * 1024
HASLEADER = (("hasleader", "true"),)


async def http_get(endpoint: str, path: str) -> bytes:
    """The body of ``GET path`` (HTTP/1.0, so no chunked encoding)."""
    host, port = endpoint.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.0\r\nHost: {endpoint}\r\n\r\n".encode())
        chunks = []
        while data := await stream.receive_some(1 << 16):
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")), head
    return body


async def metric(endpoint: str, name: str) -> float:
    """A Prometheus metric of etcd's (served on the client port too)."""
    for line in (await http_get(endpoint, "/metrics")).decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def put(key: bytes, value: bytes, lease: int = 0) -> bytes:
    return rpc_pb2.PutRequest(key=key, value=value, lease=lease).SerializeToString()


def range_(key: bytes, *, prefix: bool = False, revision: int = 0, count_only: bool = False) -> bytes:
    range_end = key[:-1] + bytes([key[-1] + 1]) if prefix else b""
    return rpc_pb2.RangeRequest(
        key=key, range_end=range_end, revision=revision, count_only=count_only
    ).SerializeToString()


def watch_create(key: bytes) -> bytes:
    return rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key)).SerializeToString()


async def grant(channel: H2Channel, ttl: int) -> int:
    request = rpc_pb2.LeaseGrantRequest(TTL=ttl).SerializeToString()
    return int(rpc_pb2.LeaseGrantResponse.FromString(await channel.unary(LEASE_GRANT, request)).ID)


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


async def test_unary_put_and_range(etcd_endpoint: str, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"unary"
    with trio.fail_after(10):
        async with open_h2_channel(etcd_endpoint) as channel:
            put_response = rpc_pb2.PutResponse.FromString(
                await channel.unary(PUT, put(key, b"v1"), metadata=HASLEADER)
            )
            got = rpc_pb2.RangeResponse.FromString(await channel.unary(RANGE, range_(key)))
            assert [(kv.key, kv.value) for kv in got.kvs] == [(key, b"v1")]
            assert got.kvs[0].mod_revision == put_response.header.revision


async def test_error_statuses(etcd_endpoint: str, etcd_prefix: bytes) -> None:
    with trio.fail_after(10):
        async with open_h2_channel(etcd_endpoint) as channel:
            with pytest.raises(StatusError) as info:
                await channel.unary(RANGE, range_(etcd_prefix, revision=10**9))
            assert (info.value.code, info.value.message) == (
                11,
                "etcdserver: mvcc: required revision is a future revision",
            )
            with pytest.raises(StatusError) as info:
                await channel.unary(PUT, put(b"", b"v"))
            assert (info.value.code, info.value.message) == (3, "etcdserver: key is not provided")
            assert await channel.unary(RANGE, range_(etcd_prefix))  # the channel is fine afterwards
            assert channel.statistics().calls_failed == 2


async def test_watch_create_event_cancel(etcd_endpoint: str, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"watch"
    with trio.fail_after(10):
        async with open_h2_channel(etcd_endpoint) as channel:
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
            assert channel.statistics().open_streams == 0


async def test_lease_keepalive_ping_pong(etcd_endpoint: str) -> None:
    with trio.fail_after(10):
        async with open_h2_channel(etcd_endpoint) as channel:
            lease = await grant(channel, 60)
            async with channel.stream(LEASE_KEEP_ALIVE) as stream:
                for _ in range(20):
                    await stream.send(rpc_pb2.LeaseKeepAliveRequest(ID=lease).SerializeToString())
                    response = rpc_pb2.LeaseKeepAliveResponse.FromString(await stream.receive())
                    assert lease == response.ID and response.TTL == 60
                # etcd ends LeaseKeepAlive with status OK when we half-close.
                await stream.close_send()
                with pytest.raises(trio.EndOfChannel):
                    await stream.receive()
            assert channel.statistics().open_streams == 0


async def test_range_response_over_8_mib(etcd_endpoint: str, etcd_prefix: bytes) -> None:
    # etcd refuses requests over 1.5 MiB, so write 9 keys of 1 MiB and read them back at once.
    with trio.fail_after(30):
        async with open_h2_channel(etcd_endpoint) as channel:
            for i in range(9):
                await channel.unary(PUT, put(etcd_prefix + b"big/%d" % i, bytes([i]) * MiB))
            data = await channel.unary(RANGE, range_(etcd_prefix + b"big/", prefix=True))
            assert len(data) > 9 * MiB
            response = rpc_pb2.RangeResponse.FromString(data)
            assert [kv.value for kv in response.kvs] == [bytes([i]) * MiB for i in range(9)]


async def test_thousand_concurrent_unary_calls(etcd_endpoint: str, etcd_prefix: bytes) -> None:
    with trio.fail_after(30):
        async with open_h2_channel(etcd_endpoint) as channel:
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


async def test_cancelled_unary_call_is_cancelled_on_the_server(
    etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    # v3lock's Lock blocks on the server while the lock is held; when the client's RST_STREAM
    # cancels the server-side context, etcd deletes the waiter's key.
    name = etcd_prefix + b"lock"
    with trio.fail_after(20):
        async with open_h2_channel(etcd_endpoint) as channel:
            leases = [await grant(channel, 60), await grant(channel, 60)]
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


async def test_cancelled_watch_stream_frees_the_server_watcher(
    etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    watchers = "etcd_debugging_mvcc_watcher_total"
    with trio.fail_after(20):
        async with open_h2_channel(etcd_endpoint) as channel:
            baseline = await metric(etcd_endpoint, watchers)
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    async with channel.stream(WATCH) as stream:
                        await stream.send(watch_create(etcd_prefix + b"quiet"))
                        assert rpc_pb2.WatchResponse.FromString(await stream.receive()).created
                        await stream.receive()  # blocks: nothing is written to the key

                nursery.start_soon(watch)
                await wait_until(lambda: _metric_is(etcd_endpoint, watchers, baseline + 1))
                nursery.cancel_scope.cancel()
            await wait_until(lambda: _metric_is(etcd_endpoint, watchers, baseline))
            assert channel.statistics().open_streams == 0


async def test_call_to_a_stopped_server_returns_within_its_cancel_scope() -> None:
    with trio.fail_after(30):
        async with (
            etcd_server(unsafe_no_fsync=True) as server,
            open_h2_channel(server.endpoint) as connected,
            open_h2_channel(server.endpoint) as fresh,
        ):
            await connected.unary(RANGE, range_(b"k"))
            server.pause()
            try:
                for channel in (connected, fresh):  # an open connection, and one still to connect
                    with trio.move_on_after(0.3) as scope:
                        await channel.unary(PUT, put(b"k", b"v"))
                    assert scope.cancelled_caught
                    with pytest.raises(trio.TooSlowError), trio.fail_after(0.3):
                        await channel.unary(RANGE, range_(b"k"))
            finally:
                server.resume()
            # Both recover once the server runs again.
            for channel in (connected, fresh):
                await channel.unary(RANGE, range_(b"k"))


async def test_frozen_server_is_detected_by_keepalive() -> None:
    with trio.fail_after(30):
        async with (
            etcd_server(unsafe_no_fsync=True) as server,
            open_h2_channel(server.endpoint, keepalive_interval=0.5, keepalive_timeout=0.5) as channel,
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
            assert isinstance(info.value.__cause__, KeepaliveTimeout)
            # The same channel reconnects for the next call.
            await channel.unary(RANGE, range_(b"k"))
            assert channel.statistics().reconnects == 1


async def test_server_restart_mid_stream_then_reconnect() -> None:
    with trio.fail_after(30):
        async with etcd_server(unsafe_no_fsync=True) as server, open_h2_channel(server.endpoint) as channel:
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
            assert channel.statistics().state is ChannelState.READY
            assert channel.statistics().reconnects == 1


async def test_too_frequent_pings_are_punished_and_backed_off() -> None:
    # etcd's grpc-go server allows one ping per 5 s (--grpc-keepalive-min-time) while streams are
    # open; the third violation closes the connection with GOAWAY "too_many_pings". This is why the
    # default interval is 10 s. The channel doubles its interval in response.
    with trio.fail_after(30):
        async with (
            etcd_server(unsafe_no_fsync=True) as server,
            open_h2_channel(server.endpoint, keepalive_interval=0.1, keepalive_timeout=2) as channel,
            channel.stream(WATCH) as stream,
        ):
            await stream.send(watch_create(b"pings"))
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
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(pki.client_cert, pki.client_key)
    with trio.fail_after(30):
        # On 127.0.0.1: the test certificate names that address.
        async with etcd_server(host="127.0.0.1", unsafe_no_fsync=True, extra_args=tls) as server:
            async with open_h2_channel(server.endpoint, ssl_context=context) as channel:
                await channel.unary(PUT, put(b"tls", b"secret"), metadata=HASLEADER)
                got = rpc_pb2.RangeResponse.FromString(await channel.unary(RANGE, range_(b"tls")))
                assert got.kvs[0].value == b"secret"
                async with channel.stream(LEASE_KEEP_ALIVE) as stream:
                    await stream.close_send()
                    with pytest.raises(trio.EndOfChannel):
                        await stream.receive()
            # Without a client certificate the handshake fails: nothing was sent.
            anonymous = ssl.create_default_context(cafile=str(pki.ca))
            async with open_h2_channel(server.endpoint, ssl_context=anonymous) as channel:
                with pytest.raises(ConnectionLost) as info:
                    await channel.unary(RANGE, range_(b"tls"))
                assert info.value.request_sent is False
