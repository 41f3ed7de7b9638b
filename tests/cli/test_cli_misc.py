"""``etcdsync watch`` and ``barrier``; connection flags, environment variables, and bad input."""

from __future__ import annotations

import signal
import socket
from collections.abc import AsyncIterator

import pytest
import trio
from transport.certs import Pki, make_pki  # tests/ is on sys.path (its conftest)

from etcdsync._cli._connect import ConnectOptions, resolve_options
from etcdsync._cli._runtime import UsageError
from etcdsync.client import Client
from etcdsync.testing import EtcdServer, etcd_server

from .helpers import clean_env, cli, etcdctl, one_line_error, run, spawn


async def test_watch_prints_events_like_etcdctl(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    key = etcd_prefix + b"config"
    start = (await client.put(key, b"1")).header.revision
    await client.put(key, b"2")
    await client.delete(key)
    await client.put(etcd_prefix + b"other", b"x")
    argv = ["watch", "--prefix", "--rev", str(start), etcd_prefix.decode()]
    async with spawn(cli(etcd_endpoint, *argv)) as ours, spawn(etcdctl(etcd_endpoint, *argv)) as theirs:
        expected = [
            b"PUT",
            key,
            b"1",
            b"PUT",
            key,
            b"2",
            b"DELETE",
            key,
            b"",
            b"PUT",
            etcd_prefix + b"other",
            b"x",
        ]
        assert [await ours.stdout.next() for _ in expected] == expected
        assert [await theirs.stdout.next() for _ in expected] == expected  # etcdctl agrees, line for line
        ours.signal(signal.SIGINT)
        assert await ours.wait() == 0


async def test_watch_prev_kv_and_live_events(client: Client, etcd_endpoint: str, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"
    start = (await client.put(key, b"old")).header.revision + 1
    async with spawn(cli(etcd_endpoint, "watch", "--prev-kv", "--rev", str(start), key.decode())) as ours:
        await client.put(key, b"new")
        assert [await ours.stdout.next() for _ in range(5)] == [b"PUT", key, b"old", key, b"new"]
        ours.signal(signal.SIGTERM)
        assert await ours.wait() == 0


async def test_watch_of_a_compacted_revision_is_one_line(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    rev = (await client.put(etcd_prefix + b"k", b"1")).header.revision
    await client.put(etcd_prefix + b"k", b"2")
    await client.compact(rev + 1)
    result = await run(cli(etcd_endpoint, "watch", "--rev", str(rev), (etcd_prefix + b"k").decode()))
    assert result.status == 1
    assert f"revision {rev} has been compacted" in one_line_error(result.stderr)


async def test_barrier_hold_wait_release(client: Client, etcd_endpoint: str, etcd_prefix: bytes) -> None:
    name = (etcd_prefix + b"freeze").decode()
    assert (await run(cli(etcd_endpoint, "barrier", "wait", name))).status == 0  # open: returns at once
    held = await run(cli(etcd_endpoint, "barrier", "hold", name))
    assert (held.status, held.stderr) == (0, "")
    assert await client.get(name) is not None
    again = await run(cli(etcd_endpoint, "barrier", "hold", name))
    assert again.status == 0 and "was already held" in one_line_error(again.stderr)
    async with spawn(cli(etcd_endpoint, "barrier", "wait", name)) as waiter:
        await trio.sleep(0.2)  # not a timing assertion: gives a broken wait a chance to return early
        assert waiter.process.returncode is None
        released = await run(cli(etcd_endpoint, "barrier", "release", name))
        assert (released.status, released.stderr) == (0, "")
        assert await waiter.wait() == 0
    assert await client.get(name) is None
    twice = await run(cli(etcd_endpoint, "barrier", "release", name))
    assert twice.status == 0 and "was not held" in one_line_error(twice.stderr)


async def test_barrier_wait_interrupted_exits_130(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"freeze"
    await client.put(name, b"")
    async with spawn(cli(etcd_endpoint, "barrier", "wait", name.decode())) as waiter:
        await waiter.handles_signals()  # connecting or waiting: either way SIGINT ends it with 130
        waiter.signal(signal.SIGINT)
        assert await waiter.wait() == 128 + signal.SIGINT


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_endpoints_are_one_line_naming_each() -> None:
    a, b = f"127.0.0.1:{closed_port()}", f"127.0.0.1:{closed_port()}"
    result = await run(cli(f"{a},{b}", "lock", "/x"))
    assert result.status == 1
    line = one_line_error(result.stderr)
    assert line.startswith("etcdsync lock: cannot reach etcd (")
    assert a in line and b in line and "refused" in line
    debug = await run(cli(a, "--debug", "barrier", "wait", "/x"))
    assert debug.status == 1 and "Traceback" in debug.stderr and "NoEndpointAvailableError" in debug.stderr


async def test_endpoint_environment_variables(etcd_endpoint: str, etcd_prefix: bytes) -> None:
    bad = f"127.0.0.1:{closed_port()}"
    name = (etcd_prefix + b"b").decode()
    argv = cli(None, "barrier", "wait", name)
    assert (await run(argv, env=clean_env(ETCDCTL_ENDPOINTS=etcd_endpoint))).status == 0
    assert (
        await run(argv, env=clean_env(ETCDSYNC_ENDPOINTS=etcd_endpoint, ETCDCTL_ENDPOINTS=bad))
    ).status == 0
    failed = await run(argv, env=clean_env(ETCDSYNC_ENDPOINTS=bad, ETCDCTL_ENDPOINTS=etcd_endpoint))
    assert failed.status == 1 and bad in one_line_error(failed.stderr)
    flag_wins = await run(cli(etcd_endpoint, "barrier", "wait", name), env=clean_env(ETCDSYNC_ENDPOINTS=bad))
    assert flag_wins.status == 0
    after_command = await run([*cli(None, "barrier", "--endpoints", etcd_endpoint, "wait", name)])
    assert after_command.status == 0  # connection flags work after the command too


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "alice", "barrier", "wait", "/x"], "--user alice has no password"),
        (["--password", "pw", "barrier", "wait", "/x"], "--password needs --user"),
        (["--key", "k.pem", "barrier", "wait", "/x"], "--key needs --cert"),
        (["--cacert", "/nonexistent/ca.pem", "barrier", "wait", "/x"], "cannot load the CA certificate"),
        (["watch", "/x", "--", "echo"], "only lock and semaphore run a COMMAND"),
        (["elect", "/x"], "elect needs a PROPOSAL"),
        (["elect", "--listen", "/x", "p"], "elect --listen takes no PROPOSAL"),
        (["--endpoints", "ftp://h:1", "barrier", "wait", "/x"], "--endpoints"),
        (["lock", ""], "NAME must not be empty"),
    ],
)
async def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = await run(cli(None, *args))
    assert result.status in (1, 2)
    assert message in one_line_error(result.stderr)


