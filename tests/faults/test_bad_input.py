"""Bad input the client core's own tests do not cover (tests/client/test_bad_input.py and test_tls_auth.py
have the caller mistakes, plaintext-to-TLS, wrong CA, missing client certificate, wrong password and
permission denied): endpoints that are not etcd, TLS against plaintext, a server stricter than the client's
limits, compacted history, unknown leases. Each gives its typed error with a readable message within a
bound, and the client stays usable afterwards."""

from __future__ import annotations

import contextlib
import functools
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import pytest
import trio

import etcdsync
from etcdsync.testing import EtcdServer, etcd_server

from .workloads import TIMING

#: Every row must fail this fast (a hang until the caller's deadline is a failure of its own).
ROW_BOUND = 3.0 * TIMING


@attrs.frozen
class Endpoints:
    etcd: EtcdServer
    http_closing: str  # answers HTTP/1.1 400 and closes, like most web servers
    http_lingering: str  # answers HTTP/1.1 400 and keeps the connection open
    silent: str  # accepts and never says a word


async def _http_closing(stream: trio.SocketStream) -> None:
    async with stream:
        try:
            await stream.receive_some(65536)
            await stream.send_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        except trio.BrokenResourceError:
            pass


async def _http_lingering(stream: trio.SocketStream) -> None:
    async with stream:
        try:
            await stream.receive_some(65536)
            await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\nbad request")
            await trio.sleep(60)
        except trio.BrokenResourceError:
            pass


async def _silent(stream: trio.SocketStream) -> None:
    async with stream:
        await trio.sleep(60)


@pytest.fixture
async def endpoints() -> AsyncIterator[Endpoints]:
    async with (
        etcd_server(unsafe_no_fsync=True, extra_args=["--max-request-bytes=2000", "--max-txn-ops=4"]) as etcd,
        trio.open_nursery() as nursery,
    ):
        found = []
        for handler in (_http_closing, _http_lingering, _silent):
            listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            found.append(f"127.0.0.1:{listeners[0].socket.getsockname()[1]}")
        yield Endpoints(etcd, *found)
        nursery.cancel_scope.cancel()


Call = Callable[[etcdsync.Client], Awaitable[object]]


@attrs.frozen
class Row:
    name: str
    endpoint: Callable[[Endpoints], str]
    call: Call
    error: type[BaseException]
    message: (
        str  # a regular expression the message (or, for NoEndpointAvailableError, an endpoint's) must match
    )
    tls: bool = False


def _get(c: etcdsync.Client) -> Awaitable[object]:
    return c.get(b"/faults/bad/k")


async def _compacted(c: etcdsync.Client) -> object:
    first = await c.put(b"/faults/bad/c", b"1")
    await c.put(b"/faults/bad/c", b"2")
    await c.compact(first.header.revision + 1)
    return await c.get(b"/faults/bad/c", revision=first.header.revision)


async def _watch_compacted(c: etcdsync.Client) -> object:
    first = await c.put(b"/faults/bad/w", b"1")
    await c.put(b"/faults/bad/w", b"2")
    await c.compact(first.header.revision + 1)
    async with c.watch(b"/faults/bad/w", start_revision=first.header.revision) as watch:
        return await watch.__anext__()


async def _resume_unknown_lease(c: etcdsync.Client) -> object:
    async with etcdsync.open_session(c, lease_id=0xFEEDFACE):
        pass
    return None


ROWS = [
    Row(
        "not etcd: an HTTP/1 server that closes",
        lambda e: e.http_closing,
        _get,
        etcdsync.NoEndpointAvailableError,
        r"HTTP/2",
    ),
    Row(
        "not etcd: a silent TCP listener, under the caller's deadline",
        lambda e: e.silent,
        _get,
        trio.TooSlowError,
        r"",
    ),
    Row(
        "TLS client against a plaintext server",
        lambda e: e.etcd.endpoint,
        _get,
        etcdsync.NoEndpointAvailableError,
        r"SSL|TLS|tls|ssl",
        tls=True,
    ),
    Row(
        "request larger than the server's --max-request-bytes",
        lambda e: e.etcd.endpoint,
        lambda c: c.put(b"/faults/bad/big", b"x" * 5000),
        etcdsync.RequestTooLargeError,
        r"^etcdserver: request is too large",
    ),
    Row(
        "txn over the server's --max-txn-ops",
        lambda e: e.etcd.endpoint,
        lambda c: c.txn(success=[etcdsync.Op.get(b"/faults/bad/%d" % i) for i in range(6)]),
        etcdsync.InvalidArgumentError,
        r"^etcdserver: too many operations in txn request",
    ),
    Row(
        "read at a compacted revision",
        lambda e: e.etcd.endpoint,
        _compacted,
        etcdsync.CompactedError,
        r"required revision has been compacted",
    ),
    Row(
        "watch from a compacted revision",
        lambda e: e.etcd.endpoint,
        _watch_compacted,
        etcdsync.CompactedError,
        r"compacted at revision \d+",
    ),
    Row(
        "resume a session whose lease does not exist",
        lambda e: e.etcd.endpoint,
        _resume_unknown_lease,
        etcdsync.SessionExpiredError,
        r"^lease feedface does not exist any more",
    ),
    Row(
        "keep-alive of an unknown lease",
        lambda e: e.etcd.endpoint,
        lambda c: c.lease_keep_alive_once(0xFEEDFACE),
        etcdsync.LeaseNotFoundError,
        r"lease feedface has expired or does not exist",
    ),
]


def _message(exc: BaseException) -> str:
    if isinstance(exc, etcdsync.NoEndpointAvailableError):
        return " | ".join(f"{e!s} ({e.__cause__!r})" for e in exc.errors.values())
    return str(exc)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
@pytest.mark.deadline(30)
async def test_bad_input_gives_a_typed_readable_error(endpoints: Endpoints, row: Row) -> None:
    target = row.endpoint(endpoints)
    url = f"https://{target}" if row.tls else target
    async with etcdsync.open_client(
        url, max_rounds=1, tls=ssl.create_default_context() if row.tls else None
    ) as c:
        for attempt in range(2):  # the same error again: the failure did not poison the client
            started = trio.current_time()
            deadline = trio.fail_after(1.0) if row.error is trio.TooSlowError else contextlib.nullcontext()
            with pytest.raises(row.error) as info, trio.fail_after(ROW_BOUND * 2), deadline:
                await row.call(c)
            took = trio.current_time() - started
            assert took <= ROW_BOUND, f"{row.name}: took {took:.2f} s (attempt {attempt})"
            assert re.search(row.message, _message(info.value)), _message(info.value)
    if target == endpoints.etcd.endpoint and not row.tls:
        async with etcdsync.open_client(target) as c:  # and the server is fine
            await c.put(b"/faults/bad/after", b"ok")


@pytest.mark.deadline(30)
async def test_not_etcd_http1_server_that_keeps_the_connection_open(endpoints: Endpoints) -> None:
    async with etcdsync.open_client(endpoints.http_lingering, max_rounds=1) as c:
        with (
            trio.fail_after(ROW_BOUND),
            pytest.raises((etcdsync.NoEndpointAvailableError, etcdsync.ProtocolError)),
        ):
            await c.get(b"/faults/bad/k")
