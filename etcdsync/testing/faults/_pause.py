"""Stop-the-world pauses of client processes: SIGSTOP, then SIGCONT after a while.

A process paused longer than its lease TTL is the central safety scenario of lease-based locks
(``shared/notes/fault-injection.md`` §2c): its lease expires and someone else acquires, while the paused
process still believes it holds the lock and wakes up to act on that belief. Only fenced writes stay safe.

Processes are named by a :class:`trio.Process` or :class:`subprocess.Popen` (safe: the handle knows whether
the child was reaped) or by a bare pid (the caller vouches that it is still the same process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Final

import trio

from .._process import proc_state
from ._util import FaultError

__all__ = ("Pausable", "continue_process", "pause_process", "stop_process")

#: Something that names a process to pause.
Pausable = trio.Process | subprocess.Popen[bytes] | int

_STOP_TIMEOUT: Final = 2.0


def _pid(process: Pausable) -> int:
    if isinstance(process, int):
        return process
    if process.returncode is not None:
        raise FaultError(f"process {process.pid} has exited (status {process.returncode})")
    return process.pid


def _signal(process: Pausable, signum: int) -> int:
    if isinstance(process, int):
        os.kill(process, signum)
        return process
    pid = _pid(process)
    process.send_signal(signum)
    return pid


def stop_process(process: Pausable) -> None:
    """SIGSTOP ``process`` and return once the kernel reports it stopped (state ``T``).

    Example:
        >>> stop_process(worker)  # doctest: +SKIP
        >>> ...  # its lease expires, another worker takes the lock
        >>> continue_process(worker)  # it wakes up believing it still holds it

    Raises:
        FaultError: It has exited, or did not stop within 2 s.
    """
    pid = _signal(process, signal.SIGSTOP)
    deadline = time.monotonic() + _STOP_TIMEOUT
    while proc_state(pid) not in ("T", "t", None, "Z"):
        if time.monotonic() > deadline:
            raise FaultError(f"process {pid} did not stop within {_STOP_TIMEOUT} s of SIGSTOP")
        time.sleep(0.001)


def continue_process(process: Pausable) -> None:
    """SIGCONT ``process`` (a no-op for a running one).

    Example:
        >>> continue_process(worker)  # doctest: +SKIP

    Raises:
        FaultError: It has exited.
    """
    _signal(process, signal.SIGCONT)


async def pause_process(process: Pausable, seconds: float) -> None:
    """Stop ``process`` for ``seconds``, then continue it, also if this call is cancelled. A checkpoint.

    Example:
        >>> await pause_process(holder, 2.5 * ttl)  # doctest: +SKIP

    Raises:
        FaultError: It has exited or did not stop.
    """
    stop_process(process)
    try:
        await trio.sleep(seconds)
    finally:
        try:
            continue_process(process)
        except (FaultError, ProcessLookupError):
            pass  # it died while stopped (e.g. SIGKILLed by the test): nothing to continue
