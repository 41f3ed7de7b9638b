"""Locating the etcd binary and probing which flags it supports."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from ._errors import INSTALL_HINT, EtcdNotFoundError

__all__ = ("find_etcd", "supports_flag")


def find_etcd() -> str:
    """Return the path of the etcd binary to run.

    ``$ETCD_BIN`` wins when it is set and non-empty; otherwise ``etcd`` is looked up on ``PATH``.

    Returns:
        The path of an executable etcd.

    Raises:
        EtcdNotFoundError: ``$ETCD_BIN`` does not name an executable file, or there is no ``etcd`` on
            ``PATH``. The message says how to install etcd.

    Example:
        >>> from etcdsync.testing import find_etcd
        >>> find_etcd()  # doctest: +SKIP
        '/usr/bin/etcd'
    """
    configured = os.environ.get("ETCD_BIN")
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured
        raise EtcdNotFoundError(f"$ETCD_BIN={configured!r} is not an executable file; {INSTALL_HINT}")
    found = shutil.which("etcd")
    if found is None:
        raise EtcdNotFoundError(INSTALL_HINT)
    return found


@functools.cache
def _help_text(binary: str) -> str:
    # `etcd --help` prints its usage and exits 0 in 3.4 and 3.5; some builds write it to stderr.
    done = subprocess.run([binary, "--help"], capture_output=True, check=False, timeout=30)
    return (done.stdout + done.stderr).decode("utf-8", "replace")


def supports_flag(binary: str, flag: str) -> bool:
    """Tell whether ``binary --help`` lists ``flag`` (for example ``"--unsafe-no-fsync"``).

    The help text is read once per binary and cached for the life of the process.

    Example:
        >>> supports_flag(find_etcd(), "--unsafe-no-fsync")  # doctest: +SKIP
        False
    """
    return f"  {flag} " in _help_text(binary) or f"  {flag}\n" in _help_text(binary)
