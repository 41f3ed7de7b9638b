"""The gRPC method table and the wire form of our etcd schema.

Paths and streaming flags must be exactly what etcd routes on; field numbers are pinned by
hand-computed wire bytes, because a wrong number serializes happily and corrupts data silently.
"""

from __future__ import annotations

import attrs
import pytest
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message

from etcdsync.client._convert import _methods
from etcdsync.client._convert._methods import METHODS, Method
from etcdsync.client._pb import auth_pb2, kv_pb2, rpc_pb2, v3election_pb2, v3lock_pb2

# path -> (constant name, request, response, client_streaming, server_streaming)
EXPECTED: dict[str, tuple[str, type[Message], type[Message], bool, bool]] = {
    "/etcdserverpb.KV/Range": ("KV_RANGE", rpc_pb2.RangeRequest, rpc_pb2.RangeResponse, False, False),
    "/etcdserverpb.KV/Put": ("KV_PUT", rpc_pb2.PutRequest, rpc_pb2.PutResponse, False, False),
    "/etcdserverpb.KV/DeleteRange": (
        "KV_DELETE_RANGE",
        rpc_pb2.DeleteRangeRequest,
        rpc_pb2.DeleteRangeResponse,
        False,
        False,
    ),
    "/etcdserverpb.KV/Txn": ("KV_TXN", rpc_pb2.TxnRequest, rpc_pb2.TxnResponse, False, False),
    "/etcdserverpb.KV/Compact": (
        "KV_COMPACT",
        rpc_pb2.CompactionRequest,
        rpc_pb2.CompactionResponse,
        False,
        False,
    ),
    "/etcdserverpb.Watch/Watch": ("WATCH", rpc_pb2.WatchRequest, rpc_pb2.WatchResponse, True, True),
    "/etcdserverpb.Lease/LeaseGrant": (
        "LEASE_GRANT",
        rpc_pb2.LeaseGrantRequest,
        rpc_pb2.LeaseGrantResponse,
        False,
        False,
    ),
    "/etcdserverpb.Lease/LeaseRevoke": (
        "LEASE_REVOKE",
        rpc_pb2.LeaseRevokeRequest,
        rpc_pb2.LeaseRevokeResponse,
        False,
        False,
    ),
    "/etcdserverpb.Lease/LeaseKeepAlive": (
        "LEASE_KEEP_ALIVE",
        rpc_pb2.LeaseKeepAliveRequest,
        rpc_pb2.LeaseKeepAliveResponse,
        True,
        True,
    ),
    "/etcdserverpb.Lease/LeaseTimeToLive": (
        "LEASE_TIME_TO_LIVE",
        rpc_pb2.LeaseTimeToLiveRequest,
        rpc_pb2.LeaseTimeToLiveResponse,
        False,
        False,
    ),
    "/etcdserverpb.Lease/LeaseLeases": (
        "LEASE_LEASES",
        rpc_pb2.LeaseLeasesRequest,
        rpc_pb2.LeaseLeasesResponse,
        False,
        False,
    ),
    "/etcdserverpb.Cluster/MemberAdd": (
        "CLUSTER_MEMBER_ADD",
        rpc_pb2.MemberAddRequest,
        rpc_pb2.MemberAddResponse,
        False,
        False,
    ),
    "/etcdserverpb.Cluster/MemberRemove": (
        "CLUSTER_MEMBER_REMOVE",
        rpc_pb2.MemberRemoveRequest,
        rpc_pb2.MemberRemoveResponse,
        False,
        False,
    ),
    "/etcdserverpb.Cluster/MemberUpdate": (
        "CLUSTER_MEMBER_UPDATE",
        rpc_pb2.MemberUpdateRequest,
        rpc_pb2.MemberUpdateResponse,
        False,
        False,
    ),
    "/etcdserverpb.Cluster/MemberList": (
        "CLUSTER_MEMBER_LIST",
        rpc_pb2.MemberListRequest,
        rpc_pb2.MemberListResponse,
        False,
        False,
    ),
    "/etcdserverpb.Cluster/MemberPromote": (
        "CLUSTER_MEMBER_PROMOTE",
        rpc_pb2.MemberPromoteRequest,
        rpc_pb2.MemberPromoteResponse,
        False,
        False,
    ),
    "/etcdserverpb.Maintenance/Alarm": (
        "MAINTENANCE_ALARM",
        rpc_pb2.AlarmRequest,
        rpc_pb2.AlarmResponse,
        False,
        False,
    ),
    "/etcdserverpb.Maintenance/Status": (
        "MAINTENANCE_STATUS",
        rpc_pb2.StatusRequest,
        rpc_pb2.StatusResponse,
        False,
        False,
    ),
    "/etcdserverpb.Maintenance/Defragment": (
        "MAINTENANCE_DEFRAGMENT",
        rpc_pb2.DefragmentRequest,
        rpc_pb2.DefragmentResponse,
        False,
        False,
    ),
    "/etcdserverpb.Maintenance/Hash": (
        "MAINTENANCE_HASH",
        rpc_pb2.HashRequest,
        rpc_pb2.HashResponse,
        False,
        False,
    ),
    "/etcdserverpb.Maintenance/HashKV": (
        "MAINTENANCE_HASH_KV",
        rpc_pb2.HashKVRequest,
        rpc_pb2.HashKVResponse,
        False,
        False,
    ),
    "/etcdserverpb.Maintenance/Snapshot": (
        "MAINTENANCE_SNAPSHOT",
        rpc_pb2.SnapshotRequest,
        rpc_pb2.SnapshotResponse,
        False,
        True,
    ),
    "/etcdserverpb.Maintenance/MoveLeader": (
        "MAINTENANCE_MOVE_LEADER",
        rpc_pb2.MoveLeaderRequest,
        rpc_pb2.MoveLeaderResponse,
        False,
        False,
    ),
    "/etcdserverpb.Maintenance/Downgrade": (
        "MAINTENANCE_DOWNGRADE",
        rpc_pb2.DowngradeRequest,
        rpc_pb2.DowngradeResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/AuthEnable": (
        "AUTH_ENABLE",
        rpc_pb2.AuthEnableRequest,
        rpc_pb2.AuthEnableResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/AuthDisable": (
        "AUTH_DISABLE",
        rpc_pb2.AuthDisableRequest,
        rpc_pb2.AuthDisableResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/AuthStatus": (
        "AUTH_STATUS",
        rpc_pb2.AuthStatusRequest,
        rpc_pb2.AuthStatusResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/Authenticate": (
        "AUTH_AUTHENTICATE",
        rpc_pb2.AuthenticateRequest,
        rpc_pb2.AuthenticateResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/UserAdd": (
        "AUTH_USER_ADD",
        rpc_pb2.AuthUserAddRequest,
        rpc_pb2.AuthUserAddResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/UserGet": (
        "AUTH_USER_GET",
        rpc_pb2.AuthUserGetRequest,
        rpc_pb2.AuthUserGetResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/UserList": (
        "AUTH_USER_LIST",
        rpc_pb2.AuthUserListRequest,
        rpc_pb2.AuthUserListResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/UserDelete": (
        "AUTH_USER_DELETE",
        rpc_pb2.AuthUserDeleteRequest,
        rpc_pb2.AuthUserDeleteResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/UserChangePassword": (
        "AUTH_USER_CHANGE_PASSWORD",
        rpc_pb2.AuthUserChangePasswordRequest,
        rpc_pb2.AuthUserChangePasswordResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/UserGrantRole": (
        "AUTH_USER_GRANT_ROLE",
        rpc_pb2.AuthUserGrantRoleRequest,
        rpc_pb2.AuthUserGrantRoleResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/UserRevokeRole": (
        "AUTH_USER_REVOKE_ROLE",
        rpc_pb2.AuthUserRevokeRoleRequest,
        rpc_pb2.AuthUserRevokeRoleResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/RoleAdd": (
        "AUTH_ROLE_ADD",
        rpc_pb2.AuthRoleAddRequest,
        rpc_pb2.AuthRoleAddResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/RoleGet": (
        "AUTH_ROLE_GET",
        rpc_pb2.AuthRoleGetRequest,
        rpc_pb2.AuthRoleGetResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/RoleList": (
        "AUTH_ROLE_LIST",
        rpc_pb2.AuthRoleListRequest,
        rpc_pb2.AuthRoleListResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/RoleDelete": (
        "AUTH_ROLE_DELETE",
        rpc_pb2.AuthRoleDeleteRequest,
        rpc_pb2.AuthRoleDeleteResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/RoleGrantPermission": (
        "AUTH_ROLE_GRANT_PERMISSION",
        rpc_pb2.AuthRoleGrantPermissionRequest,
        rpc_pb2.AuthRoleGrantPermissionResponse,
        False,
        False,
    ),
    "/etcdserverpb.Auth/RoleRevokePermission": (
        "AUTH_ROLE_REVOKE_PERMISSION",
        rpc_pb2.AuthRoleRevokePermissionRequest,
        rpc_pb2.AuthRoleRevokePermissionResponse,
        False,
        False,
    ),
    "/v3lockpb.Lock/Lock": ("LOCK_LOCK", v3lock_pb2.LockRequest, v3lock_pb2.LockResponse, False, False),
    "/v3lockpb.Lock/Unlock": (
        "LOCK_UNLOCK",
        v3lock_pb2.UnlockRequest,
        v3lock_pb2.UnlockResponse,
        False,
        False,
    ),
    "/v3electionpb.Election/Campaign": (
        "ELECTION_CAMPAIGN",
        v3election_pb2.CampaignRequest,
        v3election_pb2.CampaignResponse,
        False,
        False,
    ),
    "/v3electionpb.Election/Proclaim": (
        "ELECTION_PROCLAIM",
        v3election_pb2.ProclaimRequest,
        v3election_pb2.ProclaimResponse,
        False,
        False,
    ),
    "/v3electionpb.Election/Leader": (
        "ELECTION_LEADER",
        v3election_pb2.LeaderRequest,
        v3election_pb2.LeaderResponse,
        False,
        False,
    ),
    "/v3electionpb.Election/Observe": (
        "ELECTION_OBSERVE",
        v3election_pb2.LeaderRequest,
        v3election_pb2.LeaderResponse,
        False,
        True,
    ),
    "/v3electionpb.Election/Resign": (
        "ELECTION_RESIGN",
        v3election_pb2.ResignRequest,
        v3election_pb2.ResignResponse,
        False,
        False,
    ),
}


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_method(path: str) -> None:
    name, request, response, client_streaming, server_streaming = EXPECTED[path]
    method = getattr(_methods, name)
    assert method == Method(
        path=path,
        request=request,
        response=response,
        client_streaming=client_streaming,
        server_streaming=server_streaming,
    )
    assert METHODS[path] is method


