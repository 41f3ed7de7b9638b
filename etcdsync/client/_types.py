"""Value types returned by the client: frozen attrs classes with etcd's field names in snake_case.

No protobuf object ever escapes the client core; :mod:`etcdsync.client._convert` builds these from the
wire messages. Keys and values are always ``bytes``. Variants are made with :func:`attrs.evolve`.
"""

from __future__ import annotations

import enum
from typing import Union

import attrs

__all__ = [
    "DeleteResponse",
    "Event",
    "EventType",
    "KeyValue",
    "LeaseGrant",
    "LeaseTimeToLive",
    "Member",
    "MemberListResponse",
    "PutResponse",
    "RangeResponse",
    "ResponseHeader",
    "SortOrder",
    "SortTarget",
    "TxnResponse",
    "WatchResponse",
]


class SortOrder(enum.IntEnum):
    """Order of a range's results (etcd ``RangeRequest.SortOrder``)."""

    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(enum.IntEnum):
    """What a range's results are sorted by (etcd ``RangeRequest.SortTarget``)."""

    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class EventType(enum.IntEnum):
    """Kind of a watch event (etcd ``mvccpb.Event.EventType``)."""

    PUT = 0
    DELETE = 1


@attrs.frozen(kw_only=True)
class ResponseHeader:
    """The header of every etcd response.

    Attributes:
        cluster_id: the cluster that answered.
        member_id: the member that answered.
        revision: the store revision when the request was applied (for a write: the revision it made).
        raft_term: the raft term when the request was applied.
    """

    cluster_id: int = 0
    member_id: int = 0
    revision: int = 0
    raft_term: int = 0


@attrs.frozen(kw_only=True)
class KeyValue:
    """One key with its value and revisions.

    Attributes:
        key: the key.
        value: the value (empty with ``keys_only``).
        create_revision: the revision of the key's last creation; a lock key's create revision is its
            fencing token.
        mod_revision: the revision of the key's last modification.
        version: how often the key was written since its creation (1 after the creating put).
        lease: the ID of the lease attached to the key, 0 for none.
    """

    key: bytes
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0


@attrs.frozen(kw_only=True)
class RangeResponse:
    """The result of :meth:`Client.range`.

    Attributes:
        header: the response header; ``header.revision`` is the revision the range was read at.
        kvs: the matching keys, in the requested order, at most ``limit`` of them.
        count: how many keys are in the range (ignores ``limit`` and the revision filters).
        more: whether more keys matched than were returned.
    """

    header: ResponseHeader
    kvs: tuple[KeyValue, ...] = ()
    count: int = 0
    more: bool = False


@attrs.frozen(kw_only=True)
class PutResponse:
    """The result of :meth:`Client.put`; ``prev_kv`` is set when asked for and the key existed."""

    header: ResponseHeader
    prev_kv: KeyValue | None = None


@attrs.frozen(kw_only=True)
class DeleteResponse:
    """The result of :meth:`Client.delete`: how many keys went, and their last values if asked for."""

    header: ResponseHeader
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()


# One response per op of the branch that ran, in order; a nested txn gives a TxnResponse.
OpResponse = Union[RangeResponse, PutResponse, DeleteResponse, "TxnResponse"]


@attrs.frozen(kw_only=True)
class TxnResponse:
    """The result of :meth:`Client.txn`.

    Attributes:
        header: the response header; for a write txn, ``header.revision`` is the create revision of
            every key it created.
        succeeded: whether every compare held (so the ``success`` ops ran, else the ``failure`` ops).
        responses: one response per op of the branch that ran, in order.
    """

    header: ResponseHeader
    succeeded: bool
    responses: tuple[OpResponse, ...] = ()


@attrs.frozen(kw_only=True)
class LeaseGrant:
    """A granted lease: its ID and the TTL the server granted (which may differ from the request)."""

    header: ResponseHeader
    id: int
    ttl: int


@attrs.frozen(kw_only=True)
class LeaseTimeToLive:
    """A lease's remaining time.

    Attributes:
        id: the lease ID.
        ttl: seconds left; -1 when the lease has expired or never existed.
        granted_ttl: the TTL the lease was granted with.
        keys: the keys attached to the lease, when asked for.
    """

    header: ResponseHeader
    id: int
    ttl: int
    granted_ttl: int = 0
    keys: tuple[bytes, ...] = ()


@attrs.frozen(kw_only=True)
class Event:
    """One change seen by a watch: ``kv`` after a PUT (or the deleted key with only its mod revision),
    and ``prev_kv`` before it when the watch asked for it."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None


@attrs.frozen(kw_only=True)
class WatchResponse:
    """A batch of events of one revision or more, in revision order.

    An empty ``events`` tuple is a progress notification: nothing under the watch changed up to
    ``header.revision``.
    """

    header: ResponseHeader
    events: tuple[Event, ...] = ()
    compact_revision: int = 0


@attrs.frozen(kw_only=True)
class Member:
    """One cluster member.

    Attributes:
        id: the member ID.
        name: the member's name (empty while a freshly added member has not started).
        peer_urls: the URLs other members reach it on.
        client_urls: the URLs clients reach it on (empty until it has started).
        is_learner: whether it is a non-voting learner.
    """

    id: int
    name: str = ""
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False


@attrs.frozen(kw_only=True)
class MemberListResponse:
    """The cluster's members, as one member sees them."""

    header: ResponseHeader
    members: tuple[Member, ...] = ()
