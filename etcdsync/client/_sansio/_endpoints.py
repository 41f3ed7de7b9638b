"""Endpoint parsing and the choice of which endpoint to try next — pure functions and state, no I/O.

The client keeps one preferred endpoint and sends everything there while it works. When a call on it
fails with a connection error (or the member says it has no leader), the picker marks it as failed at
time ``now`` and the next call prefers another one. Endpoints that failed recently go to the back of
the order until ``cooldown`` seconds have passed, so a dead member is not retried first on every
call, but is retried at all when it is the only hope.

Time is an argument (``now`` from ``trio.current_time()``), so tests drive it by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

__all__ = ["Endpoint", "EndpointPicker", "parse_endpoint", "parse_endpoints"]


@attrs.frozen
class Endpoint:
    """A parsed endpoint: ``host``, ``port`` and whether the URL asked for TLS (``https://``).

    ``tls`` is ``None`` for a bare ``host:port``, which takes the client's TLS setting.
    """

    host: str
    port: int
    tls: bool | None = None

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_SCHEMES = {"http://": False, "https://": True, "unix://": None}


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``"host:port"``, ``"http://host:port"`` or ``"https://host:port"`` (IPv6 as ``[::1]:2379``).

    Raises:
        TypeError: ``text`` is not a ``str``.
        ValueError: the text is not one of those forms.
    """
    if not isinstance(text, str):
        raise TypeError(f"an endpoint must be a str like '127.0.0.1:2379', not {type(text).__name__}")
    rest = text.strip()
    tls: bool | None = None
    for scheme, scheme_tls in _SCHEMES.items():
        if rest.startswith(scheme):
            if scheme_tls is None:
                raise ValueError(f"unix socket endpoints are not supported: {text!r}")
            tls, rest = scheme_tls, rest[len(scheme) :]
            break
    else:
        if "://" in rest:
            raise ValueError(f"endpoint {text!r}: the scheme must be http:// or https://")
    rest = rest.rstrip("/")
    if rest.startswith("["):
        host, sep, port_text = rest[1:].partition("]:")
        if not sep:
            raise ValueError(f"endpoint {text!r} must be host:port")
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"endpoint {text!r} must be host:port")
    if not host:
        raise ValueError(f"endpoint {text!r} has no host")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"endpoint {text!r} has no valid port")
    return Endpoint(host, int(port_text), tls)


def parse_endpoints(endpoints: str | Sequence[str]) -> tuple[Endpoint, ...]:
    """Parse one endpoint or several (a list, or one comma-separated string as in ``ETCDCTL_ENDPOINTS``).

    Raises:
        ValueError: no endpoint, a malformed one, or the same one twice.
    """
    if isinstance(endpoints, str):
        items = [e for e in endpoints.split(",") if e.strip()]
    else:
        items = list(endpoints)
    if not items:
        raise ValueError("at least one endpoint is needed")
    parsed = tuple(parse_endpoint(e) for e in items)
    addresses = [e.address for e in parsed]
    if len(set(addresses)) != len(addresses):
        raise ValueError(f"an endpoint is listed twice: {addresses}")
    return parsed


@attrs.define
class EndpointPicker:
    """Which endpoint to try, in which order.

    Example::

        picker = EndpointPicker(["a:1", "b:1", "c:1"], cooldown=5.0)
        picker.order(now=0.0)          # ["a:1", "b:1", "c:1"]
        picker.failed("a:1", now=0.0)  # a is skipped while it cools down
        picker.order(now=1.0)          # ["b:1", "c:1", "a:1"]
        picker.succeeded("b:1")        # b is preferred from now on
        picker.first()                 # "b:1": preferred and no failure on record

    Every call that answers goes through :meth:`first` and :meth:`succeeded`, so both are O(1) when
    nothing has failed; :meth:`order` is built only for a failover.
    """

    endpoints: list[str]
    cooldown: float = 5.0
    preferred: int = 0
    _failed_at: dict[str, float] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("at least one endpoint is needed")

    def order(self, now: float) -> list[str]:
        """All endpoints, preferred first; those that failed within ``cooldown`` last, oldest first."""
        n = len(self.endpoints)
        rotated = [self.endpoints[(self.preferred + i) % n] for i in range(n)]
        if not self._failed_at:
            return rotated
        fresh = [e for e in rotated if now - self._failed_at.get(e, -self.cooldown) >= self.cooldown]
        cooling = sorted((e for e in rotated if e not in fresh), key=lambda e: self._failed_at[e])
        return fresh + cooling

    def first(self) -> str | None:
        """The preferred endpoint if it has no failure on record, else ``None``.

        When it is not ``None`` it is ``order(now)[0]`` for any ``now``: the usual case, answered
        without building the order.
        """
        current = self.endpoints[self.preferred]
        return None if current in self._failed_at else current

    @property
    def current(self) -> str:
        """The preferred endpoint."""
        return self.endpoints[self.preferred]

    def failed(self, endpoint: str, now: float) -> None:
        """``endpoint`` failed at ``now``; if it was preferred, prefer the next one."""
        self._failed_at[endpoint] = now
        if endpoint == self.current:
            self.preferred = (self.preferred + 1) % len(self.endpoints)

    def succeeded(self, endpoint: str) -> None:
        """``endpoint`` answered: forget its failure and prefer it."""
        if self._failed_at:
            self._failed_at.pop(endpoint, None)
        if self.endpoints[self.preferred] != endpoint and endpoint in self.endpoints:
            self.preferred = self.endpoints.index(endpoint)

    def replace(self, endpoints: Sequence[str]) -> None:
        """Adopt a new endpoint list (after ``sync_endpoints``), keeping the preferred one if still listed."""
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        current = self.current
        self.endpoints = list(endpoints)
        self._failed_at = {e: t for e, t in self._failed_at.items() if e in self.endpoints}
        self.preferred = self.endpoints.index(current) if current in self.endpoints else 0
