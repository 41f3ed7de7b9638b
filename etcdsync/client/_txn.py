"""Transaction building blocks: :class:`Compare` and :class:`Op`, plain immutable values.

A compare is spelled like a Python comparison, which reads as the etcd condition it becomes::

    Compare.value(b"/config") == b"v1"
    Compare.version(b"/jobs/7") > 0
    Compare.create_revision(b"/locks/x/694d7328a85b6ef9") == fencing_token
    Compare.mod_revision(b"/cache/", prefix=True) < 1200
    Compare.lease(b"/workers/w1") == lease_id

and an op is built by a class method named after the client method it mirrors::

    Op.get(b"/config"), Op.put(b"/config", b"v2", lease=lease_id), Op.delete(b"/tmp/", prefix=True),
    Op.txn([Compare.version(b"/a") == 0], [Op.put(b"/a", b"1")], [])

Building is synchronous and sends nothing; keys and values are validated here, once, so that a bad
argument raises ``ValueError``/``TypeError`` where it was written rather than when the RPC is sent.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs

from ._keys import bytesify, key_range, require_key
from ._types import SortOrder, SortTarget

__all__ = ["Compare", "CompareResult", "CompareTarget", "Op"]


class CompareResult(enum.IntEnum):
    """The comparison operator (etcd ``Compare.CompareResult``)."""

    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


class CompareTarget(enum.IntEnum):
    """What of a key is compared (etcd ``Compare.CompareTarget``)."""

    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


@attrs.frozen(kw_only=True)
class Compare:
    """One condition of a transaction. Build it with :meth:`value`, :meth:`version`,
    :meth:`create_revision`, :meth:`mod_revision` or :meth:`lease` and a comparison operator.

    Example::

        resp = await client.txn(
            compare=[Compare.version(b"/jobs/7") == 0],
            success=[Op.put(b"/jobs/7", b"queued")],
        )

    With ``range_end`` or ``prefix=True`` the condition must hold for every key in the range.
    """

    key: bytes
    target: CompareTarget
    result: CompareResult
    operand: int | bytes
    range_end: bytes = b""

    @staticmethod
    def value(key: bytes | str, *, range_end: bytes | str | None = None, prefix: bool = False) -> _Operand:
        """Compare the key's value (``bytes``/``str``) with ``==``, ``!=``, ``<`` or ``>``."""
        return _Operand(key, CompareTarget.VALUE, range_end, prefix)

    @staticmethod
    def version(key: bytes | str, *, range_end: bytes | str | None = None, prefix: bool = False) -> _Operand:
        """Compare the key's version (0 when the key does not exist)."""
        return _Operand(key, CompareTarget.VERSION, range_end, prefix)

    @staticmethod
    def create_revision(
        key: bytes | str, *, range_end: bytes | str | None = None, prefix: bool = False
    ) -> _Operand:
        """Compare the key's create revision (0 when the key does not exist)."""
        return _Operand(key, CompareTarget.CREATE, range_end, prefix)

    @staticmethod
    def mod_revision(
        key: bytes | str, *, range_end: bytes | str | None = None, prefix: bool = False
    ) -> _Operand:
        """Compare the key's mod revision (0 when the key does not exist)."""
        return _Operand(key, CompareTarget.MOD, range_end, prefix)

    @staticmethod
    def lease(key: bytes | str, *, range_end: bytes | str | None = None, prefix: bool = False) -> _Operand:
        """Compare the ID of the lease attached to the key (0 for none)."""
        return _Operand(key, CompareTarget.LEASE, range_end, prefix)


class _Operand:
    """The left-hand side of a compare; a comparison operator turns it into a :class:`Compare`."""

    __slots__ = ("_key", "_range_end", "_target")

    def __init__(
        self, key: bytes | str, target: CompareTarget, range_end: bytes | str | None, prefix: bool
    ) -> None:
        self._key, self._range_end = key_range(key, range_end, prefix=prefix, from_key=False)
        self._target = target

    def _make(self, result: CompareResult, other: object) -> Compare:
        if self._target is CompareTarget.VALUE:
            if not isinstance(other, bytes | str):
                raise TypeError(f"a value compare needs bytes or str, not {type(other).__name__}")
            operand: int | bytes = bytesify(other, "value")
        else:
            if isinstance(other, bool) or not isinstance(other, int):
                raise TypeError(
                    f"a {self._target.name.lower()} compare needs an int, not {type(other).__name__}"
                )
            operand = other
        return Compare(
            key=self._key, target=self._target, result=result, operand=operand, range_end=self._range_end
        )

    def __eq__(self, other: object) -> Compare:  # type: ignore[override]
        return self._make(CompareResult.EQUAL, other)

    def __ne__(self, other: object) -> Compare:  # type: ignore[override]
        return self._make(CompareResult.NOT_EQUAL, other)

    def __lt__(self, other: object) -> Compare:
        return self._make(CompareResult.LESS, other)

    def __gt__(self, other: object) -> Compare:
        return self._make(CompareResult.GREATER, other)

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        raise TypeError("a Compare operand has no truth value; compare it with ==, !=, < or >")


