"""Cluster membership, maintenance, auth administration and kvstore-style conditional writes.

:class:`AdminMixin` is one of :class:`~etcdsync.client.Client`'s bases: its methods are the client's,
and they use the client's plumbing (failover, tokens, channels), declared below for type checkers
only. Nothing here is a new connection or a new retry rule:

* Cluster-wide calls (member changes, alarms, auth administration) go through the client's failover
  loop like any other call: reads are retried on another endpoint, writes only when they provably
  never reached a server.
* Per-member calls -- :meth:`~AdminMixin.status` of a given endpoint, :meth:`~AdminMixin.defragment`,
  :meth:`~AdminMixin.hash_kv`, :meth:`~AdminMixin.snapshot` -- go to exactly that member, on its own
  channel, and are never retried elsewhere: an answer from another member would be an answer to a
  different question.
* :meth:`~AdminMixin.move_leader` must be served by the current leader, so it asks the cluster who
  that is (``status`` then ``member_list``) and sends the request to the leader's client URL.

This module is over the 400-line target because every public method carries its documentation;
the code of each is a few lines. The snapshot stream itself lives in ``_snapshot.py``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import trio

from ._convert import _admin as cv, _methods as rpc
from ._errors import (
    ConnectionFailedError,
    EtcdError,
    LeaderChangedError,
    NoClusterLeaderError,
    NoEndpointAvailableError,
    OutcomeUnknownError,
    UnhealthyClusterError,
    error_from_status,
)
from ._keys import bytesify, key_range, require_key
from ._sansio._endpoints import parse_endpoint
from ._snapshot import SnapshotStream
from ._transport import StatusError
from ._txn import Compare, Op, check_int
from ._types import MemberListResponse, ResponseHeader
from ._types_admin import (
    Alarm,
    AlarmType,
    AuthRole,
    AuthUser,
    HashKVResponse,
    MemberAddResponse,
    Permission,
    PermissionType,
    SnapshotInfo,
    StatusResponse,
)

if TYPE_CHECKING:
    from ._sansio._endpoints import Endpoint, EndpointPicker
    from ._transport import Channel
    from ._txn import AnyOp
    from ._types import DeleteResponse, TxnResponse

__all__ = ["AdminMixin"]

_ALARM_GET: Final = 0
_ALARM_DEACTIVATE: Final = 2
# How often move_leader looks the leader up again when leadership moved under it.
_MOVE_LEADER_ATTEMPTS: Final = 3


def _peer_urls(peer_urls: str | Sequence[str]) -> tuple[str, ...]:
    urls = (peer_urls,) if isinstance(peer_urls, str) else tuple(peer_urls)
    if not urls:
        raise ValueError("give at least one peer URL")
    for url in urls:
        if not isinstance(url, str):
            raise TypeError(f"peer URLs must be str like 'http://10.0.0.4:2380', not {type(url).__name__}")
        if not url:
            raise ValueError("a peer URL must not be empty")
    return urls


def _name(what: str, name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError(f"{what} must not be empty")
    return name


def _password(password: str) -> str:
    if not isinstance(password, str):
        raise TypeError(f"password must be a str, not {type(password).__name__}")
    return password


class AdminMixin:
    """Administration methods of :class:`~etcdsync.client.Client` (see the module docstring)."""

    if TYPE_CHECKING:
        # Provided by Client: the plumbing these methods use.
        _endpoints: dict[str, Endpoint]
        _picker: EndpointPicker
        _credentials: tuple[str, str] | None
        _token: str | None

        def _check_open(self) -> None: ...

        def _metadata(self) -> tuple[tuple[str, str], ...]: ...

        async def _channel(self, address: str) -> Channel: ...

        async def _authenticate(self, stale_token: str | None) -> None: ...

        async def _call_once(
            self, address: str, path: str, request: bytes, *, idempotent: bool, authenticate: bool
        ) -> bytes: ...

        async def _unary(
            self, path: str, request: bytes, *, idempotent: bool, authenticate: bool = True
        ) -> bytes: ...

        async def member_list(self) -> MemberListResponse: ...

        async def txn(
            self,
            compare: Compare | Sequence[Compare] = (),
            success: Sequence[AnyOp] = (),
            failure: Sequence[AnyOp] = (),
            *,
            guard: Compare | Sequence[Compare] = (),
        ) -> TxnResponse: ...

        async def delete(
            self,
            key: bytes | str,
            range_end: bytes | str | None = None,
            *,
            prefix: bool = False,
            from_key: bool = False,
            prev_kv: bool = False,
            guard: Compare | Sequence[Compare] = (),
        ) -> DeleteResponse: ...

    # -----------------------------------------------------------------------------------------------------
    # Plumbing for calls to one given member

    def _address_of(self, endpoint: str) -> str:
        """``host:port`` of ``endpoint`` (``"host:port"`` or a URL), known to the client from now on."""
        parsed = parse_endpoint(endpoint)
        self._endpoints.setdefault(parsed.address, parsed)
        return parsed.address

    async def _unary_at(self, address: str, path: str, request: bytes) -> bytes:
        """One call to exactly the member at ``address``: no failover, one re-authentication at most."""
        self._check_open()
        if self._credentials is not None and self._token is None:
            await self._authenticate(None)
        return await self._call_once(address, path, request, idempotent=False, authenticate=True)

    async def _membership_call(self, path: str, request: bytes) -> bytes:
        """A membership change: a write, except that "unhealthy cluster" is a definite refusal."""
        try:
            return await self._unary(path, request, idempotent=False)
        except OutcomeUnknownError as exc:
            refusal = exc.__cause__
            if not isinstance(refusal, UnhealthyClusterError):
                raise
            # etcd checks the cluster's health before it proposes the change, so nothing was applied:
            # raise the refusal itself (chained to the server's status) rather than "outcome unknown".
            refusal.__suppress_context__ = True
            raise refusal  # noqa: B904 - the chain of `refusal` is the right one to show

    async def _member_addresses(self, member_id: int) -> list[str]:
        """The client addresses of member ``member_id``, as the member list advertises them."""
        members = await self.member_list()
        for member in members.members:
            if member.id == member_id:
                if not member.client_urls:
                    raise EtcdError(f"member {member_id:x} advertises no client URL")
                return [self._address_of(url) for url in member.client_urls]
        raise EtcdError(f"member {member_id:x} is not in the member list")

    # -----------------------------------------------------------------------------------------------------
    # Cluster

    async def member_add(self, peer_urls: str | Sequence[str], *, learner: bool = False) -> MemberAddResponse:
        """Add a member that will listen on ``peer_urls``; start its etcd afterwards.

        Start the new member with ``--initial-cluster-state existing`` and an ``--initial-cluster`` that
        lists every member in ``members`` of the result. A ``learner`` does not vote and does not count
        for the quorum until :meth:`member_promote` makes it a voting member, so adding one is safe
        even before it has started.

        A checkpoint. Not retried once it may have reached a server.

        Raises:
            ValueError: no peer URL, or an empty one.
            MemberExistsError: a member already has one of these peer URLs.
            MemberBadURLsError: a peer URL is not a valid ``http(s)://host:port`` URL.
            TooManyLearnersError: the cluster already has the most learners it allows.
            NotEnoughStartedMembersError: adding a voting member now could cost the quorum.
            UnhealthyClusterError: not every member has been connected for the last 5 seconds (e.g. a
                cluster that just started); nothing was changed.

        Example::

            added = await client.member_add(["http://10.0.0.4:2380"], learner=True)
            print(f"{added.member.id:x}")
        """
        urls = _peer_urls(peer_urls)
        data = await self._membership_call(
            rpc.CLUSTER_MEMBER_ADD.path, cv.member_add_request(urls, bool(learner))
        )
        return cv.member_add(data)

    async def member_remove(self, member_id: int) -> MemberListResponse:
        """Remove member ``member_id`` from the cluster; returns the remaining members.

        The removed member's etcd stops by itself once it learns of its removal. A checkpoint. Not
        retried once it may have reached a server.

        Raises:
            MemberNotFoundError: no member has this ID.
            NotEnoughStartedMembersError: removing it now could cost the quorum.
            UnhealthyClusterError: the cluster is not healthy enough for a change; nothing was changed.
        """
        check_int("member_id", member_id, minimum=1)
        path = rpc.CLUSTER_MEMBER_REMOVE.path
        data = await self._membership_call(path, cv.member_remove_request(member_id))
        return cv.member_changed(path, data)

    async def member_update(self, member_id: int, peer_urls: str | Sequence[str]) -> MemberListResponse:
        """Change the peer URLs of member ``member_id``; returns every member after the change.

        Learners are refused: etcd up to (at least) 3.5 forgets that an updated member is a learner and
        lists it as a voting member that raft still treats as a learner, which can then be neither
        promoted nor counted on (etcd issue 21694). Remove and re-add a learner instead; it holds
        nothing a new learner would not copy again. So this first reads the member list.

        A checkpoint. Retried on another endpoint like a read: setting the same URLs twice is harmless.

        Raises:
            ValueError: ``member_id`` is a learner.
            MemberNotFoundError: no member has this ID.
            MemberExistsError: another member already has one of these peer URLs.
            MemberBadURLsError: a peer URL is not valid.
        """
        check_int("member_id", member_id, minimum=1)
        urls = _peer_urls(peer_urls)
        for member in (await self.member_list()).members:
            if member.id == member_id and member.is_learner:
                raise ValueError(
                    f"member {member_id:x} is a learner; etcd would forget that on update "
                    "(etcd issue 21694): remove it and add it again with the new peer URLs"
                )
        path = rpc.CLUSTER_MEMBER_UPDATE.path
        data = await self._unary(path, cv.member_update_request(member_id, urls), idempotent=True)
        return cv.member_changed(path, data)

    async def member_promote(self, member_id: int) -> MemberListResponse:
        """Make the learner ``member_id`` a voting member; returns every member after the change.

        The leader refuses while the learner's log is behind its own (``LearnerNotReadyError``):
        start the learner, let it catch up, and retry. A checkpoint. Not retried once it may have
        reached a server.

        Raises:
            MemberNotFoundError: no member has this ID.
            MemberNotLearnerError: the member already votes.
            LearnerNotReadyError: the learner has not caught up with the leader (or not started).
        """
        check_int("member_id", member_id, minimum=1)
        path = rpc.CLUSTER_MEMBER_PROMOTE.path
        data = await self._membership_call(path, cv.member_promote_request(member_id))
        return cv.member_changed(path, data)

    # -----------------------------------------------------------------------------------------------------
    # Maintenance

    async def status(self, endpoint: str | None = None) -> StatusResponse:
        """The status of the member at ``endpoint``, or of any member when ``endpoint`` is ``None``.

        With ``endpoint`` (``"host:port"`` or a client URL; it need not be one of the client's
        endpoints), the request goes to that member and nowhere else. Without, it goes to the client's
        current endpoint and fails over like a read; ``header.member_id`` says who answered.

        A checkpoint.

        Raises:
            ConnectionFailedError: ``endpoint`` could not be reached.

        Example::

            for url in (await client.member_list()).members[0].client_urls:
                status = await client.status(url)
                print(status.header.member_id == status.leader, status.db_size)
        """
        request = cv.status_request()
        if endpoint is None:
            data = await self._unary(rpc.MAINTENANCE_STATUS.path, request, idempotent=True)
        else:
            data = await self._unary_at(self._address_of(endpoint), rpc.MAINTENANCE_STATUS.path, request)
        return cv.status(data)

    async def alarms(self) -> tuple[Alarm, ...]:
        """Every active alarm of the cluster (alarms are cluster-wide: they go through raft).

        A checkpoint. Retried on another endpoint like a read.
        """
        data = await self._unary(
            rpc.MAINTENANCE_ALARM.path,
            cv.alarm_request(_ALARM_GET, 0, AlarmType.NONE),
            idempotent=True,
        )
        return cv.alarms(data)

    async def alarm_disarm(
        self, *, member_id: int = 0, alarm: AlarmType = AlarmType.NONE
    ) -> tuple[Alarm, ...]:
        """Disarm the active alarms raised by ``member_id`` (0: any member) of kind ``alarm`` (``NONE``:
        any kind); returns the alarms that were disarmed.

        Disarm a ``NOSPACE`` alarm only after freeing space, or the next write raises it again::

            rev = (await client.status()).header.revision
            await client.compact(rev, physical=True)
            for member in (await client.member_list()).members:
                await client.defragment(member.client_urls[0])
            await client.alarm_disarm(alarm=AlarmType.NOSPACE)

        A checkpoint. Retried on another endpoint like a read: disarming twice is harmless.
        """
        check_int("member_id", member_id)
        kind = AlarmType(alarm)
        disarmed: list[Alarm] = []
        for active in await self.alarms():
            if member_id not in (0, active.member_id) or kind not in (AlarmType.NONE, active.alarm):
                continue
            data = await self._unary(
                rpc.MAINTENANCE_ALARM.path,
                cv.alarm_request(_ALARM_DEACTIVATE, active.member_id, active.alarm),
                idempotent=True,
            )
            disarmed.extend(cv.alarms(data))
        return tuple(disarmed)

    async def defragment(self, endpoint: str) -> None:
        """Defragment the backend of the member at ``endpoint``, giving the space freed by compaction back.

        Only that member is defragmented: run it on each member in turn. The member serves nothing
        else while it defragments, which takes about a second per GiB of database. A checkpoint;
        never retried.

        Raises:
            ConnectionFailedError: ``endpoint`` could not be reached.
        """
        path = rpc.MAINTENANCE_DEFRAGMENT.path
        await self._unary_at(self._address_of(endpoint), path, cv.defragment_request())

    async def hash_kv(self, endpoint: str, revision: int = 0) -> HashKVResponse:
        """The hash of the key-value store of the member at ``endpoint`` up to ``revision`` (0: latest).

        Members that agree on the history up to a revision give the same hash for it: compare them to
        detect a corrupted member. A checkpoint.

        Raises:
            CompactedError: ``revision`` has been compacted on that member.
            FutureRevisionError: ``revision`` is newer than that member's store.
        """
        check_int("revision", revision)
        path = rpc.MAINTENANCE_HASH_KV.path
        data = await self._unary_at(self._address_of(endpoint), path, cv.hash_kv_request(revision))
        return cv.hash_kv(data)

    async def move_leader(self, target_id: int) -> None:
        """Transfer the raft leadership to the voting member ``target_id``; returns once it has moved.

        Only the leader can hand its leadership over, so the request goes to the leader's client URL,
        found with :meth:`status` and :meth:`member_list` (it need not be one of the client's
        endpoints). If the leadership moves elsewhere in between, the lookup is repeated (up to three
        times). A checkpoint.

        Raises:
            BadLeaderTransfereeError: ``target_id`` is not a voting member.
            NoClusterLeaderError: the cluster has no leader to hand over from.
            LeaderChangedError: the leadership kept moving while this call chased it.
        """
        check_int("target_id", target_id, minimum=1)
        path = rpc.MAINTENANCE_MOVE_LEADER.path
        request = cv.move_leader_request(target_id)
        for attempt in range(_MOVE_LEADER_ATTEMPTS):
            leader = (await self.status()).leader
            if leader == 0:
                raise NoClusterLeaderError("etcdserver: no leader", code=14)
            failures: dict[str, BaseException] = {}
            for address in await self._member_addresses(leader):
                try:
                    await self._unary_at(address, path, request)
                except ConnectionFailedError as exc:
                    if exc.request_sent:
                        raise
                    failures[address] = exc
                    continue
                except LeaderChangedError:
                    # "etcdserver: not leader": the leadership moved since we asked; look again.
                    if attempt + 1 == _MOVE_LEADER_ATTEMPTS:
                        raise
                    break
                return
            else:
                raise NoEndpointAvailableError(
                    f"no client URL of the leader {leader:x} answered", errors=failures
                )
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def snapshot(self, endpoint: str | None = None) -> AsyncIterator[SnapshotStream]:
        """Stream a snapshot of the backend database of the member at ``endpoint`` (``None``: the
        client's current endpoint).

        The block gets a :class:`~etcdsync.client.SnapshotStream`; iterate it for the chunks. They
        are the database followed by its SHA-256 digest (what ``etcdctl snapshot save`` writes), and
        the iteration checks them against the sizes the server announces and against the digest.
        Leaving the block early abandons the stream. Entering is a checkpoint; the server's status
        (e.g. a missing permission) shows up during the iteration.

        Raises:
            ConnectionFailedError: (on entry) the member could not be reached.
            SnapshotIntegrityError: (iterating) the stream was short, long, or its digest was wrong.

        Example::

            async with client.snapshot() as chunks:
                async for chunk in chunks:
                    ...  # write it somewhere
        """
        self._check_open()
        address = self._picker.current if endpoint is None else self._address_of(endpoint)
        if self._credentials is not None:
            # A stream cannot be re-sent after the server rejects its token, so start with a fresh one.
            await self._authenticate(self._token)
        channel = await self._channel(address)
        async with channel.stream(rpc.MAINTENANCE_SNAPSHOT.path, metadata=self._metadata()) as stream:
            try:
                await stream.send(cv.snapshot_request())
                await stream.close_send()
            except StatusError as exc:
                raise error_from_status(exc.code, exc.message, exc.trailers) from exc
            yield SnapshotStream._create(stream, address)

    async def save_snapshot(
        self, path: str | os.PathLike[str], *, endpoint: str | None = None
    ) -> SnapshotInfo:
        """Write a snapshot of the member at ``endpoint`` (``None``: the current endpoint) to ``path``.

        The file appears complete or not at all: the snapshot goes to a temporary file next to
        ``path``, is checked (size and SHA-256, see :meth:`snapshot`), flushed to disk, and only then
        renamed to ``path``. On any failure, or cancellation, the temporary file is removed and
        ``path`` is left as it was. The file is what ``etcdctl snapshot save`` writes, so
        ``etcdctl snapshot status`` and ``etcdctl snapshot restore`` read it.

        A checkpoint (the file operations run in worker threads).

        Raises:
            SnapshotIntegrityError: the stream was short, long, or its digest was wrong.
            OSError: the file could not be written.
        """
        target, fd, temp = await trio.to_thread.run_sync(_temp_file_beside, os.fspath(path))
        done = False
        try:
            async with trio.wrap_file(os.fdopen(fd, "wb")) as out, self.snapshot(endpoint) as chunks:
                async for chunk in chunks:
                    await out.write(chunk)
                await out.flush()
                await trio.to_thread.run_sync(os.fsync, out.fileno())
            await trio.to_thread.run_sync(os.replace, temp, target)
            done = True
        finally:
            if not done:
                os.unlink(temp)  # sync and quick: runs even when cancelled
        await trio.to_thread.run_sync(_fsync_directory, os.path.dirname(target))
        assert chunks.db_size is not None
        assert chunks.sha256 is not None
        return SnapshotInfo(path=target, db_size=chunks.db_size, sha256=chunks.sha256)

    # -----------------------------------------------------------------------------------------------------
    # Auth administration

    async def _auth_call(self, path: str, request: bytes, *, idempotent: bool) -> ResponseHeader:
        return cv.header_only(path, await self._unary(path, request, idempotent=idempotent))

    async def auth_enable(self) -> ResponseHeader:
        """Turn authentication on. From then on every request needs a user (see :func:`etcdsync.open_client`).

        A ``root`` user with the ``root`` role must exist first. A checkpoint.

        Raises:
            AuthSetupError: there is no ``root`` user, or it lacks the ``root`` role.
        """
        return await self._auth_call(rpc.AUTH_ENABLE.path, cv.auth_enable_request(), idempotent=True)

    async def auth_disable(self) -> ResponseHeader:
        """Turn authentication off (needs the ``root`` role while it is on). A checkpoint."""
        return await self._auth_call(rpc.AUTH_DISABLE.path, cv.auth_disable_request(), idempotent=True)

    async def user_add(
        self, name: str, password: str | None = None, *, no_password: bool = False
    ) -> ResponseHeader:
        """Add a user with ``password``, or with ``no_password=True`` a user that cannot log in with a
        password (only with a TLS client certificate whose common name is ``name``).

        A checkpoint.

        Raises:
            ValueError: ``name`` is empty, or not exactly one of ``password`` and ``no_password`` is given.
            UserExistsError: the user exists.
        """
        _name("user name", name)
        if no_password:
            if password is not None:
                raise ValueError("give a password or no_password=True, not both")
            password = ""
        elif password is None:
            raise ValueError("give a password, or no_password=True for a certificate-only user")
        request = cv.user_add_request(name, _password(password), bool(no_password))
        return await self._auth_call(rpc.AUTH_USER_ADD.path, request, idempotent=False)

    async def user_delete(self, name: str) -> ResponseHeader:
        """Delete a user. A checkpoint.

        Raises:
            UserNotFoundError: no such user.
        """
        request = cv.user_delete_request(_name("user name", name))
        return await self._auth_call(rpc.AUTH_USER_DELETE.path, request, idempotent=False)

    async def user_get(self, name: str) -> AuthUser:
        """A user and the roles granted to it. A checkpoint.

        Raises:
            UserNotFoundError: no such user.
        """
        request = cv.user_get_request(_name("user name", name))
        return cv.user_get(name, await self._unary(rpc.AUTH_USER_GET.path, request, idempotent=True))

    async def user_list(self) -> tuple[str, ...]:
        """The names of every user, sorted. A checkpoint."""
        path = rpc.AUTH_USER_LIST.path
        return cv.names(path, await self._unary(path, cv.user_list_request(), idempotent=True))

    async def user_change_password(self, name: str, password: str) -> ResponseHeader:
        """Set a user's password. A checkpoint.

        Raises:
            UserNotFoundError: no such user.
        """
        request = cv.user_change_password_request(_name("user name", name), _password(password))
        return await self._auth_call(rpc.AUTH_USER_CHANGE_PASSWORD.path, request, idempotent=True)

    async def user_grant_role(self, user: str, role: str) -> ResponseHeader:
        """Grant ``role`` to ``user`` (granting it again is a no-op). A checkpoint.

        Raises:
            UserNotFoundError: no such user.
            RoleNotFoundError: no such role.
        """
        request = cv.user_grant_role_request(_name("user name", user), _name("role name", role))
        return await self._auth_call(rpc.AUTH_USER_GRANT_ROLE.path, request, idempotent=True)

    async def user_revoke_role(self, user: str, role: str) -> ResponseHeader:
        """Take ``role`` away from ``user``. A checkpoint.

        Raises:
            UserNotFoundError: no such user.
            RoleNotGrantedError: the user does not have the role.
        """
        request = cv.user_revoke_role_request(_name("user name", user), _name("role name", role))
        return await self._auth_call(rpc.AUTH_USER_REVOKE_ROLE.path, request, idempotent=False)

    async def role_add(self, name: str) -> ResponseHeader:
        """Add a role without permissions (``root`` is the role with every permission). A checkpoint.

        Raises:
            RoleExistsError: the role exists.
        """
        request = cv.role_add_request(_name("role name", name))
        return await self._auth_call(rpc.AUTH_ROLE_ADD.path, request, idempotent=False)

    async def role_delete(self, name: str) -> ResponseHeader:
        """Delete a role; users that had it lose it. A checkpoint.

        Raises:
            RoleNotFoundError: no such role.
        """
        request = cv.role_delete_request(_name("role name", name))
        return await self._auth_call(rpc.AUTH_ROLE_DELETE.path, request, idempotent=False)

    async def role_get(self, name: str) -> AuthRole:
        """A role and its permissions. A checkpoint.

        Raises:
            RoleNotFoundError: no such role.
        """
        request = cv.role_get_request(_name("role name", name))
        return cv.role_get(name, await self._unary(rpc.AUTH_ROLE_GET.path, request, idempotent=True))

    async def role_list(self) -> tuple[str, ...]:
        """The names of every role, sorted. A checkpoint."""
        path = rpc.AUTH_ROLE_LIST.path
        return cv.names(path, await self._unary(path, cv.role_list_request(), idempotent=True))

    async def role_grant_permission(
        self,
        role: str,
        key: bytes | str,
        range_end: bytes | str | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        perm_type: PermissionType = PermissionType.READWRITE,
    ) -> ResponseHeader:
        """Let ``role`` read and/or write the key ``key``, the range ``[key, range_end)``, every key
        starting with ``key`` (``prefix=True``) or every key from ``key`` on (``from_key=True``).

        Granting a permission on a range the role already has replaces its type. A checkpoint.

        Raises:
            RoleNotFoundError: no such role.

        Example::

            await client.role_add("app")
            await client.role_grant_permission("app", "/app/", prefix=True, perm_type=PermissionType.READ)
        """
        k, end = key_range(key, range_end, prefix=prefix, from_key=from_key)
        permission = Permission(perm_type=PermissionType(perm_type), key=k, range_end=end)
        request = cv.role_grant_permission_request(_name("role name", role), permission)
        return await self._auth_call(rpc.AUTH_ROLE_GRANT_PERMISSION.path, request, idempotent=True)

    async def role_revoke_permission(
        self,
        role: str,
        key: bytes | str,
        range_end: bytes | str | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
    ) -> ResponseHeader:
        """Take away the permission of ``role`` on exactly this range (spelled as for
        :meth:`role_grant_permission`). A checkpoint.

        Raises:
            RoleNotFoundError: no such role.
            PermissionNotGrantedError: the role has no permission on exactly this range.
        """
        k, end = key_range(key, range_end, prefix=prefix, from_key=from_key)
        request = cv.role_revoke_permission_request(_name("role name", role), k, end)
        return await self._auth_call(rpc.AUTH_ROLE_REVOKE_PERMISSION.path, request, idempotent=False)

    # -----------------------------------------------------------------------------------------------------
    # kvstore-style conditional writes (after Cilium's kvstore backend), each one transaction

    async def create(
        self, key: bytes | str, value: bytes | str, *, lease: int = 0, guard: Compare | Sequence[Compare] = ()
    ) -> bool:
        """Put ``key`` only if it does not exist; returns whether it was created.

        A checkpoint. With ``guard``, nothing happens unless every guard compare holds, and
        :class:`~etcdsync.GuardFailedError` is raised (as for ``put``).

        Example::

            if await client.create(b"/config/owner", b"me"):
                ...  # we created it
        """
        put = Op.put(key, value, lease=lease)
        resp = await self.txn([Compare.create_revision(put.key) == 0], [put], guard=guard)
        return resp.succeeded

    async def update_if_different(
        self, key: bytes | str, value: bytes | str, *, lease: int = 0, guard: Compare | Sequence[Compare] = ()
    ) -> bool:
        """Put ``key`` unless it already has this value and this lease; returns whether it wrote.

        Unlike a plain put, an unchanged key keeps its revision and no watcher sees an event. A
        missing key is written. A checkpoint; with ``guard``, as for :meth:`create`.
        """
        put = Op.put(key, value, lease=lease)
        same = [Compare.value(put.key) == put.value, Compare.lease(put.key) == put.lease]
        resp = await self.txn(same, [], [put], guard=guard)
        return not resp.succeeded

    async def create_if_exists(
        self,
        cond_key: bytes | str,
        key: bytes | str,
        value: bytes | str,
        *,
        lease: int = 0,
        guard: Compare | Sequence[Compare] = (),
    ) -> bool:
        """Put ``key`` only if ``cond_key`` exists; returns whether it wrote.

        ``key`` is written whether or not it exists already (as in Cilium's ``CreateIfExists``). A
        checkpoint; with ``guard``, as for :meth:`create`.

        Example::

            # register a node only while its parent registration exists
            await client.create_if_exists(b"/nodes/n1", b"/nodes/n1/addr", b"10.0.0.1")
        """
        cond = require_key(cond_key)
        put = Op.put(key, value, lease=lease)
        resp = await self.txn([Compare.version(cond) > 0], [put], guard=guard)
        return resp.succeeded

    async def delete_prefix(self, prefix: bytes | str, *, guard: Compare | Sequence[Compare] = ()) -> int:
        """Delete every key starting with ``prefix``; returns how many were deleted.

        An empty prefix is refused (it would mean every key): write ``delete(b"", prefix=True)`` if
        that is really meant. A checkpoint; with ``guard``, as for :meth:`create`.

        Raises:
            ValueError: ``prefix`` is empty.
        """
        if not bytesify(prefix, "prefix"):
            raise ValueError("prefix must not be empty (delete(b'', prefix=True) deletes every key)")
        return (await self.delete(prefix, prefix=True, guard=guard)).deleted


def _temp_file_beside(path: str) -> tuple[str, int, str]:
    """``(absolute path, fd, temp path)``: a new temporary file in the directory of ``path``."""
    target = os.path.abspath(path)
    directory, name = os.path.split(target)
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
    return target, fd, temp


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (POSIX: fsync the directory itself)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
