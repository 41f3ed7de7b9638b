"""``etcdsync lock``, ``semaphore`` and ``elect``: take something through a session and hold it.

Each waits for what it asked for (interrupting the wait exits 128 + the signal, leaving no key
behind), then either prints what it holds and holds it until SIGINT/SIGTERM (exit 0), or runs a
command under it (:mod:`._supervise`). Losing it exits :data:`~._runtime.EXIT_LOST`. Whatever
happens, it is released on the way out (a fenced delete, shielded and bounded by the TTL; the lease
is then revoked).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import attrs
import trio

from .._election import Election
from .._mutex import Mutex
from .._semaphore import Semaphore
from .._session import Session, open_session
from ..client import EtcdError, LockReleasedError, SessionExpiredError
from ._connect import ConnectOptions, connect, describe_error
from ._runtime import EXIT_LOST, EXIT_OK, Interrupts, out, out_bytes, warn
from ._supervise import Holding, hold_until_interrupted, run_supervised

__all__ = ["HoldOptions", "run_elect", "run_listen", "run_lock", "run_semaphore"]


@attrs.frozen(kw_only=True)
class HoldOptions:
    """What ``lock`` and ``semaphore`` were asked to do."""

    connect: ConnectOptions
    name: bytes
    ttl: int
    command: tuple[str, ...]
    kill_grace: float


@asynccontextmanager
async def _session(options: ConnectOptions, ttl: int) -> AsyncIterator[Session]:
    async with connect(options) as client, open_session(client, ttl=ttl) as session:
        yield session


async def _release(
    release: Callable[[], Awaitable[object]], session: Session, what: str, command: str
) -> None:
    """Release on the way out: shielded, bounded by the TTL; a loss was already reported."""
    with trio.move_on_after(session.ttl, shield=True):
        try:
            await release()
        except (LockReleasedError, SessionExpiredError):
            pass  # lost already, and reported as such; nothing left to release
        except EtcdError as exc:
            warn(command, f"could not release the {what} ({describe_error(exc)}); it goes with the lease")


async def _take(
    session: Session,
    interrupts: Interrupts,
    *,
    command: str,
    what: str,
    acquire: Callable[[], Awaitable[object]],
    release: Callable[[], Awaitable[object]],
    use: Callable[[], Awaitable[int]],
) -> int:
    """Acquire, ``use``, release: the life of ``lock``, ``semaphore`` and ``elect``.

    A signal while waiting exits 128 + N (the acquisition cleans up its key); the session's loss
    while waiting exits :data:`EXIT_LOST`; the release is shielded and bounded.
    """
    with interrupts.cancellable():
        try:
            await acquire()
        except SessionExpiredError as exc:
            warn(command, f"lost the session while waiting for the {what}: {exc}")
            return EXIT_LOST
        try:
            return await use()
        finally:
            await _release(release, session, what, command)
    return interrupts.exit_status()


async def _hold_or_run(
    holding: Holding, options: HoldOptions, interrupts: Interrupts, command: str, extra_env: dict[str, str]
) -> int:
    """Run the COMMAND under ``holding``, or print key and token and hold until stopped."""
    if options.command:
        return await run_supervised(
            options.command,
            holding,
            interrupts=interrupts,
            kill_grace=options.kill_grace,
            command=command,
            extra_env=extra_env,
        )
    out_bytes(holding.key)
    out(str(holding.token))
    return await hold_until_interrupted(holding, interrupts, command)


async def run_lock(options: HoldOptions, interrupts: Interrupts) -> int:
    """``etcdsync lock NAME [-- COMMAND...]``."""
    async with _session(options.connect, options.ttl) as session:
        mutex = Mutex(session, options.name)

        async def use() -> int:
            holding = Holding(what="lock", key=mutex.key, token=mutex.fencing_token, session=session)
            # etcdctl lock's names too, so that scripts written for it keep working.
            compat = {"ETCD_LOCK_KEY": os.fsdecode(mutex.key), "ETCD_LOCK_REV": str(mutex.fencing_token)}
            return await _hold_or_run(holding, options, interrupts, "lock", compat)

        return await _take(
            session,
            interrupts,
            command="lock",
            what="lock",
            acquire=mutex.acquire,
            release=mutex.release,
            use=use,
        )


async def run_semaphore(options: HoldOptions, limit: int, interrupts: Interrupts) -> int:
    """``etcdsync semaphore NAME --limit N [-- COMMAND...]``."""
    async with _session(options.connect, options.ttl) as session:
        semaphore = Semaphore(session, options.name, limit)

        async def use() -> int:
            holding = Holding(
                what="permit", key=semaphore.key, token=semaphore.fencing_token, session=session
            )
            return await _hold_or_run(holding, options, interrupts, "semaphore", {})

        return await _take(
            session,
            interrupts,
            command="semaphore",
            what="permit",
            acquire=semaphore.acquire,
            release=semaphore.release,
            use=use,
        )


async def run_elect(
    connect_options: ConnectOptions, name: bytes, proposal: bytes, ttl: int, interrupts: Interrupts
) -> int:
    """``etcdsync elect NAME PROPOSAL``: campaign, print key and value once elected, lead until stopped."""
    async with _session(connect_options, ttl) as session:
        election = Election(session, name)

        async def use() -> int:
            out_bytes(election.key)
            out_bytes(proposal)
            holding = Holding(what="leadership", key=election.key, token=election.revision, session=session)
            return await hold_until_interrupted(holding, interrupts, "elect")

        return await _take(
            session,
            interrupts,
            command="elect",
            what="leadership",
            acquire=lambda: election.campaign(proposal),
            release=election.resign,
            use=use,
        )


#: What ``elect --listen`` prints when nobody leads: an empty key line and an empty value line, so
#: that readers of key/value line pairs stay in step (a real key is never empty).
VACANCY: Sequence[bytes] = (b"", b"")


async def run_listen(connect_options: ConnectOptions, name: bytes, ttl: int, interrupts: Interrupts) -> int:
    """``etcdsync elect --listen NAME``: print each leader's key and value, and vacancies, until stopped."""
    interrupts.status_on_signal = EXIT_OK
    async with _session(connect_options, ttl) as session:
        with interrupts.cancellable():
            async with Election(session, name).observe() as leaders:
                async for leader in leaders:
                    for line in VACANCY if leader is None else (leader.key, leader.value):
                        out_bytes(line)
    return interrupts.exit_status()  # observing only ends by an error or a signal
