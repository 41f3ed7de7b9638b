"""Transports: gRPC calls as opaque bytes over some connection to one etcd endpoint.

The client core depends only on the protocol in :mod:`._base` (:class:`Channel`, :class:`Stream`,
:class:`StatusError`, :class:`ConnectionLost`). The default implementation is gRPC over HTTP/2
with ``h2`` on trio streams (:func:`open_h2_channel`).
"""

from __future__ import annotations

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
    "ChannelState",
    "ChannelStatistics",
    "ConnectionLost",
    "H2Channel",
    "H2Stream",
    "Metadata",
    "StatusError",
    "Stream",
    "connect_h2_channel",
    "open_h2_channel",
)
