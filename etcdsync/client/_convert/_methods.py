"""The gRPC method table: one typed `Method` per etcd RPC, built from the generated descriptors.

Each constant pairs the generated request and response classes (so callers are type-checked) with
the path and streaming flags read from the service descriptor (so they cannot drift from the
schema). Building a constant checks the classes against the descriptor, so a mismatch fails at
import rather than on the wire.

Our proto packages are private (``etcdsync_pb.etcdserverpb`` and so on, see
``etcdsync.client._pb``), but etcd routes on the upstream names, so paths drop the
``etcdsync_pb.`` prefix: ``/etcdserverpb.KV/Range``, ``/v3lockpb.Lock/Lock``,
``/v3electionpb.Election/Campaign``.

`AUTH_STATUS` and `MAINTENANCE_DOWNGRADE` exist only on etcd >= 3.5; a 3.4 server answers them with
``UNIMPLEMENTED``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Generic, TypeVar

import attrs
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from etcdsync.client._pb import rpc_pb2, v3election_pb2, v3lock_pb2

_PRIVATE_PACKAGE_PREFIX = "etcdsync_pb."

# Covariant: a Method is read-only, so Method[RangeRequest, RangeResponse] is a
# Method[Message, Message], which lets METHODS hold every constant without `Any`.
RequestT = TypeVar("RequestT", bound=Message, covariant=True)
ResponseT = TypeVar("ResponseT", bound=Message, covariant=True)


@attrs.frozen
class Method(Generic[RequestT, ResponseT]):
    """One gRPC method: its wire path, message classes and streaming shape."""

    path: str
    request: type[RequestT]
    response: type[ResponseT]
    client_streaming: bool
    server_streaming: bool


def _method(
    service: ServiceDescriptor, name: str, request: type[RequestT], response: type[ResponseT]
) -> Method[RequestT, ResponseT]:
    descriptor = service.methods_by_name[name]
    if descriptor.input_type.full_name != request.DESCRIPTOR.full_name:
        raise TypeError(f"{descriptor.full_name} takes {descriptor.input_type.full_name}, not {request}")
    if descriptor.output_type.full_name != response.DESCRIPTOR.full_name:
        raise TypeError(f"{descriptor.full_name} returns {descriptor.output_type.full_name}, not {response}")
    service_name = service.full_name.removeprefix(_PRIVATE_PACKAGE_PREFIX)
    if service_name == service.full_name:
        raise ValueError(f"{service.full_name} is not in a private etcdsync_pb package")
    return Method(
        path=f"/{service_name}/{descriptor.name}",
        request=request,
        response=response,
        client_streaming=descriptor.client_streaming,
        server_streaming=descriptor.server_streaming,
    )


_KV = rpc_pb2.DESCRIPTOR.services_by_name["KV"]
_WATCH = rpc_pb2.DESCRIPTOR.services_by_name["Watch"]
_LEASE = rpc_pb2.DESCRIPTOR.services_by_name["Lease"]
_CLUSTER = rpc_pb2.DESCRIPTOR.services_by_name["Cluster"]
_MAINTENANCE = rpc_pb2.DESCRIPTOR.services_by_name["Maintenance"]
_AUTH = rpc_pb2.DESCRIPTOR.services_by_name["Auth"]
_LOCK = v3lock_pb2.DESCRIPTOR.services_by_name["Lock"]
_ELECTION = v3election_pb2.DESCRIPTOR.services_by_name["Election"]

# etcdserverpb.KV
KV_RANGE = _method(_KV, "Range", rpc_pb2.RangeRequest, rpc_pb2.RangeResponse)
KV_PUT = _method(_KV, "Put", rpc_pb2.PutRequest, rpc_pb2.PutResponse)
KV_DELETE_RANGE = _method(_KV, "DeleteRange", rpc_pb2.DeleteRangeRequest, rpc_pb2.DeleteRangeResponse)
KV_TXN = _method(_KV, "Txn", rpc_pb2.TxnRequest, rpc_pb2.TxnResponse)
KV_COMPACT = _method(_KV, "Compact", rpc_pb2.CompactionRequest, rpc_pb2.CompactionResponse)

# etcdserverpb.Watch (bidirectional stream)
WATCH = _method(_WATCH, "Watch", rpc_pb2.WatchRequest, rpc_pb2.WatchResponse)

# etcdserverpb.Lease
LEASE_GRANT = _method(_LEASE, "LeaseGrant", rpc_pb2.LeaseGrantRequest, rpc_pb2.LeaseGrantResponse)
LEASE_REVOKE = _method(_LEASE, "LeaseRevoke", rpc_pb2.LeaseRevokeRequest, rpc_pb2.LeaseRevokeResponse)
LEASE_KEEP_ALIVE = _method(  # bidirectional stream
    _LEASE, "LeaseKeepAlive", rpc_pb2.LeaseKeepAliveRequest, rpc_pb2.LeaseKeepAliveResponse
)
LEASE_TIME_TO_LIVE = _method(
    _LEASE, "LeaseTimeToLive", rpc_pb2.LeaseTimeToLiveRequest, rpc_pb2.LeaseTimeToLiveResponse
)
LEASE_LEASES = _method(_LEASE, "LeaseLeases", rpc_pb2.LeaseLeasesRequest, rpc_pb2.LeaseLeasesResponse)

# etcdserverpb.Cluster
CLUSTER_MEMBER_ADD = _method(_CLUSTER, "MemberAdd", rpc_pb2.MemberAddRequest, rpc_pb2.MemberAddResponse)
CLUSTER_MEMBER_REMOVE = _method(
    _CLUSTER, "MemberRemove", rpc_pb2.MemberRemoveRequest, rpc_pb2.MemberRemoveResponse
)
CLUSTER_MEMBER_UPDATE = _method(
    _CLUSTER, "MemberUpdate", rpc_pb2.MemberUpdateRequest, rpc_pb2.MemberUpdateResponse
)
CLUSTER_MEMBER_LIST = _method(_CLUSTER, "MemberList", rpc_pb2.MemberListRequest, rpc_pb2.MemberListResponse)
CLUSTER_MEMBER_PROMOTE = _method(
    _CLUSTER, "MemberPromote", rpc_pb2.MemberPromoteRequest, rpc_pb2.MemberPromoteResponse
)

# etcdserverpb.Maintenance
MAINTENANCE_ALARM = _method(_MAINTENANCE, "Alarm", rpc_pb2.AlarmRequest, rpc_pb2.AlarmResponse)
MAINTENANCE_STATUS = _method(_MAINTENANCE, "Status", rpc_pb2.StatusRequest, rpc_pb2.StatusResponse)
MAINTENANCE_DEFRAGMENT = _method(
    _MAINTENANCE, "Defragment", rpc_pb2.DefragmentRequest, rpc_pb2.DefragmentResponse
)
MAINTENANCE_HASH = _method(_MAINTENANCE, "Hash", rpc_pb2.HashRequest, rpc_pb2.HashResponse)
MAINTENANCE_HASH_KV = _method(_MAINTENANCE, "HashKV", rpc_pb2.HashKVRequest, rpc_pb2.HashKVResponse)
MAINTENANCE_SNAPSHOT = _method(  # server stream
    _MAINTENANCE, "Snapshot", rpc_pb2.SnapshotRequest, rpc_pb2.SnapshotResponse
)
MAINTENANCE_MOVE_LEADER = _method(
    _MAINTENANCE, "MoveLeader", rpc_pb2.MoveLeaderRequest, rpc_pb2.MoveLeaderResponse
)
MAINTENANCE_DOWNGRADE = _method(  # etcd >= 3.5
    _MAINTENANCE, "Downgrade", rpc_pb2.DowngradeRequest, rpc_pb2.DowngradeResponse
)

# etcdserverpb.Auth
AUTH_ENABLE = _method(_AUTH, "AuthEnable", rpc_pb2.AuthEnableRequest, rpc_pb2.AuthEnableResponse)
AUTH_DISABLE = _method(_AUTH, "AuthDisable", rpc_pb2.AuthDisableRequest, rpc_pb2.AuthDisableResponse)
AUTH_STATUS = _method(  # etcd >= 3.5
    _AUTH, "AuthStatus", rpc_pb2.AuthStatusRequest, rpc_pb2.AuthStatusResponse
)
AUTH_AUTHENTICATE = _method(_AUTH, "Authenticate", rpc_pb2.AuthenticateRequest, rpc_pb2.AuthenticateResponse)
AUTH_USER_ADD = _method(_AUTH, "UserAdd", rpc_pb2.AuthUserAddRequest, rpc_pb2.AuthUserAddResponse)
AUTH_USER_GET = _method(_AUTH, "UserGet", rpc_pb2.AuthUserGetRequest, rpc_pb2.AuthUserGetResponse)
AUTH_USER_LIST = _method(_AUTH, "UserList", rpc_pb2.AuthUserListRequest, rpc_pb2.AuthUserListResponse)
AUTH_USER_DELETE = _method(_AUTH, "UserDelete", rpc_pb2.AuthUserDeleteRequest, rpc_pb2.AuthUserDeleteResponse)
AUTH_USER_CHANGE_PASSWORD = _method(
    _AUTH,
    "UserChangePassword",
    rpc_pb2.AuthUserChangePasswordRequest,
    rpc_pb2.AuthUserChangePasswordResponse,
)
AUTH_USER_GRANT_ROLE = _method(
    _AUTH, "UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest, rpc_pb2.AuthUserGrantRoleResponse
)
AUTH_USER_REVOKE_ROLE = _method(
    _AUTH, "UserRevokeRole", rpc_pb2.AuthUserRevokeRoleRequest, rpc_pb2.AuthUserRevokeRoleResponse
)
AUTH_ROLE_ADD = _method(_AUTH, "RoleAdd", rpc_pb2.AuthRoleAddRequest, rpc_pb2.AuthRoleAddResponse)
AUTH_ROLE_GET = _method(_AUTH, "RoleGet", rpc_pb2.AuthRoleGetRequest, rpc_pb2.AuthRoleGetResponse)
AUTH_ROLE_LIST = _method(_AUTH, "RoleList", rpc_pb2.AuthRoleListRequest, rpc_pb2.AuthRoleListResponse)
AUTH_ROLE_DELETE = _method(_AUTH, "RoleDelete", rpc_pb2.AuthRoleDeleteRequest, rpc_pb2.AuthRoleDeleteResponse)
AUTH_ROLE_GRANT_PERMISSION = _method(
    _AUTH,
    "RoleGrantPermission",
    rpc_pb2.AuthRoleGrantPermissionRequest,
    rpc_pb2.AuthRoleGrantPermissionResponse,
)
AUTH_ROLE_REVOKE_PERMISSION = _method(
    _AUTH,
    "RoleRevokePermission",
    rpc_pb2.AuthRoleRevokePermissionRequest,
    rpc_pb2.AuthRoleRevokePermissionResponse,
)

# v3lockpb.Lock
LOCK_LOCK = _method(_LOCK, "Lock", v3lock_pb2.LockRequest, v3lock_pb2.LockResponse)
LOCK_UNLOCK = _method(_LOCK, "Unlock", v3lock_pb2.UnlockRequest, v3lock_pb2.UnlockResponse)

# v3electionpb.Election
ELECTION_CAMPAIGN = _method(
    _ELECTION, "Campaign", v3election_pb2.CampaignRequest, v3election_pb2.CampaignResponse
)
ELECTION_PROCLAIM = _method(
    _ELECTION, "Proclaim", v3election_pb2.ProclaimRequest, v3election_pb2.ProclaimResponse
)
ELECTION_LEADER = _method(_ELECTION, "Leader", v3election_pb2.LeaderRequest, v3election_pb2.LeaderResponse)
ELECTION_OBSERVE = _method(  # server stream
    _ELECTION, "Observe", v3election_pb2.LeaderRequest, v3election_pb2.LeaderResponse
)
ELECTION_RESIGN = _method(_ELECTION, "Resign", v3election_pb2.ResignRequest, v3election_pb2.ResignResponse)

_ALL: tuple[Method[Message, Message], ...] = (
    KV_RANGE,
    KV_PUT,
    KV_DELETE_RANGE,
    KV_TXN,
    KV_COMPACT,
    WATCH,
    LEASE_GRANT,
    LEASE_REVOKE,
    LEASE_KEEP_ALIVE,
    LEASE_TIME_TO_LIVE,
    LEASE_LEASES,
    CLUSTER_MEMBER_ADD,
    CLUSTER_MEMBER_REMOVE,
    CLUSTER_MEMBER_UPDATE,
    CLUSTER_MEMBER_LIST,
    CLUSTER_MEMBER_PROMOTE,
    MAINTENANCE_ALARM,
    MAINTENANCE_STATUS,
    MAINTENANCE_DEFRAGMENT,
    MAINTENANCE_HASH,
    MAINTENANCE_HASH_KV,
    MAINTENANCE_SNAPSHOT,
    MAINTENANCE_MOVE_LEADER,
    MAINTENANCE_DOWNGRADE,
    AUTH_ENABLE,
    AUTH_DISABLE,
    AUTH_STATUS,
    AUTH_AUTHENTICATE,
    AUTH_USER_ADD,
    AUTH_USER_GET,
    AUTH_USER_LIST,
    AUTH_USER_DELETE,
    AUTH_USER_CHANGE_PASSWORD,
    AUTH_USER_GRANT_ROLE,
    AUTH_USER_REVOKE_ROLE,
    AUTH_ROLE_ADD,
    AUTH_ROLE_GET,
    AUTH_ROLE_LIST,
    AUTH_ROLE_DELETE,
    AUTH_ROLE_GRANT_PERMISSION,
    AUTH_ROLE_REVOKE_PERMISSION,
    LOCK_LOCK,
    LOCK_UNLOCK,
    ELECTION_CAMPAIGN,
    ELECTION_PROCLAIM,
    ELECTION_LEADER,
    ELECTION_OBSERVE,
    ELECTION_RESIGN,
)

#: Every method above, by path (read-only).
METHODS: Mapping[str, Method[Message, Message]] = MappingProxyType({m.path: m for m in _ALL})
