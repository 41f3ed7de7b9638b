"""The one exception tree of etcdsync, and the registry that maps gRPC statuses onto it.

Every error etcdsync raises on purpose is an ``EtcdError``, except caller mistakes, which are
:class:`ValueError`/:class:`TypeError` raised before any RPC is sent::

    EtcdError
      TransportError                 the network or the peer failed; __cause__ says how
        ConnectionFailedError        one endpoint could not be reached or broke (.endpoint, .request_sent)
        OutcomeUnknownError          a write may or may not have been applied; never retried blindly
        NoEndpointAvailableError     every endpoint failed (.errors: endpoint -> exception)
        ProtocolError                the peer spoke something that is not etcd's gRPC API
        SnapshotIntegrityError       a snapshot stream ended short, or its SHA-256 did not match
      RpcError                       the server answered a non-OK gRPC status (.code, .details, .metadata)
        CancelledRpcError (1), UnknownError (2), InvalidArgumentError (3),
        DeadlineExceededError (4), NotFoundError (5), AlreadyExistsError (6),
        PermissionDeniedError (7), ResourceExhaustedError (8), FailedPreconditionError (9),
        AbortedError (10), OutOfRangeError (11), UnimplementedError (12), InternalError (13),
        UnavailableError (14), DataLossError (15), UnauthenticatedError (16)
        AuthenticationError          wrong user name or password, or auth required and none given
        ...                          more specific classes below their code's class: CompactedError,
                                     FutureRevisionError, LeaseNotFoundError, NoSpaceError,
                                     NoClusterLeaderError, InvalidAuthTokenError, ...
                                     membership: MemberNotFoundError, MemberExistsError,
                                     MemberBadURLsError, MemberNotLearnerError, LearnerNotReadyError,
                                     TooManyLearnersError, NotEnoughStartedMembersError,
                                     UnhealthyClusterError, BadLeaderTransfereeError; auth administration:
                                     AuthNotEnabledError, AuthSetupError, UserExistsError,
                                     UserNotFoundError, RoleExistsError, RoleNotFoundError,
                                     RoleNotGrantedError, PermissionNotGrantedError
      RecipeError                    a recipe's precondition does not hold
        SessionExpiredError, LockReleasedError, NotLeaderError, NoLeaderError, GuardFailedError,
        STMConflictError, TooManyParticipantsError
      EtcdInternalError              a bug in etcdsync: please report it

etcd reuses gRPC codes for different conditions (OUT_OF_RANGE means "compacted", "future revision" or
"lease TTL too large"), and the v3lock/v3election services send everything as UNKNOWN. So a status is
mapped on its code *and* its message: ``error_from_status`` looks up the exact ``(code, message)``
pair, then the message alone, then the code alone. Classes join the registry with the
``_status`` decorator, never through an if/elif chain.

Wrapping always chains: the client raises ``error_from_status(...) from status_error``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ._types import KeyValue

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "AuthNotEnabledError",
    "AuthSetupError",
    "AuthenticationError",
    "BadLeaderTransfereeError",
    "CancelledRpcError",
    "CompactedError",
    "ConnectionFailedError",
    "CorruptClusterError",
    "DataLossError",
    "DeadlineExceededError",
    "EtcdError",
    "EtcdInternalError",
    "FailedPreconditionError",
    "FutureRevisionError",
    "GuardFailedError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidAuthTokenError",
    "KeyNotFoundError",
    "LeaderChangedError",
    "LearnerNotReadyError",
    "LeaseExistsError",
    "LeaseNotFoundError",
    "LeaseTTLTooLargeError",
    "LockReleasedError",
    "MemberBadURLsError",
    "MemberExistsError",
    "MemberNotFoundError",
    "MemberNotLearnerError",
    "NoClusterLeaderError",
    "NoEndpointAvailableError",
    "NoLeaderError",
    "NoSpaceError",
    "NotEnoughStartedMembersError",
    "NotFoundError",
    "NotLeaderError",
    "OutOfRangeError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "PermissionNotGrantedError",
    "ProtocolError",
    "RecipeError",
    "RequestTimedOutError",
    "RequestTooLargeError",
    "ResourceExhaustedError",
    "RoleExistsError",
    "RoleNotFoundError",
    "RoleNotGrantedError",
    "RpcError",
    "STMConflictError",
    "SessionExpiredError",
    "SnapshotIntegrityError",
    "TooManyLearnersError",
    "TooManyParticipantsError",
    "TooManyRequestsError",
    "TransportError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnhealthyClusterError",
    "UnimplementedError",
    "UnknownError",
    "UserExistsError",
    "UserNotFoundError",
    "error_from_status",
]

Metadata = tuple[tuple[str, str], ...]


class EtcdError(Exception):
    """Base of every error etcdsync raises on purpose (caller mistakes are ``ValueError``/``TypeError``)."""


class EtcdInternalError(EtcdError):
    """Something happened that etcdsync's own logic says cannot happen: a bug, please report it."""


