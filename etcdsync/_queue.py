"""Queue and PriorityQueue: work queues in etcd with exactly-once claims and waits that never poll.

Key layout (compatible with etcd's Go ``recipes.Queue``/``PriorityQueue`` in both directions, see
``shared/notes/etcd-reference.md`` §2.4-2.5):

- ``Queue(client, NAME)``: each item is a key ``NAME/<32 random hex digits>`` without a lease, its
  value the payload. Items are served in **create-revision order** (the order etcd applied the
  enqueues), not in key order.
- ``PriorityQueue(client, NAME)``: ``NAME/<priority as 5 decimal digits>/<32 random hex digits>``, as
  Go's ``%05d``. The **lowest number is served first** (Go's semantics: priority 0 before priority 7);
  items of equal priority are served in create-revision order. Go's ``__NAME/...`` bookkeeping key is
  not needed: order within a priority comes from create revisions, not from sequence numbers.

Any other key under ``NAME/`` is treated as an item too: that is how Go's items are served here. Go's
dequeuers serve ours as well, but a Go PriorityQueue takes equal-priority items in key order, which for
our random names is not FIFO.

**Enqueue** is ``Txn If[CR(item) = 0] Then[Put(item, value)]``: one RPC. The random name never
collides in practice, and the compare makes sure an enqueue never overwrites an item. If the answer is
lost (the connection breaks after sending), :meth:`Queue.enqueue` re-sends the same transaction with
the same key, so a retry finds the item if the first attempt created it, and never makes a second
one. The one residual duplicate: the first attempt did create the item, a consumer dequeued it before
the retry arrived, and the retry creates it again. Both copies have the same key.

**Dequeue** claims the oldest item with ``Txn If[MR(item) = r] Then[Delete(item)] Else[Get(item)]`` and
returns its value only if that transaction succeeded, so every item is returned by exactly one
``dequeue`` (except for the lost-answer case below). Claims are made only on the current head of the
queue (for a PriorityQueue the claim also checks that no higher-priority item exists), so items are
claimed in queue order: for a Queue, the revisions of the claims increase with the items' create
revisions.

**Waiting never polls.** With nothing to claim, a dequeuer watches the prefix and issues no RPC until
an item is put. The watch starts "now" (revision 0), which etcd serves at once, not from the read's
revision + 1, which etcd would serve from its 100 ms catch-up loop if anything was written in
between; if the watch was established after the read, the head is read once more (the watch stays
open), so no item put in between is missed.

**Herd.** Go's Queue wakes every waiting dequeuer on every enqueue; each claims, and each loser
re-reads and re-watches. Here the dequeuers sharing one Queue object take turns (first come, first
served): only the first reads, watches and claims, working through a local list of the oldest items
(read 32 at a time, extended by the watch while waiting), so N dequeuers of one object cost one watch
and one claim per item. What remains is the race between objects (typically, processes): each object
with a dequeuer waiting receives every PUT event and claims the new item once; all but one claim fail,
and a loser costs only that failed transaction (it goes back to its open watch, no re-read). Under a
backlog likewise: P competing objects each claim every head once, so an item costs up to P claims. A
read of the head sorts the prefix on the server, O(items queued), amortised over 32 claims; keep
queues short and prefixes dedicated.

**Cancellation.** Cancelling :meth:`Queue.dequeue` while it reads or waits leaves the queue as it was.
The claim transaction is the commit point and runs shielded: once a claim is sent, ``dequeue`` waits
for its answer (bounded by ``claim_timeout``), and a claim that committed is always returned, even if
cancellation arrived meanwhile; the cancellation then takes effect at the caller's next checkpoint, so
handle the returned item before awaiting anything else. If a claim's answer is lost, it is re-sent:
if the item is still there the re-sent claim decides; if it is gone, we cannot tell whether our claim
or another consumer's removed it, and ``dequeue`` returns it anyway — **at-least-once** rather than
losing it (a warning is logged and ``statistics().uncertain_claims`` counts it). The same holds if no
answer arrives within ``claim_timeout``.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Sequence
from typing import Final, final

import attrs
import trio

from ._keys import name_prefix
from .client import (
    Client,
    CompactedError,
    Compare,
    DeadlineExceededError,
    EtcdError,
    Event,
    EventType,
    KeyValue,
    Op,
    OutcomeUnknownError,
    RangeResponse,
    SortOrder,
    SortTarget,
    TransportError,
)

__all__ = ["PriorityQueue", "Queue", "QueueStatistics"]

logger = logging.getLogger(__name__)

_BATCH: Final = 32  # items per read of the head; claims go through them in order without re-reading
_RETRIES: Final = 5  # attempts at an enqueue, or at resolving a claim, whose answer was lost
_MAX_PRIORITY: Final = 65535  # Go's uint16


class _Claim(enum.Enum):
    CLAIMED = enum.auto()  # the item is ours
    GONE = enum.auto()  # someone else took it: try the next candidate
    STALE = enum.auto()  # it is still there but was modified or is not the head: read the head again


@attrs.define
class QueueStatistics:
    """What dequeuing has cost this object so far; for tests and for watching the herd.

    Attributes:
        reads: reads of the head of the queue.
        claims: claim transactions sent.
        claims_lost: claims that failed (another consumer took the item, or it is no longer the head).
        watches: watches established while waiting for items.
        wakeups: watch responses with new items that woke a waiting dequeuer.
        uncertain_claims: items returned although the claim's answer was lost (see "Cancellation").
    """

    reads: int = 0
    claims: int = 0
    claims_lost: int = 0
    watches: int = 0
    wakeups: int = 0
    uncertain_claims: int = 0


class _ItemQueue:
    """What Queue and PriorityQueue share; they differ in item keys, order, head reads and fences."""

    def __init__(self, client: Client, name: bytes | str, *, claim_timeout: float = 10.0) -> None:
        if not isinstance(client, Client):
            raise TypeError(f"{type(self).__name__} needs a Client, not {type(client).__name__}")
        if isinstance(claim_timeout, bool) or not isinstance(claim_timeout, int | float):
            raise TypeError(f"claim_timeout must be a number, not {type(claim_timeout).__name__}")
        if not claim_timeout > 0:
            raise ValueError("claim_timeout must be > 0")
        self._client = client
        self._prefix = name_prefix(name)
        self._claim_timeout = claim_timeout
        self._turn = trio.Lock()  # FIFO: local dequeuers take turns at reading, watching, claiming
        self._candidates: dict[bytes, KeyValue] = {}  # oldest known items, possibly already taken
        self._stats = QueueStatistics()

    @property
    def prefix(self) -> bytes:
        """The prefix every item key starts with: ``name + "/"``."""
        return self._prefix

    def statistics(self) -> QueueStatistics:
        """A snapshot of what dequeuing has cost so far (no I/O)."""
        return attrs.evolve(self._stats)

    def __repr__(self) -> str:
        n = self._turn.statistics().tasks_waiting + self._turn.locked()
        return f"<etcdsync.{type(self).__name__} at {id(self):#x}, {self._prefix!r}, {n} dequeuing>"

    # ----- the parts that differ -----

    def _order(self, kv: KeyValue) -> tuple[bytes, int]:
        return b"", kv.create_revision

    def _fence(self, kv: KeyValue) -> list[Compare]:
        return []

    async def _read_head(self) -> int:
        """Put the oldest items into the candidates; return the read's revision."""
        self._stats.reads += 1
        resp = await self._client.range(
            self._prefix,
            prefix=True,
            sort_target=SortTarget.CREATE,
            sort_order=SortOrder.ASCEND,
            limit=_BATCH,
        )
        self._candidates.update((kv.key, kv) for kv in resp.kvs)
        return resp.header.revision

    # ----- enqueue -----

    async def _put_new(self, group: bytes, value: bytes | str) -> bytes:
        key = self._prefix + group + secrets.token_hex(16).encode("ascii")
        put = Op.put(key, value)  # validates before any RPC
        uncertain: EtcdError | None = None  # an earlier attempt's answer was lost
        for attempt in range(_RETRIES):
            if attempt:
                await trio.sleep(0.05 * 2 ** (attempt - 1))
            try:
                resp = await self._client.txn([Compare.create_revision(key) == 0], [put])
            except (OutcomeUnknownError, DeadlineExceededError) as exc:
                uncertain = exc
                continue
            except TransportError as exc:
                if uncertain is None:
                    raise  # not sent, and nothing sent before: nothing happened
                uncertain = exc
                continue
            if resp.succeeded or uncertain is not None:
                return key  # a re-send that finds the key means the lost attempt created it
            key = self._prefix + group + secrets.token_hex(16).encode("ascii")  # a collision: new name
            put = Op.put(key, value)
        raise OutcomeUnknownError(
            f"enqueueing {key!r}: no answer in {_RETRIES} attempts; the item may or may not be queued"
        ) from uncertain

    # ----- dequeue -----

    async def dequeue(self) -> bytes:
        """Wait for the item at the head of the queue, take it out, and return its value. A checkpoint.

        Waiting issues no RPC until an item arrives. Cancellation is honoured while reading and
        waiting; once a claim is sent, its outcome is waited for, and a claimed item is returned (see
        the module docstring).

        Raises:
            EtcdError: a read or watch failed (nothing was claimed).
        """
        async with self._turn:
            while True:
                if not self._candidates:
                    revision = await self._read_head()
                    if not self._candidates:
                        claimed = await self._wait_and_claim(revision)
                        if claimed is not None:
                            return claimed.value
                        continue
                kv = min(self._candidates.values(), key=self._order)
                if await self._claim(kv) is _Claim.CLAIMED:
                    return kv.value

    async def _wait_and_claim(self, revision: int) -> KeyValue | None:
        """Watch for items put after ``revision`` and claim them in order; ``None``: read the head again.

        The watch starts "now" (revision 0), which etcd serves at once; one started at ``revision +
        1`` would be served from etcd's 100 ms catch-up loop whenever anything was written since the
        read (an enqueue, typically). If it was established after ``revision``, items put in between
        may be missing from it: the head is read once more; if that read finds items they are the
        caller's to claim (``None``), else the watch, kept open, covers everything after that read.
        """
        try:
            async with self._client.watch(self._prefix, prefix=True) as events:
                if await events.established() > revision:
                    revision = await self._read_head()
                    if self._candidates:
                        # Items came in between: let the caller claim them. (Claiming here and
                        # watching on when they are all gone would hang: a read sees only the head of
                        # the queue (a batch, or one priority), and what it did not see sends no event.)
                        return None
                self._stats.watches += 1
                async for resp in events:
                    if not self._absorb_events([e for e in resp.events if e.kv.mod_revision > revision]):
                        continue
                    self._stats.wakeups += 1
                    claimed = await self._claim_head()
                    if claimed is not _Claim.GONE:
                        # Nothing between the shielded claim and the caller is a checkpoint (leaving the
                        # watch only queues its cancel), so a pending cancellation cannot lose it.
                        return claimed if isinstance(claimed, KeyValue) else None
        except CompactedError:
            return None  # history we need is gone (a resume after an outage): read the head again
        raise AssertionError("a watch ended without an error")  # pragma: no cover

    async def _claim_head(self) -> KeyValue | _Claim:
        """Claim the candidates in order: the one we got; ``GONE``: none left; ``STALE``: read again."""
        while self._candidates:
            kv = min(self._candidates.values(), key=self._order)
            claim = await self._claim(kv)
            if claim is _Claim.CLAIMED:
                return kv
            if claim is _Claim.STALE:
                return claim
        return _Claim.GONE

    def _absorb_events(self, events: Sequence[Event]) -> bool:
        """Track puts and deletes under the prefix; return whether any item was put."""
        put = False
        for event in events:
            if event.type is EventType.PUT:
                self._candidates[event.kv.key] = event.kv
                put = True
            else:
                self._candidates.pop(event.kv.key, None)
        return put

    async def _claim(self, kv: KeyValue) -> _Claim:
        """Try to take ``kv`` out of the queue. Shielded: a sent claim is always seen through."""
        compare = [Compare.mod_revision(kv.key) == kv.mod_revision, *self._fence(kv)]
        uncertain = False
        with trio.move_on_after(self._claim_timeout, shield=True):
            for attempt in range(_RETRIES):
                if attempt:
                    await trio.sleep(0.05 * 2 ** (attempt - 1))
                self._stats.claims += 1
                try:
                    resp = await self._client.txn(
                        compare, [Op.delete(kv.key)], [Op.get(kv.key, keys_only=True)]
                    )
                except (OutcomeUnknownError, DeadlineExceededError):
                    uncertain = True  # sent, and maybe applied
                    continue
                except TransportError:
                    if not uncertain:
                        raise  # this claim was not sent, and none before it: nothing happened
                    continue
                if resp.succeeded:
                    self._candidates.pop(kv.key, None)
                    return _Claim.CLAIMED
                current = resp.responses[0]
                assert isinstance(current, RangeResponse)
                if not current.kvs and uncertain:
                    return self._uncertain(kv)  # our lost claim, or another consumer's, removed it
                self._stats.claims_lost += 1
                if not current.kvs:
                    self._candidates.pop(kv.key, None)
                    return _Claim.GONE
                # Still there, so no claim of ours was applied (a lost one sent earlier is, in practice,
                # applied before this re-send). Modified, or not the head: the next read decides.
                self._candidates.clear()
                return _Claim.STALE
        return self._uncertain(kv)  # no answer in time: the claim may have been applied

    def _uncertain(self, kv: KeyValue) -> _Claim:
        self._candidates.pop(kv.key, None)
        self._stats.uncertain_claims += 1
        logger.warning(
            "the claim of %r may or may not have been applied (its answer was lost); returning the item, "
            "which another consumer may also get",
            kv.key,
        )
        return _Claim.CLAIMED


