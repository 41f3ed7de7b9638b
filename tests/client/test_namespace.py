"""client.with_namespace: a seeded property test against raw prefixed keys, isolation, watches, recipes."""

from __future__ import annotations

import random

import pytest
import trio

import etcdsync
from etcdsync.client import (
    Client,
    Compare,
    DeleteResponse,
    EventType,
    Op,
    PutResponse,
    RangeResponse,
    SortOrder,
    SortTarget,
    TxnResponse,
)
from etcdsync.client._keys import prefix_end

KEYS = [b"a", b"a/1", b"a/2", b"ab", b"b", b"b/x", b"c", b"\xff", b"\xff\xff"]


def observable(resp: object, strip: bytes = b"") -> object:
    """What a caller can see of a response, minus revisions (both runs share one server's counter)."""

    def kv(k: etcdsync.KeyValue | None) -> object:
        if k is None:
            return None
        assert k.key.startswith(strip)
        return (k.key[len(strip) :], k.value, k.version, k.lease)

    if isinstance(resp, RangeResponse):
        return ("range", [kv(k) for k in resp.kvs], resp.count, resp.more)
    if isinstance(resp, PutResponse):
        return ("put", kv(resp.prev_kv))
    if isinstance(resp, DeleteResponse):
        return ("delete", resp.deleted, sorted(kv(k) for k in resp.prev_kvs))  # type: ignore[type-var]
    if isinstance(resp, TxnResponse):
        return ("txn", resp.succeeded, [observable(r, strip) for r in resp.responses])
    raise AssertionError(resp)


