"""The etcd v3 client: :func:`open_client` and :class:`Client` (KV, transactions, leases).

One :class:`Client` talks to one cluster through one channel (one HTTP/2 connection) per endpoint,
all owned by the nursery of :func:`open_client`. Calls go to a preferred endpoint; when it fails, the
next call prefers another one (see ``_sansio/_endpoints.py``).

Retries follow one rule (the Go client's ``isSafeRetryMutableRPC``): a request is sent again on
another endpoint only when that cannot apply it twice. Reads (ranges, lease lookups, member lists) are
retried on any connection failure or UNAVAILABLE status, within the caller's deadline. A write is
retried only when it provably never reached a server (the connection was never up, or the member
said "no leader" under ``hasleader``); otherwise its failure raises
:class:`~etcdsync.OutcomeUnknownError`.

Every request carries ``hasleader: true``, so a member cut off from its cluster fails at once with
:class:`~etcdsync.NoClusterLeaderError` instead of hanging until the deadline.

Size: over the 800-line mark because :class:`Client` is the whole KV, transaction and lease surface
of the API contract, each method with its argument checks and a docstring that states its errors
(about half the lines); the call path (``_unary``, ``_failover``) is here because every one of those
methods goes through it. Administration lives apart in ``_admin.py``.
"""

from __future__ import annotations

import copy
import logging
import random
import ssl
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Final, Literal, final

import attrs
import trio

from ._admin import AdminMixin
from ._convert import _cluster as cv_cluster, _kv as cv, _methods as rpc
from ._errors import (
    EtcdError,
    GuardFailedError,
    InvalidAuthTokenError,
    LeaseNotFoundError,
    NoClusterLeaderError,
    NoEndpointAvailableError,
    OutcomeUnknownError,
    UnavailableError,
    error_from_status,
)
from ._keys import bytesify, key_range, require_key
from ._lease_keeper import LeaseKeepAlive, LeaseKeeper
from ._nursery import open_owned_nursery
from ._sansio._backoff import Backoff
from ._sansio._endpoints import Endpoint, EndpointPicker, parse_endpoints
from ._sansio._namespace import Namespace
from ._transport import Channel, ChannelOpener, ConnectionLost, StatusError, channel_opener
from ._txn import (
    AnyOp,
    Compare,
    DeleteOp,
    Op,
    PutOp,
    RangeOp,
    TxnOp,
    check_compares,
    check_int,
)
from ._types import (
    DeleteResponse,
    KeyValue,
    LeaseGrant,
    LeaseTimeToLive,
    MemberListResponse,
    PutResponse,
    RangeResponse,
    ResponseHeader,
    SortOrder,
    SortTarget,
    TxnResponse,
)

if TYPE_CHECKING:
    from ._watch import Watch, WatchFilter, WatchHub

__all__ = ["Client", "ClientStatistics", "open_client"]

logger = logging.getLogger(__name__)

#: etcd's default ``--max-request-bytes``: a request larger than this is refused by the server.
DEFAULT_MAX_REQUEST_BYTES: Final = 1536 * 1024
#: etcd's default ``--max-txn-ops``: the most compares, or ops of one branch, a txn may have.
DEFAULT_MAX_TXN_OPS: Final = 128
#: etcd's maximum lease TTL in seconds (``lease.MaxLeaseTTL``).
MAX_LEASE_TTL: Final = 9_000_000_000

_HASLEADER: Final = ("hasleader", "true")
_TRANSPORTS: Final = ("h2", "grpcio")
_PRIVATE = object()


@attrs.frozen(kw_only=True)
class ClientStatistics:
    """A snapshot of a client's state, from :meth:`Client.statistics`.

    Attributes:
        endpoints: every endpoint, in configuration order.
        current_endpoint: the endpoint calls go to first.
        open_streams: HTTP/2 streams open across all channels (calls in flight, watches, keepalives).
        watchers: watches open on this client.
        sessions: sessions kept alive by this client.
        calls_failed_over: calls that were retried on another endpoint.
    """

    endpoints: tuple[str, ...]
    current_endpoint: str
    open_streams: int
    watchers: int
    sessions: int
    calls_failed_over: int


def _ssl_context_for(endpoint: Endpoint, tls: ssl.SSLContext | None) -> ssl.SSLContext | None:
    if endpoint.tls is False:
        return None
    if endpoint.tls is True and tls is None:
        return ssl.create_default_context()
    return tls


@attrs.define
class _SharedState:
    """The parts of a client that it rebinds, shared by the client and every namespaced view of it.

    ``metadata`` is what every call sends: ``hasleader``, and the token when there is one. It is
    rebuilt only when the token changes (:meth:`set_token`), not per call.
    """

    token: str | None = None
    metadata: tuple[tuple[str, str], ...] = (_HASLEADER,)
    closed: bool = False
    failovers: int = 0
    watch_hub: WatchHub | None = None

    def set_token(self, token: str | None) -> None:
        self.token = token
        self.metadata = (_HASLEADER,) if token is None else (_HASLEADER, ("token", token))


#: What the transaction cache remembers of a transaction sent with the same three tuples before.
@attrs.frozen
class _CachedTxn:
    compare: tuple[Compare, ...]
    success: tuple[AnyOp, ...]
    failure: tuple[AnyOp, ...]
    request: bytes
    idempotent: bool


