"""The status → exception registry: code *and* message, most specific class wins, chaining kept."""

from __future__ import annotations

import pytest

import etcdsync
from etcdsync.client._errors import error_from_status


@pytest.mark.parametrize(
    ("code", "message", "cls"),
    [
        (11, "etcdserver: mvcc: required revision has been compacted", etcdsync.CompactedError),
        (11, "etcdserver: mvcc: required revision is a future revision", etcdsync.FutureRevisionError),
        (11, "etcdserver: too large lease TTL", etcdsync.LeaseTTLTooLargeError),
        (11, "something new", etcdsync.OutOfRangeError),
        (5, "etcdserver: requested lease not found", etcdsync.LeaseNotFoundError),
        # v3lock/v3election send everything as UNKNOWN: the message still identifies it.
        (2, "etcdserver: requested lease not found", etcdsync.LeaseNotFoundError),
        (2, "etcdserver: mvcc: database space exceeded", etcdsync.NoSpaceError),
        (8, "etcdserver: mvcc: database space exceeded", etcdsync.NoSpaceError),
        (8, "etcdserver: too many requests", etcdsync.TooManyRequestsError),
        (14, "etcdserver: no leader", etcdsync.NoClusterLeaderError),
        (14, "etcdserver: request timed out", etcdsync.RequestTimedOutError),
        (14, "etcdserver: leader changed", etcdsync.LeaderChangedError),
        (14, "connection reset", etcdsync.UnavailableError),
        (3, "etcdserver: key is not provided", etcdsync.InvalidArgumentError),
        (3, "etcdserver: key not found", etcdsync.KeyNotFoundError),
        (3, "etcdserver: request is too large", etcdsync.RequestTooLargeError),
        (3, "etcdserver: authentication failed, invalid user ID or password", etcdsync.AuthenticationError),
        (3, "etcdserver: user name is empty", etcdsync.AuthenticationError),
        (3, "etcdserver: revision of auth store is old", etcdsync.InvalidAuthTokenError),
        (16, "etcdserver: invalid auth token", etcdsync.InvalidAuthTokenError),
        (7, "etcdserver: permission denied", etcdsync.PermissionDeniedError),
        (9, "etcdserver: lease already exists", etcdsync.LeaseExistsError),
        (4, "context deadline exceeded", etcdsync.DeadlineExceededError),
        (12, "unknown service etcdserverpb.KV", etcdsync.UnimplementedError),
        (15, "etcdserver: corrupt cluster", etcdsync.CorruptClusterError),
        (1, "", etcdsync.CancelledRpcError),
        (2, "", etcdsync.UnknownError),
        (99, "from the future", etcdsync.RpcError),
    ],
)
def test_maps_code_and_message(code: int, message: str, cls: type[etcdsync.RpcError]) -> None:
    err = error_from_status(code, message, (("k", "v"),))
    assert type(err) is cls
    assert err.code == code
    assert err.details == message
    assert err.metadata == (("k", "v"),)
    assert isinstance(err, etcdsync.RpcError)
    assert isinstance(err, etcdsync.EtcdError)


def test_invalid_auth_token_keeps_unauthenticated_code() -> None:
    assert etcdsync.InvalidAuthTokenError().code == 16
    assert issubclass(etcdsync.InvalidAuthTokenError, etcdsync.UnauthenticatedError)


def test_specific_classes_sit_below_their_code_class() -> None:
    assert issubclass(etcdsync.CompactedError, etcdsync.OutOfRangeError)
    assert issubclass(etcdsync.FutureRevisionError, etcdsync.OutOfRangeError)
    assert issubclass(etcdsync.LeaseNotFoundError, etcdsync.NotFoundError)
    assert issubclass(etcdsync.NoSpaceError, etcdsync.ResourceExhaustedError)
    assert issubclass(etcdsync.NoClusterLeaderError, etcdsync.UnavailableError)


def test_str_names_details_and_code() -> None:
    err = error_from_status(11, "etcdserver: mvcc: required revision has been compacted")
    assert str(err) == "etcdserver: mvcc: required revision has been compacted (gRPC status 11)"
    assert str(etcdsync.RpcError(code=3)) == "gRPC status 3"


def test_compacted_error_carries_revision() -> None:
    err = etcdsync.CompactedError(compact_revision=42)
    assert err.compact_revision == 42
    assert err.code == 11
    assert str(err).endswith("compacted at revision 42")
    assert (
        error_from_status(11, "etcdserver: mvcc: required revision has been compacted").compact_revision
        is None
    )


def test_chaining_is_kept_when_raised_from() -> None:
    cause = RuntimeError("status 11")
    with pytest.raises(etcdsync.CompactedError) as info:
        try:
            raise cause
        except RuntimeError as exc:
            raise error_from_status(11, "etcdserver: mvcc: required revision has been compacted") from exc
    assert info.value.__cause__ is cause


def test_recipe_and_transport_errors_carry_their_fields() -> None:
    err = etcdsync.ConnectionFailedError("refused", endpoint="127.0.0.1:1", request_sent=False)
    assert (err.endpoint, err.request_sent) == ("127.0.0.1:1", False)
    assert isinstance(err, etcdsync.TransportError)
    nea = etcdsync.NoEndpointAvailableError("all endpoints failed", errors={"a:1": OSError("refused")})
    assert "a:1: OSError: refused" in str(nea)
    assert isinstance(nea.errors["a:1"], OSError)
    stm = etcdsync.STMConflictError("gave up", keys=[b"k"], attempts=3)
    assert (stm.keys, stm.attempts) == ((b"k",), 3)
    guard = etcdsync.GuardFailedError("guard failed", revision=7)
    assert (guard.kvs, guard.revision) == ((), 7)
    for cls in (
        etcdsync.SessionExpiredError,
        etcdsync.LockReleasedError,
        etcdsync.NotLeaderError,
        etcdsync.NoLeaderError,
        etcdsync.GuardFailedError,
        etcdsync.STMConflictError,
    ):
        assert issubclass(cls, etcdsync.RecipeError)
