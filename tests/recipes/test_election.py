"""Election against a real etcd: campaign, proclaim, resign, observe, and Go's known pitfalls."""

from __future__ import annotations

import pytest
import trio

import etcdsync
from etcdsync import Election, NoLeaderError, NotLeaderError, SessionExpiredError, open_session
from etcdsync.client import Client, KeyValue

TTL = 5


async def candidates(client: Client, name: bytes) -> list[bytes]:
    return [kv.key for kv in (await client.range(name + b"/", prefix=True, keys_only=True)).kvs]


async def wait_candidates(client: Client, name: bytes, n: int) -> None:
    while len(await candidates(client, name)) != n:
        await trio.sleep(0.01)


async def _campaign(election: Election, value: bytes, done: trio.Event) -> None:
    await election.campaign(value)
    done.set()


async def test_campaign_leader_proclaim_resign(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"elect"
    async with open_session(client, ttl=TTL) as session:
        election = Election(session, name)
        with pytest.raises(NoLeaderError):
            await election.leader()
        with pytest.raises(NotLeaderError):
            await election.proclaim(b"x")
        with pytest.raises(NotLeaderError):
            election.is_leader()
        await election.resign()  # not leading: a no-op
        await election.campaign(b"v1")
        leader = await election.leader()
        assert (leader.key, leader.value) == (election.key, b"v1")
        assert leader.create_revision == election.revision
        await election.proclaim("v2")
        leader = await election.leader()
        assert leader.value == b"v2"
        assert leader.create_revision == election.revision  # proclaiming keeps the leader revision
        await client.put(etcd_prefix + b"data", b"ok", guard=election.is_leader())
        await election.resign()
        assert not election.leading
        with pytest.raises(NoLeaderError):
            await election.leader()


async def test_follower_becomes_leader_when_leader_resigns(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"elect"
    async with open_session(client, ttl=TTL) as s1, open_session(client, ttl=TTL) as s2:
        first, second = Election(s1, name), Election(s2, name)
        await first.campaign(b"a")
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_campaign, second, b"b", done)
            await wait_candidates(client, name, 2)
            assert not done.is_set()
            assert (await second.leader()).value == b"a"
            await first.resign()
            await done.wait()
        assert second.revision > 0
        assert (await second.leader()).value == b"b"
        await second.resign()


async def test_no_phantom_leadership_when_session_expires_in_queue(
    client: Client, etcd_prefix: bytes
) -> None:
    """etcd #19597: Go's Campaign returns "leader" after its lease expired in the queue."""
    name = etcd_prefix + b"elect"
    async with open_session(client, ttl=TTL) as s1:
        leader = Election(s1, name)
        await leader.campaign(b"a")
        async with open_session(client, ttl=TTL) as s2:
            follower = Election(s2, name)
            outcome: list[BaseException] = []

            async def campaign() -> None:
                try:
                    await follower.campaign(b"b")
                except SessionExpiredError as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(campaign)
                await wait_candidates(client, name, 2)
                await client.lease_revoke(s2.lease_id)
            assert len(outcome) == 1
            assert not follower.leading
        # The follower knew before the leader resigned; the leader still leads.
        assert (await leader.leader()).value == b"a"
        await leader.resign()


async def test_cancelled_campaign_leaves_no_key(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"elect"
    async with open_session(client, ttl=TTL) as s1, open_session(client, ttl=TTL) as s2:
        leader = Election(s1, name)
        await leader.campaign(b"a")
        follower = Election(s2, name)
        for delay in (0, 0.001, 0.004, 0.02, 0.2):
            with trio.move_on_after(delay):
                await follower.campaign(b"b")
            assert await candidates(client, name) == [leader.key], delay
        await leader.resign()


async def test_leadership_body_cancelled_on_lease_loss(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"elect"
    async with open_session(client, ttl=TTL) as session:
        election = Election(session, name)
        with pytest.raises(SessionExpiredError):
            async with election.leadership(b"me"):
                await client.lease_revoke(session.lease_id)
                await trio.sleep_forever()
        assert not election.leading


async def test_leadership_resigns_on_exit(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"elect"
    async with open_session(client, ttl=TTL) as session:
        election = Election(session, name)
        async with election.leadership(b"me") as e:
            assert e is election
            assert (await election.leader()).value == b"me"
        assert await candidates(client, name) == []
        with pytest.raises(ValueError, match="boom"):
            async with election.leadership(b"me"):
                raise ValueError("boom")
        assert await candidates(client, name) == []


async def test_leadership_reports_a_deleted_key(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"elect"
    async with open_session(client, ttl=TTL) as session:
        election = Election(session, name)
        with pytest.raises(NotLeaderError):
            async with election.leadership(b"me"):
                await client.delete(election.key)
        with pytest.raises(NotLeaderError):
            await election.proclaim(b"again")


async def test_recampaign_on_same_session_keeps_place_and_proclaims(
    client: Client, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"elect"
    async with open_session(client, ttl=TTL) as session:
        first = Election(session, name)
        await first.campaign(b"old")
        again = Election(session, name)  # e.g. after a restart that resumed the session
        await again.campaign(b"new")
        assert again.revision == first.revision
        assert (await again.leader()).value == b"new"
        await again.resign()


async def _collect(election: Election, out: list[KeyValue | None], until: int) -> None:
    async with election.observe() as leaders:
        async for kv in leaders:
            out.append(kv)
            if len(out) >= until:
                return


async def test_observe_sees_leaders_proclamations_and_vacancy(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"elect"
    seen: list[KeyValue | None] = []
    async with open_session(client, ttl=TTL) as s1, open_session(client, ttl=TTL) as s2:
        watcher = Election(s1, name)
        e1, e2 = Election(s1, name), Election(s2, name)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_collect, watcher, seen, 5)
            while len(seen) < 1:
                await trio.sleep(0.01)
            assert seen == [None]
            await e1.campaign(b"a")
            while len(seen) < 2:
                await trio.sleep(0.01)
            await e1.proclaim(b"a2")
            while len(seen) < 3:
                await trio.sleep(0.01)
            done = trio.Event()
            nursery.start_soon(_campaign, e2, b"b", done)
            await wait_candidates(client, name, 2)
            await e1.resign()
            await done.wait()
            while len(seen) < 4:
                await trio.sleep(0.01)
            await e2.resign()
        values = [kv.value if kv is not None else None for kv in seen]
        assert values == [None, b"a", b"a2", b"b", None]
        revisions = [kv.create_revision for kv in seen if kv is not None]
        assert revisions == sorted(revisions)
        assert revisions[0] == revisions[1] < revisions[2]


async def test_observe_survives_compaction(client: Client, etcd_prefix: bytes) -> None:
    """Go's TestElectionObserveCompacted: an observer must not end when history is compacted."""
    name = etcd_prefix + b"elect"
    seen: list[KeyValue | None] = []
    async with open_session(client, ttl=TTL) as session:
        election = Election(session, name)
        await election.campaign(b"v0")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_collect, Election(session, name), seen, 5)
            while not seen:
                await trio.sleep(0.01)
            for i in range(1, 4):
                await election.proclaim(b"v%d" % i)
            latest = await client.get(election.key)
            assert latest is not None
            await client.compact(latest.mod_revision)
            await election.proclaim(b"v4")  # the observer is still there after the compaction
        assert [kv.value for kv in seen if kv is not None] == [b"v0", b"v1", b"v2", b"v3", b"v4"]
        await election.resign()


async def test_observe_ends_with_the_block(client: Client, etcd_prefix: bytes) -> None:
    async with open_session(client, ttl=TTL) as session:
        election = Election(session, etcd_prefix + b"elect")
        async with election.observe() as leaders:
            first = await leaders.__anext__()
            assert first is None
        assert isinstance(leaders, etcdsync.LeaderStream)
