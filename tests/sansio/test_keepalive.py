"""The keep-alive schedule, driven by a hand-held clock."""

from __future__ import annotations

import math
import random

import pytest

from etcdsync.client._sansio._keepalive import KeepAliveSchedule, LeaseState


def test_steady_cadence_every_third_of_ttl() -> None:
    s = KeepAliveSchedule()
    s.add(7, ttl=9, granted_at=0.0)
    assert s.next_wakeup() == 3.0
    assert s.due(2.9) == []
    assert s.due(3.0) == [7]
    assert not s.on_response(7, ttl=9)
    state = s.get(7)
    assert state is not None
    assert state.valid_until == 12.0  # send time + TTL, not receive time
    assert s.next_wakeup() == 6.0
    assert s.due(6.0) == [7]


def test_expiry_counts_from_send_time_of_last_acknowledged_request() -> None:
    s = KeepAliveSchedule(retry_interval=0.5)
    s.add(1, ttl=6, granted_at=10.0)
    assert s.due(12.0) == [1]
    # Answered late: the lease is valid for TTL from when the request was sent.
    s.on_response(1, ttl=6)
    assert s.get(1).valid_until == 18.0  # type: ignore[union-attr]
    # Nothing answered afterwards: keep-alives go out every retry_interval, the lease is lost at 18.
    assert s.due(14.0) == [1]
    assert s.due(14.2) == []
    assert s.due(14.5) == [1]
    assert s.expired(17.99) == []
    assert s.expired(18.0) == [1]
    assert s.expired(19.0) == []  # reported once
    assert s.due(20.0) == []  # a lost lease is not kept alive any more
    assert s.next_wakeup() == math.inf


def test_ttl_zero_answer_means_lost() -> None:
    s = KeepAliveSchedule()
    s.add(1, ttl=6, granted_at=0.0)
    s.due(2.0)
    assert s.on_response(1, ttl=0) is True
    assert s.get(1).lost  # type: ignore[union-attr]
    assert s.on_response(1, ttl=6) is False  # nothing revives it
    assert s.expired(100.0) == []


def test_responses_match_requests_in_order() -> None:
    s = KeepAliveSchedule(retry_interval=0.5)
    s.add(1, ttl=30, granted_at=0.0)
    assert s.due(10.0) == [1]
    assert s.due(10.5) == [1]
    s.on_response(1, ttl=30)  # answers the request sent at 10.0
    assert s.get(1).valid_until == 40.0  # type: ignore[union-attr]
    assert s.get(1).next_send_at == 11.0  # still one in flight: retry cadence  # type: ignore[union-attr]
    s.on_response(1, ttl=30)  # answers the one sent at 10.5
    assert s.get(1).valid_until == 40.5  # type: ignore[union-attr]
    assert s.get(1).next_send_at == 20.5  # type: ignore[union-attr]


def test_stream_down_forgets_outstanding_and_resends() -> None:
    s = KeepAliveSchedule()
    s.add(1, ttl=9, granted_at=0.0)
    s.add(2, ttl=30, granted_at=0.0)
    assert s.due(3.0) == [1]
    s.on_stream_down(4.0)
    assert s.get(1).outstanding == collections_deque()  # type: ignore[union-attr]
    assert sorted(s.due(4.0)) == [1, 2]
    # An answer now matches the request sent on the new stream.
    s.on_response(1, ttl=9)
    assert s.get(1).valid_until == 13.0  # type: ignore[union-attr]


def collections_deque() -> object:
    import collections

    return collections.deque()


def test_unknown_or_removed_lease_answers_are_ignored() -> None:
    s = KeepAliveSchedule()
    assert s.on_response(99, ttl=5) is False
    s.add(1, ttl=9, granted_at=0.0)
    assert 1 in s and len(s) == 1
    s.remove(1)
    s.remove(1)
    assert 1 not in s and len(s) == 0
    assert s.on_response(1, ttl=9) is False


def test_add_validates() -> None:
    s = KeepAliveSchedule()
    s.add(1, ttl=9, granted_at=0.0)
    with pytest.raises(ValueError, match="already kept alive"):
        s.add(1, ttl=9, granted_at=0.0)
    with pytest.raises(ValueError, match="^ttl must be > 0$"):
        s.add(2, ttl=0, granted_at=0.0)


def test_response_without_outstanding_request_uses_last_ack() -> None:
    s = KeepAliveSchedule()
    s.add(1, ttl=9, granted_at=5.0)
    s.on_response(1, ttl=9)  # e.g. an answer to a request of a previous stream
    assert s.get(1).valid_until == 14.0  # type: ignore[union-attr]


