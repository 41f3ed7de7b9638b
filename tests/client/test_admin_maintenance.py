"""Maintenance against a real etcd: the NOSPACE alarm and its recovery (fault-injection notes §2h), status,
hash, defragment, and snapshots checked by ``etcdctl``; plus the snapshot stream's accounting, driven by
hand for the corruptions a real etcd cannot produce on demand."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import trio

import etcdsync
from etcdsync import NoSpaceError, SnapshotIntegrityError
from etcdsync.client import Alarm, AlarmType, Client, _snapshot as snapshot_module
from etcdsync.client._snapshot import SnapshotAccount
from etcdsync.testing import etcd_server


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


QUOTA = 4 * 1024 * 1024


def etcdctl() -> str:
    path = shutil.which("etcdctl")
    if path is None:
        pytest.fail("etcdctl not found: install Debian's etcd-client (make test's bootstrap does)")
    return path


async def snapshot_status(path: Path) -> dict[str, int]:
    result = await trio.run_process(
        [etcdctl(), "snapshot", "status", str(path), "-w", "json"], capture_stdout=True, capture_stderr=True
    )
    assert result.returncode == 0
    status: dict[str, int] = json.loads(result.stdout)
    return status


async def test_nospace_alarm_and_recovery() -> None:
    """§2h: a 4 MiB quota fills after ~14 puts of 300 KB; compact + defragment + disarm recovers."""
    async with etcd_server(quota_backend_bytes=QUOTA) as server, etcdsync.open_client(server.endpoint) as c:
        value = b"x" * 300_000
        puts = 0
        with pytest.raises(NoSpaceError):
            for _ in range(200):
                await c.put(b"/quota/k", value)  # one key: compaction frees every older revision
                puts += 1
        assert puts > 5  # ~14 in §2h; more when puts outrun the backend's batched commits

        member_id = (await c.status(server.endpoint)).header.member_id
        assert await c.alarms() == (Alarm(member_id=member_id, alarm=AlarmType.NOSPACE),)
        status = await c.status(server.endpoint)
        assert any("NOSPACE" in e for e in status.errors)
        # While the alarm is raised, writes fail and reads work.
        with pytest.raises(NoSpaceError):
            await c.put(b"/quota/other", b"small")
        assert (await c.get(b"/quota/k")) is not None
        # Disarming a kind that is not raised, or another member's alarms, disarms nothing.
        assert await c.alarm_disarm(alarm=AlarmType.CORRUPT) == ()
        assert await c.alarm_disarm(member_id=member_id + 1) == ()
        assert len(await c.alarms()) == 1

        # The recovery of §2h: compact to the current revision, defragment, disarm.
        revision = (await c.status()).header.revision
        await c.compact(revision, physical=True)
        await c.defragment(server.endpoint)
        assert (await c.status(server.endpoint)).db_size < QUOTA // 2
        assert await c.alarm_disarm(alarm=AlarmType.NOSPACE) == (
            Alarm(member_id=member_id, alarm=AlarmType.NOSPACE),
        )
        assert await c.alarms() == ()
        assert (await c.status(server.endpoint)).errors == ()
        await c.put(b"/quota/other", b"small")
        await c.put(b"/quota/k", value)


async def test_status_hash_and_defragment(client: Client, etcd_prefix: bytes) -> None:
    endpoint = client.statistics().current_endpoint
    await client.put(etcd_prefix + b"k", b"v")
    status = await client.status(endpoint)
    assert status.version.startswith("3.")
    assert status.leader == status.header.member_id  # a single member leads itself
    assert status.raft_index >= status.raft_applied_index > 0
    assert status.raft_term >= 1 and not status.is_learner
    assert status.db_size >= status.db_size_in_use > 0
    assert (await client.status()).header.member_id == status.header.member_id
    assert (await client.status(f"http://{endpoint}")).header.member_id == status.header.member_id

    rev = (await client.put(etcd_prefix + b"k", b"v2")).header.revision
    first = await client.hash_kv(endpoint, rev)
    again = await client.hash_kv(endpoint, rev)
    assert first.hash == again.hash and first.header.revision >= rev
    latest = await client.hash_kv(endpoint)
    assert latest.header.revision >= rev
    with pytest.raises(etcdsync.FutureRevisionError):
        await client.hash_kv(endpoint, rev + 1_000_000)
    await client.defragment(endpoint)
    with pytest.raises(ValueError, match=r"^revision must be >= 0$"):
        await client.hash_kv(endpoint, -1)


async def test_save_snapshot_is_read_by_etcdctl(client: Client, etcd_prefix: bytes, tmp_path: Path) -> None:
    for i in range(200):
        await client.put(etcd_prefix + b"k%03d" % i, b"v" * 500)
    revision = (await client.status()).header.revision
    target = tmp_path / "backup.db"
    info = await client.save_snapshot(target)
    assert info.path == str(target)
    data = target.read_bytes()
    # The file is the database followed by its SHA-256, as etcdctl writes it.
    assert len(data) == info.db_size + 32
    assert hashlib.sha256(data[:-32]).digest() == data[-32:] == info.sha256
    status = await snapshot_status(target)
    assert status["revision"] >= revision
    assert status["totalKey"] >= 200
    assert status["totalSize"] == info.db_size
    # etcdctl restore checks the digest (the file is 32 bytes past a 512-byte multiple).
    restored = await trio.run_process(
        [etcdctl(), "snapshot", "restore", str(target), "--data-dir", str(tmp_path / "restored")],
        capture_stdout=True,
        capture_stderr=True,
    )
    assert restored.returncode == 0, restored.stderr
    assert _names(tmp_path) == ["backup.db", "restored"]


async def test_snapshot_stream_iterates_chunks(client: Client) -> None:
    received = bytearray()
    async with client.snapshot() as chunks:
        assert chunks.sha256 is None
        async for chunk in chunks:
            assert chunk
            received += chunk
        assert "complete" in repr(chunks)
    assert chunks.db_size == chunks.received_bytes == len(received) - 32
    assert chunks.sha256 == hashlib.sha256(received[:-32]).digest()
    assert chunks.endpoint == client.statistics().current_endpoint
    # Leaving early abandons the stream; the client goes on working.
    async with client.snapshot() as chunks:
        async for _ in chunks:
            break
    assert chunks.sha256 is None
    await client.status()


async def test_short_stream_leaves_no_file(
    client: Client, etcd_prefix: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server announcing one byte more than it sends: the iteration raises, save_snapshot keeps nothing."""
    for i in range(100):
        await client.put(etcd_prefix + b"k%03d" % i, b"v" * 1000)  # several chunks of 32 KiB
    real = snapshot_module.cv.snapshot_chunk
    first = True

    def announce_one_more(data: bytes) -> tuple[int, bytes]:
        nonlocal first
        remaining, blob = real(data)
        if first:
            first = False
            remaining += 1
        elif remaining:
            remaining += 1
        return remaining, blob

    monkeypatch.setattr(snapshot_module.cv, "snapshot_chunk", announce_one_more)
    target = tmp_path / "backup.db"
    target.write_bytes(b"the previous backup")
    with pytest.raises(SnapshotIntegrityError) as info:
        await client.save_snapshot(target)
    assert info.value.expected_bytes == info.value.received_bytes + 1
    assert _names(tmp_path) == ["backup.db"]
    assert target.read_bytes() == b"the previous backup"


