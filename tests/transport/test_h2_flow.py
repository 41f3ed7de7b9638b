"""Flow control, concurrency limits and the paths of output to the socket of the h2 channel, against
the fake server."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing

from etcdsync.client._transport import _h2conn, open_h2_channel

from .fakeserver import FakeCall, echo, frame_message, open_fake_server

PATH = "/test.Service/Method"
MiB = 1024 * 1024


async def big_response(call: FakeCall) -> None:
    size = int(call.header("size") or 0)
    await call.receive()
    await call.send(bytes(range(256)) * (size // 256))
    await call.finish()


async def test_response_larger_than_the_window_completes() -> None:
    # 20 MiB through a 64 KiB window: only works if partial-message bytes are credited.
    with trio.fail_after(30):
        async with (
            open_fake_server(big_response) as server,
            open_h2_channel(server.endpoint, receive_window=65535) as small,
            open_h2_channel(server.endpoint) as default,
        ):
            for channel in (small, default):
                response = await channel.unary(PATH, b"x", metadata=[("size", str(20 * MiB))])
                assert len(response) == 20 * MiB
                assert response[:256] == bytes(range(256)) and response[-256:] == bytes(range(256))


async def test_request_larger_than_the_servers_window() -> None:
    async def handler(call: FakeCall) -> None:
        data = await call.receive()
        await call.send(len(data).to_bytes(8, "big"))
        await call.finish()

    with trio.fail_after(30):
        async with (
            open_fake_server(handler, initial_window_size=65535) as server,
            open_h2_channel(server.endpoint) as channel,
        ):
            response = await channel.unary(PATH, b"q" * (3 * MiB))
            assert int.from_bytes(response, "big") == 3 * MiB
            async with channel.stream(PATH) as stream:
                await stream.send(b"s" * (2 * MiB))
                assert int.from_bytes(await stream.receive(), "big") == 2 * MiB


async def test_many_messages_in_one_data_frame_and_split_headers() -> None:
    async def handler(call: FakeCall) -> None:
        await call.receive()
        # 1000 messages in one write, then one message split across three writes.
        await call.send_raw(b"".join(frame_message(b"%d" % i) for i in range(1000)))
        framed = frame_message(b"tail" * 10)
        for piece in (framed[:3], framed[3:20], framed[20:]):
            await call.send_raw(piece)
        await call.finish()

    with trio.fail_after(10):
        async with open_fake_server(handler) as server, open_h2_channel(server.endpoint) as channel:
            async with channel.stream(PATH) as stream:
                await stream.send(b"go")
                await stream.close_send()
                received = [await stream.receive() for _ in range(1001)]
            assert received[:1000] == [b"%d" % i for i in range(1000)]
            assert received[1000] == b"tail" * 10


async def test_max_concurrent_streams_is_respected() -> None:
    async def slow_echo(call: FakeCall) -> None:
        message = await call.receive()
        await trio.sleep(0.01)
        await call.send(message)
        await call.finish()

    with trio.fail_after(20):
        # h2 on the server side treats a 3rd concurrent stream as a protocol error.
        async with (
            open_fake_server(slow_echo, max_concurrent_streams=2) as server,
            open_h2_channel(server.endpoint) as channel,
        ):
            results: dict[int, bytes] = {}

            async def one(i: int) -> None:
                results[i] = await channel.unary(PATH, b"%d" % i)

            async with trio.open_nursery() as nursery:
                for i in range(10):
                    nursery.start_soon(one, i)
            assert results == {i: b"%d" % i for i in range(10)}
            assert server.peak_open_calls == 2
            assert len(server.connections) == 1
            # A stream holds its slot until it ends; a call then waits for it.
            async with (
                channel.stream(PATH) as first,
                channel.stream(PATH),
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(channel.unary, PATH, b"waits")
                await trio.testing.wait_all_tasks_blocked()
                assert len(server.calls) == 12
                await first.send(b"1")
                await first.close_send()
                assert await first.receive() == b"1"
            assert len(server.calls) == 13


async def test_slow_consumer_does_not_stall_other_streams() -> None:
    chunk = 64 * 1024
    count = 60

    async def handler(call: FakeCall) -> None:
        if call.header("mode") == "flood":
            for _ in range(count):
                await call.send(b"f" * chunk)
            await call.finish()
        else:
            await call.send(await call.receive())
            await call.finish()

    with trio.fail_after(30):
        async with (
            open_fake_server(handler) as server,
            open_h2_channel(server.endpoint, receive_window=65535) as channel,
            channel.stream(PATH, metadata=[("mode", "flood")]) as flood,
        ):
            # Nobody reads `flood`; the other calls on the connection still go through.
            for i in range(20):
                assert await channel.unary(PATH, b"%d" % i) == b"%d" % i
            await trio.testing.wait_all_tasks_blocked()
            flood_call = server.calls[0]
            # The server is held back by our stream window: at most ~2 windows were sent.
            assert not flood_call.finished
            assert flood_call.bytes_sent < 3 * 65536
            # Reading resumes the flow, to the end.
            for _ in range(count):
                assert len(await flood.receive()) == chunk
            # Wait for the trailers: the server's task may not have run finish() yet when the last
            # message is read.
            with pytest.raises(trio.EndOfChannel):
                await flood.receive()
            assert flood_call.finished


async def test_acknowledgements_are_sent_on_a_quiet_connection() -> None:
    # A PING ACK waits for a request to share its write, but not for long: here none comes.
    async def handler(call: FakeCall) -> None:
        for payload in (b"ping-one", b"ping-two"):
            call.conn.h2.ping(payload)
            await call.conn.flush()
            while payload not in call.conn.server.ping_acks:
                call.conn.server.ping_acked = trio.Event()
                await call.conn.server.ping_acked.wait()
        await call.send(b"done")
        await call.finish()

    with trio.fail_after(10):
        async with open_fake_server(handler) as server, open_h2_channel(server.endpoint) as channel:
            assert await channel.unary(PATH, b"x") == b"done"
            assert server.ping_acks == [b"ping-one", b"ping-two"]


@pytest.mark.parametrize("socket_takes", ["one byte", "nothing", "an error"])
async def test_what_a_direct_write_leaves_is_sent_by_the_writer(
    monkeypatch: pytest.MonkeyPatch, socket_takes: str
) -> None:
    # With one call open, the calling task writes to the socket itself; the rest goes to the writer.
    attempts: list[int] = []

    def write(fd: int, data: bytes) -> int:
        attempts.append(len(data))
        if socket_takes == "one byte":
            return os.write(fd, data[:1])
        if socket_takes == "nothing":
            raise BlockingIOError
        raise BrokenPipeError

    monkeypatch.setattr(_h2conn, "_write_nonblocking", write)
    with trio.fail_after(10):
        async with open_fake_server(echo) as server, open_h2_channel(server.endpoint) as channel:
            for i in range(10):
                assert await channel.unary(PATH, b"%d" % i * 5000) == b"%d" % i * 5000
            async with channel.stream(PATH) as stream:
                for i in range(10):
                    await stream.send(b"%d" % i * 3000)
                    assert await stream.receive() == b"%d" % i * 3000
    assert len(attempts) >= 20


async def test_spurious_readiness_and_short_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # The reader reads the descriptor itself: a wake-up with nothing to read is waited out, and a
    # read that returns a few bytes (a frame cut anywhere) is reassembled.
    reads = 0

    def read(fd: int, size: int) -> bytes:
        nonlocal reads
        reads += 1
        if reads % 2:
            raise BlockingIOError
        return os.read(fd, 7)

    monkeypatch.setattr(_h2conn, "_read_nonblocking", read)
    with trio.fail_after(10):
        async with open_fake_server(echo) as server, open_h2_channel(server.endpoint) as channel:
            for i in range(5):
                assert await channel.unary(PATH, b"%d" % i * 300) == b"%d" % i * 300
    assert reads > 100