# ---------------------------------------------------------------------------------------------------------
# Transport


class TransportError(EtcdError):
    """The network or the peer failed before a gRPC status could be read; ``__cause__`` says how."""


class ConnectionFailedError(TransportError):
    """One endpoint could not be reached, or its connection broke.

    Attributes:
        endpoint: the ``host:port`` that failed.
        request_sent: False when the request provably never reached the server (so it is safe to send
            again, even a write); True when it may have been received and applied.
    """

    def __init__(self, message: str, *, endpoint: str, request_sent: bool) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.request_sent = request_sent


class OutcomeUnknownError(TransportError):
    """A write may or may not have been applied: the connection broke after it was sent.

    etcdsync never retries such a write by itself. Read the state back (or use a guarded write with
    a compare that only the first application can satisfy) to find out what happened.
    """


class NoEndpointAvailableError(TransportError):
    """Every endpoint failed. ``errors`` maps each endpoint to the last error it gave."""

    def __init__(self, message: str, *, errors: Mapping[str, BaseException]) -> None:
        detail = "; ".join(f"{ep}: {type(exc).__name__}: {exc}" for ep, exc in errors.items())
        super().__init__(f"{message} ({detail})" if detail else message)
        self.errors = dict(errors)


class ProtocolError(TransportError):
    """The peer does not speak etcd's gRPC API (an HTTP/1 server, another gRPC service, garbage)."""


class SnapshotIntegrityError(TransportError):
    """A snapshot stream did not deliver what the server announced.

    etcd says, with every chunk, how many bytes of the database are still to come, and ends the stream
    with the SHA-256 of the database. The stream ended before the announced size, went past it, or
    the digest did not match what was received.

    Attributes:
        expected_bytes: the database size announced by the server (``None`` if nothing arrived).
        received_bytes: the database bytes received.
    """

    def __init__(self, message: str, *, expected_bytes: int | None, received_bytes: int) -> None:
        super().__init__(message)
        self.expected_bytes = expected_bytes
        self.received_bytes = received_bytes


# ---------------------------------------------------------------------------------------------------------
# Server statuses and their registry

_E = TypeVar("_E", bound="type[RpcError]")

# Why three tables: etcd's messages are stable API (rpctypes/error.go) and identify the condition;
# the code alone is ambiguous (OUT_OF_RANGE), and some services send every error as UNKNOWN with the
# right message (v3lock, v3election). Lookup order: exact pair, message alone, code alone.
_BY_CODE_AND_MESSAGE: dict[tuple[int, str], type[RpcError]] = {}
_BY_MESSAGE: dict[str, type[RpcError]] = {}
_BY_CODE: dict[int, type[RpcError]] = {}


def _status(code: int, *messages: str) -> Callable[[_E], _E]:
    """Class decorator: register an :class:`RpcError` subclass for ``code`` and etcd's ``messages``.

    With no messages, the class is the fallback for the whole code.
    """

    def register(cls: _E) -> _E:
        # Decorators apply bottom-up: the one nearest the class sets its code.
        if "default_code" not in cls.__dict__:
            cls.default_code = code
        if not messages:
            if code in _BY_CODE:
                raise AssertionError(f"code {code} registered twice")
            _BY_CODE[code] = cls
        for message in messages:
            _BY_CODE_AND_MESSAGE[(code, message)] = cls
            _BY_MESSAGE.setdefault(message, cls)
        return cls

    return register


