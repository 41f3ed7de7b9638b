"""Value types of the administrative API: cluster membership, maintenance, and auth administration.

Frozen attrs classes with etcd's field names in snake_case, like those in ``_types.py``; built from
the wire messages by ``_convert/_admin.py``. Role permissions keep keys as ``bytes``; user and role
names are ``str``, as etcd has them.
"""

from __future__ import annotations

import enum

import attrs

from ._types import Member, ResponseHeader

__all__ = [
    "Alarm",
    "AlarmType",
    "AuthRole",
    "AuthUser",
    "HashKVResponse",
    "MemberAddResponse",
    "Permission",
    "PermissionType",
    "SnapshotInfo",
    "StatusResponse",
]


class AlarmType(enum.IntEnum):
    """The kind of a cluster alarm (etcd ``AlarmType``)."""

    #: No alarm; as a filter in :meth:`~etcdsync.client.Client.alarm_disarm`, "any kind".
    NONE = 0
    #: The backend database reached ``--quota-backend-bytes``; writes fail with ``NoSpaceError``.
    NOSPACE = 1
    #: A member's data differs from the others' (``--experimental-corrupt-check-time``).
    CORRUPT = 2


class PermissionType(enum.IntEnum):
    """What a role may do on a key range (etcd ``authpb.Permission.Type``)."""

    READ = 0
    WRITE = 1
    READWRITE = 2


@attrs.frozen(kw_only=True)
class Alarm:
    """One raised alarm: which member raised it, and what kind it is."""

    member_id: int
    alarm: AlarmType


@attrs.frozen(kw_only=True)
class StatusResponse:
    """One member's view of itself and of the cluster, from :meth:`~etcdsync.client.Client.status`.

    Attributes:
        header: the response header; ``header.member_id`` is the member that answered.
        version: the member's etcd version, e.g. ``"3.4.23"``.
        db_size: the size of the backend database file, in bytes (what the space quota counts).
        leader: the member ID of the raft leader as this member knows it; 0 when it knows none.
        raft_index: the member's committed raft index.
        raft_term: the member's raft term.
        raft_applied_index: the raft index the member has applied to its store.
        errors: the member's alarms and problems as text (e.g. ``"memberID:… alarm:NOSPACE "``).
        db_size_in_use: the bytes of ``db_size`` holding live data; the rest is freed by defragmenting.
        is_learner: whether the member is a non-voting learner.
    """

    header: ResponseHeader
    version: str
    db_size: int
    leader: int
    raft_index: int
    raft_term: int
    raft_applied_index: int = 0
    errors: tuple[str, ...] = ()
    db_size_in_use: int = 0
    is_learner: bool = False


@attrs.frozen(kw_only=True)
class HashKVResponse:
    """A member's hash of its key-value store up to a revision (compare it across members).

    Attributes:
        header: the response header; ``header.revision`` is the revision the hash covers.
        hash: the hash (a 32-bit CRC).
        compact_revision: the member's compaction revision when it computed the hash.
    """

    header: ResponseHeader
    hash: int
    compact_revision: int = 0


@attrs.frozen(kw_only=True)
class MemberAddResponse:
    """The result of :meth:`~etcdsync.client.Client.member_add`.

    Attributes:
        header: the response header.
        member: the new member: its ID and peer URLs (its name and client URLs stay empty until it
            has started and joined).
        members: every member of the cluster after the change, the new one included.
    """

    header: ResponseHeader
    member: Member
    members: tuple[Member, ...] = ()


@attrs.frozen(kw_only=True)
class Permission:
    """A role's permission on a key range.

    Attributes:
        perm_type: what the role may do there.
        key: the first key of the range (or the only key, when ``range_end`` is empty).
        range_end: the end of the range, exclusive; ``b""`` for the single key ``key``, ``b"\\x00"``
            for every key from ``key`` on.
    """

    perm_type: PermissionType
    key: bytes
    range_end: bytes = b""


@attrs.frozen(kw_only=True)
class AuthUser:
    """A user, from :meth:`~etcdsync.client.Client.user_get`: its name and the roles granted to it."""

    name: str
    roles: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class AuthRole:
    """A role, from :meth:`~etcdsync.client.Client.role_get`: its name and its permissions."""

    name: str
    permissions: tuple[Permission, ...] = ()


@attrs.frozen(kw_only=True)
class SnapshotInfo:
    """A snapshot written by :meth:`~etcdsync.client.Client.save_snapshot`.

    Attributes:
        path: the file written.
        db_size: the size of the database in it, in bytes; the file is 32 bytes longer (the digest).
        sha256: the SHA-256 digest of the database, as sent by the server and checked on receipt.
    """

    path: str
    db_size: int
    sha256: bytes
