"""The KV conversion's shortcuts against the generated protobuf classes.

Requests are written field by field (``_convert/_kv.py``, "Wire encoding"): every one must equal, byte
for byte, what ``SerializeToString()`` of the same message built with the generated classes gives.
Responses fill the value types through their slots: every one must equal the value built with its
attrs ``__init__``.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings, strategies as st

from etcdsync.client._convert import _kv as cv
from etcdsync.client._pb import kv_pb2, rpc_pb2
from etcdsync.client._txn import (
    AnyOp,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteOp,
    PutOp,
    RangeOp,
    TxnOp,
)
from etcdsync.client._types import (
    DeleteResponse,
    KeyValue,
    PutResponse,
    RangeResponse,
    ResponseHeader,
    SortOrder,
    SortTarget,
    TxnResponse,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Lengths around the varint boundaries matter most: 127/128 (one/two bytes), 16383/16384 (two/three).
# (Long ones are repeated bytes: random ones cost hypothesis far more to make, and prove nothing more.)
keys = st.one_of(st.binary(min_size=1, max_size=3), st.integers(126, 130).map(lambda n: b"k" * n))
values = st.one_of(
    st.binary(max_size=3),
    st.integers(126, 130).map(lambda n: b"v" * n),
    st.integers(16_382, 16_386).map(lambda n: b"v" * n),
)
ends = st.one_of(st.just(b""), st.just(b"\x00"), keys)
# Revisions and IDs are >= 0 when built through Op/Compare; the encoder takes any int64.
int64s = st.one_of(
    st.integers(0, 3),
    st.integers(120, 20_000),
    st.integers(INT64_MIN, INT64_MAX),
    st.sampled_from([INT64_MIN, -1, 2**31, 2**32, 2**63 - 1]),
)

range_ops = st.builds(
    RangeOp,
    key=keys,
    range_end=ends,
    limit=int64s,
    revision=int64s,
    sort_order=st.sampled_from(SortOrder),
    sort_target=st.sampled_from(SortTarget),
    serializable=st.booleans(),
    keys_only=st.booleans(),
    count_only=st.booleans(),
    min_mod_revision=int64s,
    max_mod_revision=int64s,
    min_create_revision=int64s,
    max_create_revision=int64s,
)
put_ops = st.builds(
    PutOp,
    key=keys,
    value=values,
    lease=int64s,
    prev_kv=st.booleans(),
    ignore_value=st.booleans(),
    ignore_lease=st.booleans(),
)
delete_ops = st.builds(DeleteOp, key=keys, range_end=ends, prev_kv=st.booleans())


@st.composite
def compares(draw: st.DrawFn) -> Compare:
    target = draw(st.sampled_from(CompareTarget))
    operand: int | bytes = draw(values) if target is CompareTarget.VALUE else draw(int64s)
    return Compare(
        key=draw(keys),
        target=target,
        result=draw(st.sampled_from(CompareResult)),
        operand=operand,
        range_end=draw(ends),
    )


def _txn_ops(children: st.SearchStrategy[AnyOp]) -> st.SearchStrategy[AnyOp]:
    return st.builds(
        TxnOp,
        compare=st.lists(compares(), max_size=3).map(tuple),
        success=st.lists(children, max_size=3).map(tuple),
        failure=st.lists(children, max_size=3).map(tuple),
    )


any_ops: st.SearchStrategy[AnyOp] = st.recursive(
    st.one_of(range_ops, put_ops, delete_ops), _txn_ops, max_leaves=8
)
txn_ops = _txn_ops(any_ops)


# -- the reference: the same messages built with the generated classes ---------------------------------


def ref_range(op: RangeOp) -> rpc_pb2.RangeRequest:
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


def ref_put(op: PutOp) -> rpc_pb2.PutRequest:
    return rpc_pb2.PutRequest(
        key=op.key,
        value=op.value,
        lease=op.lease,
        prev_kv=op.prev_kv,
        ignore_value=op.ignore_value,
        ignore_lease=op.ignore_lease,
    )


def ref_delete(op: DeleteOp) -> rpc_pb2.DeleteRangeRequest:
    return rpc_pb2.DeleteRangeRequest(key=op.key, range_end=op.range_end, prev_kv=op.prev_kv)


_OPERAND_FIELDS = {
    CompareTarget.VERSION: "version",
    CompareTarget.CREATE: "create_revision",
    CompareTarget.MOD: "mod_revision",
    CompareTarget.VALUE: "value",
    CompareTarget.LEASE: "lease",
}


def ref_compare(cmp: Compare) -> rpc_pb2.Compare:
    msg = rpc_pb2.Compare(
        result=rpc_pb2.Compare.CompareResult.ValueType(cmp.result),
        target=rpc_pb2.Compare.CompareTarget.ValueType(cmp.target),
        key=cmp.key,
        range_end=cmp.range_end,
    )
    setattr(msg, _OPERAND_FIELDS[cmp.target], cmp.operand)  # sets the oneof, even to 0
    return msg


def ref_request_op(op: AnyOp) -> rpc_pb2.RequestOp:
    if isinstance(op, RangeOp):
        return rpc_pb2.RequestOp(request_range=ref_range(op))
    if isinstance(op, PutOp):
        return rpc_pb2.RequestOp(request_put=ref_put(op))
    if isinstance(op, DeleteOp):
        return rpc_pb2.RequestOp(request_delete_range=ref_delete(op))
    return rpc_pb2.RequestOp(request_txn=ref_txn(op))


def ref_txn(op: TxnOp) -> rpc_pb2.TxnRequest:
    return rpc_pb2.TxnRequest(
        compare=[ref_compare(c) for c in op.compare],
        success=[ref_request_op(o) for o in op.success],
        failure=[ref_request_op(o) for o in op.failure],
    )


# -- requests --------------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(range_ops)
def test_range_request_is_what_protobuf_writes(op: RangeOp) -> None:
    assert cv.range_request(op) == ref_range(op).SerializeToString()


@settings(max_examples=300)
@given(put_ops)
def test_put_request_is_what_protobuf_writes(op: PutOp) -> None:
    assert cv.put_request(op) == ref_put(op).SerializeToString()


@settings(max_examples=200)
@given(delete_ops)
def test_delete_request_is_what_protobuf_writes(op: DeleteOp) -> None:
    assert cv.delete_request(op) == ref_delete(op).SerializeToString()


@settings(max_examples=150)
@given(txn_ops)
def test_txn_request_is_what_protobuf_writes(op: TxnOp) -> None:
    data = cv.txn_request(op)
    assert data == ref_txn(op).SerializeToString()
    assert rpc_pb2.TxnRequest.FromString(data) == ref_txn(op)


@settings(max_examples=200)
@given(keys, int64s, st.booleans())
def test_get_request_is_a_range_of_one_key(key: bytes, revision: int, serializable: bool) -> None:
    op = RangeOp(key=key, revision=revision, serializable=serializable)
    assert cv.get_request(key, revision, serializable) == ref_range(op).SerializeToString()


def test_compare_operand_zero_is_written() -> None:
    # A set oneof member is written even when it holds its default: etcd must see "version == 0".
    cmp = Compare(key=b"k", target=CompareTarget.VERSION, result=CompareResult.EQUAL, operand=0)
    assert cv.txn_request(TxnOp(compare=(cmp,))) == b"\x0a\x05\x1a\x01k\x20\x00"


@pytest.mark.parametrize("lease", [2**63, -(2**63) - 1, 2**64])
def test_int64_out_of_range_is_refused_like_protobuf(lease: int) -> None:
    with pytest.raises(ValueError, match=r"^Value out of range: "):
        rpc_pb2.PutRequest(lease=lease)
    with pytest.raises(ValueError, match=rf"^Value out of range: {lease}$"):
        cv.put_request(PutOp(key=b"k", lease=lease))


def test_compare_operand_of_the_wrong_type_is_refused() -> None:
    value_cmp = Compare(key=b"k", target=CompareTarget.VALUE, result=CompareResult.EQUAL, operand=1)
    with pytest.raises(TypeError, match=r"^a value compare needs a bytes operand, not int$"):
        cv.txn_request(TxnOp(compare=(value_cmp,)))
    mod_cmp = attrs.evolve(value_cmp, target=CompareTarget.MOD, operand=b"1")
    with pytest.raises(TypeError, match=r"^a mod compare needs an int operand, not bytes$"):
        cv.txn_request(TxnOp(compare=(mod_cmp,)))


def test_an_unknown_op_is_refused() -> None:
    with pytest.raises(TypeError, match=r"^txn operations must be built with Op.get/put/delete/txn"):
        cv.txn_request(TxnOp(success=("put",)))  # type: ignore[arg-type]


# -- responses -------------------------------------------------------------------------------------------

headers = st.builds(
    rpc_pb2.ResponseHeader,
    cluster_id=st.integers(0, 2**64 - 1),
    member_id=st.integers(0, 2**64 - 1),
    revision=st.integers(0, 2**63 - 1),
    raft_term=st.integers(0, 2**64 - 1),
)
kv_msgs = st.builds(
    kv_pb2.KeyValue,
    key=keys,
    value=values,
    create_revision=st.integers(0, 2**63 - 1),
    mod_revision=st.integers(0, 2**63 - 1),
    version=st.integers(0, 2**63 - 1),
    lease=st.integers(0, 2**63 - 1),
)
range_msgs = st.builds(
    rpc_pb2.RangeResponse,
    header=headers,
    kvs=st.lists(kv_msgs, max_size=3),
    more=st.booleans(),
    count=st.integers(0, 1000),
)
put_msgs = st.one_of(
    st.builds(rpc_pb2.PutResponse, header=headers),
    st.builds(rpc_pb2.PutResponse, header=headers, prev_kv=kv_msgs),
)
delete_msgs = st.builds(
    rpc_pb2.DeleteRangeResponse,
    header=headers,
    deleted=st.integers(0, 1000),
    prev_kvs=st.lists(kv_msgs, max_size=3),
)


def _txn_msgs(
    children: st.SearchStrategy[rpc_pb2.ResponseOp],
) -> st.SearchStrategy[rpc_pb2.TxnResponse]:
    return st.builds(
        rpc_pb2.TxnResponse, header=headers, succeeded=st.booleans(), responses=st.lists(children, max_size=3)
    )


response_ops: st.SearchStrategy[rpc_pb2.ResponseOp] = st.recursive(
    st.one_of(
        range_msgs.map(lambda m: rpc_pb2.ResponseOp(response_range=m)),
        put_msgs.map(lambda m: rpc_pb2.ResponseOp(response_put=m)),
        delete_msgs.map(lambda m: rpc_pb2.ResponseOp(response_delete_range=m)),
    ),
    lambda children: _txn_msgs(children).map(lambda m: rpc_pb2.ResponseOp(response_txn=m)),
    max_leaves=6,
)


def ref_header(msg: rpc_pb2.ResponseHeader) -> ResponseHeader:
    return ResponseHeader(
        cluster_id=msg.cluster_id, member_id=msg.member_id, revision=msg.revision, raft_term=msg.raft_term
    )


def ref_kv(msg: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(
        key=msg.key,
        value=msg.value,
        create_revision=msg.create_revision,
        mod_revision=msg.mod_revision,
        version=msg.version,
        lease=msg.lease,
    )


def ref_range_response(msg: rpc_pb2.RangeResponse) -> RangeResponse:
    return RangeResponse(
        header=ref_header(msg.header), kvs=tuple(ref_kv(k) for k in msg.kvs), count=msg.count, more=msg.more
    )


def ref_response_op(msg: rpc_pb2.ResponseOp) -> object:
    kind = msg.WhichOneof("response")
    if kind == "response_range":
        return ref_range_response(msg.response_range)
    if kind == "response_put":
        put = msg.response_put
        return PutResponse(
            header=ref_header(put.header), prev_kv=ref_kv(put.prev_kv) if put.HasField("prev_kv") else None
        )
    if kind == "response_delete_range":
        d = msg.response_delete_range
        return DeleteResponse(
            header=ref_header(d.header), deleted=d.deleted, prev_kvs=tuple(ref_kv(k) for k in d.prev_kvs)
        )
    return ref_txn_response(msg.response_txn)


def ref_txn_response(msg: rpc_pb2.TxnResponse) -> TxnResponse:
    return TxnResponse(
        header=ref_header(msg.header),
        succeeded=msg.succeeded,
        responses=tuple(ref_response_op(r) for r in msg.responses),  # type: ignore[misc]
    )


def _same(got: object, want: object) -> None:
    """Equal, and equal in every way a user could tell: repr, hash, fields, evolve."""
    assert got == want
    assert repr(got) == repr(want)
    assert hash(got) == hash(want)
    assert attrs.asdict(got) == attrs.asdict(want)  # type: ignore[arg-type]


@settings(max_examples=200)
@given(range_msgs)
def test_range_response_values(msg: rpc_pb2.RangeResponse) -> None:
    data = msg.SerializeToString()
    _same(cv.range_response(data), ref_range_response(msg))
    want = ref_kv(msg.kvs[0]) if msg.kvs else None
    assert cv.get_response(data) == want


@settings(max_examples=200)
@given(put_msgs)
def test_put_response_values(msg: rpc_pb2.PutResponse) -> None:
    _same(cv.put_response(msg.SerializeToString()), ref_response_op(rpc_pb2.ResponseOp(response_put=msg)))


@settings(max_examples=200)
@given(delete_msgs)
def test_delete_response_values(msg: rpc_pb2.DeleteRangeResponse) -> None:
    want = ref_response_op(rpc_pb2.ResponseOp(response_delete_range=msg))
    _same(cv.delete_response(msg.SerializeToString()), want)


@settings(max_examples=200)
@given(_txn_msgs(response_ops))
def test_txn_response_values(msg: rpc_pb2.TxnResponse) -> None:
    _same(cv.txn_response(msg.SerializeToString()), ref_txn_response(msg))


def test_values_filled_through_slots_are_still_frozen() -> None:
    kv = cv.key_value(kv_pb2.KeyValue(key=b"k", value=b"v"))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        kv.key = b"other"  # type: ignore[misc]
    assert attrs.evolve(kv, value=b"w") == KeyValue(key=b"k", value=b"w")


def test_slot_setters_refuse_a_class_they_do_not_fill_completely() -> None:
    @attrs.frozen
    class Point:
        x: int
        y: int = attrs.field(validator=attrs.validators.ge(0))

    with pytest.raises(TypeError, match=r"^Point has the fields \['x', 'y'\], not \['x'\]$"):
        cv._slot_setters(Point, ("x",))
    with pytest.raises(TypeError, match=r"^Point must be slotted, without validators or converters$"):
        cv._slot_setters(Point, ("x", "y"))

    @attrs.frozen(slots=False)
    class Dicted:
        x: int

    with pytest.raises(TypeError, match=r"^Dicted must be slotted"):
        cv._slot_setters(Dicted, ("x",))
