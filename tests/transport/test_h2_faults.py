"""Connection-level faults against the fake server: GOAWAY, resets, stalls, refused connects, TLS."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes

from etcdsync.client._sansio._backoff import Backoff
from etcdsync.client._transport import ChannelState, ConnectionLost, open_h2_channel
from etcdsync.client._transport._h2conn import KeepaliveTimeout
from etcdsync.client._transport._h2proto import GoAwayReceived

from .certs import make_pki
from .fakeserver import FakeCall, echo, never_answer, open_fake_server

PATH = "/test.Service/Method"


def fast_backoff() -> Backoff:
    return Backoff(initial=0.01, maximum=0.05)


async def test_goaway_lets_lower_streams_finish_and_refuses_higher_ones() -> None:
    release = trio.Event()

    async def handler(call: FakeCall) -> None:
        request = await call.receive()
        if request == b"wait":
            await release.wait()
        await call.send(request)
        await call.finish()

    with trio.fail_after(10):
        async with open_fake_server(handler) as server, open_h2_channel(server.endpoint) as channel:
            outcome: dict[str, object] = {}

            async def call(name: str) -> None:
                try:
                    outcome[name] = await channel.unary(PATH, b"wait")
                except ConnectionLost as exc:
                    outcome[name] = exc

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, "low")
                await server.wait_for_calls(1)
                nursery.start_soon(call, "high")
                await server.wait_for_calls(2)
                assert [c.stream_id for c in server.calls] == [1, 3]
                conn = server.connections[0]
                await conn.send_goaway(last_stream_id=1)
                await trio.testing.wait_all_tasks_blocked()
                # New calls go to a new connection right away, while stream 1 is still running.
                assert await channel.unary(PATH, b"new") == b"new"
                assert len(server.connections) == 2
                release.set()
            assert outcome["low"] == b"wait"
            high = outcome["high"]
            assert isinstance(high, ConnectionLost)
            assert high.request_sent is False
            assert high.endpoint == server.endpoint
            assert isinstance(high.__cause__, GoAwayReceived)
            assert high.__cause__.last_stream_id == 1
            # The drained connection is closed by the client once stream 1 finished.
            await conn.closed_event.wait()
            assert channel.statistics().state is ChannelState.READY
            assert channel.statistics().open_streams == 0


async def test_goaway_without_calls_closes_the_connection() -> None:
    with trio.fail_after(10):
        async with open_fake_server(echo) as server, open_h2_channel(server.endpoint) as channel:
            async with channel.stream(PATH) as stream:
                await stream.send(b"x")
                assert await stream.receive() == b"x"
                await server.connections[0].send_goaway(last_stream_id=2**31 - 1)
                # A graceful GOAWAY (last id = max) does not disturb the open stream.
                await stream.send(b"y")
                assert await stream.receive() == b"y"
            assert await channel.unary(PATH, b"z") == b"z"
            assert len(server.connections) == 2
            assert channel.statistics().reconnects == 1


async def test_too_many_pings_goaway_doubles_the_keepalive_interval() -> None:
    async def handler(call: FakeCall) -> None:
        await call.conn.send_goaway(0, ErrorCodes.ENHANCE_YOUR_CALM, b"too_many_pings")
        await call.conn.close()

    with trio.fail_after(10):
        async with (
            open_fake_server(handler) as server,
            open_h2_channel(server.endpoint, keepalive_interval=7.0) as channel,
        ):
            with pytest.raises(ConnectionLost) as info:
                await channel.unary(PATH, b"x")
            assert not info.value.request_sent  # stream 1 > last stream id 0
            assert "too_many_pings" in str(info.value)
            assert channel._params.keepalive_interval == 14.0


@pytest.mark.parametrize("how", ["abort", "close"])
async def test_connection_broken_mid_call(how: str) -> None:
    async def handler(call: FakeCall) -> None:
        request = await call.receive()
        if request == b"stream":
            await call.send(b"first")
            await call.receive()
        if how == "abort":
            await call.conn.abort()
        else:
            await call.conn.close()

    with trio.fail_after(10):
        async with open_fake_server(handler) as server, open_h2_channel(server.endpoint) as channel:
            with pytest.raises(ConnectionLost) as info:
                await channel.unary(PATH, b"unary")
            assert info.value.request_sent is True
            assert info.value.__cause__ is not None
            async with channel.stream(PATH) as stream:
                await stream.send(b"stream")
                assert await stream.receive() == b"first"
                await stream.send(b"more")
                with pytest.raises(ConnectionLost) as info:
                    await stream.receive()
                assert info.value.request_sent is True
                with pytest.raises(ConnectionLost):
                    await stream.send(b"after")
            stats = channel.statistics()
            assert stats.reconnects == 1
            assert stats.calls_failed == 2
            assert stats.last_error is not None
            # The same channel connects again for the next call.
            server.handler = echo
            async with channel.stream(PATH) as stream:
                await stream.send(b"ok")
                assert await stream.receive() == b"ok"
            assert len(server.connections) == 3


async def test_server_that_never_answers_ping_is_detected() -> None:
    with trio.fail_after(10):
        async with (
            open_fake_server(never_answer, answer_pings=False) as server,
            open_h2_channel(server.endpoint, keepalive_interval=0.2, keepalive_timeout=0.2) as channel,
        ):
            with pytest.raises(ConnectionLost, match="keepalive PING") as info:
                await channel.unary(PATH, b"x")
            assert info.value.request_sent is True
            assert isinstance(info.value.__cause__, KeepaliveTimeout)
            assert server.pings_received >= 1


async def test_frozen_server_is_detected_on_an_open_stream() -> None:
    with trio.fail_after(10):
        async with (
            open_fake_server(echo) as server,
            open_h2_channel(server.endpoint, keepalive_interval=0.2, keepalive_timeout=0.2) as channel,
        ):
            async with channel.stream(PATH) as stream:
                await stream.send(b"x")
                assert await stream.receive() == b"x"
                server.connections[0].freeze()
                with pytest.raises(ConnectionLost) as info:
                    await stream.receive()
                assert isinstance(info.value.__cause__, KeepaliveTimeout)
            server.connections[0].unfreeze()


async def test_keepalive_pings_only_while_calls_are_open() -> None:
    async def slow(call: FakeCall) -> None:
        await call.receive()
        await trio.sleep(0.5)
        await call.send(b"late")
        await call.finish()

    with trio.fail_after(10):
        async with (
            open_fake_server(slow) as server,
            open_h2_channel(server.endpoint, keepalive_interval=0.05, keepalive_timeout=1.0) as channel,
        ):
            # A call that is silent for 10 intervals survives, because its pings are answered.
            assert await channel.unary(PATH, b"x") == b"late"
            assert server.pings_received >= 2
            # An idle connection is never pinged (grpc-go servers punish that).
            pings = server.pings_received
            await trio.sleep(0.3)
            assert server.pings_received == pings


async def test_refused_connection_then_recovery_with_backoff() -> None:
    with trio.fail_after(10):
        # Nothing listens on this port.
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        async with open_h2_channel(f"127.0.0.1:{port}", connect_backoff=fast_backoff()) as channel:
            with pytest.raises(ConnectionLost) as info:
                await channel.unary(PATH, b"x")
            assert info.value.request_sent is False
            assert isinstance(info.value.__cause__, OSError)
            assert channel.statistics().state is ChannelState.TRANSIENT_FAILURE
            assert channel.statistics().last_error is not None

        async with open_fake_server(echo) as server:
            server.refuse = True  # accepts TCP, closes at once: fails the HTTP/2 handshake
            async with open_h2_channel(server.endpoint, connect_backoff=fast_backoff()) as channel:
                for _ in range(3):
                    with pytest.raises(ConnectionLost) as info:
                        await channel.unary(PATH, b"x")
                    assert info.value.request_sent is False
                server.refuse = False
                async with channel.stream(PATH) as stream:
                    await stream.send(b"back")
                    assert await stream.receive() == b"back"
                assert channel.statistics().state is ChannelState.READY


async def test_calls_waiting_for_a_connection_share_one_attempt() -> None:
    with trio.fail_after(10):
        async with open_fake_server(echo) as server, open_h2_channel(server.endpoint) as channel:
            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(channel.unary, PATH, b"%d" % i)
            assert len(server.connections) == 1


async def test_stalled_connect_respects_the_callers_deadline() -> None:
    # A listener that never accepts: TCP connects (backlog), the HTTP/2 preface never comes back.
    with trio.fail_after(10):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        try:
            endpoint = f"127.0.0.1:{listener.getsockname()[1]}"
            async with open_h2_channel(endpoint, connect_timeout=0.3) as channel:
                with trio.move_on_after(0.1) as scope:
                    await channel.unary(PATH, b"x")
                assert scope.cancelled_caught
                with pytest.raises(ConnectionLost) as info:
                    await channel.unary(PATH, b"x")
                assert isinstance(info.value.__cause__, trio.TooSlowError)
        finally:
            listener.close()


def _server_context(tmp_path: Path, *, require_client_cert: bool) -> tuple[ssl.SSLContext, Path]:
    pki = make_pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.set_alpn_protocols(["h2"])
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    return context, tmp_path


async def test_tls_and_mutual_tls(tmp_path: Path) -> None:
    server_context, _ = _server_context(tmp_path, require_client_cert=True)
    pki = tmp_path
    with trio.fail_after(10):
        async with open_fake_server(echo, ssl_context=server_context) as server:
            client = ssl.create_default_context(cafile=str(pki / "ca.pem"))
            client.load_cert_chain(pki / "client.pem", pki / "client-key.pem")
            async with (
                open_h2_channel(server.endpoint, ssl_context=client) as channel,
                channel.stream(PATH) as stream,
            ):
                await stream.send(b"secret")
                assert await stream.receive() == b"secret"
            assert server.calls[0].header(":scheme") == "https"

            # No client certificate: the server refuses; the request was never sent.
            anonymous = ssl.create_default_context(cafile=str(pki / "ca.pem"))
            async with open_h2_channel(server.endpoint, ssl_context=anonymous) as channel:
                with pytest.raises(ConnectionLost) as info:
                    await channel.unary(PATH, b"x")
                assert info.value.request_sent is False
            # A server certificate we do not trust.
            untrusting = ssl.create_default_context()
            async with open_h2_channel(server.endpoint, ssl_context=untrusting) as channel:
                with pytest.raises(ConnectionLost, match="CERTIFICATE_VERIFY_FAILED") as info:
                    await channel.unary(PATH, b"x")
                assert info.value.request_sent is False
            assert len(server.calls) == 1
