"""h2-only behaviour against a real etcd 3.4: etcd's ping policy, and mutual TLS.

What both transports must do against etcd is in ``test_conformance.py``.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio

from etcdsync.client._pb import rpc_pb2
from etcdsync.client._transport import ConnectionLost, open_h2_channel
from etcdsync.client._transport._h2proto import GoAwayReceived
from etcdsync.testing import etcd_server

from .certs import make_pki
from .test_conformance import HASLEADER, LEASE_KEEP_ALIVE, PUT, RANGE, WATCH, put, range_, watch_create


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
