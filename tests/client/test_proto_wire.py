"""Our .proto schema against a real etcd, over plain grpcio.

This checks the schema, not the client: every request is built from our generated messages and sent
by grpcio on the path from our method table, and each test asserts that the server acted on the
fields it was sent (sort order obeyed, revision filters applied, ``count_only`` counted, the
``range_end`` at field 64 of ``Compare`` honoured, ...). A wrong field number would be silently
ignored or misread by the server, and one of these assertions would fail.

The tests share one etcd (module scope) and run in file order: compaction and enabling auth come last.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from etcdsync.client._convert import _methods as m
from etcdsync.client._convert._methods import Method
from etcdsync.client._pb import auth_pb2, kv_pb2, rpc_pb2, v3election_pb2, v3lock_pb2

TIMEOUT = 5.0
STARTUP_TIMEOUT = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A single-member etcd on free loopback ports, in a temporary data dir."""
    binary = shutil.which("etcd") or "/usr/bin/etcd"
    base = tmp_path_factory.mktemp("etcd")
    client_url = f"http://127.0.0.1:{_free_port()}"
    peer_url = f"http://127.0.0.1:{_free_port()}"
    cmd = [
        binary,
        "--name=wire",
        f"--data-dir={base / 'data'}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=wire={peer_url}",
        "--logger=zap",
        "--log-level=error",
    ]
    log_path = base / "etcd.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            target = client_url.removeprefix("http://")
            _wait_ready(target, proc, log_path)
            yield target
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(target: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with grpc.insecure_channel(target) as channel:
        status = _unary(channel, m.MAINTENANCE_STATUS)
        while True:
            if proc.poll() is not None:
                pytest.fail(f"etcd exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                status(rpc_pb2.StatusRequest(), timeout=0.5)
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    pytest.fail(f"etcd did not start in {STARTUP_TIMEOUT}s:\n{log_path.read_text()}")
                time.sleep(0.05)
            else:
                return


@pytest.fixture(scope="module")
def channel(endpoint: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(endpoint) as ch:
        yield ch


def _unary(channel: grpc.Channel, method: Method[Any, Any]) -> Any:
    assert not method.client_streaming
    assert not method.server_streaming
    return channel.unary_unary(
        method.path,
        request_serializer=method.request.SerializeToString,
        response_deserializer=method.response.FromString,
    )


def _call(channel: grpc.Channel, method: Method[Any, Any], request: Any, **kwargs: Any) -> Any:
    assert isinstance(request, method.request)
    response = _unary(channel, method)(request, timeout=TIMEOUT, **kwargs)
    assert isinstance(response, method.response)
    return response


class _Stream:
    """A bidirectional call whose requests are fed one at a time."""

    def __init__(self, channel: grpc.Channel, method: Method[Any, Any]) -> None:
        assert method.client_streaming
        assert method.server_streaming
        self._requests: queue.Queue[Any] = queue.Queue()
        call = channel.stream_stream(
            method.path,
            request_serializer=method.request.SerializeToString,
            response_deserializer=method.response.FromString,
        )
        self._responses = call(iter(self._requests.get, None), timeout=TIMEOUT)

    def send(self, request: Any) -> None:
        self._requests.put(request)

    def receive(self) -> Any:
        return next(self._responses)

    def close(self) -> None:
        self._requests.put(None)
        self._responses.cancel()


@contextlib.contextmanager
def _stream(channel: grpc.Channel, method: Method[Any, Any]) -> Iterator[_Stream]:
    stream = _Stream(channel, method)
    try:
        yield stream
    finally:
        stream.close()


def _put(channel: grpc.Channel, key: bytes, value: bytes, **kwargs: Any) -> int:
    response = _call(channel, m.KV_PUT, rpc_pb2.PutRequest(key=key, value=value, **kwargs))
    revision: int = response.header.revision
    return revision


def _keys(response: rpc_pb2.RangeResponse) -> list[bytes]:
    return [kv.key for kv in response.kvs]


def _prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def _grant(channel: grpc.Channel, ttl: int = 30) -> int:
    lease_id: int = _call(channel, m.LEASE_GRANT, rpc_pb2.LeaseGrantRequest(TTL=ttl)).ID
    return lease_id


# ---------------------------------------------------------------- KV


def test_put_and_range(channel: grpc.Channel) -> None:
    p = b"/wire/range/"
    a, b, c = p + b"a", p + b"b", p + b"c"
    rev_a1 = _put(channel, a, b"3")
    rev_b = _put(channel, b, b"1")
    rev_c = _put(channel, c, b"2")
    put = _call(channel, m.KV_PUT, rpc_pb2.PutRequest(key=a, value=b"4", prev_kv=True))
    rev_a2 = put.header.revision
    assert put.prev_kv.value == b"3"
    assert put.prev_kv.mod_revision == rev_a1
    assert rev_a1 < rev_b < rev_c < rev_a2
    assert put.header.cluster_id != 0
    assert put.header.member_id != 0
    assert put.header.raft_term >= 1

    def rng(**kwargs: Any) -> rpc_pb2.RangeResponse:
        request = rpc_pb2.RangeRequest(key=p, range_end=_prefix_end(p), **kwargs)
        response: rpc_pb2.RangeResponse = _call(channel, m.KV_RANGE, request)
        return response

    everything = rng()
    assert _keys(everything) == [a, b, c]
    assert everything.count == 3
    assert not everything.more
    [kv_a, _, _] = everything.kvs
    assert (kv_a.create_revision, kv_a.mod_revision, kv_a.version, kv_a.value) == (rev_a1, rev_a2, 2, b"4")

    R = rpc_pb2.RangeRequest  # the SortOrder and SortTarget values live here
    assert _keys(rng(sort_order=R.DESCEND, sort_target=R.KEY)) == [c, b, a]
    assert _keys(rng(sort_order=R.ASCEND, sort_target=R.MOD)) == [b, c, a]
    assert _keys(rng(sort_order=R.DESCEND, sort_target=R.CREATE)) == [c, b, a]
    assert _keys(rng(sort_order=R.DESCEND, sort_target=R.VERSION))[0] == a
    assert _keys(rng(sort_order=R.ASCEND, sort_target=R.VALUE)) == [b, c, a]

    limited = rng(limit=1, sort_order=R.DESCEND, sort_target=R.KEY)
    assert (_keys(limited), limited.more, limited.count) == ([c], True, 3)

    keys_only = rng(keys_only=True)
    assert _keys(keys_only) == [a, b, c]
    assert [kv.value for kv in keys_only.kvs] == [b"", b"", b""]

    counted = rng(count_only=True)
    assert (list(counted.kvs), counted.count) == ([], 3)

    assert _keys(rng(min_create_revision=rev_b)) == [b, c]
    assert _keys(rng(max_create_revision=rev_b)) == [a, b]
    assert _keys(rng(min_mod_revision=rev_a2)) == [a]
    assert _keys(rng(max_mod_revision=rev_c)) == [b, c]

    old = _call(channel, m.KV_RANGE, rpc_pb2.RangeRequest(key=a, revision=rev_c))
    assert [kv.value for kv in old.kvs] == [b"3"]
    assert old.header.revision >= rev_a2  # the header carries the current revision

    serializable = _call(channel, m.KV_RANGE, rpc_pb2.RangeRequest(key=a, serializable=True))
    assert [kv.value for kv in serializable.kvs] == [b"4"]

    # ignore_value keeps the stored value while bumping the revision.
    _put(channel, a, b"", ignore_value=True)
    [kv_a] = _call(channel, m.KV_RANGE, rpc_pb2.RangeRequest(key=a)).kvs
    assert (kv_a.value, kv_a.version) == (b"4", 3)

    deleted = _call(
        channel, m.KV_DELETE_RANGE, rpc_pb2.DeleteRangeRequest(key=p, range_end=_prefix_end(p), prev_kv=True)
    )
    assert deleted.deleted == 3
    assert sorted(kv.key for kv in deleted.prev_kvs) == [a, b, c]
    assert rng(count_only=True).count == 0


def test_txn(channel: grpc.Channel) -> None:
    p = b"/wire/txn/"
    k1, k2, absent = p + b"1", p + b"2", p + b"absent"
    _put(channel, k1, b"x")
    _put(channel, k2, b"y")
    rev = _put(channel, k2, b"z")  # k2 now has version 2
    C = rpc_pb2.Compare

    def txn(compare: list[rpc_pb2.Compare], success: list[Any], failure: list[Any]) -> rpc_pb2.TxnResponse:
        request = rpc_pb2.TxnRequest(compare=compare, success=success, failure=failure)
        response: rpc_pb2.TxnResponse = _call(channel, m.KV_TXN, request)
        return response

    # Oneof members at their zero value still reach the server: "version == 0" means absent.
    response = txn(
        [
            C(key=absent, target=C.VERSION, result=C.EQUAL, version=0),
            C(key=k1, target=C.VALUE, result=C.EQUAL, value=b"x"),
            C(key=k2, target=C.MOD, result=C.EQUAL, mod_revision=rev),
            C(key=k1, target=C.CREATE, result=C.LESS, create_revision=rev),
            C(key=k1, target=C.LEASE, result=C.EQUAL, lease=0),
            C(key=k2, target=C.VERSION, result=C.GREATER, version=1),
            C(key=k2, target=C.VALUE, result=C.NOT_EQUAL, value=b"y"),
        ],
        success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=absent, value=b"new", prev_kv=True)),
            rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=k1)),
            rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=k2, prev_kv=True)),
            rpc_pb2.RequestOp(
                request_txn=rpc_pb2.TxnRequest(
                    success=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=absent))]
                )
            ),
        ],
        failure=[],
    )
    assert response.succeeded
    put_r, range_r, delete_r, txn_r = response.responses
    assert put_r.WhichOneof("response") == "response_put"
    assert not put_r.response_put.HasField("prev_kv")
    assert range_r.WhichOneof("response") == "response_range"
    assert [kv.value for kv in range_r.response_range.kvs] == [b"x"]
    assert delete_r.WhichOneof("response") == "response_delete_range"
    assert delete_r.response_delete_range.deleted == 1
    assert [kv.value for kv in delete_r.response_delete_range.prev_kvs] == [b"z"]
    assert txn_r.WhichOneof("response") == "response_txn"
    assert txn_r.response_txn.succeeded
    [inner] = txn_r.response_txn.responses
    assert [kv.value for kv in inner.response_range.kvs] == [b"new"]

    # A false compare runs the failure branch.
    response = txn(
        [C(key=k1, target=C.MOD, result=C.GREATER, mod_revision=1 << 40)],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k1, value=b"no"))],
        failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=k1))],
    )
    assert not response.succeeded
    assert [kv.value for kv in response.responses[0].response_range.kvs] == [b"x"]

    # Compare.range_end (field 64) makes the compare cover every key in the range: k1 has
    # version 1 but "absent" (now present, version 1) and a fresh k3 with version 2 do not all match.
    k3 = p + b"3"
    _put(channel, k3, b"a")
    _put(channel, k3, b"b")
    over_range = C(key=k1, range_end=_prefix_end(p), target=C.VERSION, result=C.EQUAL, version=1)
    assert not txn([over_range], [], []).succeeded
    assert txn([C(key=k1, target=C.VERSION, result=C.EQUAL, version=1)], [], []).succeeded
    assert txn(
        [C(key=p, range_end=_prefix_end(p), target=C.VERSION, result=C.GREATER, version=0)], [], []
    ).succeeded


