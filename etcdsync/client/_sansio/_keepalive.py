"""When to send lease keep-alives, and when a lease must be counted as lost — pure, clock-free.

All sessions of a client share one LeaseKeepAlive stream. :class:`KeepAliveSchedule` tracks every
lease kept alive on it; the trio shell only sleeps until :meth:`~KeepAliveSchedule.next_wakeup`,
sends what :meth:`~KeepAliveSchedule.due` returns, and feeds responses back.

Why expiry is judged from the *send* time: the server renews a lease when it handles the request,
which is after we sent it and before we read the answer. Counting the new TTL from the send time of
the request that was acknowledged is therefore never later than the server's own deadline (Go counts
from the receive time, which can be late by a whole round trip and so is optimistic). A lease is
lost when:

- the server answers a keep-alive with TTL <= 0 (it has expired or was revoked), or
- ``now`` passes ``valid_until`` = send time of the last acknowledged keep-alive + the TTL it
  returned — nothing acknowledged for a whole TTL, so the lease may have expired on the server.

Responses on one stream come back in the order the requests were sent, so each lease keeps a FIFO of
the send times of its unanswered requests. When the stream breaks, those requests are forgotten (they
may or may not have been handled; either way only an acknowledged one counts) and every lease is due
again as soon as a new stream is up.

Cadence: a keep-alive every TTL/3 after the last acknowledged one (as Go's client), and while
answers are missing, again every ``retry_interval`` seconds, so a lost request or a reconnect costs
at most that long.
"""

from __future__ import annotations

import collections
import math

import attrs

__all__ = ["KeepAliveSchedule", "LeaseState"]


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
    """

    lease_id: int
    ttl: int
    next_send_at: float
    valid_until: float
    last_ack_at: float
    lost: bool = False
    outstanding: collections.deque[float] = attrs.field(factory=collections.deque)


@attrs.define
class KeepAliveSchedule:
    """Keep-alive bookkeeping for many leases on one stream.

    Example (time driven by hand)::

        s = KeepAliveSchedule()
        s.add(7, ttl=9, granted_at=0.0)      # granted by a request sent at t=0
        s.due(now=3.0)                       # [7]: TTL/3 after the grant
        s.on_response(7, ttl=9)            # acknowledged: valid until 3.0 + 9
        s.next_wakeup()                      # 6.0
        s.expired(now=12.5)                  # [] ... until 12.0 passes without an answer
    """

    retry_interval: float = 0.5
    _leases: dict[int, LeaseState] = attrs.field(factory=dict)

    def add(self, lease_id: int, *, ttl: int, granted_at: float) -> LeaseState:
        """Start keeping ``lease_id`` alive; ``granted_at`` is when the request that granted (or last
        renewed) it was sent, so it is alive on the server until at least ``granted_at + ttl``."""
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
        return state

    def remove(self, lease_id: int) -> None:
        """Stop keeping ``lease_id`` alive (no error if it is not kept)."""
        self._leases.pop(lease_id, None)

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def __len__(self) -> int:
        return len(self._leases)

    def get(self, lease_id: int) -> LeaseState | None:
        """The state of ``lease_id``, if it is kept alive."""
        return self._leases.get(lease_id)

    def due(self, now: float) -> list[int]:
        """The leases to send a keep-alive for now; each is recorded as sent at ``now``."""
        sending = []
        for state in self._leases.values():
            if not state.lost and state.next_send_at <= now:
                state.outstanding.append(now)
                state.next_send_at = now + min(self.retry_interval, state.ttl / 3)
                sending.append(state.lease_id)
        return sending

    def on_response(self, lease_id: int, *, ttl: int) -> bool:
        """Feed one keep-alive response; returns True if it made the lease lost (TTL <= 0).

        A response for a lease that is not kept alive (removed meanwhile) is ignored.
        """
        state = self._leases.get(lease_id)
        if state is None or state.lost:
            return False
        sent_at = state.outstanding.popleft() if state.outstanding else state.last_ack_at
        if ttl <= 0:
            state.lost = True
            return True
        state.ttl = ttl
        state.last_ack_at = max(state.last_ack_at, sent_at)
        state.valid_until = max(state.valid_until, sent_at + ttl)
        if not state.outstanding:
            # All caught up: back to the steady cadence. With requests still in flight, the retry
            # cadence set by due() stands until they are answered.
            state.next_send_at = state.last_ack_at + ttl / 3
        return False

    def on_stream_down(self, now: float) -> None:
        """The stream broke: unanswered requests are void, and every lease is due on the next stream."""
        for state in self._leases.values():
            state.outstanding.clear()
            state.next_send_at = min(state.next_send_at, now)

    def expired(self, now: float) -> list[int]:
        """Leases not acknowledged within their TTL by ``now``; each is marked lost (once)."""
        gone = []
        for state in self._leases.values():
            if not state.lost and now >= state.valid_until:
                state.lost = True
                gone.append(state.lease_id)
        return gone

    def next_expiry(self) -> float:
        """The earliest time a lease that is not lost yet would expire."""
        return min((s.valid_until for s in self._leases.values() if not s.lost), default=math.inf)

    def next_wakeup(self) -> float:
        """The earliest time something is due: a keep-alive to send or an expiry to declare."""
        times = [min(s.next_send_at, s.valid_until) for s in self._leases.values() if not s.lost]
        return min(times, default=math.inf)
