"""Conversion between the client's values and the KV, Txn and Lease protobuf messages.

Requests go out as serialized ``bytes`` and responses come in as ``bytes``: the transports never see
a message object, and no message object leaves this package.

Both directions are on the path of every KV call, so the hot ones take shortcuts, each checked by
``tests/sansio/test_kv_wire.py`` against the generated classes:

* Range, Put, DeleteRange and Txn requests are written field by field (see "Wire encoding" below)
  instead of being built as nested message objects and serialized: with upb, building a
  ``TxnRequest`` out of its ``Compare`` and ``RequestOp`` objects costs several times what writing
  its few fields does. The bytes are exactly what ``SerializeToString()`` gives.
* Responses are parsed by upb, and the value types are filled in through their slots (see
  "Response values" below), which is about twice as fast as their attrs ``__init__``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from etcdsync.client._pb import kv_pb2, rpc_pb2

from .._txn import AnyOp, Compare, CompareTarget, DeleteOp, PutOp, RangeOp, TxnOp
from .._types import (
    DeleteResponse,
    KeyValue,
    LeaseGrant,
    LeaseTimeToLive,
    OpResponse,
    PutResponse,
    RangeResponse,
    ResponseHeader,
    TxnResponse,
)

__all__ = [
    "compact_request",
    "delete_request",
    "delete_response",
    "get_request",
    "get_response",
    "header",
    "key_value",
    "lease_grant",
    "lease_grant_request",
    "lease_ids",
    "lease_keep_alive_request",
    "lease_keep_alive_ttl",
    "lease_leases_request",
    "lease_revoke_request",
    "lease_time_to_live",
    "lease_time_to_live_request",
    "put_request",
    "put_response",
    "range_request",
    "range_response",
    "txn_request",
    "txn_response",
]


# ---------------------------------------------------------------------------------------------------------
# Wire encoding
#
# A protobuf message is its set fields in a row, each a tag (field number << 3 | wire type) and a
# value: a varint for integers, enums and bools (wire type 0), or a length then the bytes for bytes
# and nested messages (wire type 2). upb writes fields in field-number order and leaves out proto3
# scalars that hold their default (0, b"", False) -- except a member of a oneof, which is written
# whenever it is set, even to 0 (``Compare``'s operand). The functions below do the same, so their
# output equals ``SerializeToString()`` byte for byte. Field numbers are those of ``rpc.proto``.

# The one-byte varints 0..127: every length of a key or a small value, every bool and enum.
_BYTE: tuple[bytes, ...] = tuple(bytes((i,)) for i in range(0x80))
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def _varint(n: int) -> bytes:
    """``n`` as a varint; a negative int64 is written as its 64-bit two's complement (10 bytes)."""
    if 0 <= n < 0x80:
        return _BYTE[n]
    if not _INT64_MIN <= n <= _INT64_MAX:
        raise ValueError(f"Value out of range: {n}")  # upb's message for the same mistake
    n &= 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _length_delimited(tag: bytes, data: bytes) -> bytes:
    """A bytes or nested-message field: ``tag``, the length of ``data``, then ``data``."""
    n = len(data)
    return tag + (_BYTE[n] if n < 0x80 else _varint(n)) + data


def _range_fields(op: RangeOp) -> bytes:
    """A ``RangeRequest``."""
    out = _length_delimited(b"\x0a", op.key)  # 1: key
    if op.range_end:
        out += _length_delimited(b"\x12", op.range_end)  # 2: range_end
    if op.limit:
        out += b"\x18" + _varint(op.limit)  # 3: limit
    if op.revision:
        out += b"\x20" + _varint(op.revision)  # 4: revision
    if op.sort_order:
        out += b"\x28" + _varint(op.sort_order)  # 5: sort_order
    if op.sort_target:
        out += b"\x30" + _varint(op.sort_target)  # 6: sort_target
    if op.serializable:
        out += b"\x38\x01"  # 7: serializable
    if op.keys_only:
        out += b"\x40\x01"  # 8: keys_only
    if op.count_only:
        out += b"\x48\x01"  # 9: count_only
    if op.min_mod_revision:
        out += b"\x50" + _varint(op.min_mod_revision)  # 10
    if op.max_mod_revision:
        out += b"\x58" + _varint(op.max_mod_revision)  # 11
    if op.min_create_revision:
        out += b"\x60" + _varint(op.min_create_revision)  # 12
    if op.max_create_revision:
        out += b"\x68" + _varint(op.max_create_revision)  # 13
    return out


