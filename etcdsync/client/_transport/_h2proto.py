"""h2, adjusted for a gRPC client: pre-encoded request headers, O(1) stream counting, GOAWAY drain.

Four deliberate deviations from plain h2 usage, each explained at its class:

* :class:`_BlockEncoder` lets h2 send header blocks that ``_sansio._grpc`` encoded statelessly
  (cached per method), instead of running HPACK for every call;
* :class:`_CachingDecoder` decodes each distinct response header/trailer block once per state of
  the HPACK dynamic table (a warm grpc-go server sends byte-identical blocks for every OK call);
* :class:`H2Protocol` counts open streams in O(1) rather than h2's scan of every stream per new
  stream;
* :class:`H2Protocol` keeps the connection usable after GOAWAY so the streams the GOAWAY allows can
  finish (h2 4.x treats GOAWAY as the end of everything).

These rely on h2 and hpack internals (``H2Connection.encoder``/``decoder``, ``_open_streams``,
``_receive_goaway_frame``, ``Decoder.header_table``),
which is why ``pyproject.toml`` pins ``h2<5``; ``tests/transport`` exercises all three.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import h2.config
import h2.connection
import h2.events
import h2.settings
import trio
from h2.errors import ErrorCodes
from hpack import Decoder, Encoder, HeaderTuple
from hpack.table import HeaderTable
from hyperframe.frame import Frame, GoAwayFrame

from .._sansio._grpc import HPACK_TABLE_SIZE_ZERO

__all__ = [
    "RECEIVE_SIZE",
    "GoAwayReceived",
    "H2Protocol",
    "NotHTTP2Error",
    "PreEncodedBlock",
    "check_server_preface",
    "establish_connection",
]

#: Bytes asked for per read.
RECEIVE_SIZE: Final = 1 << 16


class GoAwayReceived(Exception):
    """The server sent GOAWAY; the ``__cause__`` of the :class:`ConnectionLost` it led to."""

    def __init__(self, error_code: int, last_stream_id: int, debug_data: bytes) -> None:
        try:
            name = ErrorCodes(error_code).name
        except ValueError:
            name = hex(error_code)
        super().__init__(
            f"GOAWAY {name} (last stream id {last_stream_id})"
            + (f": {debug_data.decode('utf-8', 'replace')}" if debug_data else "")
        )
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.debug_data = debug_data


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
        self._cache: dict[bytes, tuple[int, list[HeaderTuple]]] = {}

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
            self._cache[bytes(data)] = (generation, headers)
        return headers


class H2Protocol(h2.connection.H2Connection):
    """h2's connection state machine with two deliberate deviations.

    * ``open_outbound_streams`` is h2's check against the server's MAX_CONCURRENT_STREAMS. h2 counts
      by scanning every stream it knows on each new stream (O(n) per call, O(n^2) under load); here
      it returns :attr:`open_calls`, which :class:`Connection` maintains exactly, and runs h2's own
      sweep of closed streams only when the table has grown to twice the open count (amortised O(1)).
    * On GOAWAY h2 4.x moves the connection to CLOSED and drops queued output, so frames for the
      streams the GOAWAY still lets complete (id <= last_stream_id, RFC 9113 6.8) would raise
      ProtocolError. Here GOAWAY only produces its event; :class:`Connection` stops opening streams,
      fails the refused ones and closes the socket once the rest have finished.
    """

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config)
        self.encoder = _BlockEncoder()
        decoder = _CachingDecoder()
        decoder.max_header_list_size = self.decoder.max_header_list_size
        self.decoder = decoder
        self.open_calls = 0

    @property
    def open_outbound_streams(self) -> int:
        if len(self.streams) > 2 * self.open_calls + 64:
            self._open_streams(1)  # h2's sweep: forgets closed streams (client stream ids are odd)
        return self.open_calls

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[h2.events.Event]]:
        event = h2.events.ConnectionTerminated()
        event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


def new_h2_protocol(receive_window: int) -> H2Protocol:
    """A client-side h2 connection with our settings, its preface already queued."""
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        # Our request headers are built and validated by _sansio._grpc; h2 would re-check each
        # field of every call. Inbound validation only protects against a broken server.
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
    )
    conn = H2Protocol(config)
    conn.local_settings = h2.settings.Settings(
        client=True,
        initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: receive_window,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 16,
        },
    )
    conn.initiate_connection()
    if receive_window > 65535:
        conn.increment_flow_control_window(receive_window - 65535)
    return conn


class NotHTTP2Error(Exception):
    """The peer answered something other than an HTTP/2 server preface: it is not a gRPC server."""


def check_server_preface(head: bytes) -> None:
    """Refuse, from its first bytes, a peer that is not an HTTP/2 server.

    An HTTP/2 server's first frame is SETTINGS (type 4), whose payload is a few 6-byte entries. Without
    this check, an HTTP/1 reply such as ``HTTP/1.1 400`` is parsed as a frame header announcing a
    4.7 MB payload (the bytes ``HTT`` read as a length), and the handshake waits for it until the
    caller's deadline.
    """
    if head.startswith(b"HTTP/"[: len(head)]) and len(head) >= 4:
        raise NotHTTP2Error("the server answered in HTTP/1, not HTTP/2: it is not an etcd (gRPC) endpoint")
    if len(head) >= 9:
        length = int.from_bytes(head[:3], "big")
        if head[3] != 0x04 or length % 6 or length > 6 * 64:
            raise NotHTTP2Error(
                f"the server's first bytes {head!r} are not an HTTP/2 SETTINGS frame: "
                "it is not an etcd (gRPC) endpoint"
            )


async def establish_connection(
    stream: trio.abc.Stream, receive_window: int
) -> tuple[H2Protocol, list[h2.events.Event]]:
    """Send our preface and wait for the server's SETTINGS. Returns h2 and any other events read."""
    conn = new_h2_protocol(receive_window)
    await stream.send_all(conn.data_to_send())
    head = b""
    while True:
        data = await stream.receive_some(RECEIVE_SIZE)
        if not data:
            raise EOFError("the server closed the connection during the HTTP/2 handshake")
        if len(head) < 9:
            head += data[: 9 - len(head)]
            check_server_preface(head)
        events = conn.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.ConnectionTerminated):
                raise GoAwayReceived(int(event.error_code or 0), event.last_stream_id or 0, b"")
        if any(isinstance(event, h2.events.RemoteSettingsChanged) for event in events):
            return conn, events
