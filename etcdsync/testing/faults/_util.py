"""Small helpers shared by the fault injectors: bounded commands, and nurseries that don't leak groups."""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import AsyncIterator, Sequence
from typing import Final

import trio

__all__ = ("COMMAND_TIMEOUT", "FaultError", "open_task_nursery", "run_command")

logger = logging.getLogger(__name__)

#: Bound on one helper command (``ip``, ``nft``): each takes 2-30 ms; a hang must not eat the test.
COMMAND_TIMEOUT: Final = 10.0


class FaultError(Exception):
    """A fault could not be injected or healed (a command failed, or a gateway call was refused)."""


async def run_command(argv: Sequence[str], *, stdin: bytes = b"", check: bool = True) -> str:
    """Run ``argv`` with ``stdin``, bounded by :data:`COMMAND_TIMEOUT`; return its stdout.

    Raises:
        FaultError: It exited non-zero (with ``check``), could not be started, or took too long. The message
            has the command and its stderr.
    """
    try:
        with trio.fail_after(COMMAND_TIMEOUT):
            done = await trio.run_process(
                list(argv), stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
            )
    except trio.TooSlowError as exc:
        raise FaultError(f"{' '.join(argv)!r} took over {COMMAND_TIMEOUT} s") from exc
    except OSError as exc:
        raise FaultError(f"{' '.join(argv)!r} could not run: {exc}") from exc
    if check and done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()
        raise FaultError(f"{' '.join(argv)!r} exited with {done.returncode}: {stderr}")
    logger.debug("ran %s", argv)
    return done.stdout.decode(errors="replace")


def run_command_sync(argv: Sequence[str], *, stdin: bytes = b"", check: bool = True) -> str:
    """Blocking twin of :func:`run_command`, for cleanup paths outside trio."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FaultError(f"{' '.join(argv)!r} failed: {exc}") from exc
    if check and done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()
        raise FaultError(f"{' '.join(argv)!r} exited with {done.returncode}: {stderr}")
    return done.stdout.decode(errors="replace")


@contextlib.asynccontextmanager
async def open_task_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for background tasks that are cancelled when the block ends.

    The block's own exception comes out as itself, not wrapped in an ``ExceptionGroup`` (the background
    tasks of the injectors never raise on purpose); a background failure comes out alone when it is the only
    one.
    """
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaves = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)] or list(group.exceptions)
        chosen = body_error if body_error is not None and body_error in group.exceptions else leaves[0]
        if len(leaves) > 1 and chosen is not body_error:
            raise
        context = chosen.__context__
        try:
            raise chosen
        finally:
            chosen.__context__ = context
            del chosen, group
