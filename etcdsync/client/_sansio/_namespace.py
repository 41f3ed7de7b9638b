"""Key translation for ``client.with_namespace(prefix)``: pure functions over the client's value types.

A namespaced view sees the keyspace below ``prefix`` as if it were the whole keyspace. Requests have
``prefix`` added to every key, range end and compare; responses (key-values, events, guard
failures) have it removed. The interval rules are etcd's Go ``namespace`` package's:

- a single key ``k`` becomes ``prefix + k``;
- a range ``[k, end)`` becomes ``[prefix + k, prefix + end)``;
- an open-ended range (``end == b"\\x00"``, "every key from ``k``") ends at the end of the namespace,
  ``prefix_end(prefix)``, so it cannot reach keys outside it;
- "every key" (``k == end == b"\\x00"``) becomes ``[prefix, prefix_end(prefix))``.

So a namespaced client cannot read or write outside its prefix: every key it can name maps inside.
"""

from __future__ import annotations

import attrs

from .._keys import prefix_end
from .._txn import AnyOp, Compare, DeleteOp, PutOp, RangeOp, TxnOp
from .._types import (
    DeleteResponse,
    Event,
    KeyValue,
    LeaseTimeToLive,
    OpResponse,
    PutResponse,
    RangeResponse,
    TxnResponse,
    WatchResponse,
)

__all__ = ["Namespace"]


@attrs.frozen
class Namespace:
    """The translation for one prefix. ``Namespace(b"")`` is the identity.

    Example::

        ns = Namespace(b"/tenant-a/")
        ns.key_range(b"jobs/", b"jobs0")    # (b"/tenant-a/jobs/", b"/tenant-a/jobs0")
        ns.strip(b"/tenant-a/jobs/7")       # b"jobs/7"
    """

    prefix: bytes

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.prefix, bytes):
            raise TypeError(f"a namespace prefix must be bytes, not {type(self.prefix).__name__}")

    def __bool__(self) -> bool:
        return bool(self.prefix)

    def nested(self, prefix: bytes) -> Namespace:
        """The namespace ``prefix`` inside this one."""
        return Namespace(self.prefix + prefix)

    # -- requests ------------------------------------------------------------------------------------------

    def key_range(self, key: bytes, range_end: bytes) -> tuple[bytes, bytes]:
        """``(key, range_end)`` on the wire for a request's key and range end (``b""``: a single key)."""
        if not self.prefix:
            return key, range_end
        if range_end == b"\x00":
            if key == b"\x00":
                return self.prefix, prefix_end(self.prefix)
            return self.prefix + key, prefix_end(self.prefix)
        return self.prefix + key, (self.prefix + range_end if range_end else b"")

    def compare(self, cmp: Compare) -> Compare:
        """A compare on the namespaced key (and range)."""
        key, end = self.key_range(cmp.key, cmp.range_end)
        return attrs.evolve(cmp, key=key, range_end=end)

    def op(self, op: AnyOp) -> AnyOp:
        """An op (recursively, for nested transactions) on namespaced keys."""
        if not self.prefix:
            return op
        if isinstance(op, RangeOp | DeleteOp):
            key, end = self.key_range(op.key, op.range_end)
            return attrs.evolve(op, key=key, range_end=end)
        if isinstance(op, PutOp):
            return attrs.evolve(op, key=self.prefix + op.key)
        return self.txn(op)

    def txn(self, txn: TxnOp) -> TxnOp:
        """A transaction with every compare and op namespaced."""
        if not self.prefix:
            return txn
        return TxnOp(
            compare=tuple(self.compare(c) for c in txn.compare),
            success=tuple(self.op(o) for o in txn.success),
            failure=tuple(self.op(o) for o in txn.failure),
        )

    # -- responses -----------------------------------------------------------------------------------------

    def strip(self, key: bytes) -> bytes:
        """``key`` as the namespaced view names it."""
        if not self.prefix:
            return key
        if not key.startswith(self.prefix):
            # etcd never returns a key outside the requested range; anything else is a bug.
            raise AssertionError(f"key {key!r} is outside the namespace {self.prefix!r}")
        return key[len(self.prefix) :]

    def kv(self, kv: KeyValue) -> KeyValue:
        """A key-value with the prefix removed from its key."""
        return attrs.evolve(kv, key=self.strip(kv.key)) if self.prefix else kv

    def kv_or_none(self, kv: KeyValue | None) -> KeyValue | None:
        """:meth:`kv` for an optional key-value."""
        return None if kv is None else self.kv(kv)

    def range_response(self, resp: RangeResponse) -> RangeResponse:
        """A range response with namespaced keys."""
        if not self.prefix:
            return resp
        return attrs.evolve(resp, kvs=tuple(self.kv(kv) for kv in resp.kvs))

    def put_response(self, resp: PutResponse) -> PutResponse:
        """A put response with a namespaced ``prev_kv``."""
        if not self.prefix or resp.prev_kv is None:
            return resp
        return attrs.evolve(resp, prev_kv=self.kv(resp.prev_kv))

    def delete_response(self, resp: DeleteResponse) -> DeleteResponse:
        """A delete response with namespaced ``prev_kvs``."""
        if not self.prefix:
            return resp
        return attrs.evolve(resp, prev_kvs=tuple(self.kv(kv) for kv in resp.prev_kvs))

    def op_response(self, resp: OpResponse) -> OpResponse:
        """Any op's response, namespaced."""
        if isinstance(resp, RangeResponse):
            return self.range_response(resp)
        if isinstance(resp, PutResponse):
            return self.put_response(resp)
        if isinstance(resp, DeleteResponse):
            return self.delete_response(resp)
        return self.txn_response(resp)

    def txn_response(self, resp: TxnResponse) -> TxnResponse:
        """A transaction's responses, recursively namespaced."""
        if not self.prefix:
            return resp
        return attrs.evolve(resp, responses=tuple(self.op_response(r) for r in resp.responses))

    def lease_time_to_live(self, resp: LeaseTimeToLive) -> LeaseTimeToLive:
        """A lease's keys as the view names them; keys outside the namespace are left out."""
        if not self.prefix:
            return resp
        keys = tuple(k[len(self.prefix) :] for k in resp.keys if k.startswith(self.prefix))
        return attrs.evolve(resp, keys=keys)

    def watch_response(self, resp: WatchResponse) -> WatchResponse:
        """A watch response with namespaced event keys."""
        if not self.prefix or not resp.events:
            return resp
        events = tuple(
            Event(type=e.type, kv=self.kv(e.kv), prev_kv=self.kv_or_none(e.prev_kv)) for e in resp.events
        )
        return attrs.evolve(resp, events=events)
