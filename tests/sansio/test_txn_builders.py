"""Compare/Op builders and key arguments: synchronous, validated where written."""

from __future__ import annotations

import pytest

from etcdsync.client._keys import bytesify, key_range, prefix_end, require_key
from etcdsync.client._txn import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteOp,
    Op,
    PutOp,
    RangeOp,
    TxnOp,
    check_compares,
    check_ops,
)
from etcdsync.client._types import SortOrder, SortTarget


def test_bytesify() -> None:
    assert bytesify("é") == "é".encode()
    assert bytesify(b"x") == b"x"
    assert bytesify(bytearray(b"y")) == b"y"
    assert bytesify(memoryview(b"z")) == b"z"
    with pytest.raises(TypeError, match="^value must be bytes or str, not int$"):
        bytesify(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^key must be bytes or str, not NoneType$"):
        require_key(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^key must not be empty$"):
        require_key("")


@pytest.mark.parametrize(
    ("prefix", "end"),
    [(b"a", b"b"), (b"/locks/", b"/locks0"), (b"a\xff", b"b"), (b"\xff\xff", b"\x00"), (b"", b"\x00")],
)
def test_prefix_end(prefix: bytes, end: bytes) -> None:
    assert prefix_end(prefix) == end


def test_key_range_forms() -> None:
    assert key_range(b"a", None, prefix=False, from_key=False) == (b"a", b"")
    assert key_range(b"a", b"c", prefix=False, from_key=False) == (b"a", b"c")
    assert key_range("a", None, prefix=True, from_key=False) == (b"a", b"b")
    assert key_range(b"a", None, prefix=False, from_key=True) == (b"a", b"\x00")
    assert key_range(b"", None, prefix=True, from_key=False) == (b"\x00", b"\x00")
    with pytest.raises(ValueError, match="^key must not be empty$"):
        key_range(b"", None, prefix=False, from_key=False)
    with pytest.raises(ValueError, match="at most one of range_end, prefix=True and from_key=True"):
        key_range(b"a", b"b", prefix=True, from_key=False)
    with pytest.raises(ValueError, match="at most one of range_end"):
        key_range(b"", b"b", prefix=True, from_key=False)
    with pytest.raises(ValueError, match="at most one of range_end"):
        key_range(b"a", None, prefix=True, from_key=True)
    with pytest.raises(ValueError, match="range_end must not be empty"):
        key_range(b"a", b"", prefix=False, from_key=False)


def test_compare_operators() -> None:
    expected = Compare(key=b"k", target=CompareTarget.VALUE, result=CompareResult.EQUAL, operand=b"v")
    assert (Compare.value("k") == "v") == expected
    assert (Compare.version(b"k") > 0).result is CompareResult.GREATER
    assert (Compare.create_revision(b"k") < 5).result is CompareResult.LESS
    assert (Compare.mod_revision(b"k") != 5).result is CompareResult.NOT_EQUAL
    assert (Compare.lease(b"k") == 7).target is CompareTarget.LEASE
    assert (Compare.version(b"p", prefix=True) == 0).range_end == b"q"
    assert (Compare.version(b"a", range_end=b"c") == 0).range_end == b"c"


def test_compare_type_errors() -> None:
    with pytest.raises(TypeError, match="a value compare needs bytes or str, not int"):
        _ = Compare.value(b"k") == 3
    with pytest.raises(TypeError, match="a version compare needs an int, not bytes"):
        _ = Compare.version(b"k") == b"3"
    with pytest.raises(TypeError, match="^a create compare needs an int, not bool$"):
        _ = Compare.create_revision(b"k") == True  # noqa: E712
    with pytest.raises(TypeError, match="has no truth value"):
        bool(Compare.version(b"k"))
    with pytest.raises(ValueError, match="^key must not be empty$"):
        Compare.version(b"")


def test_ops() -> None:
    get = Op.get(b"a", prefix=True, limit=3, sort_target=SortTarget.CREATE, sort_order=SortOrder.DESCEND)
    assert get == RangeOp(
        key=b"a", range_end=b"b", limit=3, sort_target=SortTarget.CREATE, sort_order=SortOrder.DESCEND
    )
    assert Op.put("k", "v", lease=9) == PutOp(key=b"k", value=b"v", lease=9)
    assert Op.delete(b"a", from_key=True, prev_kv=True) == DeleteOp(key=b"a", range_end=b"\x00", prev_kv=True)
    nested = Op.txn([Compare.version(b"a") == 0], [Op.put(b"a", b"1")], [Op.get(b"a")])
    assert isinstance(nested, TxnOp)
    assert len(nested.compare) == len(nested.success) == len(nested.failure) == 1


def test_op_validation() -> None:
    with pytest.raises(ValueError, match="^limit must be >= 0$"):
        Op.get(b"a", limit=-1)
    with pytest.raises(TypeError, match="^revision must be an int, not str$"):
        Op.get(b"a", revision="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a value cannot be given with ignore_value=True"):
        Op.put(b"a", b"x", ignore_value=True)
    with pytest.raises(ValueError, match="a lease cannot be given with ignore_lease=True"):
        Op.put(b"a", b"", lease=1, ignore_lease=True)
    with pytest.raises(TypeError, match="compares must be Compare objects"):
        check_compares([Op.get(b"a")])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="txn operations must be built with Op"):
        check_ops([Compare.version(b"a") == 0])  # type: ignore[list-item]
    assert check_compares(Compare.version(b"a") == 0) == (Compare.version(b"a") == 0,)
