"""What the benchmarks in ``bench/`` share: the server, child processes, metering, pairing and statistics.

Every benchmark script follows one method (``docs/benchmarks.md`` § Method):

* **One etcd per run**, started by the script: ``etcdsync.testing.etcd_server(unsafe_no_fsync=True)``
  (etcd 3.4 has no ``--unsafe-no-fsync``, so its data dir is on tmpfs). With pinning (the default on
  machines with >= 2 CPUs) every thread of etcd runs on CPU 0, and each measured client on CPU 1, so
  the client has one core and its CPU cost is what is compared.
* **One process per measurement** (:func:`run_child`), the script re-running itself with ``--child``:
  aetcd's and python-etcd3's generated protobuf modules clash with etcdsync's in protobuf's
  descriptor pool, python-etcd3's cannot even be imported on protobuf >= 4 (see
  :func:`import_etcd3`), and a fresh process keeps runs independent.
* **Pairing**: within a repetition, the clients of a cell run back to back in an order rotated every
  repetition and reversed on odd ones (:func:`client_order`). Reported: medians over repetitions and
  *paired ratios* -- the median over repetitions of ``client / baseline`` in the same cell and
  repetition (:func:`paired_ratio`), never lone absolute numbers.
* **Metering** (:class:`Meter`): after a warm-up, a fixed window; ops/s, client CPU per op from
  ``getrusage(RUSAGE_SELF)`` (all threads of the child, grpc's C-core threads included), etcd's CPU
  per op from ``/proc/<pid>/stat``, latency percentiles, and what etcd itself counted
  (:func:`server_counters`: RPCs and stream messages received, watch events sent).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

RESULTS = Path(__file__).parent / "results"
KEYS = [b"bench/key/%04d" % i for i in range(1000)]
VALUE = b"v" * 16
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Row = dict[str, Any]
T = TypeVar("T")


# -- measuring ---------------------------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far, from ``/proc``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15 of stat)


def own_cpu_seconds() -> float:
    """CPU seconds of this process, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mib(pid: int | str = "self") -> float:
    """Resident set size of a process, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


_METRIC = re.compile(r'^(grpc_server_msg_(?:received|sent)_total)\{grpc_method="(\w+)".*\}\s+(\S+)$')


def server_counters(metrics_url: str | None) -> dict[str, float]:
    """What etcd has counted so far: gRPC messages received and sent per method, and watch events sent.

    For unary methods a message received is a call; for the Watch stream it is a create or cancel
    request, and a message sent is a watch response; for LeaseKeepAlive, one keep-alive each way.
    Keys: ``"recv:Txn"``, ``"sent:Watch"``, ..., and ``"watch_events"``. A blocking HTTP GET (a few
    ms): call it outside the measured window.
    """
    if not metrics_url:
        return {}
    with urllib.request.urlopen(metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("etcd_debugging_mvcc_events_total "):
            found["watch_events"] = float(line.split()[1])
            continue
        m = _METRIC.match(line)
        if m:
            kind = "recv" if m.group(1).endswith("received_total") else "sent"
            key = f"{kind}:{m.group(2)}"
            found[key] = found.get(key, 0.0) + float(m.group(3))
    return found


def counters_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """``after - before``, leaving out what did not change."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


#: Unary RPCs a recipe may issue (the LeaseKeepAlive and Watch streams are counted apart).
UNARY_METHODS = ("Range", "Put", "DeleteRange", "Txn", "LeaseGrant", "LeaseRevoke", "LeaseTimeToLive")