#: How many transactions the cache holds, and the largest request it keeps (it keeps the ops too).
_TXN_CACHE_SIZE: Final = 64
_TXN_CACHE_MAX_BYTES: Final = 4096


@final
class Client(AdminMixin):
    """A connection to an etcd cluster. Open it with :func:`etcdsync.open_client`; it closes with it.

    Example::

        async with etcdsync.open_client("127.0.0.1:2379") as client:
            await client.put(b"/config/mode", b"blue")
            kv = await client.get(b"/config/mode")
            assert kv is not None and kv.value == b"blue"

    Every method that sends an RPC is async and a checkpoint; the deadline of the enclosing cancel
    scope goes to the server as ``grpc-timeout``.
    """

    def __init__(
        self,
        _private: object,
        *,
        nursery: trio.Nursery,
        endpoints: tuple[Endpoint, ...],
        tls: ssl.SSLContext | None,
        open_channel: ChannelOpener,
        username: str | None,
        password: str | None,
        max_request_bytes: int,
        max_txn_ops: int,
        max_rounds: int,
        rng: random.Random,
    ) -> None:
        if _private is not _PRIVATE:
            raise TypeError("use `async with etcdsync.open_client(...) as client:` to make a Client")
        self._nursery = nursery
        self._endpoints = {e.address: e for e in endpoints}
        self._tls = tls
        self._open_channel = open_channel
        self._credentials = (username, password) if username is not None and password is not None else None
        self._auth_lock = trio.Lock()
        self._channels: dict[str, Channel] = {}
        self._channel_lock = trio.Lock()
        self._picker = EndpointPicker(list(self._endpoints))
        self._max_request_bytes = max_request_bytes
        self._max_txn_ops = max_txn_ops
        self._max_rounds = max_rounds
        self._rng = rng
        self._service_scopes: set[trio.CancelScope] = set()
        self._keeper = LeaseKeeper(self)
        # The shared Watch stream's manager, created by the watch layer on first use.
        # What every namespaced view of this client shares, and may rebind.
        self._state = _SharedState()
        self._ns = Namespace(b"")
        # Serialized transactions by the identity of their (compare, success, failure) tuples and the
        # namespace; shared with every view (see _txn_request_cached).
        self._txn_cache: dict[tuple[int, int, int, bytes], _CachedTxn] = {}

    # The shared mutable state, under the names the rest of the client layer uses.
    @property
    def _token(self) -> str | None:
        return self._state.token

    @_token.setter
    def _token(self, value: str | None) -> None:
        self._state.set_token(value)

    @property
    def _closed(self) -> bool:
        return self._state.closed

    @_closed.setter
    def _closed(self, value: bool) -> None:
        self._state.closed = value

    @property
    def _failovers(self) -> int:
        return self._state.failovers

    @_failovers.setter
    def _failovers(self, value: int) -> None:
        self._state.failovers = value

    @property
    def _watch_hub(self) -> WatchHub | None:
        return self._state.watch_hub

    @_watch_hub.setter
    def _watch_hub(self, value: WatchHub | None) -> None:
        self._state.watch_hub = value

    @property
    def namespace(self) -> bytes:
        """The prefix this client's keys live under (``b""`` unless made by :meth:`with_namespace`)."""
        return self._ns.prefix

    def with_namespace(self, prefix: bytes | str) -> Client:
        """A view of this client whose keys all live under ``prefix``.

        Every key in requests and responses is translated — ranges and prefixes, transactions and
        their compares, watches, lease keys — so the view reads and writes only below ``prefix`` and
        sees it as the whole keyspace. Recipes work on a view unchanged. The view shares this
        client's connections, sessions' keep-alive stream and watch stream, and closes with it.
        Views nest: ``client.with_namespace(b"/a/").with_namespace(b"b/")`` lives under ``/a/b/``.

        Example::

            tenant = client.with_namespace(b"/tenants/acme/")
            await tenant.put(b"config", b"...")        # writes /tenants/acme/config
            async with etcdsync.open_session(tenant) as session:
                async with etcdsync.Mutex(session, "/locks/x"):   # /tenants/acme//locks/x/...
                    ...

        Raises:
            ValueError: ``prefix`` is empty.
            TypeError: ``prefix`` is not ``bytes``/``str``.
        """
        view = copy.copy(self)
        view._ns = self._ns.nested(require_key(prefix))
        return view

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<etcdsync.client.Client at {id(self):#x}, {state}, endpoint {self._picker.current} "
            f"(1 of {len(self._endpoints)})>"
        )

    # -----------------------------------------------------------------------------------------------------
    # Plumbing

    @contextmanager
    def _service(self) -> Iterator[None]:
        """Run a background service (a channel, the lease keeper, the watch hub) in a scope that the
        caller's cancellation does not reach: only the client's own exit cancels it.

        Shielded cleanup (revoking a session's lease, deleting a cancelled waiter's key) runs while
        the caller is being cancelled, and needs the connections to still be there.
        """
        with trio.CancelScope(shield=True) as scope:
            if self._closed:
                scope.cancel()
            self._service_scopes.add(scope)
            try:
                yield
            finally:
                self._service_scopes.discard(scope)

    def _stop_services(self) -> None:
        self._closed = True
        for scope in list(self._service_scopes):
            scope.cancel()

    async def _run_channel(self, address: str, *, task_status: trio.TaskStatus[Channel]) -> None:
        started = False
        with self._service():
            async with self._open_channel(
                address, ssl_context=_ssl_context_for(self._endpoints[address], self._tls)
            ) as ch:
                task_status.started(ch)
                started = True
                await trio.sleep_forever()
        if not started:
            # The client closed while the channel was being opened: the service scope absorbed that
            # cancellation, so say so to whoever is waiting in nursery.start().
            raise trio.ClosedResourceError("this etcd client is closed")

    async def _channel(self, address: str) -> Channel:
        channel = self._channels.get(address)
        if channel is None:
            async with self._channel_lock:
                channel = self._channels.get(address)
                if channel is None:
                    channel = await self._nursery.start(self._run_channel, address)
                    self._channels[address] = channel
        return channel

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return self._state.metadata

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this etcd client is closed")

    async def _authenticate(self, stale_token: str | None) -> None:
        """Get a token with the configured credentials, unless another task replaced ``stale_token``."""
        assert self._credentials is not None
        async with self._auth_lock:
            if self._token != stale_token:
                return
            name, password = self._credentials
            request = cv_cluster.authenticate_request(name, password)
            self._token = None
            data = await self._unary(rpc.AUTH_AUTHENTICATE.path, request, idempotent=True, authenticate=False)
            self._token = cv_cluster.authenticate_token(data)

    async def _call_once(
        self, address: str, path: str, request: bytes, *, idempotent: bool, authenticate: bool
    ) -> bytes:
        """One attempt on one endpoint, with at most one transparent re-authentication.

        Raises:
            ConnectionLost: as the channel raised it.
            RpcError: the server's status, mapped (``idempotent`` does not matter here).
        """
        channel = await self._channel(address)
        token = self._state.token
        try:
            return await channel.unary(path, request, metadata=self._state.metadata)
        except StatusError as exc:
            return await self._after_status(channel, path, request, exc, token, authenticate=authenticate)

    async def _after_status(
        self,
        channel: Channel,
        path: str,
        request: bytes,
        status: StatusError,
        token: str | None,
        *,
        authenticate: bool,
    ) -> bytes:
        """Map a call's non-OK ``status`` and raise it, unless it says the ``token`` it was sent with
        is stale and we may re-authenticate: then get a new token and send the call once more.
        """
        err = error_from_status(status.code, status.message, status.trailers)
        if not (isinstance(err, InvalidAuthTokenError) and authenticate and self._credentials is not None):
            raise err from status
        # The token expired or the auth store moved on; the request was not applied.
        await self._authenticate(token)
        try:
            return await channel.unary(path, request, metadata=self._state.metadata)
        except StatusError as again:
            raise error_from_status(again.code, again.message, again.trailers) from again

    async def _unary(
        self, path: str, request: bytes, *, idempotent: bool, authenticate: bool = True
    ) -> bytes:
        """Send a unary call, failing over to other endpoints when that is safe (see the module docstring).

        The usual case -- the preferred endpoint has not failed and its channel is open -- is one
        attempt with nothing allocated for a failover; only a failed attempt goes on to
        :meth:`_failover`, which tries the other endpoints by the same rules.
        """
        state = self._state
        if state.closed:
            raise trio.ClosedResourceError("this etcd client is closed")
        if authenticate and state.token is None and self._credentials is not None:
            await self._authenticate(None)
        address = self._picker.first()
        channel = None if address is None else self._channels.get(address)
        if address is None or channel is None:
            return await self._failover(path, request, idempotent=idempotent, authenticate=authenticate)
        token = state.token
        failure: ConnectionLost | UnavailableError
        try:
            try:
                data = await channel.unary(path, request, metadata=state.metadata)
            except StatusError as exc:
                data = await self._after_status(channel, path, request, exc, token, authenticate=authenticate)
        except (ConnectionLost, UnavailableError) as exc:
            failure = exc
        else:
            self._picker.succeeded(address)
            return data
        failures: dict[str, BaseException] = {}
        self._attempt_failed(address, path, failure, idempotent=idempotent, failures=failures)
        return await self._failover(
            path, request, idempotent=idempotent, authenticate=authenticate, failures=failures, tried=address
        )

    def _attempt_failed(
        self,
        address: str,
        path: str,
        exc: ConnectionLost | UnavailableError,
        *,
        idempotent: bool,
        failures: dict[str, BaseException],
    ) -> None:
        """Record that ``address`` failed; raise ``OutcomeUnknownError`` if the call must not be retried."""
        self._picker.failed(address, trio.current_time())
        if isinstance(exc, ConnectionLost):
            if exc.request_sent and not idempotent:
                raise OutcomeUnknownError(
                    f"{path} was sent to {address} and the connection broke before the answer; "
                    "it may or may not have been applied"
                ) from exc
        elif not idempotent and not isinstance(exc, NoClusterLeaderError):
            raise OutcomeUnknownError(
                f"{path} on {address} failed with {exc}; it may or may not have been applied"
            ) from exc
        failures[address] = exc
        logger.debug("etcd call %s failed on %s: %r; trying the next endpoint", path, address, exc)

    async def _failover(
        self,
        path: str,
        request: bytes,
        *,
        idempotent: bool,
        authenticate: bool,
        failures: dict[str, BaseException] | None = None,
        tried: str | None = None,
    ) -> bytes:
        """Try every endpoint in the picker's order, for up to ``max_rounds`` rounds with backoff between.

        ``tried`` is an endpoint this call already failed on in the first round (``failures`` says
        how); it is not tried again in that round.
        """
        if failures is None:
            failures = {}
        backoff = Backoff(initial=0.025, maximum=1.0, rng=self._rng)
        for round_number in range(self._max_rounds):
            if round_number:
                await trio.sleep(backoff.next_delay())
            for address in self._picker.order(trio.current_time()):
                if round_number == 0 and address == tried:
                    continue
                try:
                    data = await self._call_once(
                        address, path, request, idempotent=idempotent, authenticate=authenticate
                    )
                except (ConnectionLost, UnavailableError) as exc:
                    self._attempt_failed(address, path, exc, idempotent=idempotent, failures=failures)
                else:
                    if failures:
                        self._failovers += 1
                    self._picker.succeeded(address)
                    return data
        raise NoEndpointAvailableError(f"{path} failed on every endpoint", errors=failures)

    def _check_request_size(self, request: bytes) -> bytes:
        if len(request) > self._max_request_bytes:
            raise ValueError(
                f"request of {len(request)} bytes is over the limit of {self._max_request_bytes} bytes "
                "(max_request_bytes; etcd's --max-request-bytes)"
            )
        return request

    def _check_txn(self, txn: TxnOp) -> None:
        limit = self._max_txn_ops
        if len(txn.compare) > limit or len(txn.success) > limit or len(txn.failure) > limit:
            for name, items in (
                ("compares", txn.compare),
                ("success ops", txn.success),
                ("failure ops", txn.failure),
            ):
                if len(items) > limit:
                    raise ValueError(
                        f"txn has {len(items)} {name}; the limit is {limit} "
                        "(max_txn_ops; etcd's --max-txn-ops)"
                    )
        for branch in (txn.success, txn.failure):
            if len(branch) > 1:  # one op cannot clash with itself
                _check_branch_keys(branch)
            for op in branch:
                if isinstance(op, TxnOp):
                    self._check_txn(op)

    # -----------------------------------------------------------------------------------------------------
    # KV

    async def get(
        self, key: bytes | str, *, revision: int = 0, serializable: bool = False
    ) -> KeyValue | None:
        """The key's value at ``revision`` (0: the latest), or ``None`` when it does not exist.

        A checkpoint. ``serializable=True`` reads from the member's local state, which may be stale,
        without a round of consensus.

        Raises:
            CompactedError: ``revision`` has been compacted.
            FutureRevisionError: ``revision`` is newer than the store.
        """
        # The same request as range(key, revision=..., serializable=...), without its RangeOp and
        # RangeResponse.
        wire_key, _ = self._ns.key_range(require_key(key), b"")
        request = cv.get_request(wire_key, check_int("revision", revision), bool(serializable))
        data = await self._unary(rpc.KV_RANGE.path, self._check_request_size(request), idempotent=True)
        return self._ns.kv_or_none(cv.get_response(data))

    async def range(
        self,
        key: bytes | str,
        range_end: bytes | str | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        limit: int = 0,
        revision: int = 0,
        sort_target: SortTarget = SortTarget.KEY,
        sort_order: SortOrder = SortOrder.NONE,
        keys_only: bool = False,
        count_only: bool = False,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        serializable: bool = False,
    ) -> RangeResponse:
        """Read a key or a range of keys.

        The range is ``[key, range_end)``; ``prefix=True`` covers every key starting with ``key``, and
        ``from_key=True`` every key ``>= key``. ``limit`` caps the number of keys returned (0: no cap;
        ``more`` says whether there were more). The revision filters keep only keys created/modified in
        the given bounds (0: unbounded); ``count`` is the count of the whole range regardless.

        A checkpoint. Retried on another endpoint when a connection fails.

        Example::

            resp = await client.range(b"/jobs/", prefix=True, sort_target=SortTarget.CREATE)
            for kv in resp.kvs: ...
        """
        op = Op.get(
            key,
            range_end,
            prefix=prefix,
            from_key=from_key,
            limit=limit,
            revision=revision,
            sort_target=sort_target,
            sort_order=sort_order,
            keys_only=keys_only,
            count_only=count_only,
            min_create_revision=min_create_revision,
            max_create_revision=max_create_revision,
            min_mod_revision=min_mod_revision,
            max_mod_revision=max_mod_revision,
            serializable=serializable,
        )
        data = await self._unary(rpc.KV_RANGE.path, self._range_request(op), idempotent=True)
        return self._ns.range_response(cv.range_response(data))

    def _range_request(self, op: RangeOp) -> bytes:
        wire = self._ns.op(op)
        assert isinstance(wire, RangeOp)
        return self._check_request_size(cv.range_request(wire))

    async def _range(self, op: RangeOp) -> RangeResponse:
        data = await self._unary(rpc.KV_RANGE.path, self._range_request(op), idempotent=True)
        return self._ns.range_response(cv.range_response(data))

    async def iter_range(
        self, key: bytes | str, *, prefix: bool = True, page_size: int = 1000, revision: int = 0
    ) -> AsyncIterator[KeyValue]:
        """Every key in the range, in key order, read page by page at one revision.

        The first page fixes the revision (``revision``, or the current one when 0); every later page is
        read at that same revision, so the whole listing is one consistent snapshot. If that revision is
        compacted while the listing runs, :class:`~etcdsync.CompactedError` is raised.

        Example::

            async for kv in client.iter_range(b"/workers/"):
                print(kv.key)
        """
        if check_int("page_size", page_size) < 1:
            raise ValueError("page_size must be >= 1")
        k, end = key_range(key, None, prefix=prefix, from_key=False)
        if not prefix:
            end = k + b"\x00"  # a single key
        pinned = check_int("revision", revision)
        while True:
            resp = await self._range(RangeOp(key=k, range_end=end, limit=page_size, revision=pinned))
            pinned = resp.header.revision if pinned == 0 else pinned
            for kv in resp.kvs:
                yield kv
            if not resp.more or not resp.kvs:
                return
            k = resp.kvs[-1].key + b"\x00"

    async def put(
        self,
        key: bytes | str,
        value: bytes | str,
        *,
        lease: int = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
        guard: Compare | Sequence[Compare] = (),
    ) -> PutResponse:
        """Set ``key`` to ``value``.

        Args:
            lease: attach the key to this lease (it is deleted when the lease goes).
            prev_kv: return the previous key-value pair in the response.
            ignore_value: keep the current value (pass ``b""`` as ``value``); the key must exist.
            ignore_lease: keep the current lease (pass ``lease=0``); the key must exist.
            guard: apply the put only if every compare holds, else raise
                :class:`~etcdsync.GuardFailedError` (``guard=mutex.is_owner()``).

        A checkpoint. Never retried once it may have reached a server.

        Raises:
            GuardFailedError: a guard compare did not hold; nothing was written.
            OutcomeUnknownError: the connection broke after sending; the put may have been applied.
            LeaseNotFoundError: ``lease`` does not exist.
        """
        op = Op.put(
            key, value, lease=lease, prev_kv=prev_kv, ignore_value=ignore_value, ignore_lease=ignore_lease
        )
        guards = check_compares(guard)
        if guards:
            resp = await self._guarded(guards, op)
            inner = resp.responses[0]
            assert isinstance(inner, PutResponse)
            return PutResponse(header=resp.header, prev_kv=inner.prev_kv)
        wire = self._ns.op(op)
        assert isinstance(wire, PutOp)
        data = await self._unary(
            rpc.KV_PUT.path, self._check_request_size(cv.put_request(wire)), idempotent=False
        )
        return self._ns.put_response(cv.put_response(data))

    async def delete(
        self,
        key: bytes | str,
        range_end: bytes | str | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        prev_kv: bool = False,
        guard: Compare | Sequence[Compare] = (),
    ) -> DeleteResponse:
        """Delete a key or a range (``range_end``, ``prefix=True`` or ``from_key=True`` as for :meth:`range`).

        A checkpoint. With ``guard``, deletes only if every compare holds, else raises
        :class:`~etcdsync.GuardFailedError`.
        """
        op = Op.delete(key, range_end, prefix=prefix, from_key=from_key, prev_kv=prev_kv)
        guards = check_compares(guard)
        if guards:
            resp = await self._guarded(guards, op)
            inner = resp.responses[0]
            assert isinstance(inner, DeleteResponse)
            return DeleteResponse(header=resp.header, deleted=inner.deleted, prev_kvs=inner.prev_kvs)
        wire = self._ns.op(op)
        assert isinstance(wire, DeleteOp)
        data = await self._unary(
            rpc.KV_DELETE_RANGE.path, self._check_request_size(cv.delete_request(wire)), idempotent=False
        )
        return self._ns.delete_response(cv.delete_response(data))

    async def txn(
        self,
        compare: Compare | Sequence[Compare] = (),
        success: Sequence[AnyOp] = (),
        failure: Sequence[AnyOp] = (),
        *,
        guard: Compare | Sequence[Compare] = (),
    ) -> TxnResponse:
        """Run a transaction: if every compare holds, the ``success`` ops, else the ``failure`` ops.

        All of it happens at one revision. A read-only transaction is retried on another endpoint when
        a connection fails; one that writes never is, once it may have reached a server.

        With ``guard``, the whole transaction runs only if every guard compare holds, else
        :class:`~etcdsync.GuardFailedError` is raised (built on a nested txn).

        Example::

            resp = await client.txn(
                compare=[Compare.create_revision(b"/leader") == 0],
                success=[Op.put(b"/leader", b"me", lease=lease_id)],
                failure=[Op.get(b"/leader")],
            )
        """
        if type(guard) is tuple and not guard:  # the usual case, with no coroutine between us and _unary
            if type(compare) is tuple and type(success) is tuple and type(failure) is tuple:
                request, idempotent = self._txn_request_cached(compare, success, failure)
            else:
                request, idempotent = self._txn_request(Op.txn(check_compares(compare), success, failure))
            data = await self._unary(rpc.KV_TXN.path, request, idempotent=idempotent)
            return self._ns.txn_response(cv.txn_response(data))
        txn = Op.txn(check_compares(compare), success, failure)
        guards = check_compares(guard)
        if guards:
            resp = await self._guarded(guards, txn)
            inner = resp.responses[0]
            assert isinstance(inner, TxnResponse)
            return TxnResponse(header=resp.header, succeeded=inner.succeeded, responses=inner.responses)
        return await self._txn(txn)

    def _txn_request(self, txn: TxnOp) -> tuple[bytes, bool]:
        """The checked, namespaced, serialized request of ``txn``, and whether it is read-only."""
        self._check_txn(txn)
        return self._check_request_size(cv.txn_request(self._ns.txn(txn))), _read_only(txn)

    def _txn_request_cached(
        self, compare: tuple[Compare, ...], success: tuple[AnyOp, ...], failure: tuple[AnyOp, ...]
    ) -> tuple[bytes, bool]:
        """:meth:`_txn_request` for a transaction given as three tuples, which callers that send the
        same transaction again keep (a Mutex sends the same enqueue transaction every cycle).

        Compares and ops are immutable, so the request depends only on the three tuples and the
        namespace: it is cached under their identities, which stay valid because the cache holds the
        tuples. (Lists make new tuples on every call, so only tuples are looked up.) The cache is
        shared with every namespaced view, is bounded in entries, and keeps only small requests.
        """
        key = (id(compare), id(success), id(failure), self._ns.prefix)
        cache = self._txn_cache
        cached = cache.get(key)
        if (
            cached is not None
            and cached.compare is compare
            and cached.success is success
            and cached.failure is failure
        ):
            # Least recently used goes first: one-use entries (a wait's query) must not push out a
            # Mutex's enqueue transaction that is sent every cycle.
            del cache[key]
            cache[key] = cached
            return cached.request, cached.idempotent
        request, idempotent = self._txn_request(Op.txn(compare, success, failure))
        if len(request) <= _TXN_CACHE_MAX_BYTES:
            if len(cache) >= _TXN_CACHE_SIZE:
                del cache[next(iter(cache))]  # the least recently used entry
            cache[key] = _CachedTxn(compare, success, failure, request, idempotent)
        return request, idempotent

    async def _txn(self, txn: TxnOp) -> TxnResponse:
        request, idempotent = self._txn_request(txn)
        data = await self._unary(rpc.KV_TXN.path, request, idempotent=idempotent)
        return self._ns.txn_response(cv.txn_response(data))

    async def _guarded(self, guards: tuple[Compare, ...], op: AnyOp) -> TxnResponse:
        """Run ``op`` only if ``guards`` hold; on failure read the guarded keys and raise."""
        reads = [Op.get(c.key, c.range_end or None) for c in guards]
        resp = await self._txn(TxnOp(compare=guards, success=(op,), failure=tuple(reads)))
        if resp.succeeded:
            return resp
        kvs = [kv for r in resp.responses if isinstance(r, RangeResponse) for kv in r.kvs]
        raise GuardFailedError(
            f"guard did not hold at revision {resp.header.revision}; nothing was written",
            kvs=kvs,
            revision=resp.header.revision,
        )

    async def compact(self, revision: int, *, physical: bool = False) -> ResponseHeader:
        """Discard history before ``revision``. With ``physical=True``, return only once the space is freed.

        A checkpoint.

        Raises:
            CompactedError: ``revision`` is at or below the current compaction revision.
            FutureRevisionError: ``revision`` is newer than the store.
        """
        if check_int("revision", revision) < 1:
            raise ValueError("revision must be >= 1")
        data = await self._unary(
            rpc.KV_COMPACT.path, cv.compact_request(revision, physical), idempotent=False
        )
        return cv.compact_response(data)

    # -----------------------------------------------------------------------------------------------------
    # Leases

    async def lease_grant(self, ttl: int, *, lease_id: int = 0) -> LeaseGrant:
        """Grant a lease of ``ttl`` seconds (the server may grant more: it has a minimum TTL).

        ``lease_id`` asks for a specific ID (0: the server chooses). A checkpoint.

        Raises:
            ValueError: ``ttl`` is not in 1..9,000,000,000, or ``lease_id`` is negative.
            LeaseExistsError: a lease with ``lease_id`` exists.
        """
        check_ttl(ttl)
        check_int("lease_id", lease_id)
        data = await self._unary(
            rpc.LEASE_GRANT.path, cv.lease_grant_request(ttl, lease_id), idempotent=False
        )
        return cv.lease_grant(data)

    async def lease_revoke(self, lease_id: int) -> ResponseHeader:
        """Revoke a lease and delete every key attached to it. A checkpoint.

        Revoking is idempotent in effect, so it is retried on another endpoint like a read.

        Raises:
            LeaseNotFoundError: the lease does not exist (any more).
        """
        check_int("lease_id", lease_id, minimum=1)
        data = await self._unary(rpc.LEASE_REVOKE.path, cv.lease_revoke_request(lease_id), idempotent=True)
        return cv.lease_revoke(data)

    async def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> LeaseTimeToLive:
        """The lease's remaining TTL (``ttl == -1`` when it does not exist), with its keys if ``keys=True``.

        A checkpoint.
        """
        check_int("lease_id", lease_id, minimum=1)
        data = await self._unary(
            rpc.LEASE_TIME_TO_LIVE.path, cv.lease_time_to_live_request(lease_id, keys), idempotent=True
        )
        return self._ns.lease_time_to_live(cv.lease_time_to_live(data))

    async def leases(self) -> tuple[int, ...]:
        """The IDs of every lease. A checkpoint."""
        data = await self._unary(rpc.LEASE_LEASES.path, cv.lease_leases_request(), idempotent=True)
        return cv.lease_ids(data)

    async def lease_keep_alive_once(self, lease_id: int) -> int:
        """Renew the lease once and return its new TTL.

        A checkpoint. Uses a short-lived LeaseKeepAlive stream; sessions share one long-lived stream
        instead.

        Raises:
            LeaseNotFoundError: the lease has expired or does not exist.
        """
        check_int("lease_id", lease_id, minimum=1)
        self._check_open()
        request = cv.lease_keep_alive_request(lease_id)
        channel = await self._channel(self._picker.current)
        try:
            async with channel.stream(rpc.LEASE_KEEP_ALIVE.path, metadata=self._metadata()) as stream:
                await stream.send(request)
                data = await stream.receive()
                await stream.close_send()
        except StatusError as exc:
            raise error_from_status(exc.code, exc.message, exc.trailers) from exc
        _, _, ttl = cv.lease_keep_alive_ttl(data)
        if ttl <= 0:
            raise LeaseNotFoundError(f"lease {lease_id:x} has expired or does not exist", code=5)
        return ttl

    # -----------------------------------------------------------------------------------------------------
    # Watch

    def watch(
        self,
        key: bytes | str,
        range_end: bytes | str | None = None,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        filters: Sequence[WatchFilter] = (),
        progress_notify: bool = False,
    ) -> AbstractAsyncContextManager[Watch]:
        """Watch a key or a range; every event exactly once, in order, across reconnects.

        Example::

            async with client.watch(b"/jobs/", prefix=True, start_revision=rev + 1) as events:
                async for resp in events:
                    for event in resp.events: ...
        """
        from ._watch import open_watch

        return open_watch(
            self,
            key,
            range_end,
            prefix=prefix,
            start_revision=start_revision,
            prev_kv=prev_kv,
            filters=filters,
            progress_notify=progress_notify,
        )

    # -----------------------------------------------------------------------------------------------------
    # Leases kept alive

    @asynccontextmanager
    async def keep_alive(
        self, lease_id: int, *, ttl: int | None = None, granted_at: float | None = None
    ) -> AsyncIterator[LeaseKeepAlive]:
        """Keep a lease alive while the block runs, over the client's one shared LeaseKeepAlive stream.

        The lease counts as lost when the server says it expired, or when no keep-alive was
        acknowledged within its TTL counted from the *send* time of the last acknowledged one. Give
        ``ttl`` and ``granted_at`` (the ``trio.current_time()`` just before the grant request was sent)
        to anchor that from the grant; otherwise entering sends one keep-alive to anchor it.

        Leaving the block stops the keep-alives; it does not revoke the lease. Entering is a checkpoint.

        Raises:
            LeaseNotFoundError: (on entry) the lease does not exist.
        """
        check_int("lease_id", lease_id, minimum=1)
        self._check_open()
        if ttl is None or granted_at is None:
            granted_at = trio.current_time()
            ttl = await self.lease_keep_alive_once(lease_id)
        else:
            check_ttl(ttl)
            await trio.lowlevel.checkpoint()
        kept = self._keeper.add(lease_id, ttl=ttl, granted_at=granted_at)
        try:
            yield self._keeper.handle(kept)
        finally:
            self._keeper.remove(lease_id)

    # -----------------------------------------------------------------------------------------------------
    # Cluster

    async def member_list(self) -> MemberListResponse:
        """The cluster's members. A checkpoint."""
        data = await self._unary(
            rpc.CLUSTER_MEMBER_LIST.path, cv_cluster.member_list_request(), idempotent=True
        )
        return cv_cluster.member_list(data)

    async def sync_endpoints(self) -> tuple[str, ...]:
        """Replace the endpoint list with the client URLs of the cluster's current voting members.

        A checkpoint. Returns the new list. Endpoints keep the scheme their URLs have.
        """
        members = await self.member_list()
        urls = [u for m in members.members if not m.is_learner for u in m.client_urls]
        if not urls:
            raise EtcdError("the member list has no client URLs; keeping the current endpoints")
        parsed = parse_endpoints(sorted(set(urls)))
        for endpoint in parsed:
            self._endpoints.setdefault(endpoint.address, endpoint)
        self._picker.replace([e.address for e in parsed])
        return tuple(e.address for e in parsed)

    # -----------------------------------------------------------------------------------------------------

    def statistics(self) -> ClientStatistics:
        """A snapshot of this client's state (no I/O)."""
        return ClientStatistics(
            endpoints=tuple(self._picker.endpoints),
            current_endpoint=self._picker.current,
            open_streams=sum(ch.statistics().open_streams for ch in self._channels.values()),
            watchers=0 if self._watch_hub is None else self._watch_hub.statistics().watchers,
            sessions=len(self._keeper.leases),
            calls_failed_over=self._failovers,
        )