async def test_argparse_errors_exit_2() -> None:
    result = await run(cli(None, "semaphore", "/x"))  # --limit is required
    assert result.status == 2 and "--limit" in result.stderr and "Traceback" not in result.stderr
    assert (await run(cli(None))).status == 2


def resolve(
    environ: dict[str, str], *, endpoints: str | None = None, user: str | None = None
) -> ConnectOptions:
    return resolve_options(
        endpoints=endpoints,
        cacert=None,
        cert=None,
        key=None,
        insecure_skip_tls_verify=False,
        user=user,
        password=None,
        dial_timeout=5.0,
        environ=environ,
    )


def test_resolve_options_precedence_and_user_forms() -> None:
    assert resolve({}).endpoints == ("127.0.0.1:2379",)
    env = {"ETCDCTL_ENDPOINTS": "a:1,b:2", "ETCDCTL_USER": "bob:pw1", "ETCDSYNC_CACERT": "ca.pem"}
    options = resolve(env)
    assert options.endpoints == ("a:1", "b:2")
    assert (options.username, options.password, options.cacert) == ("bob", "pw1", "ca.pem")
    options = resolve(
        {**env, "ETCDSYNC_ENDPOINTS": "c:3", "ETCDSYNC_USER": "carol", "ETCDSYNC_PASSWORD": "p:w"}
    )
    assert options.endpoints == ("c:3",)
    assert (options.username, options.password) == ("carol", "p:w")  # with a password, USER is the name
    options = resolve(env, endpoints="d:4", user="dave:x:y")
    assert options.endpoints == ("d:4",)
    assert (options.username, options.password) == ("dave", "x:y")
    with pytest.raises(UsageError, match=r"^--user has an empty user name$"):
        resolve({}, user=":pw")


