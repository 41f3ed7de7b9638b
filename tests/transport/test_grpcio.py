"""The grpcio transport's own behaviour: its I/O thread, what it sends, TLS, and how it is chosen.

What it shares with the h2 transport against etcd is in ``test_conformance.py``.
"""

from __future__ import annotations

import random
import ssl
import sys
import threading
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives import serialization

import etcdsync
from etcdsync._version import __version__
from etcdsync.client import tls_context
from etcdsync.client._pb import rpc_pb2
from etcdsync.client._sansio._grpc import decode_timeout
from etcdsync.client._transport import ChannelState, ConnectionLost, StatusError, channel_opener
from etcdsync.client._transport._grpcio import GrpcioChannel, GrpcioStream, open_grpcio_channel
from etcdsync.testing import etcd_server

from .certs import Pki, make_pki
from .fakeserver import FakeCall, open_fake_server
from .test_conformance import HASLEADER, PUT, RANGE, WATCH, put, range_, watch_create

PATH = "/test.Service/Method"


def io_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("etcdsync-grpcio")]


async def reverse(call: FakeCall) -> None:
    message = await call.receive()
    await call.send(message[::-1])
    await call.finish()


# -- the I/O thread ----------------------------------------------------------------------------------------


async def test_one_io_thread_per_channel_gone_after_exit(etcd_endpoint: str) -> None:
    with trio.fail_after(10):
        async with open_grpcio_channel(etcd_endpoint) as first, open_grpcio_channel(etcd_endpoint) as second:
            await first.unary(RANGE, range_(b"k"))
            await second.unary(RANGE, range_(b"k"))
            assert sorted(t.name for t in io_threads()) == [f"etcdsync-grpcio {etcd_endpoint}"] * 2
        assert io_threads() == []


async def test_io_thread_gone_when_the_body_raised_or_was_cancelled(etcd_endpoint: str) -> None:
    with trio.fail_after(10):
        with pytest.raises(KeyError):  # unwrapped, not in an ExceptionGroup
            async with open_grpcio_channel(etcd_endpoint) as channel:
                await channel.unary(RANGE, range_(b"k"))
                raise KeyError("boom")
        assert io_threads() == []
        with trio.move_on_after(0.2) as scope:
            async with open_grpcio_channel(etcd_endpoint) as channel, channel.stream(WATCH) as stream:
                await stream.send(watch_create(b"k"))
                await stream.receive()
                await stream.receive()  # blocks until the deadline
        assert scope.cancelled_caught
        assert io_threads() == []


async def test_300_cancelled_calls_leak_nothing(etcd_endpoint: str, etcd_prefix: bytes) -> None:
    rng = random.Random(3)
    with trio.fail_after(20):
        async with open_grpcio_channel(etcd_endpoint) as channel:
            await channel.unary(RANGE, range_(b"k"))  # grpc's process-wide poller thread exists now
            before = set(threading.enumerate())

            async def cancelled_put(i: int) -> None:
                with trio.move_on_after(rng.uniform(0, 0.02)):
                    await channel.unary(PUT, put(etcd_prefix + b"%d" % i, b"v"), metadata=HASLEADER)

            async with trio.open_nursery() as nursery:
                for i in range(300):
                    nursery.start_soon(cancelled_put, i)
            stats = channel.statistics()
            assert (stats.open_streams, stats.calls_failed) == (0, 0)
            assert set(threading.enumerate()) == before
            assert await channel.unary(RANGE, range_(b"k"))
            # Every job on the loop has finished (cancelled calls report back, nothing waits).
            assert not channel._to_trio and not channel._to_loop
        assert io_threads() == []


# -- what goes on the wire (against the fake server) ---------------------------------------------------------


