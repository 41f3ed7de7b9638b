"""Conversion between the watch multiplexer's types and the Watch stream's protobuf messages.

Requests leave as serialized ``bytes`` (one ``WatchRequest`` per mux action that goes on the wire) and
responses arrive as ``bytes`` and become :class:`~etcdsync.client._sansio._watch.WatchResponseIn`.
Nothing here interprets a response; the mux does.

Every delivered watch event passes through :func:`watch_response`, so it takes the shortcuts of
``_kv.py``'s "Response values": the frozen, slotted value types (and the mux's input) are filled in
through their slot descriptors, about twice as fast as their attrs ``__init__`` (``_slot_setters``
refuses at import a class whose fields differ from the ones named, or that validates or converts
them), and an event's type is looked up in a dict instead of calling the ``EventType`` enum.
``tests/client/test_watch_shell.py`` checks the result against the attrs constructors.
"""

from __future__ import annotations

from etcdsync.client._pb import kv_pb2, rpc_pb2

from .._sansio._watch import SendCancel, SendCreate, SendProgressRequest, WatchResponseIn
from .._types import Event, EventType
from ._kv import _slot_setters, header, key_value

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


_new = object.__new__
_E_TYPE, _E_KV, _E_PREV_KV = _slot_setters(Event, ("type", "kv", "prev_kv"))
(
    _W_WATCH_ID,
    _W_HEADER,
    _W_EVENTS,
    _W_CREATED,
    _W_CANCELED,
    _W_COMPACT_REVISION,
    _W_CANCEL_REASON,
    _W_FRAGMENT,
) = _slot_setters(
    WatchResponseIn,
    ("watch_id", "header", "events", "created", "canceled", "compact_revision", "cancel_reason", "fragment"),
)
# EventType by wire value: a dict lookup is ~10x cheaper than the enum's lookup by value.
_EVENT_TYPES: dict[int, EventType] = {int(t): t for t in EventType}


def event(msg: kv_pb2.Event) -> Event:
    """The value type of one watch event (``prev_kv`` only when the server sent one)."""
    value = _new(Event)
    try:
        _E_TYPE(value, _EVENT_TYPES[msg.type])
    except KeyError:
        _E_TYPE(value, EventType(msg.type))  # raises the enum's ValueError for an unknown type
    _E_KV(value, key_value(msg.kv))
    _E_PREV_KV(value, key_value(msg.prev_kv) if msg.HasField("prev_kv") else None)
    return value


def watch_response(data: bytes) -> WatchResponseIn:
    """Parse a serialized ``WatchResponse`` into the mux's input type."""
    msg = rpc_pb2.WatchResponse.FromString(data)
    value = _new(WatchResponseIn)
    _W_WATCH_ID(value, msg.watch_id)
    _W_HEADER(value, header(msg.header))
    _W_EVENTS(value, tuple(map(event, msg.events)))
    _W_CREATED(value, msg.created)
    _W_CANCELED(value, msg.canceled)
    _W_COMPACT_REVISION(value, msg.compact_revision)
    _W_CANCEL_REASON(value, msg.cancel_reason)
    _W_FRAGMENT(value, msg.fragment)
    return value
