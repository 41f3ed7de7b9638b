"""etcdsync: a trio-native etcd v3 client and fenced, herd-free distributed concurrency recipes.

The client core lives in :mod:`etcdsync.client`; this package re-exports what most programs need
(``open_client``, the recipes and the whole error tree) so that ``import etcdsync`` is enough.
``__all__`` is checked by a test.
"""

from __future__ import annotations

from ._barrier import (
    Barrier as Barrier,
)
from ._double_barrier import (
    DoubleBarrier as DoubleBarrier,
)
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
from ._queue import (
    PriorityQueue as PriorityQueue,
    Queue as Queue,
    QueueStatistics as QueueStatistics,
)
from ._rwmutex import (
    RWMutex as RWMutex,
)
from ._semaphore import (
    Semaphore as Semaphore,
    SemaphoreLimitMismatchError as SemaphoreLimitMismatchError,
)
from ._session import (
    Session as Session,
    SessionStatistics as SessionStatistics,
    open_session as open_session,
)
from ._stm import (
    STM as STM,
    Isolation as Isolation,
    run_stm as run_stm,
)
from ._version import (
    __version__ as __version__,
)
from .client import (
    AbortedError as AbortedError,
    AlreadyExistsError as AlreadyExistsError,
    AuthenticationError as AuthenticationError,
    AuthNotEnabledError as AuthNotEnabledError,
    AuthSetupError as AuthSetupError,
    BadLeaderTransfereeError as BadLeaderTransfereeError,
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
    LearnerNotReadyError as LearnerNotReadyError,
    LeaseExistsError as LeaseExistsError,
    LeaseNotFoundError as LeaseNotFoundError,
    LeaseTTLTooLargeError as LeaseTTLTooLargeError,
    LockReleasedError as LockReleasedError,
    MemberBadURLsError as MemberBadURLsError,
    MemberExistsError as MemberExistsError,
    MemberNotFoundError as MemberNotFoundError,
    MemberNotLearnerError as MemberNotLearnerError,
    NoClusterLeaderError as NoClusterLeaderError,
    NoEndpointAvailableError as NoEndpointAvailableError,
    NoLeaderError as NoLeaderError,
    NoSpaceError as NoSpaceError,
    NotEnoughStartedMembersError as NotEnoughStartedMembersError,
    NotFoundError as NotFoundError,
    NotLeaderError as NotLeaderError,
    Op as Op,
    OutcomeUnknownError as OutcomeUnknownError,
    OutOfRangeError as OutOfRangeError,
    PermissionDeniedError as PermissionDeniedError,
    PermissionNotGrantedError as PermissionNotGrantedError,
    ProtocolError as ProtocolError,
    RecipeError as RecipeError,
    RequestTimedOutError as RequestTimedOutError,
    RequestTooLargeError as RequestTooLargeError,
    ResourceExhaustedError as ResourceExhaustedError,
    RoleExistsError as RoleExistsError,
    RoleNotFoundError as RoleNotFoundError,
    RoleNotGrantedError as RoleNotGrantedError,
    RpcError as RpcError,
    SessionExpiredError as SessionExpiredError,
    SnapshotIntegrityError as SnapshotIntegrityError,
    SortOrder as SortOrder,
    SortTarget as SortTarget,
    STMConflictError as STMConflictError,
    TooManyLearnersError as TooManyLearnersError,
    TooManyParticipantsError as TooManyParticipantsError,
    TooManyRequestsError as TooManyRequestsError,
    TransportError as TransportError,
    UnauthenticatedError as UnauthenticatedError,
    UnavailableError as UnavailableError,
    UnhealthyClusterError as UnhealthyClusterError,
    UnimplementedError as UnimplementedError,
    UnknownError as UnknownError,
    UserExistsError as UserExistsError,
    UserNotFoundError as UserNotFoundError,
    list_and_watch as list_and_watch,
    open_client as open_client,
)

__all__ = (
    "AbortedError",
    "AlreadyExistsError",
    "AuthNotEnabledError",
    "AuthSetupError",
    "AuthenticationError",
    "BadLeaderTransfereeError",
    "Barrier",
    "CancelledRpcError",
    "Client",
    "CompactedError",
    "Compare",
    "ConnectionFailedError",
    "CorruptClusterError",
    "DataLossError",
    "DeadlineExceededError",
    "DoubleBarrier",
    "Election",
    "EtcdError",
    "EtcdInternalError",
    "FailedPreconditionError",
    "FutureRevisionError",
    "GuardFailedError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidAuthTokenError",
    "Isolation",
    "KeyNotFoundError",
    "KeyValue",
    "LeaderChangedError",
    "LeaderStream",
    "LearnerNotReadyError",
    "LeaseExistsError",
    "LeaseNotFoundError",
    "LeaseTTLTooLargeError",
    "LockReleasedError",
    "MemberBadURLsError",
    "MemberExistsError",
    "MemberNotFoundError",
    "MemberNotLearnerError",
    "Mutex",
    "NoClusterLeaderError",
    "NoEndpointAvailableError",
    "NoLeaderError",
    "NoSpaceError",
    "NotEnoughStartedMembersError",
    "NotFoundError",
    "NotLeaderError",
    "Op",
    "OutOfRangeError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "PermissionNotGrantedError",
    "PriorityQueue",
    "ProtocolError",
    "Queue",
    "QueueLock",
    "QueueStatistics",
    "RWMutex",
    "RecipeError",
    "RequestTimedOutError",
    "RequestTooLargeError",
    "ResourceExhaustedError",
    "RoleExistsError",
    "RoleNotFoundError",
    "RoleNotGrantedError",
    "RpcError",
    "STM",
    "STMConflictError",
    "Semaphore",
    "SemaphoreLimitMismatchError",
    "Session",
    "SessionExpiredError",
    "SessionStatistics",
    "SnapshotIntegrityError",
    "SortOrder",
    "SortTarget",
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
    "WaitStatistics",
    "__version__",
    "list_and_watch",
    "open_client",
    "open_session",
    "run_stm",
)


def _fix_module() -> None:
    # Tracebacks and reprs say etcdsync.Session rather than etcdsync._session.Session.
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("etcdsync._"):
            obj.__module__ = __name__


_fix_module()