# ---------------------------------------------------------------- Lease


def test_lease(channel: grpc.Channel) -> None:
    requested_id = 0x7E57_0001
    grant = _call(channel, m.LEASE_GRANT, rpc_pb2.LeaseGrantRequest(TTL=60, ID=requested_id))
    assert (grant.ID, grant.TTL, grant.error) == (requested_id, 60, "")

    key = b"/wire/lease/k"
    _put(channel, key, b"v", lease=requested_id)
    [kv] = _call(channel, m.KV_RANGE, rpc_pb2.RangeRequest(key=key)).kvs
    assert kv.lease == requested_id

    # ignore_lease keeps the attached lease while replacing the value.
    _put(channel, key, b"w", ignore_lease=True)
    [kv] = _call(channel, m.KV_RANGE, rpc_pb2.RangeRequest(key=key)).kvs
    assert (kv.value, kv.lease) == (b"w", requested_id)

    ttl = _call(channel, m.LEASE_TIME_TO_LIVE, rpc_pb2.LeaseTimeToLiveRequest(ID=requested_id, keys=True))
    assert requested_id == ttl.ID
    assert ttl.grantedTTL == 60
    assert 0 < ttl.TTL <= 60
    assert list(ttl.keys) == [key]
    without_keys = _call(channel, m.LEASE_TIME_TO_LIVE, rpc_pb2.LeaseTimeToLiveRequest(ID=requested_id))
    assert list(without_keys.keys) == []

    leases = _call(channel, m.LEASE_LEASES, rpc_pb2.LeaseLeasesRequest())
    assert requested_id in [status.ID for status in leases.leases]

    with _stream(channel, m.LEASE_KEEP_ALIVE) as stream:
        stream.send(rpc_pb2.LeaseKeepAliveRequest(ID=requested_id))
        renewed = stream.receive()
        assert (requested_id, 60) == (renewed.ID, renewed.TTL)
        assert renewed.header.revision > 0

    _call(channel, m.LEASE_REVOKE, rpc_pb2.LeaseRevokeRequest(ID=requested_id))
    assert _call(channel, m.KV_RANGE, rpc_pb2.RangeRequest(key=key, count_only=True)).count == 0
    gone = _call(channel, m.LEASE_TIME_TO_LIVE, rpc_pb2.LeaseTimeToLiveRequest(ID=requested_id))
    assert gone.TTL == -1


