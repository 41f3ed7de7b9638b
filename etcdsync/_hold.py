"""The ``async with`` protocol of everything held through a session: Mutex, RWMutex locks, Semaphore.

Entering acquires, then runs the body in a scope that is cancelled when the session expires. Leaving
releases (shielded, bounded by ``_bound()``), and raises :class:`~etcdsync.SessionExpiredError` if
what was held was lost while the body ran — unless the body raised an exception of its own, which
then propagates unchanged.
"""

from __future__ import annotations

import abc
import logging
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Self

import trio

from ._session import Session
from .client import LockReleasedError, OutcomeUnknownError, SessionExpiredError

__all__ = ["SessionHold"]

logger = logging.getLogger(__name__)


class SessionHold(abc.ABC):
    """Base of the recipes that hold a key through a session while an ``async with`` body runs."""

    _session: Session
    _key: bytes
    _cleanup_timeout: float | None
    _scope_cm: AbstractContextManager[trio.CancelScope] | None = None

    @abc.abstractmethod
    async def acquire(self) -> None:
        """Wait until it is held."""

    @abc.abstractmethod
    async def release(self) -> None:
        """Release it, fenced on what was acquired."""

    @abc.abstractmethod
    def _reset(self) -> None:
        """Forget local state (after a release, or when giving up on one)."""

    def _bound(self) -> float:
        """How long shielded cleanup may take: the session's TTL unless configured."""
        return self._session.ttl if self._cleanup_timeout is None else self._cleanup_timeout

    def _lost(self, what: str) -> SessionExpiredError:
        """The error for "``what`` happened to our key": the session's own if it expired."""
        session = self._session
        return session.expired_error() if session.expired else SessionExpiredError(f"{self._key!r} {what}")

    async def __aenter__(self) -> Self:
        """Acquire (a checkpoint); the body then runs in a scope cancelled when the session expires."""
        await self.acquire()
        cm = self._session.cancel_on_expiry()
        cm.__enter__()
        self._scope_cm = cm
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        """Release (shielded and bounded); raise :class:`~etcdsync.SessionExpiredError` if it was lost
        while the body ran. A checkpoint."""
        cm = self._scope_cm
        self._scope_cm = None
        assert cm is not None
        swallowed = bool(cm.__exit__(exc_type, exc, tb))
        lost = self._session.expired
        try:
            with trio.move_on_after(self._bound(), shield=True):
                await self.release()
        except (LockReleasedError, SessionExpiredError):
            lost = True
        except OutcomeUnknownError as err:
            # The fenced delete may or may not have happened; either way the key goes with the lease.
            logger.warning("releasing %r: %s; the key goes with the session's lease", self._key, err)
        finally:
            self._reset()
        if lost and (swallowed or exc is None):
            raise self._lost("was lost while held")
        return swallowed
