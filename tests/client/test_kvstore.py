"""The kvstore-style conditional writes (create, update_if_different, create_if_exists, delete_prefix)
against a real etcd: each one's effect, its return value, and what a failing guard does."""

from __future__ import annotations

import pytest

from etcdsync import GuardFailedError
from etcdsync.client import Client, Compare


async def test_create_only_if_absent(client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"
    assert await client.create(key, b"first") is True
    assert await client.create(key, b"second") is False
    kv = await client.get(key)
    assert kv is not None and (kv.value, kv.version) == (b"first", 1)
    # Deleted keys can be created again.
    await client.delete(key)
    assert await client.create(key.decode(), "again") is True


async def test_create_with_lease(client: Client, etcd_prefix: bytes) -> None:
    lease = await client.lease_grant(30)
    assert await client.create(etcd_prefix + b"k", b"v", lease=lease.id)
    kv = await client.get(etcd_prefix + b"k")
    assert kv is not None and kv.lease == lease.id
    await client.lease_revoke(lease.id)
    assert await client.get(etcd_prefix + b"k") is None


async def test_update_if_different_writes_only_changes(client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"
    assert await client.update_if_different(key, b"v1") is True  # a missing key is written
    before = await client.get(key)
    assert await client.update_if_different(key, b"v1") is False  # same value, same (no) lease
    after = await client.get(key)
    assert before is not None and after is not None
    assert after.mod_revision == before.mod_revision  # really not written: no new revision
    assert await client.update_if_different(key, b"v2") is True
    kv = await client.get(key)
    assert kv is not None and (kv.value, kv.version) == (b"v2", 2)
    # Same value but another lease is different too.
    lease = await client.lease_grant(30)
    assert await client.update_if_different(key, b"v2", lease=lease.id) is True
    assert await client.update_if_different(key, b"v2", lease=lease.id) is False
    kv = await client.get(key)
    assert kv is not None and kv.lease == lease.id
    # An empty value on a missing key is still "different" from no key at all.
    assert await client.update_if_different(etcd_prefix + b"empty", b"") is True
    assert await client.update_if_different(etcd_prefix + b"empty", b"") is False
    await client.lease_revoke(lease.id)


async def test_create_if_exists(client: Client, etcd_prefix: bytes) -> None:
    parent, child = etcd_prefix + b"parent", etcd_prefix + b"parent/child"
    assert await client.create_if_exists(parent, child, b"v") is False
    assert await client.get(child) is None
    await client.put(parent, b"")  # an empty value still exists
    assert await client.create_if_exists(parent, child, b"v1") is True
    # Like Cilium's CreateIfExists, an existing key is overwritten.
    assert await client.create_if_exists(parent, child, b"v2") is True
    kv = await client.get(child)
    assert kv is not None and kv.value == b"v2"


async def test_delete_prefix_counts(client: Client, etcd_prefix: bytes) -> None:
    for i in range(5):
        await client.put(etcd_prefix + b"dir/%d" % i, b"x")
    await client.put(etcd_prefix + b"dirt", b"not under dir/")
    assert await client.delete_prefix(etcd_prefix + b"dir/") == 5
    assert await client.delete_prefix(etcd_prefix + b"dir/") == 0
    assert await client.get(etcd_prefix + b"dirt") is not None
    with pytest.raises(ValueError, match=r"^prefix must not be empty"):
        await client.delete_prefix(b"")


async def test_guard_failure_writes_nothing_and_raises(client: Client, etcd_prefix: bytes) -> None:
    fence = etcd_prefix + b"fence"
    await client.put(fence, b"owner-a")
    wrong = Compare.value(fence) == b"owner-b"
    right = Compare.value(fence) == b"owner-a"
    key = etcd_prefix + b"k"
    await client.put(etcd_prefix + b"p/1", b"x")

    calls = [
        lambda g: client.create(key, b"v", guard=g),
        lambda g: client.update_if_different(key, b"v", guard=g),
        lambda g: client.create_if_exists(fence, key, b"v", guard=g),
    ]
    for call in calls:
        with pytest.raises(GuardFailedError) as info:
            await call(wrong)
        assert [kv.value for kv in info.value.kvs] == [b"owner-a"]  # the guarded key's current value
        assert await client.get(key) is None
    with pytest.raises(GuardFailedError):
        await client.delete_prefix(etcd_prefix + b"p/", guard=[wrong])
    assert await client.get(etcd_prefix + b"p/1") is not None

    # With a guard that holds, each behaves exactly as without one.
    assert await client.create(key, b"v", guard=right) is True
    assert await client.create(key, b"v", guard=right) is False
    assert await client.update_if_different(key, b"v", guard=right) is False
    assert await client.update_if_different(key, b"w", guard=right) is True
    assert await client.create_if_exists(etcd_prefix + b"nope", key, b"x", guard=right) is False
    assert await client.create_if_exists(fence, key, b"x", guard=right) is True
    assert await client.delete_prefix(etcd_prefix + b"p/", guard=right) == 1