# ---------------------------------------------------------------- Watch


def test_watch(channel: grpc.Channel) -> None:
    p = b"/wire/watch/"
    key = p + b"k"
    rev_put = _put(channel, key, b"v1")
    rev_delete = _call(channel, m.KV_DELETE_RANGE, rpc_pb2.DeleteRangeRequest(key=key)).header.revision
    _put(channel, key, b"v2")
    W = rpc_pb2.WatchCreateRequest

    with _stream(channel, m.WATCH) as stream:
        # Replay history, dropping puts: only the delete arrives, with the value it removed.
        stream.send(
            rpc_pb2.WatchRequest(
                create_request=W(key=key, start_revision=rev_put, prev_kv=True, filters=[W.NOPUT])
            )
        )
        created = stream.receive()
        assert created.created
        first_id = created.watch_id
        events = []
        while not events:
            response = stream.receive()
            assert response.watch_id == first_id
            events.extend(response.events)
        [event] = events
        assert event.type == kv_pb2.Event.DELETE
        assert (event.kv.key, event.kv.mod_revision) == (key, rev_delete)
        assert (event.prev_kv.value, event.prev_kv.mod_revision) == (b"v1", rev_put)

        # A second watcher on the same stream, over a range, with an id we choose.
        stream.send(
            rpc_pb2.WatchRequest(
                create_request=W(key=p, range_end=_prefix_end(p), watch_id=100, filters=[W.NODELETE])
            )
        )
        created = stream.receive()
        assert (created.created, created.watch_id) == (True, 100)
        rev_other = _put(channel, p + b"other", b"o")
        response = stream.receive()
        assert response.watch_id == 100
        [event] = response.events
        assert (event.type, event.kv.key, event.kv.value) == (kv_pb2.Event.PUT, p + b"other", b"o")
        assert event.kv.mod_revision == rev_other
        assert not event.HasField("prev_kv")

        stream.send(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))
        progress = stream.receive()
        assert list(progress.events) == []
        assert not progress.created
        assert progress.header.revision >= rev_other

        stream.send(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=100)))
        cancelled = stream.receive()
        assert (cancelled.canceled, cancelled.watch_id) == (True, 100)


