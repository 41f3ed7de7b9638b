"""A real N-member etcd cluster on loopback, for fault tests: :func:`etcd_cluster` and :class:`EtcdCluster`.

Member *i* listens on ``127.a.b.(i+1)`` in one random free block, all on ports 2379/2380/2381, with fast raft
timings (heartbeat 50 ms, election timeout 500 ms: a killed leader is replaced in 0.6 to 0.8 s on a loaded
2-core box). Faults are real signals: :meth:`EtcdCluster.kill` is SIGKILL plus reap,
:meth:`~EtcdCluster.pause` SIGSTOP, :meth:`~EtcdCluster.resume` SIGCONT, and :meth:`~EtcdCluster.restart`
brings a member back on the same address and data with ``--initial-cluster-state existing``.

Health and leadership are read from etcd's HTTP gateway (``/health``, ``/v3/maintenance/status``), never
through etcdsync itself: the harness must not depend on the code it tests.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import final

import attrs
import trio

from . import _http
from ._addresses import MemberAddress, pick_block
from ._binary import find_etcd
from ._errors import EtcdHarnessError
from ._process import POLL_INTERVAL, PROBE_TIMEOUT, EtcdOptions, EtcdProcess, peer_url
from ._server import EtcdServer, aclose_processes

__all__ = ("EtcdCluster", "etcd_cluster")

logger = logging.getLogger(__name__)

_PROBE_ERRORS = (OSError, trio.BrokenResourceError, _http.GatewayError)


@final
@attrs.define(eq=False, repr=False)
class EtcdCluster:
    """Handle on a running cluster, yielded by :func:`etcd_cluster`; members are addressed by index.

    Example:
        >>> import trio
        >>> from etcdsync.testing import etcd_cluster
        >>> async def main() -> None:
        ...     async with etcd_cluster(size=3) as cluster:
        ...         old = await cluster.leader()
        ...         await cluster.kill(old)
        ...         new = await cluster.leader()  # waits for the re-election
        ...         await cluster.restart(old)  # rejoins with its data
        >>> trio.run(main)  # doctest: +SKIP
    """

    members: list[EtcdServer]
    options: EtcdOptions

    def __repr__(self) -> str:
        states = ", ".join(
            f"{m.name}:{'paused' if m.paused else 'up' if m.running else 'down'}" for m in self.members
        )
        return f"<etcdsync.testing.EtcdCluster of {len(self.members)} ({states})>"

    @property
    def endpoints(self) -> list[str]:
        """Every member's client endpoint, ``"127.a.b.c:2379"``, in member order (down members included)."""
        return [member.endpoint for member in self.members]

    @property
    def size(self) -> int:
        """The number of members."""
        return len(self.members)

    def _answering(self) -> list[int]:
        return [i for i, member in enumerate(self.members) if member.running and not member.paused]

    async def kill(self, index: int) -> None:
        """SIGKILL member ``index`` and wait until it is reaped; a no-op if it is down. Always checkpoints.

        Raises:
            IndexError: No such member.
            EtcdHarnessError: It was not reaped within 10 s.
        """
        await self.members[index].kill()

    async def restart(self, index: int) -> None:
        """Restart member ``index`` (killing it first if needed) and wait until it is healthy again.

        It comes back on the same address, ports and data dir with ``--initial-cluster-state existing``; it is
        healthy once it has caught up with a leader, which needs a running quorum.

        Raises:
            IndexError: No such member.
            EtcdHarnessError: It exited or stayed unhealthy for ``start_timeout``.
        """
        await self.members[index].restart()

    def pause(self, index: int) -> None:
        """SIGSTOP member ``index``; returns once the kernel reports it stopped.

        Raises:
            IndexError: No such member.
            RuntimeError: It is not running.
        """
        self.members[index].pause()

    def resume(self, index: int) -> None:
        """SIGCONT member ``index``.

        Raises:
            IndexError: No such member.
            RuntimeError: It is not running.
        """
        self.members[index].resume()

    async def statuses(self) -> dict[int, _http.MemberStatus]:
        """Ask every running, unpaused member for its status, concurrently.

        A member that does not answer within 1 s, or fails, is left out of the result. Always checkpoints.
        """
        found: dict[int, _http.MemberStatus] = {}

        async def ask(index: int) -> None:
            with trio.move_on_after(PROBE_TIMEOUT):
                try:
                    found[index] = await self.members[index].status()
                except _PROBE_ERRORS as exc:
                    logger.debug("status of %s failed: %r", self.members[index].name, exc)

        async with trio.open_nursery() as nursery:
            for index in self._answering():
                nursery.start_soon(ask, index)
        return found

    def _agreed_leader(self, found: dict[int, _http.MemberStatus]) -> int | None:
        # A member that calls itself leader counts only if a quorum of the cluster names it: a just-resumed
        # old leader believes in itself for a moment, and followers name a dead leader until the election
        # timeout.
        quorum = len(self.members) // 2 + 1
        best: tuple[int, int] | None = None  # (raft term, index)
        for index, status in found.items():
            if not status.is_leader:
                continue
            votes = sum(1 for other in found.values() if other.leader == status.member_id)
            if votes >= quorum and (best is None or status.raft_term > best[0]):
                best = (status.raft_term, index)
        return None if best is None else best[1]

    async def leader(self) -> int:
        """Return the index of the current leader, waiting until running members agree on one.

        A leader is a running, unpaused member that reports itself leader and that a quorum of the cluster's
        members report as their leader. Waits (polling every 25 ms) at most ``start_timeout``. Always
        checkpoints.

        Raises:
            EtcdHarnessError: No leader within ``start_timeout``, e.g. because a quorum is down or paused.
        """
        found: dict[int, _http.MemberStatus] = {}
        with trio.move_on_after(self.options.start_timeout):
            while True:
                found = await self.statuses()
                index = self._agreed_leader(found)
                if index is not None:
                    return index
                await trio.sleep(POLL_INTERVAL)
        seen = ", ".join(
            f"{self.members[i].name}: leader={s.leader:x} term={s.raft_term}"
            for i, s in sorted(found.items())
        )
        raise EtcdHarnessError(
            f"no agreed leader within {self.options.start_timeout} s among {self!r}; "
            f"last statuses: {seen or 'none'}"
        )

    async def wait_healthy(self) -> None:
        """Wait until every running, unpaused member reports itself healthy via ``/health``.

        Healthy means it has a leader and serves a quorum read. Bounded by ``start_timeout``; always
        checkpoints.

        Raises:
            EtcdHarnessError: A member exited, or some stayed unhealthy; the message has their log tails.
        """
        pending = set(self._answering())
        with trio.move_on_after(self.options.start_timeout):
            while True:
                for index in list(pending):
                    process = self.members[index].process
                    process.check_alive()
                    with trio.move_on_after(PROBE_TIMEOUT):
                        try:
                            if await _http.health(process.probe_endpoint):
                                pending.discard(index)
                        except _PROBE_ERRORS as exc:
                            logger.debug("%s not healthy yet: %r", process.name, exc)
                if not pending:
                    return
                await trio.sleep(POLL_INTERVAL)
        failures = "\n\n".join(
            self.members[i].process.describe_failure(f"not healthy within {self.options.start_timeout} s")
            for i in sorted(pending)
        )
        raise EtcdHarnessError(failures)


