"""TLS (server-verified and mutual) and user/password auth against real etcd servers."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from typing import Literal

import pytest
import trio
from transport.certs import Pki, make_pki  # tests/ is on sys.path (its conftest)

import etcdsync
from etcdsync.client import tls_context
from etcdsync.testing import EtcdServer, etcd_server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def client_context(pki: Pki, *, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if with_cert:
        ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return ctx


async def test_tls_server_verified(pki: Pki) -> None:
    args = ["--cert-file", str(pki.server_cert), "--key-file", str(pki.server_key)]
    async with etcd_server(host="127.0.0.1", extra_args=args) as server:
        async with etcdsync.open_client(
            f"https://{server.endpoint}", tls=client_context(pki, with_cert=False)
        ) as c:
            await c.put(b"/tls/k", b"v")
            kv = await c.get(b"/tls/k")
            assert kv is not None and kv.value == b"v"
        # Plaintext against a TLS server: a clear failure, not a hang.
        async with etcdsync.open_client(server.endpoint, max_rounds=1) as c:
            with trio.fail_after(20), pytest.raises(etcdsync.NoEndpointAvailableError):
                await c.get(b"/tls/k")
        # A client that does not trust the server's CA refuses the connection.
        async with etcdsync.open_client(
            f"https://{server.endpoint}", tls=ssl.create_default_context(), max_rounds=1
        ) as c:
            with trio.fail_after(20), pytest.raises(etcdsync.NoEndpointAvailableError) as info:
                await c.get(b"/tls/k")
            assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "certificate" in str(info.value).lower()


@pytest.mark.parametrize("transport", ["h2", "grpcio"])
async def test_mutual_tls(pki: Pki, transport: Literal["h2", "grpcio"]) -> None:
    args = [
        "--cert-file", str(pki.server_cert), "--key-file", str(pki.server_key),
        "--client-cert-auth", "--trusted-ca-file", str(pki.ca),
    ]  # fmt: skip
    async with etcd_server(host="127.0.0.1", extra_args=args) as server:
        contexts = [tls_context(cafile=pki.ca, certfile=pki.client_cert, keyfile=pki.client_key)]
        if transport == "h2":  # h2 hands trio the context itself, so a plain one works as well
            contexts.append(client_context(pki, with_cert=True))
        for context in contexts:
            async with etcdsync.open_client(
                f"https://{server.endpoint}", tls=context, transport=transport
            ) as c:
                await c.put(b"/mtls/k", b"v")
                assert (await c.get(b"/mtls/k")) is not None
        async with etcdsync.open_client(
            f"https://{server.endpoint}",
            tls=client_context(pki, with_cert=False),
            max_rounds=1,
            transport=transport,
        ) as c:
            with trio.fail_after(20), pytest.raises(etcdsync.NoEndpointAvailableError):
                await c.get(b"/mtls/k")


def etcdctl(server: EtcdServer, *args: str) -> None:
    path = shutil.which("etcdctl")
    if path is None:
        pytest.fail("etcdctl not found: install Debian's etcd-client (make test's bootstrap does)")
    subprocess.run(
        [path, f"--endpoints={server.endpoint}", *args], check=True, capture_output=True, timeout=30
    )


async def enable_auth(server: EtcdServer) -> None:
    def setup() -> None:
        etcdctl(server, "user", "add", "root:rootpw")
        etcdctl(server, "role", "add", "root")
        etcdctl(server, "user", "grant-role", "root", "root")
        etcdctl(server, "user", "add", "alice:alicepw")
        etcdctl(server, "role", "add", "app")
        etcdctl(server, "role", "grant-permission", "app", "--prefix=true", "readwrite", "/app/")
        etcdctl(server, "user", "grant-role", "alice", "app")
        etcdctl(server, "auth", "enable")

    await trio.to_thread.run_sync(setup)


@pytest.fixture
async def auth_server() -> AsyncIterator[EtcdServer]:
    async with etcd_server(auth_token_ttl=1) as server:
        await enable_auth(server)
        yield server


async def test_auth_user_password_and_permissions(auth_server: EtcdServer) -> None:
    async with etcdsync.open_client(auth_server.endpoint, username="alice", password="alicepw") as c:
        await c.put(b"/app/k", b"v")
        kv = await c.get(b"/app/k")
        assert kv is not None and kv.value == b"v"
        with pytest.raises(etcdsync.PermissionDeniedError):
            await c.put(b"/other/k", b"v")
        await c.put(b"/app/k2", b"still usable")
    async with etcdsync.open_client(auth_server.endpoint, username="alice", password="wrong") as c:
        with pytest.raises(etcdsync.AuthenticationError):
            await c.get(b"/app/k")
    async with etcdsync.open_client(auth_server.endpoint) as c:
        with pytest.raises(etcdsync.AuthenticationError):
            await c.get(b"/app/k")


async def test_expired_token_is_refreshed_transparently(auth_server: EtcdServer) -> None:
    async with etcdsync.open_client(auth_server.endpoint, username="alice", password="alicepw") as c:
        await c.put(b"/app/k", b"1")
        first_token = c._token
        await trio.sleep(2.5)  # idle past --auth-token-ttl=1: the server forgets the simple token
        await c.put(b"/app/k", b"2")
        kv = await c.get(b"/app/k")
        assert kv is not None and kv.value == b"2"
        assert c._token is not None and c._token != first_token


async def test_sessions_survive_token_expiry(auth_server: EtcdServer) -> None:
    async with (
        etcdsync.open_client(auth_server.endpoint, username="alice", password="alicepw") as c,
        etcdsync.open_session(c, ttl=3) as session,
    ):
        await trio.sleep(4)  # longer than the lease TTL and the token TTL
        assert not session.expired
        async with etcdsync.Mutex(session, "/app/lock") as m:
            await c.put(b"/app/guarded", b"ok", guard=m.is_owner())