# ---------------------------------------------------------------- v3lock and v3election


def test_lock(channel: grpc.Channel) -> None:
    lease = _grant(channel)
    name = b"/wire/lock"
    locked = _call(channel, m.LOCK_LOCK, v3lock_pb2.LockRequest(name=name, lease=lease))
    assert locked.key.startswith(name + b"/")
    assert locked.header.revision > 0
    [kv] = _call(channel, m.KV_RANGE, rpc_pb2.RangeRequest(key=locked.key)).kvs
    assert kv.lease == lease

    _call(channel, m.LOCK_UNLOCK, v3lock_pb2.UnlockRequest(key=locked.key))
    assert _call(channel, m.KV_RANGE, rpc_pb2.RangeRequest(key=locked.key, count_only=True)).count == 0
    _call(channel, m.LEASE_REVOKE, rpc_pb2.LeaseRevokeRequest(ID=lease))


def test_election(channel: grpc.Channel) -> None:
    lease = _grant(channel)
    name = b"/wire/election"
    campaign = _call(
        channel, m.ELECTION_CAMPAIGN, v3election_pb2.CampaignRequest(name=name, lease=lease, value=b"v1")
    )
    leader = campaign.leader
    assert leader.name == name
    assert leader.key.startswith(name + b"/")
    assert leader.rev == campaign.header.revision
    assert leader.lease == lease

    current = _call(channel, m.ELECTION_LEADER, v3election_pb2.LeaderRequest(name=name))
    assert (current.kv.key, current.kv.value, current.kv.lease) == (leader.key, b"v1", lease)

    _call(channel, m.ELECTION_PROCLAIM, v3election_pb2.ProclaimRequest(leader=leader, value=b"v2"))
    current = _call(channel, m.ELECTION_LEADER, v3election_pb2.LeaderRequest(name=name))
    assert current.kv.value == b"v2"

    assert m.ELECTION_OBSERVE.server_streaming
    observe = channel.unary_stream(
        m.ELECTION_OBSERVE.path,
        request_serializer=m.ELECTION_OBSERVE.request.SerializeToString,
        response_deserializer=m.ELECTION_OBSERVE.response.FromString,
    )
    observed = observe(v3election_pb2.LeaderRequest(name=name), timeout=TIMEOUT)
    try:
        first = next(observed)
        assert (first.kv.key, first.kv.value) == (leader.key, b"v2")
    finally:
        observed.cancel()

    _call(channel, m.ELECTION_RESIGN, v3election_pb2.ResignRequest(leader=leader))
    with pytest.raises(grpc.RpcError) as excinfo:
        _call(channel, m.ELECTION_LEADER, v3election_pb2.LeaderRequest(name=name))
    assert "no leader" in excinfo.value.details()
    _call(channel, m.LEASE_REVOKE, rpc_pb2.LeaseRevokeRequest(ID=lease))