def test_table_is_exactly_the_expected_paths() -> None:
    assert set(METHODS) == set(EXPECTED)


def test_table_covers_every_rpc_in_the_schema() -> None:
    described = {
        f"/{service.full_name.removeprefix('etcdsync_pb.')}/{method.name}"
        for module in (rpc_pb2, v3lock_pb2, v3election_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert described == set(METHODS)


def test_every_constant_is_in_the_table() -> None:
    constants = {name for name in vars(_methods) if name.isupper() and not name.startswith("_")}
    constants.discard("METHODS")
    assert constants == {entry[0] for entry in EXPECTED.values()}


def test_method_is_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        _methods.KV_PUT.path = "/x"  # type: ignore[misc]


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        METHODS["/x"] = _methods.KV_PUT  # type: ignore[index]


@pytest.mark.parametrize(
    ("module", "package"),
    [
        (kv_pb2, "etcdsync_pb.mvccpb"),
        (auth_pb2, "etcdsync_pb.authpb"),
        (rpc_pb2, "etcdsync_pb.etcdserverpb"),
        (v3lock_pb2, "etcdsync_pb.v3lockpb"),
        (v3election_pb2, "etcdsync_pb.v3electionpb"),
    ],
)
def test_proto_packages_are_private(module: object, package: str) -> None:
    # Another etcd client's generated modules (package "etcdserverpb" etc.) can share the default
    # descriptor pool with ours only because the names differ.
    assert module.DESCRIPTOR.package == package  # type: ignore[attr-defined]


def test_hashed_password_is_left_out() -> None:
    # A 3.4 server ignores 3.5's hashedPassword and would store an empty password instead.
    assert "hashedPassword" not in rpc_pb2.AuthUserAddRequest.DESCRIPTOR.fields_by_name
    assert "hashedPassword" not in rpc_pb2.AuthUserChangePasswordRequest.DESCRIPTOR.fields_by_name


# ---------------------------------------------------------------- wire bytes, computed by hand


def _roundtrip(message: Message, wire: bytes) -> None:
    assert message.SerializeToString(deterministic=True) == wire
    assert type(message).FromString(wire) == message


def test_put_request_wire() -> None:
    # field 1 (key) LEN, field 2 (value) LEN
    _roundtrip(rpc_pb2.PutRequest(key=b"a", value=b"b"), b"\n\x01a\x12\x01b")
    # lease (3) varint, prev_kv (4), ignore_value (5), ignore_lease (6)
    _roundtrip(
        rpc_pb2.PutRequest(key=b"a", lease=7, prev_kv=True, ignore_value=True, ignore_lease=True),
        b"\x0a\x01a\x18\x07\x20\x01\x28\x01\x30\x01",
    )


def test_range_request_wire() -> None:
    message = rpc_pb2.RangeRequest(
        key=b"k",  # 1
        range_end=b"l",  # 2
        limit=10,  # 3
        revision=300,  # 4: varint 0xac 0x02
        sort_order=rpc_pb2.RangeRequest.DESCEND,  # 5 = 2
        sort_target=rpc_pb2.RangeRequest.MOD,  # 6 = 3
        serializable=True,  # 7
        keys_only=True,  # 8
        count_only=True,  # 9
        min_mod_revision=5,  # 10
        max_mod_revision=6,  # 11
        min_create_revision=7,  # 12
        max_create_revision=8,  # 13
    )
    wire = (
        b"\x0a\x01k\x12\x01l\x18\x0a\x20\xac\x02\x28\x02\x30\x03\x38\x01\x40\x01\x48\x01"
        b"\x50\x05\x58\x06\x60\x07\x68\x08"
    )
    _roundtrip(message, wire)


@pytest.mark.parametrize(
    ("enum", "names"),
    [
        pytest.param(rpc_pb2.RangeRequest.SortOrder, ["NONE", "ASCEND", "DESCEND"], id="SortOrder"),
        pytest.param(
            rpc_pb2.RangeRequest.SortTarget, ["KEY", "VERSION", "CREATE", "MOD", "VALUE"], id="SortTarget"
        ),
        pytest.param(
            rpc_pb2.Compare.CompareResult, ["EQUAL", "GREATER", "LESS", "NOT_EQUAL"], id="CompareResult"
        ),
        pytest.param(
            rpc_pb2.Compare.CompareTarget, ["VERSION", "CREATE", "MOD", "VALUE", "LEASE"], id="CompareTarget"
        ),
        pytest.param(rpc_pb2.WatchCreateRequest.FilterType, ["NOPUT", "NODELETE"], id="FilterType"),
        pytest.param(rpc_pb2.AlarmType, ["NONE", "NOSPACE", "CORRUPT"], id="AlarmType"),
        pytest.param(rpc_pb2.AlarmRequest.AlarmAction, ["GET", "ACTIVATE", "DEACTIVATE"], id="AlarmAction"),
        pytest.param(
            rpc_pb2.DowngradeRequest.DowngradeAction, ["VALIDATE", "ENABLE", "CANCEL"], id="DowngradeAction"
        ),
        pytest.param(kv_pb2.Event.EventType, ["PUT", "DELETE"], id="EventType"),
        pytest.param(auth_pb2.Permission.Type, ["READ", "WRITE", "READWRITE"], id="Type"),
    ],
)
def test_enum_numbers(enum: EnumTypeWrapper, names: list[str]) -> None:
    # Each enum numbers its values 0, 1, 2, ... in this order, and has no others.
    assert enum.keys() == names
    assert enum.values() == list(range(len(names)))


def test_txn_request_wire() -> None:
    compare = rpc_pb2.Compare(
        result=rpc_pb2.Compare.GREATER,  # 1 = 1
        target=rpc_pb2.Compare.MOD,  # 2 = 2
        key=b"k",  # 3
        mod_revision=5,  # 6, in the target_union oneof
        range_end=b"\x00",  # 64: tag varint 0x82 0x04
    )
    compare_wire = b"\x08\x01\x10\x02\x1a\x01k\x30\x05\x82\x04\x01\x00"
    _roundtrip(compare, compare_wire)

    message = rpc_pb2.TxnRequest(
        compare=[compare],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"a", value=b"b"))],
        failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"a"))],
    )
    wire = (
        b"\x0a\x0d" + compare_wire  # compare (1)
        + b"\x12\x08" + b"\x12\x06" + b"\n\x01a\x12\x01b"  # success (2) > request_put (2)
        + b"\x1a\x05" + b"\x0a\x03" + b"\x0a\x01a"  # failure (3) > request_range (1)
    )  # fmt: skip
    _roundtrip(message, wire)
    assert message.success[0].WhichOneof("request") == "request_put"