async def test_deadline_metadata_and_user_agent_are_sent() -> None:
    with trio.fail_after(10):
        async with open_fake_server(reverse) as server, open_grpcio_channel(server.endpoint) as channel:
            metadata = (("token", "abc.def"), ("hasleader", "true"), ("x-bin", "AAEC"))
            with trio.fail_after(5):
                assert await channel.unary(PATH, b"hello", metadata=metadata) == b"olleh"
            # Shielded: the only way to have no deadline under the suite's own fail_after. The fake
            # server answers at once, so this cannot hang.
            with trio.CancelScope(shield=True):
                assert await channel.unary(PATH, b"") == b""
            with trio.CancelScope(deadline=trio.current_time() - 1) as scope:
                await channel.unary(PATH, b"late")  # never sent
            assert scope.cancelled_caught
    first, second = server.calls
    timeout = first.header("grpc-timeout")
    assert timeout is not None and 4.0 < decode_timeout(timeout) <= 5.0
    assert second.header("grpc-timeout") is None
    assert [(k, v) for k, v in first.headers if k in {"token", "hasleader", "x-bin"}] == list(metadata)
    assert (first.header("user-agent") or "").startswith(f"etcdsync/{__version__} grpc-python")


async def test_status_trailers_and_bad_input() -> None:
    async def fail(call: FakeCall) -> None:
        await call.receive()
        await call.finish(9, "precondition 100%", trailers=[("why", "because"), ("detail-bin", "AQI")])

    with trio.fail_after(10):
        async with open_fake_server(fail) as server, open_grpcio_channel(server.endpoint) as channel:
            with pytest.raises(StatusError) as info:
                await channel.unary(PATH, b"x")
            assert (info.value.code, info.value.message) == (9, "precondition 100%")
            assert info.value.trailers == (("why", "because"), ("detail-bin", "AQI"))
            with pytest.raises(ValueError, match="metadata"):
                await channel.unary(PATH, b"x", metadata=(("Bad Name", "v"),))
            with pytest.raises(ValueError, match="method path"):
                await channel.unary("no-slash", b"x")
            assert channel.statistics().calls_failed == 1


async def test_cancelled_call_resets_the_stream_at_once() -> None:
    async def never_answer(call: FakeCall) -> None:
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with open_fake_server(never_answer) as server, open_grpcio_channel(server.endpoint) as channel:
            with trio.move_on_after(0.1):
                await channel.unary(PATH, b"x")
            resets = await server.wait_for_reset()
            assert resets == [(1, 8)]  # RST_STREAM(CANCEL)
            assert channel.statistics().open_streams == 0


# -- TLS -------------------------------------------------------------------------------------------------


async def test_tls_verifies_the_server_and_has_no_client_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server_tls = [f"--cert-file={pki.server_cert}", f"--key-file={pki.server_key}"]
    context = ssl.create_default_context(cafile=str(pki.ca))
    with trio.fail_after(30):
        async with etcd_server(host="127.0.0.1", unsafe_no_fsync=True, extra_args=server_tls) as server:
            async with open_grpcio_channel(server.endpoint, ssl_context=context) as channel:
                await channel.unary(PUT, put(b"tls", b"secret"), metadata=HASLEADER)
                got = rpc_pb2.RangeResponse.FromString(await channel.unary(RANGE, range_(b"tls")))
                assert got.kvs[0].value == b"secret"
            # A CA that did not sign the server's certificate: the handshake fails, nothing was sent.
            (tmp_path / "other").mkdir()
            other = make_pki(tmp_path / "other")
            wrong = ssl.create_default_context(cafile=str(other.ca))
            async with open_grpcio_channel(server.endpoint, ssl_context=wrong) as channel:
                with pytest.raises(ConnectionLost) as info:
                    await channel.unary(RANGE, range_(b"tls"))
                assert info.value.request_sent is False
        mutual = [*server_tls, "--client-cert-auth", f"--trusted-ca-file={pki.ca}"]
        async with etcd_server(host="127.0.0.1", unsafe_no_fsync=True, extra_args=mutual) as server:
            context.load_cert_chain(pki.client_cert, pki.client_key)  # invisible to grpcio
            async with open_grpcio_channel(server.endpoint, ssl_context=context) as channel:
                with pytest.raises(ConnectionLost, match="only from a context made by") as info:
                    await channel.unary(RANGE, range_(b"tls"))
                assert info.value.request_sent is False
            # Mutual TLS: a context from tls_context() hands grpc the client chain and key it loaded.
            for mtls in (
                tls_context(cafile=pki.ca, certfile=pki.client_cert, keyfile=pki.client_key),
                _loaded_later(tls_context(cafile=pki.ca), pki),
            ):
                async with open_grpcio_channel(server.endpoint, ssl_context=mtls) as channel:
                    await channel.unary(PUT, put(b"mtls", b"both ways"), metadata=HASLEADER)
                    got = rpc_pb2.RangeResponse.FromString(await channel.unary(RANGE, range_(b"mtls")))
                    assert got.kvs[0].value == b"both ways"
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError, match="always verifies"):
        async with open_grpcio_channel("127.0.0.1:2379", ssl_context=unverified):
            pass  # pragma: no cover


