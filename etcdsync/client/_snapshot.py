"""Receiving a snapshot: the byte accounting (pure) and the async iterator over one Snapshot stream.

etcd sends a snapshot as a server stream. Every message carries a chunk of the database and
``remaining_bytes``, the database bytes still to come after it; once the database is complete, one last
message carries its SHA-256 digest (32 bytes, ``remaining_bytes`` 0). ``etcdctl snapshot save`` writes
all of it, digest included, and ``etcdctl snapshot restore`` checks the digest, so the chunks are passed
on exactly as received.

:class:`SnapshotAccount` checks each message against that accounting and is pure (no I/O), so it can
be driven by hand; :class:`SnapshotStream` is the shell that reads the messages.
"""

from __future__ import annotations

import hashlib
from typing import Final, final

import trio

from ._convert import _admin as cv
from ._errors import SnapshotIntegrityError, error_from_status
from ._transport import StatusError, Stream

__all__ = ["DIGEST_SIZE", "SnapshotAccount", "SnapshotStream"]

#: The size of the digest that ends every snapshot stream (SHA-256).
DIGEST_SIZE: Final = 32

_PRIVATE: Final = object()


class SnapshotAccount:
    """The accounting of one snapshot stream: sizes announced vs. bytes received, and the digest.

    Feed it every message with :meth:`feed`; call :meth:`finish` when the stream ended. Both raise
    :class:`~etcdsync.SnapshotIntegrityError` as soon as the stream contradicts itself.
    """

    def __init__(self) -> None:
        #: The database size, known from the first message (its blob plus its ``remaining_bytes``).
        self.total: int | None = None
        #: Database bytes received so far (the digest not included).
        self.received = 0
        self._hash = hashlib.sha256()
        self._tail = b""

    def _fail(self, what: str) -> SnapshotIntegrityError:
        return SnapshotIntegrityError(
            f"snapshot stream {what} (database: {self.received} of {self.total} bytes received)",
            expected_bytes=self.total,
            received_bytes=self.received,
        )

    def feed(self, remaining: int, blob: bytes) -> None:
        """Account for one message: ``blob`` with ``remaining`` database bytes announced after it."""
        if self.total is None:
            self.total = len(blob) + remaining
        missing = self.total - self.received
        data, tail = blob[:missing], blob[missing:]
        if data:
            self.received += len(data)
            self._hash.update(data)
            if remaining != self.total - self.received:
                raise self._fail(f"announced {remaining} bytes to come where {missing - len(data)} were")
        if tail:
            if remaining:
                raise self._fail(f"went past the announced size with {remaining} bytes still announced")
            self._tail += tail
            if len(self._tail) > DIGEST_SIZE:
                raise self._fail(f"went on for {len(self._tail)} bytes after the database")

    def finish(self) -> bytes:
        """Check the stream's end: the whole database arrived, followed by its correct SHA-256.

        Returns the digest.
        """
        if self.total is None:
            raise self._fail("ended without any data")
        if self.received != self.total:
            raise self._fail("ended early")
        if len(self._tail) != DIGEST_SIZE:
            raise self._fail(f"ended with {len(self._tail)} bytes of digest instead of {DIGEST_SIZE}")
        if self._tail != self._hash.digest():
            raise self._fail("ended with a SHA-256 digest that does not match the data")
        return self._tail


@final
class SnapshotStream:
    """The chunks of a snapshot as they arrive, from ``async with client.snapshot() as chunks:``.

    Iterate with ``async for chunk in chunks:``. The chunks are the database followed by its 32-byte
    SHA-256 digest, exactly the bytes ``etcdctl snapshot save`` writes to its file. Every chunk is
    checked against the sizes the server announces; the iteration ends normally only once the whole
    database and a matching digest have arrived, otherwise it raises
    :class:`~etcdsync.SnapshotIntegrityError`.

    Example::

        async with client.snapshot() as chunks:
            async for chunk in chunks:
                await out.write(chunk)
        print(chunks.db_size, chunks.sha256.hex())
    """

    def __init__(self, _private: object, stream: Stream, endpoint: str) -> None:
        if _private is not _PRIVATE:
            raise TypeError("use `async with client.snapshot() as chunks:`")
        self._stream = stream
        self._endpoint = endpoint
        self._account = SnapshotAccount()
        self._sha256: bytes | None = None
        self._ended = False

    @classmethod
    def _create(cls, stream: Stream, endpoint: str) -> SnapshotStream:
        return cls(_PRIVATE, stream, endpoint)

    def __repr__(self) -> str:
        state = "complete" if self._sha256 is not None else "ended" if self._ended else "receiving"
        return (
            f"<etcdsync.client.SnapshotStream from {self._endpoint} at {id(self):#x}, {state}, "
            f"{self._account.received} of {self._account.total} bytes>"
        )

    @property
    def endpoint(self) -> str:
        """The member the snapshot comes from (``host:port``)."""
        return self._endpoint

    @property
    def db_size(self) -> int | None:
        """The database size the server announced; ``None`` before the first chunk."""
        return self._account.total

    @property
    def received_bytes(self) -> int:
        """Database bytes received so far (the digest not counted)."""
        return self._account.received

    @property
    def sha256(self) -> bytes | None:
        """The database's SHA-256, once the stream has ended and the digest matched; else ``None``."""
        return self._sha256

    def __aiter__(self) -> SnapshotStream:
        return self

    async def __anext__(self) -> bytes:
        """The next chunk (never empty). A checkpoint.

        Raises:
            SnapshotIntegrityError: the stream contradicts the sizes it announced, or ended without the
                whole database and a matching digest.
            RpcError: the server ended the stream with an error (e.g. ``PermissionDeniedError``).
            ConnectionFailedError: the connection broke.
        """
        while True:
            if self._ended:
                await trio.lowlevel.checkpoint()
                raise StopAsyncIteration
            try:
                data = await self._stream.receive()
            except trio.EndOfChannel:
                self._ended = True
                self._sha256 = self._account.finish()
                raise StopAsyncIteration from None
            except StatusError as exc:
                self._ended = True
                raise error_from_status(exc.code, exc.message, exc.trailers) from exc
            remaining, blob = cv.snapshot_chunk(data)
            try:
                self._account.feed(remaining, blob)
            except SnapshotIntegrityError:
                self._ended = True
                raise
            if blob:
                return blob
