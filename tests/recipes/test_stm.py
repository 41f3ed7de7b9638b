"""run_stm against a real etcd: the four isolation levels, retries, aborts, prefetch, and the bank invariant."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from etcdsync._stm import STM, Isolation, run_stm
from etcdsync.client import Client, EventType, Op, STMConflictError

CHECKING = [Isolation.SERIALIZABLE_SNAPSHOT, Isolation.SERIALIZABLE, Isolation.REPEATABLE_READS]


class Rpcs:
    """Counts the unary KV calls a client makes (by wrapping the instance's methods)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, client: Client) -> None:
        self.calls: list[str] = []
        for name in ("txn", "range", "get", "put", "delete"):
            original = getattr(client, name)

            async def counted(
                *args: object,
                _original: Callable[..., Awaitable[object]] = original,
                _name: str = name,
                **kwargs: object,
            ) -> object:
                self.calls.append(_name)
                return await _original(*args, **kwargs)

            monkeypatch.setattr(client, name, counted)

    def __len__(self) -> int:
        return len(self.calls)


async def value(client: Client, key: bytes) -> bytes | None:
    kv = await client.get(key)
    return None if kv is None else kv.value


# ----- caller mistakes -------------------------------------------------------------------------------


async def _noop(stm: STM) -> None:
    pass


async def test_caller_mistakes_raise_before_any_rpc(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    rpcs = Rpcs(monkeypatch, client)
    with pytest.raises(TypeError, match="^apply must be an async callable taking the STM, not int$"):
        await run_stm(client, 7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^isolation must be an etcdsync.Isolation, not 'SERIALIZABLE'$"):
        await run_stm(client, _noop, isolation="SERIALIZABLE")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^max_attempts must be >= 1$"):
        await run_stm(client, _noop, max_attempts=0)
    with pytest.raises(TypeError, match="^max_attempts must be an int or None, not bool$"):
        await run_stm(client, _noop, max_attempts=True)
    with pytest.raises(TypeError, match="^prefetch must be a sequence of keys, not a single key$"):
        await run_stm(client, _noop, prefetch="/a")
    with pytest.raises(ValueError, match="^key must not be empty$"):
        await run_stm(client, _noop, prefetch=[b""])
    with pytest.raises(TypeError, match="^run_stm needs a Client, not str$"):
        await run_stm("client", _noop)  # type: ignore[arg-type]

    def sync_apply(stm: STM) -> None:
        stm.put("/k", "v")

    with pytest.raises(TypeError, match="^apply must be an async callable; it returned NoneType$"):
        await run_stm(client, sync_apply, prefetch=["/k"])  # type: ignore[arg-type]
    assert len(rpcs) == 0


async def test_bad_keys_and_values_in_apply_are_type_errors(client: Client, etcd_prefix: bytes) -> None:
    async def apply(stm: STM) -> None:
        stm.put(etcd_prefix + b"k", 7)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="^value must be bytes or str, not int$"):
        await run_stm(client, apply)
    assert await client.get(etcd_prefix + b"k") is None


# ----- basics ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("isolation", list(Isolation))
async def test_read_your_writes_delete_rev_and_result(
    client: Client, etcd_prefix: bytes, isolation: Isolation
) -> None:
    a, b, c = etcd_prefix + b"a", etcd_prefix + b"b", etcd_prefix + b"c"
    put_a = await client.put(a, b"1")
    await client.put(b, b"2")

    async def apply(stm: STM, suffix: bytes) -> tuple[int, int]:
        assert stm.isolation is isolation
        assert await stm.get(c) is None
        assert await stm.rev(c) == 0
        rev_a = await stm.rev(a)
        assert await stm.get(a) == b"1"
        stm.put(a, b"1" + suffix)
        assert await stm.get(a) == b"1" + suffix  # read-your-writes
        assert await stm.rev(a) == rev_a  # Go: Rev is the revision read, not the pending write's
        stm.delete(b)
        assert await stm.get(b) is None
        stm.put(c, "três")
        assert await stm.get(c) == "três".encode()
        return rev_a, stm.attempt

    rev_a, attempt = await run_stm(client, apply, b"x", isolation=isolation)
    assert (rev_a, attempt) == (put_a.header.revision, 1)
    assert await value(client, a) == b"1x"
    assert await client.get(b) is None
    assert await value(client, c) == "três".encode()


async def test_stm_is_unusable_after_its_attempt(client: Client, etcd_prefix: bytes) -> None:
    async def apply(stm: STM) -> STM:
        return stm

    stm = await run_stm(client, apply)
    with pytest.raises(RuntimeError, match="attempt is over"):
        await stm.get(etcd_prefix + b"k")
    with pytest.raises(RuntimeError, match="attempt is over"):
        stm.put(etcd_prefix + b"k", b"v")
    assert "over" in repr(stm)


async def test_exception_in_apply_propagates_unchanged_and_writes_nothing(
    client: Client, etcd_prefix: bytes
) -> None:
    key = etcd_prefix + b"k"
    await client.put(key, b"before")
    boom = KeyError("boom")
    runs = 0

    async def apply(stm: STM) -> None:
        nonlocal runs
        runs += 1
        await stm.get(key)
        stm.put(key, b"after")
        stm.put(etcd_prefix + b"other", b"x")
        raise boom

    with pytest.raises(KeyError) as info:
        await run_stm(client, apply)
    assert info.value is boom
    assert runs == 1
    assert await value(client, key) == b"before"
    assert await client.get(etcd_prefix + b"other") is None


# ----- conflicts and retries ---------------------------------------------------------------------------


@pytest.mark.parametrize("isolation", CHECKING)
async def test_conflict_reruns_apply_with_the_new_value(
    client: Client, etcd_prefix: bytes, isolation: Isolation
) -> None:
    key = etcd_prefix + b"counter"
    await client.put(key, b"10")
    seen: list[bytes | None] = []

    async def increment(stm: STM) -> None:
        current = await stm.get(key)
        seen.append(current)
        if stm.attempt == 1:
            await client.put(key, b"20")  # a concurrent writer commits between our read and our commit
        stm.put(key, b"%d" % (int(current or 0) + 1))

    await run_stm(client, increment, isolation=isolation)
    assert seen == [b"10", b"20"]
    assert await value(client, key) == b"21"


async def test_read_committed_never_retries_and_loses_the_update(client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"counter"
    await client.put(key, b"10")
    runs = 0

    async def increment(stm: STM) -> None:
        nonlocal runs
        runs += 1
        current = await stm.get(key)
        await client.put(key, b"20")
        stm.put(key, b"%d" % (int(current or 0) + 1))

    await run_stm(client, increment, isolation=Isolation.READ_COMMITTED)
    assert runs == 1
    assert await value(client, key) == b"11"  # the concurrent write to 20 was lost


@pytest.mark.parametrize("isolation", CHECKING)
async def test_concurrent_delete_forces_a_retry(
    client: Client, etcd_prefix: bytes, isolation: Isolation
) -> None:
    """Go's TestSTMApplyOnConcurrentDeletion: a read key deleted before the commit re-runs apply once."""
    key, out = etcd_prefix + b"k", etcd_prefix + b"out"
    await client.put(key, b"v")
    seen: list[bytes | None] = []

    async def apply(stm: STM) -> None:
        seen.append(await stm.get(key))
        if stm.attempt == 1:
            await client.delete(key)
        stm.put(out, b"saw %r" % seen[-1])

    await run_stm(client, apply, isolation=isolation)
    assert seen == [b"v", None]
    assert await value(client, out) == b"saw None"


@pytest.mark.parametrize(
    ("isolation", "retried"), [(Isolation.SERIALIZABLE_SNAPSHOT, True), (Isolation.SERIALIZABLE, False)]
)
async def test_only_serializable_snapshot_checks_blind_writes(
    client: Client, etcd_prefix: bytes, isolation: Isolation, retried: bool
) -> None:
    """Go's TestSTMSerializableSnapshotPut: a written-but-unread key changed after the snapshot."""
    a, b = etcd_prefix + b"a", etcd_prefix + b"b"
    await client.put(a, b"1")
    runs = 0

    async def apply(stm: STM) -> None:
        nonlocal runs
        runs += 1
        await stm.get(a)
        if runs == 1:
            await client.put(b, b"concurrent")
        stm.put(b, b"mine")

    await run_stm(client, apply, isolation=isolation)
    assert runs == (2 if retried else 1)
    assert await value(client, b) == b"mine"


@pytest.mark.parametrize("isolation", [Isolation.SERIALIZABLE_SNAPSHOT, Isolation.SERIALIZABLE])
async def test_serializable_levels_read_one_snapshot(
    client: Client, etcd_prefix: bytes, isolation: Isolation
) -> None:
    a, b = etcd_prefix + b"a", etcd_prefix + b"b"
    await client.txn(success=[Op.put(a, b"1"), Op.put(b, b"1")])
    seen: list[tuple[bytes | None, bytes | None]] = []

    async def apply(stm: STM) -> None:
        first = await stm.get(a)
        if stm.attempt == 1:
            await client.txn(success=[Op.put(a, b"2"), Op.put(b, b"2")])
        seen.append((first, await stm.get(b)))

    await run_stm(client, apply, isolation=isolation)
    assert seen == [(b"1", b"1")]  # b read at a's revision, although it changed; read-only: no commit needed


async def test_repeatable_reads_may_see_a_mix_but_never_commits_it(
    client: Client, etcd_prefix: bytes
) -> None:
    a, b, out = etcd_prefix + b"a", etcd_prefix + b"b", etcd_prefix + b"out"
    await client.txn(success=[Op.put(a, b"1"), Op.put(b, b"1")])
    seen: list[tuple[bytes | None, bytes | None]] = []

    async def apply(stm: STM) -> None:
        first = await stm.get(a)
        if stm.attempt == 1:
            await client.txn(success=[Op.put(a, b"2"), Op.put(b, b"2")])
        pair = (first, await stm.get(b))
        seen.append(pair)
        stm.put(out, b"%s%s" % pair)

    await run_stm(client, apply, isolation=Isolation.REPEATABLE_READS)
    assert seen == [(b"1", b"2"), (b"2", b"2")]
    assert await value(client, out) == b"22"


async def test_max_attempts_raises_conflict_error_naming_the_keys(client: Client, etcd_prefix: bytes) -> None:
    hot, cold = etcd_prefix + b"hot", etcd_prefix + b"cold"
    await client.put(cold, b"c")
    runs = 0

    async def apply(stm: STM) -> None:
        nonlocal runs
        runs += 1
        await stm.get(hot)
        await stm.get(cold)
        await client.put(hot, b"%d" % runs)  # someone always gets there first
        stm.put(cold, b"never")

    with pytest.raises(STMConflictError) as info:
        await run_stm(client, apply, max_attempts=3)
    assert info.value.keys == (hot,)
    assert info.value.attempts == 3
    assert runs == 3
    assert await value(client, cold) == b"c"


async def test_compacted_snapshot_restarts_the_attempt(client: Client, etcd_prefix: bytes) -> None:
    a, b = etcd_prefix + b"a", etcd_prefix + b"b"
    await client.txn(success=[Op.put(a, b"1"), Op.put(b, b"1")])
    runs = 0

    async def apply(stm: STM) -> bytes | None:
        nonlocal runs
        runs += 1
        await stm.get(a)
        if runs == 1:
            resp = await client.put(etcd_prefix + b"noise", b"x")
            await client.compact(resp.header.revision)  # our snapshot revision is gone
        return await stm.get(b)

    assert await run_stm(client, apply) == b"1"
    assert runs == 2


# ----- prefetch and round trips ----------------------------------------------------------------------------


async def test_prefetch_reads_all_keys_in_one_round_trip(
    client: Client, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [etcd_prefix + b"%d" % i for i in range(5)]
    await client.txn(success=[Op.put(k, b"1") for k in keys])
    out = etcd_prefix + b"sum"

    async def total(stm: STM) -> None:
        stm.put(out, b"%d" % sum([int(await stm.get(k) or 0) for k in keys]))

    rpcs = Rpcs(monkeypatch, client)
    await run_stm(client, total)
    without = len(rpcs)
    rpcs.calls.clear()
    await run_stm(client, total, prefetch=keys)
    assert (without, len(rpcs)) == (6, 2)  # 5 reads + commit, vs one read + commit
    assert await value(client, out) == b"5"


async def test_retry_reuses_the_values_read_by_the_failed_commit(
    client: Client, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = etcd_prefix + b"a", etcd_prefix + b"b"
    await client.txn(success=[Op.put(a, b"1"), Op.put(b, b"1")])
    rpcs = Rpcs(monkeypatch, client)
    log: list[int] = []

    async def apply(stm: STM) -> None:
        log.append(len(rpcs))
        x, y = await stm.get(a), await stm.get(b)
        if stm.attempt == 1:
            await client.put(a, b"5")
        log.append(len(rpcs))
        stm.put(b, b"%d" % (int(x or 0) + int(y or 0)))

    await run_stm(client, apply)
    # attempt 1: two reads (+ the outside put); commit fails; attempt 2: no read at all; commit succeeds
    assert log == [0, 3, 4, 4]
    assert len(rpcs) == 5
    assert await value(client, b) == b"6"


async def test_read_only_serializable_attempt_sends_no_commit(
    client: Client, etcd_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = etcd_prefix + b"k"
    await client.put(key, b"v")

    async def read(stm: STM) -> bytes | None:
        return await stm.get(key)

    rpcs = Rpcs(monkeypatch, client)
    for isolation, expected in [
        (Isolation.SERIALIZABLE_SNAPSHOT, 1),
        (Isolation.SERIALIZABLE, 1),
        (Isolation.REPEATABLE_READS, 2),  # its reads may come from different revisions: validate them
        (Isolation.READ_COMMITTED, 1),
    ]:
        rpcs.calls.clear()
        assert await run_stm(client, read, isolation=isolation) == b"v"
        assert len(rpcs) == expected, isolation


async def test_get_checkpoints_even_when_cached(client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"

    async def apply(stm: STM) -> None:
        await stm.get(key)
        with trio.testing.assert_checkpoints():
            await stm.get(key)
        stm.put(key, b"v")
        with trio.testing.assert_checkpoints():
            await stm.get(key)

    await run_stm(client, apply)


# ----- the bank invariant ---------------------------------------------------------------------------------

ACCOUNTS = 10
BALANCE = 100
MOVERS = 8


async def _transfer(stm: STM, src: bytes, dst: bytes, amount: int) -> None:
    a, b = int(await stm.get(src) or 0), int(await stm.get(dst) or 0)
    await trio.lowlevel.checkpoint()  # let the other movers interleave between our reads and our writes
    moved = min(a, amount)
    stm.put(src, b"%d" % (a - moved))
    stm.put(dst, b"%d" % (b + moved))


async def _run_bank(client: Client, prefix: bytes, isolation: Isolation, transfers: int) -> tuple[int, int]:
    """Run ``transfers`` transfers with MOVERS tasks; return the revision range they committed in."""
    accounts = [prefix + b"acct/%02d" % i for i in range(ACCOUNTS)]
    start = await client.txn(success=[Op.put(k, b"%d" % BALANCE) for k in accounts])
    remaining = transfers
    rng = random.Random(transfers)

    async def mover() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            src, dst = rng.sample(accounts, 2)
            await run_stm(
                client, _transfer, src, dst, rng.randint(1, 30), isolation=isolation, prefetch=(src, dst)
            )

    async with trio.open_nursery() as nursery:
        for _ in range(MOVERS):
            nursery.start_soon(mover)
    return start.header.revision, (await client.range(prefix, prefix=True, count_only=True)).header.revision


async def _audit(client: Client, prefix: bytes, start: int, end: int) -> tuple[int, list[int]]:
    """Replay every revision in (start, end] of the accounts; return (revisions seen, totals that were wrong)."""
    model = {
        kv.key: int(kv.value)
        for kv in (await client.range(prefix + b"acct/", prefix=True, revision=start)).kvs
    }
    assert len(model) == ACCOUNTS
    revisions = 0
    wrong: list[int] = []
    async with client.watch(prefix + b"acct/", prefix=True, start_revision=start + 1) as events:
        async for resp in events:
            by_revision: dict[int, list[tuple[EventType, bytes, bytes]]] = {}
            for event in resp.events:
                by_revision.setdefault(event.kv.mod_revision, []).append(
                    (event.type, event.kv.key, event.kv.value)
                )
            for revision, changes in by_revision.items():
                assert revision <= end
                for kind, key, raw in changes:
                    assert kind is EventType.PUT
                    model[key] = int(raw)
                revisions += 1
                if len(model) == ACCOUNTS and sum(model.values()) != ACCOUNTS * BALANCE:
                    wrong.append(revision)
            if by_revision and max(by_revision) >= end:
                return revisions, wrong
    raise AssertionError("unreachable")


@pytest.mark.deadline(90)
@pytest.mark.parametrize("isolation", CHECKING)
async def test_bank_total_is_constant_at_every_revision(
    client: Client, etcd_prefix: bytes, isolation: Isolation
) -> None:
    transfers = 2000
    start, end = await _run_bank(client, etcd_prefix, isolation, transfers)
    revisions, wrong = await _audit(client, etcd_prefix, start, end)
    assert wrong == []
    assert revisions == transfers  # every transfer committed exactly once, as one transaction


@pytest.mark.deadline(60)
async def test_bank_control_read_committed_breaks_the_total(client: Client, etcd_prefix: bytes) -> None:
    """The checker has teeth: without conflict checks, concurrent transfers lose money or make it."""
    for round_number in range(10):
        prefix = etcd_prefix + b"round-%d/" % round_number
        start, end = await _run_bank(client, prefix, Isolation.READ_COMMITTED, 200)
        _, wrong = await _audit(client, prefix, start, end)
        if wrong:
            return
    pytest.fail("READ_COMMITTED never broke the invariant in 10 rounds; is the checker blind?")