class RpcError(EtcdError):
    """The server answered with a non-OK gRPC status.

    Attributes:
        code: the gRPC status code (an ``int``, as in ``grpc.StatusCode.X.value[0]``).
        details: the status message, e.g. ``"etcdserver: mvcc: required revision has been compacted"``.
        metadata: the trailers that came with the status.
    """

    default_code: int = 2

    def __init__(self, details: str = "", *, code: int | None = None, metadata: Metadata = ()) -> None:
        super().__init__(details)
        self.code = self.default_code if code is None else code
        self.details = details
        self.metadata = metadata

    def __str__(self) -> str:
        return f"{self.details} (gRPC status {self.code})" if self.details else f"gRPC status {self.code}"


@_status(1)
class CancelledRpcError(RpcError):
    """The server reports the call as cancelled (gRPC CANCELLED), e.g. because it is shutting down."""


@_status(2)
class UnknownError(RpcError):
    """gRPC UNKNOWN with a message etcdsync does not recognise."""


@_status(3)
class InvalidArgumentError(RpcError):
    """The server rejected the request as invalid (gRPC INVALID_ARGUMENT)."""


@_status(4)
class DeadlineExceededError(RpcError):
    """The server gave up at the deadline the caller sent (gRPC DEADLINE_EXCEEDED).

    A deadline that runs out locally stays trio's ``Cancelled``/``TooSlowError``.
    """


@_status(5)
class NotFoundError(RpcError):
    """gRPC NOT_FOUND."""


@_status(6)
class AlreadyExistsError(RpcError):
    """gRPC ALREADY_EXISTS."""


# The maintenance service (Snapshot, Defragment, HashKV as a non-root user) returns the auth store's
# own error untranslated, so it arrives as UNKNOWN "auth: permission denied".
@_status(2, "auth: permission denied")
@_status(7, "etcdserver: permission denied")
class PermissionDeniedError(RpcError):
    """The authenticated user lacks the permission for this key or operation."""


@_status(8)
class ResourceExhaustedError(RpcError):
    """gRPC RESOURCE_EXHAUSTED."""


@_status(9)
class FailedPreconditionError(RpcError):
    """gRPC FAILED_PRECONDITION."""


@_status(10)
class AbortedError(RpcError):
    """gRPC ABORTED."""


@_status(11)
class OutOfRangeError(RpcError):
    """gRPC OUT_OF_RANGE."""


@_status(12)
class UnimplementedError(RpcError):
    """The server does not implement the method: probably not an etcd v3 endpoint, or too old."""


@_status(13)
class InternalError(RpcError):
    """gRPC INTERNAL."""


@_status(14)
class UnavailableError(RpcError):
    """The server cannot serve the request now (gRPC UNAVAILABLE)."""


@_status(15)
class DataLossError(RpcError):
    """gRPC DATA_LOSS."""


@_status(16)
class UnauthenticatedError(RpcError):
    """gRPC UNAUTHENTICATED."""


@_status(3, "etcdserver: key not found")
class KeyNotFoundError(InvalidArgumentError):
    """``put(..., ignore_value=True)`` or ``ignore_lease=True`` on a key that does not exist."""


@_status(3, "etcdserver: request is too large")
class RequestTooLargeError(InvalidArgumentError):
    """The request is larger than the server's ``--max-request-bytes``."""


# A user added with no_password=True has no password to check; etcd 3.4 answers UNKNOWN.
@_status(2, "auth: authentication failed, password was given for no password user")
@_status(
    3,
    "etcdserver: authentication failed, invalid user ID or password",
    "etcdserver: user name is empty",
    "etcdserver: invalid auth management",
)
class AuthenticationError(InvalidArgumentError):
    """Wrong user name or password, or authentication is required and no credentials were given."""


@_status(3, "etcdserver: revision of auth store is old")
@_status(16, "etcdserver: invalid auth token")
class InvalidAuthTokenError(UnauthenticatedError):
    """The auth token is invalid or stale; the client re-authenticates once and retries."""


