"""Cluster administration against a real 3-member etcd: a learner added, started, promoted and removed;
leadership moved; per-member status, hash, defragment and snapshot going to exactly the member asked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import trio

import etcdsync
from etcdsync import (
    BadLeaderTransfereeError,
    LearnerNotReadyError,
    MemberBadURLsError,
    MemberExistsError,
    MemberNotFoundError,
    MemberNotLearnerError,
    TooManyLearnersError,
    UnhealthyClusterError,
)
from etcdsync.client import Client, Member, MemberAddResponse
from etcdsync.testing import EtcdCluster, EtcdProcess, EtcdServer, find_etcd
from etcdsync.testing._addresses import MemberAddress

pytestmark = pytest.mark.cluster


def _by_name(members: tuple[Member, ...]) -> dict[str, Member]:
    return {m.name: m for m in members}


async def _add_when_healthy(client: Client, peer_url: str, *, learner: bool) -> MemberAddResponse:
    # etcd refuses membership changes until every member has been connected for 5 s; a fresh cluster
    # is younger than that.
    with trio.fail_after(15):
        while True:
            try:
                return await client.member_add(peer_url, learner=learner)
            except UnhealthyClusterError:
                await trio.sleep(0.1)


async def test_learner_added_started_promoted_removed(etcd_cluster: EtcdCluster) -> None:
    hosts = [m.process.address.host for m in etcd_cluster.members]
    block = hosts[0].rsplit(".", 1)[0]
    new_host = f"{block}.4"  # the harness leaves the rest of the 127.a.b.0/24 block free
    new_peer = f"http://{new_host}:2380"
    async with etcdsync.open_client(etcd_cluster.endpoints) as client:
        before = await client.member_list()
        assert len(before.members) == 3

        added = await _add_when_healthy(client, new_peer, learner=True)
        assert added.member.is_learner
        assert added.member.peer_urls == (new_peer,)
        assert (added.member.name, added.member.client_urls) == ("", ())  # not started yet
        assert added.member in added.members and len(added.members) == 4
        learner_id = added.member.id

        # The refusals, each with its own class.
        with pytest.raises(MemberExistsError):
            await client.member_add(f"http://{hosts[0]}:2380")
        with pytest.raises(TooManyLearnersError):  # etcd 3.4 allows one learner
            await client.member_add(f"http://{block}.5:2380", learner=True)
        with pytest.raises(MemberBadURLsError):
            await client.member_add("not a url")
        with pytest.raises(LearnerNotReadyError):  # it has not started, so it has not caught up
            await client.member_promote(learner_id)
        # (The leader's own ID: etcd checks "caught up" before "is a learner", and any other voter may
        # momentarily lag behind the leader by more than etcd's 10 %.)
        with pytest.raises(MemberNotLearnerError):
            await client.member_promote((await client.status()).leader)
        with pytest.raises(MemberNotFoundError):
            await client.member_remove(0x1234)
        with pytest.raises(ValueError, match=r"is a learner; etcd would forget that on update"):
            await client.member_update(learner_id, [new_peer])

        # Start the learner's etcd, joining the existing cluster.
        members = (await client.member_list()).members
        initial = ",".join(f"{m.name or 'm3'}={m.peer_urls[0]}" for m in members)
        process = EtcdProcess.create(
            name="m3",
            address=MemberAddress(new_host, 2379, 2380, 2381),
            initial_cluster=initial,
            cluster_token=etcd_cluster.members[0].process.cluster_token,
            options=etcd_cluster.options,
            binary=find_etcd(),
        )
        learner = EtcdServer(process)
        try:
            process.start(existing=True)
            await learner.wait_ready()
            assert (await client.status(learner.endpoint)).is_learner

            with trio.fail_after(30):  # promotion waits until the learner has caught up
                while True:
                    try:
                        promoted = await client.member_promote(learner_id)
                        break
                    except LearnerNotReadyError:
                        await trio.sleep(0.1)
            assert [m.is_learner for m in promoted.members if m.id == learner_id] == [False]
            with trio.fail_after(10):
                # The member itself learns of its promotion when it applies the change.
                while (await client.status(learner.endpoint)).is_learner:
                    await trio.sleep(0.02)
                # It has published its name and client URLs (through raft).
                while "m3" not in (named := _by_name((await client.member_list()).members)):
                    await trio.sleep(0.05)
            assert named["m3"].id == learner_id
            assert named["m3"].client_urls == (f"http://{new_host}:2379",)

            # Update a voting member's peer URLs (add one, then put them back).
            m2 = named["m2"]
            extra = f"http://{hosts[2]}:12380"
            updated = await client.member_update(m2.id, [*m2.peer_urls, extra])
            assert _by_name(updated.members)["m2"].peer_urls == (*m2.peer_urls, extra)
            restored = await client.member_update(m2.id, m2.peer_urls)
            assert _by_name(restored.members)["m2"].peer_urls == m2.peer_urls

            # Remove the new member: it is gone from the list and its etcd stops by itself.
            remaining = await client.member_remove(learner_id)
            assert sorted(m.name for m in remaining.members) == ["m0", "m1", "m2"]
            assert sorted(m.id for m in (await client.member_list()).members) == sorted(
                m.id for m in before.members
            )
            with trio.fail_after(15):
                while process.running:
                    await trio.sleep(0.05)
        finally:
            await learner.kill()
            process.close()


async def test_move_leader_goes_to_the_leader(etcd_cluster: EtcdCluster) -> None:
    old = await etcd_cluster.leader()
    follower = (old + 1) % 3
    # A client that knows only a follower: the request must still reach the leader.
    async with etcdsync.open_client(etcd_cluster.endpoints[follower]) as client:
        members = _by_name((await client.member_list()).members)
        target = members[f"m{follower}"]
        await client.move_leader(target.id)
        assert await etcd_cluster.leader() == follower
        with trio.fail_after(5):  # the third member hears of the new term with the next heartbeat
            while [(await client.status(e)).leader for e in etcd_cluster.endpoints] != [target.id] * 3:
                await trio.sleep(0.02)
        # To the leader itself: nothing to do.
        await client.move_leader(target.id)
        assert (await client.status()).leader == target.id
        with pytest.raises(BadLeaderTransfereeError):
            await client.move_leader(0x1234)
    # And back, with every member as an endpoint.
    async with etcdsync.open_client(etcd_cluster.endpoints) as client:
        await client.move_leader(members[f"m{old}"].id)
        assert await etcd_cluster.leader() == old


async def test_per_member_calls_reach_that_member(etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    async with etcdsync.open_client(etcd_cluster.endpoints[0]) as client:
        for i in range(50):
            await client.put(b"/per-member/%d" % i, b"x" * 100)
        listed = await client.member_list()
        by_url = {m.client_urls[0]: m.id for m in listed.members}
        revision = (await client.put(b"/per-member/last", b"x")).header.revision
        hashes = set()
        leader = (await client.status()).leader
        for endpoint in etcd_cluster.endpoints:
            status = await client.status(endpoint)
            assert status.header.member_id == by_url[f"http://{endpoint}"]
            assert status.leader == leader
            hashes.add((await client.hash_kv(endpoint, revision)).hash)
            await client.defragment(endpoint)
        assert len(hashes) == 1  # every member holds the same history

        # A snapshot of a member that is not among the client's endpoints.
        follower = next(e for e in etcd_cluster.endpoints[1:] if by_url[f"http://{e}"] != leader)
        target = tmp_path / "follower.db"
        async with client.snapshot(follower) as chunks:
            assert chunks.endpoint == follower
            async for _ in chunks:
                pass
        info = await client.save_snapshot(target, endpoint=f"http://{follower}")
        etcdctl = shutil.which("etcdctl")
        assert etcdctl is not None, "etcdctl not found"
        result = await trio.run_process(
            [etcdctl, "snapshot", "status", str(target), "-w", "json"], capture_stdout=True
        )
        assert result.returncode == 0
        status = json.loads(result.stdout)
        assert status["revision"] >= revision
        assert status["totalKey"] >= 51
        assert status["totalSize"] == info.db_size
        # The client's own endpoint list is unchanged by per-member calls.
        assert client.statistics().endpoints == (etcd_cluster.endpoints[0],)