# ---------------------------------------------------------------------------------------------------
# TLS and authentication: the flags reach the client.


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def mtls_server(pki: Pki) -> AsyncIterator[EtcdServer]:
    args = [
        "--cert-file", str(pki.server_cert), "--key-file", str(pki.server_key),
        "--client-cert-auth", "--trusted-ca-file", str(pki.ca),
    ]  # fmt: skip
    async with etcd_server(host="127.0.0.1", extra_args=args) as server:
        yield server


async def test_tls_flags_and_environment(mtls_server: EtcdServer, pki: Pki) -> None:
    endpoint = f"https://{mtls_server.endpoint}"
    tls = ["--cacert", str(pki.ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key)]
    held = await run(cli(endpoint, *tls, "barrier", "hold", "/tls/b"))
    assert (held.status, held.stderr) == (0, "")
    env = clean_env(
        ETCDCTL_CACERT=str(pki.ca), ETCDSYNC_CERT=str(pki.client_cert), ETCDSYNC_KEY=str(pki.client_key)
    )
    assert (await run(cli(mtls_server.endpoint, "barrier", "release", "/tls/b"), env=env)).status == 0
    refused = await run(cli(endpoint, "--cacert", str(pki.ca), "barrier", "wait", "/tls/b"))  # no client cert
    assert refused.status == 1 and "cannot reach etcd" in one_line_error(refused.stderr)
    untrusted = await run(cli(endpoint, "barrier", "wait", "/tls/b"))  # the system CAs do not know ours
    assert untrusted.status == 1 and "certificate" in one_line_error(untrusted.stderr).lower()


async def test_user_flags(etcd_binary: str) -> None:
    del etcd_binary  # fail, never skip, without etcd
    async with etcd_server() as server:
        setup = [
            ["user", "add", "root:rootpw"], ["role", "add", "root"], ["user", "grant-role", "root", "root"],
            ["user", "add", "alice:alicepw"], ["role", "add", "app"],
            ["role", "grant-permission", "app", "--prefix=true", "readwrite", "/app/"],
            ["user", "grant-role", "alice", "app"], ["auth", "enable"],
        ]  # fmt: skip
        for args in setup:
            assert (await run(etcdctl(server.endpoint, *args))).status == 0
        ok = await run(cli(server.endpoint, "--user", "alice:alicepw", "barrier", "hold", "/app/b"))
        assert (ok.status, ok.stderr) == (0, "")
        env = clean_env(ETCDSYNC_USER="alice", ETCDCTL_PASSWORD="alicepw")
        assert (await run(cli(server.endpoint, "barrier", "release", "/app/b"), env=env)).status == 0
        wrong = await run(
            cli(server.endpoint, "--user", "alice", "--password", "nope", "barrier", "wait", "/app/b")
        )
        assert wrong.status == 1 and "authentication failed" in one_line_error(wrong.stderr)
        denied = await run(cli(server.endpoint, "--user", "alice:alicepw", "barrier", "hold", "/other"))
        assert denied.status == 1 and "PermissionDenied" in one_line_error(denied.stderr)