def random_call(rng: random.Random, prefix: bytes) -> tuple[str, tuple[object, ...], dict[str, object]]:
    """One random KV/txn call; keys get ``prefix`` (b"" for the namespaced view, the raw prefix otherwise)."""

    def key() -> bytes:
        return prefix + rng.choice(KEYS)

    kind = rng.choice(["put", "put", "get", "prefix", "from", "range", "delete", "delprefix", "txn"])
    if kind == "put":
        return "put", (key(), b"v%d" % rng.randrange(100)), {"prev_kv": rng.random() < 0.5}
    if kind == "get":
        return "range", (key(),), {}
    if kind == "prefix":
        opts = {"sort_target": rng.choice(list(SortTarget)), "sort_order": rng.choice(list(SortOrder))}
        return (
            "range",
            (prefix + rng.choice([b"", b"a", b"b"]),),
            {"prefix": True, "limit": rng.randrange(4), **opts},
        )
    if kind == "from":
        # In a view, "from this key on" ends at the namespace's end; on raw keys that is an explicit range.
        return (
            ("range", (key(), prefix_end(prefix)), {}) if prefix else ("range", (key(),), {"from_key": True})
        )
    if kind == "range":
        lo, hi = sorted(rng.sample(KEYS, 2))
        return "range", (prefix + lo, prefix + hi), {"keys_only": rng.random() < 0.3}
    if kind == "delete":
        return "delete", (key(),), {"prev_kv": True}
    if kind == "delprefix":
        return "delete", (prefix + rng.choice([b"a", b"b/"]),), {"prefix": True, "prev_kv": True}
    k1, k2 = key(), key()
    return (
        "txn",
        (),
        {
            "compare": [Compare.version(k1) > 0, Compare.value(k2, prefix=True) != b"zz"],
            "success": [Op.put(k1, b"txn"), Op.get(k2, prefix=True)],
            "failure": [Op.get(k1), Op.txn([Compare.version(k2) == 0], [Op.put(k2, b"nested")], [])],
        },
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_namespaced_view_behaves_like_raw_prefixed_keys(
    client: Client, etcd_prefix: bytes, seed: int
) -> None:
    view = client.with_namespace(etcd_prefix + b"view/")
    raw_prefix = etcd_prefix + b"raw/"
    rng_view, rng_raw = random.Random(seed), random.Random(seed)
    for step in range(120):
        method, args, kwargs = random_call(rng_view, b"")
        _, raw_args, raw_kwargs = random_call(rng_raw, raw_prefix)
        seen_view = observable(await getattr(view, method)(*args, **kwargs))
        seen_raw = observable(await getattr(client, method)(*raw_args, **raw_kwargs), strip=raw_prefix)
        assert seen_view == seen_raw, (step, method, args, kwargs)
    # And the final states agree key for key.
    final_view = [(kv.key, kv.value) async for kv in view.iter_range(b"")]
    final_raw = [(kv.key[len(raw_prefix) :], kv.value) async for kv in client.iter_range(raw_prefix)]
    assert final_view == final_raw


async def test_a_view_cannot_reach_outside_its_prefix(client: Client, etcd_prefix: bytes) -> None:
    view = client.with_namespace(etcd_prefix + b"ns/")
    await client.put(etcd_prefix + b"outside", b"x")
    await client.put(etcd_prefix + b"ns0", b"just past the namespace")
    await view.put(b"inside", b"y")
    assert [kv.key for kv in (await view.range(b"", prefix=True)).kvs] == [b"inside"]
    assert [kv.key for kv in (await view.range(b"\x00", from_key=True)).kvs] == [b"inside"]
    assert (await view.delete(b"", prefix=True)).deleted == 1
    assert await client.get(etcd_prefix + b"outside") is not None
    assert await client.get(etcd_prefix + b"ns0") is not None
    nested = view.with_namespace(b"deeper/")
    await nested.put(b"k", b"v")
    assert await client.get(etcd_prefix + b"ns/deeper/k") is not None
    assert nested.namespace == etcd_prefix + b"ns/deeper/"
    with pytest.raises(ValueError, match="^key must not be empty$"):
        client.with_namespace(b"")


async def test_guards_and_lease_keys_are_translated(client: Client, etcd_prefix: bytes) -> None:
    view = client.with_namespace(etcd_prefix + b"ns/")
    rev = (await view.put(b"token", b"1")).header.revision
    await view.put(b"data", b"ok", guard=Compare.mod_revision(b"token") == rev)
    await view.put(b"token", b"2")
    with pytest.raises(etcdsync.GuardFailedError) as info:
        await view.put(b"data", b"stale", guard=Compare.mod_revision(b"token") == rev)
    assert [kv.key for kv in info.value.kvs] == [b"token"]
    lease = await view.lease_grant(30)
    await view.put(b"leased", b"v", lease=lease.id)
    assert (await view.lease_time_to_live(lease.id, keys=True)).keys == (b"leased",)
    await view.lease_revoke(lease.id)


async def test_watch_and_list_and_watch_on_a_view(client: Client, etcd_prefix: bytes) -> None:
    view = client.with_namespace(etcd_prefix + b"ns/")
    await view.put(b"existing", b"0")
    async with view.watch(b"", prefix=True) as events:
        await client.put(etcd_prefix + b"elsewhere", b"not seen")
        await view.put(b"k", b"1")
        await view.delete(b"k")
        seen: list[tuple[EventType, bytes]] = []
        async for resp in events:
            seen.extend((e.type, e.kv.key) for e in resp.events)
            if len(seen) == 2:
                break
    assert seen == [(EventType.PUT, b"k"), (EventType.DELETE, b"k")]
    async with etcdsync.list_and_watch(view, b"") as stream:
        first = await stream.__anext__()
        assert isinstance(first, etcdsync.client.Event) and first.kv.key == b"existing"


async def test_recipes_work_on_views_and_namespaces_do_not_collide(
    client: Client, etcd_prefix: bytes
) -> None:
    tenant_a = client.with_namespace(etcd_prefix + b"a/")
    tenant_b = client.with_namespace(etcd_prefix + b"b/")
    async with (
        etcdsync.open_session(tenant_a, ttl=5) as sa,
        etcdsync.open_session(tenant_b, ttl=5) as sb,
        etcdsync.open_session(tenant_a, ttl=5) as sa2,
    ):
        lock_a = etcdsync.Mutex(sa, "/locks/x")
        await lock_a.acquire()
        await etcdsync.Mutex(sb, "/locks/x").try_acquire()  # another namespace: no collision
        with pytest.raises(trio.WouldBlock):
            await etcdsync.Mutex(sa2, "/locks/x").try_acquire()  # same namespace: excluded
        assert await client.get(etcd_prefix + b"a//locks/x/" + format(sa.lease_id, "x").encode()) is not None
        await tenant_a.put(b"/guarded", b"ok", guard=lock_a.is_owner())
        election = etcdsync.Election(sb, "/elect")
        await election.campaign(b"b-leader")
        assert (await election.leader()).key == b"/elect/" + format(sb.lease_id, "x").encode()
        # One client, one watch stream and one keep-alive stream for every view.
        stats = client.statistics()
        assert stats.sessions == 3
        await election.resign()
        await lock_a.release()


async def test_open_client_namespace_keyword(client: Client, etcd_endpoint: str, etcd_prefix: bytes) -> None:
    async with etcdsync.open_client(etcd_endpoint, namespace=etcd_prefix + b"kw/") as view:
        assert view.namespace == etcd_prefix + b"kw/"
        await view.put(b"k", b"v")
    kv = await client.get(etcd_prefix + b"kw/k")
    assert kv is not None and kv.value == b"v"
    with pytest.raises(TypeError, match="namespace must be bytes or str"):
        async with etcdsync.open_client(etcd_endpoint, namespace=5):  # type: ignore[arg-type]
            pass
