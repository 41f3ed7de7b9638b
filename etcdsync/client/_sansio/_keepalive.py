"""When to send lease keep-alives, and when a lease must be counted as lost — pure, clock-free.

All sessions of a client share one LeaseKeepAlive stream. :class:`KeepAliveSchedule` tracks every
lease kept alive on it; the trio shell only sleeps until :meth:`~KeepAliveSchedule.next_send` (or
:meth:`~KeepAliveSchedule.next_expiry`), sends what :meth:`~KeepAliveSchedule.due` returns, and feeds
responses back.

Why expiry is judged from the *send* time: the server renews a lease when it handles the request,
which is after we sent it and before we read the answer. Counting the new TTL from the send time of
the request that was acknowledged is therefore never later than the server's own deadline (Go counts
from the receive time, which can be late by a whole round trip and so is optimistic). A lease is
lost when:

- the server answers a keep-alive with TTL <= 0 (it has expired or was revoked), or
- ``now`` passes ``valid_until`` = send time of the last acknowledged keep-alive + the TTL it
  returned — nothing acknowledged for a whole TTL, so the lease may have expired on the server.

Losing a lease is final: nothing revives it.

Responses on one stream come back in the order the requests were sent, so each lease keeps a FIFO of
the send times of its unanswered requests. When the stream breaks, those requests are forgotten (they
may or may not have been handled; either way only an acknowledged one counts) and every lease is due
again as soon as a new stream is up.

Cadence: a keep-alive every TTL/3 after the last acknowledged one (as Go's client), and while
answers are missing, again every ``retry_interval`` seconds, so a lost request or a reconnect costs
at most that long.

Batching: :meth:`~KeepAliveSchedule.due` also sends what falls due within the next ``coalesce``
seconds. Sending a keep-alive early is always safe (the renewed TTL simply counts from an earlier
send time); only late is dangerous, and nothing here ever sends later than the cadence says. The cost
is at most about ``coalesce / (TTL/3)`` more keep-alives (1.5 % at TTL 10 s with the default 50 ms,
7.5 % at a 2 s TTL); the gain is that leases due close together go out on one wake-up, so the shell
wakes a bounded number of times a second however many leases it keeps (at most about
``1 / coalesce`` batches, each followed by one look for missing answers ``retry_interval`` later)
instead of once per lease. Why an absolute window and not a fraction of each TTL: one window keeps a
single heap order, and 50 ms is small against any TTL etcd grants (its minimum is 1.5 election
timeouts, normally 2 s).

Cost: O(log n) per keep-alive and per grant, for n leases. Two binary heaps, one ordered by
``next_send_at`` and one by ``valid_until``, hold one entry per lease (plus a few stale ones). An
entry's key is allowed to be *earlier* than the lease's true time — it is a lower bound — and is
re-keyed lazily when it reaches the top. Moving a time later (the common case: a send, an
acknowledgement) therefore costs nothing until then; only moving a send time earlier pushes a new
entry. Entries carry a generation number; an entry whose generation is no longer the lease's (the
lease was removed or lost, or a newer entry replaced it) is stale and dropped when it surfaces.
Only :meth:`~KeepAliveSchedule.on_stream_down` is O(n), once per broken stream.
"""

from __future__ import annotations

import collections
import heapq
import math

import attrs

__all__ = ["KeepAliveSchedule", "LeaseState"]

#: The generation of a lease that has no live heap entries any more (removed or lost).
_DEAD: int = -1


@attrs.define
class LeaseState:
    """What the schedule knows of one lease.

    Attributes:
        lease_id: the lease.
        ttl: the TTL from the last acknowledgement (or the grant).
        next_send_at: when the next keep-alive is due.
        valid_until: the latest time the lease is known to be alive on the server.
        last_ack_at: the send time of the last acknowledged keep-alive (or the grant).
        lost: whether the lease is counted as lost (final).
        outstanding: the send times of the keep-alives not answered yet, oldest first.
    """

    lease_id: int
    ttl: int
    next_send_at: float
    valid_until: float
    last_ack_at: float
    lost: bool = False
    outstanding: collections.deque[float] = attrs.field(factory=collections.deque)
    # Heap bookkeeping (see the module docstring): the generation and key of this lease's live entry
    # in the send heap, and the generation of its entry in the expiry heap.
    send_gen: int = attrs.field(default=_DEAD, init=False, repr=False, eq=False)
    send_key: float = attrs.field(default=math.inf, init=False, repr=False, eq=False)
    expiry_gen: int = attrs.field(default=_DEAD, init=False, repr=False, eq=False)


