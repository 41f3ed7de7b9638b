"""Transports: gRPC calls as opaque bytes over some connection to one etcd endpoint.

The client core depends only on the protocol in :mod:`._base` (:class:`Channel`, :class:`Stream`,
:class:`StatusError`, :class:`ConnectionLost`). The default implementation is gRPC over HTTP/2
with ``h2`` on trio streams (:func:`open_h2_channel`). The optional one, ``grpc.aio`` on a private
thread (``_grpcio.open_grpcio_channel``), is imported only through :func:`channel_opener`, so that
grpcio stays an optional dependency.
"""

from __future__ import annotations

import ssl
from contextlib import AbstractAsyncContextManager
from typing import Literal, Protocol

from ._base import (
    Channel as Channel,
    ChannelState as ChannelState,
    ChannelStatistics as ChannelStatistics,
    ConnectionLost as ConnectionLost,
    Metadata as Metadata,
    StatusError as StatusError,
    Stream as Stream,
)
from ._h2 import (
    H2Channel as H2Channel,
    H2Stream as H2Stream,
    connect_h2_channel as connect_h2_channel,
    open_h2_channel as open_h2_channel,
)

__all__ = (
    "Channel",
    "ChannelOpener",
    "ChannelState",
    "ChannelStatistics",
    "ConnectionLost",
    "H2Channel",
    "H2Stream",
    "Metadata",
    "StatusError",
    "Stream",
    "channel_opener",
    "connect_h2_channel",
    "open_h2_channel",
)


class ChannelOpener(Protocol):
    """What :func:`open_h2_channel` and ``open_grpcio_channel`` have in common."""

    def __call__(
        self, endpoint: str, *, ssl_context: ssl.SSLContext | None = ...
    ) -> AbstractAsyncContextManager[Channel]: ...


def channel_opener(transport: Literal["h2", "grpcio"]) -> ChannelOpener:
    """The ``open_*_channel`` function of ``transport``; imports grpcio only for ``"grpcio"``.

    Raises:
        ImportError: ``"grpcio"`` was asked for and grpcio is not installed.
    """
    if transport == "h2":
        return open_h2_channel
    try:
        from ._grpcio import open_grpcio_channel
    except ImportError as exc:
        raise ImportError(
            "the grpcio transport needs grpcio: pip install 'etcdsync[grpcio]'", name=exc.name
        ) from exc
    return open_grpcio_channel