def check_ttl(ttl: int) -> int:
    """A lease TTL in etcd's range, or ``ValueError``/``TypeError`` with an exact message."""
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise TypeError(f"ttl must be an int number of seconds, not {type(ttl).__name__}")
    if ttl <= 0:
        raise ValueError("ttl must be > 0")
    if ttl > MAX_LEASE_TTL:
        raise ValueError(f"ttl must be <= {MAX_LEASE_TTL} (etcd's maximum lease TTL)")
    return ttl


def _read_only(txn: TxnOp) -> bool:
    for branch in (txn.success, txn.failure):
        for op in branch:
            if not (isinstance(op, RangeOp) or (isinstance(op, TxnOp) and _read_only(op))):
                return False
    return True


def _check_branch_keys(branch: Sequence[AnyOp]) -> None:
    """etcd refuses a branch that puts one key twice, or puts a key it also deletes."""
    puts: set[bytes] = set()
    deletes: list[DeleteOp] = []
    for op in branch:
        if isinstance(op, PutOp):
            if op.key in puts:
                raise ValueError(
                    f"txn branch puts key {op.key!r} twice (etcd refuses duplicate keys in a txn)"
                )
            puts.add(op.key)
        elif isinstance(op, DeleteOp):
            deletes.append(op)
    for d in deletes:
        for key in puts:
            if key == d.key or (
                d.range_end and d.key <= key and (d.range_end == b"\x00" or key < d.range_end)
            ):
                raise ValueError(
                    f"txn branch puts key {key!r} and also deletes it (etcd refuses duplicate keys in a txn)"
                )