@pytest.mark.parametrize(
    ("field", "value", "wire"),
    [
        ("version", 0, b"\x20\x00"),
        ("create_revision", 9, b"\x28\x09"),
        ("mod_revision", 9, b"\x30\x09"),
        ("value", b"", b"\x3a\x00"),
        ("value", b"v", b"\x3a\x01v"),
        ("lease", 9, b"\x40\x09"),
    ],
)
def test_compare_target_union_wire(field: str, value: object, wire: bytes) -> None:
    # A oneof member set to its zero value is still sent: "version == 0" (key absent) must reach
    # the server, not vanish as a default.
    message = rpc_pb2.Compare(key=b"k", **{field: value})  # type: ignore[arg-type]
    assert message.WhichOneof("target_union") == field
    _roundtrip(message, b"\x1a\x01k" + wire)


def test_nested_txn_and_delete_range_ops_wire() -> None:
    inner = rpc_pb2.TxnRequest(
        success=[rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"a", prev_kv=True))]
    )
    # DeleteRangeRequest: key (1), prev_kv (3)
    delete_wire = b"\x0a\x01a\x18\x01"
    inner_wire = b"\x12\x07" + b"\x1a\x05" + delete_wire  # success (2) > request_delete_range (3)
    message = rpc_pb2.RequestOp(request_txn=inner)
    _roundtrip(message, b"\x22\x09" + inner_wire)  # request_txn (4)