def _put_fields(op: PutOp) -> bytes:
    """A ``PutRequest``."""
    out = _length_delimited(b"\x0a", op.key)  # 1: key
    if op.value:
        out += _length_delimited(b"\x12", op.value)  # 2: value
    if op.lease:
        out += b"\x18" + _varint(op.lease)  # 3: lease
    if op.prev_kv:
        out += b"\x20\x01"  # 4: prev_kv
    if op.ignore_value:
        out += b"\x28\x01"  # 5: ignore_value
    if op.ignore_lease:
        out += b"\x30\x01"  # 6: ignore_lease
    return out


def _delete_fields(op: DeleteOp) -> bytes:
    """A ``DeleteRangeRequest``."""
    out = _length_delimited(b"\x0a", op.key)  # 1: key
    if op.range_end:
        out += _length_delimited(b"\x12", op.range_end)  # 2: range_end
    if op.prev_kv:
        out += b"\x18\x01"  # 3: prev_kv
    return out


# The tag of the operand's oneof member (``target_union``) for each target: version = 4,
# create_revision = 5, mod_revision = 6 and lease = 8 are varints; value = 7 is bytes.
_OPERAND_TAGS = {
    CompareTarget.VERSION: b"\x20",
    CompareTarget.CREATE: b"\x28",
    CompareTarget.MOD: b"\x30",
    CompareTarget.LEASE: b"\x40",
}


def _compare_fields(cmp: Compare) -> bytes:
    """A ``Compare``; its operand goes into the oneof member of its target, written even when 0."""
    out = b"\x08" + _varint(cmp.result) if cmp.result else b""  # 1: result
    target = cmp.target
    if target:
        out += b"\x10" + _varint(target)  # 2: target
    out += _length_delimited(b"\x1a", cmp.key)  # 3: key
    operand = cmp.operand
    if target is CompareTarget.VALUE:
        if not isinstance(operand, bytes):
            raise TypeError(f"a value compare needs a bytes operand, not {type(operand).__name__}")
        out += _length_delimited(b"\x3a", operand)  # 7: value
    else:
        if not isinstance(operand, int):
            raise TypeError(
                f"a {target.name.lower()} compare needs an int operand, not {type(operand).__name__}"
            )
        out += _OPERAND_TAGS[target] + _varint(operand)
    if cmp.range_end:
        out += _length_delimited(b"\x82\x04", cmp.range_end)  # 64: range_end
    return out


def _request_op(op: AnyOp) -> bytes:
    """A ``RequestOp``: the op's request in the oneof member of its kind."""
    if isinstance(op, PutOp):
        return _length_delimited(b"\x12", _put_fields(op))  # 2: request_put
    if isinstance(op, RangeOp):
        return _length_delimited(b"\x0a", _range_fields(op))  # 1: request_range
    if isinstance(op, DeleteOp):
        return _length_delimited(b"\x1a", _delete_fields(op))  # 3: request_delete_range
    if isinstance(op, TxnOp):
        return _length_delimited(b"\x22", _txn_fields(op))  # 4: request_txn
    raise TypeError(f"txn operations must be built with Op.get/put/delete/txn, not {op!r}")


def _txn_fields(op: TxnOp) -> bytes:
    """A ``TxnRequest``: the compares (1), then the success (2) and failure (3) ops."""
    parts = [_length_delimited(b"\x0a", _compare_fields(c)) for c in op.compare]
    parts += [_length_delimited(b"\x12", _request_op(o)) for o in op.success]
    parts += [_length_delimited(b"\x1a", _request_op(o)) for o in op.failure]
    return b"".join(parts)


# ---------------------------------------------------------------------------------------------------------
# Requests


def range_request(op: RangeOp) -> bytes:
    """A serialized ``RangeRequest``."""
    return _range_fields(op)


def get_request(key: bytes, revision: int, serializable: bool) -> bytes:
    """A serialized ``RangeRequest`` for one key (``client.get``), without building a :class:`RangeOp`."""
    out = _length_delimited(b"\x0a", key)
    if revision:
        out += b"\x20" + _varint(revision)
    if serializable:
        out += b"\x38\x01"
    return out


def put_request(op: PutOp) -> bytes:
    """A serialized ``PutRequest``."""
    return _put_fields(op)


def delete_request(op: DeleteOp) -> bytes:
    """A serialized ``DeleteRangeRequest``."""
    return _delete_fields(op)


def txn_request(op: TxnOp) -> bytes:
    """A serialized ``TxnRequest``."""
    return _txn_fields(op)


def compact_request(revision: int, physical: bool) -> bytes:
    """A serialized ``CompactionRequest``."""
    return rpc_pb2.CompactionRequest(revision=revision, physical=physical).SerializeToString()