class Meter:
    """Counts operations and samples latencies inside a window; measures this process and etcd.

    ``start()`` opens the window (after the warm-up), ``stop()`` closes it and returns the row:
    ``ops`` (per second), ``cpu_us_per_op`` and ``cpu_busy`` (client CPU; 1.0 = one core),
    ``server_cpu_us_per_op``, ``p50_ms``/``p99_ms``, the etcd counters' deltas (``server``) and
    those of ``client_counters()`` (``stats``: e.g. a recipe's statistics).
    ``record()`` may be called from several threads (python-etcd3's workers): it takes a lock then.
    """

    def __init__(
        self,
        *,
        etcd_pid: int | None = None,
        metrics_url: str | None = None,
        threads: bool = False,
        client_counters: Callable[[], dict[str, float]] | None = None,
    ):
        self.etcd_pid = etcd_pid
        self.metrics_url = metrics_url
        self.client_counters = client_counters
        self.measuring = False
        self.count = 0
        self.latencies: list[float] = []
        self._lock = threading.Lock() if threads else contextlib.nullcontext()

    def start(self) -> None:
        self.counters0 = server_counters(self.metrics_url)
        self.client0 = self.client_counters() if self.client_counters else {}
        self.server0 = process_cpu_seconds(self.etcd_pid) if self.etcd_pid else 0.0
        self.cpu0 = own_cpu_seconds()
        self.t0 = time.perf_counter()
        self.measuring = True

    def stop(self) -> Row:
        self.measuring = False
        elapsed = time.perf_counter() - self.t0
        cpu = own_cpu_seconds() - self.cpu0
        server = process_cpu_seconds(self.etcd_pid) - self.server0 if self.etcd_pid else 0.0
        client = counters_delta(self.client0, self.client_counters()) if self.client_counters else {}
        counters = counters_delta(self.counters0, server_counters(self.metrics_url))  # window closed
        n = max(1, self.count)
        lat = sorted(self.latencies) or [0.0]
        return {
            "ops": self.count / elapsed,
            "count": self.count,
            "seconds": elapsed,
            "cpu_us_per_op": cpu / n * 1e6,
            "cpu_busy": cpu / elapsed,
            "server_cpu_us_per_op": server / n * 1e6,
            "server_cpu_busy": server / elapsed,
            "p50_ms": percentile(lat, 0.50) * 1e3,
            "p99_ms": percentile(lat, 0.99) * 1e3,
            "server": counters,
            "stats": client,
        }

    def record(self, started: float, n: int = 1) -> None:
        """Count ``n`` operations, the first of which took from ``started`` until now."""
        if self.measuring:
            with self._lock:
                self.count += n
                if len(self.latencies) < 200_000:
                    self.latencies.append(time.perf_counter() - started)

    def add(self, n: int) -> None:
        """Count ``n`` operations without a latency sample (e.g. watch events)."""
        if self.measuring:
            self.count += n


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


# -- drivers: N workers in a loop, a warm-up, then the measured window -----------------------------------


def _window_start(warmup: float, start_at: float | None) -> float:
    """Seconds to wait before the window opens: the warm-up, or until the wall-clock ``start_at``
    (several processes measuring the same window, as the server-ceiling cells do)."""
    return max(0.0, start_at - time.time()) if start_at else warmup


def call_loop(
    call: Callable[[int], Awaitable[object]], meter: Meter, concurrency: int
) -> Callable[[int], Awaitable[None]]:
    """Caller ``offset`` of ``concurrency``: call, record, repeat (works under trio and asyncio)."""

    async def worker(offset: int) -> None:
        i = offset
        while True:
            started = time.perf_counter()
            await call(i)
            meter.record(started)
            i += concurrency

    return worker


async def trio_drive(
    worker: Callable[[int], Awaitable[object]],
    n: int,
    meter: Meter,
    *,
    warmup: float,
    seconds: float,
    start_at: float | None = None,
) -> Row:
    """Run ``worker(0..n-1)`` concurrently under trio; measure ``seconds`` after the warm-up."""
    import trio

    async with trio.open_nursery() as nursery:
        for k in range(n):
            nursery.start_soon(worker, k)
        await trio.sleep(_window_start(warmup, start_at))
        meter.start()  # blocks the loop for the metrics fetch, before the window opens
        await trio.sleep(seconds)
        row = meter.stop()
        nursery.cancel_scope.cancel()
    return row


