"""One shared way for a context manager to own a nursery without leaking ExceptionGroups (STYLE rule 22).

trio wraps whatever leaves a nursery in an ``ExceptionGroup``. Users of ``open_client``,
``client.watch`` or ``open_session`` should see the exception their own block raised, unwrapped, and
a failure of our background work as one typed error:

- an exception raised by the body propagates as itself (with its own ``__context__``);
- one background failure that is an :class:`~etcdsync.EtcdError` propagates as itself;
- anything else (a bug, several failures at once) becomes :class:`~etcdsync.EtcdInternalError`
  chained to the group;
- ``Cancelled`` and ``KeyboardInterrupt`` pass through untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import trio

from ._errors import EtcdError, EtcdInternalError

__all__ = ["open_owned_nursery"]


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _flatten(exc: BaseException) -> list[BaseException]:
    return list(_leaves(exc)) if isinstance(exc, BaseExceptionGroup) else [exc]


def _pick(group: BaseExceptionGroup[BaseException], body_error: BaseException | None) -> BaseException:
    """The one exception to raise instead of ``group``.

    Leaves are compared by identity: trio may re-derive group objects when a cancel scope splits out
    ``Cancelled``, but the leaf exceptions stay the same objects. A body that only ended because it
    was cancelled (typically: because a background task failed) does not count as failing.
    """
    body_leaves = {id(e) for e in _flatten(body_error)} if body_error is not None else set()
    body_failed = body_error is not None and not all(
        isinstance(e, trio.Cancelled) for e in _flatten(body_error)
    )
    leaves = list(_leaves(group))
    background = [e for e in leaves if id(e) not in body_leaves and not isinstance(e, trio.Cancelled)]
    if not background:
        if body_error is not None:
            return body_error
        # Only cancellations: re-raise one, so the cancel scope it belongs to catches it.
        return leaves[0]
    for exc in background:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            return exc
    if len(background) == 1 and isinstance(background[0], EtcdError) and not body_failed:
        return background[0]
    error = EtcdInternalError(
        "unexpected errors in etcdsync's background tasks; please report a bug: "
        + "; ".join(f"{type(e).__name__}: {e}" for e in background)
    )
    error.__cause__ = group
    return error


@asynccontextmanager
async def open_owned_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for background tasks whose lifetime is the ``async with`` block.

    When the block ends (normally or not), the background tasks are cancelled. Exceptions come out
    as described in the module docstring, never as an ``ExceptionGroup``.
    """
    body_error: BaseException | None = None
    saved_context: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            except BaseException as exc:
                body_error, saved_context = exc, exc.__context__
                raise
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        chosen = _pick(group, body_error)
        original_context = saved_context if chosen is body_error else chosen.__context__
        try:
            raise chosen  # the context is restored below; a cause would hide the user's own
        finally:
            chosen.__context__ = original_context
            del chosen, group
