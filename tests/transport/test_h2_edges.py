"""Rarer paths of the h2 channel: flow-control waits that end early, slot waits on a dying connection,
stream-id exhaustion, settings changes, concurrent use of a stream."""

from __future__ import annotations

import socket

import h2.settings
import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes

from etcdsync.client._transport import ChannelState, ConnectionLost, StatusError, open_h2_channel
from etcdsync.client._transport._h2 import H2Stream, _split_endpoint

from .fakeserver import FakeCall, echo, frame_message, never_answer, open_fake_server

PATH = "/test.Service/Method"
MiB = 1024 * 1024


async def test_status_while_blocked_on_the_send_window() -> None:
    # The server never reads our upload and answers RESOURCE_EXHAUSTED at once.
    async def handler(call: FakeCall) -> None:
        await trio.testing.wait_all_tasks_blocked()
        await call.finish(8, "too big for me")
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with (
            open_fake_server(handler, initial_window_size=65535) as server,
            open_h2_channel(server.endpoint) as channel,
        ):
            server.auto_ack = False
            with pytest.raises(StatusError, match="too big for me"):
                await channel.unary(PATH, b"u" * MiB)
            # Our side was still open: the stream is reset.
            assert (await server.wait_for_reset(1))[0] == (1, ErrorCodes.CANCEL)
            async with channel.stream(PATH) as stream:
                with pytest.raises(StatusError, match="too big for me"):
                    await stream.send(b"s" * MiB)
            assert channel.statistics().open_streams == 0


async def test_cancel_while_blocked_on_the_send_window() -> None:
    with trio.fail_after(10):
        async with (
            open_fake_server(never_answer, initial_window_size=65535) as server,
            open_h2_channel(server.endpoint) as channel,
        ):
            server.auto_ack = False
            with trio.move_on_after(0.1) as scope:
                await channel.unary(PATH, b"u" * MiB)
            assert scope.cancelled_caught
            async with channel.stream(PATH) as stream, trio.open_nursery() as nursery:
                nursery.start_soon(stream.send, b"s" * MiB)
                await trio.testing.wait_all_tasks_blocked()
                # One sender at a time, and no half-close in the middle of a message.
                with pytest.raises(trio.BusyResourceError):
                    await stream.send(b"x")
                with pytest.raises(trio.BusyResourceError):
                    await stream.close_send()
                nursery.cancel_scope.cancel()
            assert [code for _, code in await server.wait_for_reset(2)] == [ErrorCodes.CANCEL] * 2
            assert channel.statistics().open_streams == 0


async def test_slot_waiter_moves_to_a_new_connection_when_its_connection_dies() -> None:
    async def handler(call: FakeCall) -> None:
        if call.header("mode") == "hold":
            await trio.sleep_forever()
        await echo(call)

    with trio.fail_after(10):
        async with (
            open_fake_server(handler, max_concurrent_streams=1) as server,
            open_h2_channel(server.endpoint) as channel,
        ):
            result: list[bytes] = []

            async def waiter() -> None:
                result.append(await channel.unary(PATH, b"waited"))

            async with (
                trio.open_nursery() as nursery,
                channel.stream(PATH, metadata=[("mode", "hold")]) as held,
            ):
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                assert len(server.calls) == 1  # the waiter has no slot yet
                await server.connections[0].abort()
                with pytest.raises(ConnectionLost):
                    await held.receive()
            assert result == [b"waited"]
            assert len(server.connections) == 2


async def test_settings_change_mid_connection_wakes_slot_waiters() -> None:
    everyone = trio.Event()

    async def handler(call: FakeCall) -> None:
        if call.stream_id == 1:
            call.conn.h2.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 5})
            await call.conn.flush()
        if call.conn.server.open_calls == 5:
            everyone.set()
        await everyone.wait()  # deadlocks unless 5 calls run at once
        await echo(call)

    with trio.fail_after(10):
        async with (
            open_fake_server(handler, max_concurrent_streams=1) as server,
            open_h2_channel(server.endpoint) as channel,
        ):
            async with trio.open_nursery() as nursery:
                for i in range(5):
                    nursery.start_soon(channel.unary, PATH, b"%d" % i)
            assert server.peak_open_calls == 5


async def test_stream_id_exhaustion_moves_to_a_new_connection() -> None:
    with trio.fail_after(10):
        async with open_fake_server(echo) as server, open_h2_channel(server.endpoint) as channel:
            assert await channel.unary(PATH, b"1") == b"1"
            connection = channel._connection
            assert connection is not None
            connection.h2.highest_outbound_stream_id = 2**31 - 5
            # This call gets the last usable id; the connection then drains and closes.
            assert await channel.unary(PATH, b"2") == b"2"
            assert server.calls[-1].stream_id == 2**31 - 3
            assert connection.dead
            assert await channel.unary(PATH, b"3") == b"3"
            assert len(server.connections) == 2
            assert channel.statistics().last_error is None


async def test_server_ends_in_the_middle_of_a_message() -> None:
    async def handler(call: FakeCall) -> None:
        await call.send_raw(frame_message(b"complete") + frame_message(b"cut short")[:7])
        await call.finish()

    with trio.fail_after(10):
        async with (
            open_fake_server(handler) as server,
            open_h2_channel(server.endpoint) as channel,
            channel.stream(PATH) as stream,
        ):
            assert await stream.receive() == b"complete"
            with pytest.raises(StatusError, match="in the middle of a message") as info:
                await stream.receive()
            assert info.value.code == 13


async def test_many_distinct_metadata_values() -> None:
    with trio.fail_after(10):
        async with open_fake_server(echo) as server, open_h2_channel(server.endpoint) as channel:
            for i in range(70):
                assert await channel.unary(PATH, b"x", metadata=(("token", f"t{i}"),)) == b"x"
            assert await channel.unary(PATH, b"x", metadata=[("token", "list")]) == b"x"
    assert [call.header("token") for call in server.calls] == [*(f"t{i}" for i in range(70)), "list"]


async def test_closing_the_channel_while_connecting() -> None:
    with trio.fail_after(10):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        try:
            endpoint = f"127.0.0.1:{listener.getsockname()[1]}"
            async with open_h2_channel(endpoint) as channel, trio.open_nursery() as nursery:

                async def waiting() -> None:
                    with pytest.raises(trio.ClosedResourceError):
                        await channel.unary(PATH, b"x")

                nursery.start_soon(waiting)
                await trio.testing.wait_all_tasks_blocked()
                assert channel.statistics().state is ChannelState.CONNECTING
                await channel.aclose()
            assert channel.statistics().state is ChannelState.CLOSED
        finally:
            listener.close()


def test_endpoint_forms_and_private_constructor() -> None:
    assert _split_endpoint("[::1]:2379") == ("::1", 2379)
    assert _split_endpoint("etcd-0.etcd:2379") == ("etcd-0.etcd", 2379)
    with pytest.raises(TypeError, match="channel.stream"):
        H2Stream(None, 1)  # type: ignore[arg-type]
