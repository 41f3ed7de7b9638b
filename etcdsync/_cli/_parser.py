"""The argument parser of the ``etcdsync`` command line.

Connection options are accepted before the command and after it (``etcdsync --endpoints X lock N``
and ``etcdsync lock --endpoints X N``): both parsers define them, and the command's parser uses
``SUPPRESS`` defaults so that it only overrides what was actually given after the command.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable

from .._version import __version__

__all__ = ["build_parser", "split_command"]

_EPILOG = textwrap.dedent(
    """\
    environment (a flag wins over ETCDSYNC_*, which wins over ETCDCTL_*):
      ETCDSYNC_ENDPOINTS / ETCDCTL_ENDPOINTS   comma-separated endpoints (default 127.0.0.1:2379)
      ETCDSYNC_CACERT, _CERT, _KEY             TLS files (ETCDCTL_CACERT, _CERT, _KEY too)
      ETCDSYNC_USER, ETCDSYNC_PASSWORD         NAME[:PASSWORD] and PASSWORD (ETCDCTL_USER, _PASSWORD too)

    exit status:
      0 success, or stopped by SIGINT/SIGTERM while holding/listening/watching
      1 error (etcd unreachable, refused, ...)       2 bad command line
      75 the lock, permit or leadership was lost     126/127 COMMAND not executable / not found
      128+N interrupted by signal N while waiting, or COMMAND killed by signal N
      otherwise: COMMAND's own exit status
    """
)


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` for integers >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}: {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _seconds(text: str) -> float:
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0: {text!r}")
    return value


def _add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Connection options and --debug; on a command's parser they only override what is given."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("connection")
    group.add_argument(
        "--endpoints",
        metavar="URLS",
        default=default(None),
        help="comma-separated etcd endpoints: host:port, http://host:port or https://host:port "
        "(default: $ETCDSYNC_ENDPOINTS, $ETCDCTL_ENDPOINTS, 127.0.0.1:2379)",
    )
    group.add_argument(
        "--cacert",
        dest="tls_cacert",
        metavar="FILE",
        default=default(None),
        help="verify servers with this CA bundle",
    )
    group.add_argument(
        "--cert", dest="tls_cert", metavar="FILE", default=default(None), help="client certificate (PEM)"
    )
    group.add_argument(
        "--key",
        dest="tls_key",
        metavar="FILE",
        default=default(None),
        help="client certificate's private key (PEM)",
    )
    group.add_argument(
        "--insecure-skip-tls-verify",
        action="store_true",
        default=default(False),
        help="use TLS but do not verify the server's certificate (testing only)",
    )
    group.add_argument(
        "--user",
        metavar="NAME[:PASSWORD]",
        default=default(None),
        help="authenticate as NAME; the password after ':' or from --password (no prompt)",
    )
    group.add_argument("--password", metavar="PASSWORD", default=default(None), help="password for --user")
    group.add_argument(
        "--dial-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=default(5.0),
        help="give up if etcd does not answer the first request within this (default 5)",
    )
    parser.add_argument(
        "--debug", action="store_true", default=default(False), help="show a traceback on errors"
    )


def _add_ttl(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ttl",
        type=_positive_int,
        default=10,
        metavar="SECONDS",
        help="the session's lease TTL: how long what is held survives etcdsync dying (default 10)",
    )


def _add_supervision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kill-grace",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="after the lock is lost, how long COMMAND may take to exit after SIGTERM before "
        "SIGKILL (default 5)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etcdsync",
        description="Distributed locks, elections and coordination on etcd v3.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"etcdsync {__version__}")
    _add_common(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(
        name: str, summary: str, description: str, *, connects: bool = True, usage: str | None = None
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            usage=usage,
            help=summary,
            description=textwrap.fill(description, 100),
            epilog=_EPILOG if connects else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if connects:
            _add_common(sub, top=False)
        else:
            sub.add_argument(
                "--debug", action="store_true", default=argparse.SUPPRESS, help="show a traceback on errors"
            )
        return sub

    lock = command(
        "lock",
        "hold a lock; print its key and fencing token, or run a COMMAND under it",
        "Wait for the lock NAME (compatible with `etcdctl lock NAME`). Without COMMAND, print the lock "
        "key and the fencing token (one line each) and hold the lock until SIGINT/SIGTERM. With "
        "COMMAND (after --), run it while holding the lock, with ETCDSYNC_LOCK_KEY, "
        "ETCDSYNC_FENCING_TOKEN and ETCDSYNC_LEASE_ID in its environment; it is stopped if the lock "
        "is lost. The lock is released on exit.",
        usage="etcdsync lock [options] NAME [-- COMMAND [ARG...]]",
    )
    lock.add_argument("name", metavar="NAME")
    _add_ttl(lock)
    _add_supervision(lock)

    semaphore = command(
        "semaphore",
        "hold one of N permits; print its key and fencing token, or run a COMMAND under it",
        "Wait for one of the --limit permits of the semaphore NAME, then behave as `lock` does.",
        usage="etcdsync semaphore [options] --limit N NAME [-- COMMAND [ARG...]]",
    )
    semaphore.add_argument("name", metavar="NAME")
    semaphore.add_argument(
        "--limit",
        type=_positive_int,
        required=True,
        metavar="N",
        help="number of permits (every user must agree)",
    )
    _add_ttl(semaphore)
    _add_supervision(semaphore)

    elect = command(
        "elect",
        "campaign in an election, or --listen to who leads",
        "Campaign in the election NAME with PROPOSAL (compatible with `etcdctl elect`): once elected, "
        "print the leader key and the proposal (one line each) and lead until SIGINT/SIGTERM, then "
        "resign. With --listen, print each leader's key and value lines as leadership changes, and "
        "two empty lines whenever nobody leads.",
    )
    elect.add_argument("name", metavar="NAME")
    elect.add_argument("proposal", metavar="PROPOSAL", nargs="?")
    elect.add_argument("--listen", action="store_true", help="observe the election instead of campaigning")
    _add_ttl(elect)

    barrier = command(
        "barrier",
        "hold, release or wait for a barrier",
        "`hold` closes the barrier NAME (creates the key NAME), `release` opens it (deletes the key), "
        "`wait` returns once it is open.",
    )
    barrier.add_argument("action", choices=("hold", "release", "wait"), metavar="hold|release|wait")
    barrier.add_argument("name", metavar="NAME")

    status = command(
        "status",
        "show holders and waiters of every lock, election and semaphore under PREFIX",
        "Show every lock, election, semaphore and RW lock under PREFIX: holders and the waiting "
        "queue in order, with lease TTLs and how long each has waited (in revisions; see the docs).",
    )
    status.add_argument("prefix", metavar="PREFIX")
    status.add_argument("--watch", action="store_true", help="redraw on every change (Ctrl-C to stop)")
    status.add_argument(
        "--interval",
        type=_seconds,
        default=2.0,
        metavar="SECONDS",
        help="with --watch, also redraw this often to refresh TTLs (default 2)",
    )

    watch = command(
        "watch",
        "print changes to a key or prefix, as etcdctl watch does",
        "Print each event on KEY (or under it, with --prefix) until SIGINT/SIGTERM: the event type "
        "(PUT or DELETE), then the previous key and value with --prev-kv, then the key and the value.",
    )
    watch.add_argument("key", metavar="KEY")
    watch.add_argument("--prefix", action="store_true", help="watch every key starting with KEY")
    watch.add_argument(
        "--rev", type=_non_negative_int, default=0, metavar="N", help="start from revision N (history)"
    )
    watch.add_argument("--prev-kv", action="store_true", help="print each key's previous value too")

    server = command(
        "server",
        "run a local development etcd (data in a temporary directory) and print its endpoint",
        "Start a local etcd on a free loopback port with its data in a temporary directory, print "
        "its endpoint, and run until interrupted (Ctrl-C), then stop it and remove the data.",
        connects=False,
    )
    server.add_argument("--host", default=None, help="loopback address to listen on (default: a free one)")
    server.add_argument(
        "--unsafe-no-fsync",
        action="store_true",
        help="trade durability for speed (data dir on tmpfs with etcd 3.4); for tests only",
    )
    return parser


def split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Split ``argv`` at its first ``--``: etcdsync's own arguments, and the COMMAND (``None``: no ``--``)."""
    if "--" not in argv:
        return argv, None
    at = argv.index("--")
    return argv[:at], argv[at + 1 :]
