"""Fixtures of the fault tests: a fresh fast cluster, a seeded RNG, and the no-leftover-namespace check."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Iterator

import pytest

from etcdsync.testing import EtcdCluster, etcd_cluster
from etcdsync.testing.faults import leftover_namespaces


@pytest.fixture
async def cluster() -> AsyncIterator[EtcdCluster]:
    """A fresh 3-member cluster (heartbeat 50 ms, election timeout 500 ms) on tmpfs, for this test alone."""
    async with etcd_cluster(3, unsafe_no_fsync=True) as c:
        yield c


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random generator whose seed is printed (set ``ETCDSYNC_FAULT_SEED`` to replay a run)."""
    seed = int(os.environ.get("ETCDSYNC_FAULT_SEED") or random.SystemRandom().randrange(1 << 32))
    request.node.user_properties.append(("seed", seed))
    print(f"[faults] {request.node.name}: seed {seed}")
    return random.Random(seed)


@pytest.fixture(scope="session", autouse=True)
def no_leftover_namespaces() -> Iterator[None]:
    """After the tier, no network namespace made by these tests may be left."""
    yield
    left = leftover_namespaces()
    assert not left, f"network namespaces left behind: {left}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The soak (marker ``soak``) runs only when asked for with ``-m soak`` (``make soak``): a plain
    ``pytest tests/faults`` is the fast tier. Deselected, not skipped, exactly as ``-m "not soak"`` would."""
    if "soak" in (config.option.markexpr or ""):
        return
    soak = [item for item in items if item.get_closest_marker("soak") is not None]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if item.get_closest_marker("soak") is None]