def test_next_expiry() -> None:
    s = KeepAliveSchedule()
    assert s.next_expiry() == math.inf
    s.add(1, ttl=9, granted_at=0.0)
    s.add(2, ttl=30, granted_at=1.0)
    assert s.next_expiry() == 9.0
    s.expired(9.0)
    assert s.next_expiry() == 31.0


def test_next_send_and_next_wakeup() -> None:
    s = KeepAliveSchedule(retry_interval=5.0, coalesce=0.0)
    assert s.next_send() == math.inf
    assert s.next_wakeup() == math.inf
    s.add(1, ttl=30, granted_at=0.0)
    s.add(2, ttl=3, granted_at=0.0)
    assert s.next_send() == 1.0
    assert s.due(1.0) == [2]  # retry after min(retry_interval, ttl/3) = 1.0
    assert s.next_send() == 2.0
    # No answer: the lease expires at 3.0, before lease 1's first keep-alive at 10.0.
    assert s.due(2.0) == [2]
    assert s.next_send() == 3.0
    assert s.expired(3.0) == [2]
    assert s.next_send() == 10.0
    assert s.next_wakeup() == 10.0


def test_coalesce_sends_what_is_due_soon_early_never_late() -> None:
    s = KeepAliveSchedule(coalesce=0.05)
    s.add(1, ttl=9, granted_at=0.0)  # due at 3.0
    s.add(2, ttl=9, granted_at=0.04)  # due at 3.04: within the window, sent early
    s.add(3, ttl=9, granted_at=0.06)  # due at 3.06: not within it
    assert s.next_send() == 3.0
    assert s.due(3.0) == [1, 2]
    assert s.next_send() == 3.06
    for lease_id in (1, 2):
        s.on_response(lease_id, ttl=9)
        state = s.get(lease_id)
        assert state is not None
        # Sent early at 3.0, so valid (and next due) counting from 3.0: early is safe.
        assert (state.valid_until, state.next_send_at) == (12.0, 6.0)
    assert s.due(3.06) == [3]
    s.on_response(3, ttl=9)
    # Once batched, 1 and 2 stay together; 3 is more than the window behind them.
    assert s.due(6.0) == [1, 2]
    assert s.due(6.0) == []
    assert s.due(6.06) == [3]


def test_answer_with_a_shorter_ttl_brings_the_next_send_forward() -> None:
    s = KeepAliveSchedule(coalesce=0.0)
    s.add(1, ttl=30, granted_at=0.0)
    s.add(2, ttl=30, granted_at=1.0)
    assert s.due(10.0) == [1]
    s.on_response(1, ttl=30)
    assert s.next_send() == 11.0  # lease 2
    # An answer without an outstanding request, with a shorter TTL: due at 10.0 + 3 / 3 = 11.0 ...
    s.on_response(1, ttl=6)
    assert s.get(1).next_send_at == 12.0  # type: ignore[union-attr]
    s.on_response(1, ttl=3)
    assert s.get(1).next_send_at == 11.0  # type: ignore[union-attr]
    s.on_response(1, ttl=1)
    assert s.next_send() == pytest.approx(10 + 1 / 3)
    assert s.due(10.5) == [1]


def test_removed_and_lost_leases_leave_no_work_behind() -> None:
    s = KeepAliveSchedule()
    for lease_id in range(1, 1001):
        s.add(lease_id, ttl=3600, granted_at=0.0)
    for lease_id in range(1, 1000):
        s.remove(lease_id)
    assert len(s) == 1
    # Stale heap entries are compacted away rather than kept until they surface.
    assert len(s._sends) <= 2 * len(s) + 64 and len(s._expiries) <= 2 * len(s) + 64
    assert s.next_send() == 1200.0
    assert s.due(1200.0) == [1000]
    assert s.expired(3600.0) == [1000]
    assert s.next_wakeup() == math.inf
    assert s.due(1e9) == []


def test_stream_down_makes_every_live_lease_due_once() -> None:
    s = KeepAliveSchedule(coalesce=0.0)
    for lease_id in range(1, 6):
        s.add(lease_id, ttl=30, granted_at=float(lease_id))
    assert s.due(11.0) == [1]
    assert s.on_response(2, ttl=0) is True  # lost: not due again
    s.on_stream_down(12.0)
    assert sorted(s.due(12.0)) == [1, 3, 4, 5]
    assert s.due(12.0) == []
    assert s.next_send() == 12.5  # retries while the new stream's answers are missing


# -- the heaps against the plain O(n) model they replace ---------------------------------------------------


