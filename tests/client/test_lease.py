"""Leases against a real etcd."""

from __future__ import annotations

import pytest

from etcdsync import LeaseExistsError, LeaseNotFoundError
from etcdsync.client import Client


async def test_grant_ttl_revoke(client: Client, etcd_prefix: bytes) -> None:
    lease = await client.lease_grant(30)
    assert lease.id > 0 and lease.ttl == 30
    await client.put(etcd_prefix + b"a", b"1", lease=lease.id)
    await client.put(etcd_prefix + b"b", b"2", lease=lease.id)
    ttl = await client.lease_time_to_live(lease.id, keys=True)
    assert ttl.id == lease.id and ttl.granted_ttl == 30 and 0 < ttl.ttl <= 30
    assert sorted(ttl.keys) == [etcd_prefix + b"a", etcd_prefix + b"b"]
    assert lease.id in await client.leases()
    await client.lease_revoke(lease.id)
    assert (await client.range(etcd_prefix, prefix=True)).count == 0
    assert (await client.lease_time_to_live(lease.id)).ttl == -1
    assert lease.id not in await client.leases()
    with pytest.raises(LeaseNotFoundError):
        await client.lease_revoke(lease.id)


async def test_grant_with_explicit_id(client: Client) -> None:
    lease = await client.lease_grant(30, lease_id=0x5EED_0001)
    assert lease.id == 0x5EED_0001
    with pytest.raises(LeaseExistsError):
        await client.lease_grant(30, lease_id=0x5EED_0001)
    await client.lease_revoke(lease.id)


async def test_keep_alive_once(client: Client) -> None:
    lease = await client.lease_grant(20)
    assert await client.lease_keep_alive_once(lease.id) == 20
    await client.lease_revoke(lease.id)
    with pytest.raises(LeaseNotFoundError):
        await client.lease_keep_alive_once(lease.id)
