"""Exceptions raised by the etcd test harness.

They are deliberately *not* part of the :class:`etcdsync.EtcdError` tree: they describe the harness failing to
run etcd, never etcd or the client misbehaving, so a test can never mistake one for the other::

    Exception
      EtcdNotFoundError   no etcd binary (install hint in the message)
      EtcdHarnessError    a member did not start, answer or elect a leader in time (log tail in the message)
"""

from __future__ import annotations

INSTALL_HINT = (
    "etcd binary not found on PATH and $ETCD_BIN is not set; install it with "
    "`apt-get install etcd-server` (Debian) or run `make test`, which installs it"
)


class EtcdNotFoundError(Exception):
    """No etcd binary was found on ``PATH`` or at ``$ETCD_BIN``.

    The message says how to install one. The pytest plugin turns this into a test *failure*, never a skip,
    so a CI machine without etcd cannot pass the suite by accident.

    Example:
        >>> from etcdsync.testing import EtcdNotFoundError, find_etcd
        >>> try:
        ...     binary = find_etcd()
        ... except EtcdNotFoundError as exc:
        ...     print(exc)  # doctest: +SKIP
    """


class EtcdHarnessError(Exception):
    """The harness could not bring etcd into the requested state within its bound.

    Raised when a member exits during start-up, does not answer within ``start_timeout``, or a cluster has no
    leader within that bound. The message ends with the tail of the member's log file.

    Example:
        >>> import trio
        >>> from etcdsync.testing import EtcdHarnessError, etcd_server
        >>> async def main() -> None:
        ...     try:
        ...         async with etcd_server(extra_args=["--no-such-flag"]):
        ...             pass
        ...     except EtcdHarnessError as exc:
        ...         print("etcd refused to start:", exc)
    """