class ReferenceSchedule:
    """The straightforward O(n) schedule: every query scans every lease. The specification."""

    def __init__(self, retry_interval: float, coalesce: float) -> None:
        self.retry_interval = retry_interval
        self.coalesce = coalesce
        self.leases: dict[int, LeaseState] = {}

    def add(self, lease_id: int, *, ttl: int, granted_at: float) -> None:
        if lease_id in self.leases:
            raise ValueError(f"lease {lease_id:x} is already kept alive")
        self.leases[lease_id] = LeaseState(
            lease_id=lease_id,
            ttl=ttl,
            next_send_at=granted_at + ttl / 3,
            valid_until=granted_at + ttl,
            last_ack_at=granted_at,
        )

    def remove(self, lease_id: int) -> None:
        self.leases.pop(lease_id, None)

    def due(self, now: float) -> list[int]:
        sending = []
        for state in self.leases.values():
            if not state.lost and state.next_send_at <= now + self.coalesce:
                state.outstanding.append(now)
                state.next_send_at = now + min(self.retry_interval, state.ttl / 3)
                sending.append(state.lease_id)
        return sending

    def on_response(self, lease_id: int, *, ttl: int) -> bool:
        state = self.leases.get(lease_id)
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
            state.next_send_at = state.last_ack_at + ttl / 3
        return False

    def on_stream_down(self, now: float) -> None:
        for state in self.leases.values():
            state.outstanding.clear()
            state.next_send_at = min(state.next_send_at, now)

    def expired(self, now: float) -> list[int]:
        gone = []
        for state in self.leases.values():
            if not state.lost and now >= state.valid_until:
                state.lost = True
                gone.append(state.lease_id)
        return gone

    def next_send(self) -> float:
        return min((s.next_send_at for s in self.leases.values() if not s.lost), default=math.inf)

    def next_expiry(self) -> float:
        return min((s.valid_until for s in self.leases.values() if not s.lost), default=math.inf)


def snapshot(state: LeaseState | None) -> object:
    if state is None:
        return None
    return (
        state.lease_id,
        state.ttl,
        state.next_send_at,
        state.valid_until,
        state.last_ack_at,
        state.lost,
        list(state.outstanding),
    )


@pytest.mark.parametrize("seed", range(40))
def test_heap_schedule_matches_the_reference_model(seed: int) -> None:
    rng = random.Random(seed)
    retry = rng.choice([0.25, 0.5, 2.0])
    coalesce = rng.choice([0.0, 0.05, 0.25])
    s = KeepAliveSchedule(retry_interval=retry, coalesce=coalesce)
    ref = ReferenceSchedule(retry, coalesce)
    ids = range(1, rng.choice([4, 12, 40]))
    ttls = [1, 2, 3, 5, 9, 30]
    now = 0.0
    for _ in range(600):
        # Time moves on: not at all, a little, or exactly to (or just before) the next event.
        step = rng.random()
        if step < 0.3:
            now += rng.choice([0.0, 0.125, 0.5, 1.0, 4.0])
        elif step < 0.45:
            target = rng.choice([ref.next_send(), ref.next_expiry()])
            if target < math.inf:
                now = max(now, target - rng.choice([0.0, 0.0, coalesce, coalesce + 0.01]))
        op = rng.random()
        lease_id = rng.choice(ids)
        if op < 0.2:
            ttl = rng.choice(ttls)
            granted_at = now - rng.choice([0.0, 0.25, 1.0])
            if lease_id in ref.leases:
                with pytest.raises(ValueError, match="already kept alive"):
                    s.add(lease_id, ttl=ttl, granted_at=granted_at)
            else:
                ref.add(lease_id, ttl=ttl, granted_at=granted_at)
                s.add(lease_id, ttl=ttl, granted_at=granted_at)
        elif op < 0.28:
            ref.remove(lease_id)
            s.remove(lease_id)
        elif op < 0.5:
            assert sorted(s.due(now)) == sorted(ref.due(now))
        elif op < 0.75:
            ttl = 0 if rng.random() < 0.03 else rng.choice(ttls)
            assert s.on_response(lease_id, ttl=ttl) == ref.on_response(lease_id, ttl=ttl)
        elif op < 0.78:
            s.on_stream_down(now)
            ref.on_stream_down(now)
        elif op < 0.9:
            assert sorted(s.expired(now)) == sorted(ref.expired(now))
        # Queries (which also do the heaps' lazy re-keying) are interleaved at random too.
        if rng.random() < 0.5:
            assert s.next_send() == ref.next_send()
            assert s.next_expiry() == ref.next_expiry()
            assert s.next_wakeup() == min(ref.next_send(), ref.next_expiry())
        assert len(s) == len(ref.leases)
        assert lease_id in s if lease_id in ref.leases else lease_id not in s
        for i in ids:
            assert snapshot(s.get(i)) == snapshot(ref.leases.get(i))