@_status(11, "etcdserver: mvcc: required revision has been compacted")
class CompactedError(OutOfRangeError):
    """The requested revision has been compacted away.

    Attributes:
        compact_revision: the compaction revision when the server said it (watches do), else ``None``.
    """

    def __init__(
        self,
        details: str = "etcdserver: mvcc: required revision has been compacted",
        *,
        compact_revision: int | None = None,
        code: int | None = None,
        metadata: Metadata = (),
    ) -> None:
        super().__init__(details, code=code, metadata=metadata)
        self.compact_revision = compact_revision

    def __str__(self) -> str:
        base = super().__str__()
        if self.compact_revision is None:
            return base
        return f"{base}; compacted at revision {self.compact_revision}"


@_status(11, "etcdserver: mvcc: required revision is a future revision")
class FutureRevisionError(OutOfRangeError):
    """The requested revision is newer than the server's current revision."""


@_status(11, "etcdserver: too large lease TTL")
class LeaseTTLTooLargeError(OutOfRangeError):
    """The requested lease TTL is above etcd's maximum."""


@_status(5, "etcdserver: requested lease not found")
class LeaseNotFoundError(NotFoundError):
    """The lease does not exist (never granted, revoked, or expired)."""


@_status(9, "etcdserver: lease already exists")
class LeaseExistsError(FailedPreconditionError):
    """A lease with the requested explicit ID already exists."""


@_status(8, "etcdserver: mvcc: database space exceeded")
class NoSpaceError(ResourceExhaustedError):
    """The cluster's NOSPACE alarm is raised: compact, defragment and ``alarm_disarm`` to recover."""


@_status(8, "etcdserver: too many requests")
class TooManyRequestsError(ResourceExhaustedError):
    """The server's apply queue is too far behind its commit index."""


@_status(14, "etcdserver: no leader")
class NoClusterLeaderError(UnavailableError):
    """The member has no raft leader (partitioned or electing); the request was not applied."""


@_status(14, "etcdserver: leader changed", "etcdserver: not leader")
class LeaderChangedError(UnavailableError):
    """The raft leader changed while the request was in flight."""


@_status(
    14,
    "etcdserver: request timed out",
    "etcdserver: request timed out, possibly due to previous leader failure",
    "etcdserver: request timed out, possibly due to connection lost",
    "etcdserver: request timed out, waiting for the applied index took too long",
)
class RequestTimedOutError(UnavailableError):
    """The server timed out proposing the request: a write's outcome is unknown."""


@_status(15, "etcdserver: corrupt cluster")
class CorruptClusterError(DataLossError):
    """The cluster detected data corruption: stop and page a human."""


# Cluster membership (MemberAdd/Remove/Update/Promote) and leadership transfer.


@_status(5, "etcdserver: member not found")
class MemberNotFoundError(NotFoundError):
    """No member has the given ID (it was never added, or was removed)."""


@_status(9, "etcdserver: member ID already exist", "etcdserver: Peer URLs already exists")
class MemberExistsError(FailedPreconditionError):
    """A member with this ID or one of these peer URLs is already in the cluster."""


@_status(3, "etcdserver: given member URLs are invalid")
class MemberBadURLsError(InvalidArgumentError):
    """The peer URLs are not valid URLs (etcd wants ``http(s)://host:port``)."""


@_status(9, "etcdserver: can only promote a learner member")
class MemberNotLearnerError(FailedPreconditionError):
    """Only a learner can be promoted; this member already votes."""


@_status(9, "etcdserver: can only promote a learner member which is in sync with leader")
class LearnerNotReadyError(FailedPreconditionError):
    """The learner has not caught up with the leader's log yet (or has not started): retry later."""


@_status(9, "etcdserver: too many learner members in cluster")
class TooManyLearnersError(FailedPreconditionError):
    """The cluster already has the most learners it allows (one, in etcd 3.4 and 3.5)."""


@_status(9, "etcdserver: re-configuration failed due to not enough started members")
class NotEnoughStartedMembersError(FailedPreconditionError):
    """The change would leave too few started members for a quorum (``--strict-reconfig-check``)."""


