"""DoubleBarrier against a real etcd: rounds, reuse, too many participants, crashes, cancellation, cost."""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from test_processes import WORKER, spawn  # tests/recipes is on sys.path (pytest's prepend import mode)

from etcdsync import Session, SessionExpiredError, TooManyParticipantsError, open_session
from etcdsync._double_barrier import DoubleBarrier
from etcdsync.client import Client

TTL = 10


async def _session_task(client: Client, *, task_status: trio.TaskStatus[Session]) -> None:
    async with open_session(client, ttl=TTL) as session:
        task_status.started(session)
        await trio.sleep_forever()


@asynccontextmanager
async def sessions(client: Client, n: int) -> AsyncIterator[list[Session]]:
    async with trio.open_nursery() as nursery:
        yield [await nursery.start(_session_task, client) for _ in range(n)]
        nursery.cancel_scope.cancel()


async def waiter_keys(client: Client, name: bytes) -> list[bytes]:
    resp = await client.range(name + b"/waiters/", prefix=True, keys_only=True)
    return [kv.key for kv in resp.kvs]


async def wait_keys(client: Client, name: bytes, n: int) -> None:
    while len(await waiter_keys(client, name)) != n:
        await trio.sleep(0.01)


async def _enter_then_set(dbar: DoubleBarrier, event: trio.Event) -> None:
    await dbar.enter()
    event.set()


def test_caller_mistakes() -> None:
    with pytest.raises(TypeError, match="^DoubleBarrier needs a Session, not str$"):
        DoubleBarrier("session", "b", 2)  # type: ignore[arg-type]


async def test_count_is_validated(client: Client, etcd_prefix: bytes) -> None:
    async with open_session(client, ttl=TTL) as session:
        with pytest.raises(ValueError, match="^count must be >= 1$"):
            DoubleBarrier(session, etcd_prefix + b"b", 0)
        with pytest.raises(TypeError, match="^count must be an int, not str$"):
            DoubleBarrier(session, etcd_prefix + b"b", "3")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="^count must be an int, not bool$"):
            DoubleBarrier(session, etcd_prefix + b"b", True)
        with pytest.raises(ValueError, match="^a recipe name must not be empty$"):
            DoubleBarrier(session, "", 2)


@pytest.mark.deadline(60)
async def test_five_participants_twenty_rounds(client: Client, etcd_prefix: bytes) -> None:
    """Nobody leaves enter() before the 5th entered, nobody leaves leave() before all left; 20 rounds
    on one name. Two participants share a session (keys <lease> and <lease>-1)."""
    name, n, rounds = etcd_prefix + b"dbar", 5, 20
    log: list[tuple[int, str, int]] = []  # (round, event, participant), in the order it happened
    revisions: dict[int, set[int]] = {}  # round -> the round revisions its members saw

    async def participant(dbar: DoubleBarrier, who: int) -> None:
        for r in range(rounds):
            log.append((r, "enter", who))
            async with dbar:
                log.append((r, "entered", who))
                revisions.setdefault(r, set()).add(dbar.round)
                await trio.sleep(0.001 * who)  # stagger the leaves
                log.append((r, "leave", who))
            log.append((r, "left", who))

    async with sessions(client, n - 1) as ss:
        ss.append(ss[0])  # participants 0 and 4 share a session
        dbars = [DoubleBarrier(s, name, n) for s in ss]
        async with trio.open_nursery() as nursery:
            for who, dbar in enumerate(dbars):
                nursery.start_soon(participant, dbar, who)
    for r in range(rounds):
        events = [(i, e, who) for i, (rr, e, who) in enumerate(log) if rr == r]
        position = {(e, who): i for i, e, who in events}
        for first, then in (("enter", "entered"), ("leave", "left")):
            assert max(position[first, who] for who in range(n)) < min(
                position[then, who] for who in range(n)
            ), (
                r,
                first,
            )
        assert len(revisions[r]) == 1  # every member saw the same round
    per_round = [revisions[r].pop() for r in range(rounds)]
    assert per_round == sorted(per_round) and len(set(per_round)) == rounds
    assert await waiter_keys(client, name) == []  # nothing left behind, no "ready" key either
    assert (await client.range(name, prefix=True)).count == 0


