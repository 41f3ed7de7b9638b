"""etcdsync: a trio-native etcd v3 client and fenced, herd-free distributed concurrency recipes.

The client core lives in :mod:`etcdsync.client`; this package re-exports what most programs need
(``open_client``, the recipes and the whole error tree) so that ``import etcdsync`` is enough.
``__all__`` is checked by a test.
"""

from __future__ import annotations

from ._election import (
    Election as Election,
    LeaderStream as LeaderStream,
)
from ._keys import (
    WaitStatistics as WaitStatistics,
)
from ._mutex import (
    Mutex as Mutex,
    QueueLock as QueueLock,
)
from ._rwmutex import (
    RWMutex as RWMutex,
)
from ._session import (
    Session as Session,
    SessionStatistics as SessionStatistics,
    open_session as open_session,
)
from ._version import (
    __version__ as __version__,
)
from .client import (
    AbortedError as AbortedError,
    AlreadyExistsError as AlreadyExistsError,
    AuthenticationError as AuthenticationError,
    CancelledRpcError as CancelledRpcError,
    Client as Client,
    CompactedError as CompactedError,
    Compare as Compare,
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
    KeyValue as KeyValue,
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
    Op as Op,
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
    SortOrder as SortOrder,
    SortTarget as SortTarget,
    STMConflictError as STMConflictError,
    TooManyParticipantsError as TooManyParticipantsError,
    TooManyRequestsError as TooManyRequestsError,
    TransportError as TransportError,
    UnauthenticatedError as UnauthenticatedError,
    UnavailableError as UnavailableError,
    UnimplementedError as UnimplementedError,
    UnknownError as UnknownError,
    open_client as open_client,
)

__all__ = (
    "AbortedError",
    "AlreadyExistsError",
    "AuthenticationError",
    "CancelledRpcError",
    "Client",
    "CompactedError",
    "Compare",
    "ConnectionFailedError",
    "CorruptClusterError",
    "DataLossError",
    "DeadlineExceededError",
    "Election",
    "EtcdError",
    "EtcdInternalError",
    "FailedPreconditionError",
    "FutureRevisionError",
    "GuardFailedError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidAuthTokenError",
    "KeyNotFoundError",
    "KeyValue",
    "LeaderChangedError",
    "LeaderStream",
    "LeaseExistsError",
    "LeaseNotFoundError",
    "LeaseTTLTooLargeError",
    "LockReleasedError",
    "Mutex",
    "NoClusterLeaderError",
    "NoEndpointAvailableError",
    "NoLeaderError",
    "NoSpaceError",
    "NotFoundError",
    "NotLeaderError",
    "Op",
    "OutOfRangeError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "ProtocolError",
    "QueueLock",
    "RWMutex",
    "RecipeError",
    "RequestTimedOutError",
    "RequestTooLargeError",
    "ResourceExhaustedError",
    "RpcError",
    "STMConflictError",
    "Session",
    "SessionExpiredError",
    "SessionStatistics",
    "SortOrder",
    "SortTarget",
    "TooManyParticipantsError",
    "TooManyRequestsError",
    "TransportError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "WaitStatistics",
    "__version__",
    "open_client",
    "open_session",
)


def _fix_module() -> None:
    # Tracebacks and reprs say etcdsync.Session rather than etcdsync._session.Session.
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("etcdsync._"):
            obj.__module__ = __name__


_fix_module()
