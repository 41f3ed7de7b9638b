"""The h2 channel against the fake server: requests, responses, statuses, metadata, deadlines, cancellation."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes

from etcdsync._version import __version__
from etcdsync.client._sansio._grpc import decode_timeout
from etcdsync.client._transport import (
    ChannelState,
    ConnectionLost,
    StatusError,
    open_h2_channel,
)

from .fakeserver import FakeCall, echo, frame_message, never_answer, open_fake_server

PATH = "/test.Service/Method"


async def reverse(call: FakeCall) -> None:
    message = await call.receive()
    await call.send(message[::-1])
    await call.finish()


async def test_unary_roundtrip_and_request_headers() -> None:
    with trio.fail_after(10):
        async with open_fake_server(reverse) as server, open_h2_channel(server.endpoint) as channel:
            metadata = (("token", "abc.def"), ("hasleader", "true"), ("x-bin", "AAEC"))
            assert await channel.unary(PATH, b"hello", metadata=metadata) == b"olleh"
            assert await channel.unary(PATH, b"") == b""
    headers = server.calls[0].headers
    # Pseudo-headers first, in gRPC's order; the fake server's h2 validates the block as well.
    assert headers[:4] == [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", PATH),
        (":authority", server.endpoint),
    ]
    fields = dict(headers[4:])
    assert fields["content-type"] == "application/grpc"
    assert fields["te"] == "trailers"
    assert fields["user-agent"] == f"etcdsync/{__version__}"
    assert [(k, v) for k, v in headers if k in {"token", "hasleader", "x-bin"}] == list(metadata)


async def test_no_grpc_timeout_without_deadline() -> None:
    with trio.fail_after(10):
        async with open_fake_server(reverse) as server, open_h2_channel(server.endpoint) as channel:
            await channel.unary(PATH, b"warm-up")
            # Shielded: the only way to have no deadline under the suite's own fail_after. The fake
            # server answers at once, so this cannot hang.
            with trio.CancelScope(shield=True):
                await channel.unary(PATH, b"x")
    assert server.calls[0].header("grpc-timeout") is not None
    assert server.calls[1].header("grpc-timeout") is None


async def test_grpc_timeout_follows_the_callers_deadline() -> None:
    with trio.fail_after(10):
        async with open_fake_server(reverse) as server, open_h2_channel(server.endpoint) as channel:
            with trio.fail_after(5):
                await channel.unary(PATH, b"x")
            # Only the header matters here; on a loaded machine the reply may miss this deadline.
            with trio.move_on_after(0.099):
                await channel.unary(PATH, b"y")
            await server.wait_for_calls(2)
            # Shielded so that the suite's own, shorter deadline does not win.
            with trio.CancelScope(shield=True), trio.fail_after(4000):
                await channel.unary(PATH, b"z")
    values = [call.header("grpc-timeout") for call in server.calls]
    assert values[0] is not None and values[0].endswith("u") and 4.5 < decode_timeout(values[0]) <= 5.0
    assert values[1] is not None and values[1].endswith("n") and 0.0 < decode_timeout(values[1]) <= 0.099
    assert values[2] is not None and values[2].endswith("m") and 3999 < decode_timeout(values[2]) <= 4000


async def test_call_whose_deadline_passed_is_not_sent() -> None:
    with trio.fail_after(10):
        async with open_fake_server(reverse) as server, open_h2_channel(server.endpoint) as channel:
            await channel.unary(PATH, b"warm-up")  # connected: the next call reaches the deadline check
            with trio.CancelScope(deadline=trio.current_time() - 1) as scope:
                await channel.unary(PATH, b"late")
            assert scope.cancelled_caught
            with trio.CancelScope(deadline=trio.current_time() - 1) as scope:
                async with channel.stream(PATH):
                    pytest.fail("must not open")  # pragma: no cover
            assert scope.cancelled_caught
            assert await channel.unary(PATH, b"after") == b"retfa"
            assert channel.statistics().calls_started == 2
    assert [call.stream_id for call in server.calls] == [1, 3]


async def test_trailers_only_error_with_percent_encoded_message_and_trailers() -> None:
    async def handler(call: FakeCall) -> None:
        await call.finish(5, "no such thing: ü 100%\n", trailers=[("x-extra", "1")])

    with trio.fail_after(10):
        async with open_fake_server(handler) as server, open_h2_channel(server.endpoint) as channel:
            with pytest.raises(StatusError) as info:
                await channel.unary(PATH, b"x")
            assert channel.statistics().calls_failed == 1
    assert (info.value.code, info.value.message) == (5, "no such thing: ü 100%\n")
    assert info.value.trailers == (("x-extra", "1"),)
    assert str(info.value) == "gRPC status 5: no such thing: ü 100%\n"


async def test_error_status_after_a_message() -> None:
    async def handler(call: FakeCall) -> None:
        await call.receive()
        await call.send(b"partial")
        await call.finish(11, "etcdserver: mvcc: required revision is a future revision")

    with trio.fail_after(10):
        async with open_fake_server(handler) as server, open_h2_channel(server.endpoint) as channel:
            with pytest.raises(StatusError) as info:
                await channel.unary(PATH, b"x")
            assert info.value.code == 11
            # On a stream the message comes first, then the status.
            async with channel.stream(PATH) as stream:
                await stream.send(b"x")
                assert await stream.receive() == b"partial"
                with pytest.raises(StatusError, match="future revision"):
                    await stream.receive()
                with pytest.raises(StatusError):  # and again: the end is sticky
                    await stream.receive()


@pytest.mark.parametrize(
    ("messages", "kind"), [(0, "no response message"), (2, "more than one response message")]
)
async def test_unary_needs_exactly_one_response(messages: int, kind: str) -> None:
    async def handler(call: FakeCall) -> None:
        await call.receive()
        for _ in range(messages):
            await call.send(b"m")
        await call.finish()

    with trio.fail_after(10):
        async with open_fake_server(handler) as server, open_h2_channel(server.endpoint) as channel:
            with pytest.raises(StatusError, match=f"received {kind} for a unary call") as info:
                await channel.unary(PATH, b"x")
    assert info.value.code == 13


async def test_non_grpc_responses() -> None:
    async def handler(call: FakeCall) -> None:
        if call.header("mode") == "http503":
            call.conn.h2.send_headers(call.stream_id, [(b":status", b"503"), (b"content-type", b"text/html")])
            call.conn.h2.send_data(call.stream_id, b"<html>busy</html>", end_stream=True)
        elif call.header("mode") == "html200":
            call.conn.h2.send_headers(call.stream_id, [(b":status", b"200"), (b"content-type", b"text/html")])
        elif call.header("mode") == "no-trailers":
            await call.send_raw(frame_message(b"x"), end_stream=True)
        else:
            await call.send_headers()
            call.conn.h2.send_headers(call.stream_id, [(b"x-no-status", b"1")], end_stream=True)
        call.finished = True
        await call.conn.flush()
        await trio.sleep_forever()

    expected = {
        "http503": (14, "unexpected HTTP status code received from server: 503"),
        "html200": (2, "unexpected content-type 'text/html'"),
        "no-trailers": (13, "server closed the stream without sending trailers"),
        "no-status": (2, "server sent trailers without grpc-status"),
    }
    with trio.fail_after(10):
        async with open_fake_server(handler) as server, open_h2_channel(server.endpoint) as channel:
            for mode, (code, message) in expected.items():
                with pytest.raises(StatusError) as info:
                    await channel.unary(PATH, b"x", metadata=[("mode", mode)])
                assert (info.value.code, info.value.message) == (code, message)
            # The html200 response never ends on its own: we reset it.
            await server.wait_for_reset(1)
            assert channel.statistics().open_streams == 0


@pytest.mark.parametrize(
    ("error_code", "status"),
    [(ErrorCodes.REFUSED_STREAM, 14), (ErrorCodes.CANCEL, 1), (ErrorCodes.INTERNAL_ERROR, 13)],
)
async def test_server_reset_maps_to_status(error_code: ErrorCodes, status: int) -> None:
    async def handler(call: FakeCall) -> None:
        await call.reset_stream(error_code)

    with trio.fail_after(10):
        async with open_fake_server(handler) as server, open_h2_channel(server.endpoint) as channel:
            with pytest.raises(StatusError) as info:
                await channel.unary(PATH, b"x")
            assert info.value.code == status
            assert channel.statistics().open_streams == 0


async def test_message_size_limits() -> None:
    async def handler(call: FakeCall) -> None:
        size = int(call.header("size") or 0)
        await call.send(b"r" * size)
        await trio.sleep_forever()  # only the client's RST ends this

    with trio.fail_after(10):
        async with (
            open_fake_server(handler) as server,
            open_h2_channel(
                server.endpoint, max_receive_message_length=100, max_send_message_length=10
            ) as channel,
        ):
            with pytest.raises(StatusError) as info:
                await channel.unary(PATH, b"x", metadata=[("size", "200")])
            assert (info.value.code, info.value.message) == (
                8,
                "received message larger than max (200 vs. 100)",
            )
            assert (await server.wait_for_reset(1))[0] == (1, ErrorCodes.CANCEL)
            # Sending too much fails before anything is sent.
            with pytest.raises(
                StatusError, match=r"^gRPC status 8: trying to send message larger than max \(11 vs\. 10\)$"
            ):
                await channel.unary(PATH, b"x" * 11)
            async with channel.stream(PATH, metadata=[("size", "100")]) as stream:
                with pytest.raises(StatusError, match=r"larger than max \(11 vs\. 10\)"):
                    await stream.send(b"x" * 11)
                assert await stream.receive() == b"r" * 100  # exactly the limit is fine
            assert len(server.calls) == 2


async def test_compressed_message_is_refused() -> None:
    async def handler(call: FakeCall) -> None:
        await call.send(b"zipped", flags=1)
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with open_fake_server(handler) as server, open_h2_channel(server.endpoint) as channel:
            with pytest.raises(StatusError, match="no compression was negotiated") as info:
                await channel.unary(PATH, b"x")
            assert info.value.code == 13
            await server.wait_for_reset(1)


async def test_a_bad_final_data_frame_fails_its_call_only() -> None:
    # The server ends the stream with the DATA frame (no trailers) and that message is refused: the
    # stream is closed on both sides by then, so there is nothing to reset, and the connection (with
    # the other call on it) must live on.
    async def handler(call: FakeCall) -> None:
        if call.header("kind") == "bad":
            await call.send_raw(frame_message(b"zipped", flags=1), end_stream=True)
        else:
            await call.send(b"fine")
            await call.finish()

    with trio.fail_after(10):
        async with open_fake_server(handler) as server, open_h2_channel(server.endpoint) as channel:
            with pytest.raises(StatusError, match="no compression was negotiated"):
                await channel.unary(PATH, b"x", metadata=[("kind", "bad")])
            assert await channel.unary(PATH, b"x", metadata=[("kind", "good")]) == b"fine"
            assert channel.statistics().reconnects == 0
            assert len(server.connections) == 1


async def test_invalid_metadata_and_paths_raise_before_sending() -> None:
    with trio.fail_after(10):
        async with open_fake_server(reverse) as server, open_h2_channel(server.endpoint) as channel:
            for metadata in ([("Token", "x")], [("grpc-timeout", "1S")], [("te", "x")], [("token", "é")]):
                with pytest.raises(ValueError, match="metadata"):
                    await channel.unary(PATH, b"x", metadata=metadata)
            with pytest.raises(ValueError, match="method path"):
                await channel.unary("test.Service/Method", b"x")
    assert server.calls == []


async def test_bidi_stream_echo_and_half_close() -> None:
    with trio.fail_after(10):
        async with open_fake_server(echo) as server, open_h2_channel(server.endpoint) as channel:
            async with channel.stream(PATH, metadata=[("k", "v")]) as stream:
                for i in range(3):
                    await stream.send(b"m%d" % i)
                assert [await stream.receive() for _ in range(3)] == [b"m0", b"m1", b"m2"]
                await stream.close_send()
                await stream.close_send()  # idempotent
                with pytest.raises(trio.EndOfChannel):
                    await stream.receive()
                with pytest.raises(trio.ClosedResourceError):
                    await stream.send(b"late")
            assert channel.statistics().open_streams == 0
    assert server.resets == []  # a cleanly ended stream is not reset
    assert server.calls[0].header("k") == "v"


async def test_send_after_the_server_ended_the_stream() -> None:
    async def handler(call: FakeCall) -> None:
        mode = call.header("mode")
        await call.finish(0 if mode == "ok" else 9, "" if mode == "ok" else "nope")

    with trio.fail_after(10):
        async with open_fake_server(handler) as server, open_h2_channel(server.endpoint) as channel:
            async with channel.stream(PATH, metadata=[("mode", "ok")]) as stream:
                with pytest.raises(trio.EndOfChannel):
                    await stream.receive()
                with pytest.raises(trio.BrokenResourceError):
                    await stream.send(b"x")
            async with channel.stream(PATH, metadata=[("mode", "error")]) as stream:
                with pytest.raises(StatusError):
                    await stream.receive()
                with pytest.raises(StatusError, match="nope"):
                    await stream.send(b"x")
            assert channel.statistics().open_streams == 0
    assert server.resets == []


async def test_cancelling_a_unary_call_resets_the_stream() -> None:
    with trio.fail_after(10):
        async with open_fake_server(never_answer) as server, open_h2_channel(server.endpoint) as channel:
            with trio.move_on_after(0.1) as scope:
                await channel.unary(PATH, b"x")
            assert scope.cancelled_caught
            assert channel.statistics().open_streams == 0
            assert await server.wait_for_reset(1) == [(1, ErrorCodes.CANCEL)]
            # A cancelled call is not a failed call.
            assert channel.statistics().calls_failed == 0


async def test_leaving_a_stream_early_resets_it() -> None:
    async def handler(call: FakeCall) -> None:
        await call.send(b"first")
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with open_fake_server(handler) as server, open_h2_channel(server.endpoint) as channel:
            async with channel.stream(PATH) as stream:
                assert await stream.receive() == b"first"
            assert await server.wait_for_reset(1) == [(1, ErrorCodes.CANCEL)]
            # ... also when the body raises, or when a task blocked in receive() is cancelled.
            with pytest.raises(KeyError):
                async with channel.stream(PATH) as stream:
                    raise KeyError("boom")
            async with trio.open_nursery() as nursery:

                async def consume() -> None:
                    async with channel.stream(PATH) as stream:
                        await stream.receive()
                        await stream.receive()

                nursery.start_soon(consume)
                await server.wait_for_calls(3)
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
            assert [code for _, code in await server.wait_for_reset(3)] == [ErrorCodes.CANCEL] * 3
            assert channel.statistics().open_streams == 0


async def test_concurrent_send_or_receive_is_refused() -> None:
    with trio.fail_after(10):
        async with (
            open_fake_server(never_answer) as server,
            open_h2_channel(server.endpoint) as channel,
            channel.stream(PATH) as stream,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(stream.receive)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await stream.receive()
            nursery.cancel_scope.cancel()


async def test_statistics_and_repr() -> None:
    with trio.fail_after(10):
        async with open_fake_server(reverse) as server, open_h2_channel(server.endpoint) as channel:
            stats = channel.statistics()
            assert (stats.state, stats.calls_started, stats.reconnects, stats.last_error) == (
                ChannelState.IDLE,
                0,
                0,
                None,
            )
            await channel.unary(PATH, b"x")
            stats = channel.statistics()
            assert (stats.state, stats.calls_started, stats.calls_failed, stats.open_streams) == (
                ChannelState.READY,
                1,
                0,
                0,
            )
            assert stats.endpoint == server.endpoint
            assert f"H2Channel to {server.endpoint}" in repr(channel) and "ready" in repr(channel)
        assert channel.statistics().state is ChannelState.CLOSED


async def test_closed_channel() -> None:
    with trio.fail_after(10):
        async with open_fake_server(never_answer) as server:
            async with open_h2_channel(server.endpoint) as channel, trio.open_nursery() as nursery:

                async def in_flight() -> None:
                    with pytest.raises(ConnectionLost, match="channel was closed") as info:
                        await channel.unary(PATH, b"x")
                    assert info.value.request_sent
                    assert isinstance(info.value.__cause__, trio.ClosedResourceError)

                nursery.start_soon(in_flight)
                await server.wait_for_calls(1)
                await channel.aclose()
            with pytest.raises(trio.ClosedResourceError):
                await channel.unary(PATH, b"x")
            with pytest.raises(trio.ClosedResourceError):
                async with channel.stream(PATH):
                    pass  # pragma: no cover


async def test_body_exception_is_not_wrapped_in_a_group() -> None:
    with trio.fail_after(10):
        async with open_fake_server(reverse) as server:
            with pytest.raises(KeyError) as info:
                async with open_h2_channel(server.endpoint) as channel:
                    await channel.unary(PATH, b"x")
                    raise KeyError("mine")
    assert info.value.__context__ is None


@pytest.mark.parametrize("endpoint", ["localhost", "localhost:", "localhost:x", ":2379", "h:0", "h:65536"])
async def test_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        async with open_h2_channel(endpoint):
            pass  # pragma: no cover


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("keepalive_interval", 0),
        ("keepalive_timeout", -1.0),
        ("connect_timeout", 0),
        ("max_receive_message_length", 0),
        ("max_send_message_length", -1),
        ("receive_window", 1000),
        ("receive_window", 2**31),
    ],
)
async def test_bad_options(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        async with open_h2_channel("127.0.0.1:1", **{option: value}):
            pass  # pragma: no cover