def lease_grant_request(ttl: int, lease_id: int) -> bytes:
    """A serialized ``LeaseGrantRequest`` (``lease_id`` 0 lets the server choose)."""
    return rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=lease_id).SerializeToString()


def lease_revoke_request(lease_id: int) -> bytes:
    """A serialized ``LeaseRevokeRequest``."""
    return rpc_pb2.LeaseRevokeRequest(ID=lease_id).SerializeToString()


def lease_time_to_live_request(lease_id: int, keys: bool) -> bytes:
    """A serialized ``LeaseTimeToLiveRequest``."""
    return rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys).SerializeToString()


def lease_leases_request() -> bytes:
    """A serialized ``LeaseLeasesRequest``."""
    return rpc_pb2.LeaseLeasesRequest().SerializeToString()


def lease_keep_alive_request(lease_id: int) -> bytes:
    """A serialized ``LeaseKeepAliveRequest``."""
    return rpc_pb2.LeaseKeepAliveRequest(ID=lease_id).SerializeToString()


# ---------------------------------------------------------------------------------------------------------
# Response values
#
# The value types are frozen, slotted attrs classes without validators or converters, so a fully
# initialized instance is just one with every slot set. Setting the slots through their descriptors
# skips what attrs' generated ``__init__`` does per field (a keyword argument, a bound
# ``object.__setattr__`` and a name lookup), which halves the cost of each object a response turns
# into. ``_slot_setters`` refuses, at import, a class whose fields are not exactly the ones named
# (a field added to a value type must be added here too) or that validates or converts them.

_SlotSetter = Callable[[object, object], None]
_new = object.__new__


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[_SlotSetter, ...]:
    """The slot setters of the frozen attrs class ``cls``, one per field, in the order of ``names``.

    Raises:
        TypeError: ``names`` are not exactly the class's fields in order, or the class is not slotted
            or has a validator or converter (a value filled slot by slot would skip them).
    """
    fields = attrs.fields(cls)
    if tuple(f.name for f in fields) != names:
        raise TypeError(f"{cls.__name__} has the fields {[f.name for f in fields]}, not {list(names)}")
    plain = all(f.validator is None and f.converter is None for f in fields)
    if not plain or "__slots__" not in vars(cls):
        raise TypeError(f"{cls.__name__} must be slotted, without validators or converters")
    setters: tuple[_SlotSetter, ...] = tuple(vars(cls)[name].__set__ for name in names)
    return setters


_H_CLUSTER_ID, _H_MEMBER_ID, _H_REVISION, _H_RAFT_TERM = _slot_setters(
    ResponseHeader, ("cluster_id", "member_id", "revision", "raft_term")
)
_KV_KEY, _KV_VALUE, _KV_CREATE_REVISION, _KV_MOD_REVISION, _KV_VERSION, _KV_LEASE = _slot_setters(
    KeyValue, ("key", "value", "create_revision", "mod_revision", "version", "lease")
)
_R_HEADER, _R_KVS, _R_COUNT, _R_MORE = _slot_setters(RangeResponse, ("header", "kvs", "count", "more"))
_P_HEADER, _P_PREV_KV = _slot_setters(PutResponse, ("header", "prev_kv"))
_D_HEADER, _D_DELETED, _D_PREV_KVS = _slot_setters(DeleteResponse, ("header", "deleted", "prev_kvs"))
_T_HEADER, _T_SUCCEEDED, _T_RESPONSES = _slot_setters(TxnResponse, ("header", "succeeded", "responses"))


def header(msg: rpc_pb2.ResponseHeader) -> ResponseHeader:
    """The value type of a response header."""
    value = _new(ResponseHeader)
    _H_CLUSTER_ID(value, msg.cluster_id)
    _H_MEMBER_ID(value, msg.member_id)
    _H_REVISION(value, msg.revision)
    _H_RAFT_TERM(value, msg.raft_term)
    return value


def key_value(msg: kv_pb2.KeyValue) -> KeyValue:
    """The value type of a key-value pair."""
    value = _new(KeyValue)
    _KV_KEY(value, msg.key)
    _KV_VALUE(value, msg.value)
    _KV_CREATE_REVISION(value, msg.create_revision)
    _KV_MOD_REVISION(value, msg.mod_revision)
    _KV_VERSION(value, msg.version)
    _KV_LEASE(value, msg.lease)
    return value


def _kvs(msgs: Sequence[kv_pb2.KeyValue]) -> tuple[KeyValue, ...]:
    # Indexing a repeated field is cheaper than iterating it, and one key is the usual answer.
    n = len(msgs)
    if n == 1:
        return (key_value(msgs[0]),)
    return tuple(map(key_value, msgs)) if n else ()


