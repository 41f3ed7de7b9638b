"""The STM bank (etcd's ``TestSTMConflict``): movers transfer money between accounts with ``run_stm`` while
an auditor reads all accounts in one range; the nemesis kills the etcd leader (shared/notes §3.vi)."""

from __future__ import annotations

import random

import attrs
import trio

import etcdsync
from etcdsync import STM, Isolation, run_stm
from etcdsync.testing import EtcdCluster

from .checkers import Audit, Report, check_bank
from .workloads import current_revision, now, replay_raw


@attrs.frozen
class BankConfig:
    accounts: int = 6
    balance: int = 100
    movers: int = 4
    seconds: float = 8.0
    audit_every: float = 0.05
    leader_kills: tuple[float, ...] = (2.0, 5.0)
    down: float = 1.0


async def transfer(stm: STM, src: bytes, dst: bytes, amount: int) -> None:
    a = int(await stm.get(src) or b"0")
    b = int(await stm.get(dst) or b"0")
    if a < amount:
        return
    stm.put(src, b"%d" % (a - amount))
    stm.put(dst, b"%d" % (b + amount))


async def run_bank_workload(
    client: etcdsync.Client,
    cluster: EtcdCluster | None,
    prefix: bytes,
    *,
    config: BankConfig,
    isolation: Isolation,
    rng: random.Random,
) -> Report:
    accounts = [prefix + b"acct%02d" % i for i in range(config.accounts)]
    initial = {a: config.balance for a in accounts}
    await client.txn(success=[etcdsync.Op.put(a, b"%d" % config.balance) for a in accounts])
    base = await current_revision(client)
    audits: list[Audit] = []
    commits = outcome_unknown = 0
    deadline = now() + config.seconds

    async def mover() -> None:
        nonlocal commits, outcome_unknown
        while now() < deadline:
            src, dst = rng.sample(accounts, 2)
            try:
                await run_stm(client, transfer, src, dst, rng.randint(1, 30), isolation=isolation)
                commits += 1
            except etcdsync.OutcomeUnknownError:
                outcome_unknown += 1  # applied or not, atomically: the invariant holds either way
            except etcdsync.EtcdError:
                await trio.sleep(0.05)

    async def auditor() -> None:
        while now() < deadline:
            try:
                resp = await client.range(prefix + b"acct", prefix=True)
            except etcdsync.EtcdError:
                await trio.sleep(0.05)
                continue
            audits.append(Audit(resp.header.revision, {kv.key: int(kv.value) for kv in resp.kvs}))
            await trio.sleep(config.audit_every)

    async def nemesis() -> None:
        assert cluster is not None
        start = trio.current_time()
        for at in config.leader_kills:
            await trio.sleep_until(start + at)
            index = await cluster.leader()
            await cluster.kill(index)
            await trio.sleep(config.down)
            await cluster.restart(index)

    async with trio.open_nursery() as nursery:
        for _ in range(config.movers):
            nursery.start_soon(mover)
        nursery.start_soon(auditor)
        if cluster is not None and config.leader_kills:
            nursery.start_soon(nemesis)
    changes = [
        (e.kv.mod_revision, e.kv.key, int(e.kv.value))
        for e in await replay_raw(client, prefix + b"acct", base + 1)
    ]
    report = check_bank(
        config.accounts * config.balance, initial, audits, changes, name=f"bank ({isolation.name})"
    )
    report.stats.update(commits=commits, outcome_unknown=outcome_unknown)
    return report