async def asyncio_drive(
    worker: Callable[[int], Awaitable[object]],
    n: int,
    meter: Meter,
    *,
    warmup: float,
    seconds: float,
    start_at: float | None = None,
) -> Row:
    """Run ``worker(0..n-1)`` as asyncio tasks; measure ``seconds`` after the warm-up."""
    tasks = [asyncio.ensure_future(worker(k)) for k in range(n)]
    try:
        await asyncio.sleep(_window_start(warmup, start_at))
        meter.start()
        await asyncio.sleep(seconds)
        row = meter.stop()
    finally:
        for task in tasks:
            task.cancel()
        # Bounded: aetcd's watch_once cleanup can deadlock when hundreds are cancelled at once (its
        # watcher's request queue holds 10). The window is over, so the row stands either way; the
        # caller should then leave with os._exit.
        done, pending = await asyncio.wait(tasks, timeout=10)
    crashed = [t.exception() for t in done if not t.cancelled() and t.exception() is not None]
    if crashed:  # a worker that died would silently leave the others uncontended
        raise RuntimeError(f"{len(crashed)} of {n} workers crashed") from crashed[0]
    if pending:
        row["teardown_stuck_tasks"] = len(pending)
    return row


def thread_drive(
    worker: Callable[[int, threading.Event], object],
    n: int,
    meter: Meter,
    *,
    warmup: float,
    seconds: float,
    start_at: float | None = None,
) -> Row:
    """Run ``worker(k, stop)`` in ``n`` OS threads until ``stop`` is set; measure after the warm-up."""
    stop = threading.Event()
    crashed: list[BaseException] = []

    def run(k: int) -> None:
        try:
            worker(k, stop)
        except BaseException as exc:  # a worker that died would silently leave the others uncontended
            crashed.append(exc)
            raise

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    time.sleep(_window_start(warmup, start_at))
    meter.start()
    time.sleep(seconds)
    row = meter.stop()
    stop.set()
    deadline = time.monotonic() + 15  # a worker may sit in a blocking call (a lock's 10 s timeout)
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    if crashed:
        raise RuntimeError(f"{len(crashed)} of {n} worker threads crashed") from crashed[0]
    return row


# -- peers -----------------------------------------------------------------------------------------------


def import_etcd3() -> Any:
    """Import python-etcd3 (``etcd3`` 0.12.0) on top of etcdsync's generated protobuf modules.

    Its bundled ``*_pb2`` modules were generated by protoc 3.x and refuse to load on protobuf >= 4
    ("Descriptors cannot be created directly"); the only other way in is the pure-Python protobuf
    runtime, which would make it several times slower than it is. So its three message modules are
    replaced by etcdsync's, which define the same messages (field for field, from the same
    ``rpc.proto``); the wire format does not carry package names, and its gRPC stubs
    (``rpc_pb2_grpc.py``, with the ``/etcdserverpb.KV/Put``-style paths) are its own.
    """
    from etcdsync.client._pb import auth_pb2, kv_pb2, rpc_pb2

    sys.modules.setdefault("etcd3.etcdrpc.auth_pb2", auth_pb2)
    sys.modules.setdefault("etcd3.etcdrpc.kv_pb2", kv_pb2)
    sys.modules.setdefault("etcd3.etcdrpc.rpc_pb2", rpc_pb2)
    import etcd3

    return etcd3


def available(clients: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """The clients whose library is installed, and why the others are left out."""
    import importlib.util

    found, missing = [], {}
    for client in clients:
        module = {"aetcd": "aetcd", "etcd3": "etcd3"}.get(client)
        if module and importlib.util.find_spec(module) is None:
            missing[client] = f"not installed (pip install {module})"
        else:
            found.append(client)
    return found, missing


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.rsplit(":", 1)
    return host, int(port)


# -- the parent: server, children, ordering -------------------------------------------------------------


def base_parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes (plus the hidden ones its children get)."""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repetition: a smoke check")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=None, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up before the window")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, default=None, help="where the raw JSON goes")
    parser.add_argument("--summarize", type=Path, default=None, help="print the tables of a saved JSON file")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--metrics", help=argparse.SUPPRESS)
    parser.add_argument("--etcd-pid", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=None, help=argparse.SUPPRESS)
    return parser


def settle_args(
    args: argparse.Namespace, *, seconds: float, warmup: float, quick_seconds: float = 0.5
) -> None:
    """Fill in defaults: the script's window and warm-up, or tiny ones (and 1 repetition) with --quick."""
    if args.quick:
        args.repetitions = 1
    if args.seconds is None:
        args.seconds = quick_seconds if args.quick else seconds
    if args.warmup is None:
        args.warmup = min(0.3, warmup) if args.quick else warmup


def pinning(args: argparse.Namespace) -> bool:
    return bool(args.pin) and (os.cpu_count() or 1) >= 2


def pin_process(pid: int, cpus: Iterable[int]) -> None:
    """Pin every thread of ``pid`` (threads it starts later inherit the mask).

    ``os.sched_setaffinity(pid)`` alone sets only the thread whose id is ``pid``: a Go server's
    other threads would stay free.
    """
    cpus = set(cpus)
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), cpus)