async def test_cancelled_save_leaves_no_file(
    client: Client, etcd_prefix: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(100):
        await client.put(etcd_prefix + b"k%03d" % i, b"v" * 1000)  # several chunks of 32 KiB
    real = snapshot_module.cv.snapshot_chunk
    with trio.CancelScope() as scope:
        calls = 0

        def count(data: bytes) -> tuple[int, bytes]:
            nonlocal calls
            calls += 1
            if calls == 2:
                scope.cancel()
            return real(data)

        monkeypatch.setattr(snapshot_module.cv, "snapshot_chunk", count)
        await client.save_snapshot(tmp_path / "backup.db")
    assert scope.cancelled_caught and calls >= 2
    assert _names(tmp_path) == []


# --- the accounting, by hand ----------------------------------------------------------------------------


def _stream(db: bytes, chunk: int = 4) -> list[tuple[int, bytes]]:
    msgs = [(len(db) - i - len(db[i : i + chunk]), db[i : i + chunk]) for i in range(0, len(db), chunk)]
    return [*msgs, (0, hashlib.sha256(db).digest())]


def test_account_accepts_a_whole_stream() -> None:
    account = SnapshotAccount()
    for remaining, blob in _stream(b"0123456789"):
        account.feed(remaining, blob)
    assert account.finish() == hashlib.sha256(b"0123456789").digest()
    assert account.total == account.received == 10


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], r"ended without any data"),
        (_stream(b"0123456789")[:-2], r"ended early"),
        (_stream(b"0123456789")[:-1], r"ended with 0 bytes of digest instead of 32"),
        ([*_stream(b"0123456789")[:-1], (0, b"\0" * 32)], r"digest that does not match"),
        ([(6, b"0123"), (3, b"4567"), (0, b"89")], r"announced 3 bytes to come where 2 were"),
        ([*_stream(b"0123"), (0, b"more")], r"went on for 36 bytes after the database"),
        ([(0, b"0123"), (1, b"45")], r"went past the announced size with 1 bytes still announced"),
    ],
)
def test_account_rejects(messages: list[tuple[int, bytes]], error: str) -> None:
    account = SnapshotAccount()
    with pytest.raises(SnapshotIntegrityError, match=error):
        for remaining, blob in messages:
            account.feed(remaining, blob)
        account.finish()