def _loaded_later(context: ssl.SSLContext, pki: Pki) -> ssl.SSLContext:
    context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


def test_tls_context_refuses_what_grpc_cannot_use(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with pytest.raises(ValueError, match="keyfile needs certfile"):
        tls_context(keyfile=pki.client_key)
    # A password-protected key: grpc takes no password, so the grpcio channel refuses it up front.
    encrypted = tmp_path / "client-encrypted.key"
    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    context = tls_context(cafile=pki.ca)
    context.load_cert_chain(pki.client_cert, encrypted, password="pw")
    with pytest.raises(ValueError, match="password-protected client key"):
        trio.run(_open_and_close, context)


async def _open_and_close(context: ssl.SSLContext) -> None:
    async with open_grpcio_channel("127.0.0.1:2379", ssl_context=context):
        pass  # pragma: no cover


# -- the channel object, and choosing the transport ------------------------------------------------------------


async def test_statistics_repr_and_closed_channel(etcd_endpoint: str) -> None:
    with trio.fail_after(10):
        async with open_grpcio_channel(etcd_endpoint) as channel:
            assert channel.statistics().state is ChannelState.IDLE
            assert repr(channel).startswith(f"<etcdsync GrpcioChannel to {etcd_endpoint} at 0x")
            async with channel.stream(WATCH) as stream:
                assert repr(stream).startswith("<etcdsync GrpcioStream at 0x")
                stats = channel.statistics()
                assert (stats.state, stats.open_streams, stats.calls_started) == (ChannelState.READY, 1, 1)
        assert channel.statistics().state is ChannelState.CLOSED
        with pytest.raises(trio.ClosedResourceError):
            await channel.unary(RANGE, range_(b"k"))
    with pytest.raises(TypeError):
        GrpcioChannel(etcd_endpoint, options=[], credentials=None, max_send_message_length=1)
    with pytest.raises(TypeError):
        GrpcioStream(channel, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("endpoint", "option", "value"),
    [
        ("127.0.0.1", "keepalive_interval", 10.0),
        ("127.0.0.1:0", "keepalive_interval", 10.0),
        ("127.0.0.1:2379", "keepalive_interval", 0.0),
        ("127.0.0.1:2379", "keepalive_timeout", -1.0),
        ("127.0.0.1:2379", "max_receive_message_length", 0),
        ("127.0.0.1:2379", "max_send_message_length", 0),
    ],
)
async def test_bad_options(endpoint: str, option: str, value: float) -> None:
    with pytest.raises(ValueError, match="endpoint|must be"):
        async with open_grpcio_channel(endpoint, **{option: value}):  # type: ignore[arg-type]
            pass  # pragma: no cover
    assert io_threads() == []


async def test_open_client_with_the_grpcio_transport(etcd_endpoint: str, etcd_prefix: bytes) -> None:
    with trio.fail_after(10):
        async with etcdsync.open_client(etcd_endpoint, transport="grpcio") as client:
            await client.put(etcd_prefix + b"k", b"v")
            kv = await client.get(etcd_prefix + b"k")
            assert kv is not None and kv.value == b"v"
            assert sorted(t.name for t in io_threads()) == [f"etcdsync-grpcio {etcd_endpoint}"]
        assert io_threads() == []


async def test_missing_grpcio_is_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "grpc", None)
    monkeypatch.delitem(sys.modules, "etcdsync.client._transport._grpcio")
    with pytest.raises(ImportError, match=r"pip install 'etcdsync\[grpcio\]'"):
        channel_opener("grpcio")
    with pytest.raises(ImportError, match=r"pip install 'etcdsync\[grpcio\]'"):
        async with etcdsync.open_client("127.0.0.1:2379", transport="grpcio"):
            pass  # pragma: no cover
    assert channel_opener("h2") is not None
    with pytest.raises(ValueError, match="transport must be one of"):
        async with etcdsync.open_client("127.0.0.1:2379", transport="purerpc"):  # type: ignore[arg-type]
            pass  # pragma: no cover
