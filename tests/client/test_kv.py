"""KV and Txn against a real etcd: every option of API.md checked by its effect on the server."""

from __future__ import annotations

import pytest

from etcdsync import GuardFailedError, KeyNotFoundError, LeaseNotFoundError
from etcdsync.client import (
    Client,
    Compare,
    Op,
    PutResponse,
    RangeResponse,
    SortOrder,
    SortTarget,
    TxnResponse,
)


async def test_put_get_roundtrip(client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"
    resp = await client.put(key, b"v1")
    kv = await client.get(key)
    assert kv is not None
    assert (kv.key, kv.value, kv.version) == (key, b"v1", 1)
    assert kv.create_revision == kv.mod_revision == resp.header.revision
    assert await client.get(etcd_prefix + b"missing") is None
    # str keys and values are UTF-8 encoded.
    await client.put((etcd_prefix + b"s").decode(), "é")
    kv = await client.get(etcd_prefix + b"s")
    assert kv is not None and kv.value == "é".encode()


async def test_get_at_revision_and_serializable(client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"
    first = await client.put(key, b"1")
    await client.put(key, b"2")
    old = await client.get(key, revision=first.header.revision)
    assert old is not None and old.value == b"1"
    now = await client.get(key, serializable=True)
    assert now is not None and now.value == b"2" and now.version == 2


async def test_prev_kv(client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"
    assert (await client.put(key, b"1", prev_kv=True)).prev_kv is None
    resp = await client.put(key, b"2", prev_kv=True)
    assert resp.prev_kv is not None and resp.prev_kv.value == b"1"
    deleted = await client.delete(key, prev_kv=True)
    assert deleted.deleted == 1
    assert [kv.value for kv in deleted.prev_kvs] == [b"2"]


async def _fill(client: Client, prefix: bytes, n: int) -> list[int]:
    revs = []
    for i in range(n):
        revs.append((await client.put(prefix + b"%02d" % i, b"v%d" % (n - i))).header.revision)
    return revs


async def test_range_prefix_limit_count_more(client: Client, etcd_prefix: bytes) -> None:
    await _fill(client, etcd_prefix, 5)
    await client.put(etcd_prefix[:-1] + b"0", b"outside")  # just past the prefix
    resp = await client.range(etcd_prefix, prefix=True, limit=2)
    assert [kv.key for kv in resp.kvs] == [etcd_prefix + b"00", etcd_prefix + b"01"]
    assert resp.count == 5 and resp.more
    full = await client.range(etcd_prefix, prefix=True)
    assert len(full.kvs) == 5 and not full.more


async def test_range_end_and_from_key(client: Client, etcd_prefix: bytes) -> None:
    await _fill(client, etcd_prefix, 5)
    resp = await client.range(etcd_prefix + b"01", etcd_prefix + b"03")
    assert [kv.key[-2:] for kv in resp.kvs] == [b"01", b"02"]
    resp = await client.range(etcd_prefix + b"03", from_key=True, limit=100)
    keys = [kv.key for kv in resp.kvs]
    assert keys[:2] == [etcd_prefix + b"03", etcd_prefix + b"04"]
    assert all(k >= etcd_prefix + b"03" for k in keys)


async def test_keys_only_and_count_only(client: Client, etcd_prefix: bytes) -> None:
    await _fill(client, etcd_prefix, 3)
    resp = await client.range(etcd_prefix, prefix=True, keys_only=True)
    assert len(resp.kvs) == 3 and all(kv.value == b"" for kv in resp.kvs)
    resp = await client.range(etcd_prefix, prefix=True, count_only=True)
    assert resp.kvs == () and resp.count == 3


@pytest.mark.parametrize(
    ("target", "order", "expected"),
    [
        (SortTarget.KEY, SortOrder.DESCEND, [b"02", b"01", b"00"]),
        (SortTarget.VALUE, SortOrder.ASCEND, [b"02", b"01", b"00"]),  # values v3 v2 v1 → v1 first
        (SortTarget.CREATE, SortOrder.DESCEND, [b"02", b"01", b"00"]),
        (SortTarget.MOD, SortOrder.ASCEND, [b"00", b"01", b"02"]),
        (SortTarget.VERSION, SortOrder.ASCEND, [b"01", b"02", b"00"]),
    ],
)
async def test_sort(
    client: Client, etcd_prefix: bytes, target: SortTarget, order: SortOrder, expected: list[bytes]
) -> None:
    await _fill(client, etcd_prefix, 3)
    if target is SortTarget.VERSION:
        await client.put(etcd_prefix + b"00", b"again")  # version 2; others stay at 1 (stable by key)
    resp = await client.range(etcd_prefix, prefix=True, sort_target=target, sort_order=order)
    assert [kv.key[-2:] for kv in resp.kvs] == expected


async def test_revision_filters(client: Client, etcd_prefix: bytes) -> None:
    revs = await _fill(client, etcd_prefix, 4)
    await client.put(etcd_prefix + b"00", b"modified")
    resp = await client.range(etcd_prefix, prefix=True, min_create_revision=revs[2])
    assert [kv.key[-2:] for kv in resp.kvs] == [b"02", b"03"]
    assert resp.count == 4  # count ignores the filters (etcd semantics)
    resp = await client.range(etcd_prefix, prefix=True, max_create_revision=revs[1])
    assert [kv.key[-2:] for kv in resp.kvs] == [b"00", b"01"]
    resp = await client.range(etcd_prefix, prefix=True, min_mod_revision=revs[3])
    assert [kv.key[-2:] for kv in resp.kvs] == [b"00", b"03"]
    resp = await client.range(etcd_prefix, prefix=True, max_mod_revision=revs[1])
    assert [kv.key[-2:] for kv in resp.kvs] == [b"01"]


async def test_range_at_revision(client: Client, etcd_prefix: bytes) -> None:
    revs = await _fill(client, etcd_prefix, 3)
    resp = await client.range(etcd_prefix, prefix=True, revision=revs[1])
    assert len(resp.kvs) == 2 and resp.header.revision >= revs[2]


async def test_ignore_value_and_ignore_lease(client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"
    lease = await client.lease_grant(60)
    await client.put(key, b"keep")
    # ignore_value keeps the value and sets the lease given (a put without one detaches the lease).
    await client.put(key, b"", ignore_value=True, lease=lease.id)
    kv = await client.get(key)
    assert kv is not None and (kv.value, kv.lease, kv.version) == (b"keep", lease.id, 2)
    await client.put(key, b"new", ignore_lease=True)
    kv = await client.get(key)
    assert kv is not None and (kv.value, kv.lease) == (b"new", lease.id)
    with pytest.raises(KeyNotFoundError):
        await client.put(etcd_prefix + b"absent", b"", ignore_value=True)
    await client.lease_revoke(lease.id)


async def test_put_with_unknown_lease(client: Client, etcd_prefix: bytes) -> None:
    with pytest.raises(LeaseNotFoundError) as info:
        await client.put(etcd_prefix + b"k", b"v", lease=0x7FFF_0000_1234)
    assert info.value.__cause__ is not None


async def test_range_delete_prefix_and_range_end(client: Client, etcd_prefix: bytes) -> None:
    await _fill(client, etcd_prefix, 5)
    resp = await client.delete(etcd_prefix + b"01", etcd_prefix + b"03")
    assert resp.deleted == 2
    resp = await client.delete(etcd_prefix, prefix=True)
    assert resp.deleted == 3
    assert (await client.range(etcd_prefix, prefix=True)).count == 0


async def test_txn_success_and_failure_branches(client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"
    resp = await client.txn(
        compare=[Compare.create_revision(key) == 0],
        success=[Op.put(key, b"created"), Op.get(key)],
        failure=[Op.get(key)],
    )
    assert resp.succeeded
    put, got = resp.responses
    assert isinstance(put, PutResponse) and isinstance(got, RangeResponse)
    assert got.kvs[0].create_revision == resp.header.revision  # ops see earlier ops of the same txn
    resp = await client.txn(
        compare=[Compare.create_revision(key) == 0], success=[Op.put(key, b"again")], failure=[Op.get(key)]
    )
    assert not resp.succeeded
    (got,) = resp.responses
    assert isinstance(got, RangeResponse) and got.kvs[0].value == b"created"


async def test_txn_compare_kinds(client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"
    lease = await client.lease_grant(60)
    put = await client.put(key, b"v", lease=lease.id)
    rev = put.header.revision
    holds = [
        Compare.value(key) == b"v",
        Compare.value(key) != b"w",
        Compare.value(key) > b"a",
        Compare.value(key) < b"z",
        Compare.version(key) == 1,
        Compare.create_revision(key) == rev,
        Compare.mod_revision(key) < rev + 1,
        Compare.mod_revision(key) > rev - 1,
        Compare.lease(key) == lease.id,
        Compare.version(etcd_prefix, prefix=True) > 0,
    ]
    for cmp in holds:
        assert (await client.txn(compare=[cmp])).succeeded, cmp
    fails = [Compare.value(key) == b"x", Compare.version(key) > 1, Compare.lease(key) == 0]
    for cmp in fails:
        assert not (await client.txn(compare=[cmp])).succeeded, cmp
    await client.lease_revoke(lease.id)


async def test_nested_txn(client: Client, etcd_prefix: bytes) -> None:
    a, b = etcd_prefix + b"a", etcd_prefix + b"b"
    resp = await client.txn(
        compare=[Compare.version(a) == 0],
        success=[
            Op.put(a, b"1"),
            Op.txn([Compare.version(b) > 0], [Op.put(b, b"inner-yes")], [Op.put(b, b"inner-no")]),
        ],
    )
    assert resp.succeeded
    inner = resp.responses[1]
    assert isinstance(inner, TxnResponse) and not inner.succeeded
    kv = await client.get(b)
    assert kv is not None and kv.value == b"inner-no"


async def test_guarded_writes(client: Client, etcd_prefix: bytes) -> None:
    token_key, data = etcd_prefix + b"token", etcd_prefix + b"data"
    rev = (await client.put(token_key, b"owner")).header.revision
    guard = Compare.create_revision(token_key) == rev
    put = await client.put(data, b"v1", guard=guard, prev_kv=True)
    assert put.prev_kv is None
    assert (await client.delete(data, guard=[guard])).deleted == 1
    resp = await client.txn(success=[Op.put(data, b"v2")], guard=guard)
    assert resp.succeeded
    # A new owner: the old guard must fail and nothing is written.
    await client.delete(token_key)
    await client.put(token_key, b"new-owner")
    with pytest.raises(GuardFailedError) as info:
        await client.put(data, b"stale", guard=guard)
    assert [kv.value for kv in info.value.kvs] == [b"new-owner"]
    assert info.value.revision > rev
    with pytest.raises(GuardFailedError):
        await client.delete(data, guard=guard)
    with pytest.raises(GuardFailedError):
        await client.txn(success=[Op.put(data, b"stale")], guard=guard)
    kv = await client.get(data)
    assert kv is not None and kv.value == b"v2"


async def test_iter_range_pages_at_one_revision(client: Client, etcd_prefix: bytes) -> None:
    await _fill(client, etcd_prefix, 25)
    seen = []
    async for kv in client.iter_range(etcd_prefix, page_size=7):
        seen.append(kv.key)
        if len(seen) == 1:
            # Writes after the first page are not seen: every page is read at the first page's revision.
            await client.put(etcd_prefix + b"99", b"late")
            await client.delete(etcd_prefix + b"24")
    assert seen == [etcd_prefix + b"%02d" % i for i in range(25)]
    single = [kv.key async for kv in client.iter_range(etcd_prefix + b"03", prefix=False)]
    assert single == [etcd_prefix + b"03"]


async def test_compact(client: Client, etcd_prefix: bytes) -> None:
    from etcdsync import CompactedError

    first = await client.put(etcd_prefix + b"k", b"1")
    await client.put(etcd_prefix + b"k", b"2")
    await client.compact(first.header.revision, physical=True)
    with pytest.raises(CompactedError):
        await client.get(etcd_prefix + b"k", revision=first.header.revision - 1)
    kv = await client.get(etcd_prefix + b"k")
    assert kv is not None and kv.value == b"2"
