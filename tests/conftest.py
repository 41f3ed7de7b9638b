"""Shared test set-up: an absolute deadline on every async test, and a client fixture.

The real etcd server comes from the ``etcdsync.testing`` pytest plugin (``etcd_endpoint``,
``etcd_prefix``, ``etcd_cluster``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio

import etcdsync

#: Every async test fails (instead of hanging CI) if it runs longer than this; a test can ask for
#: more with ``@pytest.mark.deadline(seconds)``.
DEFAULT_DEADLINE = 60.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deadline(seconds): absolute deadline for an async test")


def _with_deadline(fn: Callable[..., Awaitable[object]], seconds: float) -> Callable[..., Awaitable[object]]:
    @functools.wraps(fn)
    async def wrapper(*args: object, **kwargs: object) -> object:
        with trio.fail_after(seconds):
            return await fn(*args, **kwargs)

    return wrapper


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            marker = item.get_closest_marker("deadline")
            seconds = float(marker.args[0]) if marker else DEFAULT_DEADLINE
            item.obj = _with_deadline(item.obj, seconds)


@pytest.fixture
async def client(etcd_endpoint: str) -> AsyncIterator[etcdsync.client.Client]:
    async with etcdsync.open_client(etcd_endpoint) as c:
        yield c
