"""The ``etcdsync`` command line (``etcdsync ...`` or ``python -m etcdsync ...``); see ``docs/cli.rst``.

Every command prints one readable line on stderr and exits non-zero on error; ``--debug`` shows the
traceback instead. Modules:

- :mod:`._parser`: the argument parser;
- :mod:`._connect`: connection flags and environment variables, opening a client, error messages;
- :mod:`._runtime`: exit codes, output, SIGINT/SIGTERM handling;
- :mod:`._supervise`: loss detection and running a COMMAND under a lock;
- :mod:`._hold` (lock, semaphore, elect), :mod:`._status`, :mod:`._watch` (watch, barrier).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

import trio

from ._connect import ConnectOptions, describe_error, resolve_options
from ._hold import HoldOptions, run_elect, run_listen, run_lock, run_semaphore
from ._parser import build_parser, split_command
from ._runtime import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Interrupts,
    UsageError,
    out,
    run_command,
    signal_status,
    warn,
)
from ._status import run_status
from ._watch import run_barrier, run_watch

__all__ = ["main"]

Runner = Callable[[Interrupts], Awaitable[int]]


async def _run_server(args: argparse.Namespace, interrupts: Interrupts) -> int:
    from ..testing import etcd_server

    async with etcd_server(host=args.host, unsafe_no_fsync=args.unsafe_no_fsync) as server:
        out(server.endpoint)
        sys.stderr.write(
            f"etcd {server.endpoint} running (data in {server.data_dir}); press Ctrl-C to stop\n"
        )
        sys.stderr.flush()
        interrupts.status_on_signal = EXIT_OK
        await trio.sleep_forever()
    return EXIT_OK  # pragma: no cover - sleep_forever only ends by an exception


def _connect_options(args: argparse.Namespace) -> ConnectOptions:
    return resolve_options(
        endpoints=args.endpoints,
        cacert=args.tls_cacert,
        cert=args.tls_cert,
        key=args.tls_key,
        insecure_skip_tls_verify=args.insecure_skip_tls_verify,
        user=args.user,
        password=args.password,
        dial_timeout=args.dial_timeout,
        environ=os.environ,
    )


def _prepare(args: argparse.Namespace, child: list[str] | None) -> tuple[Runner, tuple[str, ...]]:
    """The parsed command as a coroutine function, and the endpoints it will use (for messages).

    Raises:
        UsageError: arguments that argparse cannot check.
    """
    if child is not None and args.command not in ("lock", "semaphore"):
        raise UsageError("only lock and semaphore run a COMMAND (given after --)")
    if args.command == "server":
        return functools.partial(_run_server, args), ()
    options = _connect_options(args)
    return _runner(args, child, options), options.endpoints


def _runner(args: argparse.Namespace, child: list[str] | None, options: ConnectOptions) -> Runner:
    """The coroutine function that runs the parsed command. Raises ``UsageError`` on bad input."""
    name: str = args.command
    if name in ("lock", "semaphore"):
        hold = HoldOptions(
            connect=options,
            name=_name(args.name, "NAME"),
            ttl=args.ttl,
            command=tuple(child or ()),
            kill_grace=args.kill_grace,
        )
        if name == "lock":
            return functools.partial(run_lock, hold)
        return functools.partial(run_semaphore, hold, args.limit)
    if name == "elect":
        if args.listen:
            if args.proposal is not None:
                raise UsageError("elect --listen takes no PROPOSAL")
            return functools.partial(run_listen, options, _name(args.name, "NAME"), args.ttl)
        if args.proposal is None:
            raise UsageError("elect needs a PROPOSAL (or --listen)")
        return functools.partial(
            run_elect, options, _name(args.name, "NAME"), os.fsencode(args.proposal), args.ttl
        )
    if name == "barrier":
        return functools.partial(run_barrier, options, args.action, _name(args.name, "NAME"))
    if name == "status":
        if not args.interval > 0:
            raise UsageError("--interval must be > 0")
        return functools.partial(
            run_status, options, _name(args.prefix, "PREFIX"), watch=args.watch, interval=args.interval
        )
    assert name == "watch", name
    return functools.partial(
        run_watch,
        options,
        _name(args.key, "KEY"),
        prefix=args.prefix,
        start_revision=args.rev,
        prev_kv=args.prev_kv,
    )


def _name(text: str, what: str) -> bytes:
    """A NAME, PREFIX or KEY argument as the bytes given on the command line."""
    if not text:
        raise UsageError(f"{what} must not be empty")
    return os.fsencode(text)


def _sole(exc: BaseException) -> tuple[BaseException, int]:
    """The exception inside nested one-error groups, and how many others a bigger group held."""
    others = 0
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            others += len(exc.exceptions) - 1
        exc = exc.exceptions[0]
    return exc, others


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    own, child = split_command(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(own)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # Library warnings (e.g. "could not revoke lease ...") reach stderr; --debug adds etcdsync's own
    # debug log (not that of h2/hpack, which would drown it).
    logging.basicConfig(level=logging.WARNING, format=f"etcdsync {args.command}: %(name)s: %(message)s")
    if args.debug:
        logging.getLogger("etcdsync").setLevel(logging.DEBUG)
    endpoints: tuple[str, ...] = ()
    try:
        runner, endpoints = _prepare(args, child)
        return trio.run(run_command, runner)
    except KeyboardInterrupt:  # before the signal handling was installed
        return signal_status(signal.SIGINT)
    except Exception as exc:
        if args.debug:
            raise
        error, others = _sole(exc)
        if isinstance(error, BrokenPipeError):
            # Whoever read our output went away (`etcdsync watch ... | head -1`): stop quietly.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return signal_status(signal.SIGPIPE)
        message = describe_error(error, endpoints)
        if others:
            message += f" (and {others} more error{'s' if others > 1 else ''}; --debug shows them)"
        warn(args.command, message)
        return error.status if isinstance(error, CliError) else EXIT_ERROR
