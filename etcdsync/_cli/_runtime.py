"""What every command shares: exit codes, output, errors for the user, and signal handling.

Signals: the command runs inside :func:`run_command`, which turns the first SIGINT or SIGTERM into
cancellation, unless a child process is being supervised, in which case the signal is forwarded to
the child instead (:meth:`Interrupts.forwarding`). What is cancelled is the innermost
:meth:`Interrupts.cancellable` block, which commands open *inside* their client (and session): the
client must outlive the cancellation, since the shielded cleanups (release the lock, revoke the
lease) need its connections. Before such a block is entered, the whole command is cancelled. A
second signal while the command is already cancelled means "stop cleaning up": the process exits at
once with 128 + the signal number.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Final

import trio

__all__ = [
    "EXIT_ERROR",
    "EXIT_LOST",
    "EXIT_NOT_EXECUTABLE",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "Interrupts",
    "UsageError",
    "out",
    "out_bytes",
    "run_command",
    "signal_status",
    "warn",
]

EXIT_OK: Final = 0
#: Any error: etcd unreachable, refused, a bad file, an unexpected failure.
EXIT_ERROR: Final = 1
#: Bad command line (argparse uses 2 too).
EXIT_USAGE: Final = 2
#: The lock, permit or leadership was lost while held (lease expired or revoked, key deleted), or the
#: session was lost while waiting for it. sysexits' EX_TEMPFAIL: "a temporary failure; try again".
EXIT_LOST: Final = 75
#: The command could not be executed / was not found (as in a POSIX shell).
EXIT_NOT_EXECUTABLE: Final = 126
EXIT_NOT_FOUND: Final = 127

#: The signals that stop a command (and that are forwarded to a supervised child).
STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


class CliError(Exception):
    """An error to report as one line on stderr, with ``status`` as the exit code."""

    status: int = EXIT_ERROR


class UsageError(CliError):
    """A bad combination of options or arguments (exit code 2)."""

    status = EXIT_USAGE


def signal_status(signum: int) -> int:
    """The exit status of something stopped by ``signum``, as a shell reports it: 128 + the number."""
    return 128 + signum


def out(line: str) -> None:
    """Write one line on stdout, flushed at once (another process may be waiting for it)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def out_bytes(line: bytes) -> None:
    """Write raw bytes plus a newline on stdout (keys and values are shown as stored), flushed."""
    sys.stdout.flush()
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.buffer.flush()


def warn(command: str, message: str) -> None:
    """Write ``etcdsync COMMAND: message`` on stderr."""
    sys.stderr.write(f"etcdsync {command}: {message}\n")
    sys.stderr.flush()


class Interrupts:
    """SIGINT/SIGTERM for one command: cancel it, or forward them to a supervised child.

    Attributes:
        signal: the first signal that stopped the command (``None`` while none did).
        status_on_signal: the exit status once a signal stopped the command; ``None`` means
            ``128 + signal`` ("interrupted before done"). Commands set it to 0 once they reach the
            part that runs until interrupted (holding a lock, listening, watching).
    """

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.signal: int | None = None
        self.status_on_signal: int | None = None
        self._forward: Callable[[int], None] | None = None
        self._current = self.scope

    @contextmanager
    def cancellable(self) -> Iterator[None]:
        """A block that a signal cancels (leaving the code around it, such as the client, running).

        After the block, check :attr:`signal`: the caller returns :meth:`exit_status` if it is set.
        """
        with trio.CancelScope() as scope:
            if self.signal is not None:
                scope.cancel()
            previous, self._current = self._current, scope
            try:
                yield
            finally:
                self._current = previous

    @contextmanager
    def forwarding(self, forward: Callable[[int], None]) -> Iterator[None]:
        """While the block runs, signals go to ``forward(signum)`` instead of cancelling the command."""
        self._forward = forward
        try:
            yield
        finally:
            self._forward = None

    def exit_status(self) -> int:
        """The exit status after a signal stopped the command."""
        assert self.signal is not None
        return signal_status(self.signal) if self.status_on_signal is None else self.status_on_signal

    async def listen(self, receiver: AsyncIterator[int]) -> None:
        """Handle signals from ``trio.open_signal_receiver`` until cancelled."""
        async for signum in receiver:
            self.handle(signum)

    def handle(self, signum: int) -> None:
        if self._forward is not None:
            self._forward(signum)
        elif self.signal is None:
            self.signal = signum
            self._current.cancel()
        else:
            # A second signal during cleanup: the user does not want to wait for it.
            sys.stderr.write(f"etcdsync: {signal.Signals(signum).name} again; exiting without cleanup\n")
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(signal_status(signum))


async def run_command(command: Callable[[Interrupts], Awaitable[int]]) -> int:
    """Run ``command`` with SIGINT/SIGTERM handled as described in the module docstring."""
    interrupts = Interrupts()
    status = EXIT_OK
    with trio.open_signal_receiver(*STOP_SIGNALS) as receiver:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(interrupts.listen, receiver)
            try:
                with interrupts.scope:
                    status = await command(interrupts)
            finally:
                nursery.cancel_scope.cancel()
    if interrupts.signal is not None:
        return interrupts.exit_status()
    return status