@final
class Queue(_ItemQueue):
    """A FIFO work queue under ``name/``: :meth:`enqueue` adds an item, :meth:`dequeue` takes the oldest.

    Example::

        jobs = etcdsync.Queue(client, "/queues/jobs")
        await jobs.enqueue(b"resize:photo-17")
        job = await jobs.dequeue()          # waits (without polling) while the queue is empty

    Items have no lease: they stay queued until dequeued, whoever enqueued them. Every item is
    returned by exactly one ``dequeue`` of any process, in the order the enqueues were applied; see
    the module docstring for the lost-answer exceptions and the cost of waiting.

    Args:
        client: the client to use.
        name: the queue's name; items live under ``name + "/"``.
        claim_timeout: bound on the shielded wait for a claim's answer (see "Cancellation").
    """

    async def enqueue(self, value: bytes | str) -> bytes:
        """Add ``value`` at the tail of the queue; return the new item's key. A checkpoint.

        A lost answer is handled by re-sending (see the module docstring). If cancelled while the
        enqueue is in flight, the item may or may not have been queued.

        Raises:
            TypeError: ``value`` is not ``bytes``/``str`` (before any RPC).
            OutcomeUnknownError: every attempt's answer was lost; the item may or may not be queued.
        """
        return await self._put_new(b"", value)