@contextlib.asynccontextmanager
async def bench_server(args: argparse.Namespace, **options: Any) -> AsyncIterator[Any]:
    """A fresh etcd for this run (tmpfs data dir), pinned to CPU 0 when pinning."""
    from etcdsync.testing import etcd_server

    async with etcd_server(unsafe_no_fsync=True, **options) as server:
        if pinning(args):
            pin_process(server.pid, {0})
        yield server


async def compact(endpoint: str) -> None:
    """Compact etcd's history up to now (between runs, outside any window), so that it stays small."""
    import etcdsync

    async with etcdsync.open_client(endpoint) as client:
        revision = (await client.range(b"bench/", prefix=True, count_only=True)).header.revision
        with contextlib.suppress(etcdsync.CompactedError):  # nothing written since the last compaction
            await client.compact(revision, physical=True)


def metrics_url(server: Any) -> str:
    host = server.endpoint.rsplit(":", 1)[0]
    return f"http://{host}:2381/metrics"


def client_order(clients: Sequence[T], repetition: int) -> list[T]:
    """The clients of one cell in this repetition's order: rotated each repetition, reversed on odd ones."""
    k = repetition % len(clients)
    order = list(clients[k:]) + list(clients[:k])
    if repetition % 2:
        order.reverse()
    return order


def child_command(
    script: str, args: argparse.Namespace, server: Any, child: Sequence[object], *, cpu: int | None = 1
) -> list[str]:
    """The command line that re-runs ``script`` as a measuring child for one run."""
    command = [sys.executable, script, "--endpoint", server.endpoint, "--metrics", metrics_url(server)]
    command += ["--etcd-pid", str(server.pid), "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    if cpu is not None and pinning(args):
        command += ["--cpu", str(cpu)]
    return [*command, "--child", *map(str, child)]


async def run_child(command: Sequence[str], *, time_limit: float = 180.0) -> Row:
    """Run one measuring child; it prints its row as JSON on its last stdout line.

    A child that fails or overruns ``time_limit`` gives ``{"failed": why}`` (its stderr tail goes to
    our stderr) rather than ending the whole run; tables leave such rows out and the JSON keeps them.
    """
    import trio

    with trio.move_on_after(time_limit) as scope:
        done = await trio.run_process(list(command), capture_stdout=True, capture_stderr=True, check=False)
    if scope.cancelled_caught:
        return {"failed": f"timed out after {time_limit:.0f} s"}
    if done.returncode:
        err = done.stderr.decode()
        sys.stderr.write(err[-3000:])
        last = err.strip().splitlines()[-1] if err.strip() else ""
        return {"failed": f"exit {done.returncode}: {last}"}
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def child_setup(args: argparse.Namespace) -> None:
    """In a child: pin to the CPU the parent chose, before any thread (grpc's included) starts."""
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})


def emit(row: Row) -> None:
    """A child's result: one JSON line on stdout."""
    print(json.dumps(row), flush=True)