async def test_key_layout_and_one_round_cost(client: Client, etcd_prefix: bytes) -> None:
    """Waiters get exactly one watch event to enter; leaving costs O(count) events in all."""
    name, n = etcd_prefix + b"dbar", 5
    async with sessions(client, n) as ss:
        dbars = [DoubleBarrier(s, name, n) for s in ss]
        entered = [trio.Event() for _ in dbars]
        async with trio.open_nursery() as nursery:
            for dbar, event in zip(dbars[:-1], entered, strict=False):
                nursery.start_soon(_enter_then_set, dbar, event)
            await wait_keys(client, name, n - 1)
            await trio.sleep(0.1)
            assert not any(e.is_set() for e in entered)
            await dbars[-1].enter()
        keys = await waiter_keys(client, name)
        assert sorted(keys) == sorted(name + b"/waiters/" + format(s.lease_id, "x").encode() for s in ss)
        for kv in (await client.range(name + b"/waiters/", prefix=True)).kvs:
            assert kv.value == b"%d" % dbars[-1].round  # marked with the round revision
        enter_events = [d.statistics().watch_events for d in dbars]
        assert enter_events == [1, 1, 1, 1, 0]
        async with trio.open_nursery() as nursery:
            for dbar in dbars:
                nursery.start_soon(dbar.leave)
        leave_events = sum(d.statistics().watch_events for d in dbars) - sum(enter_events)
        assert leave_events <= 2 * (n - 1)
    assert await waiter_keys(client, name) == []


async def test_too_many_participants(client: Client, etcd_prefix: bytes) -> None:
    name, n = etcd_prefix + b"dbar", 5
    async with sessions(client, n + 2) as ss:
        dbars = [DoubleBarrier(s, name, n) for s in ss]
        # Six arrive at once: exactly one (the last by create revision) is refused, and leaves no key.
        outcomes: list[BaseException | None] = []

        async def enter(dbar: DoubleBarrier) -> None:
            try:
                await dbar.enter()
            except TooManyParticipantsError as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)

        async with trio.open_nursery() as nursery:
            for dbar in dbars[: n + 1]:
                nursery.start_soon(enter, dbar)
        refused = [o for o in outcomes if o is not None]
        assert len(refused) == 1
        assert "already entering" in str(refused[0]) or "under way" in str(refused[0])
        members = [d for d in dbars[: n + 1] if d.entered]
        assert len(members) == n
        assert sorted(await waiter_keys(client, name)) == sorted(d.key for d in members)
        # A latecomer while the round runs is refused too.
        with pytest.raises(TooManyParticipantsError, match="under way"):
            await dbars[-1].enter()
        # ... also while the round is leaving: all but the closer (the oldest) have left and wait.
        created = {kv.key: kv.create_revision for kv in (await client.range(name + b"/", prefix=True)).kvs}
        members.sort(key=lambda d: created[d.key])
        async with trio.open_nursery() as nursery:
            for dbar in members[1:]:
                nursery.start_soon(dbar.leave)
            await wait_keys(client, name, 1)
            with pytest.raises(TooManyParticipantsError, match="under way"):
                await dbars[-1].enter()
            assert await waiter_keys(client, name) == [members[0].key]
            await members[0].leave()
    assert await waiter_keys(client, name) == []