def test_watch_create_request_wire() -> None:
    message = rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(
            key=b"k",  # 1
            start_revision=3,  # 3
            progress_notify=True,  # 4
            filters=[rpc_pb2.WatchCreateRequest.NODELETE],  # 5, packed: LEN 1, 0x01
            prev_kv=True,  # 6
            watch_id=7,  # 7
            fragment=True,  # 8
        )
    )
    create = b"\x0a\x01k\x18\x03\x20\x01\x2a\x01\x01\x30\x01\x38\x07\x40\x01"
    _roundtrip(message, b"\x0a" + bytes([len(create)]) + create)


def test_watch_cancel_and_progress_request_wire() -> None:
    _roundtrip(
        rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=7)),
        b"\x12\x02\x08\x07",
    )
    # An empty oneof member is still sent as a zero-length field 3.
    _roundtrip(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()), b"\x1a\x00")


def test_watch_response_wire() -> None:
    header = b"\x08\x01\x10\x02\x18\x03\x20\x04"  # cluster_id, member_id, revision, raft_term
    kv = b"\x0a\x01k\x10\x02\x18\x03\x20\x04\x2a\x01v\x30\x06"  # KeyValue fields 1..6
    event = b"\x08\x01\x12" + bytes([len(kv)]) + kv + b"\x1a\x00"  # DELETE, kv, empty prev_kv
    wire = (
        b"\x0a\x08" + header  # header (1)
        + b"\x10\x07"  # watch_id (2)
        + b"\x18\x01"  # created (3)
        + b"\x20\x01"  # canceled (4)
        + b"\x28\x05"  # compact_revision (5)
        + b"\x32\x01x"  # cancel_reason (6)
        + b"\x38\x01"  # fragment (7)
        + b"\x5a" + bytes([len(event)]) + event  # events (11)
    )  # fmt: skip
    message = rpc_pb2.WatchResponse.FromString(wire)
    assert message.header == rpc_pb2.ResponseHeader(cluster_id=1, member_id=2, revision=3, raft_term=4)
    assert (message.watch_id, message.created, message.canceled) == (7, True, True)
    assert (message.compact_revision, message.cancel_reason, message.fragment) == (5, "x", True)
    [ev] = message.events
    assert ev.type == kv_pb2.Event.DELETE
    assert ev.kv == kv_pb2.KeyValue(
        key=b"k", create_revision=2, mod_revision=3, version=4, value=b"v", lease=6
    )
    assert ev.HasField("prev_kv")
    assert ev.prev_kv == kv_pb2.KeyValue()
    assert message.SerializeToString(deterministic=True) == wire


