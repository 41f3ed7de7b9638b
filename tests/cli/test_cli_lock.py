"""``etcdsync lock``: exclusion with ``etcdctl lock``, the supervised COMMAND, and losing the lock."""

from __future__ import annotations

import os
import signal
import sys

import pytest
import trio

from etcdsync.client import Client

from .helpers import CHILD, cli, etcdctl, one_line_error, queue, run, spawn, wait_queue_len

EXIT_LOST = 75


async def test_lock_excludes_a_waiting_etcdctl_lock(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"lock"
    async with spawn(cli(etcd_endpoint, "lock", name.decode())) as ours:
        key = await ours.stdout.next()
        token = int(await ours.stdout.next())
        kv = await client.get(key)
        assert kv is not None and kv.create_revision == token and key.startswith(name + b"/")
        async with spawn(etcdctl(etcd_endpoint, "lock", name.decode())) as theirs:
            await wait_queue_len(client, name, 2)  # etcdctl queued behind us ...
            with trio.move_on_after(0.5):
                line = await theirs.stdout.next()
                pytest.fail(f"etcdctl got the lock while we held it: {line!r}")
            ours.signal(signal.SIGINT)
            assert await ours.wait() == 0  # stopped while holding: released, exit 0
            their_key = await theirs.stdout.next()  # ... and gets it once we release
            assert [kv.key for kv in await queue(client, name)] == [their_key]
            theirs.signal(signal.SIGINT)
            await theirs.wait()


async def test_lock_waits_for_etcdctl_lock(client: Client, etcd_endpoint: str, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"lock"
    async with spawn(etcdctl(etcd_endpoint, "lock", name.decode())) as theirs:
        their_key = await theirs.stdout.next()
        async with spawn(cli(etcd_endpoint, "lock", name.decode())) as ours:
            await wait_queue_len(client, name, 2)
            with trio.move_on_after(0.5):
                line = await ours.stdout.next()
                pytest.fail(f"etcdsync got the lock while etcdctl held it: {line!r}")
            theirs.signal(signal.SIGINT)  # etcdctl unlocks and exits
            key = await ours.stdout.next()
            token = int(await ours.stdout.next())
            assert await client.get(their_key) is None
            kvs = await queue(client, name)
            assert [(kv.key, kv.create_revision) for kv in kvs] == [(key, token)]
            ours.signal(signal.SIGTERM)
            assert await ours.wait() == 0
            assert await queue(client, name) == []


async def test_interrupted_while_waiting_exits_130_and_leaves_no_key(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"lock"
    async with spawn(cli(etcd_endpoint, "lock", name.decode())) as holder:
        key = await holder.stdout.next()
        async with spawn(cli(etcd_endpoint, "lock", name.decode())) as waiter:
            await wait_queue_len(client, name, 2)
            waiter.signal(signal.SIGINT)
            assert await waiter.wait() == 128 + signal.SIGINT
            assert [kv.key for kv in await queue(client, name)] == [key]


async def test_command_sees_key_token_and_lease_and_sigint_is_forwarded(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"lock"
    async with spawn(
        cli(etcd_endpoint, "lock", name.decode(), "--", sys.executable, CHILD, "report", "3")
    ) as ours:
        env = (await ours.child_started())["env"]
        assert isinstance(env, dict)
        key = env["ETCDSYNC_LOCK_KEY"]
        kv = await client.get(key)
        assert kv is not None
        assert int(env["ETCDSYNC_FENCING_TOKEN"]) == kv.create_revision  # read back from etcd
        assert int(env["ETCDSYNC_LEASE_ID"], 16) == kv.lease
        assert (env["ETCD_LOCK_KEY"], env["ETCD_LOCK_REV"]) == (key, env["ETCDSYNC_FENCING_TOKEN"])
        ours.signal(signal.SIGINT)
        assert await ours.stdout.json() == {"signal": "SIGINT"}  # forwarded to the command ...
        assert await ours.wait() == 3  # ... whose exit status is ours
        assert await client.get(key) is None  # released
        assert (await ours.stderr.rest()) == b""


async def test_exit_status_passes_through(etcd_endpoint: str, etcd_prefix: bytes) -> None:
    name = (etcd_prefix + b"lock").decode()
    assert (
        await run(cli(etcd_endpoint, "lock", name, "--", sys.executable, "-c", "raise SystemExit(3)"))
    ).status == 3
    assert (await run(cli(etcd_endpoint, "lock", name, "--", "true"))).status == 0
    killed = await run(cli(etcd_endpoint, "lock", name, "--", "sh", "-c", "kill -KILL $$"))
    assert killed.status == 128 + signal.SIGKILL  # like a shell
    missing = await run(cli(etcd_endpoint, "lock", name, "--", "no-such-command-etcdsync"))
    assert missing.status == 127
    assert "no-such-command-etcdsync: command not found" in one_line_error(missing.stderr)


async def test_revoked_lease_stops_the_command_with_sigterm(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"lock"
    async with spawn(
        cli(etcd_endpoint, "lock", name.decode(), "--", sys.executable, CHILD, "report", "3")
    ) as ours:
        await ours.child_started()
        (kv,) = await queue(client, name)
        await client.lease_revoke(kv.lease)  # from outside: the lock is gone
        assert await ours.stdout.json() == {"signal": "SIGTERM"}
        assert await ours.wait() == EXIT_LOST  # not the command's own status (0)
        error = one_line_error((await ours.stderr.rest()).decode())
        assert error.startswith(f"etcdsync lock: lost the lock {kv.key.decode()}:")
        assert "SIGTERM" in error


async def test_command_ignoring_sigterm_is_killed(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"lock"
    argv = cli(
        etcd_endpoint, "lock", "--kill-grace", "0.5", name.decode(), "--", sys.executable, CHILD, "stubborn"
    )
    async with spawn(argv) as ours:
        pid = (await ours.child_started())["pid"]
        assert isinstance(pid, int)
        (kv,) = await queue(client, name)
        await client.lease_revoke(kv.lease)
        assert await ours.stdout.json() == {"signal": "SIGTERM ignored"}
        assert await ours.wait() == EXIT_LOST
        stderr = (await ours.stderr.rest()).decode()
        assert "Traceback" not in stderr
        assert "sending SIGKILL" in stderr
        with pytest.raises(ProcessLookupError):  # reaped by etcdsync: gone
            os.kill(pid, 0)


async def test_lock_held_without_command_reports_loss(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"lock"
    async with spawn(cli(etcd_endpoint, "lock", name.decode())) as ours:
        key = await ours.stdout.next()
        kv = await client.get(key)
        assert kv is not None
        await client.delete(key)  # by hand, e.g. `etcdctl del`
        assert await ours.wait() == EXIT_LOST
        assert "lost the lock" in one_line_error((await ours.stderr.rest()).decode())
