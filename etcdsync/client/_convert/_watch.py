"""Conversion between the watch multiplexer's types and the Watch stream's protobuf messages.

Requests leave as serialized ``bytes`` (one ``WatchRequest`` per mux action that goes on the wire) and
responses arrive as ``bytes`` and become :class:`~etcdsync.client._sansio._watch.WatchResponseIn`.
Nothing here interprets a response; the mux does.
"""

from __future__ import annotations

from etcdsync.client._pb import kv_pb2, rpc_pb2

from .._sansio._watch import SendCancel, SendCreate, SendProgressRequest, WatchResponseIn
from .._types import Event, EventType
from ._kv import header, key_value

__all__ = ["event", "watch_request", "watch_response"]


def watch_request(action: SendCreate | SendCancel | SendProgressRequest) -> bytes:
    """A serialized ``WatchRequest`` carrying a create, a cancel or a progress request."""
    if isinstance(action, SendCreate):
        create = rpc_pb2.WatchCreateRequest(
            key=action.key,
            range_end=action.range_end,
            start_revision=action.start_revision,
            progress_notify=action.progress_notify,
            filters=[rpc_pb2.WatchCreateRequest.FilterType.ValueType(f) for f in action.filters],
            prev_kv=action.prev_kv,
            watch_id=action.watch_id,
            fragment=action.fragment,
        )
        return rpc_pb2.WatchRequest(create_request=create).SerializeToString()
    if isinstance(action, SendCancel):
        cancel = rpc_pb2.WatchCancelRequest(watch_id=action.watch_id)
        return rpc_pb2.WatchRequest(cancel_request=cancel).SerializeToString()
    return rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()).SerializeToString()


def event(msg: kv_pb2.Event) -> Event:
    """The value type of one watch event (``prev_kv`` only when the server sent one)."""
    return Event(
        type=EventType(msg.type),
        kv=key_value(msg.kv),
        prev_kv=key_value(msg.prev_kv) if msg.HasField("prev_kv") else None,
    )


def watch_response(data: bytes) -> WatchResponseIn:
    """Parse a serialized ``WatchResponse`` into the mux's input type."""
    msg = rpc_pb2.WatchResponse.FromString(data)
    return WatchResponseIn(
        watch_id=msg.watch_id,
        header=header(msg.header),
        events=tuple(event(e) for e in msg.events),
        created=msg.created,
        canceled=msg.canceled,
        compact_revision=msg.compact_revision,
        cancel_reason=msg.cancel_reason,
        fragment=msg.fragment,
    )
