"""Key and value arguments: ``bytes | str`` in, ``bytes`` out, checked once at the boundary.

etcd keys are byte strings. A ``str`` is UTF-8 encoded; anything else (an ``int``, ``None``, a
``bytearray`` subclass with surprises) is a ``TypeError`` before any RPC.
"""

from __future__ import annotations

__all__ = ["bytesify", "key_range", "prefix_end", "range_end_for", "require_key"]


def bytesify(value: bytes | str, what: str = "value") -> bytes:
    """``value`` as ``bytes``: a ``str`` is UTF-8 encoded, ``bytes``/``bytearray``/``memoryview`` copied.

    Raises:
        TypeError: for anything else (notably ``int``, which ``bytes()`` would silently accept).
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}")


def require_key(key: bytes | str) -> bytes:
    """A non-empty key as ``bytes``.

    Raises:
        TypeError: ``key`` is not ``bytes``/``str``.
        ValueError: ``key`` is empty.
    """
    k = bytesify(key, "key")
    if not k:
        raise ValueError("key must not be empty")
    return k


def prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with ``prefix``.

    The last byte below 0xff is incremented and what follows it dropped; a prefix of only 0xff bytes
    (or an empty one) has no upper bound, which etcd spells ``b"\\x00"``.
    """
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes((prefix[i] + 1,))
    return b"\x00"


def range_end_for(key: bytes, range_end: bytes | str | None, *, prefix: bool, from_key: bool) -> bytes:
    """The wire ``range_end`` for one of the three ways to ask for a range (or none: ``b""``)."""
    if (range_end is not None) + bool(prefix) + bool(from_key) > 1:
        raise ValueError("give at most one of range_end, prefix=True and from_key=True")
    if prefix:
        return prefix_end(key)
    if from_key:
        return b"\x00"
    if range_end is None:
        return b""
    end = bytesify(range_end, "range_end")
    if not end:
        raise ValueError("range_end must not be empty (leave it out for a single key)")
    return end


def key_range(
    key: bytes | str, range_end: bytes | str | None, *, prefix: bool, from_key: bool
) -> tuple[bytes, bytes]:
    """``(key, range_end)`` for the wire. An empty key is allowed only with ``prefix`` or ``from_key``,
    where it means "every key" (as in etcd's Go client)."""
    k = bytesify(key, "key")
    if not k:
        if not (prefix or from_key):
            raise ValueError("key must not be empty")
        if range_end is not None:
            raise ValueError("give at most one of range_end, prefix=True and from_key=True")
        return b"\x00", b"\x00"
    return k, range_end_for(k, range_end, prefix=prefix, from_key=from_key)