# A heap entry: (key, generation, lease). Generations are unique among live entries, so tuples never
# compare the LeaseState itself; equal keys come out in the order their entries were made.
_Entry = tuple[float, int, LeaseState]


@attrs.define
class KeepAliveSchedule:
    """Keep-alive bookkeeping for many leases on one stream.

    Example (time driven by hand)::

        s = KeepAliveSchedule(coalesce=0.0)
        s.add(7, ttl=9, granted_at=0.0)      # granted by a request sent at t=0
        s.due(now=3.0)                       # [7]: TTL/3 after the grant
        s.on_response(7, ttl=9)              # acknowledged: valid until 3.0 + 9
        s.next_wakeup()                      # 6.0
        s.expired(now=12.5)                  # [] ... until 12.0 passes without an answer

    Attributes:
        retry_interval: how soon to send again while a keep-alive is unanswered.
        coalesce: :meth:`due` also returns leases due within this many seconds (sending early is
            safe; it batches wake-ups).
    """

    retry_interval: float = 0.5
    coalesce: float = 0.05
    _leases: dict[int, LeaseState] = attrs.field(factory=dict)
    # Why two heaps rather than one of min(next_send_at, valid_until): the shell sleeps on them in two
    # tasks (sending needs a stream, declaring expiry must not), and valid_until only ever grows, so
    # its entries never need pushing again — only lazy re-keying.
    _sends: list[_Entry] = attrs.field(factory=list)
    _expiries: list[_Entry] = attrs.field(factory=list)
    _generation: int = 0

    def add(self, lease_id: int, *, ttl: int, granted_at: float) -> LeaseState:
        """Start keeping ``lease_id`` alive; ``granted_at`` is when the request that granted (or last
        renewed) it was sent, so it is alive on the server until at least ``granted_at + ttl``.

        O(log n).
        """
        if lease_id in self._leases:
            raise ValueError(f"lease {lease_id:x} is already kept alive")
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        state = LeaseState(
            lease_id=lease_id,
            ttl=ttl,
            next_send_at=granted_at + ttl / 3,
            valid_until=granted_at + ttl,
            last_ack_at=granted_at,
        )
        self._leases[lease_id] = state
        self._push_send(state)
        state.expiry_gen = self._next_generation()
        heapq.heappush(self._expiries, (state.valid_until, state.expiry_gen, state))
        return state

    def remove(self, lease_id: int) -> None:
        """Stop keeping ``lease_id`` alive (no error if it is not kept). Amortized O(1)."""
        state = self._leases.pop(lease_id, None)
        if state is None:
            return
        state.send_gen = state.expiry_gen = _DEAD
        # Its entries are dropped when they surface. Many removals of long-TTL leases could pile
        # stale entries up meanwhile, so rebuild a heap once it is mostly stale (amortized O(1)).
        limit = 2 * len(self._leases) + 64
        if len(self._sends) > limit:
            self._sends = [e for e in self._sends if e[1] == e[2].send_gen]
            heapq.heapify(self._sends)
        if len(self._expiries) > limit:
            self._expiries = [e for e in self._expiries if e[1] == e[2].expiry_gen]
            heapq.heapify(self._expiries)

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def __len__(self) -> int:
        return len(self._leases)

    def get(self, lease_id: int) -> LeaseState | None:
        """The state of ``lease_id``, if it is kept alive."""
        return self._leases.get(lease_id)

    def due(self, now: float) -> list[int]:
        """The leases to send a keep-alive for now (including those due within ``coalesce``); each is
        recorded as sent at ``now``. O(log n) per lease returned."""
        sending: list[int] = []
        sent: list[_Entry] = []
        limit = now + self.coalesce
        heap = self._sends
        while heap and heap[0][0] <= limit:
            _, gen, state = heap[0]
            if gen != state.send_gen:
                heapq.heappop(heap)  # stale: removed, lost, or superseded by an earlier entry
            elif state.next_send_at > limit:
                state.send_key = state.next_send_at  # a lower bound that is not due: re-key
                heapq.heapreplace(heap, (state.next_send_at, gen, state))
            else:
                state.outstanding.append(now)
                state.next_send_at = state.send_key = now + min(self.retry_interval, state.ttl / 3)
                sending.append(state.lease_id)
                if state.next_send_at > limit:
                    heapq.heapreplace(heap, (state.next_send_at, gen, state))
                else:  # its retry falls inside the window too: pushed back after the loop, so that
                    heapq.heappop(heap)  # it is not sent twice in one call
                    sent.append((state.next_send_at, gen, state))
        for entry in sent:
            heapq.heappush(heap, entry)
        return sending

    def on_response(self, lease_id: int, *, ttl: int) -> bool:
        """Feed one keep-alive response; returns True if it made the lease lost (TTL <= 0).

        A response for a lease that is not kept alive (removed meanwhile) is ignored. O(1), or
        O(log n) when it moves the next send earlier.
        """
        state = self._leases.get(lease_id)
        if state is None or state.lost:
            return False
        sent_at = state.outstanding.popleft() if state.outstanding else state.last_ack_at
        if ttl <= 0:
            self._lose(state)
            return True
        state.ttl = ttl
        if sent_at > state.last_ack_at:
            state.last_ack_at = sent_at
        if sent_at + ttl > state.valid_until:
            state.valid_until = sent_at + ttl  # later only: the expiry entry stays a lower bound
        if not state.outstanding:
            # All caught up: back to the steady cadence. With requests still in flight, the retry
            # cadence set by due() stands until they are answered.
            state.next_send_at = state.last_ack_at + ttl / 3
            if state.next_send_at < state.send_key:
                self._push_send(state)
        return False

    def on_stream_down(self, now: float) -> None:
        """The stream broke: unanswered requests are void, and every lease is due on the next stream.

        O(n): the send heap is rebuilt.
        """
        sends: list[_Entry] = []
        for state in self._leases.values():
            state.outstanding.clear()
            state.next_send_at = min(state.next_send_at, now)
            if state.lost:
                continue
            state.send_key = state.next_send_at
            state.send_gen = self._next_generation()
            sends.append((state.next_send_at, state.send_gen, state))
        heapq.heapify(sends)
        self._sends = sends

    def expired(self, now: float) -> list[int]:
        """Leases not acknowledged within their TTL by ``now``; each is marked lost (once).

        O(log n) per lease returned (plus lazy re-keying).
        """
        gone = []
        while self.next_expiry() <= now:
            _, _, state = heapq.heappop(self._expiries)
            self._lose(state)
            gone.append(state.lease_id)
        return gone

    def next_expiry(self) -> float:
        """The earliest time a lease that is not lost yet would expire. Amortized O(log n)."""
        heap = self._expiries
        while heap:
            key, gen, state = heap[0]
            if gen != state.expiry_gen:
                heapq.heappop(heap)
            elif key < state.valid_until:
                heapq.heapreplace(heap, (state.valid_until, gen, state))
            else:
                return key
        return math.inf

    def next_send(self) -> float:
        """The earliest ``next_send_at`` of a lease that is not lost. Amortized O(log n)."""
        heap = self._sends
        while heap:
            key, gen, state = heap[0]
            if gen != state.send_gen:
                heapq.heappop(heap)
            elif key < state.next_send_at:
                state.send_key = state.next_send_at
                heapq.heapreplace(heap, (state.next_send_at, gen, state))
            else:
                return key
        return math.inf

    def next_wakeup(self) -> float:
        """The earliest time something is due: a keep-alive to send or an expiry to declare."""
        return min(self.next_send(), self.next_expiry())

    def _next_generation(self) -> int:
        self._generation += 1
        return self._generation

    def _push_send(self, state: LeaseState) -> None:
        """Give ``state`` a fresh send entry at ``next_send_at`` (its older one goes stale)."""
        state.send_gen = self._next_generation()
        state.send_key = state.next_send_at
        heapq.heappush(self._sends, (state.next_send_at, state.send_gen, state))

    def _lose(self, state: LeaseState) -> None:
        state.lost = True
        state.send_gen = state.expiry_gen = _DEAD
