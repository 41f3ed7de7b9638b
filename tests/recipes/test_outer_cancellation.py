"""Cancelling a whole block (client, session and recipe inside one cancel scope) cleans up on etcd.

The shielded cleanup (delete our key, revoke the lease) needs the client's connections; they are
background services that the caller's cancellation must not tear down before that cleanup ran.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
import trio

import etcdsync
from etcdsync.client import Client

Holding = Callable[[etcdsync.Session, bytes], AbstractAsyncContextManager[object]]

HOLDERS: list[tuple[str, Holding]] = [
    ("mutex", lambda s, name: etcdsync.Mutex(s, name)),
    ("election", lambda s, name: etcdsync.Election(s, name).leadership(b"me")),
    ("semaphore", lambda s, name: etcdsync.Semaphore(s, name, 2)),
    ("rwmutex write", lambda s, name: etcdsync.RWMutex(s, name).write()),
]


@pytest.mark.parametrize(("kind", "hold"), HOLDERS, ids=[h[0] for h in HOLDERS])
async def test_outer_cancellation_releases_and_revokes(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes, kind: str, hold: Holding
) -> None:
    name = etcd_prefix + b"res"
    lease = 0
    holding = trio.Event()
    with trio.move_on_after(30) as scope:
        async with etcdsync.open_client(etcd_endpoint) as c, etcdsync.open_session(c, ttl=30) as session:
            lease = session.lease_id
            async with hold(session, name):
                holding.set()
                scope.cancel()  # e.g. the caller's fail_after fired
                await trio.sleep_forever()
    assert scope.cancelled_caught and holding.is_set()
    assert (await client.lease_time_to_live(lease)).ttl == -1  # revoked, not left to expire
    assert (await client.range(name + b"/", prefix=True)).count == 0  # nothing held any more


async def test_cancellation_while_waiting_in_the_queue(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"lock"
    async with etcdsync.open_session(client, ttl=30) as holder_session:
        holder = etcdsync.Mutex(holder_session, name)
        await holder.acquire()
        with trio.move_on_after(0.5):
            async with etcdsync.open_client(etcd_endpoint) as c, etcdsync.open_session(c, ttl=30) as session:
                await etcdsync.Mutex(session, name).acquire()
        keys = [kv.key for kv in (await client.range(name + b"/", prefix=True)).kvs]
        assert keys == [holder.key]
        await holder.release()