class Progress:
    """One line per run on stderr, with the time since the start."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f} s] {text}", file=sys.stderr, flush=True)

    def run(self, label: str, row: Row, describe: Callable[[Row], str]) -> None:
        self(f"{label} {'FAILED: ' + row['failed'] if 'failed' in row else describe(row)}")


# -- reports ---------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("etcdsync", "grpcio", "aetcd", "etcd3", "tenacity", "trio", "h2", "protobuf"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "-"
    return found


def etcd_version() -> str:
    import subprocess

    from etcdsync.testing._binary import find_etcd

    out = subprocess.run([str(find_etcd()), "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].split()[-1] if out else "?"


def git_state() -> dict[str, object]:
    """The commit measured, and the library files changed since (other work in progress)."""
    import subprocess

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], capture_output=True, text=True, check=False, cwd=RESULTS.parent)
        return done.stdout.strip()

    dirty = [line for line in git("status", "--porcelain", "etcdsync").splitlines() if line]
    return {"head": git("rev-parse", "--short", "HEAD"), "dirty": dirty}


def new_report(args: argparse.Namespace, **settings: object) -> Row:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "etcd": etcd_version(),
            "load_avg_start": os.getloadavg(),
        },
        "versions": versions(),
        "settings": {
            "quick": args.quick,
            "repetitions": args.repetitions,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "pinned": pinning(args),
            **settings,
        },
        "runs": [],
    }


def save_report(report: Row, name: str, out: Path | None) -> Path:
    report["machine"]["load_avg_end"] = os.getloadavg()
    if out is None:
        suffix = "-quick" if report["settings"]["quick"] else ""
        out = RESULTS / f"{name}-{datetime.date.today().isoformat()}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    return out


# -- statistics and tables -------------------------------------------------------------------------------


def select(rows: Iterable[Row], **match: object) -> list[Row]:
    """The rows (of runs that did not fail) whose fields have the given values."""
    return [r for r in rows if "failed" not in r and all(r.get(k) == v for k, v in match.items())]


def med(rows: Sequence[Row], key: str | Callable[[Row], float]) -> float:
    """Median of ``key`` over ``rows`` (NaN if there are none)."""
    values = [key(r) if callable(key) else float(r[key]) for r in rows]
    return statistics.median(values) if values else float("nan")


def paired_ratio(
    rows: Sequence[Row], base: Sequence[Row], key: str | Callable[[Row], float] = "ops"
) -> tuple[float, float, float] | None:
    """Median, min and max over repetitions of ``row[key] / base[key]`` in the same repetition."""

    def value(r: Row) -> float:
        return key(r) if callable(key) else float(r[key])

    by_rep = {r["repetition"]: r for r in base}
    pairs = [(value(r), value(by_rep[r["repetition"]])) for r in rows if r["repetition"] in by_rep]
    ratios = [a / b for a, b in pairs if b and a == a and b == b]  # skip zero and NaN baselines
    if not ratios:
        return None
    return statistics.median(ratios), min(ratios), max(ratios)


def fmt_ratio(ratio: tuple[float, float, float] | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio[0]:.2f} [{ratio[1]:.2f}-{ratio[2]:.2f}]"


def fmt(value: float, digits: int = 0) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:,.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None) -> str:
    """A Markdown table; ``align`` is one character per column, ``l`` or ``r``."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def failures(report: Row) -> str:
    """A note listing the runs that failed (left out of the tables), or nothing."""
    failed = [r for r in report["runs"] if "failed" in r]
    if not failed:
        return ""
    lines = [
        f"- {', '.join(f'{k}={v}' for k, v in r.items() if k != 'failed')}: {r['failed']}" for r in failed
    ]
    return f"\n\nFailed runs ({len(failed)}), left out of the tables:\n" + "\n".join(lines)


def main_loop(
    doc: str,
    name: str,
    parent: Callable[[argparse.Namespace, Row], Awaitable[None]],
    child: Callable[[argparse.Namespace], None],
    summarize: Callable[[Row], str],
    *,
    seconds: float,
    warmup: float,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    finish_args: Callable[[argparse.Namespace], None] | None = None,
) -> None:
    """The ``main()`` of every script: child mode, ``--summarize FILE``, or a whole run.

    ``add_arguments`` adds the script's own options; ``finish_args`` fills in their defaults (which
    may depend on ``--quick``).
    """
    parser = base_parser(doc)
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args()
    settle_args(args, seconds=seconds, warmup=warmup)
    if finish_args:
        finish_args(args)
    if args.child:
        child_setup(args)
        child(args)
        return
    if args.summarize:
        report = json.loads(args.summarize.read_text())
        print(summarize(report) + failures(report))
        return
    import trio

    report = new_report(args)
    started = time.monotonic()
    trio.run(parent, args, report)
    report["settings"]["wall_seconds"] = round(time.monotonic() - started, 1)
    out = save_report(report, name, args.out)
    print(summarize(report) + failures(report))
    print(f"\nraw results: {out} ({report['settings']['wall_seconds']:.0f} s)")