@contextlib.asynccontextmanager
async def etcd_cluster(
    size: int = 3,
    *,
    unsafe_no_fsync: bool = False,
    quota_backend_bytes: int | None = None,
    auth_token_ttl: int | None = None,
    extra_args: Sequence[str] = (),
    log_level: str = "error",
    heartbeat_interval: int = 50,
    election_timeout: int = 500,
    start_timeout: float = 30.0,
) -> AsyncIterator[EtcdCluster]:
    """Run a real ``size``-member etcd cluster for the duration of the block.

    Members get their own ``127.a.b.N`` addresses, their own ``etcdsync-m<i>-*`` directories, their own
    process groups, and the options of :func:`etcd_server` (which see). Entering starts them all and waits
    until every one is healthy (a checkpoint). Leaving SIGKILLs every member (running, paused or already
    dead), reaps them and removes their directories, shielded and bounded by 5 s, whether the block returned,
    raised or was cancelled.

    Raises:
        ValueError: ``size`` is not between 1 and 254.
        EtcdNotFoundError: No etcd binary.
        EtcdHarnessError: A member exited or the cluster did not become healthy within ``start_timeout``.

    Example:
        >>> import trio
        >>> from etcdsync.testing import etcd_cluster
        >>> async def main() -> None:
        ...     async with etcd_cluster(size=3) as cluster:
        ...         print(cluster.endpoints)  # ['127.61.9.1:2379', '127.61.9.2:2379', '127.61.9.3:2379']
        ...         cluster.pause(await cluster.leader())
        ...         await cluster.leader()  # a new one among the other two
        >>> trio.run(main)  # doctest: +SKIP
    """
    if not 1 <= size <= 254:
        raise ValueError(f"size must be between 1 and 254, got {size}")
    options = EtcdOptions(
        unsafe_no_fsync=unsafe_no_fsync,
        quota_backend_bytes=quota_backend_bytes,
        auth_token_ttl=auth_token_ttl,
        extra_args=tuple(extra_args),
        log_level=log_level,
        heartbeat_interval=heartbeat_interval,
        election_timeout=election_timeout,
        start_timeout=start_timeout,
    )
    binary = find_etcd()
    members = [MemberSpec(address, peer_url(address, options)) for address in pick_block(size)]
    async with launch_cluster(members, options, binary) as cluster:
        yield cluster


@attrs.frozen
class MemberSpec:
    """How :func:`launch_cluster` starts one member (the last three as in :meth:`EtcdProcess.create`)."""

    address: MemberAddress
    peer_url: str  # what the other members are told to reach it by
    command_prefix: tuple[str, ...] = ()
    advertise_peer_url: str | None = None
    access_endpoint: str | None = None


@contextlib.asynccontextmanager
async def launch_cluster(
    members: Sequence[MemberSpec], options: EtcdOptions, binary: str
) -> AsyncIterator[EtcdCluster]:
    """Start a fresh cluster of ``members`` (named ``m0``, ``m1``...), wait until it is healthy, and
    close every process at exit (shielded and bounded, see :func:`aclose_processes`).

    The one launch sequence of :func:`etcd_cluster` and of the fault-injection clusters, which only
    place and reach their members differently.
    """
    names = [f"m{i}" for i in range(len(members))]
    initial_cluster = ",".join(f"{name}={m.peer_url}" for name, m in zip(names, members, strict=True))
    token = f"etcdsync-{uuid.uuid4().hex[:12]}"
    processes: list[EtcdProcess] = []
    try:
        for name, member in zip(names, members, strict=True):
            processes.append(
                EtcdProcess.create(
                    name=name,
                    address=member.address,
                    initial_cluster=initial_cluster,
                    cluster_token=token,
                    options=options,
                    binary=binary,
                    command_prefix=member.command_prefix,
                    advertise_peer_url=member.advertise_peer_url,
                    access_endpoint=member.access_endpoint,
                )
            )
        for process in processes:
            process.start()
        cluster = EtcdCluster(members=[EtcdServer(p) for p in processes], options=options)
        await cluster.wait_healthy()
        yield cluster
    finally:
        await aclose_processes(processes)
