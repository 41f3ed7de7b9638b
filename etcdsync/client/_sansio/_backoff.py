"""Jittered exponential backoff, as pure arithmetic.

Used between connection attempts to one endpoint (the h2 transport) and between retry rounds over
all endpoints (the client core). Nothing here sleeps or reads a clock: :func:`backoff_delay` maps an
attempt number and a uniform random draw onto a delay, and :class:`Backoff` only remembers how many
delays it has handed out. The caller decides when to sleep.

The schedule is gRPC's connection-backoff one (``doc/connection-backoff.md``)::

    base(n)  = min(initial * multiplier ** n, maximum)        n = 0, 1, 2, ...
    delay(n) = base(n) * uniform(1 - jitter, 1 + jitter)

Jitter is *proportional* so that many clients that lost the same server at the same moment spread
their reconnects out instead of arriving in lock-step; it is applied after the cap, so a delay can
exceed ``maximum`` by at most ``jitter * maximum``.
"""

from __future__ import annotations

import math
import random

import attrs

__all__ = ["Backoff", "backoff_delay"]


def backoff_delay(
    attempt: int, *, initial: float, maximum: float, multiplier: float, jitter: float, u: float
) -> float:
    """The delay before retry number ``attempt`` (0-based), given a uniform draw ``u`` in [0, 1).

    Returns a value in ``[base * (1 - jitter), base * (1 + jitter))`` where
    ``base = min(initial * multiplier ** attempt, maximum)``.

    Raises:
        ValueError: ``attempt`` is negative or ``u`` is outside [0, 1].
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, not {attempt}")
    if not 0.0 <= u <= 1.0:
        raise ValueError(f"u must be in [0, 1], not {u}")
    # Compare exponents instead of computing multiplier ** attempt first: after a long outage the
    # attempt count is large and the power would overflow a float.
    if multiplier > 1.0 and attempt * math.log(multiplier) >= math.log(maximum / initial):
        base = maximum
    else:
        base = min(initial * multiplier**attempt, maximum)
    return base * (1.0 - jitter + 2.0 * jitter * u)


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number > 0, not {value!r}")


@attrs.define(kw_only=True, eq=False)
class Backoff:
    """Hands out the delays of one retry sequence; :meth:`reset` starts a new one.

    Example::

        backoff = Backoff(initial=0.1, maximum=5.0, rng=random.Random(7))
        while True:
            try:
                return await connect()
            except OSError:
                await trio.sleep(backoff.next_delay())

    The defaults (0.1 s doubling by 1.6 up to 5 s, ±20 %) suit reconnecting to an etcd member: a
    restarted member is usually back within a second or two, and 5 s caps the time a recovered
    member waits to be noticed. Owns ``rng``; give each sequence its own instance.
    """

    initial: float = attrs.field(default=0.1, validator=_positive)
    maximum: float = attrs.field(default=5.0, validator=_positive)
    multiplier: float = attrs.field(default=1.6)
    jitter: float = attrs.field(default=0.2)
    rng: random.Random = attrs.field(factory=random.Random)
    _attempt: int = attrs.field(default=0, init=False)

    @multiplier.validator
    def _check_multiplier(self, _attribute: attrs.Attribute[float], value: float) -> None:
        if not (isinstance(value, int | float) and value >= 1.0 and math.isfinite(value)):
            raise ValueError(f"multiplier must be a finite number >= 1, not {value!r}")

    @jitter.validator
    def _check_jitter(self, _attribute: attrs.Attribute[float], value: float) -> None:
        if not (isinstance(value, int | float) and 0.0 <= value < 1.0):
            raise ValueError(f"jitter must be in [0, 1), not {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.maximum < self.initial:
            raise ValueError(f"maximum ({self.maximum}) must be >= initial ({self.initial})")

    @property
    def attempts(self) -> int:
        """How many delays this sequence has handed out since the last :meth:`reset`."""
        return self._attempt

    def next_delay(self) -> float:
        """The delay to wait before the next attempt; each call moves one step up the schedule."""
        delay = backoff_delay(
            self._attempt,
            initial=self.initial,
            maximum=self.maximum,
            multiplier=self.multiplier,
            jitter=self.jitter,
            u=self.rng.random(),
        )
        self._attempt += 1
        return delay

    def reset(self) -> None:
        """Start over from ``initial`` (call after a success)."""
        self._attempt = 0
