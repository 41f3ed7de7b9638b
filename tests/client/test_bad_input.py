"""Caller mistakes raise ValueError/TypeError before any RPC; server refusals map to typed errors.

The cases are those of ../shared/notes/fault-injection.md §5 that the client core owns. After each
one the client must still work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

import etcdsync
from etcdsync.client import Client, Compare, Op

BadCall = Callable[[Client, bytes], Awaitable[object]]

CALLER_MISTAKES: list[tuple[str, type[Exception], str, BadCall]] = [
    ("empty key get", ValueError, r"^key must not be empty$", lambda c, p: c.get(b"")),
    ("empty key put", ValueError, r"^key must not be empty$", lambda c, p: c.put(b"", b"v")),
    ("empty key delete", ValueError, r"^key must not be empty$", lambda c, p: c.delete("")),
    ("int key", TypeError, r"^key must be bytes or str, not int$", lambda c, p: c.put(5, b"v")),  # type: ignore[arg-type]
    ("None value", TypeError, r"^value must be bytes or str, not NoneType$", lambda c, p: c.put(p, None)),  # type: ignore[arg-type]
    (
        "value over the request limit",
        ValueError,
        r"^request of \d+ bytes is over the limit of 1572864 bytes",
        lambda c, p: c.put(p + b"big", b"x" * (1536 * 1024)),
    ),
    ("negative limit", ValueError, r"^limit must be >= 0$", lambda c, p: c.range(p, prefix=True, limit=-1)),
    ("ttl zero", ValueError, r"^ttl must be > 0$", lambda c, p: c.lease_grant(0)),
    ("ttl negative", ValueError, r"^ttl must be > 0$", lambda c, p: c.lease_grant(-5)),
    (
        "ttl too large",
        ValueError,
        r"^ttl must be <= 9000000000 \(etcd's maximum lease TTL\)$",
        lambda c, p: c.lease_grant(9_000_000_001),
    ),
    (
        "ttl float",
        TypeError,
        r"^ttl must be an int number of seconds, not float$",
        lambda c, p: c.lease_grant(1.5),
    ),  # type: ignore[arg-type]
    (
        "too many txn ops",
        ValueError,
        r"^txn has 129 success ops; the limit is 128",
        lambda c, p: c.txn(success=[Op.put(p + b"%d" % i, b"") for i in range(129)]),
    ),
    (
        "too many compares",
        ValueError,
        r"^txn has 200 compares; the limit is 128",
        lambda c, p: c.txn(compare=[Compare.version(p + b"%d" % i) > 0 for i in range(200)]),
    ),
    (
        "duplicate key in txn",
        ValueError,
        r"^txn branch puts key .* twice",
        lambda c, p: c.txn(success=[Op.put(p + b"k", b"1"), Op.put(p + b"k", b"2")]),
    ),
    (
        "put and delete of one key in txn",
        ValueError,
        r"^txn branch puts key .* and also deletes it",
        lambda c, p: c.txn(success=[Op.put(p + b"k", b"1"), Op.delete(p, prefix=True)]),
    ),
    ("compact at 0", ValueError, r"^revision must be >= 1$", lambda c, p: c.compact(0)),
    (
        "range_end and prefix",
        ValueError,
        r"at most one of range_end",
        lambda c, p: c.range(p, b"z", prefix=True),
    ),
    ("not a compare", TypeError, r"compares must be Compare objects", lambda c, p: c.txn(compare=[True])),  # type: ignore[list-item]
    ("page size", ValueError, r"^page_size must be >= 1$", lambda c, p: anext(c.iter_range(p, page_size=0))),
]


@pytest.mark.parametrize(
    ("name", "exc", "match", "call"), CALLER_MISTAKES, ids=[c[0] for c in CALLER_MISTAKES]
)
async def test_caller_mistakes_raise_before_any_rpc(
    client: Client, etcd_prefix: bytes, name: str, exc: type[Exception], match: str, call: BadCall
) -> None:
    before = (await client.range(b"\x00", from_key=True, count_only=True)).header.revision
    with pytest.raises(exc, match=match):
        await call(client, etcd_prefix)
    assert not isinstance(exc, etcdsync.EtcdError)
    # Nothing was written, and the client still works.
    after = await client.put(etcd_prefix + b"ok", b"still usable")
    assert after.header.revision == before + 1


SERVER_REFUSALS: list[tuple[str, type[etcdsync.RpcError], BadCall]] = [
    ("future revision", etcdsync.FutureRevisionError, lambda c, p: c.get(p, revision=1 << 40)),
    ("unknown lease on put", etcdsync.LeaseNotFoundError, lambda c, p: c.put(p + b"k", b"v", lease=0xDEAD)),
    (
        "ignore_value on missing key",
        etcdsync.KeyNotFoundError,
        lambda c, p: c.put(p + b"nope", b"", ignore_value=True),
    ),
    ("revoke unknown lease", etcdsync.LeaseNotFoundError, lambda c, p: c.lease_revoke(0xBEEF)),
    ("compact in the future", etcdsync.FutureRevisionError, lambda c, p: c.compact(1 << 40)),
]


@pytest.mark.parametrize(("name", "exc", "call"), SERVER_REFUSALS, ids=[c[0] for c in SERVER_REFUSALS])
async def test_server_refusals_are_typed_and_chained(
    client: Client, etcd_prefix: bytes, name: str, exc: type[etcdsync.RpcError], call: BadCall
) -> None:
    with pytest.raises(exc) as info:
        await call(client, etcd_prefix)
    assert info.value.__cause__ is not None
    assert info.value.details.startswith("etcdserver: ")
    await client.put(etcd_prefix + b"ok", b"still usable")


async def test_limits_are_configurable(etcd_endpoint: str, etcd_prefix: bytes) -> None:
    async with etcdsync.open_client(etcd_endpoint, max_request_bytes=100, max_txn_ops=2) as c:
        with pytest.raises(ValueError, match="over the limit of 100 bytes"):
            await c.put(etcd_prefix + b"k", b"x" * 200)
        with pytest.raises(ValueError, match="the limit is 2"):
            await c.txn(success=[Op.get(etcd_prefix)] * 3)
        await c.put(etcd_prefix + b"k", b"small")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"endpoints": []}, ValueError, "at least one endpoint"),
        ({"endpoints": "localhost"}, ValueError, "must be host:port"),
        ({"username": "root"}, ValueError, "give both username and password"),
        ({"transport": "carrier-pigeon"}, ValueError, "transport must be one of"),
        ({"tls": "yes"}, TypeError, "tls must be an ssl.SSLContext"),
        ({"max_txn_ops": 0}, ValueError, "max_txn_ops must be >= 1"),
    ],
)
async def test_open_client_validates(kwargs: dict[str, object], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        async with etcdsync.open_client(**kwargs):  # type: ignore[arg-type]
            pass


async def test_closed_client_raises_closed_resource_error(etcd_endpoint: str) -> None:
    import trio

    async with etcdsync.open_client(etcd_endpoint) as c:
        pass
    with pytest.raises(trio.ClosedResourceError):
        await c.get(b"k")


async def test_closed_port_fails_with_no_endpoint_available() -> None:
    import trio

    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with etcdsync.open_client(f"127.0.0.1:{port}", max_rounds=1) as c:
        with pytest.raises(etcdsync.NoEndpointAvailableError) as info:
            await c.get(b"k")
        assert f"127.0.0.1:{port}" in info.value.errors
        # A write that never reached a server is not "outcome unknown".
        with pytest.raises(etcdsync.NoEndpointAvailableError):
            await c.put(b"k", b"v")
