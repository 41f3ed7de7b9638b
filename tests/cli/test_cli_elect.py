"""``etcdsync elect``: interop with ``etcdctl elect`` both ways and with ``Election.observe()``."""

from __future__ import annotations

import signal

from etcdsync import Election, open_session
from etcdsync.client import Client

from .helpers import cli, etcdctl, queue, spawn, wait_queue_len


async def test_our_campaign_is_seen_by_etcdctl_listen_and_by_observe(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"elect"
    async with spawn(cli(etcd_endpoint, "elect", name.decode(), "our-proposal")) as ours:
        key = await ours.stdout.next()  # elected: key line, then value line, as etcdctl prints them
        assert await ours.stdout.next() == b"our-proposal"
        assert key.startswith(name + b"/")
        async with spawn(etcdctl(etcd_endpoint, "elect", "--listen", name.decode())) as listener:
            assert await listener.stdout.next() == key
            assert await listener.stdout.next() == b"our-proposal"
        async with open_session(client, ttl=5) as session, Election(session, name).observe() as leaders:
            leader = await leaders.__anext__()
            assert leader is not None and (leader.key, leader.value) == (key, b"our-proposal")
        ours.signal(signal.SIGTERM)
        assert await ours.wait() == 0
        assert await queue(client, name) == []  # resigned


async def test_listen_sees_etcdctl_campaign_and_vacancy(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"elect"
    async with spawn(cli(etcd_endpoint, "elect", "--listen", name.decode())) as listener:
        assert [await listener.stdout.next(), await listener.stdout.next()] == [b"", b""]  # nobody leads
        async with spawn(etcdctl(etcd_endpoint, "elect", name.decode(), "their-proposal")) as theirs:
            their_key = await theirs.stdout.next()
            assert await listener.stdout.next() == their_key
            assert await listener.stdout.next() == b"their-proposal"
            theirs.signal(signal.SIGINT)  # etcdctl resigns
            await theirs.wait()
        assert [await listener.stdout.next(), await listener.stdout.next()] == [b"", b""]  # vacant again
        listener.signal(signal.SIGINT)
        assert await listener.wait() == 0


async def test_second_candidate_waits_and_takes_over(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"elect"
    async with spawn(etcdctl(etcd_endpoint, "elect", name.decode(), "first")) as first:
        first_key = await first.stdout.next()
        async with spawn(cli(etcd_endpoint, "elect", name.decode(), "second")) as second:
            await wait_queue_len(client, name, 2)
            first.signal(signal.SIGINT)
            key = await second.stdout.next()
            assert await second.stdout.next() == b"second"
            kvs = await queue(client, name)
            assert [kv.key for kv in kvs] == [key] and key != first_key
            second.signal(signal.SIGINT)
            assert await second.wait() == 0
