"""Holding a lock, permit or leadership from the command line, and running a command under it.

Loss detection (:func:`wait_lost`) races two signals: the session's lease counting as lost (the
keep-alive got "expired", or no keep-alive was acknowledged within the TTL), and a DELETE of our own
key seen by a watch. The watch makes an outside ``lease revoke`` or ``etcdctl del`` visible at once
instead of at the next keep-alive.

Supervision (:func:`run_supervised`):

- the command is started with ``trio.lowlevel.open_process`` (no shell), in **its own process
  group**, with the lock's key, fencing token and lease in its environment;
- SIGINT and SIGTERM sent to etcdsync are forwarded to that process group (so a terminal's Ctrl-C,
  which reaches etcdsync, reaches the command exactly once, and a shell command's own children too);
- if the lock is lost, the group gets SIGTERM, then SIGKILL after the grace period, and etcdsync
  exits with :data:`~etcdsync._cli._runtime.EXIT_LOST` whatever the command's own status;
- otherwise etcdsync exits with the command's status (128 + N if a signal N ended it), after
  releasing the lock.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence

import attrs
import trio

from .._session import Session
from ..client import Client, CompactedError, EventType
from ._runtime import (
    EXIT_LOST,
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    Interrupts,
    signal_status,
    warn,
)

__all__ = ["Holding", "hold_until_interrupted", "run_supervised", "wait_lost"]


@attrs.frozen(kw_only=True)
class Holding:
    """Something held through a session: its key (``NAME/<hex lease>``) and create revision.

    Attributes:
        what: how messages call it ("lock", "permit", "leadership").
        key: our key.
        token: its create revision (the fencing token / leader revision).
        session: the session whose lease the key is attached to.
    """

    what: str
    key: bytes
    token: int
    session: Session

    def environment(self) -> dict[str, str]:
        """The variables a supervised command gets."""
        return {
            "ETCDSYNC_LOCK_KEY": os.fsdecode(self.key),
            "ETCDSYNC_FENCING_TOKEN": str(self.token),
            "ETCDSYNC_LEASE_ID": format(self.session.lease_id, "x"),
        }


async def _until_key_gone(client: Client, key: bytes, token: int) -> None:
    """Return once ``key`` no longer exists with create revision ``token``."""
    start = token + 1
    while True:
        try:
            async with client.watch(key, start_revision=start) as events:
                async for resp in events:
                    if any(event.type is EventType.DELETE for event in resp.events):
                        return
        except CompactedError:
            # The history since we took the key is gone: look at the key itself, then watch on.
            now = await client.range(key)
            if not now.kvs or now.kvs[0].create_revision != token:
                return
            start = now.header.revision + 1


async def wait_lost(holding: Holding) -> str:
    """Wait until ``holding`` is lost; return why, in words."""
    reasons: list[str] = []
    session = holding.session
    async with trio.open_nursery() as nursery:

        async def expiry() -> None:
            await session.wait_expired()
            reasons.append(str(session.expired_error()))
            nursery.cancel_scope.cancel()

        async def deletion() -> None:
            await _until_key_gone(session.client, holding.key, holding.token)
            reasons.append(
                f"its key {os.fsdecode(holding.key)} was deleted (lease revoked or expired, or key removed)"
            )
            nursery.cancel_scope.cancel()

        nursery.start_soon(expiry)
        nursery.start_soon(deletion)
    return reasons[0]


async def hold_until_interrupted(holding: Holding, interrupts: Interrupts, command: str) -> int:
    """Hold until SIGINT/SIGTERM (exit 0) or until the holding is lost (:data:`EXIT_LOST`)."""
    interrupts.status_on_signal = EXIT_OK
    reason = await wait_lost(holding)
    warn(command, f"lost the {holding.what} {os.fsdecode(holding.key)}: {reason}")
    return EXIT_LOST


def _signal_group(process: trio.Process, signum: int) -> None:
    """Send ``signum`` to the command's process group while the command has not been reaped.

    An unreaped child (even a zombie) keeps its process group ID allocated, so this never signals a
    stranger; once the child is reaped it does nothing.
    """
    if process.returncode is None:
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:  # the whole group is gone already
            pass


async def _terminate(process: trio.Process, kill_grace: float, command: str) -> None:
    """SIGTERM the command's group; SIGKILL it if the command has not exited after ``kill_grace``."""
    _signal_group(process, signal.SIGTERM)
    with trio.move_on_after(kill_grace):
        await process.wait()
        return
    warn(command, f"the command did not exit within {kill_grace:g} s of SIGTERM; sending SIGKILL")
    _signal_group(process, signal.SIGKILL)
    await process.wait()


async def run_supervised(
    argv: Sequence[str],
    holding: Holding,
    *,
    interrupts: Interrupts,
    kill_grace: float,
    command: str,
    extra_env: Mapping[str, str] | None = None,
) -> int:
    """Run ``argv`` while ``holding`` lasts; return etcdsync's exit status (see the module docstring)."""
    env = {**os.environ, **holding.environment(), **(extra_env or {})}
    try:
        process = await trio.lowlevel.open_process(list(argv), env=env, process_group=0)
    except FileNotFoundError:
        warn(command, f"{argv[0]}: command not found")
        return EXIT_NOT_FOUND
    except OSError as exc:
        warn(command, f"{argv[0]}: cannot run it: {exc.strerror or exc}")
        return EXIT_NOT_EXECUTABLE
    lost: str | None = None
    try:
        with interrupts.forwarding(lambda signum: _signal_group(process, signum)):
            async with trio.open_nursery() as nursery:

                async def stop_on_loss() -> None:
                    nonlocal lost
                    lost = await wait_lost(holding)
                    warn(
                        command,
                        f"lost the {holding.what} {os.fsdecode(holding.key)}: {lost}; "
                        f"stopping the command (SIGTERM, then SIGKILL after {kill_grace:g} s)",
                    )
                    await _terminate(process, kill_grace, command)

                nursery.start_soon(stop_on_loss)
                returncode = await process.wait()
                nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            # Only on an error or a cancellation before the command ended: never leave it running.
            with trio.CancelScope(shield=True):
                await _terminate(process, kill_grace, command)
    status = EXIT_LOST if lost is not None else signal_status(-returncode) if returncode < 0 else returncode
    # A signal during the release that follows is no reason to report anything but the command's end.
    interrupts.status_on_signal = status
    return status
