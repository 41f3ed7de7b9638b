"""``list_and_watch``: a prefix's current keys, then every change, surviving compaction.

The informer pattern (Kubernetes' list-then-watch) as one async iterator::

    async with etcdsync.list_and_watch(client, b"/services/") as items:
        async for item in items:
            if isinstance(item, etcdsync.client.Event):
                apply(item)            # PUT: item.kv is the key's value; DELETE: the key is gone
            elif isinstance(item, etcdsync.client.ListDone):
                ready()                # the local copy now equals the store at item.revision
            else:                      # Resynced
                ready()                # the local copy equals the store at item.revision again

**Items.** The iterator yields ``Event | ListDone | Resynced`` (``ListWatchItem``):

1. one ``PUT`` :class:`~etcdsync.client.Event` per key under the prefix at one revision ``R`` (read
   page by page with :meth:`~etcdsync.client.Client.iter_range` pinned to ``R``), in key order;
2. one :class:`~etcdsync.client.ListDone` with ``revision=R``;
3. the events of a watch from ``R + 1`` on, one :class:`~etcdsync.client.Event` at a time, exactly once
   and in revision order (see :mod:`etcdsync.client._watch`); progress notifications are not yielded.

**Compaction.** When the watch cannot continue because etcd compacted the history it needs (after an
outage or a long backpressure pause), the prefix is listed again at the current revision ``R2`` and
the *difference* against what this iterator has told its consumer is yielded, in key order: a ``PUT``
for every key that is new or whose ``mod_revision`` changed (``kv`` is its value at ``R2``), a
``DELETE`` for every key that vanished (``kv`` holds only the key and ``mod_revision=R2``: the real
delete revision was compacted away). Then one :class:`~etcdsync.client.Resynced` (``revision=R2``, with etcd's
``compact_revision``), and the watch continues from ``R2 + 1``. Applying every item in order to a
dict keeps it equal to the store; intermediate values that were compacted away are skipped, which is
the only thing compaction takes from you. Diff events carry no ``prev_kv`` and are not in revision
order.

Memory: the iterator remembers each key's last ``KeyValue`` it yielded (to compute a diff), so it
holds the prefix's current contents once, plus the watch's bounded buffer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, TypeAlias, final

import attrs
import trio

from ._errors import CompactedError
from ._keys import bytesify, key_range
from ._sansio._watch import WatchSpec
from ._txn import check_int
from ._types import Event, EventType, KeyValue
from ._watch import DEFAULT_MAX_BUFFER, Watch, start_watch

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["ListAndWatch", "ListDone", "ListWatchItem", "Resynced", "list_and_watch"]

_PRIVATE: Final = object()
# Re-listing after a compaction races further compactions; give up only if it keeps losing.
_MAX_LIST_ATTEMPTS: Final = 5


@attrs.frozen(kw_only=True)
class ListDone:
    """The initial listing is complete: every key that existed at ``revision`` was yielded as a PUT.

    Attributes:
        revision: the revision the listing was read at; live events follow from ``revision + 1``.
    """

    revision: int


@attrs.frozen(kw_only=True)
class Resynced:
    """The watch hit a compaction; the prefix was re-listed and the difference yielded.

    Attributes:
        revision: the revision of the new listing; live events follow from ``revision + 1``.
        compact_revision: etcd's compaction revision that interrupted the watch.
    """

    revision: int
    compact_revision: int


#: What :func:`~etcdsync.client.list_and_watch` yields.
ListWatchItem: TypeAlias = Event | ListDone | Resynced


@final
class ListAndWatch:
    """The async iterator of :func:`~etcdsync.client.list_and_watch`: ``Event | ListDone | Resynced`` items.

    Example::

        async with list_and_watch(client, b"/cfg/") as items:
            async for item in items:
                print(item)
    """

    def __init__(
        self, _private: object, client: Client, key: bytes, range_end: bytes, max_buffer: int
    ) -> None:
        if _private is not _PRIVATE:
            raise TypeError("ListAndWatch iterators come from `async with list_and_watch(...)`")
        self._client = client
        self._key = key
        self._range_end = range_end
        self._max_buffer = max_buffer
        # What the consumer has been told exists: the base of a resync's difference.
        self._state: dict[bytes, KeyValue] = {}
        self._pending: deque[ListWatchItem] = deque()
        self._watch: Watch | None = None
        self._revision = 0
        self._resyncs = 0

    @property
    def revision(self) -> int:
        """The revision the consumer's view is complete up to, once it took every item yielded so far."""
        return self._revision

    @property
    def resyncs(self) -> int:
        """How often a compaction forced a re-listing."""
        return self._resyncs

    def __aiter__(self) -> ListAndWatch:
        return self

    async def __anext__(self) -> ListWatchItem:
        """The next item. A checkpoint.

        Raises:
            CompactedError: re-listing lost the race against compaction five times in a row.
            trio.ClosedResourceError: the client is closed, or the block was left.
        """
        if self._pending:
            await trio.lowlevel.checkpoint()
            return self._take()
        while not self._pending:
            watch = self._watch
            if watch is None:
                raise trio.ClosedResourceError("this list_and_watch block was left")
            try:
                response = await watch.__anext__()
            except CompactedError as exc:
                watch._close()
                self._watch = None
                await self._resync(exc.compact_revision or 0)
                continue
            self._pending.extend(response.events)
        return self._take()

    def _take(self) -> ListWatchItem:
        item = self._pending.popleft()
        if isinstance(item, Event):
            if item.type is EventType.PUT:
                self._state[item.kv.key] = item.kv
            else:
                self._state.pop(item.kv.key, None)
            self._revision = max(self._revision, item.kv.mod_revision)
        else:
            self._revision = item.revision
        return item

    async def _list(self) -> tuple[int, dict[bytes, KeyValue]]:
        """Every key of the range at one revision, and that revision."""
        for attempt in range(_MAX_LIST_ATTEMPTS):
            head = await self._client.range(self._key, self._range_end or None, count_only=True)
            revision = head.header.revision
            listing: dict[bytes, KeyValue] = {}
            try:
                async for kv in self._client.iter_range(self._key_arg(), prefix=True, revision=revision):
                    listing[kv.key] = kv
            except CompactedError:
                if attempt == _MAX_LIST_ATTEMPTS - 1:
                    raise
                continue
            return revision, listing
        raise AssertionError("unreachable")

    def _key_arg(self) -> bytes:
        # iter_range takes the prefix itself; an empty prefix ("every key") is spelled b"" there.
        return b"" if self._key == b"\x00" else self._key

    async def _start(self) -> None:
        revision, listing = await self._list()
        self._pending.extend(Event(type=EventType.PUT, kv=kv) for kv in listing.values())
        self._pending.append(ListDone(revision=revision))
        self._watch_from(revision + 1)

    async def _resync(self, compact_revision: int) -> None:
        revision, listing = await self._list()
        self._resyncs += 1
        for key in sorted(self._state.keys() | listing.keys()):
            new, old = listing.get(key), self._state.get(key)
            if new is None:
                gone = KeyValue(key=key, mod_revision=revision)
                self._pending.append(Event(type=EventType.DELETE, kv=gone))
            elif old is None or old.mod_revision != new.mod_revision:
                self._pending.append(Event(type=EventType.PUT, kv=new))
        self._pending.append(Resynced(revision=revision, compact_revision=compact_revision))
        self._watch_from(revision + 1)

    def _watch_from(self, revision: int) -> None:
        spec = WatchSpec(key=self._key, range_end=self._range_end, start_revision=revision)
        self._watch = start_watch(self._client, spec, self._max_buffer)

    def _close(self) -> None:
        if self._watch is not None:
            self._watch._close()
            self._watch = None
        self._pending.clear()

    def __repr__(self) -> str:
        return (
            f"<etcdsync.client.ListAndWatch at {id(self):#x}, key={self._key!r}, "
            f"revision={self._revision}, {len(self._state)} keys, {len(self._pending)} pending, "
            f"{self._resyncs} resyncs>"
        )


