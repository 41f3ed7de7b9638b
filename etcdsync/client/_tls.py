"""TLS contexts that both transports can use, client certificates included.

The h2 transport hands an :class:`ssl.SSLContext` to trio as is. grpcio wants PEM bytes instead, and
an ``SSLContext`` can give back its CA certificates but never the client certificate and key loaded
into it. :func:`tls_context` therefore returns an ``SSLContext`` subclass whose ``load_cert_chain``
also keeps the PEM bytes of what it loaded, for :mod:`etcdsync.client._transport._grpcio` to read
(:func:`client_pem`). To the h2 transport and to the ``ssl`` module it is an ordinary context.
"""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ClientPem", "client_pem", "tls_context"]

StrPath = str | os.PathLike[str]
#: What ``SSLContext.load_cert_chain`` accepts for a file.
_AnyPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]


class ClientPem:
    """A client certificate chain and its private key as PEM bytes (``key`` is ``None`` when the key
    is password-protected: grpc takes no password)."""

    __slots__ = ("chain", "key")

    def __init__(self, chain: bytes, key: bytes | None) -> None:
        self.chain = chain
        self.key = key


class _RememberingContext(ssl.SSLContext):
    """An ``SSLContext`` that keeps the PEM bytes of the client certificate chain it loads."""

    _etcdsync_client_pem: ClientPem | None = None

    def load_cert_chain(
        self,
        certfile: _AnyPath,
        keyfile: _AnyPath | None = None,
        password: str | bytes | bytearray | Callable[[], str | bytes | bytearray] | None = None,
    ) -> None:
        super().load_cert_chain(certfile, keyfile, password)
        chain = _read(certfile)
        key = None if password is not None else (_read(keyfile) if keyfile else chain)
        self._etcdsync_client_pem = ClientPem(chain, key)


def _read(path: _AnyPath) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def tls_context(
    *, cafile: StrPath | None = None, certfile: StrPath | None = None, keyfile: StrPath | None = None
) -> ssl.SSLContext:
    """A client TLS context that verifies the server, usable with either transport.

    Equivalent to ``ssl.create_default_context(cafile=cafile)`` followed by
    ``load_cert_chain(certfile, keyfile)`` when ``certfile`` is given, except that the
    ``transport="grpcio"`` option can send the client certificate too (it cannot read one out of a
    plain ``SSLContext``). ``load_cert_chain`` may also be called on the result later.

    Args:
        cafile: PEM file of the CA(s) that signed the server certificates (default: the system's).
        certfile: PEM file of the client certificate chain, for servers started with
            ``--client-cert-auth``.
        keyfile: PEM file of its private key, when it is not in ``certfile``.

    Raises:
        ValueError: ``keyfile`` without ``certfile``.
        OSError, ssl.SSLError: a file cannot be read or is not valid PEM.
    """
    if keyfile is not None and certfile is None:
        raise ValueError("keyfile needs certfile (the certificate the key belongs to)")
    context = _RememberingContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile is not None:
        context.load_verify_locations(cafile=cafile)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


def client_pem(context: ssl.SSLContext) -> ClientPem | None:
    """The client certificate loaded into ``context`` through :func:`tls_context`'s context, if any."""
    return getattr(context, "_etcdsync_client_pem", None)
