"""The ``etcdsync`` command line.

Every command prints one readable line on stderr and exits non-zero on error; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import trio

from ._version import __version__

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etcdsync",
        description="Distributed locks, elections and coordination on etcd v3.",
    )
    parser.add_argument("--version", action="version", version=f"etcdsync {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    server = commands.add_parser(
        "server",
        help="run a local development etcd (data in a temporary directory) and print its endpoint",
        description=(
            "Start a local etcd on a free loopback port with its data in a temporary directory, print "
            "its endpoint, and run until interrupted (Ctrl-C), then stop it and remove the data."
        ),
    )
    server.add_argument("--host", default=None, help="loopback address to listen on (default: a free one)")
    server.add_argument(
        "--unsafe-no-fsync",
        action="store_true",
        help="trade durability for speed (data dir on tmpfs with etcd 3.4); for tests only",
    )
    return parser


async def _run_server(args: argparse.Namespace) -> int:
    from .testing import etcd_server

    async with etcd_server(host=args.host, unsafe_no_fsync=args.unsafe_no_fsync) as server:
        print(server.endpoint, flush=True)
        print(
            f"etcd {server.endpoint} running (data in {server.data_dir}); press Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        await trio.sleep_forever()
    return 0  # pragma: no cover - sleep_forever only ends by an exception


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command == "server":
            return trio.run(_run_server, args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"etcdsync {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse rejects it first
