"""A single real etcd: start, answer, options, pause/resume, restart, and cleanup on exit."""

from __future__ import annotations

import base64
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from etcdsync.testing import EtcdHarnessError, EtcdServer, etcd_process, etcd_server
from etcdsync.testing._http import member_status

Leftovers = Callable[[Path], tuple[list[tuple[int, str]], list[str]]]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode().split("\0")


def environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.partition("=") for item in f.read().decode().split("\0") if item]
    return {name: value for name, _, value in pairs}


async def get_value(server: EtcdServer, key: bytes) -> bytes | None:
    reply = await server.gateway("/v3/kv/range", {"key": b64(key)})
    kvs = reply.get("kvs")
    assert kvs is None or isinstance(kvs, list)
    return base64.b64decode(kvs[0]["value"]) if kvs else None


async def test_server_starts_answers_and_is_cleaned_up(isolated_tmpdir: Path, leftovers: Leftovers) -> None:
    with trio.fail_after(30):
        async with etcd_server() as server:
            assert re.fullmatch(r"127\.\d+\.\d+\.\d+:\d+", server.endpoint)
            assert server.client_url == f"http://{server.endpoint}"
            assert server.data_dir.is_dir()
            assert server.data_dir.parent.parent == isolated_tmpdir
            assert server.data_dir.parent.name.startswith("etcdsync-")
            assert server.running and not server.paused
            assert environ(server.pid)["ETCDSYNC_HARNESS_RUN"]

            status = await server.status()
            assert status.revision > 0
            assert status.is_leader

            await server.gateway("/v3/kv/put", {"key": b64(b"hello"), "value": b64(b"world")})
            assert await get_value(server, b"hello") == b"world"
            assert (await server.status()).revision == status.revision + 1

    assert not server.running
    assert leftovers(isolated_tmpdir) == ([], [])


async def test_pause_resume_restart_keep_address_and_data(isolated_tmpdir: Path) -> None:
    with trio.fail_after(30):
        async with etcd_server() as server:
            await server.gateway("/v3/kv/put", {"key": b64(b"k"), "value": b64(b"v1")})

            server.pause()
            assert server.paused
            with trio.move_on_after(0.3) as scope:
                await server.status()
            assert scope.cancelled_caught, "a paused member must not answer"
            server.resume()
            assert not server.paused
            assert (await server.status()).is_leader

            endpoint, data_dir, old_pid = server.endpoint, server.data_dir, server.pid
            await server.kill()
            assert not server.running
            assert server.pid == old_pid
            with pytest.raises(RuntimeError, match="is not running"):
                server.pause()
            await server.kill()  # idempotent

            await server.restart()
            assert server.running
            assert (server.endpoint, server.data_dir) == (endpoint, data_dir)
            assert server.pid != old_pid
            assert "--initial-cluster-state=existing" in cmdline(server.pid)
            assert await get_value(server, b"k") == b"v1"

            await server.restart()  # restarting a running member kills it first
            assert await get_value(server, b"k") == b"v1"


async def test_options_reach_the_command_line(isolated_tmpdir: Path) -> None:
    with trio.fail_after(30):
        async with etcd_server(
            quota_backend_bytes=8 * 1024 * 1024,
            auth_token_ttl=17,
            log_level="info",
            extra_args=["--auto-compaction-mode=periodic", "--auto-compaction-retention=2s"],
            heartbeat_interval=40,
            election_timeout=400,
        ) as server:
            argv = cmdline(server.pid)
            for flag in (
                "--quota-backend-bytes=8388608",
                "--auth-token-ttl=17",
                "--log-level=info",
                "--auto-compaction-mode=periodic",
                "--auto-compaction-retention=2s",
                "--heartbeat-interval=40",
                "--election-timeout=400",
            ):
                assert flag in argv
            assert '"level":"info"' in server.log_path.read_text()  # zap JSON lines at info level


async def test_unsafe_no_fsync_uses_tmpfs_on_etcd_3_4(isolated_tmpdir: Path) -> None:
    with trio.fail_after(30):
        async with etcd_server(unsafe_no_fsync=True) as server:
            if "--unsafe-no-fsync" in cmdline(server.pid):
                pytest.fail("this test expects etcd 3.4, which has no --unsafe-no-fsync")
            assert str(server.data_dir).startswith("/dev/shm/etcdsync-")
            workdir = server.data_dir.parent
            assert (await server.status()).is_leader
        assert not workdir.exists()


async def test_auto_tls_server_is_probed_and_queried_over_tls(isolated_tmpdir: Path) -> None:
    with trio.fail_after(30):
        async with etcd_server(extra_args=["--auto-tls"]) as server:
            assert server.client_url == f"https://{server.endpoint}"
            assert (await server.status()).is_leader
            await server.gateway("/v3/kv/put", {"key": b64(b"t"), "value": b64(b"ls")})
            assert await get_value(server, b"t") == b"ls"


async def test_explicit_host_falls_back_to_free_ports(isolated_tmpdir: Path) -> None:
    host = "127.0.77.77"
    with socket.socket() as squatter, trio.fail_after(30):
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((host, 2379))
        squatter.listen()
        async with etcd_server(host=host) as server:
            address, port = server.endpoint.split(":")
            assert address == host
            assert port != "2379"
            assert (await server.status()).is_leader


async def test_bad_flag_fails_fast_with_the_log(isolated_tmpdir: Path, leftovers: Leftovers) -> None:
    with trio.fail_after(30), pytest.raises(EtcdHarnessError, match=r"exited with status") as info:
        async with etcd_server(extra_args=["--no-such-flag=1"]):
            pytest.fail("must not start")
    assert "no-such-flag" in str(info.value)
    assert leftovers(isolated_tmpdir) == ([], [])


async def test_body_exception_still_cleans_up(isolated_tmpdir: Path, leftovers: Leftovers) -> None:
    with trio.fail_after(30), pytest.raises(ZeroDivisionError):
        async with etcd_server() as server:
            server.pause()  # SIGKILL must work on a stopped process too
            1 / 0  # noqa: B018
    assert leftovers(isolated_tmpdir) == ([], [])


def test_sync_twin_starts_restarts_and_cleans_up(isolated_tmpdir: Path, leftovers: Leftovers) -> None:
    with etcd_process() as process:
        assert process.running
        old_pid = process.pid
        process.pause()
        assert process.paused
        process.resume()
        process.restart()
        assert process.pid != old_pid
        assert process.running
    assert not process.running
    assert leftovers(isolated_tmpdir) == ([], [])


async def test_session_fixtures(
    etcd_endpoint: str, etcd_prefix: bytes, request: pytest.FixtureRequest
) -> None:
    with trio.fail_after(10):
        assert (await member_status(etcd_endpoint)).leader != 0
    assert etcd_prefix.startswith(b"/t/") and etcd_prefix.endswith(b"/")
    assert b"test_session_fixtures" in etcd_prefix
    assert re.fullmatch(rb"/t/[A-Za-z0-9_.-]+/[0-9a-f]{8}/", etcd_prefix)
    assert request.getfixturevalue("etcd_endpoint") == etcd_endpoint  # one server per session