@attrs.frozen(kw_only=True)
class RangeOp:
    """A read inside a transaction; see :meth:`Op.get`."""

    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    sort_order: SortOrder = SortOrder.NONE
    sort_target: SortTarget = SortTarget.KEY
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0


@attrs.frozen(kw_only=True)
class PutOp:
    """A put inside a transaction; see :meth:`Op.put`."""

    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False


@attrs.frozen(kw_only=True)
class DeleteOp:
    """A delete inside a transaction; see :meth:`Op.delete`."""

    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False


@attrs.frozen(kw_only=True)
class TxnOp:
    """A nested transaction; see :meth:`Op.txn`."""

    compare: tuple[Compare, ...] = ()
    success: tuple[AnyOp, ...] = ()
    failure: tuple[AnyOp, ...] = ()


AnyOp = RangeOp | PutOp | DeleteOp | TxnOp


def check_int(name: str, value: int, *, minimum: int = 0) -> int:
    """Reject bools, non-ints and values below ``minimum`` with an exact message."""
    if type(value) is int and value >= minimum:  # the usual case, in one test (a bool is not an int here)
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}")
    return value


class Op:
    """Constructors for the operations of a transaction, mirroring the client's methods."""

    @staticmethod
    def get(
        key: bytes | str,
        range_end: bytes | str | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        limit: int = 0,
        revision: int = 0,
        sort_target: SortTarget = SortTarget.KEY,
        sort_order: SortOrder = SortOrder.NONE,
        keys_only: bool = False,
        count_only: bool = False,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        serializable: bool = False,
    ) -> RangeOp:
        """A range read; the options mean what they mean for :meth:`Client.range`."""
        k, end = key_range(key, range_end, prefix=prefix, from_key=from_key)
        return RangeOp(
            key=k,
            range_end=end,
            limit=check_int("limit", limit),
            revision=check_int("revision", revision),
            sort_target=sort_target if type(sort_target) is SortTarget else SortTarget(sort_target),
            sort_order=sort_order if type(sort_order) is SortOrder else SortOrder(sort_order),
            keys_only=bool(keys_only),
            count_only=bool(count_only),
            min_create_revision=check_int("min_create_revision", min_create_revision),
            max_create_revision=check_int("max_create_revision", max_create_revision),
            min_mod_revision=check_int("min_mod_revision", min_mod_revision),
            max_mod_revision=check_int("max_mod_revision", max_mod_revision),
            serializable=bool(serializable),
        )

    @staticmethod
    def put(
        key: bytes | str,
        value: bytes | str = b"",
        *,
        lease: int = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
    ) -> PutOp:
        """A put; the options mean what they mean for :meth:`Client.put`."""
        if ignore_value and value:
            raise ValueError("a value cannot be given with ignore_value=True")
        if ignore_lease and lease:
            raise ValueError("a lease cannot be given with ignore_lease=True")
        return PutOp(
            key=require_key(key),
            value=bytesify(value, "value"),
            lease=check_int("lease", lease),
            prev_kv=bool(prev_kv),
            ignore_value=bool(ignore_value),
            ignore_lease=bool(ignore_lease),
        )

    @staticmethod
    def delete(
        key: bytes | str,
        range_end: bytes | str | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        prev_kv: bool = False,
    ) -> DeleteOp:
        """A delete of one key or a range; the options mean what they mean for :meth:`Client.delete`."""
        k, end = key_range(key, range_end, prefix=prefix, from_key=from_key)
        return DeleteOp(key=k, range_end=end, prev_kv=bool(prev_kv))

    @staticmethod
    def txn(
        compare: Sequence[Compare] = (), success: Sequence[AnyOp] = (), failure: Sequence[AnyOp] = ()
    ) -> TxnOp:
        """A nested transaction (etcd 3.3+): its compares are evaluated when the outer branch runs."""
        return TxnOp(compare=check_compares(compare), success=check_ops(success), failure=check_ops(failure))


def check_compares(compare: Sequence[Compare] | Compare) -> tuple[Compare, ...]:
    """A tuple of compares, or ``TypeError`` naming what else was passed."""
    items = (compare,) if isinstance(compare, Compare) else tuple(compare)
    for item in items:
        if not isinstance(item, Compare):
            raise TypeError(f"compares must be Compare objects (e.g. Compare.version(key) > 0), not {item!r}")
    return items


def check_ops(ops: Sequence[AnyOp]) -> tuple[AnyOp, ...]:
    """A tuple of ops, or ``TypeError`` naming what else was passed."""
    items = tuple(ops)
    for item in items:
        if not isinstance(item, RangeOp | PutOp | DeleteOp | TxnOp):
            raise TypeError(f"txn operations must be built with Op.get/put/delete/txn, not {item!r}")
    return items
