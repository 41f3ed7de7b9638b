"""Connection options (flags, then ``ETCDSYNC_*``, then ``ETCDCTL_*`` variables) and opening a client.

Resolution is a pure function of the parsed flags and an environment mapping, so it is tested without
a server. Opening a client makes one cheap request (the member list) under ``--dial-timeout``, so a
wrong endpoint or password fails at once with a readable line instead of when the command first
needs etcd.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import attrs
import trio

from ..client import (
    AuthenticationError,
    Client,
    NoEndpointAvailableError,
    TransportError,
    open_client,
    tls_context,
)
from ._runtime import CliError, UsageError

__all__ = ["DEFAULT_ENDPOINTS", "ConnectOptions", "connect", "describe_error", "resolve_options"]

DEFAULT_ENDPOINTS = "127.0.0.1:2379"


@attrs.frozen(kw_only=True)
class ConnectOptions:
    """Where and how to connect, with every default and environment variable applied."""

    endpoints: tuple[str, ...]
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure_skip_tls_verify: bool = False
    username: str | None = None
    password: str | None = None
    dial_timeout: float = 5.0

    def tls_context(self) -> ssl.SSLContext | None:
        """An SSL context when any TLS option is given (then bare ``host:port`` endpoints use TLS too)."""
        if not (self.cacert or self.cert or self.key or self.insecure_skip_tls_verify):
            return None
        if self.key and not self.cert:
            raise UsageError("--key needs --cert (the client certificate it belongs to)")
        try:
            context = tls_context(cafile=self.cacert or None)
        except (OSError, ssl.SSLError) as exc:
            raise CliError(
                f"cannot load the CA certificate {self.cacert!r} (--cacert): {_reason(exc)}"
            ) from exc
        if self.cert:
            try:
                context.load_cert_chain(self.cert, self.key or None)
            except (OSError, ssl.SSLError) as exc:
                raise CliError(
                    f"cannot load the client certificate {self.cert!r} (--cert/--key): {_reason(exc)}"
                ) from exc
        if self.insecure_skip_tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _first(flag: str | None, environ: Mapping[str, str], name: str) -> str | None:
    """The flag's value, else ``ETCDSYNC_<name>``, else ``ETCDCTL_<name>`` (empty values count as unset)."""
    if flag:
        return flag
    return environ.get(f"ETCDSYNC_{name}") or environ.get(f"ETCDCTL_{name}") or None


def resolve_options(
    *,
    endpoints: str | None,
    cacert: str | None,
    cert: str | None,
    key: str | None,
    insecure_skip_tls_verify: bool,
    user: str | None,
    password: str | None,
    dial_timeout: float,
    environ: Mapping[str, str],
) -> ConnectOptions:
    """Apply environment variables and defaults to the connection flags.

    Raises:
        UsageError: a user without a password, a password without a user, no endpoints.
    """
    raw = _first(endpoints, environ, "ENDPOINTS") or DEFAULT_ENDPOINTS
    parsed = tuple(e.strip() for e in raw.split(",") if e.strip())
    if not parsed:
        raise UsageError(f"no endpoint in {raw!r} (--endpoints)")
    user = _first(user, environ, "USER")
    password = _first(password, environ, "PASSWORD")
    username: str | None = None
    if user is not None:
        if password is None:
            username, sep, password = user.partition(":")
            if not sep:
                raise UsageError(
                    f"--user {user} has no password: use --user NAME:PASSWORD or --password PASSWORD "
                    "(etcdsync never prompts)"
                )
        else:
            username = user  # with --password, the whole --user is the name (it may contain ':')
        if not username:
            raise UsageError("--user has an empty user name")
    elif password is not None:
        raise UsageError("--password needs --user NAME")
    if not dial_timeout > 0:
        raise UsageError("--dial-timeout must be > 0")
    return ConnectOptions(
        endpoints=parsed,
        cacert=_first(cacert, environ, "CACERT"),
        cert=_first(cert, environ, "CERT"),
        key=_first(key, environ, "KEY"),
        insecure_skip_tls_verify=insecure_skip_tls_verify,
        username=username,
        password=password,
        dial_timeout=dial_timeout,
    )


@asynccontextmanager
async def connect(options: ConnectOptions) -> AsyncIterator[Client]:
    """Open a client and check, within ``dial_timeout``, that etcd answers.

    Raises:
        CliError: no answer within the dial timeout.
        EtcdError: etcd answered with an error, or no endpoint could be reached (see :func:`describe_error`).
    """
    async with AsyncExitStack() as stack:
        try:
            client = await stack.enter_async_context(
                open_client(
                    list(options.endpoints),
                    tls=options.tls_context(),
                    username=options.username,
                    password=options.password,
                )
            )
        except ValueError as exc:  # a malformed endpoint
            raise UsageError(f"{exc} (--endpoints)") from exc
        with trio.move_on_after(options.dial_timeout) as scope:
            await client.member_list()
        if scope.cancelled_caught:
            raise CliError(
                f"no answer from etcd at {', '.join(options.endpoints)} within "
                f"{options.dial_timeout:g} s (--dial-timeout)"
            )
        yield client


def _reason(exc: BaseException) -> str:
    """The innermost, most specific reason behind ``exc`` (through causes and one-error groups)."""
    while True:
        if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        elif exc.__cause__ is not None:
            exc = exc.__cause__
        else:
            break
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return exc.strerror
    text = str(exc)
    return text or type(exc).__name__


def describe_error(exc: BaseException, endpoints: Sequence[str] = ()) -> str:
    """One readable line for an error a command ended with."""
    if isinstance(exc, NoEndpointAvailableError) and exc.errors:
        failures = "; ".join(f"{endpoint}: {_reason(error)}" for endpoint, error in exc.errors.items())
        return f"cannot reach etcd ({failures})"
    if isinstance(exc, TransportError):
        where = f" at {', '.join(endpoints)}" if endpoints else ""
        return f"cannot reach etcd{where}: {_reason(exc)}"
    if isinstance(exc, AuthenticationError):
        return f"authentication failed: {exc}"
    if isinstance(exc, CliError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
