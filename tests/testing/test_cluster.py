"""A real 3-member cluster: election, leader kill and rejoin, pause and resume."""

from __future__ import annotations

import trio

from etcdsync.testing import EtcdCluster


async def agreed_leader_id(cluster: EtcdCluster) -> int:
    """Wait until every running, unpaused member answers and all name the same, non-zero leader."""
    while True:
        statuses = await cluster.statuses()
        answering = [i for i, m in enumerate(cluster.members) if m.running and not m.paused]
        named = {status.leader for status in statuses.values()}
        if sorted(statuses) == answering and len(named) == 1 and 0 not in named:
            return named.pop()
        await trio.sleep(0.02)


async def member_id(cluster: EtcdCluster, index: int) -> int:
    return (await cluster.members[index].status()).member_id


async def test_cluster_elects_one_leader_all_agree_on(etcd_cluster: EtcdCluster) -> None:
    with trio.fail_after(20):
        assert etcd_cluster.size == 3
        assert len(set(etcd_cluster.endpoints)) == 3
        assert len({endpoint.rsplit(".", 1)[0] for endpoint in etcd_cluster.endpoints}) == 1  # one /24 block
        assert len({m.pid for m in etcd_cluster.members}) == 3
        leader = await etcd_cluster.leader()
        assert await agreed_leader_id(etcd_cluster) == await member_id(etcd_cluster, leader)
        assert (await etcd_cluster.members[leader].status()).is_leader


async def test_leader_kill_elects_another_and_restart_rejoins(etcd_cluster: EtcdCluster) -> None:
    with trio.fail_after(30):
        old = await etcd_cluster.leader()
        old_id = await member_id(etcd_cluster, old)
        old_pid = etcd_cluster.members[old].pid

        await etcd_cluster.kill(old)
        assert not etcd_cluster.members[old].running

        new = await etcd_cluster.leader()
        assert new != old
        new_id = await agreed_leader_id(etcd_cluster)
        assert new_id == await member_id(etcd_cluster, new) != old_id

        await etcd_cluster.restart(old)
        member = etcd_cluster.members[old]
        assert member.running and member.pid != old_pid
        assert (await member.status()).member_id == old_id  # same data dir: same member
        leader_id = await agreed_leader_id(etcd_cluster)
        assert leader_id == await member_id(etcd_cluster, await etcd_cluster.leader())


async def test_paused_member_times_out_then_resumes(etcd_cluster: EtcdCluster) -> None:
    with trio.fail_after(30):
        old = await etcd_cluster.leader()
        old_id = await member_id(etcd_cluster, old)

        etcd_cluster.pause(old)
        paused = etcd_cluster.members[old]
        assert paused.paused and paused.running
        with trio.move_on_after(0.3) as scope:
            await paused.status()
        assert scope.cancelled_caught, "a paused member must not answer"

        new = await etcd_cluster.leader()  # the other two elect a leader among themselves
        assert new != old

        etcd_cluster.resume(old)
        assert not paused.paused
        assert (await paused.status()).member_id == old_id
        await agreed_leader_id(etcd_cluster)  # the resumed member answers and follows the same leader
        await etcd_cluster.wait_healthy()