@_status(14, "etcdserver: unhealthy cluster")
class UnhealthyClusterError(UnavailableError):
    """A membership change was refused because not every member has been connected for the last
    5 seconds (etcd's ``--strict-reconfig-check``); nothing was changed. Retry shortly."""


@_status(9, "etcdserver: bad leader transferee")
class BadLeaderTransfereeError(FailedPreconditionError):
    """``move_leader`` was given an ID that is not a voting member of the cluster."""


# Auth administration (AuthEnable, User*, Role*).


@_status(9, "etcdserver: authentication is not enabled")
class AuthNotEnabledError(FailedPreconditionError):
    """The operation needs authentication enabled (e.g. authenticating with a user and password)."""


@_status(9, "etcdserver: root user does not exist", "etcdserver: root user does not have root role")
class AuthSetupError(FailedPreconditionError):
    """Authentication cannot be enabled: add a ``root`` user and grant it the ``root`` role first."""


@_status(9, "etcdserver: user name already exists")
class UserExistsError(FailedPreconditionError):
    """A user with this name already exists."""


@_status(9, "etcdserver: user name not found")
class UserNotFoundError(FailedPreconditionError):
    """No user has this name."""


@_status(9, "etcdserver: role name already exists")
class RoleExistsError(FailedPreconditionError):
    """A role with this name already exists."""


@_status(9, "etcdserver: role name not found")
class RoleNotFoundError(FailedPreconditionError):
    """No role has this name."""


@_status(9, "etcdserver: role is not granted to the user")
class RoleNotGrantedError(FailedPreconditionError):
    """``user_revoke_role``: the user does not have this role."""


@_status(9, "etcdserver: permission is not granted to the role")
class PermissionNotGrantedError(FailedPreconditionError):
    """``role_revoke_permission``: the role has no permission on exactly this key range."""


def error_from_status(code: int, message: str, metadata: Metadata = ()) -> RpcError:
    """Map a gRPC status to the most specific :class:`RpcError` subclass.

    The caller chains: ``raise error_from_status(e.code, e.message, e.trailers) from e``.
    """
    cls = (
        _BY_CODE_AND_MESSAGE.get((code, message))
        or _BY_MESSAGE.get(message)
        or _BY_CODE.get(code)
        or RpcError
    )
    return cls(message, code=code, metadata=metadata)


# ---------------------------------------------------------------------------------------------------------
# Recipes


class RecipeError(EtcdError):
    """A recipe's precondition does not hold (lost session, lock not held, not the leader, ...)."""


class SessionExpiredError(RecipeError):
    """The session's lease is gone (expired, revoked, or not confirmed alive within its TTL).

    Everything held through the session (locks, leaderships, semaphore permits) is lost with it.
    """


class LockReleasedError(RecipeError):
    """The lock is not held by this object: it was released already, or never acquired."""


class NotLeaderError(RecipeError):
    """This election candidate is not (or no longer) the leader."""


class NoLeaderError(RecipeError):
    """Nobody leads the election right now."""


class TooManyParticipantsError(RecipeError):
    """A barrier already has its full count of participants."""


class GuardFailedError(RecipeError):
    """A guarded write was not applied because a guard compare did not hold.

    Attributes:
        kvs: the current values of the guarded keys, read in the same transaction (absent keys are
            missing from the tuple).
        revision: the revision at which the guard was evaluated.
    """

    def __init__(self, message: str, *, kvs: Sequence[KeyValue] = (), revision: int = 0) -> None:
        super().__init__(message)
        self.kvs = tuple(kvs)
        self.revision = revision


class STMConflictError(RecipeError):
    """A software transaction conflicted on every attempt it was allowed.

    Attributes:
        keys: the keys whose conflict made the last attempt fail.
        attempts: how many times ``apply`` ran.
    """

    def __init__(self, message: str, *, keys: Sequence[bytes] = (), attempts: int = 0) -> None:
        super().__init__(message)
        self.keys = tuple(keys)
        self.attempts = attempts
