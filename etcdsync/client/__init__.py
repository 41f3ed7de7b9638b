"""The etcd v3 client core: connection, KV, transactions, leases, watches, and the error tree.

Everything here is re-exported explicitly; ``__all__`` is checked by a test.
"""

from __future__ import annotations

from ._errors import (
    AbortedError as AbortedError,
    AlreadyExistsError as AlreadyExistsError,
    AuthenticationError as AuthenticationError,
    CancelledRpcError as CancelledRpcError,
    CompactedError as CompactedError,
    ConnectionFailedError as ConnectionFailedError,
    CorruptClusterError as CorruptClusterError,
    DataLossError as DataLossError,
    DeadlineExceededError as DeadlineExceededError,
    EtcdError as EtcdError,
    EtcdInternalError as EtcdInternalError,
    FailedPreconditionError as FailedPreconditionError,
    FutureRevisionError as FutureRevisionError,
    GuardFailedError as GuardFailedError,
    InternalError as InternalError,
    InvalidArgumentError as InvalidArgumentError,
    InvalidAuthTokenError as InvalidAuthTokenError,
    KeyNotFoundError as KeyNotFoundError,
    LeaderChangedError as LeaderChangedError,
    LeaseExistsError as LeaseExistsError,
    LeaseNotFoundError as LeaseNotFoundError,
    LeaseTTLTooLargeError as LeaseTTLTooLargeError,
    LockReleasedError as LockReleasedError,
    NoClusterLeaderError as NoClusterLeaderError,
    NoEndpointAvailableError as NoEndpointAvailableError,
    NoLeaderError as NoLeaderError,
    NoSpaceError as NoSpaceError,
    NotFoundError as NotFoundError,
    NotLeaderError as NotLeaderError,
    OutcomeUnknownError as OutcomeUnknownError,
    OutOfRangeError as OutOfRangeError,
    PermissionDeniedError as PermissionDeniedError,
    ProtocolError as ProtocolError,
    RecipeError as RecipeError,
    RequestTimedOutError as RequestTimedOutError,
    RequestTooLargeError as RequestTooLargeError,
    ResourceExhaustedError as ResourceExhaustedError,
    RpcError as RpcError,
    SessionExpiredError as SessionExpiredError,
    STMConflictError as STMConflictError,
    TooManyParticipantsError as TooManyParticipantsError,
    TooManyRequestsError as TooManyRequestsError,
    TransportError as TransportError,
    UnauthenticatedError as UnauthenticatedError,
    UnavailableError as UnavailableError,
    UnimplementedError as UnimplementedError,
    UnknownError as UnknownError,
)

__all__ = (
    "AbortedError",
    "AlreadyExistsError",
    "AuthenticationError",
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
    "LeaseExistsError",
    "LeaseNotFoundError",
    "LeaseTTLTooLargeError",
    "LockReleasedError",
    "NoClusterLeaderError",
    "NoEndpointAvailableError",
    "NoLeaderError",
    "NoSpaceError",
    "NotFoundError",
    "NotLeaderError",
    "OutOfRangeError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "ProtocolError",
    "RecipeError",
    "RequestTimedOutError",
    "RequestTooLargeError",
    "ResourceExhaustedError",
    "RpcError",
    "STMConflictError",
    "SessionExpiredError",
    "TooManyParticipantsError",
    "TooManyRequestsError",
    "TransportError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
)


def _fix_module() -> None:
    # Tracebacks and reprs say etcdsync.client.X rather than etcdsync.client._errors.X.
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("etcdsync.client._"):
            obj.__module__ = __name__


_fix_module()