@asynccontextmanager
async def open_client(
    endpoints: str | Sequence[str] = "127.0.0.1:2379",
    *,
    tls: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
    namespace: bytes | str = b"",
    transport: Literal["h2", "grpcio"] = "h2",
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
    max_rounds: int = 3,
) -> AsyncIterator[Client]:
    """Open a client to an etcd cluster; it is closed (every connection and stream) when the block exits.

    Args:
        endpoints: ``"host:port"``, ``"http://host:port"`` or ``"https://host:port"``, a list of them,
            or one comma-separated string.
        tls: the TLS context for ``https://`` endpoints and bare ``host:port`` ones (a bare endpoint
            is plaintext when this is ``None``). Make it with
            :func:`~etcdsync.client.tls_context` (``cafile=``, and ``certfile=``/``keyfile=`` for
            mutual TLS), which both transports can use; with ``transport="h2"`` any
            ``ssl.SSLContext`` works. ALPN ``h2`` is set on it.
        username: with ``password``, authenticate; the token is refreshed when the server rejects it.
        namespace: a prefix every key lives under; the same as ``client.with_namespace(namespace)``.
        transport: ``"h2"``, etcdsync's gRPC over HTTP/2 on trio; or ``"grpcio"``, grpcio's
            ``grpc.aio`` on one private thread per endpoint (needs ``pip install 'etcdsync[grpcio]'``;
            it sends a client certificate only from a :func:`~etcdsync.client.tls_context` context).
        max_request_bytes: requests larger than this raise ``ValueError`` before they are sent; set it
            to the server's ``--max-request-bytes`` when that is not the default.
        max_txn_ops: the server's ``--max-txn-ops``; larger txns raise ``ValueError`` before sending.
        max_rounds: how many times a retryable call goes round all endpoints before
            :class:`~etcdsync.NoEndpointAvailableError`.

    Opening does no I/O (connections are made by the first call); it is a checkpoint. Example::

        async with etcdsync.open_client(["10.0.0.1:2379", "10.0.0.2:2379"]) as client:
            print(await client.get(b"/config"))
    """
    parsed = parse_endpoints(endpoints)
    if transport not in _TRANSPORTS:
        raise ValueError(f"transport must be one of {_TRANSPORTS}, not {transport!r}")
    if (username is None) != (password is None):
        raise ValueError("give both username and password, or neither")
    if tls is not None and not isinstance(tls, ssl.SSLContext):
        raise TypeError(f"tls must be an ssl.SSLContext, not {type(tls).__name__}")
    check_int("max_request_bytes", max_request_bytes, minimum=1)
    check_int("max_txn_ops", max_txn_ops, minimum=1)
    check_int("max_rounds", max_rounds, minimum=1)
    prefix = bytesify(namespace, "namespace")
    open_channel = channel_opener(transport)
    async with open_owned_nursery() as nursery:
        client = Client(
            _PRIVATE,
            nursery=nursery,
            endpoints=parsed,
            tls=tls,
            open_channel=open_channel,
            username=username,
            password=password,
            max_request_bytes=max_request_bytes,
            max_txn_ops=max_txn_ops,
            max_rounds=max_rounds,
            rng=random.Random(),
        )
        try:
            await trio.lowlevel.checkpoint()
            yield client.with_namespace(prefix) if prefix else client
        finally:
            client._stop_services()