def test_range_response_wire() -> None:
    wire = b"\x12\x03\x0a\x01a\x12\x03\x0a\x01b\x18\x01\x20\x05"  # kvs (2) x2, more (3), count (4)
    message = rpc_pb2.RangeResponse.FromString(wire)
    assert [kv.key for kv in message.kvs] == [b"a", b"b"]
    assert (message.more, message.count) == (True, 5)


def test_lease_wire() -> None:
    _roundtrip(rpc_pb2.LeaseGrantRequest(TTL=5, ID=0x1234), b"\x08\x05\x10\xb4\x24")
    _roundtrip(rpc_pb2.LeaseKeepAliveRequest(ID=1), b"\x08\x01")
    _roundtrip(rpc_pb2.LeaseTimeToLiveRequest(ID=1, keys=True), b"\x08\x01\x10\x01")
    _roundtrip(
        rpc_pb2.LeaseTimeToLiveResponse(ID=1, TTL=2, grantedTTL=3, keys=[b"k"]),
        b"\x10\x01\x18\x02\x20\x03\x2a\x01k",
    )
    # int64 IDs are plain varints: a negative one takes ten bytes.
    _roundtrip(rpc_pb2.LeaseRevokeRequest(ID=-1), b"\x08" + b"\xff" * 9 + b"\x01")