@asynccontextmanager
async def list_and_watch(
    client: Client, prefix: bytes | str, *, max_buffer: int = DEFAULT_MAX_BUFFER
) -> AsyncIterator[ListAndWatch]:
    """List every key starting with ``prefix``, then watch them; see the module docstring for the items.

    Entering lists the keys (a checkpoint; a few Range calls) and starts the watch; exiting cancels
    the watch on the server and is not a checkpoint.

    Args:
        prefix: the key prefix (``b""``: every key).
        max_buffer: the underlying watch's buffer (default 64; see :mod:`etcdsync.client._watch`).

    Raises:
        CompactedError: (on entry) the listing revision kept being compacted while it was read.
        trio.ClosedResourceError: (on entry) the client is closed.

    Example::

        state: dict[bytes, bytes] = {}
        async with list_and_watch(client, b"/cfg/") as items:
            async for item in items:
                if isinstance(item, Event):
                    if item.type is EventType.PUT:
                        state[item.kv.key] = item.kv.value
                    else:
                        state.pop(item.kv.key, None)
    """
    raw = bytesify(prefix, "prefix")
    key, range_end = key_range(raw, None, prefix=True, from_key=False)
    check_int("max_buffer", max_buffer, minimum=1)
    client._check_open()
    iterator = ListAndWatch(_PRIVATE, client, key, range_end, max_buffer)
    try:
        await iterator._start()
        yield iterator
    finally:
        iterator._close()
