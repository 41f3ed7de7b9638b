"""Session: a lease kept alive in the background, and the lifetime of everything held through it.

Locks, leaderships and semaphore permits are keys attached to the session's lease. While the
session lives they stay; when the lease is lost (it expired, was revoked, or could not be confirmed
alive within its TTL), they are gone on the server, and :meth:`Session.wait_expired` returns so that
work done under them can be cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Final, final

import attrs
import trio

from .client import Client, EtcdError, LeaseKeepAlive, LeaseNotFoundError, SessionExpiredError

__all__ = ["Session", "SessionStatistics", "open_session"]

logger = logging.getLogger(__name__)

_PRIVATE: Final = object()


@attrs.frozen(kw_only=True)
class SessionStatistics:
    """A snapshot of a session (from :meth:`Session.statistics`).

    Attributes:
        lease_id: the session's lease.
        ttl: the lease's TTL as last granted by the server.
        expired: whether the lease counts as lost.
        orphaned: whether keep-alives were stopped with :meth:`Session.orphan`.
        keepalives_acknowledged: keep-alives the server acknowledged.
        valid_for: seconds the lease is known to live on from now (0 once expired).
    """

    lease_id: int
    ttl: int
    expired: bool
    orphaned: bool
    keepalives_acknowledged: int
    valid_for: float


@final
class Session:
    """A lease kept alive by a background task; open it with :func:`open_session`.

    Example::

        async with etcdsync.open_session(client, ttl=10) as session:
            async with etcdsync.Mutex(session, "/locks/report"):
                ...  # cancelled if the session is lost, then SessionExpiredError
    """

    def __init__(self, _private: object, client: Client, keepalive: LeaseKeepAlive) -> None:
        if _private is not _PRIVATE:
            raise TypeError("use `async with etcdsync.open_session(client) as session:` to make a Session")
        self._client = client
        self._keepalive = keepalive
        self._orphaned = False

    @property
    def client(self) -> Client:
        """The client the session lives on."""
        return self._client

    @property
    def lease_id(self) -> int:
        """The session's lease ID; keys written with ``lease=session.lease_id`` go with the session."""
        return self._keepalive.lease_id

    @property
    def ttl(self) -> int:
        """The lease's TTL in seconds, as last granted by the server."""
        return self._keepalive.ttl

    @property
    def expired(self) -> bool:
        """Whether the lease counts as lost (final). An orphaned session counts as expired too."""
        return self._keepalive.lost

    async def wait_expired(self) -> None:
        """Wait until the session expires (or is orphaned). A checkpoint."""
        await self._keepalive.wait_lost()

    def cancel_on_expiry(self) -> AbstractContextManager[trio.CancelScope]:
        """A cancel scope that is cancelled when the session expires (at once if it has).

        The recipes run their ``async with`` bodies in one; use it for your own work too::

            with session.cancel_on_expiry() as scope:
                await work()
            if scope.cancelled_caught and session.expired:
                raise session.expired_error()
        """
        return self._keepalive.cancel_on_loss()

    async def orphan(self) -> None:
        """Stop keeping the lease alive without revoking it; it expires after its TTL.

        What the session held stays on the server until then, so a restarted process can resume it
        with ``open_session(client, lease_id=...)``. The session counts as expired from now on, and
        work under :meth:`cancel_on_expiry` is cancelled. A checkpoint.
        """
        self._orphaned = True
        self._keepalive.stop("the session was orphaned")
        await trio.lowlevel.checkpoint()

    def expired_error(self) -> SessionExpiredError:
        """A :class:`~etcdsync.SessionExpiredError` that says why this session ended."""
        return SessionExpiredError(f"session {self.lease_id:x} expired: {self._keepalive.reason}")

    def statistics(self) -> SessionStatistics:
        """A snapshot of the session (no I/O)."""
        return SessionStatistics(
            lease_id=self.lease_id,
            ttl=self.ttl,
            expired=self.expired,
            orphaned=self._orphaned,
            keepalives_acknowledged=self._keepalive.keepalives_acknowledged,
            valid_for=0.0 if self.expired else max(0.0, self._keepalive.valid_until - trio.current_time()),
        )

    def __repr__(self) -> str:
        state = "expired" if self.expired else f"alive, ttl {self.ttl}"
        return f"<etcdsync.Session at {id(self):#x}, lease {self.lease_id:x}, {state}>"


@asynccontextmanager
async def open_session(
    client: Client, *, ttl: int = 60, lease_id: int | None = None, revoke_timeout: float | None = None
) -> AsyncIterator[Session]:
    """Open a session: grant a lease of ``ttl`` seconds (or adopt ``lease_id``) and keep it alive.

    Args:
        client: the client to use; its one LeaseKeepAlive stream carries every session's keep-alives.
        ttl: the lease TTL in seconds. What the session holds survives a client that stops for less
            than this, and is released at most this long after it dies. Ignored with ``lease_id``.
        lease_id: resume a session whose lease still lives (e.g. after a restart); raises
            :class:`~etcdsync.SessionExpiredError` if it does not.
        revoke_timeout: how long leaving the block may spend revoking the lease (shielded from
            cancellation); defaults to the TTL, after which the lease expires anyway. ``math.inf``
            waits for the revoke.

    Entering grants the lease (a checkpoint); leaving stops the keep-alives and revokes the lease,
    unless :meth:`Session.orphan` was called.

    Raises:
        ValueError: ``ttl`` not in 1..9,000,000,000, or a bad ``revoke_timeout``.
        SessionExpiredError: ``lease_id`` names a lease that does not exist any more.
    """
    if revoke_timeout is not None and not revoke_timeout > 0:
        raise ValueError("revoke_timeout must be > 0")
    if lease_id is None:
        sent_at = trio.current_time()
        grant = await client.lease_grant(ttl)  # validates ttl before sending
        lease_id = grant.id
        keepalive_cm = client.keep_alive(lease_id, ttl=grant.ttl, granted_at=sent_at)
    else:
        keepalive_cm = client.keep_alive(lease_id)
    session: Session | None = None
    try:
        async with keepalive_cm as keepalive:
            session = Session(_PRIVATE, client, keepalive)
            yield session
    except LeaseNotFoundError as exc:
        if session is not None:
            raise
        raise SessionExpiredError(
            f"lease {lease_id:x} does not exist any more; cannot resume its session"
        ) from exc
    finally:
        if session is not None and not session._orphaned:
            await _revoke(client, lease_id, session.ttl if revoke_timeout is None else revoke_timeout)


async def _revoke(client: Client, lease_id: int, bound: float) -> None:
    with trio.move_on_after(bound, shield=True) as scope:
        try:
            await client.lease_revoke(lease_id)
        except LeaseNotFoundError:
            pass  # already expired or revoked: what the revoke is for holds
        except (EtcdError, trio.ClosedResourceError) as exc:
            # Not silent: the lease expires by itself within its TTL, the same outcome later, and
            # raising here would hide the body's own exception.
            logger.warning(
                "could not revoke lease %x of a closing session (%r); it expires by its TTL", lease_id, exc
            )
    if scope.cancelled_caught:
        logger.warning(
            "revoking lease %x of a closing session took over %.1f s; it expires by its TTL",
            lease_id,
            bound,
        )
