"""A single real etcd server: the async :func:`etcd_server`, its sync twin :func:`etcd_process`, and
:func:`run_server` for ``etcdsync server``.

Entering starts etcd on a free loopback address with a fresh temporary data dir and waits until ``/health``
says it is serving; leaving SIGKILLs it, reaps it and removes the directory, also when the body raised or was
cancelled. The cleanup runs shielded and bounded (5 s), so a cancelled test still leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Final, NoReturn, final

import attrs
import trio

from . import _http
from ._addresses import pick_single
from ._binary import find_etcd
from ._errors import EtcdHarnessError
from ._process import POLL_INTERVAL, PROBE_TIMEOUT, REAP_TIMEOUT, EtcdOptions, EtcdProcess, peer_url

__all__ = ("EtcdServer", "aclose_processes", "etcd_process", "etcd_server", "run_server", "wait_ready")

logger = logging.getLogger(__name__)

# Bound on the whole shielded teardown (SIGKILL + reap + rm -rf) of one server or cluster.
CLEANUP_TIMEOUT: Final = 5.0
_REAP_POLL: Final = 0.005

_PROBE_ERRORS = (OSError, trio.BrokenResourceError, _http.GatewayError)


async def _wait_exited(popen: subprocess.Popen[bytes]) -> None:
    """Wait until ``popen`` has exited, then reap it; like :class:`trio.Process`, via a pidfd on Linux."""
    if popen.poll() is not None:
        await trio.lowlevel.checkpoint()
        return
    try:
        # Not reaped yet, so the pid cannot have been reused: the pidfd is for our child, even if a zombie.
        pidfd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):  # no pidfd (not Linux >= 5.3): poll instead
        while popen.poll() is None:  # noqa: ASYNC110 - there is nothing to wait on but the clock
            await trio.sleep(_REAP_POLL)
        return
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    popen.wait()  # readable pidfd: the child has exited, so this reaps without blocking


async def _reap(proc: EtcdProcess) -> None:
    """Wait, without blocking trio, until a signalled process has exited and been reaped (bounded)."""
    popen = proc.popen
    if popen is None:
        await trio.lowlevel.checkpoint()
        return
    with trio.move_on_after(REAP_TIMEOUT):
        await _wait_exited(popen)
        return
    raise EtcdHarnessError(proc.describe_failure(f"was not reaped within {REAP_TIMEOUT} s of SIGKILL"))


async def wait_ready(proc: EtcdProcess) -> None:
    """Wait until ``/health`` on ``proc`` reports healthy: it has a leader and serves quorum reads.

    Polls every 25 ms; each probe is bounded, because a member that is not yet serving accepts connections and
    then says nothing.

    Raises:
        EtcdHarnessError: The process exited, or ``proc.options.start_timeout`` passed first. The message ends
            with the tail of the member's log.
    """
    with trio.move_on_after(proc.options.start_timeout):
        while True:
            proc.check_alive()
            with trio.move_on_after(PROBE_TIMEOUT):
                try:
                    if await _http.health(proc.probe_endpoint):
                        return
                except _PROBE_ERRORS as exc:
                    logger.debug("%s not ready yet: %r", proc.name, exc)
            await trio.sleep(POLL_INTERVAL)
    proc.check_alive()
    raise EtcdHarnessError(
        proc.describe_failure(f"did not become healthy within {proc.options.start_timeout} s")
    )


async def aclose_processes(processes: Sequence[EtcdProcess]) -> None:
    """SIGKILL every process, reap them all, then remove their directories: shielded, bounded by 5 s.

    Safe to call from a cancelled scope (that is its point) and on processes that never started or already
    died. A process not reaped in time keeps its directory and is logged, never raised about: cleanup must not
    hide the exception that is already propagating.
    """
    with trio.move_on_after(CLEANUP_TIMEOUT, shield=True):
        for proc in processes:
            proc.send_kill()  # all at once: a dying majority cannot elect anything in between
        for proc in processes:
            try:
                await _reap(proc)
            except EtcdHarnessError as exc:
                logger.warning("%s", exc)
    for proc in processes:
        if proc.returncode is None and proc.popen is not None:
            logger.warning("%s (pid %d) still not reaped; keeping %s", proc.name, proc.pid, proc.workdir)
        else:
            proc.close()  # reaped already: only removes the directory


@final
@attrs.define(eq=False, repr=False)
class EtcdServer:
    """Async handle on one etcd member, yielded by :func:`etcd_server` and listed in
    ``EtcdCluster.members``.

    Example:
        >>> import trio
        >>> from etcdsync.testing import etcd_server
        >>> async def main() -> None:
        ...     async with etcd_server() as server:
        ...         status = await server.status()
        ...         server.pause()  # SIGSTOP: requests now hang
        ...         server.resume()
        ...         await server.restart()  # same address, port and data
        >>> trio.run(main)  # doctest: +SKIP
    """

    _process: EtcdProcess

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<etcdsync.testing.EtcdServer {self.name} at {self.endpoint}, {state}>"

    @property
    def process(self) -> EtcdProcess:
        """The sync core underneath, for what this handle does not offer."""
        return self._process

    @property
    def name(self) -> str:
        """The member name (``--name``)."""
        return self._process.name

    @property
    def endpoint(self) -> str:
        """The client endpoint, ``"127.a.b.c:port"``, without a scheme."""
        return self._process.endpoint

    @property
    def client_url(self) -> str:
        """The client URL, ``"http://127.a.b.c:port"`` (``https`` when TLS flags were given)."""
        return self._process.client_url

    @property
    def data_dir(self) -> Path:
        """The data directory; it survives :meth:`kill` and :meth:`restart`."""
        return self._process.data_dir

    @property
    def log_path(self) -> Path:
        """etcd's log file."""
        return self._process.log_path

    @property
    def pid(self) -> int:
        """The pid of the current process, or of the last one after :meth:`kill`."""
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether etcd is alive (also when paused)."""
        return self._process.running

    @property
    def paused(self) -> bool:
        """Whether etcd is stopped by :meth:`pause`."""
        return self._process.paused

    async def kill(self) -> None:
        """SIGKILL the member and wait until it is reaped; its data dir stays. A no-op if it is not running.

        Always checkpoints.

        Raises:
            EtcdHarnessError: It was not reaped within 10 s.
        """
        self._process.send_kill()
        await _reap(self._process)

    async def restart(self) -> None:
        """Kill the member if it runs, start it on the same address, ports and data dir, and wait until
        healthy.

        In a cluster the member rejoins with ``--initial-cluster-state existing``; it becomes healthy only
        once a quorum is running.

        Raises:
            EtcdHarnessError: It did not become healthy within ``start_timeout``.
        """
        await self.kill()
        self._process.start(existing=True)
        await wait_ready(self._process)

    def pause(self) -> None:
        """SIGSTOP the member (a gray failure: its sockets stay open, nothing answers).

        Returns once the kernel reports the process stopped.

        Raises:
            RuntimeError: It is not running.
        """
        self._process.pause()

    def resume(self) -> None:
        """SIGCONT a paused member.

        Raises:
            RuntimeError: It is not running.
        """
        self._process.resume()

    async def wait_ready(self) -> None:
        """Wait until the member reports itself healthy (bounded by ``start_timeout``).

        Raises:
            EtcdHarnessError: It exited or stayed unhealthy.
        """
        await wait_ready(self._process)

    async def status(self) -> _http.MemberStatus:
        """Ask the member for its raft status through the HTTP gateway (not through etcdsync).

        Waits as long as the member takes, which is forever when it is paused: bound it with
        ``trio.move_on_after``.

        Raises:
            OSError, trio.BrokenResourceError: The member is not reachable.
            GatewayError: The reply was malformed.
        """
        return await _http.member_status(self.endpoint, tls=self._process.options.client_tls)

    async def gateway(self, path: str, body: dict[str, object]) -> dict[str, object]:
        """POST ``body`` as JSON to the member's gateway, e.g. ``"/v3/kv/range"``; return the decoded reply.

        A side channel independent of the client under test: bytes are base64 strings and 64-bit integers are
        JSON strings, as etcd's grpc-gateway has them. Waits as long as the member takes.

        Raises:
            OSError, trio.BrokenResourceError: The member is not reachable.
            GatewayError: A non-200 status or a reply that is not a JSON object.

        Example:
            >>> await server.gateway("/v3/kv/put", {"key": "YQ==", "value": "Yg=="})  # doctest: +SKIP
        """
        return await _http.gateway_post(self.endpoint, path, body, tls=self._process.options.client_tls)


def _single(binary: str, host: str | None, options: EtcdOptions) -> EtcdProcess:
    address = pick_single(host)
    name = "etcd"
    return EtcdProcess.create(
        name=name,
        address=address,
        initial_cluster=f"{name}={peer_url(address, options)}",
        cluster_token=f"etcdsync-{uuid.uuid4().hex[:12]}",
        options=options,
        binary=binary,
    )


@contextlib.asynccontextmanager
async def etcd_server(
    *,
    host: str | None = None,
    unsafe_no_fsync: bool = False,
    quota_backend_bytes: int | None = None,
    auth_token_ttl: int | None = None,
    extra_args: Sequence[str] = (),
    log_level: str = "error",
    heartbeat_interval: int = 50,
    election_timeout: int = 500,
    start_timeout: float = 30.0,
) -> AsyncIterator[EtcdServer]:
    """Run one real etcd for the duration of the block.

    etcd (``$ETCD_BIN`` or on ``PATH``) listens on a random free ``127.a.b.c`` with ports 2379/2380/2381, or
    on ``host`` (its default ports if free, else ephemeral ones), with data in
    ``$ETCDSYNC_TMPDIR/etcdsync-*``. Entering waits until it serves (always a checkpoint); leaving kills and
    reaps it and removes the directory, shielded and bounded, whatever the block did (also a checkpoint, never
    cancelled).

    Args:
        host: A specific loopback address, e.g. ``"127.0.0.1"``.
        unsafe_no_fsync: Skip fsync. etcd 3.4 has no ``--unsafe-no-fsync``, so the data dir goes to tmpfs
            (``/dev/shm``) instead; with etcd ≥ 3.5 the flag is passed.
        quota_backend_bytes: ``--quota-backend-bytes``, e.g. ``4 * 1024 * 1024`` to provoke NOSPACE.
        auth_token_ttl: ``--auth-token-ttl`` in seconds.
        extra_args: More etcd flags, appended last (TLS flags, ``--auto-compaction-*``,
            ``--experimental-watch-progress-notify-interval=100ms`` …).
        log_level: etcd's ``--log-level``; the log is in :attr:`EtcdServer.log_path`.
        heartbeat_interval: ``--heartbeat-interval`` (ms); 50 by default, for fast tests.
        election_timeout: ``--election-timeout`` (ms); 500 by default, so the minimum lease TTL is 1 s.
        start_timeout: Seconds to wait for etcd to serve; bounds the harness's own waits only.

    Yields:
        The :class:`EtcdServer` handle.

    Raises:
        EtcdNotFoundError: No etcd binary.
        EtcdHarnessError: etcd exited or did not serve within ``start_timeout`` (message ends with its log).

    Example:
        >>> import trio
        >>> from etcdsync.testing import etcd_server
        >>> async def main() -> None:
        ...     async with etcd_server() as server:
        ...         print(server.endpoint)  # e.g. 127.58.201.7:2379
        >>> trio.run(main)  # doctest: +SKIP
    """
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
    proc = _single(find_etcd(), host, options)
    try:
        proc.start()
        await wait_ready(proc)
        yield EtcdServer(proc)
    finally:
        await aclose_processes([proc])


@contextlib.contextmanager
def etcd_process(
    *,
    host: str | None = None,
    unsafe_no_fsync: bool = False,
    quota_backend_bytes: int | None = None,
    auth_token_ttl: int | None = None,
    extra_args: Sequence[str] = (),
    log_level: str = "error",
    heartbeat_interval: int = 50,
    election_timeout: int = 500,
    start_timeout: float = 30.0,
) -> Iterator[EtcdProcess]:
    """Blocking twin of :func:`etcd_server` for code with no trio run, such as a session-scoped fixture.

    Takes the same options and yields the sync :class:`EtcdProcess`. Do not use it inside trio: its waits
    block the event loop.

    Example:
        >>> import pytest
        >>> from etcdsync.testing import etcd_process
        >>> @pytest.fixture(scope="session")
        ... def shared_endpoint():
        ...     with etcd_process() as proc:
        ...         yield proc.endpoint
    """
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
    proc = _single(find_etcd(), host, options)
    try:
        proc.start()
        proc.wait_ready()
        yield proc
    finally:
        proc.close()


async def run_server(
    *,
    host: str | None = None,
    unsafe_no_fsync: bool = False,
    log_level: str = "error",
    extra_args: Sequence[str] = (),
    task_status: trio.TaskStatus[EtcdServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run a development etcd until cancelled; the engine of ``etcdsync server``.

    Starts a server like :func:`etcd_server`, reports its handle through ``task_status`` once it serves, then
    sleeps until cancelled (Ctrl-C), and cleans up. It prints nothing: the caller prints ``server.endpoint``.
    Pass ``host="127.0.0.1"`` to get ``127.0.0.1:2379`` when that is free (the CLI's default endpoint).

    Raises:
        EtcdNotFoundError: No etcd binary.
        EtcdHarnessError: etcd did not come up.

    Example:
        >>> async def main() -> None:
        ...     async with trio.open_nursery() as nursery:
        ...         server = await nursery.start(run_server)
        ...         print(server.endpoint)  # the CLI's only output; then it runs until Ctrl-C
    """
    async with etcd_server(
        host=host, unsafe_no_fsync=unsafe_no_fsync, log_level=log_level, extra_args=extra_args
    ) as server:
        task_status.started(server)
        await trio.sleep_forever()