def test_lock_and_election_wire() -> None:
    _roundtrip(v3lock_pb2.LockRequest(name=b"l", lease=2), b"\x0a\x01l\x10\x02")
    _roundtrip(v3lock_pb2.UnlockRequest(key=b"l/1"), b"\x0a\x03l/1")
    _roundtrip(v3election_pb2.CampaignRequest(name=b"e", lease=1, value=b"v"), b"\x0a\x01e\x10\x01\x1a\x01v")
    leader = v3election_pb2.LeaderKey(name=b"e", key=b"e/1", rev=3, lease=1)
    leader_wire = b"\x0a\x01e\x12\x03e/1\x18\x03\x20\x01"
    _roundtrip(leader, leader_wire)
    _roundtrip(
        v3election_pb2.ProclaimRequest(leader=leader, value=b"w"),
        b"\x0a" + bytes([len(leader_wire)]) + leader_wire + b"\x12\x01w",
    )
    _roundtrip(v3election_pb2.ResignRequest(leader=leader), b"\x0a" + bytes([len(leader_wire)]) + leader_wire)


def test_maintenance_and_cluster_wire() -> None:
    _roundtrip(rpc_pb2.CompactionRequest(revision=9, physical=True), b"\x08\x09\x10\x01")
    _roundtrip(rpc_pb2.HashKVRequest(revision=9), b"\x08\x09")
    _roundtrip(
        rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=2, alarm=rpc_pb2.NOSPACE),
        b"\x08\x01\x10\x02\x18\x01",
    )
    _roundtrip(
        rpc_pb2.SnapshotResponse(remaining_bytes=3, blob=b"xy"),
        b"\x10\x03\x1a\x02xy",
    )
    _roundtrip(rpc_pb2.MemberListRequest(linearizable=True), b"\x08\x01")
    _roundtrip(
        rpc_pb2.MemberAddRequest(peerURLs=["p"], isLearner=True),
        b"\x0a\x01p\x10\x01",
    )
    status = rpc_pb2.StatusResponse(
        version="v", dbSize=3, leader=4, raftIndex=5, raftTerm=6, raftAppliedIndex=7,
        errors=["e"], dbSizeInUse=9, isLearner=True,
    )  # fmt: skip
    _roundtrip(
        status,
        b"\x12\x01v\x18\x03\x20\x04\x28\x05\x30\x06\x38\x07\x42\x01e\x48\x09\x50\x01",
    )


def test_auth_wire() -> None:
    _roundtrip(
        rpc_pb2.AuthUserAddRequest(name="u", password="p", options=auth_pb2.UserAddOptions(no_password=True)),
        b"\x0a\x01u\x12\x01p\x1a\x02\x08\x01",
    )
    _roundtrip(rpc_pb2.AuthUserGrantRoleRequest(user="u", role="r"), b"\x0a\x01u\x12\x01r")
    perm = auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=b"k", range_end=b"l")
    perm_wire = b"\x08\x02\x12\x01k\x1a\x01l"
    _roundtrip(perm, perm_wire)
    _roundtrip(
        rpc_pb2.AuthRoleGrantPermissionRequest(name="r", perm=perm),
        b"\x0a\x01r\x12" + bytes([len(perm_wire)]) + perm_wire,
    )
    _roundtrip(
        rpc_pb2.AuthRoleRevokePermissionRequest(role="r", key=b"k", range_end=b"l"),
        b"\x0a\x01r\x12\x01k\x1a\x01l",
    )