def _range(msg: rpc_pb2.RangeResponse) -> RangeResponse:
    value = _new(RangeResponse)
    _R_HEADER(value, header(msg.header))
    _R_KVS(value, _kvs(msg.kvs))
    _R_COUNT(value, msg.count)
    _R_MORE(value, msg.more)
    return value


def _put(msg: rpc_pb2.PutResponse) -> PutResponse:
    value = _new(PutResponse)
    _P_HEADER(value, header(msg.header))
    _P_PREV_KV(value, key_value(msg.prev_kv) if msg.HasField("prev_kv") else None)
    return value


def _delete(msg: rpc_pb2.DeleteRangeResponse) -> DeleteResponse:
    value = _new(DeleteResponse)
    _D_HEADER(value, header(msg.header))
    _D_DELETED(value, msg.deleted)
    _D_PREV_KVS(value, _kvs(msg.prev_kvs))
    return value


def _txn(msg: rpc_pb2.TxnResponse) -> TxnResponse:
    value = _new(TxnResponse)
    _T_HEADER(value, header(msg.header))
    _T_SUCCEEDED(value, msg.succeeded)
    responses = msg.responses
    n = len(responses)
    _T_RESPONSES(value, (_response_op(responses[0]),) if n == 1 else tuple(map(_response_op, responses)))
    return value


def _response_op(msg: rpc_pb2.ResponseOp) -> OpResponse:
    kind = msg.WhichOneof("response")
    if kind == "response_range":
        return _range(msg.response_range)
    if kind == "response_put":
        return _put(msg.response_put)
    if kind == "response_delete_range":
        return _delete(msg.response_delete_range)
    if kind == "response_txn":
        return _txn(msg.response_txn)
    raise ValueError(f"ResponseOp without a response ({kind!r})")


def range_response(data: bytes) -> RangeResponse:
    """Parse a serialized ``RangeResponse``."""
    return _range(rpc_pb2.RangeResponse.FromString(data))


def get_response(data: bytes) -> KeyValue | None:
    """Parse a serialized ``RangeResponse`` of ``client.get``: its first key-value, if any."""
    kvs = rpc_pb2.RangeResponse.FromString(data).kvs
    return key_value(kvs[0]) if kvs else None


def put_response(data: bytes) -> PutResponse:
    """Parse a serialized ``PutResponse``."""
    return _put(rpc_pb2.PutResponse.FromString(data))


def delete_response(data: bytes) -> DeleteResponse:
    """Parse a serialized ``DeleteRangeResponse``."""
    return _delete(rpc_pb2.DeleteRangeResponse.FromString(data))


def txn_response(data: bytes) -> TxnResponse:
    """Parse a serialized ``TxnResponse``."""
    return _txn(rpc_pb2.TxnResponse.FromString(data))


def compact_response(data: bytes) -> ResponseHeader:
    """Parse a serialized ``CompactionResponse``: only its header."""
    return header(rpc_pb2.CompactionResponse.FromString(data).header)


def lease_grant(data: bytes) -> LeaseGrant:
    """Parse a serialized ``LeaseGrantResponse``.

    The response's ``error`` field is unused by etcd 3.x (errors come as gRPC statuses).
    """
    msg = rpc_pb2.LeaseGrantResponse.FromString(data)
    return LeaseGrant(header=header(msg.header), id=msg.ID, ttl=msg.TTL)


def lease_revoke(data: bytes) -> ResponseHeader:
    """Parse a serialized ``LeaseRevokeResponse``: only its header."""
    return header(rpc_pb2.LeaseRevokeResponse.FromString(data).header)


def lease_time_to_live(data: bytes) -> LeaseTimeToLive:
    """Parse a serialized ``LeaseTimeToLiveResponse``."""
    msg = rpc_pb2.LeaseTimeToLiveResponse.FromString(data)
    return LeaseTimeToLive(
        header=header(msg.header), id=msg.ID, ttl=msg.TTL, granted_ttl=msg.grantedTTL, keys=tuple(msg.keys)
    )


def lease_ids(data: bytes) -> tuple[int, ...]:
    """Parse a serialized ``LeaseLeasesResponse`` into its lease IDs."""
    return tuple(s.ID for s in rpc_pb2.LeaseLeasesResponse.FromString(data).leases)


def lease_keep_alive_ttl(data: bytes) -> tuple[ResponseHeader, int, int]:
    """Parse a serialized ``LeaseKeepAliveResponse`` into ``(header, id, ttl)``; ttl <= 0: lease gone."""
    msg = rpc_pb2.LeaseKeepAliveResponse.FromString(data)
    return header(msg.header), msg.ID, msg.TTL
