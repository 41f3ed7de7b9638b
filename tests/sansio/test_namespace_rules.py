"""Namespace translation: etcd Go namespace package's interval rules, and the round trip."""

from __future__ import annotations

import pytest

from etcdsync.client._sansio._namespace import Namespace
from etcdsync.client._txn import Compare, Op
from etcdsync.client._types import (
    DeleteResponse,
    Event,
    EventType,
    KeyValue,
    LeaseTimeToLive,
    PutResponse,
    RangeResponse,
    ResponseHeader,
    TxnResponse,
    WatchResponse,
)

NS = Namespace(b"/ns/")
H = ResponseHeader(revision=5)


@pytest.mark.parametrize(
    ("key", "end", "wire"),
    [
        (b"a", b"", (b"/ns/a", b"")),
        (b"a", b"c", (b"/ns/a", b"/ns/c")),
        (b"a", b"\x00", (b"/ns/a", b"/ns0")),  # from key: stops at the end of the namespace
        (b"\x00", b"\x00", (b"/ns/", b"/ns0")),  # every key: the whole namespace
    ],
)
def test_key_range(key: bytes, end: bytes, wire: tuple[bytes, bytes]) -> None:
    assert NS.key_range(key, end) == wire


def test_identity_namespace_changes_nothing() -> None:
    ns = Namespace(b"")
    assert not ns
    op = Op.get(b"a", prefix=True)
    assert ns.op(op) is op
    assert ns.key_range(b"a", b"\x00") == (b"a", b"\x00")
    assert ns.strip(b"/x") == b"/x"


def test_ops_and_nested_txn_are_namespaced() -> None:
    txn = Op.txn(
        [Compare.version(b"k") > 0, Compare.value(b"p", prefix=True) == b"v"],
        [Op.put(b"k", b"v"), Op.txn([Compare.mod_revision(b"x") < 3], [Op.delete(b"d", from_key=True)], [])],
        [Op.get(b"", prefix=True)],
    )
    out = NS.txn(txn)
    assert [c.key for c in out.compare] == [b"/ns/k", b"/ns/p"]
    assert out.compare[1].range_end == b"/ns/q"
    put, nested = out.success
    assert put.key == b"/ns/k"  # type: ignore[union-attr]
    assert nested.compare[0].key == b"/ns/x"  # type: ignore[union-attr]
    assert (nested.success[0].key, nested.success[0].range_end) == (b"/ns/d", b"/ns0")  # type: ignore[union-attr]
    (get,) = out.failure
    assert (get.key, get.range_end) == (b"/ns/", b"/ns0")  # type: ignore[union-attr]


def test_responses_are_stripped() -> None:
    kv = KeyValue(key=b"/ns/a", value=b"1")
    assert NS.range_response(RangeResponse(header=H, kvs=(kv,))).kvs[0].key == b"a"
    assert NS.put_response(PutResponse(header=H, prev_kv=kv)).prev_kv == KeyValue(key=b"a", value=b"1")
    assert NS.put_response(PutResponse(header=H)).prev_kv is None
    assert NS.delete_response(DeleteResponse(header=H, deleted=1, prev_kvs=(kv,))).prev_kvs[0].key == b"a"
    nested = TxnResponse(header=H, succeeded=True, responses=(RangeResponse(header=H, kvs=(kv,)),))
    txn = TxnResponse(header=H, succeeded=True, responses=(nested, PutResponse(header=H, prev_kv=kv)))
    out = NS.txn_response(txn)
    assert out.responses[0].responses[0].kvs[0].key == b"a"  # type: ignore[union-attr]
    assert out.responses[1].prev_kv.key == b"a"  # type: ignore[union-attr]
    ttl = LeaseTimeToLive(header=H, id=1, ttl=5, keys=(b"/ns/a", b"/other/b"))
    assert NS.lease_time_to_live(ttl).keys == (b"a",)
    events = (Event(type=EventType.PUT, kv=kv, prev_kv=kv), Event(type=EventType.DELETE, kv=kv))
    watched = NS.watch_response(WatchResponse(header=H, events=events))
    assert [e.kv.key for e in watched.events] == [b"a", b"a"]
    assert watched.events[0].prev_kv is not None and watched.events[0].prev_kv.key == b"a"
    assert watched.events[1].prev_kv is None


def test_a_key_outside_the_namespace_is_a_bug() -> None:
    with pytest.raises(AssertionError, match="outside the namespace"):
        NS.strip(b"/other/a")


def test_nested_namespaces_compose() -> None:
    assert NS.nested(b"tenant/").key_range(b"a", b"") == (b"/ns/tenant/a", b"")
    with pytest.raises(TypeError, match="must be bytes"):
        Namespace("x")  # type: ignore[arg-type]