# ---------------------------------------------------------------- Maintenance and Cluster


def _is_34(channel: grpc.Channel) -> bool:
    version: str = _call(channel, m.MAINTENANCE_STATUS, rpc_pb2.StatusRequest()).version
    return version.startswith("3.4.")


def test_maintenance_and_cluster(channel: grpc.Channel, endpoint: str) -> None:
    status = _call(channel, m.MAINTENANCE_STATUS, rpc_pb2.StatusRequest())
    assert status.version.startswith("3.")
    assert status.dbSize > 0
    assert status.dbSizeInUse > 0
    assert status.leader == status.header.member_id
    assert status.raftIndex > 0
    assert status.raftTerm >= 1
    assert not status.isLearner

    members = _call(channel, m.CLUSTER_MEMBER_LIST, rpc_pb2.MemberListRequest(linearizable=True))
    [member] = members.members
    assert (member.ID, member.name, list(member.clientURLs)) == (
        status.leader,
        "wire",
        [f"http://{endpoint}"],
    )
    assert not member.isLearner

    alarms = _call(channel, m.MAINTENANCE_ALARM, rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET))
    assert list(alarms.alarms) == []

    hash_kv = _call(channel, m.MAINTENANCE_HASH_KV, rpc_pb2.HashKVRequest(revision=0))
    assert hash_kv.header.revision > 0
    assert hash_kv.hash != 0

    chunks = []
    snapshot = channel.unary_stream(
        m.MAINTENANCE_SNAPSHOT.path,
        request_serializer=m.MAINTENANCE_SNAPSHOT.request.SerializeToString,
        response_deserializer=m.MAINTENANCE_SNAPSHOT.response.FromString,
    )
    for chunk in snapshot(rpc_pb2.SnapshotRequest(), timeout=TIMEOUT):
        chunks.append(chunk)
    assert chunks[-1].remaining_bytes == 0
    assert sum(len(chunk.blob) for chunk in chunks) >= status.dbSize

    # etcd >= 3.5 only: a 3.4 server does not know these methods.
    if _is_34(channel):
        for method, request in [
            (m.AUTH_STATUS, rpc_pb2.AuthStatusRequest()),
            (m.MAINTENANCE_DOWNGRADE, rpc_pb2.DowngradeRequest(action=rpc_pb2.DowngradeRequest.VALIDATE)),
        ]:
            with pytest.raises(grpc.RpcError) as excinfo:
                _call(channel, method, request)
            assert excinfo.value.code() == grpc.StatusCode.UNIMPLEMENTED
    else:
        assert not _call(channel, m.AUTH_STATUS, rpc_pb2.AuthStatusRequest()).enabled


# ---------------------------------------------------------------- last: compaction, then auth


def test_compact(channel: grpc.Channel) -> None:
    key = b"/wire/compact"
    old = _put(channel, key, b"1")
    new = _put(channel, key, b"2")
    _call(channel, m.KV_COMPACT, rpc_pb2.CompactionRequest(revision=new, physical=True))
    with pytest.raises(grpc.RpcError) as excinfo:
        _call(channel, m.KV_RANGE, rpc_pb2.RangeRequest(key=key, revision=old))
    assert excinfo.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "compacted" in excinfo.value.details()

    with _stream(channel, m.WATCH) as stream:
        stream.send(
            rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key, start_revision=old))
        )
        response = stream.receive()
        while not response.canceled:
            response = stream.receive()
        assert response.compact_revision == new