@final
class PriorityQueue(_ItemQueue):
    """A priority queue under ``name/``: lower numbers first, FIFO within a priority (Go's semantics).

    Example::

        work = etcdsync.PriorityQueue(client, "/queues/work")
        await work.enqueue(b"nightly-report", priority=10)
        await work.enqueue(b"page-oncall", priority=0)
        assert await work.dequeue() == b"page-oncall"      # 0 is served before 10

    Items are keys ``name/<%05d priority>/<random>``; see the module docstring for the guarantees.

    Args:
        client: the client to use.
        name: the queue's name; items live under ``name + "/"``.
        claim_timeout: bound on the shielded wait for a claim's answer (see "Cancellation").
    """

    async def enqueue(self, value: bytes | str, priority: int) -> bytes:
        """Add ``value`` with ``priority`` (0 to 65535; 0 is served first); return its key. A checkpoint.

        Raises:
            TypeError, ValueError: ``priority`` is not an int in range (before any RPC).
            OutcomeUnknownError: every attempt's answer was lost; the item may or may not be queued.
        """
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, not {type(priority).__name__}")
        if not 0 <= priority <= _MAX_PRIORITY:
            raise ValueError(f"priority must be between 0 and {_MAX_PRIORITY}")
        return await self._put_new(b"%05d/" % priority, value)

    def _group(self, key: bytes) -> bytes:
        """The priority part of an item key (``b"00007/"``); for a key without one, the whole name."""
        rest = key[len(self._prefix) :]
        end = rest.find(b"/")
        return rest if end < 0 else rest[: end + 1]

    def _order(self, kv: KeyValue) -> tuple[bytes, int]:
        return self._group(kv.key), kv.create_revision

    def _fence(self, kv: KeyValue) -> list[Compare]:
        # No key sorts before this item's priority group: nothing of higher priority is queued.
        return [Compare.version(self._prefix, range_end=self._prefix + self._group(kv.key)) == 0]

    async def _read_head(self) -> int:
        while True:
            self._stats.reads += 1
            first = await self._client.range(self._prefix, prefix=True, limit=1, keys_only=True)
            if not first.kvs:
                return first.header.revision
            self._stats.reads += 1
            resp = await self._client.range(
                self._prefix + self._group(first.kvs[0].key),
                prefix=True,
                sort_target=SortTarget.CREATE,
                sort_order=SortOrder.ASCEND,
                limit=_BATCH,
            )
            if resp.kvs:  # else that priority emptied between the two reads: look again
                self._candidates.update((kv.key, kv) for kv in resp.kvs)
                return resp.header.revision
