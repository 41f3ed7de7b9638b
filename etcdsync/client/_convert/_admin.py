"""Conversion for the Cluster, Maintenance and Auth administration messages.

Requests go out as serialized ``bytes``; responses come in as ``bytes`` and leave as the value types of
``_types.py`` and ``_types_admin.py``. Responses that carry only a header share :func:`header_only`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final, Protocol

from etcdsync.client._pb import auth_pb2, rpc_pb2

from .._types import MemberListResponse, ResponseHeader
from .._types_admin import (
    Alarm,
    AlarmType,
    AuthRole,
    AuthUser,
    HashKVResponse,
    MemberAddResponse,
    Permission,
    PermissionType,
    StatusResponse,
)
from . import _methods as rpc
from ._cluster import _member
from ._kv import header

__all__ = [
    "alarm_request",
    "alarms",
    "auth_disable_request",
    "auth_enable_request",
    "defragment_request",
    "hash_kv",
    "hash_kv_request",
    "header_only",
    "member_add",
    "member_add_request",
    "member_changed",
    "member_promote_request",
    "member_remove_request",
    "member_update_request",
    "move_leader_request",
    "names",
    "role_add_request",
    "role_delete_request",
    "role_get",
    "role_get_request",
    "role_grant_permission_request",
    "role_list_request",
    "role_revoke_permission_request",
    "snapshot_chunk",
    "snapshot_request",
    "status",
    "status_request",
    "user_add_request",
    "user_change_password_request",
    "user_delete_request",
    "user_get",
    "user_get_request",
    "user_grant_role_request",
    "user_list_request",
    "user_revoke_role_request",
]

# ---------------------------------------------------------------------------------------------------------
# Cluster


def member_add_request(peer_urls: Iterable[str], learner: bool) -> bytes:
    """A serialized ``MemberAddRequest``."""
    return rpc_pb2.MemberAddRequest(peerURLs=list(peer_urls), isLearner=learner).SerializeToString()


def member_remove_request(member_id: int) -> bytes:
    """A serialized ``MemberRemoveRequest``."""
    return rpc_pb2.MemberRemoveRequest(ID=member_id).SerializeToString()


def member_update_request(member_id: int, peer_urls: Iterable[str]) -> bytes:
    """A serialized ``MemberUpdateRequest``."""
    return rpc_pb2.MemberUpdateRequest(ID=member_id, peerURLs=list(peer_urls)).SerializeToString()


def member_promote_request(member_id: int) -> bytes:
    """A serialized ``MemberPromoteRequest``."""
    return rpc_pb2.MemberPromoteRequest(ID=member_id).SerializeToString()


def member_add(data: bytes) -> MemberAddResponse:
    """Parse a serialized ``MemberAddResponse``."""
    msg = rpc_pb2.MemberAddResponse.FromString(data)
    return MemberAddResponse(
        header=header(msg.header),
        member=_member(msg.member),
        members=tuple(_member(m) for m in msg.members),
    )


class _MembersResponse(Protocol):
    @property
    def header(self) -> rpc_pb2.ResponseHeader: ...
    @property
    def members(self) -> Iterable[rpc_pb2.Member]: ...


_MEMBER_CHANGES: Final[Mapping[str, Callable[[bytes], _MembersResponse]]] = {
    rpc.CLUSTER_MEMBER_REMOVE.path: rpc_pb2.MemberRemoveResponse.FromString,
    rpc.CLUSTER_MEMBER_UPDATE.path: rpc_pb2.MemberUpdateResponse.FromString,
    rpc.CLUSTER_MEMBER_PROMOTE.path: rpc_pb2.MemberPromoteResponse.FromString,
}


def member_changed(path: str, data: bytes) -> MemberListResponse:
    """Parse the response of MemberRemove, MemberUpdate or MemberPromote (``path``): the new member list."""
    msg = _MEMBER_CHANGES[path](data)
    return MemberListResponse(header=header(msg.header), members=tuple(_member(m) for m in msg.members))


# ---------------------------------------------------------------------------------------------------------
# Maintenance


def alarm_request(action: int, member_id: int, alarm: AlarmType) -> bytes:
    """A serialized ``AlarmRequest``; ``action`` is 0 (GET), 1 (ACTIVATE) or 2 (DEACTIVATE)."""
    return rpc_pb2.AlarmRequest(
        action=rpc_pb2.AlarmRequest.AlarmAction.ValueType(action),
        memberID=member_id,
        alarm=rpc_pb2.AlarmType.ValueType(alarm),
    ).SerializeToString()


def alarms(data: bytes) -> tuple[Alarm, ...]:
    """The alarms of a serialized ``AlarmResponse``."""
    msg = rpc_pb2.AlarmResponse.FromString(data)
    return tuple(Alarm(member_id=a.memberID, alarm=AlarmType(a.alarm)) for a in msg.alarms)


def status_request() -> bytes:
    """A serialized ``StatusRequest``."""
    return rpc_pb2.StatusRequest().SerializeToString()


def status(data: bytes) -> StatusResponse:
    """Parse a serialized ``StatusResponse``."""
    msg = rpc_pb2.StatusResponse.FromString(data)
    return StatusResponse(
        header=header(msg.header),
        version=msg.version,
        db_size=msg.dbSize,
        leader=msg.leader,
        raft_index=msg.raftIndex,
        raft_term=msg.raftTerm,
        raft_applied_index=msg.raftAppliedIndex,
        errors=tuple(msg.errors),
        db_size_in_use=msg.dbSizeInUse,
        is_learner=msg.isLearner,
    )


def defragment_request() -> bytes:
    """A serialized ``DefragmentRequest``."""
    return rpc_pb2.DefragmentRequest().SerializeToString()


def hash_kv_request(revision: int) -> bytes:
    """A serialized ``HashKVRequest``."""
    return rpc_pb2.HashKVRequest(revision=revision).SerializeToString()


def hash_kv(data: bytes) -> HashKVResponse:
    """Parse a serialized ``HashKVResponse``."""
    msg = rpc_pb2.HashKVResponse.FromString(data)
    return HashKVResponse(header=header(msg.header), hash=msg.hash, compact_revision=msg.compact_revision)


def move_leader_request(target_id: int) -> bytes:
    """A serialized ``MoveLeaderRequest``."""
    return rpc_pb2.MoveLeaderRequest(targetID=target_id).SerializeToString()


def snapshot_request() -> bytes:
    """A serialized ``SnapshotRequest``."""
    return rpc_pb2.SnapshotRequest().SerializeToString()


def snapshot_chunk(data: bytes) -> tuple[int, bytes]:
    """Parse a serialized ``SnapshotResponse`` into ``(remaining_bytes, blob)``."""
    msg = rpc_pb2.SnapshotResponse.FromString(data)
    return msg.remaining_bytes, msg.blob


# ---------------------------------------------------------------------------------------------------------
# Auth administration


def auth_enable_request() -> bytes:
    """A serialized ``AuthEnableRequest``."""
    return rpc_pb2.AuthEnableRequest().SerializeToString()


def auth_disable_request() -> bytes:
    """A serialized ``AuthDisableRequest``."""
    return rpc_pb2.AuthDisableRequest().SerializeToString()


def user_add_request(name: str, password: str, no_password: bool) -> bytes:
    """A serialized ``AuthUserAddRequest``."""
    return rpc_pb2.AuthUserAddRequest(
        name=name, password=password, options=auth_pb2.UserAddOptions(no_password=no_password)
    ).SerializeToString()


def user_delete_request(name: str) -> bytes:
    """A serialized ``AuthUserDeleteRequest``."""
    return rpc_pb2.AuthUserDeleteRequest(name=name).SerializeToString()


def user_get_request(name: str) -> bytes:
    """A serialized ``AuthUserGetRequest``."""
    return rpc_pb2.AuthUserGetRequest(name=name).SerializeToString()


def user_get(name: str, data: bytes) -> AuthUser:
    """Parse a serialized ``AuthUserGetResponse`` for the user ``name``."""
    return AuthUser(name=name, roles=tuple(rpc_pb2.AuthUserGetResponse.FromString(data).roles))


def user_list_request() -> bytes:
    """A serialized ``AuthUserListRequest``."""
    return rpc_pb2.AuthUserListRequest().SerializeToString()


def user_change_password_request(name: str, password: str) -> bytes:
    """A serialized ``AuthUserChangePasswordRequest``."""
    return rpc_pb2.AuthUserChangePasswordRequest(name=name, password=password).SerializeToString()


def user_grant_role_request(user: str, role: str) -> bytes:
    """A serialized ``AuthUserGrantRoleRequest``."""
    return rpc_pb2.AuthUserGrantRoleRequest(user=user, role=role).SerializeToString()


def user_revoke_role_request(user: str, role: str) -> bytes:
    """A serialized ``AuthUserRevokeRoleRequest``."""
    return rpc_pb2.AuthUserRevokeRoleRequest(name=user, role=role).SerializeToString()


def role_add_request(name: str) -> bytes:
    """A serialized ``AuthRoleAddRequest``."""
    return rpc_pb2.AuthRoleAddRequest(name=name).SerializeToString()


def role_delete_request(name: str) -> bytes:
    """A serialized ``AuthRoleDeleteRequest``."""
    return rpc_pb2.AuthRoleDeleteRequest(role=name).SerializeToString()


def role_get_request(name: str) -> bytes:
    """A serialized ``AuthRoleGetRequest``."""
    return rpc_pb2.AuthRoleGetRequest(role=name).SerializeToString()


def role_get(name: str, data: bytes) -> AuthRole:
    """Parse a serialized ``AuthRoleGetResponse`` for the role ``name``."""
    msg = rpc_pb2.AuthRoleGetResponse.FromString(data)
    return AuthRole(
        name=name,
        permissions=tuple(
            Permission(perm_type=PermissionType(p.permType), key=p.key, range_end=p.range_end)
            for p in msg.perm
        ),
    )


def role_list_request() -> bytes:
    """A serialized ``AuthRoleListRequest``."""
    return rpc_pb2.AuthRoleListRequest().SerializeToString()


def role_grant_permission_request(role: str, permission: Permission) -> bytes:
    """A serialized ``AuthRoleGrantPermissionRequest``."""
    perm = auth_pb2.Permission(
        permType=auth_pb2.Permission.Type.ValueType(permission.perm_type),
        key=permission.key,
        range_end=permission.range_end,
    )
    return rpc_pb2.AuthRoleGrantPermissionRequest(name=role, perm=perm).SerializeToString()


def role_revoke_permission_request(role: str, key: bytes, range_end: bytes) -> bytes:
    """A serialized ``AuthRoleRevokePermissionRequest``."""
    return rpc_pb2.AuthRoleRevokePermissionRequest(
        role=role, key=key, range_end=range_end
    ).SerializeToString()


def names(path: str, data: bytes) -> tuple[str, ...]:
    """The names in a serialized ``AuthUserListResponse`` or ``AuthRoleListResponse`` (by ``path``)."""
    if path == rpc.AUTH_USER_LIST.path:
        return tuple(rpc_pb2.AuthUserListResponse.FromString(data).users)
    if path == rpc.AUTH_ROLE_LIST.path:
        return tuple(rpc_pb2.AuthRoleListResponse.FromString(data).roles)
    raise ValueError(f"{path} does not answer with a list of names")


# ---------------------------------------------------------------------------------------------------------
# Responses that carry nothing but a header


class _HeaderOnly(Protocol):
    @property
    def header(self) -> rpc_pb2.ResponseHeader: ...


_HEADER_ONLY: Final[Mapping[str, Callable[[bytes], _HeaderOnly]]] = {
    rpc.AUTH_ENABLE.path: rpc_pb2.AuthEnableResponse.FromString,
    rpc.AUTH_DISABLE.path: rpc_pb2.AuthDisableResponse.FromString,
    rpc.AUTH_USER_ADD.path: rpc_pb2.AuthUserAddResponse.FromString,
    rpc.AUTH_USER_DELETE.path: rpc_pb2.AuthUserDeleteResponse.FromString,
    rpc.AUTH_USER_CHANGE_PASSWORD.path: rpc_pb2.AuthUserChangePasswordResponse.FromString,
    rpc.AUTH_USER_GRANT_ROLE.path: rpc_pb2.AuthUserGrantRoleResponse.FromString,
    rpc.AUTH_USER_REVOKE_ROLE.path: rpc_pb2.AuthUserRevokeRoleResponse.FromString,
    rpc.AUTH_ROLE_ADD.path: rpc_pb2.AuthRoleAddResponse.FromString,
    rpc.AUTH_ROLE_DELETE.path: rpc_pb2.AuthRoleDeleteResponse.FromString,
    rpc.AUTH_ROLE_GRANT_PERMISSION.path: rpc_pb2.AuthRoleGrantPermissionResponse.FromString,
    rpc.AUTH_ROLE_REVOKE_PERMISSION.path: rpc_pb2.AuthRoleRevokePermissionResponse.FromString,
}


def header_only(path: str, data: bytes) -> ResponseHeader:
    """The header of the serialized response of ``path``, for methods that answer with nothing else."""
    return header(_HEADER_ONLY[path](data).header)