def test_auth(channel: grpc.Channel) -> None:
    perm = auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=b"/wire/", range_end=b"/wire0")
    _call(channel, m.AUTH_ROLE_ADD, rpc_pb2.AuthRoleAddRequest(name="reader"))
    _call(
        channel,
        m.AUTH_ROLE_GRANT_PERMISSION,
        rpc_pb2.AuthRoleGrantPermissionRequest(name="reader", perm=perm),
    )
    role = _call(channel, m.AUTH_ROLE_GET, rpc_pb2.AuthRoleGetRequest(role="reader"))
    assert list(role.perm) == [perm]
    assert "reader" in _call(channel, m.AUTH_ROLE_LIST, rpc_pb2.AuthRoleListRequest()).roles

    _call(channel, m.AUTH_USER_ADD, rpc_pb2.AuthUserAddRequest(name="alice", password="a"))
    _call(channel, m.AUTH_USER_GRANT_ROLE, rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="reader"))
    assert list(_call(channel, m.AUTH_USER_GET, rpc_pb2.AuthUserGetRequest(name="alice")).roles) == ["reader"]
    assert "alice" in _call(channel, m.AUTH_USER_LIST, rpc_pb2.AuthUserListRequest()).users
    _call(channel, m.AUTH_USER_REVOKE_ROLE, rpc_pb2.AuthUserRevokeRoleRequest(name="alice", role="reader"))
    assert list(_call(channel, m.AUTH_USER_GET, rpc_pb2.AuthUserGetRequest(name="alice")).roles) == []
    _call(
        channel,
        m.AUTH_ROLE_REVOKE_PERMISSION,
        rpc_pb2.AuthRoleRevokePermissionRequest(role="reader", key=perm.key, range_end=perm.range_end),
    )
    assert list(_call(channel, m.AUTH_ROLE_GET, rpc_pb2.AuthRoleGetRequest(role="reader")).perm) == []
    _call(
        channel,
        m.AUTH_USER_CHANGE_PASSWORD,
        rpc_pb2.AuthUserChangePasswordRequest(name="alice", password="b"),
    )

    nopass = rpc_pb2.AuthUserAddRequest(name="nopass", options=auth_pb2.UserAddOptions(no_password=True))
    _call(channel, m.AUTH_USER_ADD, nopass)

    _call(channel, m.AUTH_USER_ADD, rpc_pb2.AuthUserAddRequest(name="root", password="r"))
    _call(channel, m.AUTH_USER_GRANT_ROLE, rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
    _call(channel, m.AUTH_ENABLE, rpc_pb2.AuthEnableRequest())
    token = None
    try:
        token = _call(
            channel, m.AUTH_AUTHENTICATE, rpc_pb2.AuthenticateRequest(name="root", password="r")
        ).token
        assert token
        # The changed password is the one that works.
        alice = _call(channel, m.AUTH_AUTHENTICATE, rpc_pb2.AuthenticateRequest(name="alice", password="b"))
        assert alice.token
        with pytest.raises(grpc.RpcError):
            _call(channel, m.AUTH_AUTHENTICATE, rpc_pb2.AuthenticateRequest(name="alice", password="a"))
        # no_password was understood: had it been dropped, "nopass" would have the empty password.
        with pytest.raises(grpc.RpcError):
            _call(channel, m.AUTH_AUTHENTICATE, rpc_pb2.AuthenticateRequest(name="nopass", password=""))
        # Without a token, requests are refused once auth is on.
        with pytest.raises(grpc.RpcError) as excinfo:
            _call(channel, m.KV_PUT, rpc_pb2.PutRequest(key=b"/wire/auth", value=b"v"))
        assert excinfo.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT)
        _call(
            channel, m.KV_PUT, rpc_pb2.PutRequest(key=b"/wire/auth", value=b"v"), metadata=[("token", token)]
        )
    finally:
        metadata = [("token", token)] if token else None
        _call(channel, m.AUTH_DISABLE, rpc_pb2.AuthDisableRequest(), metadata=metadata)

    for user in ("alice", "nopass", "root"):
        _call(channel, m.AUTH_USER_DELETE, rpc_pb2.AuthUserDeleteRequest(name=user))
    _call(channel, m.AUTH_ROLE_DELETE, rpc_pb2.AuthRoleDeleteRequest(role="reader"))
    assert "alice" not in _call(channel, m.AUTH_USER_LIST, rpc_pb2.AuthUserListRequest()).users
