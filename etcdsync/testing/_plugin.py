"""pytest plugin: real-etcd fixtures, loaded automatically through the ``pytest11`` entry point ``etcdsync``.

Fixtures:

``etcd_endpoint`` (session)
    ``"127.a.b.c:2379"`` of one etcd shared by the whole session. It is started on first use, synchronously,
    because pytest-trio runs each test in its own ``trio.run``, and killed at the end of the session.
``etcd_prefix`` (function)
    A key prefix unique to the test, ``b"/t/<sanitized node id>/<random>/"``, so tests sharing the server
    never see each other's keys.
``etcd_cluster`` (function, async; needs pytest-trio)
    A fresh 3-member :class:`~etcdsync.testing.EtcdCluster`, for tests that kill or pause members. It is
    always torn down, also after a failing or cancelled test.

Without an etcd binary, tests that request these fixtures *fail* with an install hint; they are never skipped,
so a CI image without etcd cannot go green by running nothing.

Example:
    >>> import trio
    >>> async def test_put(etcd_endpoint: str, etcd_prefix: bytes) -> None:
    ...     with trio.fail_after(10):
    ...         ...  # open a client on etcd_endpoint and use keys under etcd_prefix
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest

from ._binary import find_etcd
from ._cluster import EtcdCluster, etcd_cluster
from ._errors import EtcdNotFoundError
from ._server import etcd_process

__all__ = ("etcd_cluster_fixture", "etcd_endpoint", "etcd_prefix", "etcd_binary")

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_NAME_IN_PREFIX = 100


@pytest.fixture(scope="session")
def etcd_binary() -> str:
    """The etcd binary the harness runs; fails (never skips) the requesting test when there is none."""
    try:
        return find_etcd()
    except EtcdNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def etcd_endpoint(etcd_binary: str) -> Iterator[str]:
    """Endpoint (``"host:port"``) of one etcd shared by the test session; combine it with ``etcd_prefix``."""
    with etcd_process() as process:
        yield process.endpoint


@pytest.fixture
def etcd_prefix(request: pytest.FixtureRequest) -> bytes:
    """A key prefix unique to this test: ``b"/t/<sanitized node id>/<8 hex digits>/"``."""
    name = _UNSAFE_KEY_CHARS.sub("_", request.node.nodeid).strip("_")[-_MAX_NAME_IN_PREFIX:]
    return b"/t/" + name.encode("ascii") + b"/" + secrets.token_hex(4).encode("ascii") + b"/"


@pytest.fixture(name="etcd_cluster")
async def etcd_cluster_fixture(etcd_binary: str) -> AsyncIterator[EtcdCluster]:
    """A fresh, healthy 3-member :class:`~etcdsync.testing.EtcdCluster` for this test alone."""
    async with etcd_cluster(size=3) as cluster:
        yield cluster
