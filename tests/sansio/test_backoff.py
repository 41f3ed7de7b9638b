"""etcdsync.client._sansio._backoff: the schedule, its bounds and its jitter (no clock, no sleeping)."""

from __future__ import annotations

import itertools
import random

import pytest

from etcdsync.client._sansio._backoff import Backoff, backoff_delay

PARAMS = {"initial": 0.1, "maximum": 5.0, "multiplier": 1.6, "jitter": 0.2}


def test_schedule_without_jitter_grows_then_caps() -> None:
    delays = [backoff_delay(n, **{**PARAMS, "jitter": 0.0}, u=0.5) for n in range(12)]
    assert delays[:4] == pytest.approx([0.1, 0.16, 0.256, 0.4096])
    assert all(a < b for a, b in itertools.pairwise(delays[:9]))
    assert delays[9:] == [5.0, 5.0, 5.0]


@pytest.mark.parametrize("attempt", [0, 1, 5, 9, 50])
def test_jitter_bounds(attempt: int) -> None:
    base = min(0.1 * 1.6**attempt, 5.0)
    assert backoff_delay(attempt, **PARAMS, u=0.0) == pytest.approx(base * 0.8)
    assert backoff_delay(attempt, **PARAMS, u=0.5) == pytest.approx(base)
    assert backoff_delay(attempt, **PARAMS, u=1.0) == pytest.approx(base * 1.2)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert backoff_delay(10**6, **PARAMS, u=0.5) == 5.0
    assert backoff_delay(10**6, **{**PARAMS, "multiplier": 1.0}, u=0.5) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("attempt", "u", "match"), [(-1, 0.5, "attempt"), (0, 1.5, "u must"), (0, -0.1, "u must")]
)
def test_delay_refuses_bad_input(attempt: int, u: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        backoff_delay(attempt, **PARAMS, u=u)


def test_backoff_with_seeded_rng_is_reproducible_and_within_range() -> None:
    first = Backoff(rng=random.Random(42))
    second = Backoff(rng=random.Random(42))
    a = [first.next_delay() for _ in range(30)]
    assert a == [second.next_delay() for _ in range(30)]
    assert first.attempts == 30
    for n, delay in enumerate(a):
        base = min(0.1 * 1.6**n, 5.0)
        assert base * 0.8 <= delay <= base * 1.2
    # Jitter actually varies.
    assert len({round(d / min(0.1 * 1.6**n, 5.0), 6) for n, d in enumerate(a)}) > 20


def test_reset_starts_over() -> None:
    backoff = Backoff(initial=1.0, maximum=10.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(3)] == pytest.approx([1.0, 1.6, 2.56])
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == 1.0


def test_keyword_construction_as_the_client_uses_it() -> None:
    backoff = Backoff(initial=0.025, maximum=1.0, rng=random.Random(1))
    assert 0.02 <= backoff.next_delay() <= 0.03


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial": 0}, "initial must be a finite number > 0"),
        ({"initial": -1.0}, "initial"),
        ({"maximum": float("inf")}, "maximum must be a finite number > 0"),
        ({"initial": 2.0, "maximum": 1.0}, r"maximum \(1.0\) must be >= initial \(2.0\)"),
        ({"multiplier": 0.5}, "multiplier must be a finite number >= 1"),
        ({"multiplier": float("nan")}, "multiplier"),
        ({"jitter": 1.0}, r"jitter must be in \[0, 1\)"),
        ({"jitter": -0.1}, "jitter"),
        ({"initial": "1"}, "initial"),
    ],
)
def test_invalid_parameters(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Backoff(**kwargs)  # type: ignore[arg-type]
