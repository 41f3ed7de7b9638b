"""Conversion between the client's values and the KV, Txn and Lease protobuf messages.

Requests go out as serialized ``bytes`` and responses come in as ``bytes``: the transports never see
a message object, and no message object leaves this package.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    "compare_to_pb",
    "delete_request",
    "delete_response",
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
# Requests


def _range_pb(op: RangeOp) -> rpc_pb2.RangeRequest:
    return rpc_pb2.RangeRequest(
        key=op.key,
        range_end=op.range_end,
        limit=op.limit,
        revision=op.revision,
        sort_order=rpc_pb2.RangeRequest.SortOrder.ValueType(op.sort_order),
        sort_target=rpc_pb2.RangeRequest.SortTarget.ValueType(op.sort_target),
        serializable=op.serializable,
        keys_only=op.keys_only,
        count_only=op.count_only,
        min_mod_revision=op.min_mod_revision,
        max_mod_revision=op.max_mod_revision,
        min_create_revision=op.min_create_revision,
        max_create_revision=op.max_create_revision,
    )


def _put_pb(op: PutOp) -> rpc_pb2.PutRequest:
    return rpc_pb2.PutRequest(
        key=op.key,
        value=op.value,
        lease=op.lease,
        prev_kv=op.prev_kv,
        ignore_value=op.ignore_value,
        ignore_lease=op.ignore_lease,
    )


def _delete_pb(op: DeleteOp) -> rpc_pb2.DeleteRangeRequest:
    return rpc_pb2.DeleteRangeRequest(key=op.key, range_end=op.range_end, prev_kv=op.prev_kv)


def compare_to_pb(cmp: Compare) -> rpc_pb2.Compare:
    """One compare; the operand goes into the oneof field of its target."""
    msg = rpc_pb2.Compare(
        result=rpc_pb2.Compare.CompareResult.ValueType(cmp.result),
        target=rpc_pb2.Compare.CompareTarget.ValueType(cmp.target),
        key=cmp.key,
        range_end=cmp.range_end,
    )
    operand = cmp.operand
    if cmp.target is CompareTarget.VALUE:
        assert isinstance(operand, bytes)
        msg.value = operand
    else:
        assert isinstance(operand, int)
        if cmp.target is CompareTarget.VERSION:
            msg.version = operand
        elif cmp.target is CompareTarget.CREATE:
            msg.create_revision = operand
        elif cmp.target is CompareTarget.MOD:
            msg.mod_revision = operand
        else:
            msg.lease = operand
    return msg


def _txn_pb(op: TxnOp) -> rpc_pb2.TxnRequest:
    return rpc_pb2.TxnRequest(
        compare=[compare_to_pb(c) for c in op.compare],
        success=[_request_op(o) for o in op.success],
        failure=[_request_op(o) for o in op.failure],
    )


def _request_op(op: AnyOp) -> rpc_pb2.RequestOp:
    if isinstance(op, RangeOp):
        return rpc_pb2.RequestOp(request_range=_range_pb(op))
    if isinstance(op, PutOp):
        return rpc_pb2.RequestOp(request_put=_put_pb(op))
    if isinstance(op, DeleteOp):
        return rpc_pb2.RequestOp(request_delete_range=_delete_pb(op))
    return rpc_pb2.RequestOp(request_txn=_txn_pb(op))


def range_request(op: RangeOp) -> bytes:
    """A serialized ``RangeRequest``."""
    return _range_pb(op).SerializeToString()


def put_request(op: PutOp) -> bytes:
    """A serialized ``PutRequest``."""
    return _put_pb(op).SerializeToString()


def delete_request(op: DeleteOp) -> bytes:
    """A serialized ``DeleteRangeRequest``."""
    return _delete_pb(op).SerializeToString()


def txn_request(op: TxnOp) -> bytes:
    """A serialized ``TxnRequest``."""
    return _txn_pb(op).SerializeToString()


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
# Responses


def header(msg: rpc_pb2.ResponseHeader) -> ResponseHeader:
    """The value type of a response header."""
    return ResponseHeader(
        cluster_id=msg.cluster_id, member_id=msg.member_id, revision=msg.revision, raft_term=msg.raft_term
    )


def key_value(msg: kv_pb2.KeyValue) -> KeyValue:
    """The value type of a key-value pair."""
    return KeyValue(
        key=msg.key,
        value=msg.value,
        create_revision=msg.create_revision,
        mod_revision=msg.mod_revision,
        version=msg.version,
        lease=msg.lease,
    )


def _kvs(msgs: Iterable[kv_pb2.KeyValue]) -> tuple[KeyValue, ...]:
    return tuple(key_value(m) for m in msgs)


def _range(msg: rpc_pb2.RangeResponse) -> RangeResponse:
    return RangeResponse(header=header(msg.header), kvs=_kvs(msg.kvs), count=msg.count, more=msg.more)


def _put(msg: rpc_pb2.PutResponse) -> PutResponse:
    return PutResponse(
        header=header(msg.header), prev_kv=key_value(msg.prev_kv) if msg.HasField("prev_kv") else None
    )


def _delete(msg: rpc_pb2.DeleteRangeResponse) -> DeleteResponse:
    return DeleteResponse(header=header(msg.header), deleted=msg.deleted, prev_kvs=_kvs(msg.prev_kvs))


def _txn(msg: rpc_pb2.TxnResponse) -> TxnResponse:
    return TxnResponse(
        header=header(msg.header),
        succeeded=msg.succeeded,
        responses=tuple(_response_op(r) for r in msg.responses),
    )


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
