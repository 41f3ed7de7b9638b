"""A real etcd on loopback for the transport tests, with the process control they need.

``etcdsync.testing.etcd_server`` is the suite-wide harness; the transport tests also need to SIGSTOP,
SIGCONT and restart *their own* member on the same port, so they start one directly: free loopback
ports, a data directory under the test's tmp dir (or /dev/shm when available: fsync-free, fast),
killed and reaped at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import trio

ETCD = os.environ.get("ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EtcdProcess:
    """One single-member etcd. ``start``/``stop``/``restart`` keep the ports and the data."""

    def __init__(self, data_dir: Path, *, tls: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self.client_port = _free_port()
        self.peer_port = _free_port()
        self.endpoint = f"127.0.0.1:{self.client_port}"
        self._tls = list(tls)
        self.scheme = "https" if tls else "http"
        self._process: subprocess.Popen[bytes] | None = None
        self._log = data_dir.parent / f"etcd-{self.client_port}.log"

    def start(self) -> None:
        client_url = f"{self.scheme}://{self.endpoint}"
        peer_url = f"http://127.0.0.1:{self.peer_port}"
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    ETCD,
                    "--name=transport-test",
                    f"--data-dir={self.data_dir}",
                    f"--listen-client-urls={client_url}",
                    f"--advertise-client-urls={client_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=transport-test={peer_url}",
                    "--logger=zap",
                    "--log-level=error",
                    *self._tls,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"etcd exited with {self._process.returncode}; see {self._log}")
            with contextlib.suppress(OSError):
                if self.scheme == "http":
                    with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as response:
                        if b'"health":"true"' in response.read():
                            return
                else:
                    with socket.create_connection(("127.0.0.1", self.client_port), timeout=1):
                        time.sleep(0.5)  # the TLS listener is up; give raft a moment to elect itself
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd did not become healthy; see {self._log}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Graceful stop (SIGTERM), reaped."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def etcd_process(tmp_path: Path, *, tls: Sequence[str] = ()) -> Iterator[EtcdProcess]:
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else tmp_path) as data:
        etcd = EtcdProcess(Path(data) / "member", tls=tls)
        try:
            etcd.start()
            yield etcd
        finally:
            etcd.stop()


async def http_get(endpoint: str, path: str) -> bytes:
    """The body of ``GET path`` (HTTP/1.0, so no chunked encoding)."""
    host, port = endpoint.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.0\r\nHost: {endpoint}\r\n\r\n".encode())
        chunks = []
        while data := await stream.receive_some(1 << 16):
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")), head
    return body


async def metric(endpoint: str, name: str) -> float:
    for line in (await http_get(endpoint, "/metrics")).decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")