async def test_count_of_one_and_body_errors(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"dbar"
    async with open_session(client, ttl=TTL) as session:
        dbar = DoubleBarrier(session, name, 1)
        async with dbar:
            assert dbar.entered
            assert await waiter_keys(client, name) == [dbar.key]
        assert await waiter_keys(client, name) == []
        # A body that raises only removes our key (no waiting for others) and lets the error through.
        with pytest.raises(KeyError):
            async with DoubleBarrier(session, name, 1):
                raise KeyError("boom")
        assert await waiter_keys(client, name) == []
        with pytest.raises(RuntimeError, match="not entered"):
            await dbar.leave()
        await dbar.enter()
        with pytest.raises(RuntimeError, match="already entered"):
            await dbar.enter()
        await dbar.leave()


async def test_cancelled_enter_leaves_no_key(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"dbar"
    async with open_session(client, ttl=TTL) as session:
        dbar = DoubleBarrier(session, name, 3)
        for delay in (0, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.05, 0.2):
            with trio.move_on_after(delay):
                await dbar.enter()
            assert not dbar.entered
            assert await waiter_keys(client, name) == [], delay


async def test_cancelled_leave_removes_the_key(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"dbar"
    async with sessions(client, 2) as (s1, s2):
        a, b = DoubleBarrier(s1, name, 2), DoubleBarrier(s2, name, 2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.enter)
            nursery.start_soon(b.enter)
        kvs = (await client.range(name + b"/waiters/", prefix=True)).kvs
        closer = a if min(kvs, key=lambda kv: kv.create_revision).key == a.key else b
        closer_key = closer.key
        with trio.move_on_after(0.2):
            await closer.leave()  # the closer waits for the other one; give up
        assert await client.get(closer_key) is None
        second = b if closer is a else a
        with trio.fail_after(5):
            await second.leave()  # the closer is gone: nothing to wait for
    assert await waiter_keys(client, name) == []


async def test_session_loss_cancels_the_body(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"dbar"
    body_cancelled = False
    async with open_session(client, ttl=3) as session:
        with pytest.raises(SessionExpiredError):
            async with DoubleBarrier(session, name, 1):
                try:
                    await client.lease_revoke(session.lease_id)
                    await trio.sleep_forever()
                finally:
                    body_cancelled = True
    assert body_cancelled
    assert await waiter_keys(client, name) == []


async def test_session_loss_while_entering(client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"dbar"
    async with open_session(client, ttl=TTL) as session:
        outcome: list[BaseException] = []

        async def enter() -> None:
            try:
                await DoubleBarrier(session, name, 2).enter()
            except SessionExpiredError as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(enter)
            await wait_keys(client, name, 1)
            await client.lease_revoke(session.lease_id)
        assert len(outcome) == 1


@pytest.mark.deadline(60)
async def test_killed_participant_mid_round_does_not_wedge_the_others(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    """A SIGKILLed member (TTL 2 s) counts as having left once its lease expires."""
    name, n, ttl = etcd_prefix + b"dbar", 4, 2
    async with sessions(client, n - 1) as ss:
        dbars = [DoubleBarrier(s, name, n) for s in ss]
        async with spawn(
            sys.executable, WORKER, "dbarrier", etcd_endpoint, name.decode(), str(n), str(ttl)
        ) as (
            process,
            lines,
        ):
            async with trio.open_nursery() as nursery:
                for dbar in dbars:
                    nursery.start_soon(dbar.enter)
                entered = await lines.json()
            worker_key = str(entered["entered"]).encode()
            assert {d.round for d in dbars} == {entered["round"]}
            process.send_signal(signal.SIGKILL)
            with trio.fail_after(ttl + 10):  # a hang guard, not a timing assertion
                async with trio.open_nursery() as nursery:
                    for dbar in dbars:
                        nursery.start_soon(dbar.leave)
            # The leaves completed because the dead member's key went with its lease.
            assert await client.get(worker_key) is None
            lease = entered["lease"]
            assert isinstance(lease, int)
            assert (await client.lease_time_to_live(lease)).ttl == -1
    assert await waiter_keys(client, name) == []


@pytest.mark.deadline(60)
async def test_killed_participant_before_the_round_fills(
    client: Client, etcd_endpoint: str, etcd_prefix: bytes
) -> None:
    """A member that dies while the round is short simply drops out: the round waits for another."""
    name, n, ttl = etcd_prefix + b"dbar", 3, 2
    async with sessions(client, n) as ss:
        dbars = [DoubleBarrier(s, name, n) for s in ss]
        async with spawn(
            sys.executable, WORKER, "dbarrier", etcd_endpoint, name.decode(), str(n), str(ttl)
        ) as (
            process,
            _,
        ):
            await wait_keys(client, name, 1)
            got = [trio.Event() for _ in dbars]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_enter_then_set, dbars[0], got[0])
                await wait_keys(client, name, 2)
                process.send_signal(signal.SIGKILL)
                with trio.fail_after(ttl + 10):
                    await wait_keys(client, name, 1)  # its key expired with its lease
                nursery.start_soon(_enter_then_set, dbars[1], got[1])
                await wait_keys(client, name, 2)
                await trio.sleep(0.2)  # give a wrong implementation the chance to let them in
                assert not any(e.is_set() for e in got)
                nursery.start_soon(_enter_then_set, dbars[2], got[2])
            assert all(d.entered for d in dbars)
            async with trio.open_nursery() as nursery:
                for dbar in dbars:
                    nursery.start_soon(dbar.leave)
    assert await waiter_keys(client, name) == []
