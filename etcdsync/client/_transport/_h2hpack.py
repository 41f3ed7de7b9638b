"""HPACK header blocks for a gRPC client: requests pre-encoded without state, responses decoded once.

Two deviations from plain h2 usage, used by :class:`~._h2proto.H2Protocol`:

* :class:`_BlockEncoder` lets h2 send header blocks that ``_sansio._grpc`` encoded statelessly
  (cached per method), instead of running HPACK for every call;
* :class:`_CachingDecoder` decodes each distinct response header/trailer block once per state of
  the HPACK dynamic table (a warm grpc-go server sends byte-identical blocks for every OK call),
  and tells the fast path whether a block is "plain".

They rely on hpack internals (``Decoder.header_table``), hence ``h2<5`` in ``pyproject.toml``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from h2.connection import _decode_headers
from h2.utilities import is_informational_response
from hpack import Decoder, Encoder, HeaderTuple
from hpack.struct import Header
from hpack.table import HeaderTable

from .._sansio._grpc import HPACK_TABLE_SIZE_ZERO

__all__ = ["PreEncodedBlock"]


class PreEncodedBlock(HeaderTuple):
    """A pseudo header field whose value is a complete HPACK header block (see :class:`_BlockEncoder`)."""

    __slots__ = ()


class _BlockEncoder(Encoder):
    """An HPACK encoder that emits header blocks built elsewhere.

    ``etcdsync.client._sansio._grpc`` encodes request headers statelessly (static table and literals
    without indexing only), so a block can be cached per method and reused; h2 is handed the block as
    the value of a single :class:`PreEncodedBlock` field and calls ``encode`` with it. The server's
    decoder table is never touched, so the only state to honour is a table size change the server
    requests: the next block then starts with "size update to 0".
    """

    def __init__(self) -> None:
        super().__init__()
        self._size_update = b""

    def block(self, block: bytes) -> bytes:
        """``block``, after the table size update owed to the server if any (what ``encode`` returns)."""
        if self._size_update:
            prefix, self._size_update = self._size_update, b""
            return prefix + block
        return block

    def block_size(self, block: bytes) -> int:
        """``len(self.block(block))``, without consuming the size update."""
        return len(self._size_update) + len(block)

    @property
    def header_table_size(self) -> int:
        return 0

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._size_update = HPACK_TABLE_SIZE_ZERO

    def encode(
        self,
        headers: Iterable[
            HeaderTuple | tuple[bytes | str, bytes | str] | tuple[bytes | str, bytes | str, bool | None]
        ]
        | dict[bytes | str, bytes | str],
        huffman: bool = True,
    ) -> bytes:
        first = next(iter(headers))
        if not isinstance(first, PreEncodedBlock):
            raise TypeError("etcdsync sends pre-encoded header blocks only")
        prefix, self._size_update = self._size_update, b""
        return prefix + first[1]


class _CountingHeaderTable(HeaderTable):
    """An HPACK dynamic table that counts its insertions (resizes are counted by the decoder)."""

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        super().add(name, value)


class _CachingDecoder(Decoder):
    """An HPACK decoder that remembers small header blocks whose decoding left the table unchanged.

    Why it is correct: a block's meaning depends only on its bytes and on the dynamic table; a
    cached result is reused only while the table's mutation count is the one it was decoded at,
    and only blocks that did not mutate the table themselves are cached. Why it pays: after the
    first response, grpc-go sends ``:status 200``/``content-type`` and ``grpc-status: 0`` as
    indexed fields, i.e. the same two- or three-byte blocks on every call; HPACK decoding was a
    tenth of the client's CPU under load.
    """

    _MAX_BLOCK = 256
    _MAX_ENTRIES = 256

    def __init__(self) -> None:
        super().__init__()
        self._table = _CountingHeaderTable()
        self.header_table = self._table
        self.max_allowed_table_size = self._table.maxsize
        self._cache: dict[bytes, tuple[int, list[HeaderTuple], bool]] = {}

    @property
    def header_table_size(self) -> int:
        return self._table.maxsize

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        # A size update in a block, or from our settings: may evict entries.
        self._table.generation += 1
        self._table.maxsize = value

    def decode(self, data: bytes, raw: bool = False) -> list[HeaderTuple]:
        table = self._table
        generation = table.generation
        hit = self._cache.get(data) if raw else None
        if hit is not None and hit[0] == generation:
            return list(hit[1])
        headers = list(super().decode(data, raw))
        if raw and table.generation == generation and len(data) <= self._MAX_BLOCK:
            if len(self._cache) >= self._MAX_ENTRIES:
                self._cache.clear()
            self._cache[bytes(data)] = (generation, headers, _is_plain(headers))
        return headers

    def decode_response(self, data: bytes) -> tuple[list[Header], bool]:
        """Decode a response block as h2 does (its errors included); also say whether it is plain.

        Plain: neither an informational (1xx) response nor carrying content-length, i.e. a block
        the fast path may deliver without h2's stream logic.
        """
        hit = self._cache.get(data)
        headers: list[Header]
        if hit is not None and hit[0] == self._table.generation:
            headers = list(hit[1])
            return headers, hit[2]
        headers = list(_decode_headers(self, data))
        return headers, _is_plain(headers)


def _is_plain(headers: Sequence[Header]) -> bool:
    for name, _ in headers:
        if name == b"content-length":
            return False
    return not is_informational_response(headers)
