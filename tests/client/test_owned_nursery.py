"""open_owned_nursery: what comes out of a context manager that hides a nursery (STYLE rule 22)."""

from __future__ import annotations

import pytest
import trio

import etcdsync
from etcdsync.client._nursery import open_owned_nursery


async def test_body_exception_comes_out_unwrapped() -> None:
    with pytest.raises(ValueError, match="mine"):
        async with open_owned_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise ValueError("mine")


async def test_body_exception_group_comes_out_as_is() -> None:
    """A group raised by the user's own nursery is the body's exception, not a background failure."""
    with pytest.raises(ExceptionGroup) as info:
        async with open_owned_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            async with trio.open_nursery() as mine:

                async def fail() -> None:
                    raise KeyError("inner")

                mine.start_soon(fail)
    assert isinstance(info.value.exceptions[0], KeyError)


async def test_one_background_etcd_error_comes_out_as_itself() -> None:
    async def fail() -> None:
        raise etcdsync.SessionExpiredError("gone")

    with pytest.raises(etcdsync.SessionExpiredError, match="gone"):
        async with open_owned_nursery() as nursery:
            nursery.start_soon(fail)
            await trio.sleep_forever()


async def test_unexpected_background_error_is_an_internal_error() -> None:
    async def fail() -> None:
        raise RuntimeError("bug")

    with pytest.raises(etcdsync.EtcdInternalError, match="RuntimeError: bug") as info:
        async with open_owned_nursery() as nursery:
            nursery.start_soon(fail)
            await trio.sleep_forever()
    assert isinstance(info.value.__cause__, BaseExceptionGroup)


async def test_outer_cancellation_passes_through() -> None:
    with trio.move_on_after(0.01) as scope:
        async with open_owned_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            await trio.sleep_forever()
    assert scope.cancelled_caught


async def test_normal_exit_cancels_background_tasks() -> None:
    stopped = trio.Event()

    async def background() -> None:
        try:
            await trio.sleep_forever()
        finally:
            stopped.set()

    async with open_owned_nursery() as nursery:
        nursery.start_soon(background)
        await trio.lowlevel.checkpoint()
    assert stopped.is_set()
