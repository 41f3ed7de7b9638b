"""One etcd process, driven synchronously: the core under the async harness and the session fixture.

pytest-trio runs each test in its own ``trio.run``, so a server shared by a whole pytest session must be
started and stopped without trio. :class:`EtcdProcess` therefore uses :class:`subprocess.Popen` and blocking
waits; the async handles in :mod:`._server` and :mod:`._cluster` reuse it and replace only the *waits* with
trio ones.

Every process is started so that it cannot outlive the harness unnoticed (see the fault-injection notes,
"Harness pitfalls"):

* in its own session and process group (``start_new_session=True``), so a signal sent to the test runner's
  group never reaches it; signals go to that group with :func:`os.killpg`, and only while the child is not yet
  reaped, so a recycled pid can never be hit;
* with ``PR_SET_PDEATHSIG=SIGKILL`` on Linux when started from the main thread, so it dies with the harness
  even if the harness itself is SIGKILLed (the kernel ties this to the *thread* that forked, hence the
  main-thread rule);
* with ``$ETCDSYNC_HARNESS_RUN`` set to :func:`harness_marker` in its environment and its data under a
  ``etcdsync-*`` directory, so a test can prove that nothing was left behind;
* stopped with SIGKILL (SIGTERM means a slow graceful leadership transfer), then reaped, and only then is its
  directory removed: removing it while etcd is still exiting corrupts a later restart.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, final

import attrs

from . import _http
from ._addresses import MemberAddress
from ._binary import supports_flag
from ._errors import EtcdHarnessError

__all__ = (
    "DIR_PREFIX",
    "ENV_MARKER",
    "TMPDIR_ENV",
    "EtcdOptions",
    "EtcdProcess",
    "harness_marker",
    "peer_url",
    "remove_workdir",
    "temp_base",
)

logger = logging.getLogger(__name__)

ENV_MARKER: Final = "ETCDSYNC_HARNESS_RUN"
TMPDIR_ENV: Final = "ETCDSYNC_TMPDIR"
DIR_PREFIX: Final = "etcdsync-"
TMPFS_DIR: Final = "/dev/shm"

# Readiness probing: how often, and how long one probe may take before the next is tried. A member that is not
# yet serving accepts connections and answers nothing, so each probe needs its own bound.
POLL_INTERVAL: Final = 0.025
PROBE_TIMEOUT: Final = 1.0
# Bound on waiting for a SIGKILLed process to be reaped, and for SIGSTOP to take effect.
REAP_TIMEOUT: Final = 10.0
_STOP_TIMEOUT: Final = 2.0
_LOG_TAIL_BYTES: Final = 4000

# One marker per harness process unless the environment chose one (an outer test run choosing it for an inner
# one).
_PROCESS_MARKER: Final = uuid.uuid4().hex


def harness_marker() -> str:
    """Return the value every etcd started by this process carries in ``$ETCDSYNC_HARNESS_RUN``.

    It is ``$ETCDSYNC_HARNESS_RUN`` itself when set, so a parent process can pick the marker for a child test
    run and afterwards look for survivors in ``/proc/*/environ``; otherwise a random value fixed per process.

    Example:
        >>> harness_marker()  # doctest: +SKIP
        '5f0c3b8e9d2a4f1e8c7b6a5d4e3f2a1b'
    """
    return os.environ.get(ENV_MARKER) or _PROCESS_MARKER


def temp_base(*, tmpfs: bool = False) -> str:
    """Return the directory under which ``etcdsync-*`` working directories are created.

    That is ``$ETCDSYNC_TMPDIR`` if set, else :func:`tempfile.gettempdir`. With ``tmpfs=True`` it is
    ``/dev/shm`` instead when that exists and is writable (``fsync`` is free on tmpfs).

    Example:
        >>> temp_base()  # doctest: +SKIP
        '/tmp'
    """
    if tmpfs:
        if os.path.isdir(TMPFS_DIR) and os.access(TMPFS_DIR, os.W_OK):
            return TMPFS_DIR
        logger.debug("%s is not a writable directory; data stays on the normal temp dir", TMPFS_DIR)
    return os.environ.get(TMPDIR_ENV) or tempfile.gettempdir()


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    """The value given for ``flag`` in ``args`` (``--f=v`` or ``--f v``; a bare ``--f`` means "true")."""
    value: str | None = None
    for i, arg in enumerate(args):
        if arg == flag:
            following = args[i + 1] if i + 1 < len(args) else ""
            value = "true" if not following or following.startswith("-") else following
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1 :]
    return value


def _uses_tls(args: Sequence[str], cert_flag: str, auto_flag: str) -> bool:
    return bool(_flag_value(args, cert_flag)) or _flag_value(args, auto_flag) in ("true", "1")


def peer_url(address: MemberAddress, options: EtcdOptions) -> str:
    """The peer URL a member at ``address`` listens on and advertises."""
    return f"{'https' if options.peer_tls else 'http'}://{address.host}:{address.peer_port}"


@attrs.frozen(kw_only=True)
class EtcdOptions:
    """How to run etcd; the keyword options of :func:`etcd_server` and :func:`etcd_cluster`.

    Attributes:
        unsafe_no_fsync: Skip fsync for speed. Passes ``--unsafe-no-fsync`` when the binary has it (etcd ≥
            3.5); etcd 3.4 has no such flag, so the working directory is put on tmpfs (``/dev/shm``) instead,
            where fsync costs nothing. Data is lost on a machine crash either way, which a test never cares
            about.
        quota_backend_bytes: ``--quota-backend-bytes``; ``None`` keeps etcd's default (2 GiB).
        auth_token_ttl: ``--auth-token-ttl`` in seconds; ``None`` keeps etcd's default (300).
        extra_args: More flags, appended last so they win over the harness's own (etcd keeps the last value).
            ``--cert-file``/``--auto-tls`` switch the client URLs to ``https``; readiness is then probed on
            the plain-HTTP metrics listener.
        log_level: ``--log-level`` of etcd's own log, which goes to a file next to the data dir.
        heartbeat_interval: ``--heartbeat-interval`` in milliseconds.
        election_timeout: ``--election-timeout`` in milliseconds; the minimum lease TTL is 1.5 times this.
        start_timeout: Seconds the harness waits for a member to answer, or for a leader, before raising
            :class:`EtcdHarnessError`. It bounds the harness's own waits only.
    """

    unsafe_no_fsync: bool = False
    quota_backend_bytes: int | None = None
    auth_token_ttl: int | None = None
    extra_args: tuple[str, ...] = ()
    log_level: str = "error"
    heartbeat_interval: int = 50
    election_timeout: int = 500
    start_timeout: float = 30.0

    @property
    def client_tls(self) -> bool:
        """Whether the extra flags make the client listener serve TLS."""
        return _uses_tls(self.extra_args, "--cert-file", "--auto-tls")

    @property
    def peer_tls(self) -> bool:
        """Whether the extra flags make the peer listener serve TLS."""
        return _uses_tls(self.extra_args, "--peer-cert-file", "--peer-auto-tls")

    def on_tmpfs(self, binary: str) -> bool:
        """Whether ``unsafe_no_fsync`` has to be emulated by putting the data on tmpfs."""
        return self.unsafe_no_fsync and not supports_flag(binary, "--unsafe-no-fsync")

    def flags(self, binary: str) -> list[str]:
        """The flags these options add to every member's command line."""
        flags = [
            f"--heartbeat-interval={self.heartbeat_interval}",
            f"--election-timeout={self.election_timeout}",
            "--logger=zap",
            "--log-outputs=stderr",
            f"--log-level={self.log_level}",
        ]
        if self.quota_backend_bytes is not None:
            flags.append(f"--quota-backend-bytes={self.quota_backend_bytes}")
        if self.auth_token_ttl is not None:
            flags.append(f"--auth-token-ttl={self.auth_token_ttl}")
        if self.unsafe_no_fsync and not self.on_tmpfs(binary):
            flags.append("--unsafe-no-fsync")
        flags.extend(self.extra_args)
        return flags


def _die_with_parent_hook() -> Callable[[], None]:
    """Make a ``preexec_fn`` asking the kernel to SIGKILL the child when the forking thread dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def hook() -> None:
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


def _child_env(marker: str) -> dict[str, str]:
    # etcd reads any ETCD_<FLAG> variable as a flag; only the arch override is meant for it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_") or k == "ETCD_UNSUPPORTED_ARCH"}
    env[ENV_MARKER] = marker
    return env


def proc_state(pid: int) -> str | None:
    """The one-letter state in ``/proc/<pid>/stat`` (``R``, ``S``, ``T``, ``Z`` …), or None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain anything; the state follows the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[0].decode() if fields else None


@final
@attrs.define(eq=False, repr=False)
class EtcdProcess:
    """One etcd member process and its working directory, with blocking control methods.

    Built by :func:`etcd_process`, :func:`etcd_server` and :func:`etcd_cluster`; use it directly only where no
    trio run exists (a session-scoped pytest fixture). Inside trio, use the async :class:`EtcdServer` handle,
    which wraps one of these. The working directory (``$ETCDSYNC_TMPDIR/etcdsync-*``) holds ``data/`` and
    ``etcd.log``; it lives until :meth:`close`, across kills and restarts.

    Example:
        >>> from etcdsync.testing import etcd_process
        >>> with etcd_process() as proc:  # doctest: +SKIP
        ...     print(proc.endpoint)
        ...     proc.restart()
        127.91.3.17:2379
    """

    name: str
    address: MemberAddress
    initial_cluster: str
    cluster_token: str
    options: EtcdOptions
    binary: str
    workdir: Path
    #: Argument vector put before etcd's own, e.g. ``("ip", "netns", "exec", "ns1")`` to run the member inside
    #: a network namespace (that command must end by exec'ing etcd, so the pid stays etcd's).
    command_prefix: tuple[str, ...] = ()
    #: The peer URL advertised to the cluster when it is not the one listened on (a peer proxy in front).
    advertise_peer_url: str | None = None
    #: ``"host:port"`` through which the harness and the tests reach the client port, when the listen
    #: address is not reachable from here (a member in a network namespace behind a loopback proxy).
    access_endpoint: str | None = None
    _popen: subprocess.Popen[bytes] | None = attrs.field(default=None, init=False)
    _paused: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _last_pid: int | None = attrs.field(default=None, init=False)

    @classmethod
    def create(
        cls,
        *,
        name: str,
        address: MemberAddress,
        initial_cluster: str,
        cluster_token: str,
        options: EtcdOptions,
        binary: str,
        command_prefix: Sequence[str] = (),
        advertise_peer_url: str | None = None,
        access_endpoint: str | None = None,
    ) -> EtcdProcess:
        """Make the working directory and return a not-yet-started process.

        ``command_prefix``, ``advertise_peer_url`` and ``access_endpoint`` are for fault injection (see the
        attributes of the same names); by default the member runs directly and is reached where it listens.
        """
        base = temp_base(tmpfs=options.on_tmpfs(binary))
        os.makedirs(base, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{name}-", dir=base))
        return cls(
            name=name,
            address=address,
            initial_cluster=initial_cluster,
            cluster_token=cluster_token,
            options=options,
            binary=binary,
            workdir=workdir,
            command_prefix=tuple(command_prefix),
            advertise_peer_url=advertise_peer_url,
            access_endpoint=access_endpoint,
        )

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<EtcdProcess {self.name} at {self.endpoint}, pid {self._last_pid}, {state}>"

    # -- addresses and paths ---------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The client endpoint, ``"127.a.b.c:port"`` (no scheme); ``access_endpoint`` when that is set."""
        return self.access_endpoint or self.listen_endpoint

    @property
    def listen_endpoint(self) -> str:
        """Where etcd listens for clients, ``"host:port"``; :attr:`endpoint` unless a proxy fronts it."""
        return f"{self.address.host}:{self.address.client_port}"

    @property
    def client_url(self) -> str:
        """The client URL, ``"http://127.a.b.c:port"`` (``https`` with TLS flags)."""
        return f"{'https' if self.options.client_tls else 'http'}://{self.endpoint}"

    @property
    def peer_url(self) -> str:
        """The peer URL this member listens on and advertises."""
        return peer_url(self.address, self.options)

    @property
    def metrics_endpoint(self) -> str:
        """The plain-HTTP listener serving ``/metrics`` and ``/health``, ``"host:port"``."""
        return f"{self.address.host}:{self.address.metrics_port}"

    @property
    def probe_endpoint(self) -> str:
        """The endpoint readiness is probed on (the client port, or the metrics port when that is TLS)."""
        return self.metrics_endpoint if self.options.client_tls else self.endpoint

    @property
    def data_dir(self) -> Path:
        """The member's data directory (kept across restarts)."""
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        """etcd's log file (stdout and stderr, appended across restarts)."""
        return self.workdir / "etcd.log"

    # -- state -----------------------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The pid of the current or, after a kill, the last etcd process.

        Raises:
            RuntimeError: The process was never started.
        """
        if self._last_pid is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._last_pid

    @property
    def running(self) -> bool:
        """Whether the process has been started and has not exited (a paused process is running)."""
        return self._popen is not None and self._popen.poll() is None

    @property
    def paused(self) -> bool:
        """Whether the process is stopped with SIGSTOP."""
        return self._paused and self.running

    @property
    def returncode(self) -> int | None:
        """The exit status of the last process once it has exited and been reaped, else None."""
        return None if self._popen is None else self._popen.poll()

    def command(self, *, existing: bool) -> list[str]:
        """The etcd command line; ``existing`` selects ``--initial-cluster-state existing`` (restarts)."""
        return [
            self.binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={'https' if self.options.client_tls else 'http'}://{self.listen_endpoint}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.advertise_peer_url or self.peer_url}",
            f"--listen-metrics-urls=http://{self.metrics_endpoint}",
            f"--initial-cluster={self.initial_cluster}",
            f"--initial-cluster-state={'existing' if existing else 'new'}",
            f"--initial-cluster-token={self.cluster_token}",
            *self.options.flags(self.binary),
        ]

    def log_tail(self, limit: int = _LOG_TAIL_BYTES) -> str:
        """The last ``limit`` bytes of the log file, decoded leniently ("" if there is none)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - limit))
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def describe_failure(self, what: str) -> str:
        """An error message for ``what`` went wrong, ending with the tail of the log."""
        tail = self.log_tail().rstrip() or "(empty)"
        return f"etcd member {self.name} at {self.endpoint} {what}; last lines of {self.log_path}:\n{tail}"

    # -- control ---------------------------------------------------------------------------------------------

    def start(self, *, existing: bool = False) -> None:
        """Spawn etcd; returns at once, without waiting for it to answer.

        Raises:
            RuntimeError: It is already running, or was closed.
            OSError: The binary could not be executed.
        """
        if self._closed:
            raise RuntimeError(f"{self.name} is closed")
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        argv = [*self.command_prefix, *self.command(existing=existing)]
        use_pdeathsig = sys.platform == "linux" and threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as log:
            log.write(f"=== etcdsync.testing: starting {argv!r}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(harness_marker()),
                start_new_session=True,
                close_fds=True,
                preexec_fn=_die_with_parent_hook() if use_pdeathsig else None,
            )
        self._paused = False
        self._last_pid = self._popen.pid
        logger.debug("started %s pid %d on %s", self.name, self._popen.pid, self.endpoint)

    def check_alive(self) -> None:
        """Raise :class:`EtcdHarnessError`, with the log tail, if the process has exited."""
        code = self.returncode
        if code is not None:
            raise EtcdHarnessError(self.describe_failure(f"exited with status {code}"))

    def send_kill(self) -> None:
        """Send SIGKILL to the process group, unless the process has already been reaped. Does not wait."""
        if self._popen is not None and self._popen.returncode is None:
            try:
                os.killpg(self._popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # already exited; the zombie is reaped by the caller's wait
        self._paused = False

    def kill(self) -> None:
        """SIGKILL the process and block until it is reaped; a no-op if it is not running.

        Raises:
            subprocess.TimeoutExpired: It was not reaped within 10 s (it is then in uninterruptible sleep).
        """
        self.send_kill()
        if self._popen is not None:
            self._popen.wait(timeout=REAP_TIMEOUT)

    def _signal_running(self, signum: int) -> None:
        if self._popen is None or not self.running:
            raise RuntimeError(f"{self.name} is not running")
        os.killpg(self._popen.pid, signum)

    def pause(self) -> None:
        """SIGSTOP the process and wait until the kernel reports it stopped.

        Raises:
            RuntimeError: It is not running.
            EtcdHarnessError: It did not stop within 2 s.
        """
        self._signal_running(signal.SIGSTOP)
        self._paused = True
        deadline = time.monotonic() + _STOP_TIMEOUT
        while proc_state(self.pid) not in ("T", None):
            if time.monotonic() > deadline:
                raise EtcdHarnessError(self.describe_failure("did not stop after SIGSTOP"))
            time.sleep(0.001)

    def resume(self) -> None:
        """SIGCONT the process; a no-op if it is running and not paused.

        Raises:
            RuntimeError: It is not running.
        """
        self._signal_running(signal.SIGCONT)
        self._paused = False

    def wait_ready(self) -> None:
        """Block until ``/health`` reports the member healthy (it has a leader and serves reads).

        Raises:
            EtcdHarnessError: The process exited, or ``options.start_timeout`` passed first.
        """
        deadline = time.monotonic() + self.options.start_timeout
        while True:
            self.check_alive()
            try:
                if _http.health_sync(self.probe_endpoint, timeout=PROBE_TIMEOUT):
                    return
            except (OSError, _http.GatewayError) as exc:
                logger.debug("%s not ready yet: %r", self.name, exc)
            if time.monotonic() > deadline:
                raise EtcdHarnessError(
                    self.describe_failure(f"did not become healthy within {self.options.start_timeout} s")
                )
            time.sleep(POLL_INTERVAL)

    def restart(self) -> None:
        """Kill (if running), start again on the same address, ports and data dir, and wait until ready."""
        self.kill()
        self.start(existing=True)
        self.wait_ready()

    def close(self) -> None:
        """Kill and reap the process, then remove the working directory. Idempotent.

        The directory is kept (and a warning logged) if the process could not be reaped.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.kill()
        except subprocess.TimeoutExpired:
            logger.warning("%s (pid %s) was not reaped; keeping %s", self.name, self._last_pid, self.workdir)
            return
        remove_workdir(self.workdir)

    @property
    def popen(self) -> subprocess.Popen[bytes] | None:
        """The :class:`subprocess.Popen` of the current or last process, if any."""
        return self._popen


def remove_workdir(workdir: Path) -> None:
    """Remove a working directory; log, never raise, if something stays (cleanup must not mask errors)."""
    shutil.rmtree(workdir, ignore_errors=True)
    if workdir.exists():
        logger.warning("could not remove %s", workdir)
