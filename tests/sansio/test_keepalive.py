"""The keep-alive schedule, driven by a hand-held clock."""

from __future__ import annotations

import math

import pytest

from etcdsync.client._sansio._keepalive import KeepAliveSchedule


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
